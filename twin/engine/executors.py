"""Executors: a run request in, a run record out.

libsumo allows one simulation per process, and SUMO can die hard (a segfault takes the
process with it). So every run is first recorded in the run store, then executed in a
fresh *spawned* worker process that streams its progress back over a queue; when the
process has ended the executor makes sure the record says ``done`` or ``failed`` with
the error, also when the worker was killed before it could say so itself (then the
error carries SUMO's own words: its error log, or what a plain ``sumo`` says about the
run's inputs).

Life cycle of a record: ``queued`` (recorded, waiting for a worker) -> ``running`` (its
worker process is up) -> ``done`` (metrics stored) or ``failed`` (error stored).
A record keeps the city folder the run used, a hash of its files recomputed when the
run is recorded (:func:`city_files_hash`) and the code's git commit
(:func:`code_commit`). The worker records its pid and host and refreshes a heartbeat
(:data:`twin.engine.store.HEARTBEAT_S`); a worker ended by SIGTERM from outside (a
cluster job ending) records its run failed (:data:`TERMINATED`) before it goes, and a
store or executor that opens fails the runs a vanished worker left ``running``
(:meth:`RunStore.fail_stale`).
Cancelling stops only that run: a queued run is dropped from the queue, a running one
loses its worker process (and whatever the worker started, e.g. ``duarouter``). A
worker whose executor process ends without it (killed, say) records its run failed
and ends too.

- :class:`LocalProcess` runs one request at a time, in the foreground (the CLI).
- :class:`Pool` keeps a queue of requests and runs up to ``workers`` of them at once,
  each in its own process (benchmarks, sweeps).
- :func:`execute_queued` runs one recorded run in its own process for an executor
  whose workers outlive runs: the Dask backend (:mod:`twin.engine.dask_executor`).
- :class:`Dispatcher` runs the queue that lives in the *database* (the HTTP API): the
  runs a :class:`QueueSource` names, claimed one by one (:meth:`RunStore.claim`), so a
  server restart loses no queued run; at start it fails the runs a dead server left
  ``running`` (:data:`INTERRUPTED`), at an orderly close it puts its running runs back
  in the queue.

What a worker *does* is not the engine's business: the layer that composes runs passes
a module-level ``work`` function (picklable by reference) that turns a
:class:`RunRequest` into a :class:`RunOutcome` (``twin.app.compose.execute_request``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import queue as queue_mod
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import pandas as pd

from twin.config import Settings
from twin.engine.store import HEARTBEAT_S, RunRecord, RunStore
from twin.engine.sumo_tools import diagnose, sumo_version
from twin.errors import ConfigError, RunError, RunNotFoundError, TwinError

log = logging.getLogger(__name__)

Progress = Callable[[float, float], None]  # (done_s, total_s)
RunProgress = Callable[[str, float, float], None]  # (run_id, done_s, total_s)
VERSIONED = ("citytwin", "eclipse-sumo", "libsumo", "numba", "numpy", "simpy", "sqlalchemy")
SUMO_ARGS_FILE = "sumo_args.json"
"""The SUMO command line of a run, written before SUMO starts (for a post-mortem)."""
POLL_S = 0.2
"""How often a waiting executor looks at its workers (progress, exits)."""
KILL_GRACE_S = 5.0
"""A cancelled worker that ignores SIGTERM this long gets SIGKILL."""
CANCELLED = "Cancelled"
"""Every cancelled run's error starts with this word."""
ORPHANED = f"{CANCELLED}: the executor process that started the run ended."
PARENT_CHECK_S = 1.0
"""How often a worker checks that its executor process is still there."""
INTERRUPTED = (
    "Interrupted: the server stopped while the run was running (its worker did not "
    "survive it); submit the run again."
)
"""The error of a run that a dead server left ``running`` (see :class:`Dispatcher`)."""
TERMINATED = (
    "Terminated by signal 15 (SIGTERM): the worker process was stopped from outside "
    "(a cluster job ending, a shutdown, a kill) before the run finished; submit it again."
)
"""The error of a run whose worker got SIGTERM from anyone but its executor."""
STOP_FILE = ".stop_reason"
"""Written in the run folder by an executor just before it sends its worker SIGTERM:
the worker then leaves the record to the executor (a cancel, or a requeue)."""
MANIFEST_FILE = "city.json"
"""A city folder's manifest, read here only for the names of the files it hashes."""
HASHED_CITY_FILES = ("net", "detectors", "signal_plans")
"""The manifest's files whose content makes a city's ``content_hash``."""
_XML_HEADER_COMMENT = re.compile(rb"<!--.*?-->", re.DOTALL)
POST_MORTEM_PREFIX = "postmortem."
"""Outputs a post-mortem SUMO could still open outside its scratch folder (those named
inside additional files) get this prefix, so no output of the run is overwritten."""
_OUTPUT_OPTIONS = frozenset({
    "--log", "-l", "--message-log", "--error-log", "--save-configuration", "-C",
    "--save-template", "--save-schema", "--save-state.files", "--save-state.prefix",
    "--output-prefix",
})  # fmt: skip


