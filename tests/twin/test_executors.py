"""The executors (twin.engine.executors) with real spawned worker processes.

Most tests run :func:`work` below, a tiny stand-in for a simulation that does what its
request's spec says (report progress, sleep, start a child process, crash, raise), so
the life cycle of records can be checked in seconds: queued -> running -> done|failed,
the queue's order and positions, cancelling a queued or a running run (only that
worker ends, and what it started), a worker that dies (``os._exit``, SIGKILL), errors
raised by the work, and progress reports. One test runs real SUMO runs through
``twin.app.compose.execute_request``.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from twin.config import Settings
from twin.engine.executors import (
    CANCELLED,
    ORPHANED,
    LocalProcess,
    Pool,
    Progress,
    RunOutcome,
    RunRequest,
    require_done,
    run_requests,
)
from twin.engine.store import RunStore
from twin.errors import ConfigError, RunError, ScenarioError

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # generous: spawned workers start slowly on a busy machine
SUMO_WORDS = "Error: Unknown from-node 'a' for edge 'x'.\nQuitting (on error)."


def work(request: RunRequest, run_dir: Path, progress: Progress | None) -> RunOutcome:
    """A stand-in simulation, module-level so a spawned worker can import it."""
    spec = request.spec
    (run_dir / "worker.pid").write_text(str(os.getpid()), encoding="utf-8")
    action = spec["action"]
    if action == "exit":
        os._exit(spec["code"])
    if action == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "sumo_died":  # what libsumo leaves behind when it takes the process down
        (run_dir / "sumo_errors.log").write_text(SUMO_WORDS, encoding="utf-8")
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "twin_error":
        raise ScenarioError("Scenario 'x': field 'sim.duration_s' must be > 0 (got -5).")
    if action == "bug":
        return RunOutcome(metrics={"ratio": 1 / 0})
    if action == "child":  # something the worker started, like duarouter
        child = subprocess.Popen(["sleep", "300"])
        (run_dir / "child.pid").write_text(str(child.pid), encoding="utf-8")
    steps = int(spec.get("steps", 4))
    for k in range(1, steps + 1):
        time.sleep(float(spec.get("sleep_s", 0.0)) / steps)
        if progress is not None:
            progress(float(k), float(steps))
    frame = pd.DataFrame({"t_s": [0.0, 1.0], "seed": [request.seed, request.seed]})
    return RunOutcome(metrics={"seed": request.seed, "pid": os.getpid()}, series={"s": frame})


def _request(action: str = "ok", *, seed: int = 1, owner: str | None = None,
             **spec: Any) -> RunRequest:  # fmt: skip
    return RunRequest(
        spec={"action": action, **spec}, scenario_name=f"test-{action}", scenario_kind="test",
        city_path="-", city_name="none", city_hash="h0", seed=seed, owner=owner,
    )  # fmt: skip


def _until(what: str, condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pid(settings: Settings, run_id: str, name: str = "worker.pid") -> int:
    path = settings.run_dir(run_id) / name
    _until(f"{path}", path.is_file)
    _until(f"{path} written", lambda: path.read_text(encoding="utf-8") != "")
    return int(path.read_text(encoding="utf-8"))


def _status(settings: Settings, run_id: str) -> str:
    store = RunStore(settings.db_url, migrate=False)
    try:
        return store.get(run_id).status
    finally:
        store.close()


# ----------------------------------------------------------------------------- Pool
def test_map_gives_done_records_in_the_order_given(settings: Settings) -> None:
    # the first run is the slowest: records still come back in the order given
    requests = [_request(seed=s, sleep_s=1.5 - 0.5 * k, owner="bench")
                for k, s in enumerate((11, 12, 13))]  # fmt: skip
    records = run_requests(settings, work, requests, workers=3)
    assert [r.seed for r in records] == [11, 12, 13]
    assert [r.metrics["seed"] for r in records if r.metrics] == [11, 12, 13]
    assert len({r.metrics["pid"] for r in records if r.metrics}) == 3  # a process each
    store = RunStore.from_settings(settings)
    try:
        for record in records:
            assert require_done(record) is record
            assert record.owner == "bench"
            assert record.started_at is not None and record.finished_at is not None
            assert record.created_at <= record.started_at <= record.finished_at
            assert record.versions["sumo"].startswith("1.28")
            assert record.run_dir == settings.run_dir(record.id)
            assert (record.run_dir / "run.log").is_file()
            assert store.read_series(record.id, "s")["seed"].tolist() == [record.seed] * 2
        assert store.count(owner="bench", status="done") == 3
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pool_records_in_either_store(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
    settings = Settings(data_dir=tmp_path / "data", db_url=url)
    records = run_requests(settings, work, [_request(seed=1), _request("twin_error")], workers=2)
    assert [r.status for r in records] == ["done", "failed"]
    store = RunStore(url)
    try:
        assert store.count() == 2
        assert store.get(records[0].id).metrics == records[0].metrics
    finally:
        store.close()


def test_queue_positions_and_cancelling_a_queued_run(settings: Settings) -> None:
    with Pool(settings, work, workers=1) as pool:
        first = pool.submit(_request(sleep_s=2.0, seed=1))
        second = pool.submit(_request(seed=2))
        third = pool.submit(_request(seed=3))
        _until("the first run to start", lambda: pool.queue_position(first) is None)
        assert _status(settings, first) == "running"
        assert (pool.queue_position(second), pool.queue_position(third)) == (0, 1)
        assert _status(settings, second) == _status(settings, third) == "queued"
        assert pool.cancel(second)
        assert pool.queue_position(third) == 0
        assert not pool.cancel(second)  # already ended
        cancelled = pool.wait(second)
        assert cancelled.status == "failed"
        assert cancelled.error == f"{CANCELLED} before it started."
        assert cancelled.started_at is None
        assert pool.wait(first).status == "done"
        assert pool.wait(third).status == "done"
        assert pool.queue_position(third) is None
    assert not (settings.run_dir(second) / "worker.pid").exists()  # never started


def test_cancelling_a_running_run_ends_only_its_worker(settings: Settings) -> None:
    with Pool(settings, work, workers=2) as pool:
        doomed = pool.submit(_request("child", sleep_s=120.0, steps=240))
        other = pool.submit(_request(sleep_s=3.0, seed=2))
        worker, child = _pid(settings, doomed), _pid(settings, doomed, "child.pid")
        other_worker = _pid(settings, other)
        assert _alive(worker) and _alive(child)
        assert pool.cancel(doomed)
        record = pool.wait(doomed, timeout_s=WAIT_S)
        assert record.status == "failed"
        assert (record.error or "").startswith(CANCELLED)
        assert record.finished_at is not None
        assert not _alive(worker)
        _until("the worker's child to end too", lambda: not _alive(child), timeout_s=10)
        assert _alive(other_worker) or _status(settings, other) == "done"
        assert pool.wait(other).status == "done"
        assert not pool.cancel(doomed)


def test_close_with_cancel_stops_running_and_queued_runs(settings: Settings) -> None:
    pool = Pool(settings, work, workers=1)
    running = pool.submit(_request(sleep_s=120.0, steps=240))
    queued = pool.submit(_request(seed=2))
    worker = _pid(settings, running)
    started = time.monotonic()
    pool.close(cancel=True)
    assert time.monotonic() - started < 60
    with pytest.raises(RunError, match="closed"):
        pool.submit(_request())
    store = RunStore.from_settings(settings)
    try:
        for run_id in (running, queued):
            record = store.get(run_id)
            assert record.status == "failed"
            assert (record.error or "").startswith(CANCELLED)
    finally:
        store.close()
    assert not _alive(worker)


def test_leaving_the_pool_by_an_exception_cancels_its_runs(settings: Settings) -> None:
    with pytest.raises(KeyError), Pool(settings, work, workers=1) as pool:
        run_id = pool.submit(_request(sleep_s=120.0, steps=240))
        _pid(settings, run_id)
        raise KeyError("the caller failed")
    assert _status(settings, run_id) == "failed"


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ({"action": "exit", "code": 3}, "exit code 3"),
        ({"action": "sigkill"}, "signal SIGKILL"),
    ],
)
@pytest.mark.parametrize("executor", ["pool", "local"])
def test_a_worker_that_dies_is_recorded_failed(
    settings: Settings, executor: str, action: dict[str, Any], words: str
) -> None:
    req = _request(**action)
    if executor == "pool":
        record = run_requests(settings, work, [req], workers=1)[0]
    else:
        with LocalProcess(settings, work) as local:
            record = local.run(req)
    assert record.status == "failed"
    error = record.error or ""
    assert "worker process died" in error and words in error
    # the post-mortem: this work never started SUMO, and says so
    assert "SUMO says: nothing: it died before SUMO was started" in error
    assert record.finished_at is not None


def test_a_run_whose_sumo_died_is_recorded_with_sumos_words(settings: Settings) -> None:
    record = run_requests(settings, work, [_request("sumo_died")], workers=1)[0]
    assert record.status == "failed"
    assert "signal SIGSEGV" in (record.error or "")
    assert f"SUMO says: {SUMO_WORDS}" in (record.error or "")


def test_errors_raised_by_the_work_are_recorded(settings: Settings) -> None:
    records = run_requests(settings, work, [_request("twin_error"), _request("bug")], workers=2)
    twin_error, bug = records
    assert twin_error.status == "failed"
    assert twin_error.error == "Scenario 'x': field 'sim.duration_s' must be > 0 (got -5)."
    assert bug.status == "failed"
    assert (bug.error or "").startswith("Unexpected ZeroDivisionError: division by zero")
    log_text = (settings.run_dir(bug.id) / "run.log").read_text(encoding="utf-8")
    assert "Traceback" in log_text and "1 / 0" in log_text


def test_progress_reports_arrive(settings: Settings) -> None:
    seen: dict[str, list[tuple[float, float]]] = {}

    def on_progress(run_id: str, done_s: float, total_s: float) -> None:
        seen.setdefault(run_id, []).append((done_s, total_s))
        raise RuntimeError("a broken display must not lose the run")

    requests = [_request(steps=5, sleep_s=0.5), _request(steps=3, seed=2)]
    records = run_requests(settings, work, requests, workers=2, progress=on_progress)
    assert [r.status for r in records] == ["done", "done"]
    assert seen[records[0].id] == [(float(k), 5.0) for k in range(1, 6)]
    assert seen[records[1].id] == [(float(k), 3.0) for k in range(1, 4)]


def test_pool_needs_a_worker(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="at least 1 worker"):
        Pool(settings, work, workers=0)


def test_wait_times_out_and_the_run_goes_on(settings: Settings) -> None:
    with Pool(settings, work, workers=1) as pool:
        run_id = pool.submit(_request(sleep_s=3.0))
        with pytest.raises(RunError, match=r"did not end within 0\.1 s"):
            pool.wait(run_id, timeout_s=0.1)
        assert pool.wait(run_id).status == "done"


EXECUTOR = """
import sys, time
from pathlib import Path
from tests.twin.test_executors import _request, work
from twin.config import Settings
from twin.engine.executors import Pool
pool = Pool(Settings(data_dir=Path(sys.argv[1]), db_url=sys.argv[2]), work, workers=1)
print(pool.submit(_request("child", sleep_s=120.0, steps=240)), flush=True)
time.sleep(600)
"""


def test_workers_of_a_killed_executor_end_and_record_it(settings: Settings) -> None:
    executor = subprocess.Popen(
        [sys.executable, "-c", EXECUTOR, str(settings.data_dir), settings.db_url],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert executor.stdout is not None
        run_id = executor.stdout.readline().strip()
        worker, child = _pid(settings, run_id), _pid(settings, run_id, "child.pid")
        assert _status(settings, run_id) == "running"
    finally:
        executor.kill()
        executor.wait(timeout=60)
    _until("the orphaned run to be recorded", lambda: _status(settings, run_id) == "failed")
    store = RunStore.from_settings(settings)
    try:
        assert store.get(run_id).error == ORPHANED
    finally:
        store.close()
    _until("the worker and its child to end", lambda: not (_alive(worker) or _alive(child)),
           timeout_s=30)  # fmt: skip


# ----------------------------------------------------------------------------- LocalProcess
def test_local_process_runs_one_in_the_foreground(settings: Settings) -> None:
    seen: list[tuple[float, float]] = []
    with LocalProcess(settings, work) as local:
        first = local.submit(_request(seed=1))
        second = local.submit(_request(seed=2))
        assert (local.queue_position(first), local.queue_position(second)) == (0, 1)
        assert _status(settings, first) == "queued"
        record = local.wait(first, progress=lambda d, t: seen.append((d, t)))
        assert record.status == "done"
        assert record.metrics is not None and record.metrics["pid"] != os.getpid()
        assert seen == [(float(k), 4.0) for k in range(1, 5)]
        assert local.cancel(second)
        assert not local.cancel(second)
        assert _status(settings, second) == "failed"


def test_local_process_stops_a_run_past_its_timeout(settings: Settings) -> None:
    with LocalProcess(settings, work) as local:
        run_id = local.submit(_request(sleep_s=120.0, steps=240))
        record = local.wait(run_id, timeout_s=3.0)
    assert record.status == "failed"
    assert record.error == f"{CANCELLED}: the run did not end within 3 s."


def test_local_process_in_this_process(settings: Settings) -> None:
    with LocalProcess(settings, work, in_process=True) as local:
        record = local.run(_request(seed=5))
    assert record.status == "done"
    assert record.metrics == {"seed": 5, "pid": os.getpid()}


def test_closing_a_local_process_cancels_what_was_not_run(settings: Settings) -> None:
    local = LocalProcess(settings, work)
    run_id = local.submit(_request())
    local.close()
    assert _status(settings, run_id) == "failed"


# ----------------------------------------------------------------------------- real SUMO
SHORT = {
    "name": "short", "kind": "baseline", "seed": 3, "demand": {"period": "am_peak"},
    "sim": {"duration_s": 600, "control_interval_s": 5, "series_interval_s": 60},
}  # fmt: skip


@pytest.mark.sumo
def test_real_sumo_runs_through_the_pool(settings: Settings, district_city: Any) -> None:
    """Two SUMO runs at once: one is cancelled mid-run (its worker, and libsumo with
    it, ends), the other finishes with metrics, series, versions and the city hash."""
    from scenarios.loader import parse_scenario
    from twin.app.compose import execute_request, run_request

    spec = parse_scenario(SHORT)
    long_spec = parse_scenario({**SHORT, "sim": {**SHORT["sim"], "duration_s": 3600}})
    progress: dict[str, float] = {}
    with Pool(settings, execute_request, workers=2,
              progress=lambda rid, d, t: progress.__setitem__(rid, d)) as pool:  # fmt: skip
        done_id = pool.submit(run_request(spec, district_city))
        doomed = pool.submit(run_request(long_spec, district_city))
        _until("the long run to simulate", lambda: progress.get(doomed, 0.0) > 0.0)
        worker = _pid_of_run(pool, doomed)
        assert pool.cancel(doomed)
        cancelled = pool.wait(doomed, timeout_s=WAIT_S)
        record = pool.wait(done_id, timeout_s=600)
    assert cancelled.status == "failed" and (cancelled.error or "").startswith(CANCELLED)
    assert worker is None or not _alive(worker)
    assert record.status == "done", record.error
    assert record.city_hash == district_city.manifest.content_hash
    assert record.versions["sumo"].startswith("1.28") and record.seed == 3
    assert record.metrics is not None and record.metrics["throughput_veh"] > 100
    assert progress[done_id] == pytest.approx(600.0)
    assert {"queues.parquet", "network.parquet"} <= set(record.series_files)


def _pid_of_run(pool: Pool, run_id: str) -> int | None:
    job = pool._active.get(run_id)
    return None if job is None else int(job.proc.pid)
