"""Vehicle actuation inside a planned cycle: a green ends early when its traffic stops.

The adaptive controller plans each green (Webster/HCM from the loops, every
``update_s``); with actuation the planned green is a *maximum*. Within it the green
*gaps out* once its minimum (pedestrian minimum included) is served and no vehicle has
crossed the stage's gap-out loops for ``gap_s``: the controller asks the guard to end
it (``force_off``), the yellow and all-red follow in full and the next stage starts
early, so the cycle floats (shortens) like a field controller running actuated
coordination-free (SCATS' "gap" termination, SUMO's ``actuated``).

Which loops decide a stage: the loops of the lanes it serves, except lanes that
keep every movement they have in it green in the stage after it (their traffic keeps
flowing, so it cannot hold this stage). A stage with a lane that has no loop, or whose
loops read NaN (unknown: e.g. live counts without per-vehicle times), never gaps out: it
runs its planned green. A stage with no deciding lane at all never gaps out either.

Which loops measure the gap: by default (``gap_loops = "advance"``) a *gap-out loop* per
lane, placed upstream of the stop line where SUMO's own ``actuated`` logic puts its loops
(:func:`advance_setback_m`: ``detector_gap_s`` at the lane's speed, at most the queue its
shortest minimum green clears, at most the lane): a gap seen there is seen before the
last vehicle reaches the line, so the green ends as that vehicle clears it instead of
``gap_s`` after. They exist only for the run (:func:`advance_loops_xml`, written into the
run folder): the city's own loops (and its content hash) stay as they are. Only lanes
with a stop-line loop get one (a lane the city does not detect stays undetected).
``gap_loops = "stopline"`` measures at the stop-line loops themselves.

Optionally (``skip_empty``) a stage without demand is skipped, as a field controller
skips a phase without a call: only a stage that serves no pedestrian crossing (its
pedestrian minimum is 0, e.g. a protected left), and only when none of its lanes has a
vehicle waiting or one on its gap-out loop in the last ``gap_s`` (an unknown reading
counts as demand). The guard serves the next stage through the full yellow and all-red.
(A stage's deciding lanes assume the plan's next stage follows it: a lane green in both a
stage and a skipped one would lose its green without holding the first; no shipped city
has such a lane, since a skippable stage is a protected left on its own pocket lanes.)

:class:`GapOutPolicy` only decides (like :class:`~signal_control.max_pressure.MaxPressurePolicy`):
the manager has it read the signals that are due (:meth:`GapOutPolicy.due`,
:meth:`GapOutPolicy.observe`) and carries out its commands through the guarded port. It
also says when it next needs to look (:meth:`GapOutPolicy.next_check_s`): the earliest
time a due green could gap out, so a simulation can stop there instead of stepping every
second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from signal_control.interfaces import LinkLike, SignalLike
from signal_control.movements import stage_lanes
from signal_control.port import SignalStatus

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

EPS_S = 1e-9
MIN_RECHECK_S = 0.1
"""A check never asks for the next one sooner than this (a simulation then advances at
least one step between two looks)."""
SKIP_LOOKAHEAD_S = 1.0
"""A skip of the stage after a green that runs to its planned end is decided this long
before that end (a vehicle arriving later waits for the next cycle)."""
MAX_WAIT_S = 5.0
"""A signal is looked at again at least this often, whatever its plan says (a command from
elsewhere, e.g. an emergency-vehicle priority, may have moved its green)."""

ADVANCE_LOOP_PREFIX = "e1g_"
"""Id of a lane's gap-out loop: this prefix and the lane id."""
DETECTOR_GAP_S = 2.0
"""SUMO ``actuated``'s default ``detector-gap``: its loops sit this many seconds of travel
at the lane's speed before the stop line."""
PASSING_TIME_S = 1.9
"""SUMO ``actuated``'s default ``passing-time``: the headway of a discharging queue."""
VEHICLE_SPACING_M = 7.5
"""SUMO's ``DEFAULT_LENGTH_WITH_GAP``: a car (5 m) and its standstill gap (2.5 m)."""


class GapOutDecision(NamedTuple):
    """Per signal looked at: end its green now, and when to look again (``inf``: never
    before the plan ends the green)."""

    force_off: BoolArray
    next_check_s: FloatArray


