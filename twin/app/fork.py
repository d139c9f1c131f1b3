"""What-if forks: from a run's saved state, N futures side by side.

``twin fork RUN_ID --at T --ahead 900 --variants V.toml`` starts, from the state the run
saved at ``T`` (``sim.save_state_at_s``), one run per variant plus the *null fork*
(``as-is``: no change), each a recorded run in its own worker process
(:func:`twin.app.sweep.run_cells`), and compares them in one table. ``twin fork
STATE.xml`` forks a state file instead, e.g. one an interactive session saved on request
(:meth:`twin.app.sessions.InteractiveSession.save_state`).

A fork is an ordinary run whose spec says where it starts: the parent's spec with the
variant's overrides, ``sim.begin_s = T``, ``sim.duration_s = ahead`` and
``sim.load_state`` = the state file (:func:`twin.app.compose.saved_state` checks it:
same SUMO version, same city). SUMO loads the state (vehicles, signals, random number
generators), the twin re-applies what SUMO's state does not keep (its command log:
signal states it showed, closures, speed limits, drivers' beliefs), the controllers go
on where they were (the same ``[control]``) or take over mid-run, and the demand is the
parent's own files. ``sim.mode = "meso"`` runs the fork in SUMO's mesoscopic model: the
parent's vehicles are placed where they stood (SUMO's meso cannot load a micro state).

The variants file::

    places = ["n5_5", "n7_7/n6_7-n7_7"]   # optional: signals (or one approach,
                                          # SIGNAL/EDGE) whose queue the table shows
    metrics = ["mean_travel_time_s"]      # optional: more metrics in the table

    [variant.adaptive]                    # a variant: a name and dotted-path overrides
    "control.default" = "adaptive"        # of the parent's scenario, as in --set

    [variant.signs_off]                   # (a vms_diversion parent)
    vms = false

A variant may change what happens from ``T`` on (controllers, the scenario's own
fields: incidents, signs, vehicles); it may not change what the state already holds:
``name``, ``kind``, ``seed``, ``city``, ``demand`` and ``sim`` (the window and model
come from the command line).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from city_models.build import load_city
from scenarios.loader import parse_scenario
from scenarios.spec import ScenarioSpec
from twin.app.compose import run_request
from twin.app.study import with_overrides
from twin.app.sweep import _flat, _show, read_toml_file, run_cells
from twin.config import Settings
from twin.engine.executors import RunProgress, RunRequest
from twin.engine.states import find_state, read_state, saved_times
from twin.engine.store import RunRecord, RunStore, jsonable
from twin.engine.sumo_tools import iter_xml_elements, sumo_version
from twin.errors import ConfigError, ScenarioError

log = logging.getLogger(__name__)

FIELDS = ("variant", "places", "metrics")
"""The top-level fields of a variants file."""
NULL_FORK = "as-is"
"""The name of the fork that changes nothing (the table's reference row)."""
FIXED_SECTIONS = ("name", "kind", "seed", "city", "demand", "sim")
"""Spec fields a variant may not change: the saved state already holds them."""
MAX_VARIANTS = 16
MIN_AHEAD_S = 60.0
NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
HEADLINES = ("mean_delay_s", "total_delay_h", "throughput_veh", "unfinished_veh",
             "mean_travel_time_s")  # fmt: skip
EV_METRICS = ("ev_time_to_hospital_s", "ev_s_per_km")


@dataclass(frozen=True)
class ForkVariant:
    """One future: a name and the overrides of the parent's scenario."""

    name: str
    overrides: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class VariantsFile:
    """A variants file as read (values checked against the parent in :func:`plan_forks`)."""

    path: Path | None
    variants: tuple[ForkVariant, ...]
    places: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()


def load_variants(path: str | Path) -> VariantsFile:
    """Read a variants file (format: the module docstring).

    Raises
    ------
    ConfigError
        Naming the file, the field, the value and what is allowed.
    """
    path = Path(path)
    where = f"Variants file {path}"
    return parse_variants(read_toml_file(path, where, FIELDS), where=where, path=path)


def parse_variants(
    raw: dict[str, Any], *, where: str = "Variants", path: Path | None = None
) -> VariantsFile:
    """A variants table (the file's content, or an API request's body: ``variant``,
    ``places``, ``metrics``); errors start with ``where``."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(FIELDS)}.")
    table = raw.get("variant", {})
    if not isinstance(table, dict) or not table:
        raise ConfigError(
            f"{where}: field 'variant' = {table!r}; allowed: one or more tables "
            "[variant.NAME] with dotted-path overrides, e.g. [variant.adaptive] "
            '"control.default" = "adaptive".'
        )
    if len(table) > MAX_VARIANTS:
        raise ConfigError(
            f"{where}: field 'variant' has {len(table)} variants; allowed: at most {MAX_VARIANTS}."
        )
    variants = []
    for name, body in table.items():
        if not NAME_RE.match(name) or name == NULL_FORK:
            raise ConfigError(
                f"{where}: variant name {name!r}; allowed: 1-40 letters, digits, '_', '.' "
                f"or '-', and not {NULL_FORK!r} (the fork that changes nothing, always run)."
            )
        if not isinstance(body, dict):
            raise ConfigError(
                f"{where}: field 'variant.{name}' = {_show(body)}; allowed: a table of "
                'FIELD = VALUE, e.g. "control.default" = "adaptive".'
            )
        overrides = tuple(_flat(body))
        for key, value in overrides:
            head = key.split(".", 1)[0]
            if head in FIXED_SECTIONS:
                raise ConfigError(
                    f"{where}: field 'variant.{name}.{key}' = {_show(value)}: a fork "
                    f"keeps the parent's {head!r} (its state holds it already); allowed: "
                    "fields that act from the fork on, e.g. control.*, outputs.* and the "
                    "scenario's own (incidents, signs, vehicles)."
                )
        variants.append(ForkVariant(name, overrides))
    places = raw.get("places", [])
    if not isinstance(places, list) or not all(isinstance(p, str) and p for p in places):
        raise ConfigError(
            f"{where}: field 'places' = {_show(places)}; allowed: a list of signal ids or "
            'approach ids (SIGNAL/EDGE), e.g. ["n5_5"].'
        )
    metrics = raw.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics):
        raise ConfigError(
            f"{where}: field 'metrics' = {_show(metrics)}; allowed: a list of metric names, "
            'e.g. ["mean_travel_time_s"].'
        )
    return VariantsFile(path, tuple(variants), tuple(places), tuple(metrics))


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class ForkPlan:
    """Every fork's validated spec and run request; the null fork first."""

    parent_id: str
    state: Path
    at_s: float
    ahead_s: float
    mode: str
    names: tuple[str, ...]
    requests: tuple[RunRequest, ...]
    places: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()


def state_of(record: RunRecord, at_s: float) -> Path:
    """The state ``record``'s run saved at ``at_s``; a :class:`ConfigError` lists the
    times it saved (or says how to make it save one)."""
    states = (record.run_dir or Path("-")) / "states"
    found = find_state(states, at_s) if states.is_dir() else None
    if found is None:
        times = saved_times(states) if states.is_dir() else []
        have = (
            f"it saved states at {', '.join(f'{t:g}' for t in times)} s"
            if times
            else "it saved no state (run it with --set 'sim.save_state_at_s=[T]')"
        )
        raise ConfigError(f"--at {at_s:g}: run {record.id} has no state saved then; {have}.")
    return found


def plan_forks(
    source: RunRecord | Path,
    variants: VariantsFile,
    *,
    at_s: float | None,
    ahead_s: float,
    mode: str = "micro",
    save_end_state: bool = False,
    base: Sequence[tuple[str, Any]] = (),
) -> ForkPlan:
    """The forks of a run (its record: the state it saved at ``at_s``) or of a state file
    (e.g. one an interactive session saved; ``at_s`` optional), ``ahead_s`` long, as run
    requests: the null fork first, then each variant, every override checked against the
    parent's scenario (errors name the variants file, the variant, the field and the
    value). ``save_end_state``: each fork saves its state at its end
    (for :func:`null_fork_check`). ``base``: overrides every fork starts from (the
    variants' come after them), e.g. the live service's control.

    A state a live shadow twin saved (sidecar ``source = "live_shadow"``) showed the
    field's signal states, which no plan of SUMO's continues: every fork of it runs each
    signal through the guard (``control.guard_fixed = true`` unless a variant says
    otherwise, and then it is refused), taking over from the interval the field showed
    (:func:`twin.app.compose.field_intervals`)."""
    if mode not in ("micro", "meso"):
        raise ConfigError(f"--mode {mode!r}; allowed: micro, meso.")
    if not (math.isfinite(ahead_s) and ahead_s >= MIN_AHEAD_S):
        raise ConfigError(f"--ahead {ahead_s:g}; allowed: {MIN_AHEAD_S:g} s or more.")
    if isinstance(source, Path):
        path, name = source, f"state {source}"
        state = read_state(path, sumo_version=sumo_version(), field_name="STATE")
        if at_s is not None and abs(at_s - state.t_s) > 0.5:
            raise ConfigError(f"--at {at_s:g}: {name} was saved at t={state.t_s:g} s.")
        city_path = state.meta.get("base_city_path") or state.meta.get("city_path")
        seed, owner, parent_id, raw = int(state.meta.get("seed", 0)), None, path.stem, None
    else:
        if at_s is None:
            raise ConfigError(f"--at: give the time to fork run {source.id} at (a saved one).")
        path, name = state_of(source, at_s), f"run {source.id}"
        state = read_state(path, sumo_version=sumo_version(), field_name="--at")
        city_path, seed, owner = source.city_path, source.seed, source.owner
        parent_id, raw = source.id, source.spec
    spec_raw = state.meta.get("spec", raw)
    if not isinstance(spec_raw, dict):
        raise ConfigError(f"{name}: its sidecar holds no scenario spec; it cannot be forked.")
    parent = parse_scenario(spec_raw, source=name)
    if state.t_s + ahead_s > parent.sim.end_s + 1e-6:
        raise ConfigError(
            f"--ahead {ahead_s:g}: {name} has demand up to t={parent.sim.end_s:g} s, "
            f"so from t={state.t_s:g} s a forecast reaches at most "
            f"{parent.sim.end_s - state.t_s:g} s ahead; allowed: --ahead up to that."
        )
    if city_path is None:
        raise ConfigError(f"{name} does not record its city folder; it cannot be forked.")
    city = load_city(Path(city_path))
    window = [
        ("sim.begin_s", state.t_s),
        ("sim.duration_s", ahead_s),
        ("sim.load_state", str(path.resolve())),
        ("sim.save_state_at_s", [state.t_s + ahead_s] if save_end_state else []),
        ("sim.mode", mode),
    ]
    shadow = state.meta.get("source") == "live_shadow"
    if shadow:
        base = [("control.guard_fixed", True), *base]
    where = f"Variants file {variants.path}" if variants.path else "Variants"
    names, requests = [], []
    for variant in (ForkVariant(NULL_FORK), *variants.variants):
        label = f"{where} [variant.{variant.name}]"
        for key, value in variant.overrides:
            _checked(parent, [(key, value)], source=f"{label} {key} = {_show(value)}")
        spec = _checked(parent, [*base, *variant.overrides, *window], source=label)
        if shadow:
            _check_all_guarded(spec, label, name)
        spec = spec.model_copy(update={"name": _fork_name(parent.name, state.t_s, variant.name)})
        names.append(variant.name)
        requests.append(run_request(spec, city, seed=seed, owner=owner))
    return ForkPlan(
        parent_id=parent_id, state=path, at_s=state.t_s, ahead_s=ahead_s, mode=mode,
        names=tuple(names), requests=tuple(requests), places=variants.places,
        metrics=variants.metrics,
    )  # fmt: skip


def _check_all_guarded(spec: ScenarioSpec, label: str, name: str) -> None:
    ctl = spec.control
    kinds = {ctl.default, *ctl.by_signal.values()}
    if "fixed" in kinds and not ctl.guard_fixed:
        raise ConfigError(
            f"{label}: control.guard_fixed = false; {name} was saved by the live shadow "
            "twin, whose signals showed the field's states, which SUMO's own programs do "
            "not continue. Allowed: control.guard_fixed = true (the default for it), or "
            "no signal left to 'fixed'."
        )
    own = sorted(kinds & {"actuated", "delay_based"})
    if own:
        raise ConfigError(
            f"{label}: control = {own[0]!r}; {name} was saved by the live shadow twin, whose "
            "signals showed the field's states: SUMO's own programs would take over from "
            "them without the guard (an interval could be cut). Allowed: fixed (guarded), "
            "adaptive, max_pressure."
        )


def _checked(
    spec: ScenarioSpec, overrides: Sequence[tuple[str, Any]], *, source: str
) -> ScenarioSpec:
    try:
        return with_overrides(spec, overrides, source=source)
    except (ConfigError, ScenarioError) as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(source) else f"{source}: {text}") from None


