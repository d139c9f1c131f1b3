"""Coordination of adaptive signals (:mod:`signal_control.coordination`): the cycle
clock, the offsets, the yield point, and the manager timing main-street greens by it
through the guard."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenarios.loader import load_scenario
from signal_control.actuation import GapOutPolicy
from signal_control.control import ControlManager
from signal_control.coordination import (
    CYCLE_HYSTERESIS_S,
    Coordinator,
    CycleClock,
    coordinated_stage,
    progression_offsets_s,
    yield_point_s,
)
from tests.signal_control.test_actuation import (
    FOES,
    GAP_S,
    LINKS,
    LOOPS,
    Adaptive,
    Control,
    Counts,
    Detector,
    Link,
    Phase,
    Readings,
    Signal,
    World,
    _signal,
    _status,
    run_manager,
)
from twin.errors import ScenarioError


# --------------------------------------------------------------------------- the clock
@given(
    cycle_a=st.floats(30.0, 200.0),
    cycle_b=st.floats(30.0, 200.0),
    t_change=st.floats(0.0, 5_000.0),
    dt=st.floats(-500.0, 5_000.0),
    pos=st.floats(0.0, 400.0),
)
def test_the_clock_runs_on_without_a_jump_and_finds_the_nearest_position(
    cycle_a: float, cycle_b: float, t_change: float, dt: float, pos: float
) -> None:
    clock = CycleClock(cycle_a)
    before = clock.phase(t_change)
    clock.set_cycle(t_change, cycle_b)
    assert clock.phase(t_change) == pytest.approx(before)  # no jump at the change
    t = t_change + dt
    at = clock.nearest_s(t, pos)
    # the cycle stands at pos (mod the cycle) there ...
    frac = (clock.phase(at) - pos / cycle_b) % 1.0
    assert min(frac, 1.0 - frac) == pytest.approx(0.0, abs=1e-7)
    # ... and no other time where it does is nearer
    assert abs(at - t) <= cycle_b / 2 + 1e-6


def test_a_longer_cycle_slows_the_clock_rather_than_moving_the_next_position() -> None:
    clock = CycleClock(100.0)
    assert clock.nearest_s(290.0, 0.0) == pytest.approx(300.0)
    clock.set_cycle(250.0, 120.0)  # half a cycle to go at 250 s: now 60 s of 120
    assert clock.nearest_s(290.0, 0.0) == pytest.approx(310.0)
    assert clock.nearest_s(250.0, 30.0) == pytest.approx(220.0)  # a quarter cycle back
    with pytest.raises(ValueError, match="positive"):
        clock.set_cycle(300.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        CycleClock(math.nan)


def test_offsets_follow_the_travel_time_eastward_modulo_the_cycle() -> None:
    off = progression_offsets_s([1000.0, 1500.0, 3000.0], 10.0, 90.0)
    assert off.tolist() == pytest.approx([0.0, 50.0, 200.0 % 90.0])
    assert progression_offsets_s([], 10.0, 90.0).size == 0
    with pytest.raises(ValueError, match="progression speed"):
        progression_offsets_s([0.0], 0.0, 90.0)


# --------------------------------------------------------------------------- the yield point
def test_the_yield_point_extends_an_early_green_and_shortens_a_late_one() -> None:
    clock = CycleClock(100.0)  # the coordinated green planned at 20-60 s of each cycle
    kw = {"offset_s": 20.0, "green_s": 40.0}
    # on time: runs its planned green
    assert yield_point_s(clock, entered_s=220.0, min_end_s=230.0, max_end_s=300.0, **kw) == 260.0
    # 15 s early (the other stages gapped out): runs on to the yield point
    assert yield_point_s(clock, entered_s=205.0, min_end_s=215.0, max_end_s=300.0, **kw) == 260.0
    # ... but never past its maximum
    assert yield_point_s(clock, entered_s=205.0, min_end_s=215.0, max_end_s=250.0, **kw) == 250.0
    # 25 s late: ends at the yield point, back in step next cycle ...
    assert yield_point_s(clock, entered_s=245.0, min_end_s=250.0, max_end_s=300.0, **kw) == 260.0
    # ... but never before its minimum
    assert yield_point_s(clock, entered_s=255.0, min_end_s=270.0, max_end_s=320.0, **kw) == 270.0
    # nearer the next cycle's start than this one's: that one is planned
    assert yield_point_s(clock, entered_s=285.0, min_end_s=295.0, max_end_s=400.0, **kw) == 360.0


def _phases(main_s: float, side_s: float, main_max_s: float = 60.0) -> tuple[Phase, ...]:
    def inter(state: str) -> list[Phase]:
        return [Phase("y", "yellow", state, 3.0), Phase("ar", "all_red", "rrrG", 2.0)]

    return (Phase("a", "green", "GgrG", main_s, 10.0, 0.0, main_max_s), *inter("yyrG"),
            Phase("b", "green", "rrGG", side_s, 10.0, 0.0, 60.0), *inter("rryG"))  # fmt: skip


def test_the_coordinated_stage_is_the_longest_planned_green() -> None:
    assert coordinated_stage(Signal("J", _phases(40.0, 25.0))) == 0
    assert coordinated_stage(Signal("J", _phases(25.0, 40.0))) == 1
    assert coordinated_stage(Signal("J", _phases(30.0, 30.0))) == 0  # the first of equals
    with pytest.raises(ValueError, match="no green"):
        coordinated_stage(Signal("J", (Phase("ar", "all_red", "rrrr", 2.0),)))


def test_the_common_cycle_follows_the_longest_estimate_beyond_a_hysteresis() -> None:
    sigs = [Signal("J", _phases(40.0, 25.0)), Signal("K", _phases(25.0, 40.0))]
    coord = Coordinator(sigs, [0.0, 500.0], progression_kph=36.0, cycle_s=75.0)
    assert coord.stage == [0, 1]
    assert coord.offset_s.tolist() == pytest.approx([0.0, 50.0])
    assert not coord.update(60.0, np.array([70.0, 75.0 + CYCLE_HYSTERESIS_S]))
    assert not coord.update(60.0, np.array([np.nan, np.nan]))
    assert coord.update(120.0, np.array([70.0, 96.0, np.nan]))
    assert coord.cycle_s == 96.0 and coord.cycle_changes == 1
    assert coord.offset_s.tolist() == pytest.approx([0.0, 50.0])
    # a signal's split of its own 70 s cycle (10 s intergreen) stretched to 96 s
    green = coord.split_greens(np.array([36.0, 24.0]), 70.0, 10.0)
    assert green.tolist() == pytest.approx([36.0 * 86 / 60, 24.0 * 86 / 60])
    assert green.sum() + 10.0 == pytest.approx(coord.cycle_s)
    with pytest.raises(ValueError, match="positions"):
        Coordinator(sigs, [0.0], progression_kph=36.0, cycle_s=75.0)


def test_a_held_stage_never_gaps_out_and_the_others_still_do() -> None:
    policy = GapOutPolicy([_signal()], {"J": LINKS}, LOOPS, gap_s=GAP_S, hold_stage={"J": 0})
    empty = Readings(dict.fromkeys(LOOPS.values(), 9.0))  # no vehicle for 9 s anywhere
    policy.observe(policy.due(12.0), empty)
    assert policy.decide(12.0, policy.due(12.0), status=lambda _t: _status(0)) == []
    policy.next_s[:] = 12.0
    policy.observe(policy.due(12.0), empty)
    ended = policy.decide(12.0, policy.due(12.0), status=lambda _t: _status(1))
    assert [(c.tls, c.verb) for c in ended] == [("J", "force_off")]


# --------------------------------------------------------------------------- the manager
def _coordinated_run(until_s: float, *, side_busy: bool, main_max_s: float) -> ControlManager:
    """Two signals 500 m apart, coordinated at 36 km/h (50 s of travel), driven as a run
    drives them (ticks every 5 s, stopping wherever the manager asks, whole seconds);
    the loops count 4 vehicles a 30 s interval on every lane. The main street's loops
    never see a vehicle; the side street's see one every 2 s until 150 s, then none
    (or throughout: ``side_busy``). The main street's maximum green is ``main_max_s``."""
    lanes = ("a_0", "a_1", "b_0", "b_1")
    links = {t: tuple(Link(k.index, t + k.from_lane, k.to_edge, k.direction) for k in LINKS)
             for t in "JK"}  # fmt: skip
    plan = _phases(40.0, 25.0, main_max_s)
    sigs = [Signal(t, plan, tuple(t + lane for lane in lanes)) for t in "JK"]
    dets = [Detector(f"L{t}{lane}", "stopline", t + lane) for t in "JK" for lane in lanes]
    side_until_s = until_s if side_busy else 150.0
    passages = {f"L{t}b_0": list(np.arange(0.0, side_until_s + 1e-9, 2.0)) for t in "JK"}
    manager = ControlManager(
        signals=sigs, links=links, edge_lanes=dict.fromkeys("xyzw", 1),
        detectors=dets, assignment=dict.fromkeys("JK", "adaptive"),
        spec=Control(Adaptive(coordination="arterial", progression_kph=36.0)),
        detector_period_s=30.0, control_interval_s=5.0, foes=dict.fromkeys("JK", FOES),
        positions_m={"J": (0.0, 0.0), "K": (500.0, 0.0)},
    )  # fmt: skip
    world = World(passages)
    manager.start(world, t_s=0.0)
    index = {d.id: k for k, d in enumerate(dets)}
    four = np.full(len(dets), 4.0)  # every loop, every 30 s interval
    run_manager(manager, world, until_s, lambda t: Counts(30.0 * math.floor(t / 30.0), four, index))
    return manager


