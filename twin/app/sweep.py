"""Sweeps: scenario x parameter grid x seeds from a file, resumable, on a pool or Dask.

``twin sweep SWEEP.toml`` is the file form of ``twin run SCENARIO --set ... --vary ...
--seeds ...`` (:mod:`twin.app.study`: the same overrides, validated like a scenario
file, the same common random numbers and paired 95 % intervals). A sweep file::

    name = "demand-vs-control"           # optional; default: the file's stem
    scenario = "baseline"                # a shipped name or a path (relative to this
                                         # file); a list runs the grid on each
    city = "../cities/district-s1"       # optional: a built city folder; default: the
                                         # one each scenario names
    seeds = "1-5"                        # "1-5", "1,2,5", 3 or [1, 2]; default: the
                                         # scenario's own seed
    metrics = ["mean_travel_time_s"]     # optional: shown beside the kind's headlines

    [set]                                # optional: the same for every cell
    "sim.duration_s" = 1800

    [grid]                               # optional: every combination, in this order
    "demand.scale" = [1.0, 1.5]
    "control.default" = ["fixed", "adaptive"]

A *cell* is one scenario x one grid combination (a *variant*) x one seed: one run
request, one record in the run store. Every cell runs in its own spawned process on the
executor's local :class:`~twin.engine.executors.Pool` (default) or on a Dask cluster
(:mod:`twin.engine.dask_executor`). A cell is *done* when the store holds a ``done``
record with the same :func:`spec_hash` (the validated spec and the seed), the same
city hash and the same owner; such cells are not run again (resume), so a sweep that
was interrupted, or lost its scheduler, is finished by starting it again.

Results: every cell's record, plus two Parquet tables (:func:`cells_table`,
:func:`summary_table`) and the mean with its 95 % CI per variant and metric.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from city_models.build import City, build_city, load_city
from scenarios.loader import library_scenarios, load_scenario
from scenarios.spec import ScenarioSpec
from twin.app.compose import execute_request, run_request
from twin.app.study import Summary, numeric_metrics, parse_seeds, study_table, with_overrides
from twin.config import Settings
from twin.engine.executors import RunProgress, RunRequest, Work, run_requests
from twin.engine.store import RunRecord, RunStore
from twin.errors import ConfigError, TwinError

log = logging.getLogger(__name__)

FIELDS = ("name", "scenario", "city", "seeds", "metrics", "set", "grid")
"""The top-level fields of a sweep file."""
CELLS_FILE = "cells.parquet"
SUMMARY_FILE = "summary.parquet"
GRID_PREFIX = "grid."
METRIC_PREFIX = "metric."
RESUME_PAGE = 500
"""Records read per page when looking for cells already done."""
NO_GRID = "as given"
"""The label of the one variant of a sweep without a grid."""


# ----------------------------------------------------------------------------- the file
@dataclass(frozen=True)
class SweepFile:
    """A sweep file as read (checked for shape; the values are checked against the
    scenarios by :func:`plan_sweep`)."""

    path: Path
    name: str
    scenarios: tuple[str, ...]
    city: Path | None = None
    seeds: tuple[int, ...] | None = None
    metrics: tuple[str, ...] = ()
    set: tuple[tuple[str, Any], ...] = ()
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()


def _flat(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"sim": {"duration_s": 60}}`` -> ``[("sim.duration_s", 60)]`` (quoted dotted
    keys and sub-tables mean the same)."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flat(value, f"{path}.")
        else:
            out.append((path, value))
    return out


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def read_toml_file(path: Path, where: str, fields: Sequence[str]) -> dict[str, Any]:
    """A TOML file's top-level table (a BOM is allowed), with only ``fields`` in it.

    Raises
    ------
    ConfigError
        ``where`` (e.g. ``Sweep file PATH``) and what is wrong: unreadable, not UTF-8,
        not TOML, or an unknown top-level field (the allowed ones named).
    """
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text ({exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}.") from None
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: field '{unknown[0]}' is not a known field; allowed: {', '.join(fields)}."
        )
    return raw


def load_sweep(path: str | Path) -> SweepFile:
    """Read a sweep file (format: the module docstring).

    Raises
    ------
    ConfigError
        Naming the file, the field, the value and what is allowed.
    """
    path = Path(path)
    where = f"Sweep file {path}"
    raw = read_toml_file(path, where, FIELDS)
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip() or "/" in name or name.startswith("."):
        raise ConfigError(
            f"{where}: field 'name' = {name!r}; allowed: a non-empty text without '/' "
            "(it names the sweep's output folder)."
        )
    scenarios = raw.get("scenario")
    if isinstance(scenarios, str):
        scenarios = [scenarios]
    if (
        not isinstance(scenarios, list)
        or not scenarios
        or not all(isinstance(s, str) and s for s in scenarios)
    ):
        shipped = ", ".join(library_scenarios())
        raise ConfigError(
            f"{where}: field 'scenario' = {scenarios!r}; allowed: a scenario file (a path "
            f"relative to the sweep file) or a shipped name ({shipped}), or a list of them."
        )
    if len(set(scenarios)) != len(scenarios):
        raise ConfigError(f"{where}: field 'scenario' names a scenario twice: {scenarios!r}.")
    city = raw.get("city")
    if city is not None and not (isinstance(city, str) and city):
        raise ConfigError(
            f"{where}: field 'city' = {city!r}; allowed: the path of a built city folder "
            "(relative to the sweep file), e.g. 'cities/district-s1'."
        )
    seeds = _seeds(raw.get("seeds"), where)
    metrics = raw.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics):
        raise ConfigError(
            f"{where}: field 'metrics' = {metrics!r}; allowed: a list of metric names, "
            'e.g. ["mean_delay_s"].'
        )
    fixed = raw.get("set", {})
    if not isinstance(fixed, dict):
        raise ConfigError(
            f"{where}: field 'set' = {fixed!r}; allowed: a table of FIELD = VALUE, e.g. "
            '[set] "sim.duration_s" = 600.'
        )
    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise ConfigError(
            f"{where}: field 'grid' = {grid_raw!r}; allowed: a table of FIELD = [VALUES], "
            'e.g. [grid] "demand.scale" = [1.0, 1.5].'
        )
    grid: list[tuple[str, tuple[Any, ...]]] = []
    for key, values in _flat(grid_raw):
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{where}: field 'grid.{key}' = {values!r}; allowed: a non-empty array of "
                f'values, e.g. "{key}" = [{_show(values)}, ...] (a single value goes in [set]).'
            )
        shown = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(shown)) != len(shown):
            raise ConfigError(
                f"{where}: field 'grid.{key}' = {values!r} lists a value twice; allowed: "
                "distinct values."
            )
        grid.append((key, tuple(values)))
    set_items = _flat(fixed)
    both = sorted({k for k, _ in set_items} & {k for k, _ in grid})
    if both:
        raise ConfigError(
            f"{where}: field '{both[0]}' is both in [set] and in [grid]; allowed: one of them."
        )
    choose_city = [k for k, _ in [*set_items, *grid] if k == "city" or k.startswith("city.")]
    if city is not None and choose_city:
        raise ConfigError(
            f"{where}: field 'city' and '{choose_city[0]}' both choose the city; "
            "allowed: one of them."
        )
    base = path.parent
    return SweepFile(
        path=path,
        name=name.strip(),
        scenarios=tuple(scenarios),
        city=(base / city) if city is not None else None,
        seeds=seeds,
        metrics=tuple(metrics),
        set=tuple(set_items),
        grid=tuple(grid),
    )


def _seeds(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return tuple(parse_seeds(value))
        except ConfigError as exc:
            raise ConfigError(f"{where}: field 'seeds': {exc}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: field 'seeds' = {value!r} gives a seed twice.")
        return tuple(value)
    raise ConfigError(
        f'{where}: field \'seeds\' = {value!r}; allowed: "1-5", "1,2,5", a whole number '
        ">= 0 or a list of them."
    )


# ----------------------------------------------------------------------------- cells
def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: one text per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip


def spec_hash(spec: Mapping[str, Any], seed: int) -> str:
    """The identity of a cell's simulation: sha256 (hex) of the canonical JSON of
    ``{"seed": seed, "spec": spec}``, ``spec`` being the validated spec with every
    default filled in (``ScenarioSpec.model_dump(mode="json")``, as a record stores it).
    Keys are sorted and there are no spaces, so the hash does not depend on the order
    or layout of the file the spec came from. With the city hash it decides whether a
    cell is done already."""
    text = canonical_json({"seed": int(seed), "spec": dict(spec)})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cell_key(
    spec: Mapping[str, Any], seed: int, city_hash: str, owner: str | None
) -> tuple[str, ...]:
    """What makes two runs the same cell: spec hash, city hash, owner."""
    return (spec_hash(spec, seed), city_hash, owner or "")


@dataclass(frozen=True)
class Cell:
    """One scenario x one variant x one seed, as a run request."""

    scenario: str
    variant: str
    values: tuple[tuple[str, Any], ...]
    seed: int
    request: RunRequest

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.request.spec, self.request.seed)


@dataclass(frozen=True)
class SweepPlan:
    """The cells of a sweep, in order: scenario, then variant (grid order), then seed."""

    sweep: SweepFile
    cells: tuple[Cell, ...]
    kinds: dict[str, str] = field(default_factory=dict)  # scenario -> kind


def _scenario_path(entry: str, sweep: SweepFile) -> str | Path:
    near = sweep.path.parent / entry
    if near.is_file():
        return near
    if entry in library_scenarios() or Path(entry).is_file():
        return entry
    raise ConfigError(
        f"Sweep file {sweep.path}: field 'scenario' = {entry!r} is neither a file (looked "
        f"for {near}) nor a shipped scenario; allowed: a path relative to the sweep file "
        f"or one of {', '.join(library_scenarios())}."
    )


def _override(
    spec: ScenarioSpec, overrides: Sequence[tuple[str, Any]], *, source: str
) -> ScenarioSpec:
    """:func:`with_overrides`, its path errors (a list index out of range) named by
    ``source`` as its validation errors are."""
    try:
        return with_overrides(spec, overrides, source=source)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def plan_sweep(
    sweep: SweepFile, settings: Settings, *, city_of: Callable[[ScenarioSpec], City] | None = None
) -> SweepPlan:
    """Every cell's validated spec and run request. Each [set] and [grid] value is
    validated on its own first, so an error names the sweep file, the field and the
    value (and what the scenario allows); then every combination.

    ``city_of`` chooses a variant's city (default: the sweep's ``city`` folder, else the
    city the spec names, built and cached like ``twin run`` does)."""
    where = f"Sweep file {sweep.path}"
    cities: dict[str, City] = {}

    def default_city(spec: ScenarioSpec) -> City:
        if sweep.city is not None:
            key = str(sweep.city)
            if key not in cities:
                try:
                    cities[key] = load_city(sweep.city)
                except (TwinError, OSError) as exc:
                    raise ConfigError(
                        f"{where}: field 'city' = {str(sweep.city)!r}: {exc}"
                    ) from None
            return cities[key]
        if spec.city.path:
            key = spec.city.path
            if key not in cities:
                cities[key] = load_city(Path(spec.city.path))
            return cities[key]
        key = f"{spec.city.preset}-s{spec.city.seed}"
        if key not in cities:
            cities[key] = build_city(spec.city.preset, seed=spec.city.seed,
                                     cities_dir=settings.cities_dir)  # fmt: skip
        return cities[key]

    choose = city_of or default_city
    cells: list[Cell] = []
    kinds: dict[str, str] = {}
    for entry in sweep.scenarios:
        try:
            base = load_scenario(_scenario_path(entry, sweep))
        except TwinError as exc:
            raise ConfigError(f"{where}: field 'scenario' = {entry!r}: {exc}") from None
        kinds[entry] = base.kind
        for path, value in sweep.set:
            _override(base, [(path, value)], source=f"{where} [set] {path} = {_show(value)}")
        base = _override(base, sweep.set, source=f"{where} [set]")
        for path, values in sweep.grid:
            for value in values:
                _override(base, [(path, value)], source=f"{where} [grid] {path} = {_show(value)}")
        seeds = sweep.seeds if sweep.seeds is not None else (base.seed,)
        axes = [[(path, v) for v in values] for path, values in sweep.grid]
        for combo in itertools.product(*axes):
            label = " ".join(f"{p}={_show(v)}" for p, v in combo) or NO_GRID
            spec = _override(base, combo, source=f"{where} [grid] {label}")
            city = choose(spec)
            if sweep.city is not None:  # the record names the city that ran
                spec = spec.model_copy(
                    update={"city": spec.city.model_copy(update={"path": str(city.path.resolve())})}
                )
            for seed in seeds:
                cells.append(
                    Cell(entry, label, tuple(combo), seed, run_request(spec, city, seed=seed))
                )
    return SweepPlan(sweep=sweep, cells=tuple(cells), kinds=kinds)


# ----------------------------------------------------------------------------- running
def done_records(store: RunStore, requests: Sequence[RunRequest]) -> dict[int, RunRecord]:
    """The requests that are done already: index -> the newest ``done`` record with the
    same :func:`cell_key` (spec hash with the seed, city hash, owner)."""
    wanted: dict[tuple[str, ...], list[int]] = {}
    for k, r in enumerate(requests):
        wanted.setdefault(cell_key(r.spec, r.seed, r.city_hash, r.owner), []).append(k)
    found: dict[tuple[str, ...], RunRecord] = {}
    for kind in sorted({r.scenario_kind for r in requests}):
        offset = 0
        while len(found) < len(wanted):
            page = store.list(status="done", kind=kind, offset=offset, limit=RESUME_PAGE)
            for record in page:  # newest first: the first match is the newest
                key = cell_key(record.spec, record.seed, record.city_hash, record.owner)
                if key in wanted and key not in found:
                    found[key] = record
            if len(page) < RESUME_PAGE:
                break
            offset += RESUME_PAGE
    return {k: found[key] for key, ks in wanted.items() if key in found for k in ks}


@dataclass(frozen=True)
class CellsRun:
    """The final record of every request, in the order given, and which of them were
    done already (resumed, not run again)."""

    records: tuple[RunRecord, ...]
    resumed: tuple[bool, ...]

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.records if r.status != "done"]


def run_cells(
    settings: Settings,
    requests: Sequence[RunRequest],
    *,
    work: Work = execute_request,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = True,
    progress: RunProgress | None = None,
) -> CellsRun:
    """Run the requests not done yet (``resume``) on the local pool (``scheduler``
    ``None``; ``workers`` at once) or on Dask (``scheduler``: ``tcp://HOST:PORT``, or
    ``"local"`` for a LocalCluster of ``workers``); every run is a record.

    ``progress`` gets ``(run_id, done_s, total_s)``; a resumed cell reports itself
    complete at once. The sweep runner of ``twin sweep`` and of the benchmarks.
    """
    reused: dict[int, RunRecord] = {}
    if resume and requests:
        store = RunStore.from_settings(settings)
        try:
            reused = done_records(store, requests)
        finally:
            store.close()
    if reused:
        log.info("%d of %d cells are done already; not run again", len(reused), len(requests))
    if progress is not None:
        for record in reused.values():
            progress(record.id, 1.0, 1.0)
    todo = [k for k in range(len(requests)) if k not in reused]
    pending = [requests[k] for k in todo]
    ran: list[RunRecord] = []
    if pending and scheduler is None:
        ran = run_requests(settings, work, pending, workers=workers, progress=progress)
    elif pending and scheduler is not None:
        from twin.engine.dask_executor import run_on_dask  # noqa: PLC0415 - dask: only here

        ran = run_on_dask(settings, work, pending, scheduler=scheduler, workers=workers,
                          progress=progress)  # fmt: skip
    by_index = dict(reused)
    by_index.update(zip(todo, ran, strict=True))
    return CellsRun(
        records=tuple(by_index[k] for k in range(len(requests))),
        resumed=tuple(k in reused for k in range(len(requests))),
    )


@contextlib.contextmanager
def progress_bar(
    label: str, total: int, *, console: Console | None = None, transient: bool = False
) -> Iterator[RunProgress]:
    """A rich progress bar over ``total`` runs (on stderr by default); yields the
    ``(run_id, done_s, total_s)`` callback that moves it."""
    fraction: dict[str, float] = {}
    lock = threading.Lock()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console or Console(stderr=True), transient=transient) as bar:
        task = bar.add_task(label, total=total)

        def on_progress(run_id: str, done_s: float, total_s: float) -> None:
            with lock:
                fraction[run_id] = min(done_s / total_s, 1.0) if total_s > 0 else 1.0
                bar.update(task, completed=sum(fraction.values()))

        yield on_progress


# ----------------------------------------------------------------------------- tables
def _column(values: list[Any]) -> list[Any]:
    """A grid column Parquet can hold: one type, else every value as JSON text."""
    kinds = {type(v) for v in values}
    if kinds <= {int, float} or (len(kinds) == 1 and kinds <= {str, bool, int, float}):
        return values
    return [_show(v) for v in values]


def cells_table(plan: SweepPlan, run: CellsRun) -> pd.DataFrame:
    """One row per cell (tidy: a cell is one observation): ``sweep``, ``scenario``,
    ``kind``, ``variant``, ``seed``, ``run_id``, ``status``, ``resumed``, ``error``,
    ``spec_hash``, ``city_hash``, then ``grid.<field>`` per grid field (the cell's
    value) and ``metric.<name>`` per numeric metric (NaN where a cell has none: failed,
    or not measured)."""
    rows: list[dict[str, Any]] = []
    for cell, record, resumed in zip(plan.cells, run.records, run.resumed, strict=True):
        row: dict[str, Any] = {
            "sweep": plan.sweep.name,
            "scenario": cell.scenario,
            "kind": cell.request.scenario_kind,
            "variant": cell.variant,
            "seed": cell.seed,
            "run_id": record.id,
            "status": record.status,
            "resumed": resumed,
            "error": record.error,
            "spec_hash": cell.spec_hash,
            "city_hash": cell.request.city_hash,
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    for path, _values in plan.sweep.grid:
        values = [dict(c.values)[path] for c in plan.cells]
        frame[f"{GRID_PREFIX}{path}"] = _column(values)
    metrics = [numeric_metrics(r.metrics or {}) if r.status == "done" else {} for r in run.records]
    names = sorted({name for m in metrics for name in m})
    for name in names:
        frame[f"{METRIC_PREFIX}{name}"] = pd.Series(
            [m.get(name, math.nan) for m in metrics], dtype="float64"
        )
    return frame


def study_tables(
    plan: SweepPlan, run: CellsRun, *, metrics: Sequence[str] = ()
) -> dict[str, dict[str, dict[str, Summary]]]:
    """Per scenario, per variant, per metric: mean, sd, 95 % CI over the seeds and the
    paired difference against the scenario's first variant (:func:`study_table`).
    ``metrics``: which (default: the kind's headlines and the sweep's ``metrics``)."""
    out: dict[str, dict[str, dict[str, Summary]]] = {}
    for entry in plan.sweep.scenarios:
        results: dict[str, dict[int, dict[str, Any]]] = {}
        for cell, record in zip(plan.cells, run.records, strict=True):
            if cell.scenario != entry:
                continue
            by_seed = results.setdefault(cell.variant, {})
            if record.status == "done" and record.metrics is not None:
                by_seed[cell.seed] = record.metrics
        names = [*plan.sweep.metrics, *metrics]
        out[entry] = study_table(plan.kinds[entry], results, metrics=names)
    return out


def summary_table(plan: SweepPlan, run: CellsRun) -> pd.DataFrame:
    """One row per scenario x variant x metric (every numeric metric of the done
    cells, and the sweep's ``metrics``): ``n``, ``mean``, ``sd``, ``ci95`` (half-width,
    Student's t) and the paired difference against the scenario's first variant,
    ``diff_mean`` and ``diff_ci95``."""
    names = sorted({n for r in run.records if r.status == "done"
                    for n in numeric_metrics(r.metrics or {})})  # fmt: skip
    rows = []
    for entry, table in study_tables(plan, run, metrics=names).items():
        for variant, row in table.items():
            for metric, s in row.items():
                if metric not in names and metric not in plan.sweep.metrics:
                    continue  # a headline of the kind that no cell measured
                rows.append({
                    "sweep": plan.sweep.name, "scenario": entry, "variant": variant,
                    "metric": metric, "n": s.n, "mean": s.mean, "sd": s.sd, "ci95": s.ci95,
                    "diff_mean": math.nan if s.diff_mean is None else s.diff_mean,
                    "diff_ci95": math.nan if s.diff_ci95 is None else s.diff_ci95,
                })  # fmt: skip
    columns = ["sweep", "scenario", "variant", "metric", "n", "mean", "sd", "ci95",
               "diff_mean", "diff_ci95"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def write_tables(plan: SweepPlan, run: CellsRun, out_dir: Path) -> dict[str, Path]:
    """``cells.parquet`` and ``summary.parquet`` in ``out_dir`` (replaced whole, each
    invocation: resumed cells included)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"cells": out_dir / CELLS_FILE, "summary": out_dir / SUMMARY_FILE}
    for name, frame in (("cells", cells_table(plan, run)), ("summary", summary_table(plan, run))):
        partial = paths[name].with_name(f".{paths[name].name}.tmp")
        frame.to_parquet(partial, engine="pyarrow", index=False)
        partial.replace(paths[name])
    return paths


def default_out_dir(settings: Settings, sweep: SweepFile) -> Path:
    """Where a sweep's tables go unless told: ``<data dir>/sweeps/<name>``."""
    return settings.data_dir / "sweeps" / sweep.name
