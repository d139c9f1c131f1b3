"""What counts as a guard intervention: a real change to a request, never a rounding to
whole seconds nor a note (issue 15, "honest metrics")."""

from __future__ import annotations

from typing import Any

from signal_control.guard import INTERVENTION_KINDS, GuardPlan, SignalGuard
from signal_control.port import GuardedPort

FOES = [[i != j for j in range(4)] for i in range(4)]


def make_plan(**kw: Any) -> GuardPlan:
    """Four stages, one G link each; greens 20 s (min 10, max 40), yellow 3, all-red 2."""
    base: dict[str, Any] = {
        "tls_id": "U",
        "green_states": ("Grrs", "rGrs", "rrGs", "rrrG"),
        "min_green_s": (10.0,) * 4,
        "max_green_s": (40.0,) * 4,
        "green_s": (20.0,) * 4,
        "yellow_s": 3.0,
        "all_red_s": 2.0,
        "right_on_red": frozenset({3}),
    }
    base.update(kw)
    return GuardPlan(**base)


def changes(guard: SignalGuard) -> list[str]:
    return [k for e in guard.events for k in e.interventions]


class Display:
    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []

    def set_signal_state(self, tls_id: str, state: str) -> None:
        self.shown.append((tls_id, state))

    def set_program(self, tls_id: str, program_id: str) -> None:  # pragma: no cover
        raise AssertionError("no hand-back here")

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None:
        raise AssertionError("no hand-back here")  # pragma: no cover


def test_a_fractional_green_rounded_to_whole_seconds_is_not_an_intervention() -> None:
    guard = SignalGuard(make_plan(), start_s=0.0, foes=FOES)
    given = guard.set_timing(1.0, [20.4, 17.5, 33.2, 10.49])
    assert given == [20.0, 18.0, 33.0, 10.0]
    assert guard.events[-1].what == "timing_clamped"  # the log still says what happened
    assert changes(guard) == [] and guard.roundings == 1
    # within the bounds and already whole: nothing at all
    guard.set_timing(2.0, [20.0, 18.0, 33.0, 10.0])
    assert guard.roundings == 1 and changes(guard) == []


def test_a_green_below_its_minimum_or_above_its_maximum_is_an_intervention() -> None:
    guard = SignalGuard(make_plan(), start_s=0.0, foes=FOES)
    assert guard.set_timing(1.0, [5.0, 20.0, 20.0, 20.0]) == [10.0, 20.0, 20.0, 20.0]
    assert changes(guard) == ["min_green_raised"]
    guard.set_timing(2.0, [20.0, 55.0, 3.0, 20.0])  # one command, two kinds of change
    assert changes(guard)[1:] == ["max_green_capped", "min_green_raised"]  # stage order
    # 9.6 s is raised to the minimum by 0.4 s: within rounding, not an intervention
    guard.set_timing(3.0, [9.6, 20.0, 20.0, 20.0])
    assert len(changes(guard)) == 3 and guard.roundings == 1


def test_a_real_min_green_extension_is_an_intervention() -> None:
    guard = SignalGuard(make_plan(), start_s=0.0, foes=FOES)
    assert guard.force_off(4.0) == 10.0  # 6 s short of the minimum: kept to it
    assert guard.events[-1].what == "force_off_deferred"
    assert changes(guard) == ["min_green_extended"]
    assert guard.hold(5.0, 6.0) == 10.0  # a hold that would end the green too soon
    assert guard.events[-1].what == "hold_extended"
    assert changes(guard) == ["min_green_extended"] * 2
    # a force-off 0.3 s before the minimum: rounding's order, not an intervention
    guard2 = SignalGuard(make_plan(), start_s=0.0, foes=FOES)
    assert guard2.force_off(9.7) == 10.0 and changes(guard2) == []


def test_notes_are_not_interventions_and_refusals_are() -> None:
    guard = SignalGuard(make_plan(), start_s=0.0, foes=FOES)
    guard.request_priority(12.0, 0, max_hold_s=60.0)  # already green: a note only
    assert guard.events[-1].what == "priority_requested" and changes(guard) == []
    guard.force_off(15.0)  # the priority holds the green: refused
    guard.hold(16.0, 20.0)
    assert changes(guard) == ["priority_kept", "priority_kept"]
    guard.cancel_priority(30.0)  # had its minimum: ends now, a note
    assert changes(guard) == ["priority_kept", "priority_kept"]
    guard.advance(31.0)  # yellow from 30
    guard.hold(31.0, 50.0)
    guard.force_off(31.5)  # the green already ends: what was asked happens
    assert changes(guard)[2:] == ["yellow_kept"]
    guard.advance(33.5)  # all-red from 33
    guard.hold(33.5, 50.0)
    guard.skip(33.6, 3)
    assert changes(guard)[3:] == ["all_red_kept", "skip_deferred"]
    assert set(changes(guard)) <= set(INTERVENTION_KINDS)


def test_a_priority_ended_by_its_cap_is_an_intervention() -> None:
    guard = SignalGuard(make_plan(), start_s=0.0, foes=FOES)
    guard.request_priority(12.0, 0, max_hold_s=30.0)
    guard.advance(100.0)
    assert [e.what for e in guard.events].count("priority_expired") == 1
    assert changes(guard) == ["priority_capped"]


def test_the_port_counts_by_kind_and_rounding_apart() -> None:
    display = Display()
    port = GuardedPort(display, {"U": make_plan()}, start_s=0.0, foes={"U": FOES})
    port.apply_timing("U", green_s=[20.3, 20.0, 20.0, 20.0])  # rounding
    port.request_priority("U", stage=2)  # a note, and the green kept to its minimum
    counts = port.interventions()
    assert set(counts) == set(INTERVENTION_KINDS)
    assert counts["min_green_extended"] == 1 and sum(counts.values()) == 1
    assert port.roundings() == 1
    assert port.commands == 2
