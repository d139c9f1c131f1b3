"""A steppable run: the engine's core, in the manner of SimPy's ``run(until)``.

:class:`Run` owns one SUMO session and advances it in control-interval slices:

``start()``
    starts SUMO, takes the guarded signals over, calls the scenario's ``setup``;
``advance_to(t_s)``
    runs every control tick up to ``t_s``. After each slice the SimPy bus catches up,
    signal phases and (when SUMO closed an aggregation interval) detector aggregates
    are read into the state arrays, the controllers and the scenario's hooks run, and
    every series interval the per-intersection queues are sampled (one numba call for
    the whole city);
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
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from signal_control.aggregate import group_sum_max
from signal_control.control import ControlManager
from twin.engine.events import EventBus
from twin.engine.metrics import queue_metrics, statistics_metrics, summary_series, trip_metrics
from twin.engine.sumo_session import SessionConfig, SumoSession
from twin.engine.world import World
from twin.errors import ConfigError

log = logging.getLogger(__name__)

Progress = Callable[[float, float], None]  # (done_s, total_s)
CityT = TypeVar("CityT")
SpecT = TypeVar("SpecT")
TIME_EPS_S = 1e-9


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
    ) -> None:
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
        self._hook: Callable[[SumoSession], None] | None = None
        self._state: Literal["new", "running", "finished", "closed"] = "new"
        self._wall0 = 0.0
        if hooks.needs_step_hook:
            step_hook = hooks.on_step
            ctx = self.ctx

            def hook(s: SumoSession) -> None:
                step_hook(ctx)
                if control is not None:  # a command from the hook may be due right now:
                    control.advance(s.time_s)  # show it this step, never late

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
            if self.control is not None:
                self.control.start(self.session, t_s=self.sim.begin_s)
            self.hooks.setup(self.ctx)
        except BaseException:
            self.close()
            raise

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
        if tick % self._series_every == 0 or tick == self.n_ticks:
            session.read_queues()
            st = session.state
            per_tls, _ = group_sum_max(st.lane_halting_veh, st.lane_tls)
            self._queue_rows.append((t_s, per_tls))
        self.tick = tick
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
        metrics.update(extra)
        metrics.update(ctx.metrics)
        if control is not None:
            metrics.update(control.metrics())
        metrics["sim_end_s"] = sim.end_s
        series: dict[str, pd.DataFrame] = {"queues": queues}
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
                guard_log = [
                    {"t_s": e.t_s, "kind": f"guard_{e.what}", "tls_id": e.tls_id, **e.detail}
                    for e in control.port.events()
                ]
        events = [{"t_s": e.t_s, "kind": e.kind, **e.data} for e in self.bus.events] + guard_log
        return RunResult(metrics=metrics, series=series, events=events)


def simulate(run: Run[Any, Any]) -> RunResult:
    """The closed loop: start, run to the end, finish."""
    run.start()
    run.advance_to(run.sim.end_s)
    return run.finish()