@dataclass(frozen=True)
class RunRequest:
    """Everything a worker needs; plain data, so it pickles into a spawned process."""

    spec: dict[str, Any]
    scenario_name: str
    scenario_kind: str
    city_path: str
    city_name: str
    city_hash: str
    seed: int
    owner: str | None = None
    gui: bool = False
    extra_additional: tuple[str, ...] = ()


@dataclass
class RunOutcome:
    """What a worker hands back to be stored: metrics and named time series."""

    metrics: dict[str, Any]
    series: dict[str, pd.DataFrame] = field(default_factory=dict)


Work = Callable[[RunRequest, Path, Progress | None], RunOutcome]


class Executor(Protocol):
    """Runs requests as records."""

    def submit(self, request: RunRequest) -> str:
        """Record the request (``queued``) and return the run id."""
        ...

    def queue_position(self, run_id: str) -> int | None:
        """0 for the next run to start; ``None`` when the run is not waiting."""
        ...

    def wait(self, run_id: str, *, timeout_s: float | None = None) -> RunRecord:
        """The run's final record once it is done or failed."""
        ...

    def cancel(self, run_id: str) -> bool:
        """Stop a queued or running run (recorded failed, "Cancelled ..."); ``False``
        when it is not this executor's or had already ended."""
        ...

    def close(self) -> None:
        """Release the executor's resources."""
        ...


def versions() -> dict[str, str]:
    """Versions of the packages (and SUMO) a run's results depend on."""
    out = {}
    for pkg in VERSIONED:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["sumo"] = sumo_version()
    return out


