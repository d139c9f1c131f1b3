"""Composition: a scenario spec + a city -> the engine's :class:`~twin.engine.run.Run`.

This is the one place that knows every layer. It lets the scenario ``prepare`` the
city (a network variant, extra demand), samples the background demand from the city's
OD model, chooses the controllers of every signal, writes SUMO's inputs, and hands the
engine plain inputs. :func:`simulate` is the closed loop over that run;
:func:`execute_request` is what an executor's worker process runs for a recorded run.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from city_models.build import City, load_city, sumocfg_xml
from city_models.calibrate import load_demand_variant
from city_models.demand import sample_trips, write_trips
from city_models.plan_check import all_red_promise_s, check_city_plans, conflict_matrix
from scenarios.base import Scenario
from scenarios.loader import parse_scenario
from scenarios.registry import make_scenario
from scenarios.spec import ScenarioSpec
from signal_control.control import ControlManager
from signal_control.guard import Interval
from twin.engine.executors import SUMO_ARGS_FILE, RunOutcome, RunRequest
from twin.engine.run import Progress, Run, RunResult, SessionWiring
from twin.engine.run import simulate as run_to_end
from twin.engine.states import Resume, SavedState, load_control, read_state
from twin.engine.sumo_session import Backend, SessionConfig, SumoSession
from twin.engine.sumo_tools import run_tool, sumo_version
from twin.errors import ConfigError, ScenarioError

log = logging.getLogger(__name__)


def session_config(
    spec: ScenarioSpec, city: City, *, seed: int, run_dir: Path, state: SavedState | None = None
) -> SessionConfig:
    """Write the run's demand and return SUMO's inputs/outputs for it (a run from a saved
    ``state`` drives the demand of the run that saved it: the same files)."""
    own = city_routes(spec, city)
    extra: tuple[str, ...] = ()
    if state is not None:
        routes = tuple(Path(r) for r in state.meta.get("routes", []))
        missing = [str(r) for r in routes if not r.is_file()]
        if missing:
            raise ScenarioError(
                f"Scenario {spec.name!r}: field 'sim.load_state' = '{state.path}': the demand "
                f"of the run that saved it is gone ({', '.join(missing[:3])}); allowed: a "
                "state whose run folder is kept whole."
            )
        extra = tuple(str(a) for a in state.meta.get("demand_args", []))
    elif spec.demand.variant is not None:  # a calibrated demand stored with the city
        routes = (demand_variant_routes(spec, city),)
        extra = ("--scale", f"{spec.demand.scale:g}") if spec.demand.scale != 1.0 else ()
    elif own:  # the model's own demand; SUMO scales it
        routes = own
        extra = ("--scale", f"{spec.demand.scale:g}") if spec.demand.scale != 1.0 else ()
    else:
        trips = sample_trips(
            city.manifest.demand,
            period=spec.demand.period,
            duration_s=spec.sim.duration_s,
            seed=seed,
            scale=spec.demand.scale,
            begin_s=spec.sim.begin_s,
        )
        sampled = write_trips(trips, run_dir / "demand.rou.xml")
        if spec.demand.routing == "habitual":
            sampled = habitual_routes(city.net_path, sampled, seed=seed)
        routes = (sampled,)
    return SessionConfig(
        net=city.net_path,
        routes=routes,
        additional=(city.detectors_path, *city_additional(city)),
        begin_s=spec.sim.begin_s,
        end_s=spec.sim.end_s,
        seed=seed,
        step_length_s=spec.sim.step_length_s,
        teleport_s=spec.sim.teleport_s,
        tripinfo=run_dir / "tripinfo.xml",
        summary=run_dir / "summary.xml",
        statistics=run_dir / "statistics.xml",
        error_log=run_dir / "sumo_errors.log",
        extra_args=extra,
    )


def city_routes(spec: ScenarioSpec, city: City) -> tuple[Path, ...]:
    """The imported model's own route files, when the spec's demand uses them."""
    source = city.manifest.source
    names = [str(n) for n in source.options.get("own_routes", [])] if source else []
    if spec.demand.source == "city_routes" and not names:
        raise ScenarioError(
            f"Scenario {spec.name!r}: field 'demand.source' = 'city_routes', but city "
            f"{city.name} has no routes of its own; allowed: 'auto' or 'od_model' (the "
            "city's OD model), or import the model with --routes."
        )
    if spec.demand.source == "od_model":
        return ()
    return tuple(city.path / n for n in names)


def demand_variant_routes(spec: ScenarioSpec, city: City) -> Path:
    """The routes of the demand variant the spec names (``demand.variant``).

    Raises
    ------
    ScenarioError
        When the city has no such variant, or it was calibrated for another period.
    """
    assert spec.demand.variant is not None  # the caller checked
    variant = load_demand_variant(city, spec.demand.variant)
    if variant.period != spec.demand.period:
        raise ScenarioError(
            f"Scenario {spec.name!r}: field 'demand.variant' = {variant.name!r} was "
            f"calibrated for period {variant.period!r}, but 'demand.period' is "
            f"{spec.demand.period!r}; allowed: demand.period = {variant.period!r}."
        )
    if spec.sim.begin_s < variant.begin_s or spec.sim.end_s > variant.end_s:
        log.warning(
            "demand variant %s holds traffic for [%g, %g) s; the run covers [%g, %g) s",
            variant.name, variant.begin_s, variant.end_s, spec.sim.begin_s, spec.sim.end_s,
        )  # fmt: skip
    return variant.routes_path


def city_additional(city: City) -> tuple[Path, ...]:
    """An imported model's own additional files (vehicle types, stops, POIs)."""
    source = city.manifest.source
    names = [str(n) for n in source.options.get("own_additional", [])] if source else []
    return tuple(city.path / n for n in names)


