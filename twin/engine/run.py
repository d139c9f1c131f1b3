"""A steppable run: the engine's core, in the manner of SimPy's ``run(until)``.

:class:`Run` owns one SUMO session and advances it in control-interval slices:

``start()``
    starts SUMO, takes the guarded signals over, calls the scenario's ``setup``;
``advance_to(t_s)``
    runs every control tick up to ``t_s``. After each slice the SimPy bus catches up,
    signal phases and (when SUMO closed an aggregation interval) detector aggregates
    are read into the state arrays, the controllers and the scenario's hooks run, the
    queue on every approach is read (halting vehicles and their length per lane, direct
    getters; its maximum is kept), and every series interval the per-intersection queues
    are sampled (one numba call for the whole city);
``finish()``
    calls the scenario's ``finish``, closes SUMO and computes the metrics.

:func:`simulate` is the closed loop (``start``, ``advance_to(end)``, ``finish``) that a
run's worker process executes; a wall-clock pacer (live shadow twin), an API session or
a cancellation token drive ``advance_to`` from outside instead.

The engine knows nothing of cities or scenario files: what it needs arrives as plain
inputs (:class:`SessionConfig`, :class:`SessionWiring`, :class:`SimSettings`) and as a
:class:`RunHooks` object, composed by the layer above (``twin.app.compose``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from signal_control.aggregate import group_sum_max
from signal_control.control import ControlManager
from twin.engine.events import EventBus
from twin.engine.metrics import (
    approach_delays,
    approach_los,
    queue_metrics,
    statistics_metrics,
    summary_series,
    trip_metrics,
)
from twin.engine.states import (
    Resume,
    dump_control,
    load_control,
    state_path,
    write_sidecar,
)
from twin.engine.sumo_session import SessionConfig, SumoSession, upstream_chains
from twin.engine.sumo_tools import sumo_version
from twin.engine.world import World
from twin.errors import ConfigError

log = logging.getLogger(__name__)
_sumo_version = cache(sumo_version)  # a subprocess: asked once per process

Progress = Callable[[float, float], None]  # (done_s, total_s)
CityT = TypeVar("CityT")
SpecT = TypeVar("SpecT")
TIME_EPS_S = 1e-9
JAM_GAP_M = 2.5
"""Gap between standing vehicles (SUMO's default ``minGap``): a lane's queue in metres is
its halting vehicles times their mean length plus this gap."""
APPROACH_EDGE_DATA = "approach_edges.xml"
"""SUMO's ``edgeData`` over the approach edges (time loss per approach), in the run dir."""


@dataclass(frozen=True)
class Approaches:
    """The signals' approaches: each signal's incoming edge, with the edges upstream of
    it that belong to the same approach (a turn pocket's street, see
    :func:`~twin.engine.sumo_session.upstream_chains`).

    Lanes are the state's signalized lanes followed by ``upstream_lane_ids``. A segment is
    one edge of one approach: ``lane_order`` sorts the lanes by segment and
    ``seg_starts`` says where each segment begins in that order; ``seg_order`` sorts the
    segments by approach and ``app_starts`` says where each approach begins (for
    ``np.add.reduceat`` / ``np.maximum.reduceat``).
    """

    tls_ids: tuple[str, ...]
    edge_ids: tuple[str, ...]
    chains: tuple[tuple[str, ...], ...]  # per approach: its edges, the stop line's first
    upstream_lane_ids: tuple[str, ...]
    lane_order: npt.NDArray[np.int64]
    seg_starts: npt.NDArray[np.int64]
    seg_order: npt.NDArray[np.int64]
    app_starts: npt.NDArray[np.int64]

    @classmethod
    def of(
        cls,
        wiring: SessionWiring,
        chains: Mapping[str, tuple[str, ...]] | None = None,
        chain_lanes: Mapping[str, tuple[str, ...]] | None = None,
    ) -> Approaches:
        chains = chains or {}
        chain_lanes = chain_lanes or {}
        apps: dict[tuple[str, str], int] = {}
        segs: dict[tuple[int, str], int] = {}
        seg_app: list[int] = []
        lane_seg: list[int] = []

        def seg(app: int, edge: str) -> int:
            if (app, edge) not in segs:
                segs[(app, edge)] = len(segs)
                seg_app.append(app)
            return segs[(app, edge)]

        for k, tls in enumerate(wiring.tls_ids):
            for lane in wiring.lane_ids[wiring.lane_tls[k] : wiring.lane_tls[k + 1]]:
                edge = lane.rsplit("_", 1)[0]  # SUMO names a lane <edge>_<index>
                app = apps.setdefault((tls, edge), len(apps))
                lane_seg.append(seg(app, edge))
        upstream: list[str] = []
        all_chains = []
        for (_tls, edge), app in apps.items():
            ups = tuple(u for u in chains.get(edge, ()) if chain_lanes.get(u))
            all_chains.append((edge, *ups))
            for u in ups:
                for lane in chain_lanes[u]:
                    upstream.append(lane)
                    lane_seg.append(seg(app, u))
        by_seg = np.array(lane_seg, dtype=np.int64)
        lane_order = np.argsort(by_seg, kind="stable").astype(np.int64)
        seg_starts = np.searchsorted(by_seg[lane_order], np.arange(len(segs))).astype(np.int64)
        by_app = np.array(seg_app, dtype=np.int64)
        seg_order = np.argsort(by_app, kind="stable").astype(np.int64)
        app_starts = np.searchsorted(by_app[seg_order], np.arange(len(apps))).astype(np.int64)
        return cls(
            tls_ids=tuple(t for t, _e in apps),
            edge_ids=tuple(e for _t, e in apps),
            chains=tuple(all_chains),
            upstream_lane_ids=tuple(upstream),
            lane_order=lane_order,
            seg_starts=seg_starts,
            seg_order=seg_order,
            app_starts=app_starts,
        )

    def __len__(self) -> int:
        return len(self.tls_ids)

    def queues(
        self, halting_veh: npt.NDArray[np.float64], veh_length_m: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Per approach (lanes as described in the class): halting vehicles on all its
        lanes, and its queue in metres from the stop line (per edge of the approach its
        longest lane queue, summed along the approach)."""
        h = halting_veh[self.lane_order]
        queue_m = h * (veh_length_m[self.lane_order] + JAM_GAP_M)
        seg_veh = np.add.reduceat(h, self.seg_starts)[self.seg_order]
        seg_m = np.maximum.reduceat(queue_m, self.seg_starts)[self.seg_order]
        return np.add.reduceat(seg_veh, self.app_starts), np.add.reduceat(seg_m, self.app_starts)

    @property
    def ids(self) -> tuple[str, ...]:
        """Approach ids, ``<signal>/<incoming edge>``."""
        return tuple(f"{t}/{e}" for t, e in zip(self.tls_ids, self.edge_ids, strict=True))

    def by_id(self, values: npt.NDArray[np.float64]) -> dict[str, float]:
        return {a: float(v) for a, v in zip(self.ids, values, strict=True)}


def approach_edge_data_xml(edge_ids: tuple[str, ...], *, out: Path, begin_s: float,
                           end_s: float) -> str:  # fmt: skip
    """SUMO ``edgeData`` over ``edge_ids``: one interval, the whole run, written to ``out``."""
    edges = " ".join(sorted(set(edge_ids)))
    period = max(end_s - begin_s, 1.0)
    return (
        "<additional>\n"
        f'  <edgeData id="twin_approaches" file="{out}" begin="{begin_s:g}" end="{end_s:g}" '
        f'period="{period:g}" edges="{edges}" excludeEmpty="false"/>\n'
        "</additional>\n"
    )


class SimSettings(Protocol):
    """What the engine needs of a scenario's ``[sim]`` table."""

    @property
    def begin_s(self) -> float: ...

    @property
    def end_s(self) -> float: ...

    @property
    def duration_s(self) -> float: ...

    @property
    def step_length_s(self) -> float: ...

    @property
    def control_interval_s(self) -> float: ...

    @property
    def series_interval_s(self) -> float: ...

    @property
    def backend(self) -> Literal["libsumo", "traci"]: ...


@dataclass(frozen=True)
class SessionWiring:
    """Which objects the state arrays follow: every signal, loop and signalized incoming
    lane (grouped by signal, CSR offsets ``lane_tls``)."""

    tls_ids: tuple[str, ...]
    det_ids: tuple[str, ...]
    lane_ids: tuple[str, ...]
    lane_tls: npt.NDArray[np.int64]
    detector_period_s: float


@dataclass
class RunContext(Generic[CityT, SpecT]):
    """Handed to every hook: the world (SUMO), the bus, the city and the spec."""

    session: World
    bus: EventBus
    city: CityT
    spec: SpecT
    seed: int
    run_dir: Path
    control: ControlManager | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


class RunHooks(Generic[CityT, SpecT]):
    """A scenario's part in a run. Every hook is optional: the defaults do nothing.

    ``needs_step_hook``: call :meth:`on_step` after every SUMO step (costly; only for a
    scenario that must act within a control interval, e.g. following an EV).
    ``special_vehicles``: vehicles left out of the background-traffic metrics (EVs).
    """

    needs_step_hook: bool = False
    special_vehicles: AbstractSet[str] = frozenset()

    def setup(self, ctx: RunContext[CityT, SpecT]) -> None:
        """Once, after SUMO started and the signals were taken over."""

    def on_step(self, ctx: RunContext[CityT, SpecT]) -> None:
        """After every SUMO step (only when ``needs_step_hook``)."""

    def on_interval(self, ctx: RunContext[CityT, SpecT]) -> None:
        """Every control tick, after the state arrays and the controllers."""

    def finish(self, ctx: RunContext[CityT, SpecT]) -> dict[str, Any]:
        """At the end, SUMO still open: the scenario's own metrics."""
        return {}

    def series(self) -> dict[str, pd.DataFrame]:
        """After :meth:`finish`: the scenario's own time series (stored with the run)."""
        return {}


@dataclass
class RunResult:
    """What a run produced: metrics, time series and the event log (nothing stored)."""

    metrics: dict[str, Any]
    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


def _on_step_grid(t_s: float, step_s: float) -> float:
    return math.ceil(t_s / step_s - TIME_EPS_S) * step_s


class Run(Generic[CityT, SpecT]):
    """One simulation run that can be stepped from outside.

    Parameters
    ----------
    config
        SUMO's inputs and outputs.
    wiring
        Signals, loops and lanes the state arrays follow.
    sim
        The run's window and intervals.
    hooks
        The scenario.
    city, spec
        Handed to the hooks in their :class:`RunContext` (the engine never reads them).
    seed
        The run's seed (SUMO's is in ``config``).
    run_dir
        Where the run writes its files.
    control
        The signal controllers, or ``None`` when every signal runs its own plan.
    gui
        Show the run in ``sumo-gui`` (needs the traci backend).
    progress
        Called with ``(done_s, total_s)`` after every control tick.
    save_state_at_s
        Save the run's state at these tick times (:mod:`twin.engine.states`), into
        ``run_dir/states``; ``state_meta`` goes into each sidecar (what the composing
        layer needs to fork from it), ``city_hash`` names the city there.
    resume
        Start from a saved state (a fork) instead of from the beginning.
    """

    def __init__(
        self,
        *,
        config: SessionConfig,
        wiring: SessionWiring,
        sim: SimSettings,
        hooks: RunHooks[CityT, SpecT],
        city: CityT,
        spec: SpecT,
        seed: int,
        run_dir: Path,
        control: ControlManager | None = None,
        gui: bool = False,
        progress: Progress | None = None,
        save_state_at_s: Sequence[float] = (),
        state_meta: Mapping[str, Any] | None = None,
        city_hash: str = "",
        resume: Resume | None = None,
    ) -> None:
        chains: tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]] = ({}, {})
        saved = resume.state.approaches if resume is not None else {}
        if saved:  # a fork: the saved run read them from the same net (seconds at scale)
            chains = tuple(
                {k: tuple(v) for k, v in saved.get(part, {}).items()}
                for part in ("chains", "lanes")
            )  # type: ignore[assignment]
        elif wiring.lane_ids and config.net.exists():
            stop_edges = sorted({lane.rsplit("_", 1)[0] for lane in wiring.lane_ids})
            chains = upstream_chains(config.net, stop_edges)
        self._chains = chains
        self.approaches = Approaches.of(wiring, *chains)
        self._edge_data: Path | None = None
        if len(self.approaches):
            # SUMO measures the time loss on every approach itself (C++, no Python per step)
            run_dir.mkdir(parents=True, exist_ok=True)
            self._edge_data = run_dir / APPROACH_EDGE_DATA
            add = run_dir / "approaches.add.xml"
            add.write_text(
                approach_edge_data_xml(
                    tuple(e for chain in self.approaches.chains for e in chain),
                    out=self._edge_data.resolve(),
                    begin_s=sim.begin_s,
                    end_s=sim.end_s,
                ),
                encoding="utf-8",
            )
            config = replace(config, additional=(*config.additional, add))
        self.config = config
        self.sim = sim
        self.hooks = hooks
        self.control = control
        self.progress = progress
        self.session = SumoSession(
            config,
            tls_ids=wiring.tls_ids,
            det_ids=wiring.det_ids,
            lane_ids=wiring.lane_ids,
            lane_tls=wiring.lane_tls,
            detector_period_s=wiring.detector_period_s,
            backend=sim.backend,
            gui=gui,
        )
        self.bus = EventBus(start_s=sim.begin_s)
        self.ctx: RunContext[CityT, SpecT] = RunContext(
            session=self.session, bus=self.bus, city=city, spec=spec, seed=seed,
            run_dir=run_dir, control=control,
        )  # fmt: skip
        self.n_ticks = math.ceil(sim.duration_s / sim.control_interval_s - TIME_EPS_S)
        self.tick = 0
        self._series_every = round(sim.series_interval_s / sim.control_interval_s)
        self._queue_rows: list[tuple[float, npt.NDArray[np.float64]]] = []
        n_app = len(self.approaches)
        self._app_max_veh = np.zeros(n_app)  # over the run, read every control tick
        self._app_max_m = np.zeros(n_app)
        self._app_int_veh = np.zeros(n_app)  # since the last series row
        self._app_int_m = np.zeros(n_app)
        self._app_rows: list[tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
        n_lanes = len(wiring.lane_ids) + len(self.approaches.upstream_lane_ids)
        self._lane_halting = np.zeros(n_lanes)  # signalized lanes, then upstream ones
        self._lane_length = np.zeros(n_lanes)
        self._hook: Callable[[SumoSession], None] | None = None
        self._state: Literal["new", "running", "finished", "closed"] = "new"
        self._wall0 = 0.0
        self._save_at = sorted(float(t) for t in save_state_at_s)
        self._state_meta = dict(state_meta or {})
        self._city_hash = city_hash
        self.resume = resume
        self.saved_states: list[Path] = []
        if hooks.needs_step_hook:
            step_hook = hooks.on_step
            ctx = self.ctx

            def hook(s: SumoSession) -> None:
                step_hook(ctx)
                if self.control is not None:  # a command from the hook may be due now:
                    self.control.advance(s.time_s)  # show it this step, never late

            self._hook = hook

    # ------------------------------------------------------------------ state
    @property
    def t_s(self) -> float:
        """Simulation time reached (the last tick's)."""
        return self.sim.begin_s + 0.0 if self.tick == 0 else self._tick_time(self.tick)

    @property
    def done(self) -> bool:
        """Every tick has run (only :meth:`finish` is left)."""
        return self.tick >= self.n_ticks

    def _tick_time(self, tick: int) -> float:
        return min(self.sim.begin_s + tick * self.sim.control_interval_s, self.sim.end_s)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start SUMO, take the guarded signals over, and set the scenario up."""
        if self._state != "new":
            raise ConfigError(f"run already {self._state}: start() may be called once")
        self._wall0 = time.perf_counter()
        self.session.start()
        self._state = "running"
        try:
            if self.resume is not None:
                self._resume(self.resume)
            elif self.control is not None:
                self.control.start(self.session, t_s=self.sim.begin_s)
            self.hooks.setup(self.ctx)
        except BaseException:
            self.close()
            raise

    def _resume(self, resume: Resume) -> None:
        """Continue a saved state: the other model's snapshot placed (SUMO loaded its own
        state file already), the twin's edits re-applied, the controllers continued or
        taking over."""
        state, session = resume.state, self.session
        mode = "meso" if self.config.mesosim else "micro"
        if state.mode != mode:
            counts = session.place(state.snapshot)
            log.info("fork from a %s state into %s: %d vehicles placed, %d refused",
                     state.mode, mode, counts["placed"], counts["refused"])  # fmt: skip
            self.ctx.metrics["fork_vehicles_placed"] = counts["placed"]
            self.ctx.metrics["fork_vehicles_refused"] = counts["refused"]
            session.reapply(state.edits)
        else:  # the loops' vehicles at the saved time, which SUMO's loaded loops never count
            session.reapply({**state.edits, "on_loops": state.snapshot.get("on_loops", {})})
        twin_state = state.snapshot.get("twin_state", {})
        session.state.det_interval_end_s = float(twin_state.get("det_interval_end_s", -1.0))
        t0 = self.sim.begin_s
        if resume.restore_control and state.has_control:
            self.control = load_control(
                state.control_file, display=session, clock=lambda: float(session.time_s)
            )
            self.ctx.control = self.control
        elif self.control is not None:
            self.control.start(session, t_s=t0, takeover="running", initial=resume.initial)

    def save_state(self, meta: Mapping[str, Any] | None = None) -> Path:
        """Save the run's state now (SUMO's file, the sidecar, the controllers) into
        ``run_dir/states``; returns SUMO's state file. ``meta``: more for the sidecar's
        ``meta`` (e.g. the live shadow's field intervals)."""
        session = self.session
        t_s = session.time_s
        states = self.ctx.run_dir / "states"
        states.mkdir(parents=True, exist_ok=True)
        path = state_path(states, t_s)
        wall0 = time.perf_counter()
        session.save_state(path)
        snapshot = session.snapshot()
        snapshot["twin_state"] = {"det_interval_end_s": session.state.det_interval_end_s}
        control = self.control
        if control is not None:
            dump_control(control, display=session, path=path.with_suffix(".control.pkl"))
        write_sidecar(
            path, t_s=t_s, sumo_version=_sumo_version(),
            mode="meso" if self.config.mesosim else "micro", city_hash=self._city_hash,
            meta={**self._state_meta, **(meta or {})}, edits=session.edits(), snapshot=snapshot,
            command_log=list(session.command_log), has_control=control is not None,
            approaches={"chains": self._chains[0], "lanes": self._chains[1]},
        )  # fmt: skip
        log.info("state saved at t=%g s in %.2f s: %s", t_s, time.perf_counter() - wall0, path)
        self.saved_states.append(path)
        return path

    def advance_to(self, t_s: float) -> float:
        """Run every control tick due by ``t_s`` (at most to the end of the run); returns
        the time reached. Ticks fall on ``begin_s + k * control_interval_s``."""
        if self._state != "running":
            raise ConfigError(f"advance_to() needs a started run (it is {self._state})")
        try:
            while self.tick < self.n_ticks and self._tick_time(self.tick + 1) <= t_s + TIME_EPS_S:
                self._tick(self.tick + 1)
        except BaseException:
            self.close()
            raise
        return self.t_s

    def _tick(self, tick: int) -> None:
        sim, session, control, hook = self.sim, self.session, self.control, self._hook
        t_s = self._tick_time(tick)
        while control is not None and control.next_change_s() < t_s - TIME_EPS_S:
            # a guarded signal changes before the tick: stop there and show it
            t_change = _on_step_grid(control.next_change_s(), sim.step_length_s)
            session.run(t_change, step_hook=hook)
            control.advance(session.time_s)
        session.run(t_s, step_hook=hook)
        if control is not None:
            control.advance(t_s)
        self.bus.advance_to(t_s)
        session.read_signals()
        session.read_detectors()
        if control is not None:
            control.on_tick(t_s, session, session.state)
        self.hooks.on_interval(self.ctx)
        if control is not None:
            control.advance(t_s)  # commands just given may be due now
        st = session.state
        if len(self.approaches):
            # every control tick: the queue on each approach (its cycle maximum is seen to
            # within a control interval)
            session.read_lane_queues()
            n = len(st.lane_ids)
            self._lane_halting[:n] = st.lane_halting_veh
            self._lane_length[:n] = st.lane_veh_length_m
            up = self.approaches.upstream_lane_ids
            if up:
                session.read_lanes(up, self._lane_halting[n:], self._lane_length[n:])
            veh, queue_m = self.approaches.queues(self._lane_halting, self._lane_length)
            np.maximum(self._app_int_veh, veh, out=self._app_int_veh)
            np.maximum(self._app_int_m, queue_m, out=self._app_int_m)
        if tick % self._series_every == 0 or tick == self.n_ticks:
            if not len(self.approaches):
                session.read_queues()
            per_tls, _ = group_sum_max(st.lane_halting_veh, st.lane_tls)
            self._queue_rows.append((t_s, per_tls))
            if len(self.approaches):
                self._app_rows.append((t_s, self._app_int_veh.copy(), self._app_int_m.copy()))
                np.maximum(self._app_max_veh, self._app_int_veh, out=self._app_max_veh)
                np.maximum(self._app_max_m, self._app_int_m, out=self._app_max_m)
                self._app_int_veh[:] = 0.0
                self._app_int_m[:] = 0.0
        self.tick = tick
        while self._save_at and self._save_at[0] <= t_s + TIME_EPS_S:
            self._save_at.pop(0)
            self.save_state()
        if self.progress is not None:
            self.progress(t_s - sim.begin_s, sim.duration_s)

    def close(self) -> None:
        """Stop SUMO without results (cancellation, or after an error)."""
        if self._state in ("running", "new"):
            self.session.close()
            self._state = "closed"

    def finish(self) -> RunResult:
        """Let the scenario finish, close SUMO, and compute metrics and series."""
        if self._state != "running":
            raise ConfigError(f"finish() needs a started run (it is {self._state})")
        try:
            extra = self.hooks.finish(self.ctx)
        finally:
            self.session.close()
            self._state = "finished"
        log.info("simulation finished in %.1f s wall", time.perf_counter() - self._wall0)
        return self._result(extra)

    # ------------------------------------------------------------------ results
    def _result(self, extra: dict[str, Any]) -> RunResult:
        sim, config, control, ctx = self.sim, self.config, self.control, self.ctx
        st = self.session.state
        metrics: dict[str, Any] = {}
        if config.tripinfo is not None:
            special = frozenset(self.hooks.special_vehicles)
            metrics.update(trip_metrics(config.tripinfo, exclude=special))
        if config.statistics is not None:
            metrics.update(statistics_metrics(config.statistics))
        queues = pd.DataFrame(
            [
                (t, tls, float(q))
                for t, arr in self._queue_rows
                for tls, q in zip(st.tls_ids, arr, strict=True)
            ],
            columns=["t_s", "tls_id", "queue_veh"],
        )
        # stopped delay per intersection, estimated from the sampled queue (a sample each
        # series interval stands for the whole interval): cheap, coarse, labelled as such
        queues["stopped_delay_est_veh_s"] = queues["queue_veh"] * sim.series_interval_s
        metrics.update(queue_metrics(queues))
        series_app: dict[str, pd.DataFrame] = {}
        if len(self.approaches):
            metrics.update(self._approach_metrics())
            app = self.approaches
            series_app["approach_queues"] = pd.DataFrame(
                [
                    (t, tls, edge, float(v), float(m))
                    for t, veh, qm in self._app_rows
                    for tls, edge, v, m in zip(app.tls_ids, app.edge_ids, veh, qm, strict=True)
                ],
                columns=["t_s", "tls_id", "edge_id", "queue_max_veh", "queue_max_m"],
            )
        metrics.update(extra)
        metrics.update(ctx.metrics)
        if control is not None:
            metrics.update(control.metrics())
        metrics["sim_end_s"] = sim.end_s
        series: dict[str, pd.DataFrame] = {"queues": queues, **series_app}
        if config.summary is not None:
            series = {
                "network": summary_series(config.summary, every_s=sim.series_interval_s),
                **series,
            }
        series.update(self.hooks.series())
        guard_log: list[dict[str, Any]] = []
        if control is not None:
            series.update({name: pd.DataFrame(rows) for name, rows in control.series().items()})
            if control.port is not None:
                # "interventions": what the guard changed (comma-separated kinds), if anything
                guard_log = [
                    {"t_s": e.t_s, "kind": f"guard_{e.what}", "tls_id": e.tls_id, **e.detail,
                     **({"interventions": ",".join(e.interventions)} if e.interventions else {})}
                    for e in control.port.events()
                ]  # fmt: skip
        events = [{"t_s": e.t_s, "kind": e.kind, **e.data} for e in self.bus.events] + guard_log
        return RunResult(metrics=metrics, series=series, events=events)

    def _approach_metrics(self) -> dict[str, Any]:
        """Queues and delays per approach (``<signal>/<incoming edge>`` -> value)."""
        app = self.approaches
        # ticks after the last series row (a run finished early) count as well
        np.maximum(self._app_max_veh, self._app_int_veh, out=self._app_max_veh)
        np.maximum(self._app_max_m, self._app_int_m, out=self._app_max_m)
        out: dict[str, Any] = {
            "approach_queue_max_veh": app.by_id(self._app_max_veh),
            "approach_queue_max_m": app.by_id(np.round(self._app_max_m, 3)),
        }
        if self._edge_data is not None and self._edge_data.exists():
            delays = approach_delays(self._edge_data, dict(zip(app.ids, app.chains, strict=True)))
            out["approach_delay_s"] = delays
            out["approach_los"] = approach_los(delays)
        else:  # SUMO stopped before writing it
            log.warning("no edgeData from SUMO at %s: no delay per approach", self._edge_data)
        return out


def simulate(run: Run[Any, Any]) -> RunResult:
    """The closed loop: start, run to the end, finish."""
    run.start()
    run.advance_to(run.sim.end_s)
    return run.finish()
