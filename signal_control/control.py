"""Controllers per intersection, and the manager that runs them during a run.

Controllers (chosen per signal in the scenario's ``[control]``):

- ``fixed``: the network's own fixed-time plan, run by SUMO (nothing to do).
- ``actuated``: SUMO's own gap-based actuation over the same phases, with the plan's
  minimum greens (pedestrian minimums included) and maximum greens.
- ``delay_based``: SUMO's own delay-based actuation (Oertel & Wagner 2011: a green is
  extended while approaching vehicles have accumulated time loss) over the same phases,
  minimum and maximum greens.
- ``adaptive``: every ``update_s`` one kernel call estimates Webster/HCM timings for all
  adaptive signals from the stop-line loops (counts over a rolling window plus the
  residual queue); timings are smoothed across updates and sent through the guarded
  port, which applies them from each signal's next green. With ``actuation = "gap_out"``
  each planned green (times ``green_headroom``, at most the max green) is a maximum: a
  green whose gap-out loops (upstream, where SUMO's actuated places its own; or the
  stop-line loops) saw no vehicle for ``gap_s`` after its minimum ends early through the
  guard's force-off, and the cycle floats (:mod:`signal_control.actuation`).
- ``max_pressure``: every control tick, each signal whose green has had its minimum
  compares stage pressures (Σ saturation flow × (queue in − queue out)); if another
  stage has more pressure (by a hysteresis margin) the port skips to it, else it holds.

The manager sees the simulation only through duck-typed objects: a session with
``set_signal_state``/``set_program``/``set_phase``/``read_lane_halting``/
``read_edge_halting``/``read_loop_gap`` and the twin's state arrays. It never imports SUMO.

Every guarded signal's plan is verified against its conflict matrix (``foes``, always
given) when the port starts. A signal handed back to its local program
(:meth:`ControlManager.hand_back`) is no longer commanded by any controller here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from signal_control.actuation import (
    ADVANCE_LOOP_PREFIX,
    GapOutPolicy,
    advance_loops,
    advance_loops_xml,
    lane_min_green_s,
)
from signal_control.coordination import Coordinator, whole_s
from signal_control.guard import ALL_RED_PROMISE_S, Foes, Interval
from signal_control.interfaces import (
    ControlSettings,
    ControlWorld,
    DetectorLike,
    DetectorReadings,
    LinkLike,
    SignalLike,
)
from signal_control.max_pressure import MaxPressurePolicy
from signal_control.movements import (
    HEAVY_VEHICLE_FACTOR,
    SAT_FLOW_PERMISSIVE_LEFT_VPH,
    SAT_FLOW_PROTECTED_LEFT_VPH,
    SAT_FLOW_SHARED_RIGHT_VPH,
    SAT_FLOW_THROUGH_VPH,
    lane_sat_flow_vph,
    share_of_count,
    stage_lanes,
)
from signal_control.port import GuardedPort, LocalMode, Takeover, plan_from_phases
from signal_control.timing import (
    TimingNetwork,
    TimingParams,
    TimingWorkspace,
    estimate_timings,
    smooth_timings,
)

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
KINDS = ("fixed", "actuated", "delay_based", "adaptive", "max_pressure")
SUMO_ACTUATED = ("actuated", "delay_based")  # run by SUMO itself, program id = the kind
__all__ = [
    "HEAVY_VEHICLE_FACTOR",
    "KINDS",
    "SAT_FLOW_PERMISSIVE_LEFT_VPH",
    "SAT_FLOW_PROTECTED_LEFT_VPH",
    "SAT_FLOW_SHARED_RIGHT_VPH",
    "SAT_FLOW_THROUGH_VPH",
    "ControlManager",
    "actuated_programs_xml",
    "lane_sat_flow_vph",
]


def actuated_programs_xml(signals: Sequence[SignalLike], kind: str = "actuated") -> str:
    """SUMO ``actuated`` or ``delay_based`` programs (programID = ``kind``) over the
    plans' phases: greens between their minimum (pedestrian minimum included) and
    maximum."""
    if kind not in SUMO_ACTUATED:
        raise ValueError(f"kind {kind!r}; allowed: {', '.join(SUMO_ACTUATED)}")
    lines = ["<additional>"]
    for s in signals:
        lines.append(f'  <tlLogic id="{s.id}" type="{kind}" programID="{kind}" offset="0">')
        if kind == "actuated":
            lines.append('    <param key="max-gap" value="3.0"/>')
            lines.append('    <param key="detector-gap" value="2.0"/>')
        else:  # SUMO's default detection range (100 m) and its minimum time loss
            lines.append('    <param key="detectorRange" value="100"/>')
            lines.append('    <param key="minTimeloss" value="1.0"/>')
        for p in s.phases:
            if p.kind == "green":
                lines.append(
                    f'    <phase duration="{p.duration_s:g}" minDur="{p.min_green_s:g}" '
                    f'maxDur="{p.max_green_s:g}" state="{p.state}" name="{p.name}"/>'
                )
            else:
                lines.append(
                    f'    <phase duration="{p.duration_s:g}" state="{p.state}" name="{p.name}"/>'
                )
        lines.append("  </tlLogic>")
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


@dataclass
class _Telemetry:
    timings: list[dict[str, Any]] = field(default_factory=list)
    decisions: int = 0


class ControlManager:
    """Runs the scenario's controllers on a city's signals.

    Parameters
    ----------
    signals
        The city's signal specs (``id``, ``phases``, ``incoming_lanes``, ``offset_s``).
    links
        Per signal, its links (``index``, ``from_lane``, ``to_edge``, ``direction``).
    edge_lanes
        Lane count of every edge (for downstream queues per lane).
    detectors
        Loop specs (``id``, ``kind``, ``lane``).
    assignment
        Controller kind per signal id.
    spec
        The scenario's ``ControlSpec`` (adaptive parameters, hysteresis).
    foes
        Per signal, the conflict matrix of its links (links that cross, or merge into
        one exit edge); the guard verifies every plan against it.
    all_red_promise_s
        The all-red the city promises; a guarded plan with a shorter one is refused.
    positions_m
        Per signal id, its (x, y) in metres (the city's projected frame): the offsets of
        ``coordination = "arterial"``, which needs them for every adaptive signal.
    """

    def __init__(
        self,
        *,
        signals: Sequence[SignalLike],
        links: Mapping[str, Sequence[LinkLike]],
        edge_lanes: Mapping[str, int],
        detectors: Sequence[DetectorLike],
        assignment: Mapping[str, str],
        spec: ControlSettings,
        detector_period_s: float,
        control_interval_s: float,
        foes: Mapping[str, Foes],
        all_red_promise_s: float = ALL_RED_PROMISE_S,
        positions_m: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.spec = spec
        self.foes = foes
        self.all_red_promise_s = all_red_promise_s
        self.by_id = {s.id: s for s in signals}
        self.assignment = dict(assignment)
        self.actuated = [s for s in signals if assignment[s.id] == "actuated"]
        self.delay_based = [s for s in signals if assignment[s.id] == "delay_based"]
        self.adaptive = [s.id for s in signals if assignment[s.id] == "adaptive"]
        self.pressure = [s.id for s in signals if assignment[s.id] == "max_pressure"]
        self.fixed_guarded = (
            [s.id for s in signals if assignment[s.id] == "fixed"] if spec.guard_fixed else []
        )
        self.guarded = self.adaptive + self.pressure + self.fixed_guarded
        self.detector_period_s = detector_period_s
        self.control_interval_s = control_interval_s
        self.port: GuardedPort | None = None
        self.telemetry = _Telemetry()
        self._links = links
        self._edge_lanes = edge_lanes
        self._next_update_s = math.inf
        # the world the controllers read (set by start(); in live mode by on_tick)
        self._world: ControlWorld | None = None
        self._gap: GapOutPolicy | None = None
        # per lane with a gap-out loop of its own (gap_loops = "advance"): its shortest
        # minimum green (where the loop goes depends on it)
        self._advance_min_green_s: dict[str, float] = {}
        self._coord: Coordinator | None = None
        if self.adaptive:
            self._build_adaptive(detectors)
            if spec.adaptive.coordination == "arterial":
                self._build_coordination(positions_m or {})
            if spec.adaptive.actuation == "gap_out":
                gap_loop = {d.lane: d.id for d in detectors if d.kind == "stopline"}
                if spec.adaptive.gap_loops == "advance":
                    for t in self.adaptive:
                        for lane, g in lane_min_green_s(self.by_id[t], links[t]).items():
                            if lane in gap_loop:
                                self._advance_min_green_s[lane] = g
                    gap_loop = {lane: ADVANCE_LOOP_PREFIX + lane
                                for lane in self._advance_min_green_s}  # fmt: skip
                self._gap = GapOutPolicy(
                    [self.by_id[t] for t in self.adaptive],
                    self._links,
                    gap_loop,
                    gap_s=spec.adaptive.gap_s,
                    skip_empty=spec.adaptive.skip_empty,
                    hold_stage=(
                        dict(zip(self.adaptive, self._coord.stage, strict=True))
                        if self._coord is not None
                        else None
                    ),
                )
        if self.pressure:
            self._build_pressure()

    # ------------------------------------------------------------------ structure
    def _stage_lanes(self, tls: str) -> list[dict[str, set[str]]]:
        """Per green stage: lane -> directions served green in it."""
        return stage_lanes(self.by_id[tls], self._links[tls])

    def _build_adaptive(self, detectors: Sequence[DetectorLike]) -> None:
        a = self.spec.adaptive
        stop_loop = {d.lane: d.id for d in detectors if d.kind == "stopline"}
        lanes: list[str] = []
        lane_index: dict[str, int] = {}
        # the kernel's lanes: one per real lane, plus one per (stage, lane) where the lane
        # serves only some of its movements (its count split by movement: share_of_count)
        src: list[int] = []
        share: list[float] = []
        whole: dict[str, int] = {}
        phase_ptr, lane_ptr, phase_lanes = [0], [0], []
        sat, lost, intergreen, min_g, max_g = [], [], [], [], []
        for tls in self.adaptive:
            sig = self.by_id[tls]
            yellow = min(p.duration_s for p in sig.phases if p.kind == "yellow")
            all_red = min(p.duration_s for p in sig.phases if p.kind == "all_red")
            greens = [p for p in sig.phases if p.kind == "green"]
            stages = self._stage_lanes(tls)
            for phase, served in zip(greens, stages, strict=True):
                for lane, dirs in sorted(served.items()):
                    if lane not in lane_index:
                        lane_index[lane] = len(lanes)
                        lanes.append(lane)
                        protected = all(
                            phase.state[k.index] == "G"
                            for k in self._links[tls]
                            if k.from_lane == lane
                        )
                        whole[lane] = len(src)
                        src.append(lane_index[lane])
                        share.append(1.0)
                        sat.append(lane_sat_flow_vph(dirs, protected_left=protected))
                    part = share_of_count(lane, dirs, stages)
                    if part == 1.0:
                        phase_lanes.append(whole[lane])
                    else:  # its own saturation flow: the movements it serves in this stage
                        phase_lanes.append(len(src))
                        src.append(lane_index[lane])
                        share.append(part)
                        own = all(
                            phase.state[k.index] == "G"
                            for k in self._links[tls]
                            if k.from_lane == lane and phase.state[k.index] in "Gg"
                        )
                        sat.append(lane_sat_flow_vph(dirs, protected_left=own))
                lane_ptr.append(len(phase_lanes))
                lost.append(a.startup_loss_s + a.clearance_loss_s)
                intergreen.append(yellow + all_red)
                min_g.append(phase.min_green_s)
                max_g.append(phase.max_green_s)
            phase_ptr.append(len(lost))
        self._ad_lanes = lanes
        self._ad_index = {t: i for i, t in enumerate(self.adaptive)}
        self._ad_loop = [stop_loop.get(lane) for lane in lanes]
        self._ad_src = np.array(src, np.int64)
        self._ad_share = np.array(share, np.float64)
        self._ad_demand = np.zeros(len(src))
        self._ad_network = TimingNetwork.create(
            phase_ptr=np.array(phase_ptr, np.int64),
            phase_lane_ptr=np.array(lane_ptr, np.int64),
            phase_lanes=np.array(phase_lanes, np.int64),
            sat_flow_vph=np.array(sat, np.float64),
            lost_s=np.array(lost, np.float64),
            intergreen_s=np.array(intergreen, np.float64),
            min_green_s=np.array(min_g, np.float64),
            max_green_s=np.array(max_g, np.float64),
        )
        # the estimate's arrays, made once: each update writes into them (nothing that
        # outlives an update keeps a reference: smoothing returns arrays of its own)
        self._ad_work = TimingWorkspace(self._ad_network)
        self._ad_params = TimingParams(
            window_s=a.window_s, c_min_s=a.c_min_s, c_max_s=a.c_max_s, y_max=a.y_max
        )
        n_windows = max(1, round(a.window_s / self.detector_period_s))
        self._ad_history: deque[FloatArray] = deque(maxlen=n_windows)
        self._ad_last_interval = -1.0
        self._ad_prev_cycle = np.full(len(self.adaptive), np.nan)
        self._ad_prev_green = np.full(len(lost), np.nan)
        self._ad_halting = np.zeros(len(lanes))

    def _build_coordination(self, positions_m: Mapping[str, tuple[float, float]]) -> None:
        missing = [t for t in self.adaptive if t not in positions_m]
        if missing:
            raise ValueError(
                "coordination = 'arterial' needs every adaptive signal's position; missing: "
                + ", ".join(missing[:5])
            )
        sigs = [self.by_id[t] for t in self.adaptive]
        self._coord = Coordinator(
            sigs,
            [positions_m[t][0] for t in self.adaptive],
            progression_kph=self.spec.adaptive.progression_kph,
            cycle_s=max(sum(p.duration_s for p in s.phases) for s in sigs),
        )
        # the common plan is known from the first update on; until then the city's plans
        self._coord_green = np.full(len(self.adaptive), np.nan)
        # per signal, per stage: (minimum green with the pedestrians', maximum green,
        # the intergreen after it)
        self._coord_stages: list[list[tuple[float, float, float]]] = []
        for sig in sigs:
            rows: list[tuple[float, float, float]] = []
            for p in sig.phases:
                if p.kind == "green":
                    rows.append((max(p.min_green_s, p.ped_min_green_s), p.max_green_s, 0.0))
                elif rows:
                    lo, hi, ig = rows[-1]
                    rows[-1] = (lo, hi, ig + p.duration_s)
            self._coord_stages.append(rows)
        self.coordination_dwells = 0
        self._dwell_entered = np.full(len(self.adaptive), np.nan)
        self._coord_entered = np.full(len(self.adaptive), np.nan)  # the green last timed
        net = self._ad_network
        self._ad_intergreen = np.add.reduceat(net.intergreen_s, net.phase_ptr[:-1])
        self.coordinated_greens = 0

    def _build_pressure(self) -> None:
        self._mp = MaxPressurePolicy(
            [self.by_id[t] for t in self.pressure],
            self._links,
            self._edge_lanes,
            hysteresis_veh=self.spec.pressure_hysteresis_veh,
            control_interval_s=self.control_interval_s,
        )
        self._mp_lane_halting = np.zeros(len(self._mp.lanes))
        self._mp_edge_halting = np.zeros(len(self._mp.edges))

    # ------------------------------------------------------------------ run
    @property
    def advance_lanes(self) -> list[str]:
        """The lanes that get a gap-out loop for the run (none unless adaptive signals
        gap out at ``advance`` loops)."""
        return sorted(self._advance_min_green_s)

    def extra_additional_xml(
        self,
        *,
        lane_length_m: Mapping[str, float] | None = None,
        lane_speed_mps: Mapping[str, float] | None = None,
    ) -> str | None:
        """What SUMO must load at start: programs (SUMO reads programs only from its
        inputs), and the gap-out loops, placed from the lanes' ``lane_length_m`` and
        ``lane_speed_mps`` (needed for every lane of :attr:`advance_lanes`)."""
        parts = [
            actuated_programs_xml(sigs, kind)
            for sigs, kind in ((self.actuated, "actuated"), (self.delay_based, "delay_based"))
            if sigs
        ]
        if self._advance_min_green_s:
            if lane_length_m is None or lane_speed_mps is None:
                raise ValueError(
                    "gap-out at advance loops: lane_length_m and lane_speed_mps are needed "
                    "to place the loops"
                )
            loops = advance_loops(
                self._advance_min_green_s,
                lane_length_m=lane_length_m,
                lane_speed_mps=lane_speed_mps,
                detector_gap_s=self.spec.adaptive.detector_gap_s,
            )
            parts.append(f"<additional>\n{advance_loops_xml(loops)}</additional>\n")
        if not parts:
            return None
        body = "".join(p.removeprefix("<additional>\n").removesuffix("</additional>\n")
                       for p in parts)  # fmt: skip
        return f"<additional>\n{body}</additional>\n"

    def start(
        self,
        session: ControlWorld,
        *,
        t_s: float,
        takeover: Takeover = "fresh",
        initial: Mapping[str, tuple[Interval, int, float]] | None = None,
    ) -> None:
        """Take the signals over at ``t_s``. ``takeover="fresh"``: the display has shown
        nothing yet (a run's first step); ``"running"``: mid-run (a fork), each plan's
        interval in progress is finished; ``initial``: what guarded signals are known to
        show (see :class:`~signal_control.port.GuardedPort`)."""
        for sig in self.actuated:
            session.set_program(sig.id, "actuated")
        for sig in self.delay_based:
            session.set_program(sig.id, "delay_based")
        if self.guarded:
            plans = {
                t: plan_from_phases(
                    t,
                    self.by_id[t].phases,
                    offset_s=self.by_id[t].offset_s,
                    min_all_red_s=self.all_red_promise_s,
                )
                for t in self.guarded
            }
            # "fresh": the display has shown nothing yet, a plan standing in an
            # intergreen starts its next green (see GuardedPort's takeover)
            self.port = GuardedPort(
                session,
                plans,
                start_s=t_s,
                foes={t: self.foes[t] for t in self.guarded},
                align_offsets=True,
                takeover=takeover,
                clock=lambda: float(session.time_s),
                initial={t: v for t, v in initial.items() if t in plans} if initial else None,
            )
        if self.adaptive:
            self._next_update_s = t_s + self.spec.adaptive.update_s
        self._world = session
        if self._gap is not None:
            self._actuate(t_s, session)  # schedules the first look at every green

    def attach(self, port: GuardedPort, *, t_s: float) -> None:
        """Drive a guarded port that already took the signals over (live mode: a field
        port over the controllers) instead of starting one over a display."""
        missing = [t for t in self.guarded if t not in port.index]
        if missing:
            raise ValueError(
                f"the port does not control signals {', '.join(missing[:5])} that these "
                "controllers drive"
            )
        self.port = port
        if self.adaptive:
            self._next_update_s = t_s + self.spec.adaptive.update_s

    def hand_back(self, tls_ids: Sequence[str], mode: LocalMode = "plan") -> None:
        """Hand guarded signals back to their local program (see
        :meth:`GuardedPort.local_mode`); the controllers here stop commanding them."""
        if self.port is None:
            raise ValueError("no signal is under guarded control: nothing to hand back")
        for tls in tls_ids:
            self.port.local_mode(tls, mode)

    def _commanded(self, tls: str) -> bool:
        """The signal still takes commands (not handed back, nor being handed back)."""
        return self.port is not None and not self.port.is_local(tls)

    def next_change_s(self) -> float:
        """When a guarded signal changes next, or (with gap-out) a green must be looked
        at: the simulation stops there."""
        out = self.port.next_change_s() if self.port is not None else math.inf
        if self._gap is not None and self._world is not None:
            out = min(out, self._gap.next_check_s())
        return out

    def advance(self, t_s: float) -> None:
        if self.port is not None:
            self.port.advance(t_s)
            if self._gap is not None and self._world is not None:
                self._actuate(t_s, self._world)

    def on_tick(self, t_s: float, session: ControlWorld, state: DetectorReadings) -> None:
        """Called every control interval, after the state arrays were refreshed."""
        self._world = session
        if self.adaptive:
            self._collect_counts(state)
            if t_s + 1e-9 >= self._next_update_s:
                self._update_adaptive(t_s, session)
                self._next_update_s += self.spec.adaptive.update_s
        if self.pressure:
            self._update_pressure(t_s, session)

    def _collect_counts(self, state: DetectorReadings) -> None:
        if state.det_interval_end_s <= self._ad_last_interval:
            return
        self._ad_last_interval = state.det_interval_end_s
        counts = np.full(len(self._ad_lanes), np.nan)
        for k, det in enumerate(self._ad_loop):
            if det is not None:
                counts[k] = state.det_count_veh[state.det_index[det]]
        self._ad_history.append(counts)

    def _update_adaptive(self, t_s: float, session: ControlWorld) -> None:
        if not self._ad_history:
            return
        window = np.vstack(self._ad_history)
        counted = window.sum(axis=0)  # NaN stays NaN for lanes without a loop
        session.read_lane_halting(self._ad_lanes, self._ad_halting)
        demand = counted + self._ad_halting  # served + still waiting
        # per kernel lane: its lane's demand, split by movement where the stage serves only
        # some of the lane's movements (NaN stays NaN)
        np.multiply(demand[self._ad_src], self._ad_share, out=self._ad_demand)
        window_s = len(self._ad_history) * self.detector_period_s
        params = dataclasses.replace(self._ad_params, window_s=window_s)
        target = estimate_timings(self._ad_network, self._ad_demand, params, out=self._ad_work)
        a = self.spec.adaptive
        plan = smooth_timings(
            self._ad_network,
            prev_cycle_s=self._ad_prev_cycle,
            prev_green_s=self._ad_prev_green,
            target_cycle_s=target.cycle_s,
            target_green_s=target.green_s,
            alpha=a.smoothing,
            max_step_s=a.max_step_s,
        )
        cycle, green = plan.cycle_s, plan.green_s
        self._ad_prev_cycle, self._ad_prev_green = cycle, green
        assert self.port is not None
        ptr = self._ad_network.phase_ptr
        coord = self._coord
        if coord is not None:
            # one cycle: each signal's split stretched to it, within each green's minimum
            # and maximum; the main street's share places its yield point (what the
            # maxima leave of the cycle goes to the side stages' dwell)
            coord.update(t_s, cycle)
            green = green.copy()
            net = self._ad_network
            for i in range(len(self.adaptive)):
                a_, b_ = ptr[i], ptr[i + 1]
                green[a_:b_] = np.clip(
                    coord.split_greens(
                        green[a_:b_], float(cycle[i]), float(self._ad_intergreen[i])
                    ),
                    net.min_green_s[a_:b_],
                    net.max_green_s[a_:b_],
                )
                self._coord_green[i] = green[a_ + coord.stage[i]]
            cycle = np.full_like(cycle, coord.cycle_s)
        if self._gap is not None and a.green_headroom != 1.0:
            # with gap-out a planned green is a maximum: some headroom above the estimate
            green = np.minimum(green * a.green_headroom, self._ad_network.max_green_s)
        for i, tls in enumerate(self.adaptive):
            if not self._commanded(tls):
                continue
            greens = green[ptr[i] : ptr[i + 1]]
            given = self.port.apply_timing(tls, green_s=greens.tolist())
            row = {
                "t_s": t_s,
                "tls_id": tls,
                "cycle_s": float(cycle[i]),
                "flow_ratio_sum": float(target.flow_ratio_sum[i]),
                "flags": int(target.flags[i]),
                "green_s": [round(g, 2) for g in given],
            }
            self.telemetry.timings.append(row)

    def _actuate(self, t_s: float, world: ControlWorld) -> None:
        """Gap-out: read the loops of the adaptive signals due, end the greens that
        gapped out (through the guard: never before their minimum), skip idle stages if
        asked, and show it now."""
        gap, port = self._gap, self.port
        if gap is None or port is None:
            return
        due = gap.due(t_s)
        if not due.size:
            return
        gap.observe(due, world)
        commands = gap.decide(t_s, due, status=port.status)
        for cmd in commands:
            if cmd.verb == "skip":
                port.skip(cmd.tls, stage=cmd.stage)
                continue
            dwell = self._dwell_until_s(cmd.tls, t_s, port) if self._coord is not None else None
            if dwell is None:
                port.force_off(cmd.tls)
            else:  # the main street could not use the time: this green keeps it
                port.hold(cmd.tls, until_s=dwell)
                k = self._ad_index[cmd.tls]
                gap.next_s[k] = min(gap.next_s[k], dwell)
                gap.gap_outs -= 1  # it did not end
                entered = port.status(cmd.tls).entered_s
                if entered != self._dwell_entered[k]:  # one dwell per green, however
                    self._dwell_entered[k] = entered  # often it is looked at again
                    self.coordination_dwells += 1
        if commands:
            port.advance(t_s)
        if self._coord is not None:
            self._coordinate(t_s, due, port)

    def _dwell_until_s(self, tls: str, t_s: float, port: GuardedPort) -> float | None:
        """Early return is limited to what the main street's maximum green can take:
        a side stage that gapped out so early that the main street's green would have to
        run past its maximum to reach its yield point keeps its green (it dwells) until
        the main street can start at most its maximum before the yield point. ``None``:
        end it now."""
        coord = self._coord
        assert coord is not None
        i = self._ad_index[tls]
        main = coord.stage[i]
        st = port.status(tls)
        if not math.isfinite(self._coord_green[i]) or st.stage == main:
            return None
        rows = self._coord_stages[i]
        n = len(rows)
        start = t_s + rows[st.stage][2]  # the main street's earliest start if ended now
        k = (st.stage + 1) % n
        while k != main:
            start += rows[k][0] + rows[k][2]
            k = (k + 1) % n
        planned = coord.clock.nearest_s(start, float(coord.offset_s[i]))
        late_start = planned + float(self._coord_green[i]) - rows[main][1]
        until = whole_s(t_s + (late_start - start), t_s, st.entered_s + rows[st.stage][1])
        return until if until > max(t_s, st.min_end_s) + 0.5 else None

    def _coordinate(self, t_s: float, due: npt.NDArray[np.int64], port: GuardedPort) -> None:
        """Time each coordinated green that began among the signals ``due``: it ends at
        its yield point (through the guard's hold: never before its minimum, never past
        its maximum)."""
        coord = self._coord
        assert coord is not None
        ends_now = False
        for i in map(int, due):
            if not math.isfinite(self._coord_green[i]):
                continue  # no common plan yet
            tls = self.adaptive[i]
            st = port.status(tls)
            if (st.local or st.handing_back or st.interval != "green"
                    or st.stage != coord.stage[i] or st.priority_stage is not None
                    or st.entered_s == self._coord_entered[i]):  # fmt: skip
                continue
            self._coord_entered[i] = st.entered_s
            end = coord.green_end_s(
                i,
                entered_s=st.entered_s,
                green_s=float(self._coord_green[i]),
                min_end_s=st.min_end_s,
                max_end_s=st.entered_s + self._coord_stages[i][coord.stage[i]][1],
            )
            ends_now |= port.hold(tls, until_s=end) <= t_s
            self.coordinated_greens += 1
        if ends_now:  # a green looked at late that is already past its yield point
            port.advance(t_s)

    def _update_pressure(self, t_s: float, session: ControlWorld) -> None:
        port = self.port
        if port is None:
            raise RuntimeError("max-pressure control needs the guarded port: start() first")
        session.read_lane_halting(self._mp.lanes, self._mp_lane_halting)
        session.read_edge_halting(self._mp.edges, self._mp_edge_halting)
        commands = self._mp.decide(
            t_s,
            lane_halting_veh=self._mp_lane_halting,
            edge_halting_veh=self._mp_edge_halting,
            status=port.status,
        )
        for cmd in commands:
            if cmd.verb == "switch":
                port.skip(cmd.tls, stage=cmd.stage)
                port.force_off(cmd.tls)
                self.telemetry.decisions += 1
            else:
                port.hold(cmd.tls, until_s=cmd.until_s)

    # ------------------------------------------------------------------ results
    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "controllers": {k: sum(1 for v in self.assignment.values() if v == k) for k in KINDS}
        }
        if self.port is not None:
            out["guard_commands"] = self.port.commands
            out["guard_late_changes"] = self.port.late_changes
            by_kind = self.port.interventions()
            # what the guard changed (beyond rounding to whole seconds), in all and by kind
            out["guard_interventions"] = sum(by_kind.values())
            out["guard_interventions_by_kind"] = by_kind
            out["guard_roundings"] = self.port.roundings()
            if self.port.released:  # only when something was handed back
                out["guard_handed_back"] = len(self.port.released)
        if self.pressure:
            out["max_pressure_switches"] = self.telemetry.decisions
        if self._coord is not None:
            out["coordination_cycle_s"] = self._coord.cycle_s
            out["coordination_cycle_changes"] = self._coord.cycle_changes
            out["coordinated_greens"] = self.coordinated_greens
            out["coordination_dwells"] = self.coordination_dwells
        if self._gap is not None:
            out["gap_outs"] = self._gap.gap_outs
            if self._gap.skip_empty:
                out["stages_skipped"] = self._gap.skips
        return out

    def series(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        if self.telemetry.timings:
            out["signal_timings"] = self.telemetry.timings
        if self.port is not None:
            # a green running when the guard took over (its start credited from the plan
            # for the minimum) is reported from the take-over: nothing was shown before
            t0 = self.port.start_s
            out["greens_served"] = [
                {"tls_id": t, "stage": s, "start_s": max(a, t0), "green_s": g - max(t0 - a, 0.0),
                 "credited_s": max(t0 - a, 0.0)}
                for t, s, a, g in self.port.served()
            ]  # fmt: skip
        return out
