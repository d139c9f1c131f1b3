"""The executor's Dask distributed backend: recorded runs on a Dask cluster.

:func:`run_on_dask` does what :func:`~twin.engine.executors.run_requests` does on the
local pool, on a Dask cluster instead: every request is recorded ``queued`` in the run
store, then becomes one Dask task that asks for the worker resource ``sumo=1``
(:data:`SUMO_RESOURCE`), so a worker that offers ``sumo=1`` runs one simulation at a
time. The task does not simulate in the Dask worker's own process (libsumo allows one
simulation per process, and a SUMO crash would take the worker with it): it starts the
run in a fresh spawned process with :func:`~twin.engine.executors.execute_queued`, the
same worker, heartbeat, SIGTERM handling and post-mortem as the local pool's. So every
run is a record, and a run whose process dies is recorded failed with SUMO's words
while every other run goes on.

What can go wrong, and what the record then says:

- the run's process dies (SUMO segfaults, SIGKILL): failed, with SUMO's words;
- the Dask worker process dies: its run's process sees its parent gone and records the
  run failed (:data:`~twin.engine.executors.ORPHANED`); Dask may retry the task on
  another worker, which finds the run no longer queued and leaves it so;
- the task itself fails (Dask gives up on it, ``KilledWorker``): failed with Dask's
  words (:data:`TASK_FAILED`);
- the connection to the scheduler is lost: the runs not yet started are failed
  (:data:`SCHEDULER_LOST`) and :class:`~twin.errors.RunError` says so; the runs already
  running go on in their processes and record their own end. Run the same requests
  again (``twin sweep`` resumes: it skips what is done).

A cluster, by hand (one worker per core; same code and environment everywhere, the
city folders at the same paths, the data dir on a shared filesystem and a run store
every machine reaches, i.e. PostgreSQL through ``CITYTWIN_DB``)::

    dask scheduler                                                  # tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 8 --nthreads 1 --resources sumo=1

``scheduler="local"`` starts a :class:`distributed.LocalCluster` on this machine
instead (``workers`` processes, one thread and ``sumo=1`` each) for as long as the
requests take.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import distributed
from distributed import Client, LocalCluster, as_completed, get_worker
from distributed.comm.core import CommClosedError

from twin.config import Settings
from twin.engine.executors import (
    CANCELLED,
    PARENT_CHECK_S,
    POLL_S,
    RunProgress,
    RunRequest,
    Work,
    execute_queued,
    record_request,
)
from twin.engine.store import RunRecord, RunStore
from twin.errors import ConfigError, RunError

log = logging.getLogger(__name__)

SUMO_RESOURCE = "sumo"
"""The worker resource a run asks for, one unit each: a worker offers ``sumo=1``."""
LOCAL = "local"
"""The scheduler address that means: start a LocalCluster on this machine."""
PROGRESS_EVERY_S = 0.5
"""A running task sends a progress event at most this often."""
SETTLE_S = 3 * PARENT_CHECK_S + 2 * POLL_S
"""How long a task that ended without its run's end waits for the run's own process to
record it (the process notices its parent is gone within :data:`PARENT_CHECK_S`)."""
CONNECT_TIMEOUT_S = 30.0
TASK_FAILED = "The run's Dask task failed"
"""Start of the error of a run whose task Dask gave up on."""
SCHEDULER_LOST = (
    "Interrupted: the connection to the Dask scheduler was lost before the run started; "
    "run the sweep again (what is done is kept and skipped)."
)
"""The error of a run still queued when the scheduler's connection was lost."""


@contextlib.contextmanager
def _distributed_logs_follow_root() -> Iterator[None]:
    """distributed sets its loggers to INFO when imported; let them log at the root
    logger's level (what the entry point chose: WARNING unless -v) meanwhile."""
    logger = logging.getLogger("distributed")
    old = logger.level
    logger.setLevel(logging.getLogger().getEffectiveLevel())
    try:
        yield
    finally:
        logger.setLevel(old)