def habitual_routes(net: Path, trips: Path, *, seed: int) -> Path:
    """Route every trip once on free-flow travel times (duarouter); trips it cannot
    route are left out, as SUMO would leave them out at insertion."""
    out = trips.with_name("demand_routed.rou.xml")
    run_tool(
        "duarouter",
        ["-n", net, "--route-files", trips, "-o", out, "--ignore-errors", "true",
         "--no-warnings", "true", "--no-step-log", "true", "--seed", str(seed),
         "--write-trips", "false", "--alternatives-output", "NUL"],
        what=f"routing the demand {trips.name}",
    )  # fmt: skip
    return out


def session_wiring(city: City) -> SessionWiring:
    """Every signal, loop and signalized incoming lane of the city."""
    signals = city.manifest.signals
    lanes = [lane for s in signals for lane in s.incoming_lanes]
    offsets = np.cumsum([0] + [len(s.incoming_lanes) for s in signals]).astype(np.int64)
    return SessionWiring(
        tls_ids=tuple(s.id for s in signals),
        det_ids=tuple(d.id for d in city.manifest.detectors),
        lane_ids=tuple(lanes),
        lane_tls=offsets,
        detector_period_s=city.manifest.detector_period_s,
    )


def make_session(
    config: SessionConfig, city: City, *, backend: Backend = "libsumo", gui: bool = False
) -> SumoSession:
    """A session wired to every signal, loop and signalized incoming lane of the city."""
    w = session_wiring(city)
    return SumoSession(
        config, tls_ids=w.tls_ids, det_ids=w.det_ids, lane_ids=w.lane_ids, lane_tls=w.lane_tls,
        detector_period_s=w.detector_period_s, backend=backend, gui=gui,
    )  # fmt: skip


def check_save_times(spec: ScenarioSpec, city: City) -> None:
    """With adaptive control, a state is saved only at a multiple of the city's detector
    period: a fork's loops start counting afresh when it loads, so from any other time
    its adaptive controllers would read other counts than the run's (its null fork would
    not reproduce the run)."""
    ctl = spec.control
    if "adaptive" not in {ctl.default, *ctl.by_signal.values()}:
        return
    period = city.manifest.detector_period_s
    off = [t for t in spec.sim.save_state_at_s if abs(t / period - round(t / period)) > 1e-9]
    if off:
        t = off[0]
        raise ScenarioError(
            f"Scenario {spec.name!r}: field 'sim.save_state_at_s' has {t:g}; with adaptive "
            f"control a state is saved at a multiple of city {city.name}'s detector period "
            f"({period:g} s), where a fork's loops count the same intervals as the run's; "
            f"allowed: e.g. {math.floor(t / period) * period:g} or "
            f"{math.ceil(t / period) * period:g}."
        )


