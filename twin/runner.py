"""Runs as records: every run owns a worker process, and the store always knows its fate.

libsumo allows one simulation per process, and SUMO can die hard (a segfault takes
the process with it). So :func:`execute` records the run as ``running``, starts a
fresh *spawned* process for it, streams its progress back over a queue, and after the
process ends makes sure the record says ``done`` or ``failed`` with the error — also
when the worker was killed before it could say so itself.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue as queue_mod
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from twin.config import Settings
from twin.errors import RunError, TwinError
from twin.store import RunRecord, RunStore, new_run_id

log = logging.getLogger(__name__)

Progress = Callable[[float, float], None]
VERSIONED = ("citytwin", "eclipse-sumo", "libsumo", "numba", "numpy", "simpy", "sqlalchemy")


@dataclass(frozen=True)
class RunRequest:
    """What a worker needs; plain data so it pickles into a spawned process."""

    spec: dict[str, Any]
    city_path: str
    seed: int
    data_dir: str
    db_url: str
    gui: bool = False


def versions() -> dict[str, str]:
    out = {}
    for pkg in VERSIONED:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    from twin.sumo_net import sumo_version

    out["sumo"] = sumo_version()
    return out


def execute(
    spec: Any,
    city: Any,
    *,
    seed: int,
    settings: Settings,
    progress: Progress | None = None,
    gui: bool = False,
    in_process: bool = False,
) -> RunRecord:
    """Record, run and finish one scenario run; returns the final record.

    Parameters
    ----------
    spec
        A validated :class:`scenarios.spec.ScenarioSpec`.
    city
        A built :class:`city_models.build.City`.
    in_process
        Run in this process instead of a worker (debugging; libsumo then allows no
        second run in this process).
    """
    store = RunStore.from_settings(settings)
    run_id = new_run_id()
    run_dir = settings.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    store.create_run(
        run_id=run_id,
        scenario_name=spec.name,
        scenario_kind=spec.kind,
        spec=spec.model_dump(mode="json"),
        city_name=city.name,
        city_hash=city.manifest.content_hash,
        seed=seed,
        versions=versions(),
        run_dir=run_dir,
    )
    request = RunRequest(
        spec=spec.model_dump(mode="json"),
        city_path=str(city.path),
        seed=seed,
        data_dir=str(settings.data_dir),
        db_url=settings.db_url,
        gui=gui,
    )
    if in_process:
        _work(request, run_id, progress)
    else:
        _spawn(request, run_id, progress, store)
    record = store.get(run_id)
    store.close()
    return record


def _spawn(request: RunRequest, run_id: str, progress: Progress | None, store: RunStore) -> None:
    ctx = mp.get_context("spawn")
    channel: Any = ctx.Queue()
    proc = ctx.Process(target=_worker_main, args=(request, run_id, channel), name=f"run-{run_id}")
    proc.start()
    try:
        while proc.is_alive() or not channel.empty():
            try:
                done_s, total_s = channel.get(timeout=0.2)
            except queue_mod.Empty:
                continue
            if progress is not None:
                progress(done_s, total_s)
    except KeyboardInterrupt:
        proc.terminate()
        proc.join()
        store.mark_failed(run_id, error="Interrupted by the user (Ctrl-C); the run was stopped.")
        raise
    proc.join()
    code = proc.exitcode or 0
    if code != 0 and store.get(run_id).status == "running":
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        run_dir = Path(request.data_dir) / "runs" / run_id
        store.mark_failed(
            run_id,
            error=(
                f"The run's worker process died ({how}) before it could report.\n"
                f"SUMO says: {_post_mortem(run_dir)}\nLogs: {run_dir / 'run.log'}"
            ),
        )


def _post_mortem(run_dir: Path) -> str:
    """Why SUMO died: its error log if it wrote one, else what a plain sumo says."""
    import json

    from twin.simulation import SUMO_ARGS_FILE
    from twin.sumo_net import diagnose

    error_log = run_dir / "sumo_errors.log"
    if error_log.exists() and error_log.read_text(errors="replace").strip():
        return error_log.read_text(errors="replace").strip()[-2000:]
    args_file = run_dir / SUMO_ARGS_FILE
    if not args_file.exists():
        return "nothing: it died before SUMO was started"
    return diagnose(json.loads(args_file.read_text(encoding="utf-8")))


def _worker_main(request: RunRequest, run_id: str, channel: Any) -> None:
    """Entry point of a run's worker process."""

    def report(done_s: float, total_s: float) -> None:
        channel.put((done_s, total_s))

    _work(request, run_id, report)


def _work(request: RunRequest, run_id: str, progress: Progress | None) -> None:
    from city_models.build import load_city
    from scenarios.loader import parse_scenario
    from scenarios.registry import get_kind
    from twin.simulation import simulate

    store = RunStore(request.db_url)
    run_dir = Path(request.data_dir) / "runs" / run_id
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        spec = parse_scenario(request.spec, source=f"run {run_id}")
        city = load_city(Path(request.city_path))
        behaviour = get_kind(spec.kind).behaviour(spec)
        result = simulate(
            spec, city, behaviour, seed=request.seed, run_dir=run_dir, progress=progress,
            gui=request.gui,
        )  # fmt: skip
        names = []
        for name, frame in result.series.items():
            store.write_series(run_id, name, frame)
            names.append(name)
        if result.events:
            import pandas as pd

            store.write_series(run_id, "events", pd.DataFrame(result.events))
            names.append("events")
        store.mark_done(
            run_id, metrics=result.metrics, series_files=[f"{n}.parquet" for n in names]
        )
        log.info("run %s done", run_id)
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
        root.removeHandler(handler)
        handler.close()
        store.close()


def require_done(record: RunRecord) -> RunRecord:
    """The record if it is done, else a :class:`RunError` with the stored error."""
    if record.status != "done":
        raise RunError(f"Run {record.id} {record.status}: {record.error or 'no error recorded'}")
    return record