def _fork_name(parent: str, at_s: float, variant: str) -> str:
    return f"{parent} fork {at_s:g}s {variant}"[:100]


# ----------------------------------------------------------------------------- running
@dataclass
class ForkResult:
    """The forks' records (null fork first) and the comparison table."""

    plan: ForkPlan
    records: tuple[RunRecord, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.records if r.status != "done"]

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        return {
            "parent": p.parent_id, "state": str(p.state), "at_s": p.at_s, "ahead_s": p.ahead_s,
            "mode": p.mode, "forks": self.rows,
            "failed": [f"{r.id}: {r.error}" for r in self.failed],
        }  # fmt: skip


def run_forks(
    settings: Settings,
    plan: ForkPlan,
    *,
    workers: int | None = None,
    progress: RunProgress | None = None,
) -> ForkResult:
    """Run every fork of ``plan`` at once in worker processes (each a recorded run; never
    resumed: a forecast is made now) and build the comparison table."""
    done = run_cells(settings, list(plan.requests), workers=workers, resume=False,
                     progress=progress)  # fmt: skip
    result = ForkResult(plan=plan, records=done.records)
    result.rows = comparison(plan, done.records)
    return result


def place_queue_veh(metrics: dict[str, Any], place: str) -> float:
    """The longest queue (vehicles) at a place: one approach (``SIGNAL/EDGE``) or a
    signal (its longest approach); NaN when the run measured none there."""
    queues = metrics.get("approach_queue_max_veh") or {}
    if "/" in place:
        return float(queues.get(place, math.nan))
    values = [float(v) for k, v in queues.items() if k.split("/", 1)[0] == place]
    return max(values) if values else math.nan