def city_files_hash(city_dir: Path) -> str | None:
    """The city's ``content_hash`` recomputed from its files as they are now: the same
    digest as ``city_models.build.hash_files`` over the manifest's net, detectors and
    signal plans (gzip undone, the tools' header comment left out), so it equals the
    manifest's hash unless a file was edited (a net changed in netedit). ``None`` (and
    a warning) when the folder has no readable manifest or a file is missing."""
    try:
        manifest = json.loads((city_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        names = [str(manifest["files"][key]) for key in HASHED_CITY_FILES]
        h = hashlib.sha256()
        for name in names:
            raw = (city_dir / name).read_bytes()
            data = gzip.decompress(raw) if name.endswith(".gz") else raw
            h.update(name.encode())
            h.update(_XML_HEADER_COMMENT.sub(b"", data, count=1))
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        log.warning("city %s: its files could not be hashed (%s)", city_dir, exc)
        return None
    return h.hexdigest()


@cache
def code_commit() -> str | None:
    """The git commit of the code (``git rev-parse HEAD`` in the ``twin`` package's
    folder) when that folder is a tracked part of a git checkout; ``None`` otherwise
    (an installed package, no git)."""
    package = Path(__file__).resolve().parents[1]
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=package,
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if tracked.returncode != 0:
            return None
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True,
            timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit if head.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def record_request(
    store: RunStore, settings: Settings, request: RunRequest, *, run_id: str | None = None
) -> str:
    """Create the run's record (``queued``) and folder; returns the run id (``run_id``
    when given: the caller booked it first, e.g. the API's quota check). The record
    keeps the city folder, its files' hash as they are now and the code's commit."""
    city_dir = Path(request.city_path)
    known_city = request.city_path not in ("", "-") and city_dir.is_dir()
    run_id = store.create_run(
        run_id=run_id,
        scenario_name=request.scenario_name,
        scenario_kind=request.scenario_kind,
        spec=request.spec,
        city_name=request.city_name,
        city_hash=request.city_hash,
        seed=request.seed,
        versions=versions(),
        status="queued",
        owner=request.owner,
        city_path=city_dir.resolve() if known_city else None,
        city_files_hash=city_files_hash(city_dir) if known_city else None,
        code_commit=code_commit(),
    )
    run_dir = settings.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    store.set_run_dir(run_id, run_dir)
    return run_id


def scratch_args(args: Sequence[str], scratch: Path) -> list[str]:
    """A SUMO command line whose output files all go to ``scratch``: every output,
    log and save option's file is moved there (same name, ``1-``, ``2-``... ahead when
    names repeat), and ``--output-prefix`` makes any output named inside an
    additional file a new file (:data:`POST_MORTEM_PREFIX`) instead of the run's."""
    out: list[str] = []
    used: set[str] = set()

    def moved(value: str) -> str:
        name = Path(value).name or "output"
        k = 0
        while name in used:
            k += 1
            name = f"{k}-{Path(value).name}"
        used.add(name)
        return str(scratch / name)

    def is_output(option: str) -> bool:
        return option in _OUTPUT_OPTIONS or option.endswith(("-output", "-dump"))

    k = 0
    while k < len(args):
        arg = args[k]
        option, eq, value = arg.partition("=")
        if option == "--output-prefix":  # replaced by ours below
            k += 1 if eq else 2
            continue
        if eq and option.startswith("-") and is_output(option):
            out.append(f"{option}={moved(value)}")
        elif is_output(arg) and k + 1 < len(args):
            out += [arg, moved(args[k + 1])]
            k += 1
        else:
            out.append(arg)
        k += 1
    return [*out, "--output-prefix", POST_MORTEM_PREFIX]


def post_mortem(run_dir: Path) -> str:
    """Why SUMO died: its error log if it wrote one, else what a plain sumo says about
    the run's command line. That sumo writes only in a scratch folder (removed after):
    what the dead run wrote (tripinfo, summary, logs) is evidence and stays as it was."""
    error_log = run_dir / "sumo_errors.log"
    if error_log.exists() and error_log.read_text(errors="replace").strip():
        return error_log.read_text(errors="replace").strip()[-2000:]
    args_file = run_dir / SUMO_ARGS_FILE
    if not args_file.exists():
        return "nothing: it died before SUMO was started"
    args = json.loads(args_file.read_text(encoding="utf-8"))
    scratch = Path(tempfile.mkdtemp(prefix="citytwin-postmortem-"))
    try:
        return diagnose(scratch_args(args, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_in_this_process(
    work: Work,
    request: RunRequest,
    run_id: str,
    *,
    db_url: str,
    run_dir: Path,
    progress: Progress | None,
) -> None:
    """Execute one recorded (running) run here and record its end: ``done`` with the
    outcome, or ``failed`` with the error. A :class:`TwinError` is recorded with its
    message; any other exception as unexpected, with the traceback in ``run.log``.
    While it runs, the record names this process and gets a heartbeat every
    :data:`~twin.engine.store.HEARTBEAT_S` seconds."""
    store = RunStore(db_url, migrate=False)
    store.set_worker(run_id, pid=os.getpid())
    beating = threading.Event()
    threading.Thread(
        target=_heartbeat, args=(store, run_id, beating), name="run-heartbeat", daemon=True
    ).start()
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        outcome = work(request, run_dir, progress)
        names = []
        for name, frame in outcome.series.items():
            store.write_series(run_id, name, frame)
            names.append(name)
        store.mark_done(
            run_id, metrics=outcome.metrics, series_files=[f"{n}.parquet" for n in names]
        )
    except TwinError as exc:
        log.error("run %s failed: %s", run_id, exc)
        store.mark_failed(run_id, error=str(exc))
    except Exception as exc:  # an unexpected bug: keep the record and the traceback
        log.error("run %s failed unexpectedly:\n%s", run_id, traceback.format_exc())
        store.mark_failed(
            run_id,
            error=f"Unexpected {type(exc).__name__}: {exc} (traceback in {run_dir / 'run.log'}).",
        )
    finally:
        beating.set()
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
        store.close()


def _heartbeat(store: RunStore, run_id: str, stop: threading.Event) -> None:
    """Refresh the run's heartbeat until ``stop`` is set or the run is no longer running."""
    while not stop.wait(HEARTBEAT_S):
        try:
            if not store.heartbeat(run_id):
                return
        except Exception:  # a busy database: the next beat may get through
            log.warning("run %s: heartbeat not recorded", run_id, exc_info=True)


def _on_sigterm(run_id: str, db_url: str, run_dir: Path) -> None:
    """In a worker: make SIGTERM end the run as a failed record, not a ``running`` one.

    The signal's C-level handler writes to a wake-up pipe at once, whatever the main
    thread is doing (e.g. inside libsumo), and a thread reading it does the work: when
    the worker's own executor sent it (it writes :data:`STOP_FILE` first) the worker
    just ends and leaves the record to the executor; otherwise it records
    :data:`TERMINATED` and ends with everything it started (its process group).
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)  # the thread acts

    def watch() -> None:
        while signal.SIGTERM not in os.read(read_fd, 64):
            pass
        if not (run_dir / STOP_FILE).exists():
            try:
                store = RunStore(db_url, migrate=False)
                try:
                    store.mark_failed(run_id, error=TERMINATED)
                finally:
                    store.close()
            except Exception:
                log.exception("run %s: could not record that it was terminated", run_id)
        else:
            log.info("run %s: stopped by its executor", run_id)
        with contextlib.suppress(OSError):
            if os.getpgid(0) == os.getpid():  # its own group: the worker and its children
                os.killpg(0, signal.SIGKILL)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="watch-sigterm", daemon=True).start()


def _end_with_executor(executor_pid: int, run_id: str, db_url: str) -> None:
    """In a worker: once the executor process that started it has ended (killed, or
    ended without closing its pool), record the run failed and end the worker with
    whatever it started: nobody is left to collect the run."""
    while os.getppid() == executor_pid:
        time.sleep(PARENT_CHECK_S)
    try:
        store = RunStore(db_url, migrate=False)
        try:
            store.mark_failed(run_id, error=ORPHANED)
        finally:
            store.close()
    except Exception:
        log.exception("run %s: could not record that its executor ended", run_id)
    finally:
        if os.getpgid(0) == os.getpid():  # its own group: the worker and its children
            os.killpg(0, signal.SIGKILL)
        os._exit(1)


def _worker_main(
    work: Work,
    request: RunRequest,
    run_id: str,
    *,
    db_url: str,
    run_dir: str,
    channel: Any,
    nice: int = 0,
) -> None:
    """Entry point of a run's worker process (``nice``: lower its CPU priority, so a
    server that starts it keeps answering while the cores simulate)."""
    if nice > 0:
        with contextlib.suppress(OSError):
            os.nice(nice)
    # its own process group: a cancel stops the worker and what it started (duarouter,
    # a traci SUMO), and a Ctrl-C in the terminal reaches only the executor, which
    # decides what to stop and records it
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _on_sigterm(run_id, db_url, Path(run_dir))
    executor_pid = os.getppid()
    threading.Thread(
        target=_end_with_executor, args=(executor_pid, run_id, db_url),
        name="watch-executor", daemon=True,
    ).start()  # fmt: skip

    def report(done_s: float, total_s: float) -> None:
        channel.put((done_s, total_s))

    run_in_this_process(
        work, request, run_id, db_url=db_url, run_dir=Path(run_dir), progress=report
    )


@dataclass
class _Job:
    """A run whose worker process is up."""

    run_id: str
    run_dir: Path
    proc: Any
    channel: Any
    stop_reason: str | None = None  # set when the executor stopped the worker
    kill_at: float = math.inf  # monotonic time after which a stopped worker gets SIGKILL


def _signal_worker(job: _Job, sig: signal.Signals) -> None:
    """Send ``sig`` to the worker's process group (the worker and its children), or to
    the worker alone while it has not made its own group yet."""
    pid = job.proc.pid
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
        os.kill(pid, sig)


def _exit_words(code: int | None) -> str:
    if code is None:
        return "an unknown exit"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class _Processes:
    """Starting, watching, stopping and finishing worker processes (for the executors)."""

    def __init__(self, settings: Settings, work: Work, store: RunStore, *, nice: int = 0) -> None:
        self.settings = settings
        self.work = work
        self.store = store
        self.nice = nice
        self._mp = mp.get_context("spawn")

    def start(self, run_id: str, request: RunRequest, *, claimed: bool = False) -> _Job:
        """Mark the run running (unless the caller ``claimed`` it already, see
        :meth:`RunStore.claim`) and start its worker."""
        run_dir = self.settings.run_dir(run_id)
        (run_dir / STOP_FILE).unlink(missing_ok=True)  # a requeued run's last stop
        channel = self._mp.Queue()
        proc = self._mp.Process(
            target=_worker_main,
            args=(self.work, request, run_id),
            kwargs={
                "db_url": self.settings.db_url,
                "run_dir": str(run_dir),
                "channel": channel,
                "nice": self.nice,
            },
            name=f"run-{run_id}",
        )
        if not claimed:
            self.store.mark_running(run_id)
        proc.start()
        return _Job(run_id=run_id, run_dir=run_dir, proc=proc, channel=channel)

    @staticmethod
    def stop(job: _Job, reason: str) -> None:
        """Ask the worker to end now (SIGTERM; :meth:`watch` escalates to SIGKILL). The
        reason is written to :data:`STOP_FILE` first, so the worker knows the executor
        records the run (failed with the reason, or queued again)."""
        if job.stop_reason is None:
            job.stop_reason = reason
            job.kill_at = time.monotonic() + KILL_GRACE_S
        try:
            (job.run_dir / STOP_FILE).write_text(reason, encoding="utf-8")
        except OSError:
            log.warning("run %s: could not write %s", job.run_id, STOP_FILE, exc_info=True)
        _signal_worker(job, signal.SIGTERM)

    @staticmethod
    def watch(job: _Job) -> None:
        """SIGKILL for a stopped worker past its grace time."""
        if job.stop_reason is not None and time.monotonic() > job.kill_at:
            _signal_worker(job, signal.SIGKILL)

    @staticmethod
    def drain(job: _Job, progress: RunProgress | None) -> None:
        """Hand the worker's progress reports to ``progress`` (errors in it are logged)."""
        while True:
            try:
                done_s, total_s = job.channel.get_nowait()
            except (queue_mod.Empty, OSError, ValueError, EOFError):
                return
            if progress is not None:
                try:
                    progress(job.run_id, done_s, total_s)
                except Exception:  # a broken progress display must not lose the run
                    log.exception("progress callback failed for run %s", job.run_id)

    def finish(self, job: _Job) -> RunRecord:
        """After the process ended: the record, failed with SUMO's words if the worker
        died before it could report, or with the reason it was stopped."""
        job.proc.join()
        record = self.store.get(job.run_id)
        if record.status == "running":
            if job.stop_reason is not None:
                error = job.stop_reason
            elif job.proc.exitcode in (-signal.SIGTERM, 128 + signal.SIGTERM):
                error = TERMINATED  # before its own handler could record it
            else:
                error = (
                    f"The run's worker process died ({_exit_words(job.proc.exitcode)}) "
                    f"before it could report.\nSUMO says: {post_mortem(job.run_dir)}\n"
                    f"Logs: {job.run_dir / 'run.log'}"
                )
            self.store.mark_failed(job.run_id, error=error)
            record = self.store.get(job.run_id)
        with contextlib.suppress(OSError, ValueError):
            job.channel.close()
        return record


class LocalProcess:
    """Runs one request at a time, in the foreground, each in its own spawned process.

    :meth:`submit` records the request ``queued``; :meth:`wait` (or :meth:`run`) then
    executes it and returns its final record.

    Parameters
    ----------
    settings
        Data dir and run store.
    work
        What the worker does (a module-level function).
    in_process
        Run in this process instead of a worker (debugging; libsumo then allows no
        second run in this process).
    """

    def __init__(self, settings: Settings, work: Work, *, in_process: bool = False) -> None:
        self.settings = settings
        self.work = work
        self.in_process = in_process
        self.store = RunStore.from_settings(settings)
        self._procs = _Processes(settings, work, self.store)
        self._queued: dict[str, RunRequest] = {}

    def __enter__(self) -> LocalProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, request: RunRequest) -> str:
        run_id = record_request(self.store, self.settings, request)
        self._queued[run_id] = request
        return run_id

    def queue_position(self, run_id: str) -> int | None:
        """Position among the runs submitted and not yet waited for (they run in the
        order :meth:`wait` is called; this counts submission order)."""
        for k, rid in enumerate(self._queued):
            if rid == run_id:
                return k
        return None

    def wait(
        self, run_id: str, *, timeout_s: float | None = None, progress: Progress | None = None
    ) -> RunRecord:
        """Execute the queued run now, in the foreground; returns its final record.

        A run still going after ``timeout_s`` is stopped and recorded failed. Ctrl-C
        stops the run, records it failed and re-raises :class:`KeyboardInterrupt`.
        """
        request = self._queued.pop(run_id, None)
        if request is None:
            return self.store.get(run_id)
        if self.in_process:
            self.store.mark_running(run_id)
            run_in_this_process(
                self.work, request, run_id, db_url=self.settings.db_url,
                run_dir=self.settings.run_dir(run_id), progress=progress,
            )  # fmt: skip
            return self.store.get(run_id)
        job = self._procs.start(run_id, request)
        relay: RunProgress | None = None
        if progress is not None:
            on_progress = progress

            def relay(_run_id: str, done_s: float, total_s: float) -> None:
                on_progress(done_s, total_s)

        deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
        try:
            while job.proc.is_alive():
                job.proc.join(POLL_S)
                self._procs.drain(job, relay)
                if time.monotonic() > deadline:
                    self._procs.stop(
                        job, f"{CANCELLED}: the run did not end within {timeout_s:g} s."
                    )
                self._procs.watch(job)
            self._procs.drain(job, relay)
        except KeyboardInterrupt:
            _signal_worker(job, signal.SIGKILL)
            job.proc.join()
            self.store.mark_failed(run_id, error=f"{CANCELLED}: interrupted by the user (Ctrl-C).")
            raise
        return self._procs.finish(job)

    def run(self, request: RunRequest, *, progress: Progress | None = None) -> RunRecord:
        """Record and execute one request; returns its final record."""
        return self.wait(self.submit(request), progress=progress)

    def cancel(self, run_id: str) -> bool:
        """Drop a submitted run that has not been waited for (a running one is in the
        foreground: stop it with Ctrl-C or a ``timeout_s``)."""
        if self._queued.pop(run_id, None) is None:
            return False
        self.store.mark_failed(run_id, error=f"{CANCELLED} before it started.")
        return True

    def close(self) -> None:
        """Cancel what was submitted and not run; close the store."""
        for run_id in list(self._queued):
            self.cancel(run_id)
        self.store.close()


class Pool:
    """A queue of runs executed up to ``workers`` at a time, each in its own process.

    Requests are recorded ``queued`` on :meth:`submit`; a dispatcher thread starts them
    in submission order as worker slots free up, relays their progress and records
    their end. Use it as a context manager (leaving it by an exception, Ctrl-C
    included, cancels every run not yet ended), or call :meth:`close`.

    Parameters
    ----------
    settings
        Data dir and run store.
    work
        What a worker does (a module-level function).
    workers
        Runs at once; default: the machine's cores.
    progress
        Called with ``(run_id, done_s, total_s)`` from the dispatcher thread; an
        exception in it is logged, never lost into the runs.
    """

    def __init__(
        self,
        settings: Settings,
        work: Work,
        *,
        workers: int | None = None,
        progress: RunProgress | None = None,
    ) -> None:
        n = workers if workers is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ConfigError(f"A pool needs at least 1 worker, not {n}.")
        self.settings = settings
        self.workers = n
        self.progress = progress
        self.store = RunStore.from_settings(settings)
        self._procs = _Processes(settings, work, self.store)
        self._lock = threading.Lock()
        self._queue: deque[tuple[str, RunRequest]] = deque()
        self._active: dict[str, _Job] = {}
        self._ended: dict[str, threading.Event] = {}
        self._closing = False
        self._broken: str | None = None  # why the dispatcher stopped, if it crashed
        self._thread = threading.Thread(target=self._dispatch, name="run-pool", daemon=True)
        self._thread.start()

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(cancel=exc_type is not None)

    # ------------------------------------------------------------------ API
    def submit(self, request: RunRequest) -> str:
        """Record the request ``queued`` and put it at the end of the queue."""
        if self._closing:
            raise RunError("The pool is closed; it takes no new runs.")
        if self._broken is not None:
            raise RunError(f"The pool's dispatcher stopped: {self._broken}")
        run_id = record_request(self.store, self.settings, request)
        with self._lock:
            self._ended[run_id] = threading.Event()
            self._queue.append((run_id, request))
        return run_id

    def queue_position(self, run_id: str) -> int | None:
        """0 for the next run to start; ``None`` when the run is not waiting."""
        with self._lock:
            for k, (rid, _req) in enumerate(self._queue):
                if rid == run_id:
                    return k
        return None

    def wait(self, run_id: str, *, timeout_s: float | None = None) -> RunRecord:
        """The final record of a run of this pool (any other run: its record as it is).

        Raises
        ------
        RunError
            The run did not end within ``timeout_s`` (it goes on), or the dispatcher
            stopped.
        """
        event = self._ended.get(run_id)
        if event is not None and not event.wait(timeout_s):
            raise RunError(f"Run {run_id} did not end within {timeout_s} s (it goes on).")
        if self._broken is not None and event is not None and not self._final(run_id):
            raise RunError(f"The pool's dispatcher stopped: {self._broken}")
        return self.store.get(run_id)

    def map(self, requests: Iterable[RunRequest]) -> list[RunRecord]:
        """Submit every request and wait for all; the final records in the order given."""
        ids = [self.submit(r) for r in requests]
        return [self.wait(i) for i in ids]

    def cancel(self, run_id: str) -> bool:
        """Drop a queued run, or stop a running one (its worker and what it started;
        no other run is touched). Recorded failed, the error starting "Cancelled".
        ``False`` when the run is not this pool's or had already ended."""
        with self._lock:
            for item in self._queue:
                if item[0] == run_id:
                    self._queue.remove(item)
                    self.store.mark_failed(run_id, error=f"{CANCELLED} before it started.")
                    self._ended[run_id].set()
                    return True
            job = self._active.get(run_id)
            if job is None:
                return False
            # the dispatcher records it once the process is gone
            self._procs.stop(job, f"{CANCELLED}: the run was stopped before it finished.")
        return True

    def close(self, *, cancel: bool = False) -> None:
        """Take no more runs; wait until every run has ended, or with ``cancel=True``
        cancel the queued and running ones first. Idempotent."""
        self._closing = True
        if cancel:
            with self._lock:
                ids = [rid for rid, _ in self._queue] + list(self._active)
            for rid in ids:
                self.cancel(rid)
        self._thread.join()
        self.store.close()

    # ------------------------------------------------------------------ dispatcher
    def _final(self, run_id: str) -> bool:
        return self.store.get(run_id).status in ("done", "failed")

    def _dispatch(self) -> None:
        try:
            self._dispatch_loop()
        except BaseException as exc:  # never leave waiters hanging
            self._broken = f"{type(exc).__name__}: {exc}"
            log.exception("the run pool's dispatcher stopped")
            error = f"{CANCELLED}: the pool's dispatcher stopped ({exc})."
            with self._lock:
                for job in self._active.values():
                    _signal_worker(job, signal.SIGKILL)
                ids = [job.run_id for job in self._active.values()]
                ids += [run_id for run_id, _ in self._queue]
                for run_id in ids:
                    with contextlib.suppress(Exception):
                        self.store.mark_failed(run_id, error=error)
                self._queue.clear()
                for event in self._ended.values():
                    event.set()

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                while self._queue and len(self._active) < self.workers:
                    run_id, request = self._queue.popleft()
                    try:
                        self._active[run_id] = self._procs.start(run_id, request)
                    except Exception as exc:  # a start that fails must end the record
                        log.error("run %s could not start: %s", run_id, exc)
                        self.store.mark_failed(run_id, error=f"Could not start: {exc}")
                        self._ended[run_id].set()
                active = list(self._active.values())
                idle = not self._queue and not active
            if idle and self._closing:
                return
            for job in active:
                self._procs.drain(job, self.progress)
                self._procs.watch(job)
                if not job.proc.is_alive():
                    self._procs.drain(job, self.progress)
                    try:
                        self._procs.finish(job)
                    except Exception:  # the record could not be read or written
                        log.exception("run %s: could not record its end", job.run_id)
                    with self._lock:
                        del self._active[job.run_id]
                        self._ended[job.run_id].set()
            time.sleep(POLL_S / 4)


class QueueSource(Protocol):
    """Which queued runs a :class:`Dispatcher` serves, and what it is told about them.

    The queue itself is the run store's ``queued`` rows; the source (the layer that
    accepted the runs, e.g. the HTTP API) knows which of them are its own and how to
    rebuild each one's :class:`RunRequest`. Every method is called from the
    dispatcher's thread.
    """

    def waiting(self, limit: int) -> Sequence[tuple[str, RunRequest]]:
        """Up to ``limit`` of the source's runs that may be queued, in the order to
        start them (a run no longer queued is skipped: the claim fails)."""
        ...

    def unfinished(self) -> Sequence[str]:
        """Ids of the source's runs not known to have ended (checked at start: those the
        store holds as ``running`` are left from a server that died)."""
        ...

    def started(self, run_id: str) -> None:
        """The run was claimed and its worker is starting."""
        ...

    def cancelling(self, run_ids: Sequence[str]) -> Sequence[str]:
        """Which of these running runs were asked to stop."""
        ...

    def progress(self, run_id: str, done_s: float, total_s: float) -> None:
        """A progress report of a running run."""
        ...

    def ended(self, record: RunRecord) -> None:
        """The run is over (``done`` or ``failed``) or back in the queue (``queued``)."""
        ...


class Dispatcher:
    """Runs the queue that lives in the run store, up to ``workers`` runs at once, each
    in its own process (as :class:`Pool` does; the same worker life cycle).

    The dispatcher owns no queue in memory: each turn it asks its
    :class:`QueueSource` which runs wait, claims them one at a time
    (:meth:`RunStore.claim`: a run is started once, even by two dispatchers on one
    database), starts their workers, relays progress, stops the runs whose cancellation
    was asked, and reports every end. On :meth:`start` the runs a dead server left
    ``running`` are failed with :data:`INTERRUPTED`; :meth:`close` stops the running
    workers and puts their runs back in the queue (``requeue=True``, the default) or
    fails them. A worker whose dispatcher's process dies records its run failed and
    ends (the same watch as the pool's workers).

    Parameters
    ----------
    settings
        Data dir and run store.
    work
        What a worker does (a module-level function).
    source
        Which runs to serve (see :class:`QueueSource`).
    workers
        Runs at once; default: the machine's cores.
    """

    def __init__(
        self,
        settings: Settings,
        work: Work,
        source: QueueSource,
        *,
        workers: int | None = None,
        nice: int = 0,
    ) -> None:
        n = workers if workers is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ConfigError(f"A dispatcher needs at least 1 worker, not {n}.")
        if not 0 <= nice <= 19:
            raise ConfigError(f"A worker's nice value is 0..19, not {nice}.")
        self.settings = settings
        self.source = source
        self.workers = n
        self.store = RunStore.from_settings(settings)
        self._procs = _Processes(settings, work, self.store, nice=nice)
        self._active: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.broken: str | None = None
        """Why the dispatcher's thread stopped, if it crashed."""

    def start(self) -> Dispatcher:
        """Fail the runs a dead server left running, then start dispatching."""
        for run_id in self.source.unfinished():
            self.store.fail_if(run_id, "running", error=INTERRUPTED)
            try:
                record = self.store.get(run_id)
            except RunNotFoundError:
                continue
            if record.status != "running":
                self.source.ended(record)  # ended, or still queued: the source's books
        self._thread = threading.Thread(target=self._loop, name="run-dispatcher", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look at the queue now (a run was submitted or cancelled)."""
        self._wake.set()

    def active(self) -> list[str]:
        """Ids of the runs whose workers are up."""
        with self._lock:
            return list(self._active)

    def worker_pid(self, run_id: str) -> int | None:
        """The process id of a running run's worker (``None`` when not running here)."""
        with self._lock:
            job = self._active.get(run_id)
        return None if job is None else job.proc.pid

    def close(self, *, requeue: bool = True) -> None:
        """Stop dispatching; stop the running workers (their process groups) and put
        their runs back in the queue, or with ``requeue=False`` fail them
        (:data:`INTERRUPTED`). Idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            jobs = list(self._active.values())
            self._active.clear()
        for job in jobs:
            self._procs.stop(job, INTERRUPTED)
        for job in jobs:
            job.proc.join(KILL_GRACE_S)
            if job.proc.is_alive():
                _signal_worker(job, signal.SIGKILL)
                job.proc.join()
            if requeue and self.store.requeue(job.run_id):
                self.source.ended(self.store.get(job.run_id))
                continue
            with contextlib.suppress(Exception):
                self.source.ended(self._procs.finish(job))
        self.store.close()

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._turn()
                self._wake.wait(POLL_S / 2)
                self._wake.clear()
        except BaseException as exc:  # keep serving nothing rather than half
            self.broken = f"{type(exc).__name__}: {exc}"
            log.exception("the run dispatcher stopped")

    def _turn(self) -> None:
        free = self.workers - len(self._active)
        if free > 0:
            for run_id, request in self.source.waiting(free):
                if len(self._active) >= self.workers or self._stop.is_set():
                    break
                if not self.store.claim(run_id):
                    continue  # cancelled meanwhile, or taken by another dispatcher
                self.source.started(run_id)
                try:
                    job = self._procs.start(run_id, request, claimed=True)
                except Exception as exc:  # a start that fails must end the record
                    log.error("run %s could not start: %s", run_id, exc)
                    self.store.mark_failed(run_id, error=f"Could not start: {exc}")
                    self.source.ended(self.store.get(run_id))
                    continue
                with self._lock:
                    self._active[run_id] = job
        with self._lock:
            jobs = list(self._active.values())
        if not jobs:
            return
        for run_id in self.source.cancelling([job.run_id for job in jobs]):
            stopping = self._active.get(run_id)
            if stopping is not None:
                self._procs.stop(stopping, f"{CANCELLED}: the run was stopped before it finished.")
        for job in jobs:
            self._procs.drain(job, self.source.progress)
            self._procs.watch(job)
            if job.proc.is_alive():
                continue
            self._procs.drain(job, self.source.progress)
            try:
                record = self._procs.finish(job)
            except Exception:  # the record could not be read or written
                log.exception("run %s: could not record its end", job.run_id)
                continue
            finally:
                with self._lock:
                    self._active.pop(job.run_id, None)
            try:
                self.source.ended(record)
            except Exception:  # the source's bookkeeping must not stop the runs
                log.exception("run %s: the queue source failed on its end", job.run_id)


def execute_queued(
    settings: Settings,
    work: Work,
    run_id: str,
    request: RunRequest,
    *,
    progress: Progress | None = None,
) -> RunRecord:
    """Start a recorded ``queued`` run in its own spawned worker process, wait for it,
    and return its final record (the same worker and life cycle as :class:`Pool`'s).

    For executors whose own workers outlive a run (a Dask worker runs many): the run
    still gets a fresh process, so libsumo's one simulation per process holds and a
    crash takes only that run. The run is claimed first (:meth:`RunStore.claim`); a run
    that is no longer queued (claimed by another attempt, cancelled) is not started and
    its record is returned as it is.
    """
    store = RunStore(settings.db_url, migrate=False)
    try:
        if not store.claim(run_id):
            return store.get(run_id)
        settings.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        procs = _Processes(settings, work, store)
        try:
            job = procs.start(run_id, request, claimed=True)
        except Exception as exc:  # a start that fails must end the record
            log.error("run %s could not start: %s", run_id, exc)
            store.mark_failed(run_id, error=f"Could not start: {exc}")
            return store.get(run_id)
        relay: RunProgress | None = None
        if progress is not None:
            on_progress = progress

            def relay(_run_id: str, done_s: float, total_s: float) -> None:
                on_progress(done_s, total_s)

        while job.proc.is_alive():
            job.proc.join(POLL_S)
            procs.drain(job, relay)
        procs.drain(job, relay)
        return procs.finish(job)
    finally:
        store.close()


def run_requests(
    settings: Settings,
    work: Work,
    requests: Sequence[RunRequest],
    *,
    workers: int | None = None,
    progress: RunProgress | None = None,
) -> list[RunRecord]:
    """Run every request on a :class:`Pool`; the final records, in the order given."""
    with Pool(settings, work, workers=workers, progress=progress) as pool:
        return pool.map(requests)


def require_done(record: RunRecord) -> RunRecord:
    """The record if it is done, else a :class:`RunError` with the stored error."""
    if record.status != "done":
        raise RunError(f"Run {record.id} {record.status}: {record.error or 'no error recorded'}")
    return record
