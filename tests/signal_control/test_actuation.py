"""Gap-out inside the adaptive plan (signal_control.actuation), without SUMO.

The decision logic on arrays (when a green ends, when to look again), which loops decide a
stage, and the controller manager driving a real guarded port over a hand-made signal
whose loops report scripted vehicle passages: a green ends ``gap_s`` after its last
vehicle, never before its minimum, and with unknown gaps (live counts) the plan runs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenarios.loader import load_scenario
from signal_control.actuation import (
    MAX_WAIT_S,
    MIN_RECHECK_S,
    SKIP_LOOKAHEAD_S,
    ActuationCommand,
    AdvanceLoop,
    GapOutPolicy,
    advance_loops,
    advance_setback_m,
    call_lanes,
    decide_gap_out,
    deciding_lanes,
    lane_min_green_s,
    next_stage,
    stage_called,
    stage_gap_s,
)
from signal_control.control import ControlManager
from signal_control.interfaces import DetectorReadings
from signal_control.movements import lane_sat_flow_vph, share_of_count, stage_lanes
from signal_control.port import SignalStatus
from twin.errors import ScenarioError

GAP_S = 3.0
FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- the decision
def _decide(t_s: float, gap: list[float], min_end: list[float], end: list[float],
            in_green: list[bool] | None = None) -> tuple[list[bool], list[float]]:  # fmt: skip
    d = decide_gap_out(
        t_s,
        gap_s=GAP_S,
        in_green=np.array(in_green if in_green is not None else [True] * len(gap)),
        gap_now_s=np.array(gap, dtype=float),
        min_end_s=np.array(min_end, dtype=float),
        green_end_s=np.array(end, dtype=float),
    )
    return d.force_off.tolist(), d.next_check_s.tolist()


def test_a_green_gaps_out_once_its_minimum_is_served_and_the_gap_is_reached() -> None:
    force, wake = _decide(30.0, gap=[3.0, 5.0], min_end=[20.0, 30.0], end=[50.0, 50.0])
    assert force == [True, True]
    assert wake == [math.inf, math.inf]


def test_a_gap_inside_the_minimum_waits_for_the_minimum() -> None:
    force, wake = _decide(12.0, gap=[4.0], min_end=[20.0], end=[50.0])
    assert force == [False]
    assert wake == [20.0]  # the earliest moment it may end: look again then


def test_a_short_gap_is_looked_at_again_when_it_could_be_reached() -> None:
    force, wake = _decide(30.0, gap=[1.0], min_end=[20.0], end=[50.0])
    assert force == [False]
    assert wake == [32.0]  # 2 s more without a vehicle and it gaps out


def test_no_look_when_the_plan_ends_the_green_first() -> None:
    force, wake = _decide(30.0, gap=[0.0, 1.0], min_end=[20.0, 20.0], end=[32.0, 33.0])
    assert force == [False, False]
    assert wake == [math.inf, 32.0]


def test_unknown_gaps_intergreens_and_ended_greens_never_gap_out() -> None:
    force, wake = _decide(
        30.0,
        gap=[math.nan, 10.0, 10.0],
        min_end=[20.0, 20.0, 20.0],
        end=[50.0, 50.0, 30.0],
        in_green=[True, False, True],
    )
    assert force == [False, False, False]
    assert wake == [math.inf, math.inf, math.inf]


def test_a_look_is_never_asked_for_sooner_than_the_recheck() -> None:
    force, wake = _decide(30.0, gap=[GAP_S - 1e-6], min_end=[20.0], end=[50.0])
    assert force == [False]
    assert wake == [30.0 + MIN_RECHECK_S]


def test_bad_decision_input_is_refused() -> None:
    with pytest.raises(ValueError, match="gap_s must be > 0"):
        decide_gap_out(0.0, gap_s=0.0, in_green=np.ones(1, bool), gap_now_s=np.zeros(1),
                       min_end_s=np.zeros(1), green_end_s=np.ones(1))  # fmt: skip
    with pytest.raises(ValueError, match=r"min_end_s must have one entry per signal \(2\)"):
        decide_gap_out(0.0, gap_s=3.0, in_green=np.ones(2, bool), gap_now_s=np.zeros(2),
                       min_end_s=np.zeros(3), green_end_s=np.ones(2))  # fmt: skip


finite = st.floats(0.0, 200.0, allow_nan=False)


@given(
    t=finite,
    rows=st.lists(
        st.tuples(st.one_of(finite, st.just(math.nan)), finite, finite, st.booleans()),
        min_size=1,
        max_size=20,
    ),
)
def test_decisions_keep_the_minimum_and_always_move_on(
    t: float, rows: list[tuple[float, float, float, bool]]
) -> None:
    gap, min_end, end, green = (np.array(c) for c in zip(*rows, strict=True))
    d = decide_gap_out(t, gap_s=GAP_S, in_green=green.astype(bool), gap_now_s=gap,
                       min_end_s=min_end, green_end_s=end)  # fmt: skip
    f = d.force_off
    # a force-off only for a green past its minimum, gapped, that the plan still runs
    assert (green[f].astype(bool)).all()
    assert (min_end[f] <= t + 1e-9).all() and (gap[f] >= GAP_S - 1e-9).all()
    assert (end[f] > t).all()
    # the next look is in the future (a simulation always advances) and before the end
    w = d.next_check_s
    assert (w >= t + MIN_RECHECK_S - 1e-9).all()
    finite_w = np.isfinite(w)
    assert (w[finite_w] < end[finite_w]).all() and (w[finite_w] >= min_end[finite_w]).all()


def test_the_stage_gap_is_the_shortest_and_unknown_when_a_lane_is() -> None:
    since = np.array([4.0, 1.5, math.nan, 9.0])
    assert stage_gap_s(since, np.array([0, 1, 3])) == 1.5
    assert math.isnan(stage_gap_s(since, np.array([0, 2])))  # no loop there, or unknown
    assert math.isnan(stage_gap_s(since, np.array([], dtype=np.int64)))  # nothing decides


def test_a_stage_is_called_by_a_waiting_or_just_detected_vehicle_or_by_not_knowing() -> None:
    since = np.array([10.0, 10.0, 1.0, math.nan])
    halting = np.array([0.0, 2.0, 0.0, 0.0])
    assert not stage_called(since, halting, np.array([0]), gap_s=GAP_S)
    assert stage_called(since, halting, np.array([0, 1]), gap_s=GAP_S)  # one waits
    assert stage_called(since, halting, np.array([0, 2]), gap_s=GAP_S)  # one just came
    assert stage_called(since, halting, np.array([0, 3]), gap_s=GAP_S)  # unknown
    assert stage_called(since, halting, np.array([], dtype=np.int64), gap_s=GAP_S)


def test_the_next_stage_skips_only_idle_skippable_stages() -> None:
    skippable = [False, True, False, True]
    assert next_stage(0, skippable=skippable, called=[True, False, True, False]) == 2
    assert next_stage(0, skippable=skippable, called=[True, True, True, False]) == 1
    assert next_stage(2, skippable=skippable, called=[False, False, False, False]) == 0
    # every other stage idle and skippable: no skip (the plan's next stage)
    assert next_stage(1, skippable=[True, True], called=[False, False]) == 0


# --------------------------------------------------------------------------- a signal
@dataclass(frozen=True)
class Phase:
    name: str
    kind: str
    state: str
    duration_s: float
    min_green_s: float = 0.0
    ped_min_green_s: float = 0.0
    max_green_s: float = 0.0


@dataclass(frozen=True)
class Signal:
    id: str
    phases: tuple[Phase, ...]
    incoming_lanes: tuple[str, ...] = ()
    offset_s: float = 0.0


@dataclass(frozen=True)
class Link:
    index: int
    from_lane: str
    to_edge: str
    direction: str


@dataclass(frozen=True)
class Detector:
    id: str
    kind: str
    lane: str


MIN_S, PLAN_S, MAX_S = 10.0, 30.0, 60.0
# stage 0: approach a (through lane a_0, left lane a_1 permissive "g"); stage 1: b
# (through b_0, and b_1 green in both stages: its traffic never holds stage 1)
LINKS = (Link(0, "a_0", "x", "s"), Link(1, "a_1", "y", "l"), Link(2, "b_0", "z", "s"),
         Link(3, "b_1", "w", "r"))  # fmt: skip
FOES = [[False, False, True, False], [False, False, True, False],
        [True, True, False, False], [False, False, False, False]]  # fmt: skip


def _signal(tls: str = "J") -> Signal:
    def green(name: str, state: str) -> Phase:
        return Phase(name, "green", state, PLAN_S, MIN_S, 0.0, MAX_S)

    def inter(state: str) -> list[Phase]:
        return [Phase("y", "yellow", state, 3.0), Phase("ar", "all_red", "rrrG", 2.0)]

    phases = (green("a", "GgrG"), *inter("yyrG"), green("b", "rrGG"), *inter("rryG"))
    return Signal(tls, phases, ("a_0", "a_1", "b_0", "b_1"))


def test_lanes_green_again_in_the_next_stage_do_not_decide() -> None:
    assert deciding_lanes(_signal(), LINKS) == [["a_0", "a_1"], ["b_0"]]


def _status(stage: int, *, interval: str = "green", min_end: float = 10.0, end: float = 30.0,
            priority: int | None = None, local: bool = False) -> SignalStatus:  # fmt: skip
    return SignalStatus("J", interval, stage, stage, 0.0, end, min_end,  # type: ignore[arg-type]
                        priority, math.nan, local=local)  # fmt: skip


@dataclass
class Readings:
    """Loop gaps and lane queues, as given."""

    since_s: dict[str, float]
    halting_veh: dict[str, float] = field(default_factory=dict)

    def read_loop_gap(self, det_ids: Sequence[str], out: FloatArray) -> None:
        out[:] = [self.since_s[d] for d in det_ids]

    def read_lane_halting(self, lane_ids: Sequence[str], out: FloatArray) -> None:
        out[:] = [self.halting_veh.get(lane, 0.0) for lane in lane_ids]


LOOPS = {"a_0": "La0", "a_1": "La1", "b_0": "Lb0", "b_1": "Lb1"}


def _policy(loops: dict[str, str] = LOOPS) -> GapOutPolicy:
    return GapOutPolicy([_signal()], {"J": LINKS}, loops, gap_s=GAP_S)


def test_the_policy_ends_a_gapped_green_and_spares_priority_and_released_signals() -> None:
    policy = _policy()
    assert policy.lane_ids == ["a_0", "a_1", "b_0", "b_1"]
    policy.observe(policy.due(12.0), Readings({"La0": 4.0, "La1": 3.5, "Lb0": 0.0, "Lb1": 0.0}))
    due = policy.due(12.0)
    assert due.tolist() == [0]
    assert policy.decide(12.0, due, status=lambda t: _status(0)) == [
        ActuationCommand("J", "force_off")
    ]
    assert policy.gap_outs == 1
    # stage 1's loop sees a vehicle now: look again when the gap could be reached
    assert policy.decide(12.0, due, status=lambda t: _status(1)) == []
    assert policy.next_s[0] == 15.0
    # a priority holds the green, or the signal went back to its local program
    assert policy.decide(12.0, due, status=lambda t: _status(0, priority=0)) == []
    assert policy.next_s[0] == 12.0 + MAX_WAIT_S  # looked at again at least this often
    assert policy.decide(12.0, due, status=lambda t: _status(0, local=True)) == []
    assert policy.next_s[0] == math.inf and policy.next_check_s() == math.inf


def test_a_stage_with_a_lane_without_a_loop_never_gaps_out() -> None:
    policy = _policy({"a_0": "La0", "b_0": "Lb0"})
    policy.observe(policy.due(0.0), Readings({"La0": 100.0, "Lb0": 100.0}))
    assert policy.decide(12.0, policy.due(12.0), status=lambda t: _status(0)) == []
    assert policy.decide(12.0, policy.due(100.0), status=lambda t: _status(1)) == [
        ActuationCommand("J", "force_off")
    ]


def _three_stage() -> tuple[Signal, tuple[Link, ...], list[list[bool]]]:
    """Stage 0: a through (pedestrians beside it); 1: a's protected left (no crossing);
    2: b through. A left lane a_1 that waits for stage 1 only."""
    links = (Link(0, "a_0", "x", "s"), Link(1, "a_1", "y", "l"), Link(2, "b_0", "z", "s"))
    foes = [[False, False, True], [False, False, True], [True, True, False]]

    def green(name: str, state: str, ped_s: float) -> Phase:
        return Phase(name, "green", state, PLAN_S, MIN_S, ped_s, MAX_S)

    def inter(state: str) -> list[Phase]:
        return [Phase("y", "yellow", state, 3.0), Phase("ar", "all_red", "rrr", 2.0)]

    phases = (green("a", "Grr", 12.0), *inter("yrr"), green("a left", "rGr", 0.0),
              *inter("ryr"), green("b", "rrG", 12.0), *inter("rry"))  # fmt: skip
    return Signal("J", phases), links, foes


def test_an_idle_stage_without_pedestrians_is_skipped_and_a_called_one_is_not() -> None:
    sig, links, _foes = _three_stage()
    assert call_lanes(sig, links)[0] == [[], ["a_1"], ["b_0"]]
    loops = {"a_0": "La0", "a_1": "La1", "b_0": "Lb0"}
    policy = GapOutPolicy([sig], {"J": links}, loops, gap_s=GAP_S, skip_empty=True)
    idle = Readings({"La0": 5.0, "La1": 40.0, "Lb0": 1.0})
    policy.observe(policy.due(0.0), idle)
    # stage 0 gaps out with nobody for the left: skip it, then end the green
    assert policy.decide(20.0, policy.due(20.0), status=lambda t: _status(0, end=30.0)) == [
        ActuationCommand("J", "skip", 2), ActuationCommand("J", "force_off")
    ]  # fmt: skip
    assert policy.skips == 1
    # stage 2 (pedestrians) is never skipped; a vehicle waiting on a_1 calls stage 1
    busy = GapOutPolicy([sig], {"J": links}, loops, gap_s=GAP_S, skip_empty=True)
    busy.observe(busy.due(0.0), Readings(idle.since_s, {"a_1": 1.0}))
    assert busy.decide(20.0, busy.due(20.0), status=lambda t: _status(0, end=30.0)) == [
        ActuationCommand("J", "force_off")
    ]
    # a green that runs to its planned end: the skip is decided just before that end
    plan = GapOutPolicy([sig], {"J": links}, loops, gap_s=GAP_S, skip_empty=True)
    plan.observe(plan.due(0.0), Readings({"La0": 0.0, "La1": 40.0, "Lb0": 1.0}))
    # (a vehicle now: no gap before the end at 30 s)
    assert plan.decide(27.0, plan.due(27.0), status=lambda t: _status(0, end=30.0)) == []
    assert plan.next_s[0] == 30.0 - SKIP_LOOKAHEAD_S
    t = 30.0 - SKIP_LOOKAHEAD_S
    assert plan.decide(t, plan.due(t), status=lambda x: _status(0, end=30.0)) == [
        ActuationCommand("J", "skip", 2)
    ]
    once = np.array([0])
    assert plan.decide(t, once, status=lambda x: _status(0, end=30.0)) == []  # decided once


# --------------------------------------------------------------------------- the manager
@dataclass(frozen=True)
class Adaptive:
    actuation: str = "gap_out"
    gap_s: float = GAP_S
    gap_loops: str = "stopline"
    detector_gap_s: float = 2.0
    green_headroom: float = 1.0
    skip_empty: bool = False
    coordination: str = "none"
    progression_kph: float = 50.0
    update_s: float = 60.0
    window_s: float = 300.0
    c_min_s: float = 60.0
    c_max_s: float = 150.0
    y_max: float = 0.95
    smoothing: float = 0.5
    max_step_s: float = 15.0
    startup_loss_s: float = 2.0
    clearance_loss_s: float = 2.0


@dataclass(frozen=True)
class Control:
    adaptive: Adaptive = Adaptive()
    guard_fixed: bool = False
    pressure_hysteresis_veh: float = 1.0


@dataclass
class World:
    """Shows states (recorded) and answers loop gaps from scripted vehicle passages."""

    passages_s: dict[str, list[float]]
    unknown: bool = False
    time_s: float = 0.0
    shown: list[tuple[float, str]] = field(default_factory=list)

    def set_signal_state(self, tls_id: str, state: str) -> None:
        self.shown.append((self.time_s, state))

    def set_program(self, tls_id: str, program_id: str) -> None: ...

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None: ...

    def read_lane_halting(self, lane_ids: Sequence[str], out: FloatArray) -> None:
        out[:] = 0.0

    def read_edge_halting(self, edge_ids: Sequence[str], out: FloatArray) -> None:
        out[:] = 0.0

    def read_loop_gap(self, det_ids: Sequence[str], out: FloatArray) -> None:
        for k, det in enumerate(det_ids):
            seen = [p for p in self.passages_s.get(det, []) if p <= self.time_s]
            out[k] = math.nan if self.unknown else self.time_s - max(seen, default=-1e6)


@dataclass
class NoCounts:
    det_interval_end_s: float = -1.0  # no interval closed: the adaptive plan stays as given
    det_count_veh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    det_index: dict[str, int] = field(default_factory=dict)


def _manager(actuation: str = "gap_out", gap_loops: str = "stopline",
             lanes: Sequence[str] = ("a_0", "a_1", "b_0", "b_1")) -> ControlManager:  # fmt: skip
    dets = [Detector(f"L{lane.replace('_', '')}", "stopline", lane) for lane in lanes]
    return ControlManager(
        signals=[_signal()], links={"J": LINKS}, edge_lanes=dict.fromkeys("xyzw", 1),
        detectors=dets, assignment={"J": "adaptive"},
        spec=Control(Adaptive(actuation=actuation, gap_loops=gap_loops)),
        detector_period_s=30.0, control_interval_s=5.0, foes={"J": FOES},
    )  # fmt: skip


def _drive(world: World, *, actuation: str = "gap_out", until_s: float = 200.0,
           gap_loops: str = "stopline") -> ControlManager:  # fmt: skip
    """The manager as a run drives it (:func:`run_manager`), without loop counts."""
    manager = _manager(actuation, gap_loops)
    manager.start(world, t_s=0.0)
    run_manager(manager, world, until_s, lambda _t: NoCounts())
    return manager


def run_manager(manager: ControlManager, world: World, until_s: float,
                counts: Callable[[float], DetectorReadings]) -> None:  # fmt: skip
    """Drive a started manager as a run does: ticks every 5 s (with ``counts(t)``),
    stopping in between wherever it asks (signal changes, gap-out looks), on a 1 s
    step grid."""
    for tick in range(1, int(until_s / 5) + 1):
        t_tick = 5.0 * tick
        while manager.next_change_s() < t_tick - 1e-9:
            world.time_s = float(math.ceil(manager.next_change_s() - 1e-9))
            manager.advance(world.time_s)
        world.time_s = t_tick
        manager.advance(t_tick)
        manager.on_tick(t_tick, world, counts(t_tick))
        manager.advance(t_tick)


def _greens(manager: ControlManager) -> list[tuple[int, float, float]]:
    return [(s["stage"], s["start_s"], s["green_s"]) for s in manager.series()["greens_served"]]


def _busy(det: str, until_s: float, every_s: float = 2.0) -> dict[str, list[float]]:
    return {det: list(np.arange(0.0, until_s + 1e-9, every_s))}


def test_greens_end_gap_s_after_the_last_vehicle_and_never_before_their_minimum() -> None:
    # approach a: a vehicle every 2 s until t = 20, then none; approach b: always busy
    world = World({**_busy("La0", 20.0), **_busy("Lb0", 1000.0)})
    manager = _drive(world)
    greens = _greens(manager)
    assert greens[0] == (0, 0.0, 23.0)  # gapped out 3 s after the last vehicle
    assert greens[1] == (1, 28.0, PLAN_S)  # busy: runs its planned (maximum) green
    assert greens[2] == (0, 63.0, MIN_S)  # empty: its minimum, then gaps out
    assert all(g >= MIN_S for _stage, _start, g in greens)
    assert manager.metrics()["gap_outs"] == sum(g < PLAN_S for _s, _a, g in greens)
    assert manager.metrics()["guard_interventions"] == 0
    # the intergreens ran in full on the display: 3 s yellow, then 2 s all-red
    shown = world.shown
    for (t0, s0), (t1, _s1) in itertools.pairwise(shown):
        if "y" in s0:
            assert t1 - t0 == 3.0
        elif s0 == "rrrG":
            assert t1 - t0 == 2.0


def test_without_actuation_or_with_unknown_gaps_the_plan_runs() -> None:
    passages = {**_busy("La0", 20.0), **_busy("Lb0", 1000.0)}
    for manager in (_drive(World(passages), actuation="none"),
                    _drive(World(passages, unknown=True))):  # fmt: skip
        assert {g for _stage, _start, g in _greens(manager)} == {PLAN_S}
    assert "gap_outs" not in _drive(World(passages), actuation="none").metrics()


# --------------------------------------------------------------------------- the spec
def test_the_spec_takes_gap_out_and_refuses_headroom_without_it(tmp_path: Path) -> None:
    head = 'name = "probe"\nkind = "baseline"\n[control]\ndefault = "adaptive"\n'
    good = tmp_path / "good.toml"
    good.write_text(head + '[control.adaptive]\nactuation = "gap_out"\ngap_s = 2.5\n'
                    "green_headroom = 1.2\n", encoding="utf-8")  # fmt: skip
    a = load_scenario(good).control.adaptive
    assert (a.actuation, a.gap_s, a.green_headroom) == ("gap_out", 2.5, 1.2)
    bad = tmp_path / "bad.toml"
    bad.write_text(head + "[control.adaptive]\ngreen_headroom = 1.2\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    msg = str(info.value)
    assert str(bad) in msg and "control.adaptive" in msg
    assert "green_headroom (1.2) applies only with actuation = 'gap_out'" in msg
    with pytest.raises(ScenarioError, match="gap_out"):
        bad.write_text(head + '[control.adaptive]\nactuation = "gapout"\n', encoding="utf-8")
        load_scenario(bad)


# --------------------------------------------------------------------------- advance loops
def test_the_gap_out_loop_sits_where_sumo_actuated_puts_its_own() -> None:
    # detector-gap (2 s) at the lane's speed: 50 km/h -> 27.8 m before the line
    assert advance_setback_m(speed_mps=13.89, min_green_s=20.0) == pytest.approx(27.78)
    assert advance_setback_m(speed_mps=13.89, min_green_s=20.0, detector_gap_s=3.0) == (
        pytest.approx(41.67)
    )
    # no further than the queue the minimum green clears: (5 / 1.9 + 0.5) x 7.5 m
    assert advance_setback_m(speed_mps=13.89, min_green_s=5.0) == pytest.approx(23.487, abs=1e-3)
    for bad in ({"speed_mps": 0.0, "min_green_s": 7.0},
                {"speed_mps": 10.0, "min_green_s": math.nan}):  # fmt: skip
        with pytest.raises(ValueError, match="must be a positive number"):
            advance_setback_m(**bad)
    loops = advance_loops(
        {"long_0": 20.0, "short_0": 20.0},
        lane_length_m={"long_0": 100.0, "short_0": 20.0},
        lane_speed_mps={"long_0": 13.89, "short_0": 13.89},
    )
    assert [loop._replace(setback_m=round(loop.setback_m, 2)) for loop in loops] == [
        AdvanceLoop("e1g_long_0", "long_0", 72.22, 27.78),
        AdvanceLoop("e1g_short_0", "short_0", 0.0, 27.78),  # capped: at the lane's start
    ]
    with pytest.raises(ValueError, match="'gone_0': no length or speed"):
        advance_loops({"gone_0": 20.0}, lane_length_m={}, lane_speed_mps={})


def test_each_lane_gets_the_shortest_minimum_green_of_its_stages() -> None:
    sig, links, _foes = _three_stage()
    assert lane_min_green_s(sig, links) == {"a_0": MIN_S, "a_1": MIN_S, "b_0": MIN_S}
    # b_1 is green in both stages of the two-stage signal: still one entry
    assert lane_min_green_s(_signal(), LINKS) == dict.fromkeys(("a_0", "a_1", "b_0", "b_1"), MIN_S)


def test_advance_loops_are_written_for_the_run_only_with_gap_out_at_advance_loops() -> None:
    lengths = {"a_0": 100.0, "a_1": 15.0, "b_0": 80.0, "b_1": 80.0}
    speeds = dict.fromkeys(lengths, 10.0)
    manager = _manager(gap_loops="advance", lanes=("a_0", "a_1", "b_0"))  # b_1: no loop
    assert manager.advance_lanes == ["a_0", "a_1", "b_0"]
    xml = manager.extra_additional_xml(lane_length_m=lengths, lane_speed_mps=speeds)
    assert xml is not None
    assert xml.count("<inductionLoop") == 3 and 'id="e1g_b_1"' not in xml
    assert '<inductionLoop id="e1g_a_0" lane="a_0" pos="80"' in xml  # 2 s x 10 m/s
    assert '<inductionLoop id="e1g_a_1" lane="a_1" pos="0"' in xml  # lane of 15 m
    with pytest.raises(ValueError, match="lane_length_m and lane_speed_mps are needed"):
        manager.extra_additional_xml()
    for plain in (_manager(gap_loops="stopline"), _manager(actuation="none")):
        assert plain.advance_lanes == []
        assert plain.extra_additional_xml(lane_length_m=lengths, lane_speed_mps=speeds) is None


def test_with_advance_loops_the_gap_is_read_there_not_at_the_stop_line() -> None:
    # the advance loops see approach a's last vehicle at t = 20; the stop-line loops keep
    # seeing vehicles (which they would, 2 s later, in SUMO): only the advance loops count
    passages = {"e1g_a_0": list(np.arange(0.0, 20.1, 2.0)), **_busy("La0", 1000.0),
                **_busy("e1g_b_0", 1000.0)}  # fmt: skip
    greens = _greens(_drive(World(passages), gap_loops="advance"))
    assert greens[0] == (0, 0.0, 23.0)
    assert greens[1] == (1, 28.0, PLAN_S)
    assert all(g >= MIN_S for _stage, _start, g in greens)


def test_the_spec_places_advance_loops_by_default_and_refuses_a_detector_gap_without_them(
    tmp_path: Path,
) -> None:
    head = 'name = "probe"\nkind = "baseline"\n[control]\ndefault = "adaptive"\n'
    good = tmp_path / "good.toml"
    good.write_text(head + '[control.adaptive]\nactuation = "gap_out"\ndetector_gap_s = 3.0\n',
                    encoding="utf-8")  # fmt: skip
    a = load_scenario(good).control.adaptive
    assert (a.gap_loops, a.detector_gap_s) == ("advance", 3.0)
    bad = tmp_path / "bad.toml"
    bad.write_text(head + '[control.adaptive]\nactuation = "gap_out"\ngap_loops = "stopline"\n'
                   "detector_gap_s = 3.0\n", encoding="utf-8")  # fmt: skip
    with pytest.raises(ScenarioError, match=r"detector_gap_s \(3\) places the advance loops"):
        load_scenario(bad)


# --------------------------------------------------------------------------- shared lanes
def _shared_lane() -> tuple[Signal, tuple[Link, ...], list[list[bool]]]:
    """One lane a_0 carries a's through and left: stage 0 serves both (the left
    permissive), stage 1 only the left (protected); stage 2 is b."""
    links = (Link(0, "a_0", "x", "s"), Link(1, "a_0", "y", "l"), Link(2, "b_0", "z", "s"))
    foes = [[False, False, True], [False, False, True], [True, True, False]]

    def green(name: str, state: str) -> Phase:
        return Phase(name, "green", state, PLAN_S, MIN_S, 0.0, MAX_S)

    def inter(state: str) -> list[Phase]:
        return [Phase("y", "yellow", state, 3.0), Phase("ar", "all_red", "rrr", 2.0)]

    phases = (green("a", "Ggr"), *inter("yyr"), green("a left", "rGr"), *inter("ryr"),
              green("b", "rrG"), *inter("rry"))  # fmt: skip
    return Signal("J", phases), links, foes


def test_share_of_count_splits_a_lane_by_the_movements_each_stage_serves() -> None:
    sig, links, _foes = _shared_lane()
    stages = stage_lanes(sig, links)
    assert share_of_count("a_0", {"s", "l"}, stages) == 1.0  # every movement of the lane
    assert share_of_count("a_0", {"l"}, stages) == 0.5  # one of its two
    assert share_of_count("b_0", {"s"}, stages) == 1.0
    three = [{"a": {"s", "l", "r"}}, {"a": {"l"}}, {"a": {"r"}}]
    assert share_of_count("a", {"l"}, three) == pytest.approx(1 / 3)
    assert share_of_count("a", {"l", "r"}, three) == pytest.approx(2 / 3)


@dataclass
class Counts:
    det_interval_end_s: float
    det_count_veh: np.ndarray
    det_index: dict[str, int]


def test_the_adaptive_estimate_gives_a_shared_lanes_protected_stage_its_share() -> None:
    """A loop counts the lane, not the movement: the protected left that serves one of
    a_0's two movements gets half its count (before the split it got all of it, and
    Webster gave the left stage as much green as the through)."""
    sig, links, foes = _shared_lane()
    dets = [Detector("La0", "stopline", "a_0"), Detector("Lb0", "stopline", "b_0")]
    manager = ControlManager(
        signals=[sig], links={"J": links}, edge_lanes=dict.fromkeys("xyz", 1), detectors=dets,
        assignment={"J": "adaptive"}, spec=Control(Adaptive(actuation="none")),
        detector_period_s=30.0, control_interval_s=5.0, foes={"J": foes},
    )  # fmt: skip
    world = World({})
    manager.start(world, t_s=0.0)
    counts = Counts(30.0, np.array([30.0, 10.0]), {"La0": 0, "Lb0": 1})
    manager.on_tick(60.0, world, counts)  # the first update (update_s = 60)
    row = manager.telemetry.timings[-1]
    sat_a = lane_sat_flow_vph({"s", "l"}, protected_left=False)  # permissive left in it
    sat_left = lane_sat_flow_vph({"l"}, protected_left=True)  # the left stage's own
    sat_b = lane_sat_flow_vph({"s"}, protected_left=False)
    assert sat_left > sat_a
    per_h = 120.0  # a 30 s window
    y_a, y_left, y_b = 30.0 * per_h / sat_a, 0.5 * 30.0 * per_h / sat_left, 10.0 * per_h / sat_b
    assert row["flow_ratio_sum"] == pytest.approx(y_a + y_left + y_b)
    through, left, _b = row["green_s"]
    assert left < through