def comparison(plan: ForkPlan, records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per fork: the headline metrics, the queue at each place, the emergency
    vehicle's time when there is one, the wall time, and each number's difference
    against the null fork."""
    rows: list[dict[str, Any]] = []
    has_ev = any(r.metrics and any(m in r.metrics for m in EV_METRICS) for r in records)
    names = [*HEADLINES, *plan.metrics, *(EV_METRICS if has_ev else ())]
    for name, record in zip(plan.names, records, strict=True):
        metrics = record.metrics or {}
        values: dict[str, float] = {}
        for m in dict.fromkeys(names):
            v = metrics.get(m)
            number = isinstance(v, int | float) and not isinstance(v, bool)
            values[m] = float(v) if number and v is not None else math.nan
        for place in plan.places:
            values[f"queue_max_veh@{place}"] = place_queue_veh(metrics, place)
        wall = (
            (record.finished_at - record.started_at).total_seconds()
            if record.finished_at and record.started_at
            else math.nan
        )
        rows.append({
            "variant": name, "run_id": record.id, "status": record.status,
            "error": record.error, "wall_s": wall,
            "real_time_factor": plan.ahead_s / wall if wall and wall > 0 else math.nan,
            "metrics": values,
        })  # fmt: skip
    ref = rows[0]["metrics"] if rows else {}
    for row in rows:
        row["diff"] = {k: v - ref.get(k, math.nan) for k, v in row["metrics"].items()}
    return rows


def to_json(result: ForkResult) -> str:
    """The result as one JSON line (NaN as null)."""
    return json.dumps(jsonable(result.to_dict()), default=str)


def parent_record(settings: Settings, run_id: str) -> RunRecord:
    """The run to fork (an id or a unique prefix, as ``twin runs show`` takes)."""
    store = RunStore.from_settings(settings)
    try:
        return store.get(run_id)
    finally:
        store.close()


# ----------------------------------------------------------------------------- checks
SUMMARY_KEYS = (
    "loaded", "inserted", "running", "waiting", "ended", "arrived", "halting", "stopped",
    "teleports", "meanSpeed", "meanWaitingTime", "meanTravelTime",
)  # fmt: skip
_TIMER = re.compile(r' (duration|until|cycleTime)="[^"]*"')
_ODOMETER = re.compile(r' distance="[^"]*"')


def _steps(summary: Path, t0_s: float, t1_s: float) -> dict[float, tuple[str, ...]]:
    out = {}
    for step in iter_xml_elements(summary, "step"):
        t = float(step["time"])
        if t0_s < t <= t1_s + 1e-9:
            out[t] = tuple(step.get(k, "") for k in SUMMARY_KEYS)
    return out


def _switches(states: Path, t0_s: float, t1_s: float) -> set[tuple[float, str, str]]:
    return {
        (float(e["time"]), e["id"], e["state"])
        for e in iter_xml_elements(states, "tlsState")
        if t0_s < float(e["time"]) <= t1_s + 1e-9
    }


def _state_body(path: Path) -> list[str]:
    """A state file's lines after its header, without route definitions (a loaded run
    keeps the routes of vehicles that left before it) and without the timers of signal
    programs (the inactive ones stand still; TraCI's ``online`` one counts from when the
    twin last set it), which do not act on the simulation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((k for k, line in enumerate(lines) if "<snapshot" in line), 0)
    return [
        _TIMER.sub("", line) if "<tlLogic" in line else line
        for line in lines[start + 1 :]
        if "<route id=" not in line
    ]