def stage_gap_s(since_s: FloatArray, lane_idx: IntArray) -> float:
    """The stage's gap: seconds since the last vehicle on the gap-out loops of its
    deciding lanes (the smallest). NaN when it has no deciding lane, or a lane's reading
    is NaN (no loop there, or unknown)."""
    if lane_idx.size == 0:
        return math.nan
    return float(np.min(since_s[lane_idx]))  # NaN propagates: one unknown lane, unknown gap


def stage_called(
    since_s: FloatArray, halting_veh: FloatArray, lane_idx: IntArray, *, gap_s: float
) -> bool:
    """A stage has a call (demand) when a vehicle waits on one of its lanes, or one of
    their gap-out loops saw a vehicle less than ``gap_s`` ago; an unknown reading (NaN)
    counts as a call, so is a stage without a lane."""
    if lane_idx.size == 0:
        return True
    since, halting = since_s[lane_idx], halting_veh[lane_idx]
    if np.isnan(since).any() or np.isnan(halting).any():
        return True
    return bool((halting > 0).any() or (since < gap_s).any())


def next_stage(current: int, *, skippable: Sequence[bool], called: Sequence[bool]) -> int:
    """The stage to serve after ``current``: the next in the cycle that has a call or may
    not be skipped; ``current + 1`` when every other stage is skippable and idle."""
    n = len(skippable)
    j = (current + 1) % n
    while j != current and skippable[j] and not called[j]:
        j = (j + 1) % n
    return (current + 1) % n if j == current else j


def decide_gap_out(
    t_s: float,
    *,
    gap_s: float,
    in_green: BoolArray,
    gap_now_s: FloatArray,
    min_end_s: FloatArray,
    green_end_s: FloatArray,
) -> GapOutDecision:
    """Gap-out decisions for some signals at ``t_s`` (arrays: one entry per signal).

    Parameters
    ----------
    gap_s
        A green gaps out after this many seconds without a vehicle on its loops.
    in_green
        The signal shows a green the controller may end (not an intergreen, no priority).
    gap_now_s
        Its stage's gap now (:func:`stage_gap_s`; NaN: unknown, the green never gaps out).
    min_end_s
        Earliest end of the green (its minimum, pedestrian minimum included).
    green_end_s
        When the plan ends the green.

    Returns
    -------
    GapOutDecision
        ``force_off`` where the green has had its minimum, the gap reached ``gap_s`` and
        the plan would run it longer; else ``next_check_s``: the earliest time the gap
        could reach ``gap_s`` with the minimum served (if no vehicle comes), ``inf`` where
        that is not before the plan's end, the gap is unknown, or the signal is not in a
        green. Never sooner than ``t_s + MIN_RECHECK_S``.
    """
    if not gap_s > 0:
        raise ValueError(f"gap_s must be > 0 (got {gap_s})")
    n = in_green.shape[0]
    for name, arr in (("gap_now_s", gap_now_s), ("min_end_s", min_end_s),
                      ("green_end_s", green_end_s)):  # fmt: skip
        if arr.shape != (n,):
            raise ValueError(f"{name} must have one entry per signal ({n}); got {arr.shape}")
    known = in_green & ~np.isnan(gap_now_s)
    with np.errstate(invalid="ignore"):
        gapped = gap_now_s >= gap_s - EPS_S
        served = min_end_s <= t_s + EPS_S
        running = green_end_s > t_s + EPS_S
        force = known & gapped & served & running
        # the earliest time both can hold: the minimum served and gap_s without a vehicle
        at = np.maximum(min_end_s, t_s + np.maximum(gap_s - gap_now_s, 0.0))
        at = np.maximum(at, t_s + MIN_RECHECK_S)
        wake = np.where(known & ~force & (at < green_end_s - EPS_S), at, np.inf)
    return GapOutDecision(force_off=force, next_check_s=wake)


def deciding_lanes(signal: SignalLike, links: Sequence[LinkLike]) -> list[list[str]]:
    """Per green stage of ``signal``: the lanes whose traffic can hold it (served in it,
    and not with every movement it has here green again in the next stage), sorted."""
    served = stage_lanes(signal, links)
    n = len(served)
    out = []
    for k, lanes in enumerate(served):
        nxt = served[(k + 1) % n] if n > 1 else {}
        out.append(sorted(lane for lane, dirs in lanes.items() if not dirs <= nxt.get(lane, set())))
    return out


