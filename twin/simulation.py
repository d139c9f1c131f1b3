"""One simulation run, in the current process: demand -> SUMO -> hooks -> metrics.

:func:`simulate` is what a run's worker process executes (:mod:`twin.runner`). It
advances SUMO in control-interval slices; after each slice the SimPy bus catches up,
signal phases and (when SUMO closed an aggregation interval) detector aggregates are
read into the state arrays, the scenario's hooks run, and every series interval the
per-intersection queues are sampled (one numba call for the whole city).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_control.aggregate import group_sum_max
from twin.events import EventBus
from twin.hooks import PreparedInputs, RunContext
from twin.metrics import queue_metrics, statistics_metrics, summary_series, trip_metrics
from twin.sumo_session import SessionConfig, SumoSession

log = logging.getLogger(__name__)

Progress = Callable[[float, float], None]  # (done_s, total_s)
SUMO_ARGS_FILE = "sumo_args.json"


@dataclass
class SimulationResult:
    metrics: dict[str, Any]
    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


def session_config(spec: Any, city: Any, *, seed: int, run_dir: Path) -> SessionConfig:
    """Write the run's demand and return SUMO's inputs/outputs for it."""
    from city_models.demand import sample_trips, write_trips

    trips = sample_trips(
        city.manifest.demand,
        period=spec.demand.period,
        duration_s=spec.sim.duration_s,
        seed=seed,
        scale=spec.demand.scale,
        begin_s=spec.sim.begin_s,
    )
    routes = write_trips(trips, run_dir / "demand.rou.xml")
    if getattr(spec.demand, "routing", "at_departure") == "habitual":
        routes = habitual_routes(city.net_path, routes, seed=seed)
    return SessionConfig(
        net=city.net_path,
        routes=(routes,),
        additional=(city.detectors_path,),
        begin_s=spec.sim.begin_s,
        end_s=spec.sim.end_s,
        seed=seed,
        step_length_s=spec.sim.step_length_s,
        teleport_s=spec.sim.teleport_s,
        tripinfo=run_dir / "tripinfo.xml",
        summary=run_dir / "summary.xml",
        statistics=run_dir / "statistics.xml",
        error_log=run_dir / "sumo_errors.log",
    )


def habitual_routes(net: Path, trips: Path, *, seed: int) -> Path:
    """Route every trip once on free-flow travel times (duarouter); trips it cannot
    route are left out, as SUMO would leave them out at insertion."""
    from twin.sumo_net import run_tool

    out = trips.with_name("demand_routed.rou.xml")
    run_tool(
        "duarouter",
        ["-n", net, "--route-files", trips, "-o", out, "--ignore-errors", "true",
         "--no-warnings", "true", "--no-step-log", "true", "--seed", str(seed),
         "--write-trips", "false", "--alternatives-output", "NUL"],
        what=f"routing the demand {trips.name}",
    )  # fmt: skip
    return out


def make_session(
    config: SessionConfig, city: Any, *, backend: str, gui: bool = False
) -> SumoSession:
    """A session wired to every signal, loop and signalized incoming lane of the city."""
    signals = city.manifest.signals
    lanes = [lane for s in signals for lane in s.incoming_lanes]
    offsets = np.cumsum([0] + [len(s.incoming_lanes) for s in signals]).astype(np.int64)
    return SumoSession(
        config,
        tls_ids=[s.id for s in signals],
        det_ids=[d.id for d in city.manifest.detectors],
        lane_ids=lanes,
        lane_tls=offsets,
        detector_period_s=city.manifest.detector_period_s,
        backend=backend,  # type: ignore[arg-type]
        gui=gui,
    )


def _on_step_grid(t_s: float, step_s: float) -> float:
    return math.ceil(t_s / step_s - 1e-9) * step_s


def make_control(spec: Any, city: Any) -> Any:
    """The run's :class:`~signal_control.control.ControlManager`, or ``None`` when every
    signal keeps its fixed-time plan (nothing to drive)."""
    from signal_control.control import ControlManager
    from twin.errors import ScenarioError

    ctl = spec.control
    ids = [s.id for s in city.manifest.signals]
    unknown = sorted(set(ctl.by_signal) - set(ids))
    if unknown:
        raise ScenarioError(
            f"Scenario {spec.name!r}: field 'control.by_signal' names signals that are not in "
            f"city {city.name}: {', '.join(unknown[:5])}; signals are e.g. {', '.join(ids[:5])}."
        )
    assignment = {t: ctl.by_signal.get(t, ctl.default) for t in ids}
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
    )


def simulate(
    spec: Any,
    city: Any,
    behaviour: Any,
    *,
    seed: int,
    run_dir: Path,
    progress: Progress | None = None,
    gui: bool = False,
    config: SessionConfig | None = None,
) -> SimulationResult:
    """Run one scenario on one city; returns metrics and series (nothing stored here).

    ``config`` reuses SUMO inputs written before (the overhead benchmark runs plain
    ``sumo`` on the very same files); by default the run's demand is sampled here.
    """
    wall0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    prepared: PreparedInputs | None = None
    prepare = getattr(behaviour, "prepare", None)
    if prepare is not None:  # the scenario may edit the network or add demand
        prepared = prepare(city, seed=seed, run_dir=run_dir)
        city = prepared.city
    control = make_control(spec, city)
    if config is None:
        config = session_config(spec, city, seed=seed, run_dir=run_dir)
    if prepared is not None:
        config = replace(
            config,
            routes=(*config.routes, *prepared.routes),
            additional=(*config.additional, *prepared.additional),
        )
    extra_xml = control.extra_additional_xml() if control is not None else None
    if extra_xml:
        programs = run_dir / "programs.add.xml"
        programs.write_text(extra_xml, encoding="utf-8")
        config = replace(config, additional=(*config.additional, programs))
    # for a post-mortem if SUMO takes the process down (twin.runner reads it)
    (run_dir / SUMO_ARGS_FILE).write_text(json.dumps(config.args()), encoding="utf-8")
    sim = spec.sim
    session = make_session(config, city, backend=sim.backend, gui=gui)
    bus = EventBus(start_s=sim.begin_s)
    ctx = RunContext(session=session, bus=bus, city=city, spec=spec, seed=seed, run_dir=run_dir,
                     control=control)  # fmt: skip
    st = session.state
    queue_rows: list[tuple[float, np.ndarray]] = []
    n_ticks = math.ceil(sim.duration_s / sim.control_interval_s - 1e-9)
    series_every = round(sim.series_interval_s / sim.control_interval_s)
    step_hook = behaviour.on_step if behaviour.needs_step_hook else None
    hook = None
    if step_hook is not None:

        def hook(s: SumoSession) -> None:
            step_hook(ctx)
            if control is not None:  # a command from the hook may be due right now:
                control.advance(s.time_s)  # show it this step, never late

    with session:
        if control is not None:
            control.start(session, t_s=sim.begin_s)
        behaviour.setup(ctx)
        for tick in range(1, n_ticks + 1):
            t_s = min(sim.begin_s + tick * sim.control_interval_s, sim.end_s)
            while control is not None and control.next_change_s() < t_s - 1e-9:
                # a guarded signal changes before the tick: stop there and show it
                t_change = _on_step_grid(control.next_change_s(), sim.step_length_s)
                session.run(t_change, step_hook=hook)
                control.advance(session.time_s)
            session.run(t_s, step_hook=hook)
            if control is not None:
                control.advance(t_s)
            bus.advance_to(t_s)
            session.read_signals()
            session.read_detectors()
            if control is not None:
                control.on_tick(t_s, session, st)
            behaviour.on_interval(ctx)
            if control is not None:
                control.advance(t_s)  # commands just given may be due now
            if tick % series_every == 0 or tick == n_ticks:
                session.read_queues()
                per_tls, _ = group_sum_max(st.lane_halting_veh, st.lane_tls)
                queue_rows.append((t_s, per_tls))
            if progress is not None:
                progress(t_s - sim.begin_s, sim.duration_s)
        extra = behaviour.finish(ctx)
    log.info("simulation finished in %.1f s wall", time.perf_counter() - wall0)
    metrics: dict[str, Any] = {}
    special = frozenset(getattr(behaviour, "special_vehicles", ()))
    metrics.update(trip_metrics(config.tripinfo, exclude=special))  # type: ignore[arg-type]
    metrics.update(statistics_metrics(config.statistics))  # type: ignore[arg-type]
    queues = pd.DataFrame(
        [
            (t, tls, float(q))
            for t, arr in queue_rows
            for tls, q in zip(st.tls_ids, arr, strict=True)
        ],
        columns=["t_s", "tls_id", "queue_veh"],
    )
    # stopped delay per intersection, estimated from the sampled queue (a sample each
    # series interval stands for the whole interval): cheap, coarse, labelled as such
    queues["stopped_delay_est_veh_s"] = queues["queue_veh"] * sim.series_interval_s
    metrics.update(queue_metrics(queues))
    metrics.update(extra)
    metrics.update(ctx.metrics)
    if control is not None:
        metrics.update(control.metrics())
    metrics["sim_end_s"] = sim.end_s
    series = {
        "network": summary_series(config.summary, every_s=sim.series_interval_s),  # type: ignore[arg-type]
        "queues": queues,
    }
    behaviour_series = getattr(behaviour, "series", None)
    if behaviour_series is not None:  # a scenario's own time series (e.g. shelter occupancy)
        series.update(behaviour_series())
    guard_log: list[dict[str, Any]] = []
    if control is not None:
        series.update({name: pd.DataFrame(rows) for name, rows in control.series().items()})
        if control.port is not None:
            guard_log = [
                {"t_s": e.t_s, "kind": f"guard_{e.what}", "tls_id": e.tls_id, **e.detail}
                for e in control.port.events()
            ]
    events = [{"t_s": e.t_s, "kind": e.kind, **e.data} for e in bus.events] + guard_log
    return SimulationResult(metrics=metrics, series=series, events=events)