def null_fork_check(
    parent_dir: Path, fork_dir: Path, *, t0_s: float, t1_s: float
) -> dict[str, Any]:
    """Does the fork reproduce the parent over ``(t0_s, t1_s]``? Compares, step by step,
    SUMO's summary (vehicles loaded, running, halting, arrived, mean speed ...), the
    distance driven (running x mean speed per step), every signal switch, and, when both
    saved a state at ``t1_s``, the whole simulation state then (every vehicle's position,
    speed, odometer, and the random number generators)."""
    a = _steps(parent_dir / "summary.xml", t0_s, t1_s)
    b = _steps(fork_dir / "summary.xml", t0_s, t1_s)
    steps = sorted(set(a) | set(b))
    differing = [t for t in steps if a.get(t) != b.get(t)]
    i_running, i_speed = SUMMARY_KEYS.index("running"), SUMMARY_KEYS.index("meanSpeed")

    def km(rows: dict[float, tuple[str, ...]]) -> float:
        return sum(int(r[i_running]) * float(r[i_speed]) for r in rows.values()) / 1000.0

    sa = _switches(parent_dir / "signal_states.xml", t0_s, t1_s)
    sb = _switches(fork_dir / "signal_states.xml", t0_s, t1_s)
    out: dict[str, Any] = {
        "window_s": [t0_s, t1_s],
        "steps": len(steps),
        "steps_differing": len(differing),
        "first_differing_s": differing[0] if differing else None,
        "running_veh_end": [int(a[steps[-1]][i_running]), int(b[steps[-1]][i_running])]
        if steps and steps[-1] in a and steps[-1] in b
        else None,
        "distance_driven_km": [round(km(a), 3), round(km(b), 3)],
        "signal_switches": [len(sa), len(sb)],
        "signal_switches_differing": len(sa ^ sb),
    }
    end_a = parent_dir / "states" / f"state_{t1_s:g}.xml"
    end_b = fork_dir / "states" / f"state_{t1_s:g}.xml"
    if end_a.is_file() and end_b.is_file():
        la, lb = _state_body(end_a), _state_body(end_b)
        pairs = [(x, y) for x, y in zip(la, lb, strict=False) if x != y]
        counters = [(x, y) for x, y in pairs if _odometer_only(x, y)]
        out["end_state_lines_differing"] = len(pairs) - len(counters) + abs(len(la) - len(lb))
        # SUMO saves a vehicle's route odometer with 6 significant digits and its tripinfo
        # device's route length with 1 decimal, whatever --save-state.precision says: a
        # loaded vehicle goes on from the rounded value (tripinfo's routeLength of the
        # vehicles in the network at the fork may differ by < 0.1 m; nothing moves on it)
        out["end_state_odometer_lines_differing"] = len(counters)
    same = not differing and not (sa ^ sb) and bool(steps)
    out["identical"] = same and out.get("end_state_lines_differing", 0) == 0
    return out