def make_control(spec: ScenarioSpec, city: City) -> ControlManager | None:
    """The run's controllers, or ``None`` when every signal keeps its fixed-time plan
    (nothing to drive).

    The city's signal plans are checked first (a city made without
    :func:`~city_models.build.load_city` included): a plan that breaks a safety rule is a
    :class:`~twin.errors.CityError` here, before SUMO starts. The guard gets every
    signal's conflict matrix and the city's all-red promise.
    """
    check_city_plans(city)
    ctl = spec.control
    ids = [s.id for s in city.manifest.signals]
    unknown = sorted(set(ctl.by_signal) - set(ids))
    if unknown:
        raise ScenarioError(
            f"Scenario {spec.name!r}: field 'control.by_signal' names signals that are not in "
            f"city {city.name}: {', '.join(unknown[:5])}; signals are e.g. {', '.join(ids[:5])}."
        )
    assignment = {t: ctl.by_signal.get(t, ctl.default) for t in ids}
    check_save_times(spec, city)
    if all(kind == "fixed" for kind in assignment.values()) and not ctl.guard_fixed:
        return None
    net = city.net
    return ControlManager(
        signals=city.manifest.signals,
        links={t: net.tls[t].links for t in ids},
        edge_lanes={e.id: e.lanes for e in net.edges.values()},
        detectors=city.manifest.detectors,
        assignment=assignment,
        spec=ctl,
        detector_period_s=city.manifest.detector_period_s,
        control_interval_s=spec.sim.control_interval_s,
        foes={t: conflict_matrix(net.tls[t]) for t in ids},
        all_red_promise_s=all_red_promise_s(city.manifest),
        positions_m={s.id: (s.x, s.y) for s in city.manifest.signals},
    )


def build_run(
    spec: ScenarioSpec,
    city: City,
    scenario: Scenario[ScenarioSpec] | None = None,
    *,
    seed: int,
    run_dir: Path,
    progress: Progress | None = None,
    gui: bool = False,
    config: SessionConfig | None = None,
    extra_additional: tuple[Path, ...] = (),
) -> Run[City, ScenarioSpec]:
    """Prepare everything a run needs, up to (not including) starting SUMO.

    Parameters
    ----------
    scenario
        The scenario object; by default the registered kind's for ``spec``.
    config
        Reuse SUMO inputs written before (the overhead benchmark runs plain ``sumo`` on
        the very same files); by default the run's demand is sampled here.
    extra_additional
        More SUMO additional files (e.g. a test's ``SaveTLSStates`` output).
    """
    scenario = make_scenario(spec) if scenario is None else scenario
    run_dir.mkdir(parents=True, exist_ok=True)
    base_city_path = city.path
    prepared = scenario.prepare(city, seed=seed, run_dir=run_dir)
    city = prepared.city
    control = make_control(spec, city)
    state = saved_state(spec, city)
    if config is None:
        config = session_config(spec, city, seed=seed, run_dir=run_dir, state=state)
    # what a fork from this run's states needs to drive the same demand
    meta = {
        "spec": spec.model_dump(mode="json"),
        "seed": seed,
        "routes": [str(r.resolve()) for r in config.routes],
        "demand_args": list(config.extra_args),
        "city_path": str(city.path.resolve()),  # as prepared (a variant network: its own)
        "base_city_path": str(base_city_path.resolve()),  # what the run was asked to use
    }
    meso = spec.sim.mode == "meso"
    if meso:  # SUMO's meso loops answer no TraCI query, and cost a quarter of its time
        config = replace(config, additional=tuple(
            p for p in config.additional if p != city.detectors_path))  # fmt: skip
    config = replace(
        config,
        mesosim=meso,
        state_io=True,  # any run may save its state (an interactive session, on request)
        # SUMO loads a state of its own model; the other model's is placed vehicle by vehicle
        load_state=state.path if state is not None and state.mode == spec.sim.mode else None,
    )
    config = replace(
        config,
        routes=(*config.routes, *prepared.routes),
        additional=(*config.additional, *prepared.additional),
        extra_args=(*config.extra_args, *prepared.sumo_args),
    )
    extra_xml = None
    if control is not None:
        # gap-out loops, if the controllers want them, exist for this run only (written
        # with the programs): the city's own files and content hash stay as they are
        lanes = control.advance_lanes
        net = city.net
        extra_xml = control.extra_additional_xml(
            lane_length_m={lane: net.lane_lengths_m[lane] for lane in lanes},
            lane_speed_mps={lane: net.edges[lane.rsplit("_", 1)[0]].speed_mps for lane in lanes},
        )
    if extra_xml:
        programs = run_dir / "programs.add.xml"
        programs.write_text(extra_xml, encoding="utf-8")
        config = replace(config, additional=(*config.additional, programs))
    if extra_additional:
        config = replace(config, additional=(*config.additional, *extra_additional))
    config = with_outputs(config, spec, city, run_dir)
    # for a post-mortem if SUMO takes the process down (the executor reads it)
    (run_dir / SUMO_ARGS_FILE).write_text(json.dumps(config.args()), encoding="utf-8")
    (run_dir / RUN_SUMOCFG).write_text(run_sumocfg(config, city), encoding="utf-8")
    return Run(
        config=config,
        wiring=session_wiring(city),
        sim=spec.sim,
        hooks=scenario,
        city=city,
        spec=spec,
        seed=seed,
        run_dir=run_dir,
        control=control,
        gui=gui,
        progress=progress,
        save_state_at_s=spec.sim.save_state_at_s,
        state_meta=meta,
        city_hash=city.manifest.content_hash,
        resume=fork_resume(spec, state, control) if state is not None else None,
    )


