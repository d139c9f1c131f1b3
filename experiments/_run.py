"""A benchmark's runs go through the run executor: every case is a recorded run.

Each case becomes a :class:`~twin.engine.executors.RunRequest`, executed in its own
spawned worker by :func:`~twin.engine.executors.run_requests` (libsumo allows one
simulation per process) and recorded in the run store of the benchmark's settings,
with the spec, seed, package versions and the city's content hash. The benchmark then
reads its numbers from the records' metrics and, where it needs a time series, from
the stored series (:meth:`~twin.engine.store.RunStore.read_series`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from city_models.build import City
from scenarios.loader import parse_scenario
from twin.app.compose import execute_request, run_request
from twin.config import Settings
from twin.engine.executors import RunRequest, run_requests
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
    settings: Settings, requests: Sequence[RunRequest], *, workers: int, label: str
) -> list[RunRecord]:
    """Execute every request (``workers`` at a time) with a progress bar; the final
    records in the order given.

    Raises
    ------
    RunError
        Some run failed (every other run still ends and stays recorded); the message
        names the failed runs and their errors.
    """
    fraction: dict[str, float] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True)) as bar:  # stdout: the JSON
        task = bar.add_task(label, total=len(requests))

        def on_progress(run_id: str, done_s: float, total_s: float) -> None:
            fraction[run_id] = done_s / total_s if total_s > 0 else 1.0
            bar.update(task, completed=sum(fraction.values()))

        records = run_requests(
            settings, execute_request, requests, workers=workers, progress=on_progress
        )
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
