"""The guarded port: commands reach the guard, states reach the display, and the edges
of guarded control are safe by construction: a take-over mid-cycle, a display called
late, a hand-back to the local program (issue 10, findings 2, 4 and 5).

What a display showed is checked by the independent monitor (``tests/mmu.py``), not by
the guard's own bookkeeping: the port's states (and, after a hand-back, an emulated
local program) are sampled every quarter second and judged as a timeline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from signal_control.guard import GuardPlan, UnsafePlanError
from signal_control.port import (
    MAX_ALIGN_GREENS,
    GuardedPort,
    SignalReleasedError,
    plan_interval,
    plan_position,
    schedule_green_end_s,
)
from tests import mmu
from tests.signal_control.test_guard import command_lists, plans_and_foes, quarters

Q = 0.25
DAY_S = 86_400


class FakeDisplay:
    """Records what it is told; ``clock`` dates each state."""

    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self.clock = clock
        self.states: list[tuple[str, str]] = []
        self.shown: dict[str, list[tuple[float, str]]] = {}
        self.programs: list[tuple[str, str]] = []
        self.phases: list[tuple[str, int, float]] = []

    def set_signal_state(self, tls_id: str, state: str) -> None:
        self.states.append((tls_id, state))
        self.shown.setdefault(tls_id, []).append((self.clock(), state))

    def set_program(self, tls_id: str, program_id: str) -> None:
        self.programs.append((tls_id, program_id))

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None:
        self.phases.append((tls_id, phase_index, remaining_s))


class FieldController(FakeDisplay):
    """A display that, once handed back, runs the local program itself: the plan's
    phases (green, yellow, all-red per stage) from the phase and remaining time set."""

    def __init__(self, plan: GuardPlan, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.plan = plan
        self.program_phases = program_phases(plan)
        self.local: tuple[float, int, float] | None = None  # (t, phase, remaining)
        self.program_asked = False

    def set_signal_state(self, tls_id: str, state: str) -> None:
        assert self.local is None, "a state sent after the hand-back"
        super().set_signal_state(tls_id, state)

    def set_program(self, tls_id: str, program_id: str) -> None:
        super().set_program(tls_id, program_id)
        self.program_asked = True

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None:
        super().set_phase(tls_id, phase_index, remaining_s=remaining_s)
        assert self.program_asked, "set_phase before set_program"
        assert remaining_s >= 1.0 - 1e-9
        self.local = (self.clock(), phase_index, remaining_s)

    def state_at(self, tls_id: str, t_s: float) -> str:
        if self.local is not None and t_s >= self.local[0] - 1e-9:
            t0, k, remaining = self.local
            end = t0 + remaining
            while t_s >= end - 1e-9:
                k = (k + 1) % len(self.program_phases)
                end += self.program_phases[k][1]
            return self.program_phases[k][0]
        shown = [s for t, s in self.shown[tls_id] if t <= t_s + 1e-9]
        return shown[-1]


def program_phases(plan: GuardPlan) -> list[tuple[str, float]]:
    """The local program of a plan: green, yellow, all-red for each stage, in order."""
    out = []
    for k in range(plan.n_stages):
        nxt = (k + 1) % plan.n_stages
        out += [
            (plan.green_states[k], plan.green_s[k]),
            (plan.show("yellow", k, nxt), plan.yellow_s),
            (plan.show("all_red", k, nxt), plan.all_red_s),
        ]
    return out


def schedule_state(plan: GuardPlan, t_s: float) -> str:
    """What the fixed-time plan shows at ``t_s`` (the controller running on its own)."""
    interval, stage, _into = plan_interval(plan, t_s)
    return plan.show(interval, stage, (stage + 1) % plan.n_stages)


def monitor_rules(plan: GuardPlan, foes: Any) -> mmu.SignalRules:
    n = len(plan.green_states[0])
    return mmu.SignalRules(
        tls_id=plan.tls_id,
        n_links=n,
        conflicts=tuple(frozenset(j for j in range(n) if foes[i][j]) for i in range(n)),
        min_green_s=dict(zip(plan.green_states, plan.min_green_s, strict=True)),
        yellow_min_s=plan.yellow_s,
        clearance_min_s=plan.all_red_s,
    )


def monitor_can_tell(plan: GuardPlan) -> bool:
    """The monitor judges greens by their state string: a yellow or all-red that looks
    like the green of a third stage would be taken for it. Real plans never do that;
    random ones may, and are left out."""
    for a in range(plan.n_stages):
        for b in range(plan.n_stages):
            for interval in ("yellow", "all_red"):
                shown = plan.show(interval, a, b)  # type: ignore[arg-type]
                if (
                    a != b
                    and shown in plan.green_states
                    and shown not in (plan.green_states[a], plan.green_states[b])
                ):
                    return False
    return True


def sampled(state_at: Callable[[float], str], t0: float, t1: float) -> list[tuple[float, str]]:
    n = round((t1 - t0) / Q)
    return [(t0 + k * Q, state_at(t0 + k * Q)) for k in range(n + 1)]


def whole_second_plan(plan: GuardPlan) -> GuardPlan:
    """The plan with whole-second intergreens (as SUMO steps and the city plans count)."""
    yellow, all_red = float(math.ceil(plan.yellow_s)), float(math.ceil(plan.all_red_s))
    return dataclasses.replace(
        plan, yellow_s=yellow, all_red_s=all_red, min_all_red_s=min(plan.min_all_red_s, all_red)
    )


PLAN = GuardPlan(
    tls_id="J",
    green_states=("GGrr", "rrGG"),
    min_green_s=(10.0, 10.0),
    max_green_s=(60.0, 60.0),
    green_s=(30.0, 20.0),
    yellow_s=3.0,
    all_red_s=2.0,
    offset_s=7.0,
    phase_index=(0, 3),
)
FOES = {"J": [[False, False, True, True], [False, False, True, True],
              [True, True, False, False], [True, True, False, False]]}  # fmt: skip


def send(port: GuardedPort, tls: str, cmd: tuple[Any, ...], now: float) -> None:
    """One random guard command (``tests.signal_control.test_guard``) through the port."""
    name = cmd[0]
    if name == "set_timing":
        port.apply_timing(tls, green_s=cmd[1])
    elif name == "hold":
        port.hold(tls, until_s=now + cmd[1])
    elif name == "force_off":
        port.force_off(tls)
    elif name == "skip":
        port.skip(tls, stage=cmd[1])
    elif name == "priority":
        port.request_priority(tls, stage=cmd[1], max_hold_s=cmd[2])
    elif name == "cancel":
        port.cancel_priority(tls)


# --------------------------------------------------------------------------- basics


def test_port_shows_the_fixed_plan_and_dates_commands_with_the_clock() -> None:
    now = [0.0]
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": PLAN}, start_s=0.0, foes=FOES, clock=lambda: now[0])
    assert display.states == [("J", "GGrr")]
    port.advance(30.0)
    assert display.states[-1] == ("J", "yyrr")
    now[0] = 31.0  # a command between two advance() calls is dated by the clock
    port.request_priority("J", stage=0)
    assert port.guard("J").events[-1].t_s == 31.0
    assert port.late_changes == 0


def test_the_port_needs_every_signals_foes_and_refuses_a_conflicting_plan() -> None:
    """Finding 1 of issue 10: the port was built without foes in every run."""
    with pytest.raises(TypeError, match="foes"):
        GuardedPort(FakeDisplay(), {"J": PLAN}, start_s=0.0)  # type: ignore[call-arg]
    with pytest.raises(UnsafePlanError, match="no conflict matrix for signals J"):
        GuardedPort(FakeDisplay(), {"J": PLAN}, start_s=0.0, foes={})
    bad = dataclasses.replace(PLAN, green_states=("GGrr", "rGGr"))
    with pytest.raises(UnsafePlanError, match="stage 1 gives conflicting links 1 and 2"):
        GuardedPort(FakeDisplay(), {"J": bad}, start_s=0.0, foes=FOES, align_offsets=True)


def test_plan_position_follows_the_offset_on_whole_seconds() -> None:
    # cycle = 30 + 20 + 2 * 5 = 60 s; position = (t - 7) mod 60
    assert plan_position(PLAN, 7.0) == (0, 0.0)
    assert plan_position(PLAN, 20.5) == (0, 13.0)
    assert plan_position(PLAN, 38.0) == (1, 0.0)  # inside the intergreen: next green
    assert plan_position(PLAN, 50.0) == (1, 8.0)
    assert plan_interval(PLAN, 38.0) == ("yellow", 0, 1.0)
    assert plan_interval(PLAN, 41.0) == ("all_red", 0, 1.0)
    assert plan_interval(PLAN, 66.0) == ("all_red", 1, 1.0)
    assert plan_interval(PLAN, 7.0 + DAY_S * 60) == ("green", 0, 0.0)


@given(t=st.integers(0, DAY_S), stage=st.integers(0, 1))
def test_schedule_green_end_is_where_the_plan_ends_that_green(t: int, stage: int) -> None:
    end = schedule_green_end_s(PLAN, stage, float(t))
    assert end >= t and end - t < PLAN.cycle_s
    assert plan_interval(PLAN, end) == ("yellow", stage, 0.0)
    assert plan_interval(PLAN, end - 1.0)[:2] == ("green", stage)


# --------------------------------------------------------------------------- hand-back


def test_hand_back_inside_a_green_that_ends_on_schedule_is_immediate_and_seamless() -> None:
    now = [12.0]
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": PLAN}, start_s=7.0, foes=FOES, clock=lambda: now[0])
    port.advance(12.0)
    port.local_mode("J", "plan")
    # stage 0 began at 7 (the schedule's start too): the plan ends it at 37
    assert display.programs == [("J", "0")]
    assert display.phases == [("J", 0, 25.0)]
    assert port.status("J").local and port.is_local("J")
    assert port.next_change_s() == math.inf
    shown = len(display.states)
    port.advance(200.0)
    assert len(display.states) == shown  # the local program drives it now
    events = [e.what for e in port.guard("J").events]
    assert events[-2:] == ["handback_asked", "handed_back"]


def test_hand_back_waits_for_a_green_and_commands_are_refused_meanwhile() -> None:
    now = [30.0]
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": PLAN}, start_s=0.0, foes=FOES, clock=lambda: now[0])
    port.advance(30.0)  # yellow 0 -> 1 from 30 (start 0, not on the plan's schedule)
    port.local_mode("J", "plan")
    assert display.programs == []
    assert port.status("J").handing_back and port.is_local("J")
    before = port.guard("J").green_s
    with pytest.raises(SignalReleasedError, match=r"Signal J is being handed back.*apply_timing"):
        port.apply_timing("J", green_s=[40.0, 40.0])
    assert port.guard("J").green_s == before  # a refused command changes nothing
    t = 30.0
    while "J" not in port.released and t < 1000.0:
        t = port.next_change_s()
        now[0] = t
        port.advance(t)
    assert display.programs == [("J", "0")]
    ((_tls, phase, remaining),) = display.phases
    # handed back in a green, for the rest of it, ending where the schedule ends it
    interval, stage, _ = plan_interval(PLAN, t + remaining)
    assert (interval, stage) == ("yellow", phase // 3)
    with pytest.raises(SignalReleasedError, match="Signal J was handed back"):
        port.force_off("J")
    with pytest.raises(SignalReleasedError):
        port.request_priority("J", stage=0)
    port.local_mode("J", "plan")  # asking again changes nothing
    assert display.programs == [("J", "0")]


def test_hand_back_releases_a_priority_hold_and_actuated_mode_needs_no_alignment() -> None:
    now = [5.0]
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": PLAN}, start_s=0.0, foes=FOES, clock=lambda: now[0])
    port.advance(5.0)
    port.request_priority("J", stage=0, max_hold_s=100.0)
    now[0] = 20.0
    port.advance(20.0)
    port.local_mode("J", "actuated")
    assert port.guard("J").priority is None
    assert display.programs == [("J", "actuated")]
    assert display.phases == [("J", 0, 1.0)]  # had its minimum: the program decides now


def test_local_mode_refuses_unknown_modes_and_plans_without_phase_indices() -> None:
    port = GuardedPort(FakeDisplay(), {"J": PLAN}, start_s=0.0, foes=FOES)
    with pytest.raises(ValueError, match="allowed: plan, actuated"):
        port.local_mode("J", "manual")  # type: ignore[arg-type]
    bare = dataclasses.replace(PLAN, phase_index=())
    port = GuardedPort(FakeDisplay(), {"J": bare}, start_s=0.0, foes=FOES)
    with pytest.raises(ValueError, match="cannot be handed back"):
        port.local_mode("J", "plan")
    with pytest.raises(KeyError, match="not under guarded control"):
        port.local_mode("K", "plan")


PORT_SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@PORT_SETTINGS
@given(data=st.data())
def test_hand_back_at_any_moment_never_cuts_an_interval(data: st.DataObject) -> None:
    """Finding 2 of issue 10: a hand-back cut greens, yellows and clearances. Whatever the
    guard did before (random commands) and whenever the hand-back is asked, the display
    (guard, then the local program) shows every interval in full, and the local program
    resumes on its own schedule."""
    raw, foes = data.draw(plans_and_foes())
    assume(monitor_can_tell(raw))
    plan = whole_second_plan(raw)
    plan = dataclasses.replace(
        plan,
        offset_s=data.draw(quarters(0.0, 200.0)) // 0.5 * 0.5,
        phase_index=tuple(3 * k for k in range(plan.n_stages)),
    )
    start = float(data.draw(st.integers(0, DAY_S)))
    now = [start]
    display = FieldController(plan, lambda: now[0])
    port = GuardedPort(display, {"J": plan}, start_s=start, foes={"J": foes},
                       align_offsets=True, clock=lambda: now[0])  # fmt: skip
    t = start
    for dt, cmd in data.draw(command_lists(plan.n_stages, max_size=15)):
        t_next = t + dt
        while port.next_change_s() <= t_next:
            now[0] = port.next_change_s()
            port.advance(now[0])
        now[0] = t = t_next
        port.advance(t)
        send(port, "J", cmd, t)
    port.local_mode("J", data.draw(st.sampled_from(["plan", "plan", "actuated"])))
    while "J" not in port.released:
        assert now[0] < t + 2 * (MAX_ALIGN_GREENS + 2) * plan.cycle_s + 600.0
        now[0] = port.next_change_s()
        port.advance(now[0])
    t_back = now[0]
    t_end = t_back + 3 * plan.cycle_s
    timeline = sampled(lambda x: display.state_at("J", x), start, t_end)
    # a fresh start continues the plan's green: credit it with the plan's elapsed time
    interval, stage, into = plan_interval(plan, start)
    credit = (plan.green_states[stage], into) if interval == "green" else None
    report = mmu.check_timeline(monitor_rules(plan, foes), timeline, step_s=Q, credit=credit)
    assert not report.violations, report.summary()
    (event,) = [e for e in port.guard("J").events if e.what == "handed_back"]
    if event.detail["mode"] == "plan" and event.detail["steered"] < MAX_ALIGN_GREENS:
        # from the end of the green it took over in, the local program runs on the
        # plan's own schedule again
        for x in range(math.ceil(event.detail["green_end_s"]), math.floor(t_end)):
            assert display.state_at("J", float(x)) == schedule_state(plan, float(x)), x


# --------------------------------------------------------------------------- take-over


@PORT_SETTINGS
@given(data=st.data())
def test_a_running_take_over_mid_cycle_never_cuts_the_interval_in_progress(
    data: st.DataObject,
) -> None:
    """Finding 4 of issue 10. The controller runs its plan; the port takes over at any
    second of a day (``takeover="running"``) and is asked at once to end the green, skip
    or prioritize: the green in progress still gets its minimum from its real start, a
    yellow or all-red in progress is finished, and no interval is skipped."""
    raw, foes = data.draw(plans_and_foes())
    assume(monitor_can_tell(raw))
    plan = dataclasses.replace(
        whole_second_plan(raw), offset_s=data.draw(quarters(0.0, 300.0)) // 0.5 * 0.5
    )
    start = float(data.draw(st.integers(0, DAY_S)))
    now = [start]
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": plan}, start_s=start, foes={"J": foes},
                       align_offsets=True, takeover="running", clock=lambda: now[0])  # fmt: skip
    assert display.shown["J"] == [(start, schedule_state(plan, start))]  # seamless
    t = start
    for dt, cmd in data.draw(command_lists(plan.n_stages, max_dt=10.0, max_size=8)):
        t_next = t + dt
        while port.next_change_s() <= t_next:
            now[0] = port.next_change_s()
            port.advance(now[0])
        now[0] = t = t_next
        port.advance(t)
        send(port, "J", cmd, t)
    port.cancel_priority("J")
    t_end = t + 3 * (max(plan.max_green_s) + plan.yellow_s + plan.all_red_s)
    while port.next_change_s() <= t_end:
        now[0] = port.next_change_s()
        port.advance(now[0])
    # the plan ran on its own before the take-over: from the start of its cycle before
    t_begin = start - plan.cycle_s - (math.floor((start - plan.offset_s) % plan.cycle_s))
    assert plan_interval(plan, t_begin) == ("green", 0, 0.0)

    def state_at(x: float) -> str:
        if x < start:  # the plan changes on whole seconds (plan_interval's convention)
            return schedule_state(plan, math.floor(x))
        return [s for at, s in display.shown["J"] if at <= x + 1e-9][-1]

    report = mmu.check_timeline(monitor_rules(plan, foes), sampled(state_at, t_begin, t_end),
                                step_s=Q)  # fmt: skip
    assert not report.violations, report.summary()
    assert report.counts.greens >= 1


@PORT_SETTINGS
@given(data=st.data())
def test_a_fresh_start_gives_the_first_green_its_minimum_from_the_plans_start(
    data: st.DataObject,
) -> None:
    """A display that showed nothing yet (a simulation's first step) starts where the
    plan stands; in a green the first green ends no sooner than its minimum counted from
    where the plan began it, even under an immediate force-off; in an intergreen the next
    green starts in full."""
    raw, foes = data.draw(plans_and_foes())
    assume(monitor_can_tell(raw))
    plan = dataclasses.replace(
        whole_second_plan(raw), offset_s=data.draw(quarters(0.0, 300.0)) // 0.5 * 0.5
    )
    start = float(data.draw(st.integers(0, DAY_S)))
    now = [start]
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": plan}, start_s=start, foes={"J": foes},
                       align_offsets=True, clock=lambda: now[0])  # fmt: skip
    interval, stage, into = plan_interval(plan, start)
    port.force_off("J")
    first_end = port.next_change_s()
    if interval == "green":
        assert display.shown["J"] == [(start, plan.green_states[stage])]
        assert first_end >= start - into + plan.min_green_s[stage] - 1e-9
    else:
        nxt = (stage + 1) % plan.n_stages
        assert display.shown["J"] == [(start, plan.green_states[nxt])]
        assert first_end >= start + plan.min_green_s[nxt] - 1e-9
    now[0] = first_end
    port.advance(first_end)
    assert port.status("J").interval == "yellow"  # the first green ends in its yellow


def test_a_running_take_over_inside_a_yellow_finishes_it() -> None:
    now = [38.0]  # PLAN: stage 0 green 7..37, yellow 37..40, all-red 40..42
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": PLAN}, start_s=38.0, foes=FOES, align_offsets=True,
                       takeover="running", clock=lambda: now[0])  # fmt: skip
    assert display.shown["J"] == [(38.0, "yyrr")]
    assert port.status("J").interval == "yellow" and port.next_change_s() == 40.0
    now[0] = 40.0
    port.advance(40.0)
    now[0] = 42.0
    port.advance(42.0)
    assert display.shown["J"] == [(38.0, "yyrr"), (40.0, "rrrr"), (42.0, "rrGG")]
    # the old behaviour (a fresh start): straight into the next green
    fresh = FakeDisplay()
    GuardedPort(fresh, {"J": PLAN}, start_s=38.0, foes=FOES, align_offsets=True)
    assert fresh.states == [("J", "rrGG")]


# --------------------------------------------------------------------------- late display


@PORT_SETTINGS
@given(data=st.data())
def test_a_display_called_late_still_shows_every_interval_in_full(data: st.DataObject) -> None:
    """Finding 5 of issue 10: ``advance`` showed only the last state due. Called at
    random late moments (a field link with jitter), the port now shows each change when
    called and keeps every later interval at full length; it counts the late changes."""
    raw, foes = data.draw(plans_and_foes())
    assume(monitor_can_tell(raw))
    plan = whole_second_plan(raw)
    now = [0.0]
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": plan}, start_s=0.0, foes={"J": foes},
                       clock=lambda: now[0])  # fmt: skip
    calls = data.draw(st.lists(quarters(0.25, 30.0), min_size=1, max_size=40))
    commands = data.draw(command_lists(plan.n_stages, max_size=len(calls)))
    t = 0.0
    for k, dt in enumerate(calls):
        now[0] = t = t + dt  # called whenever, not when changes fall due
        port.advance(t)
        if k < len(commands):
            send(port, "J", commands[k][1], t)
    port.cancel_priority("J")
    t_end = t + 2 * plan.cycle_s
    now[0] = t_end
    port.advance(t_end)

    def state_at(x: float) -> str:
        return [s for at, s in display.shown["J"] if at <= x + 1e-9][-1]

    report = mmu.check_timeline(monitor_rules(plan, foes), sampled(state_at, 0.0, t_end),
                                step_s=Q)  # fmt: skip
    assert not report.violations, report.summary()
    late = [e for e in port.guard("J").events if e.what == "change_late"]
    assert port.late_changes == len(late)


def test_one_late_call_over_several_changes_shows_each_of_them() -> None:
    now = [0.0]
    display = FakeDisplay(lambda: now[0])
    port = GuardedPort(display, {"J": PLAN}, start_s=0.0, foes=FOES, clock=lambda: now[0])
    now[0] = 36.0  # yellow due at 30, all-red at 33, stage 1 at 35: all missed
    port.advance(36.0)
    assert display.shown["J"] == [(0.0, "GGrr"), (36.0, "yyrr")]
    assert port.late_changes == 1 and port.next_change_s() == 39.0
    now[0] = 39.0
    port.advance(39.0)
    now[0] = 41.0
    port.advance(41.0)
    assert display.shown["J"][-2:] == [(39.0, "rrrr"), (41.0, "rrGG")]
    assert port.late_changes == 1