def saved_state(spec: ScenarioSpec, city: City) -> SavedState | None:
    """The state the run starts from (``sim.load_state``), checked: written by this SUMO
    version, for this city (the scenario's prepared one: a variant network is another
    city), at the run's ``begin_s``."""
    if spec.sim.load_state is None:
        return None
    state = read_state(
        Path(spec.sim.load_state),
        sumo_version=sumo_version(),
        city_hash=city.manifest.content_hash,
        field_name="sim.load_state",
    )
    if abs(state.t_s - spec.sim.begin_s) > 1e-6:
        raise ScenarioError(
            f"Scenario {spec.name!r}: field 'sim.begin_s' = {spec.sim.begin_s:g}, but the "
            f"state in sim.load_state was saved at t={state.t_s:g} s; allowed: "
            f"sim.begin_s = {state.t_s:g}."
        )
    return state


def fork_resume(spec: ScenarioSpec, state: SavedState, control: ControlManager | None) -> Resume:
    """How a run from a saved state goes on. With the saved run's ``[control]`` its
    controllers continue as they were (a fork that changes nothing reproduces the run).
    Otherwise this run's controllers take over: each signal the saved run guarded from
    the interval its guard showed (finished, never cut), the others from their plan's
    schedule. A signal the saved run guarded must stay guarded (SUMO's own programs do
    not know where the guard left it): ``control.guard_fixed = true`` keeps fixed-time
    signals under the guard."""
    parent = state.meta.get("spec", {})
    same = parent.get("control") == spec.control.model_dump(mode="json")
    if same or not state.has_control:
        return Resume(state=state, restore_control=same, initial=field_intervals(state))
    saved = load_control(state.control_file, display=None, clock=lambda: state.t_s)
    port = getattr(saved, "port", None)
    if port is None:
        return Resume(state=state, restore_control=False)
    initial = {
        tls: (g.interval, g.stage, max(state.t_s - g.entered_s, 0.0))
        for tls, g in zip(port.ids, port.guards, strict=True)
        if not port.is_local(tls)
    }
    guarded_now = set(control.guarded) if control is not None else set()
    lost = sorted(set(initial) - guarded_now)
    if lost:
        raise ScenarioError(
            f"Scenario {spec.name!r}: field 'control' leaves signals {', '.join(lost[:5])}"
            f"{' ...' if len(lost) > 5 else ''} to SUMO's own programs, but the run that "
            "saved the state ran them through the guard; a fork cannot hand a guarded "
            "signal back to SUMO yet. Allowed: keep them guarded (e.g. control.guard_fixed "
            "= true for fixed-time plans)."
        )
    return Resume(state=state, restore_control=False, initial=initial)


def field_intervals(state: SavedState) -> dict[str, tuple[Interval, int, float]] | None:
    """What the field showed when a live shadow saved ``state`` (its sidecar's
    ``field_intervals``: per signal the center commands, ``[interval, stage,
    elapsed_s]``), for a fork's guards to take over from; ``None`` for other states."""
    raw = state.meta.get("field_intervals")
    if not isinstance(raw, dict):
        return None
    out: dict[str, tuple[Interval, int, float]] = {}
    for tls, value in raw.items():
        interval, stage, elapsed = value
        if interval not in ("green", "yellow", "all_red"):
            raise ConfigError(
                f"State {state.path}: field_intervals.{tls} = {value!r}; allowed intervals: "
                "green, yellow, all_red."
            )
        out[str(tls)] = (interval, int(stage), max(float(elapsed), 0.0))
    return out


RUN_SUMOCFG = "run.sumocfg"
SIGNAL_STATES_FILE = "signal_states.xml"
FCD_FILE = "fcd.xml.gz"


