"""The guarded port: commands reach the guard, states reach the display, hand-overs
to the local program happen only at a safe moment."""

from __future__ import annotations

import pytest

from signal_control.guard import GuardPlan
from signal_control.port import GuardedPort, plan_position


class FakeDisplay:
    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []
        self.programs: list[tuple[str, str]] = []

    def set_signal_state(self, tls_id: str, state: str) -> None:
        self.states.append((tls_id, state))

    def set_program(self, tls_id: str, program_id: str) -> None:
        self.programs.append((tls_id, program_id))


PLAN = GuardPlan(
    tls_id="J",
    green_states=("GGrr", "rrGG"),
    min_green_s=(10.0, 10.0),
    max_green_s=(60.0, 60.0),
    green_s=(30.0, 20.0),
    yellow_s=3.0,
    all_red_s=2.0,
    offset_s=7.0,
)


def test_port_shows_the_fixed_plan_and_dates_commands_with_the_clock() -> None:
    display, now = FakeDisplay(), [0.0]
    port = GuardedPort(display, {"J": PLAN}, start_s=0.0, clock=lambda: now[0])
    assert display.states == [("J", "GGrr")]
    port.advance(30.0)
    assert display.states[-1] == ("J", "yyrr")
    now[0] = 31.0  # a command between two advance() calls is dated by the clock
    port.request_priority("J", stage=0)
    assert port.guard("J").events[-1].t_s == 31.0
    assert port.late_changes == 0


def test_local_mode_hands_over_only_after_the_minimum_green() -> None:
    display, now = FakeDisplay(), [0.0]
    port = GuardedPort(display, {"J": PLAN}, start_s=0.0, clock=lambda: now[0])
    now[0] = 4.0
    port.advance(4.0)
    port.local_mode("J", "plan")
    assert port.next_change_s() == 10.0  # the minimum green ends at 10 s
    port.advance(9.0)
    assert display.programs == []
    now[0] = 10.0
    port.advance(10.0)
    assert display.programs == [("J", "0")]  # mode "plan" is SUMO program "0"
    assert "J" in port.released
    shown = len(display.states)
    port.advance(200.0)
    assert len(display.states) == shown  # the local program drives it now
    with pytest.raises(ValueError, match="handed back"):
        port.force_off("J")
    with pytest.raises(ValueError, match="allowed: plan, actuated"):
        GuardedPort(FakeDisplay(), {"J": PLAN}, start_s=0.0).local_mode("J", "manual")  # type: ignore[arg-type]


def test_plan_position_follows_the_offset_on_whole_seconds() -> None:
    # cycle = 30 + 20 + 2 * 5 = 60 s; position = (t - 7) mod 60
    assert plan_position(PLAN, 7.0) == (0, 0.0)
    assert plan_position(PLAN, 20.5) == (0, 13.0)
    assert plan_position(PLAN, 38.0) == (1, 0.0)  # inside the intergreen: next green
    assert plan_position(PLAN, 50.0) == (1, 8.0)