def call_lanes(signal: SignalLike, links: Sequence[LinkLike]) -> list[list[list[str]]]:
    """``out[k][j]``: while stage ``k`` is green, the lanes whose waiting traffic calls
    stage ``j`` (served in ``j``, and not with every movement it has there already green
    in ``k``), sorted."""
    served = stage_lanes(signal, links)
    return [
        [sorted(lane for lane, dirs in sj.items() if not dirs <= sk.get(lane, set()))
         for sj in served]
        for sk in served
    ]  # fmt: skip


def advance_setback_m(
    *, speed_mps: float, min_green_s: float, detector_gap_s: float = DETECTOR_GAP_S
) -> float:
    """How far before the stop line a lane's gap-out loop sits, as SUMO's ``actuated``
    logic places its own: ``detector_gap_s`` of travel at the lane's ``speed_mps``, but no
    further than the queue its shortest minimum green ``min_green_s`` clears (vehicles
    every :data:`PASSING_TIME_S`, :data:`VEHICLE_SPACING_M` apart, plus half a vehicle): a
    queue standing between the loop and the line is served by the minimum."""
    for name, value in (("speed_mps", speed_mps), ("min_green_s", min_green_s),
                        ("detector_gap_s", detector_gap_s)):  # fmt: skip
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number (got {value})")
    by_min = (min_green_s / PASSING_TIME_S + 0.5) * VEHICLE_SPACING_M
    return min(detector_gap_s * speed_mps, by_min)


class AdvanceLoop(NamedTuple):
    """A gap-out loop: ``pos_m`` from the start of ``lane`` (``setback_m`` before its end,
    or at its start when the lane is shorter than that)."""

    id: str
    lane: str
    pos_m: float
    setback_m: float


def advance_loops(
    lane_min_green_s: Mapping[str, float],
    *,
    lane_length_m: Mapping[str, float],
    lane_speed_mps: Mapping[str, float],
    detector_gap_s: float = DETECTOR_GAP_S,
) -> list[AdvanceLoop]:
    """The gap-out loop of every lane in ``lane_min_green_s`` (its shortest minimum green),
    sorted by lane; a lane shorter than its setback gets its loop at its start (SUMO would
    go on to a single predecessor lane; the loop then still sees the queue's tail)."""
    out = []
    for lane in sorted(lane_min_green_s):
        if lane not in lane_length_m or lane not in lane_speed_mps:
            raise ValueError(f"lane {lane!r}: no length or speed to place its gap-out loop")
        length_m = lane_length_m[lane]
        setback = advance_setback_m(speed_mps=lane_speed_mps[lane],
                                    min_green_s=lane_min_green_s[lane],
                                    detector_gap_s=detector_gap_s)  # fmt: skip
        pos = max(length_m - setback, 0.0)
        out.append(AdvanceLoop(ADVANCE_LOOP_PREFIX + lane, lane, round(pos, 2), setback))
    return out


def advance_loops_xml(loops: Sequence[AdvanceLoop]) -> str:
    """The gap-out loops as the body of a SUMO additional (no aggregated output: the
    controller reads each loop's time since its last vehicle)."""
    return "".join(
        f'  <inductionLoop id="{x.id}" lane="{x.lane}" pos="{x.pos_m:g}" period="3600" '
        'file="NUL" friendlyPos="true"/>\n'
        for x in loops
    )


def lane_min_green_s(signal: SignalLike, links: Sequence[LinkLike]) -> dict[str, float]:
    """Per lane of ``signal``: the shortest minimum green (pedestrian minimum included) of
    the stages that serve it."""
    greens = [p for p in signal.phases if p.kind == "green"]
    out: dict[str, float] = {}
    for phase, lanes in zip(greens, stage_lanes(signal, links), strict=True):
        for lane in lanes:
            out[lane] = min(out.get(lane, math.inf), phase.min_green_s)
    return out


class ActuationCommand(NamedTuple):
    """``force_off`` ``tls`` now, or ``skip`` to ``stage`` (serve it next)."""

    tls: str
    verb: Literal["force_off", "skip"]
    stage: int = -1


