"""A benchmark's runs go through the run executor: every case is a recorded run.

Each case becomes a :class:`~twin.engine.executors.RunRequest`, executed in its own
spawned worker by the sweep runner (:func:`twin.app.sweep.run_cells`: the local pool,
or a Dask cluster with ``scheduler``; libsumo allows one simulation per process) and
recorded in the run store of the benchmark's settings,
with the spec, seed, package versions and the city's content hash. The benchmark then
reads its numbers from the records' metrics and, where it needs a time series, from
the stored series (:meth:`~twin.engine.store.RunStore.read_series`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from city_models.build import City
from scenarios.loader import parse_scenario
from twin.app.compose import run_request
from twin.app.sweep import progress_bar, run_cells
from twin.config import Settings
from twin.engine.executors import RunRequest
from twin.engine.store import RunRecord
from twin.errors import RunError


def request(
    raw: dict[str, Any],
    city: City,
    *,
    seed: int,
    source: str,
    owner: str,
    extra_additional: tuple[Path, ...] = (),
) -> RunRequest:
    """The run request for a scenario given as a dict (validated here, in the main
    process, so a bad case fails before any run starts)."""
    spec = parse_scenario(raw, source=source)
    return run_request(spec, city, seed=seed, owner=owner, extra_additional=extra_additional)


def run_all(
    settings: Settings,
    requests: Sequence[RunRequest],
    *,
    workers: int,
    label: str,
    scheduler: str | None = None,
) -> list[RunRecord]:
    """Execute every request (``workers`` at a time) with a progress bar; the final
    records in the order given. Every request runs, also one done before (a benchmark
    measures); ``scheduler`` (``tcp://HOST:PORT`` or ``"local"``) runs them on Dask.

    Raises
    ------
    RunError
        Some run failed (every other run still ends and stays recorded); the message
        names the failed runs and their errors.
    """
    with progress_bar(label, len(requests)) as on_progress:  # stderr: stdout is the JSON
        ran = run_cells(settings, requests, workers=workers, scheduler=scheduler,
                        resume=False, progress=on_progress)  # fmt: skip
    records = list(ran.records)
    failed = [r for r in records if r.status != "done"]
    if failed:
        lines = "\n".join(f"- {r.id} ({r.scenario_name}, seed {r.seed}): {r.error}" for r in failed)
        raise RunError(
            f"{len(failed)} of {len(records)} {label} runs failed (records in {settings.db_url}):"
            f"\n{lines}"
        )
    return records


def metrics(record: RunRecord) -> dict[str, Any]:
    """The metrics of a done run."""
    if record.metrics is None:
        raise RunError(f"Run {record.id} ({record.status}) has no metrics.")
    return record.metrics