def with_outputs(
    config: SessionConfig, spec: ScenarioSpec, city: City, run_dir: Path
) -> SessionConfig:
    """SUMO's own records for pictures (``[outputs]``): every signal's state at each
    switch (a ``SaveTLSSwitchStates`` event per signal) and the vehicles' trajectories
    (FCD, gzipped)."""
    out = spec.outputs
    if out.signal_states and city.manifest.signals:
        dest = (run_dir / SIGNAL_STATES_FILE).resolve()
        events = "".join(
            f'    <timedEvent type="SaveTLSSwitchStates" source="{s.id}" dest="{dest}"/>\n'
            for s in city.manifest.signals
        )
        path = run_dir / "outputs.add.xml"
        path.write_text(f"<additional>\n{events}</additional>\n", encoding="utf-8")
        config = replace(config, additional=(*config.additional, path))
    if out.trajectories:
        fcd = ("--fcd-output", str((run_dir / FCD_FILE).resolve()),
               "--device.fcd.period", f"{out.trajectory_period_s:g}")  # fmt: skip
        config = replace(config, extra_args=(*config.extra_args, *fcd))
    return config


def run_sumocfg(config: SessionConfig, city: City) -> str:
    """A SUMO configuration that reopens a run's inputs in sumo-gui (``sumo-gui -c
    run.sumocfg`` in the run folder): its net, demand, loops and programs, window and
    seed, and the city's POIs and zones to look at. It writes no outputs (the run's
    own stay as they are), and the twin's live commands (priority, adaptive timings,
    reroutes) are not replayed: it shows the run's world, not its decisions."""
    shapes = city.path / city.manifest.files.shapes if city.manifest.files.shapes else None
    extra = [shapes] if shapes is not None and shapes.exists() else []
    kept = [p for p in config.additional if p.name != "outputs.add.xml"]  # writes records
    additional = ",".join(str(p.resolve()) for p in (*kept, *extra))
    routes = ",".join(str(p.resolve()) for p in config.routes)
    return sumocfg_xml(net=str(config.net.resolve()), routes=routes, additional=additional,
                       begin_s=config.begin_s, end_s=config.end_s,
                       step_length_s=config.step_length_s, teleport_s=config.teleport_s,
                       seed=config.seed)  # fmt: skip


def simulate(
    spec: ScenarioSpec,
    city: City,
    scenario: Scenario[ScenarioSpec] | None = None,
    *,
    seed: int,
    run_dir: Path,
    progress: Progress | None = None,
    gui: bool = False,
    config: SessionConfig | None = None,
    extra_additional: tuple[Path, ...] = (),
) -> RunResult:
    """Run one scenario on one city in this process; returns metrics and series
    (nothing is stored here)."""
    run = build_run(
        spec, city, scenario, seed=seed, run_dir=run_dir, progress=progress, gui=gui,
        config=config, extra_additional=extra_additional,
    )  # fmt: skip
    return run_to_end(run)


def execute_request(request: RunRequest, run_dir: Path, progress: Progress | None) -> RunOutcome:
    """What a worker process does for a recorded run: load the city, validate the
    spec, simulate, and return metrics and series for the executor to store."""
    spec = parse_scenario(request.spec, source=f"run {run_dir.name}")
    city = load_city(Path(request.city_path))
    result = simulate(
        spec, city, seed=request.seed, run_dir=run_dir, progress=progress, gui=request.gui,
        extra_additional=tuple(Path(p) for p in request.extra_additional),
    )  # fmt: skip
    series = dict(result.series)
    if result.events:
        series["events"] = pd.DataFrame(result.events)
    return RunOutcome(metrics=result.metrics, series=series)


def run_request(
    spec: ScenarioSpec,
    city: City,
    *,
    seed: int | None = None,
    owner: str | None = None,
    gui: bool = False,
    extra_additional: tuple[Path, ...] = (),
) -> RunRequest:
    """The executor's request for ``spec`` on ``city`` (default seed: the spec's).

    The scenario is checked against the city first (:meth:`Scenario.check`: stations,
    streets, zones), so a mistake there is a bad-input error before any run is recorded.
    """
    make_scenario(spec).check(city)
    check_save_times(spec, city)
    return RunRequest(
        spec=spec.model_dump(mode="json"),
        scenario_name=spec.name,
        scenario_kind=spec.kind,
        city_path=str(city.path),
        city_name=city.name,
        city_hash=city.manifest.content_hash,
        seed=spec.seed if seed is None else seed,
        owner=owner,
        gui=gui,
        extra_additional=tuple(str(p) for p in extra_additional),
    )