class LoopWorld(Protocol):
    """The readings actuation needs (part of :class:`~signal_control.interfaces.ControlWorld`)."""

    def read_lane_halting(self, lane_ids: Sequence[str], out: FloatArray) -> None: ...

    def read_loop_gap(self, det_ids: Sequence[str], out: FloatArray) -> None: ...


class GapOutPolicy:
    """Gap-out (and optionally skip) decisions for a set of signals.

    Parameters
    ----------
    signals
        The signals to actuate (their plans give the stages).
    links
        Per signal id, its links.
    stopline_loops
        Gap-out loop id per lane: its stop-line loop, or its advance loop (lanes without
        one make their stages never gap out, nor be skipped).
    gap_s
        Seconds without a vehicle on a stage's loops after which its green ends.
    skip_empty
        A stage that serves no pedestrian crossing (its pedestrian minimum is 0) and has
        no call (:func:`stage_called`) when the green before it ends is skipped: the
        signal goes on to the next stage through the full yellow and all-red. The
        decision is taken at a gap-out, or :data:`SKIP_LOOKAHEAD_S` before a planned end.
    hold_stage
        Per signal id, a stage whose green never gaps out (a coordinated main street's,
        which ends at its yield point: :mod:`signal_control.coordination`).

    Attributes
    ----------
    lane_ids
        Every lane whose readings the policy keeps, in the order of :attr:`since_s` and
        :attr:`halting_veh`.
    since_s
        Seconds since each lane's gap-out loop last saw a vehicle (NaN: no loop, or
        unknown), as last read.
    halting_veh
        Halting vehicles per lane, as last read (read only with ``skip_empty``).
    gap_outs, skips
        Greens ended by a gap, and stages skipped, so far.
    """

    def __init__(
        self,
        signals: Sequence[SignalLike],
        links: Mapping[str, Sequence[LinkLike]],
        stopline_loops: Mapping[str, str],
        *,
        gap_s: float,
        skip_empty: bool = False,
        hold_stage: Mapping[str, int] | None = None,
    ) -> None:
        if not (gap_s > 0 and math.isfinite(gap_s)):
            raise ValueError(f"gap_s must be a positive number of seconds (got {gap_s})")
        self.gap_s = gap_s
        self.skip_empty = skip_empty
        self.tls_ids = [s.id for s in signals]
        held = hold_stage or {}
        self._hold_stage = [held.get(t, -1) for t in self.tls_ids]
        self.lane_ids: list[str] = []
        self._lane_ptr = [0]
        self._loop_ids: list[list[str]] = []  # per signal: its loops
        self._loop_pos: list[IntArray] = []  # per signal: where their readings go
        self._deciding: list[list[IntArray]] = []  # per signal, per stage: lane indices
        self._calls: list[list[list[IntArray]]] = []  # per signal, [k][j]: lane indices
        self._skippable: list[list[bool]] = []
        for sig in signals:
            served = stage_lanes(sig, links[sig.id])
            own = sorted({lane for lanes in served for lane in lanes})
            base = len(self.lane_ids)
            index = {lane: base + k for k, lane in enumerate(own)}
            self.lane_ids += own
            self._lane_ptr.append(len(self.lane_ids))
            with_loop = [lane for lane in own if lane in stopline_loops]
            self._loop_ids.append([stopline_loops[lane] for lane in with_loop])
            self._loop_pos.append(np.array([index[lane] for lane in with_loop], np.int64))

            def idx(lanes: list[str], index: dict[str, int] = index) -> IntArray:
                return np.array([index[lane] for lane in lanes], np.int64)

            self._deciding.append([idx(lanes) for lanes in deciding_lanes(sig, links[sig.id])])
            self._calls.append([[idx(c) for c in row] for row in call_lanes(sig, links[sig.id])])
            greens = [p for p in sig.phases if p.kind == "green"]
            self._skippable.append([skip_empty and p.ped_min_green_s <= 0 for p in greens])
        self.since_s: FloatArray = np.full(len(self.lane_ids), np.nan)
        self.halting_veh: FloatArray = np.zeros(len(self.lane_ids))
        self._buf: FloatArray = np.zeros(max((len(x) for x in self._loop_ids), default=0))
        self.next_s: FloatArray = np.full(len(self.tls_ids), -np.inf)  # all due at first
        self._skip_decided = np.full(len(self.tls_ids), -np.inf)  # entered_s of that green
        self.gap_outs = 0
        self.skips = 0

    def next_check_s(self) -> float:
        """When a signal is next due (``inf``: none ever is)."""
        return float(self.next_s.min()) if self.next_s.size else math.inf

    def due(self, t_s: float) -> IntArray:
        """The signals to look at by ``t_s`` (indices into :attr:`tls_ids`)."""
        return np.flatnonzero(self.next_s <= t_s + EPS_S).astype(np.int64)

    def observe(self, due: IntArray, world: LoopWorld) -> None:
        """Read the loops (and, to skip, the lanes) of the signals ``due``."""
        for i in map(int, due):
            ids = self._loop_ids[i]
            if ids:
                buf = self._buf[: len(ids)]
                world.read_loop_gap(ids, buf)
                self.since_s[self._loop_pos[i]] = buf
            if self.skip_empty and any(self._skippable[i]):
                a, b = self._lane_ptr[i], self._lane_ptr[i + 1]
                world.read_lane_halting(self.lane_ids[a:b], self.halting_veh[a:b])

    def decide(
        self, t_s: float, due: IntArray, *, status: Callable[[str], SignalStatus]
    ) -> list[ActuationCommand]:
        """The commands for the signals ``due`` (read by :meth:`observe`): a skip (before
        the green it follows ends) and a force-off per green that gapped out; schedules
        the next look at each. Signals handed back are never looked at again."""
        n = len(due)
        in_green = np.zeros(n, dtype=np.bool_)
        gap_now = np.full(n, np.nan)
        min_end = np.full(n, np.inf)
        green_end = np.full(n, np.inf)
        change = np.full(n, np.inf)
        released = np.zeros(n, dtype=np.bool_)
        stage = np.zeros(n, dtype=np.int64)
        entered = np.zeros(n)
        for j, i in enumerate(map(int, due)):
            st = status(self.tls_ids[i])
            change[j] = st.next_change_s
            if st.local or st.handing_back:
                released[j] = True
                continue
            if st.interval != "green" or st.priority_stage is not None:
                continue
            in_green[j] = True
            stage[j], entered[j] = st.stage, st.entered_s
            if st.stage != self._hold_stage[i]:  # a held stage's gap stays unknown: kept
                gap_now[j] = stage_gap_s(self.since_s, self._deciding[i][st.stage])
            min_end[j] = st.min_end_s
            green_end[j] = st.next_change_s
        d = decide_gap_out(t_s, gap_s=self.gap_s, in_green=in_green, gap_now_s=gap_now,
                           min_end_s=min_end, green_end_s=green_end)  # fmt: skip
        # not a gap-out candidate now: look again at the signal's next change (a green
        # starts, or the plan ends this one), and at least every MAX_WAIT_S
        later = np.where(np.isfinite(d.next_check_s), d.next_check_s, change)
        out: list[ActuationCommand] = []
        for j, i in enumerate(map(int, due)):
            if not (in_green[j] and any(self._skippable[i])):
                continue
            ending = d.force_off[j] or green_end[j] - SKIP_LOOKAHEAD_S <= t_s + EPS_S
            if not ending:  # decide the skip just before the planned end
                later[j] = min(later[j], green_end[j] - SKIP_LOOKAHEAD_S)
                continue
            if self._skip_decided[i] == entered[j]:
                continue  # decided for this green already
            self._skip_decided[i] = entered[j]
            k = int(stage[j])
            calls = [stage_called(self.since_s, self.halting_veh, c, gap_s=self.gap_s)
                     for c in self._calls[i][k]]  # fmt: skip
            nxt = next_stage(k, skippable=self._skippable[i], called=calls)
            if nxt != (k + 1) % len(calls):
                out.append(ActuationCommand(self.tls_ids[i], "skip", nxt))
                self.skips += (nxt - k - 1) % len(calls)
        later = np.minimum(later, t_s + MAX_WAIT_S)
        later = np.maximum(later, t_s + MIN_RECHECK_S)
        self.next_s[due] = np.where(released, np.inf, later)
        ended = [self.tls_ids[int(i)] for i in due[d.force_off]]
        self.gap_outs += len(ended)
        return out + [ActuationCommand(tls, "force_off") for tls in ended]
