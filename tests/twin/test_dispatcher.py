"""The queue in the database: the store's atomic claim, conditional fail and requeue,
and the executors' Dispatcher over a QueueSource (real spawned workers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from tests.twin.test_executors import _request, work
from twin.config import Settings
from twin.engine.executors import CANCELLED, INTERRUPTED, Dispatcher, RunRequest, record_request
from twin.engine.store import RunRecord, RunStore


def test_claim_starts_a_queued_run_once(db_url: str) -> None:
    store = RunStore(db_url)
    try:
        run_id = store.create_run(scenario_name="s", scenario_kind="k", spec={}, city_name="c",
                                  city_hash="h", seed=1, versions={}, status="queued")  # fmt: skip
        wins = []
        threads = [threading.Thread(target=lambda: wins.append(store.claim(run_id)))
                   for _ in range(4)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False, False, False, True]
        record = store.get(run_id)
        assert record.status == "running" and record.started_at is not None
        assert not store.fail_if(run_id, "queued", error="x")
        assert store.requeue(run_id) and store.get(run_id).status == "queued"
        assert store.get(run_id).started_at is None
        assert store.fail_if(run_id, "queued", error="Cancelled before it started.")
        assert not store.claim(run_id) and not store.requeue(run_id)
        assert store.get(run_id).error == "Cancelled before it started."
    finally:
        store.close()


class ListSource:
    """A QueueSource over a list, as the API's is over its table."""

    def __init__(self) -> None:
        self.queue: list[tuple[str, RunRequest]] = []
        self.running_ids: set[str] = set()
        self.cancel: set[str] = set()
        self.ends: dict[str, RunRecord] = {}
        self.progress_seen: list[str] = []
        self.lock = threading.Lock()

    def waiting(self, limit: int) -> Sequence[tuple[str, RunRequest]]:
        with self.lock:
            return list(self.queue[:limit])

    def unfinished(self) -> Sequence[str]:
        with self.lock:
            return [r for r, _ in self.queue] + sorted(self.running_ids)

    def started(self, run_id: str) -> None:
        with self.lock:
            self.queue = [(r, q) for r, q in self.queue if r != run_id]
            self.running_ids.add(run_id)

    def cancelling(self, run_ids: Sequence[str]) -> Sequence[str]:
        return [r for r in run_ids if r in self.cancel]

    def progress(self, run_id: str, done_s: float, total_s: float) -> None:
        self.progress_seen.append(run_id)

    def ended(self, record: RunRecord) -> None:
        with self.lock:
            self.running_ids.discard(record.id)
            if record.status == "queued":
                self.queue.append((record.id, _request(seed=record.seed)))
            else:
                self.ends[record.id] = record


def _submit(settings: Settings, source: ListSource, request: RunRequest) -> str:
    store = RunStore.from_settings(settings)
    try:
        run_id = record_request(store, settings, request)
    finally:
        store.close()
    with source.lock:
        source.queue.append((run_id, request))
    return run_id


def _until(source: ListSource, run_id: str, timeout_s: float = 120.0) -> RunRecord:
    deadline = time.monotonic() + timeout_s
    while run_id not in source.ends:
        assert time.monotonic() < deadline, f"run {run_id} did not end"
        time.sleep(0.05)
    return source.ends[run_id]


def test_dispatcher_runs_cancels_and_recovers(settings: Settings) -> None:
    source = ListSource()
    # left "running" by a server that died: failed when the next dispatcher starts
    stale = _submit(settings, source, _request(seed=9))
    store = RunStore.from_settings(settings)
    assert store.claim(stale)
    source.started(stale)
    dispatcher = Dispatcher(settings, work, source, workers=2).start()
    try:
        assert source.ends[stale].status == "failed" and source.ends[stale].error == INTERRUPTED
        quick = _submit(settings, source, _request(seed=1))
        slow = _submit(settings, source, _request(seed=2, sleep_s=60.0))
        dispatcher.wake()
        assert _until(source, quick).status == "done"
        while dispatcher.worker_pid(slow) is None:
            time.sleep(0.05)
        source.cancel.add(slow)
        cancelled = _until(source, slow)
        assert cancelled.status == "failed" and cancelled.error.startswith(CANCELLED)
        assert quick in source.progress_seen
        # an orderly close puts a running run back in the queue
        back = _submit(settings, source, _request(seed=3, sleep_s=60.0))
        while dispatcher.worker_pid(back) is None:
            time.sleep(0.05)
    finally:
        dispatcher.close()
    assert store.get(back).status == "queued"
    assert [r for r, _ in source.queue] == [back]
    store.close()


def test_a_dispatcher_needs_a_worker(settings: Settings) -> None:
    with pytest.raises(ValueError, match="at least 1 worker"):
        Dispatcher(settings, work, ListSource(), workers=0)