@contextlib.contextmanager
def dask_client(scheduler: str, *, workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler`` (``tcp://HOST:PORT``), or of a new
    :class:`~distributed.LocalCluster` for ``"local"`` (``workers`` processes, default
    the cores, one thread and ``sumo=1`` each), closed afterwards.

    Raises
    ------
    ConfigError
        The scheduler cannot be reached, or ``workers`` is below 1.
    """
    with _distributed_logs_follow_root():
        if scheduler == LOCAL:
            with _local_client(workers) as client:
                yield client
        else:
            with _remote_client(scheduler) as client:
                yield client


@contextlib.contextmanager
def _local_client(workers: int | None) -> Iterator[Client]:
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise ConfigError(f"A local Dask cluster needs at least 1 worker, not {n}.")
    with (
        LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, resources={SUMO_RESOURCE: 1},
            dashboard_address=None, silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


@contextlib.contextmanager
def _remote_client(scheduler: str) -> Iterator[Client]:
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            f"--scheduler {scheduler!r}: no Dask scheduler answers there ({exc}). Start "
            "one with 'dask scheduler' and workers with 'dask worker ADDRESS --nthreads 1 "
            f"--resources {SUMO_RESOURCE}=1', or use 'local' for a cluster on this machine."
        ) from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):  # a lost scheduler: nothing left to close
            client.close(timeout=5)


def check_workers(client: Client, scheduler: str) -> None:
    """Refuse a cluster whose workers offer no ``sumo`` resource (the runs would wait
    forever); a cluster with no worker yet is only logged (workers may join)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if not workers:
        log.warning("the Dask scheduler at %s has no worker yet; the runs wait for one",
                    scheduler)  # fmt: skip
        return
    if not any(float(w.get("resources", {}).get(SUMO_RESOURCE, 0)) >= 1 for w in workers.values()):
        raise ConfigError(
            f"--scheduler {scheduler!r}: none of its {len(workers)} worker(s) offers the "
            f"resource {SUMO_RESOURCE}=1, so no run could start. Start the workers with "
            f"'dask worker {scheduler} --nthreads 1 --resources {SUMO_RESOURCE}=1'."
        )


class _ChildrenAllowed:
    """Lets this process start child processes although it is daemonic (a Dask worker
    under a nanny is). Python refuses daemonic parents because their children could be
    left behind; a run's worker process watches its parent and ends with it (recording
    its run failed), so none is. Re-entrant across a worker's threads: the flag is put
    back when the last of them is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._saved: tuple[bool, Any] = (False, None)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        config: dict[str, Any] = getattr(mp.current_process(), "_config", {})
        with self._lock:
            if self._count == 0:
                self._saved = ("daemon" in config, config.get("daemon"))
                config["daemon"] = False
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                if self._count == 0:
                    had, value = self._saved
                    if had:
                        config["daemon"] = value
                    else:
                        config.pop("daemon", None)


_children_allowed = _ChildrenAllowed()


def run_cell(settings: Settings, work: Work, run_id: str, request: RunRequest, topic: str) -> str:
    """The Dask task of one recorded run: execute it in a fresh process on this worker
    (:func:`~twin.engine.executors.execute_queued`), sending progress events to
    ``topic``; returns the run's final status."""
    worker = get_worker()
    last_s = -float("inf")

    def report(done_s: float, total_s: float) -> None:
        nonlocal last_s
        now = time.monotonic()
        if now - last_s >= PROGRESS_EVERY_S or done_s >= total_s:
            last_s = now
            with contextlib.suppress(Exception):  # progress is a courtesy
                worker.log_event(topic, [run_id, float(done_s), float(total_s)])

    with _children_allowed():
        record = execute_queued(settings, work, run_id, request, progress=report)
    return record.status


def _settle(store: RunStore, run_id: str, error: str) -> None:
    """Make sure the run's record has ended: wait a little for its own process to
    record it, then fail it with ``error`` if it is still queued or running."""
    deadline = time.monotonic() + SETTLE_S
    while store.get(run_id).status == "running" and time.monotonic() < deadline:
        time.sleep(POLL_S)
    store.fail_if(run_id, "queued", error=error)
    store.fail_if(run_id, "running", error=error)


def _relay(progress: RunProgress, event: Any) -> None:
    try:
        _at, (run_id, done_s, total_s) = event
        progress(str(run_id), float(done_s), float(total_s))
    except Exception:  # a broken progress display must not lose the runs
        log.exception("progress event %r not shown", event)


def run_on_dask(
    settings: Settings,
    work: Work,
    requests: Sequence[RunRequest],
    *,
    scheduler: str,
    workers: int | None = None,
    progress: RunProgress | None = None,
) -> list[RunRecord]:
    """Record every request and run it on the Dask cluster at ``scheduler`` (see the
    module docstring; ``"local"``: a LocalCluster of ``workers`` processes); the final
    records, in the order given.

    Raises
    ------
    ConfigError
        The scheduler cannot be reached, or none of its workers offers ``sumo=1``.
    RunError
        The connection to the scheduler was lost; the runs not started are recorded
        failed (:data:`SCHEDULER_LOST`).
    KeyboardInterrupt
        After cancelling the tasks and failing the runs not started.
    """
    store = RunStore.from_settings(settings)
    try:
        with dask_client(scheduler, workers=workers) as client:
            check_workers(client, scheduler)
            run_ids = [record_request(store, settings, r) for r in requests]
            topic = f"citytwin-progress-{uuid.uuid4().hex}"
            if progress is not None:
                client.subscribe_topic(topic, lambda event: _relay(progress, event))
            futures = [
                client.submit(
                    run_cell, settings, work, run_id, request, topic,
                    key=f"citytwin-run-{run_id}", resources={SUMO_RESOURCE: 1}, pure=False,
                )
                for run_id, request in zip(run_ids, requests, strict=True)
            ]  # fmt: skip
            _collect(store, client, scheduler, dict(zip(futures, run_ids, strict=True)))
        return [store.get(run_id) for run_id in run_ids]
    finally:
        store.close()


def _collect(
    store: RunStore, client: Client, scheduler: str, futures: dict[distributed.Future[Any], str]
) -> None:
    """Wait for every task; settle each run's record as its task ends."""
    pending = dict(futures)
    lost: BaseException | None = None
    try:
        for future in as_completed(list(futures)):
            run_id = pending.pop(future)
            if future.status == "finished":
                _settle(store, run_id, f"{TASK_FAILED}: it ended without the run's end.")
            elif future.status == "error":
                exc = future.exception()
                log.warning("run %s: its Dask task failed: %r", run_id, exc)
                _settle(store, run_id, f"{TASK_FAILED}: {type(exc).__name__}: {exc}")
            else:  # cancelled: the scheduler forgot it (a lost connection)
                pending[future] = run_id
                lost = lost or RunError(f"task {future.key} was {future.status}")
    except KeyboardInterrupt:
        client.cancel(list(pending))
        for run_id in pending.values():
            store.fail_if(run_id, "queued", error=f"{CANCELLED}: interrupted by the user.")
        raise
    except (OSError, TimeoutError, CommClosedError) as exc:
        lost = exc
    if not pending:
        return
    running = []
    for run_id in pending.values():
        if not store.fail_if(run_id, "queued", error=SCHEDULER_LOST):
            running.append(run_id)
    raise RunError(
        f"Lost the connection to the Dask scheduler at {scheduler} ({lost}); "
        f"{len(pending)} run(s) had not ended: {len(pending) - len(running)} not started "
        f"(recorded failed), {len(running)} running on their workers (they record their own "
        "end). Run the sweep again: what is done is kept and skipped."
    )