def _odometer_only(a: str, b: str) -> bool:
    if a.lstrip().startswith('<device id="tripinfo_') and b.lstrip().startswith(
        '<device id="tripinfo_'
    ):
        fa, fb = a.split('"'), b.split('"')
        # state="LANE POS SPEED ROUTE_LENGTH ...": only the route length may differ
        sa, sb = (f[3].split() if len(f) > 3 else [] for f in (fa, fb))
        return (
            len(sa) == len(sb) > 3
            and sa[:3] == sb[:3]
            and sa[4:] == sb[4:]
            and (abs(float(sa[3]) - float(sb[3])) <= 0.1 + 1e-9)
        )
    return _ODOMETER.sub("", a) == _ODOMETER.sub("", b)


def _zone_of_edge(city_path: Path, grid: int) -> dict[str, str]:
    """Each street's area: the city's traffic zones merged into a ``grid`` x ``grid``
    grid over their centres (the OD model's own zones are too many for a 15-minute
    window to fill each pair with trips)."""
    zones = load_city(city_path).manifest.demand.zones
    xs, ys = [z.x for z in zones], [z.y for z in zones]
    x0, y0 = min(xs), min(ys)
    dx, dy = max(max(xs) - x0, 1e-9), max(max(ys) - y0, 1e-9)
    out = {}
    for z in zones:
        i = min(int((z.x - x0) / dx * grid), grid - 1)
        j = min(int((z.y - y0) / dy * grid), grid - 1)
        for e in z.edges:
            out[e] = f"a{i}_{j}"
    return out