@pytest.mark.parametrize(
    ("side_busy", "main_max_s"),
    [(True, 60.0), (False, 60.0), (False, 35.0)],
    ids=["side-busy", "early-return", "dwell"],
)
def test_coordinated_main_street_greens_end_at_their_yield_points_in_progression(
    side_busy: bool, main_max_s: float
) -> None:
    m = _coordinated_run(1800.0, side_busy=side_busy, main_max_s=main_max_s)
    coord = m._coord
    assert coord is not None
    metrics = m.metrics()
    assert metrics["guard_interventions"] == 0  # no minimum cut, no maximum passed
    assert metrics["coordinated_greens"] >= 20  # about one a cycle each after 60 s
    assert metrics["coordination_cycle_changes"] >= 1
    cycle = coord.cycle_s
    assert 60.0 <= cycle <= 150.0
    late = [g for g in m.series()["greens_served"] if g["start_s"] > 900.0]  # settled
    ends: dict[str, list[float]] = {"J": [], "K": []}
    main, side = [], []
    for g in late:
        if g["stage"] == 0:  # the main street never gaps out, though its loops are empty
            ends[g["tls_id"]].append(g["start_s"] + g["green_s"])
            main.append(g["green_s"])
        else:
            side.append(g["green_s"])
    assert min(main + side) >= 10.0 - 1e-9 and max(main) <= main_max_s + 1e-9
    planned = float(m._coord_green[0])  # the main street's split of the common cycle
    # every main-street green ends at its yield point, one cycle apart ...
    for t, e in ends.items():
        assert len(e) >= 4
        assert np.diff(e) == pytest.approx(cycle, abs=1.0), t
    # ... and K's 50 s of travel after J's (mod the cycle)
    shift = (ends["K"][0] - ends["J"][0]) % cycle
    assert min(abs(shift - 50.0), cycle - abs(shift - 50.0)) <= 1.0
    if side_busy:  # both run their splits
        assert max(side) > 10.0 and all(abs(g - planned) <= 1.0 for g in main)
        assert metrics["coordination_dwells"] == 0
    elif main_max_s == 60.0:  # the side street gaps out: its time returns to the main street
        assert all(s == 10.0 for s in side) and min(main) > planned + 5.0
        assert metrics["coordination_dwells"] == 0
    else:  # ... but no more than the main street's maximum takes: the side street dwells
        assert all(g == main_max_s for g in main) and min(side) > 10.0
        assert metrics["coordination_dwells"] > 0


# --------------------------------------------------------------------------- the spec
def test_the_spec_takes_coordination_with_gap_out_only(tmp_path: Path) -> None:
    head = 'name = "probe"\nkind = "baseline"\n[control]\ndefault = "adaptive"\n'
    good = tmp_path / "good.toml"
    good.write_text(head + '[control.adaptive]\nactuation = "gap_out"\ncoordination = '
                    '"arterial"\nprogression_kph = 40\n', encoding="utf-8")  # fmt: skip
    a = load_scenario(good).control.adaptive
    assert (a.coordination, a.progression_kph) == ("arterial", 40.0)
    bad = tmp_path / "bad.toml"
    bad.write_text(head + '[control.adaptive]\ncoordination = "arterial"\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    assert "needs actuation = 'gap_out'" in str(err.value)
    bad.write_text(head + "[control.adaptive]\nprogression_kph = 40\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    assert "progression_kph (40) sets the offsets" in str(err.value)