def _trips(routes: Sequence[Path]) -> dict[str, tuple[float, str, str]]:
    out = {}
    for path in routes:
        for tag in ("trip", "vehicle"):
            for t in iter_xml_elements(path, tag):
                if "from" in t and "to" in t:
                    out[t["id"]] = (float(t["depart"]), t["from"], t["to"])
    return out


def meso_validation(
    micro_dir: Path, meso_dir: Path, *, state: Path, min_trips: int = 5, grid: int = 3
) -> dict[str, Any]:
    """How far the mesoscopic fork is from the microscopic one of the same state.

    - **Travel time per OD**: trips that depart in the window (they are simulated whole
      in both) and arrive in both, grouped by the areas of their origin and destination
      (the city's traffic zones merged into a ``grid`` x ``grid`` grid); per OD pair
      with at least ``min_trips`` such trips, the error of
      the meso mean against the micro mean. Reported: the trip-weighted mean absolute
      error (%), the share of pairs within 10 %, and the pairs compared.
    - **Total delay**: SUMO's time loss of every vehicle over the window (a vehicle in
      the network at the fork counts only what it lost after it), summed (h), and the
      error of meso against micro (%).
    """
    saved = read_state(state, sumo_version=sumo_version())
    t0 = saved.t_s
    zones = _zone_of_edge(Path(saved.meta["city_path"]), grid)
    demand = _trips([Path(r) for r in saved.meta.get("routes", [])])
    lost_before = {
        v["id"]: float(v.get("time_loss_s", 0.0)) for v in saved.snapshot.get("vehicles", [])
    }

    def read(run_dir: Path, *, placed: bool) -> tuple[dict[str, float], float]:
        durations: dict[str, float] = {}
        delay_s = 0.0
        for trip in iter_xml_elements(run_dir / "tripinfo.xml", "tripinfo"):
            loss = max(float(trip["timeLoss"]), 0.0)
            vid = trip["id"]
            # a meso fork's placed vehicles start their time loss at the fork; a micro
            # fork's continue the one they had
            delay_s += loss - (0.0 if placed else lost_before.get(vid, 0.0))
            planned = demand.get(vid)
            if planned and planned[0] >= t0 and float(trip["arrival"]) >= 0:
                durations[vid] = float(trip["duration"])
        return durations, delay_s

    micro, micro_delay = read(micro_dir, placed=False)
    meso, meso_delay = read(meso_dir, placed=True)
    pairs: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for vid in set(micro) & set(meso):
        _depart, src, dst = demand[vid]
        key = (zones.get(src, "?"), zones.get(dst, "?"))
        a, b = pairs.setdefault(key, ([], []))
        a.append(micro[vid])
        b.append(meso[vid])
    errors, weights = [], []
    for a, b in pairs.values():
        if len(a) < min_trips:
            continue
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        errors.append(abs(mb - ma) / ma * 100.0)
        weights.append(len(a))
    total = sum(weights)
    return {
        "od_pairs": len(errors),
        "od_trips": total,
        "trips_compared": len(set(micro) & set(meso)),
        "travel_time_err_pct": round(sum(e * w for e, w in zip(errors, weights, strict=True))
                                     / total, 2) if total else math.nan,
        "od_within_10pct_share": round(sum(w for e, w in zip(errors, weights, strict=True)
                                           if e <= 10.0) / total, 3) if total else math.nan,
        "micro_delay_h": round(micro_delay / 3600.0, 3),
        "meso_delay_h": round(meso_delay / 3600.0, 3),
        "total_delay_err_pct": round(abs(meso_delay - micro_delay) / micro_delay * 100.0, 2)
        if micro_delay > 0 else math.nan,
    }  # fmt: skip
