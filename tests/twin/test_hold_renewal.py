"""A hold the guard ended at its cap while the EV was still coming is asked for again,
after the cross street's green and at most ``max_renewals`` times (issue 17).

The center (planner, EV center, priority manager) runs against a real guarded port; the
states it showed are read off the display, as a controller would show them. The EV is a
real :class:`TrackedEv` whose GPS track is replaced by a stated position (the tracker's
own behaviour is tested in ``test_live_follow`` and the SUMO runs).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from signal_control.port import GuardedPort, SignalStatus
from signal_control.priority import PriorityManager
from tests.signal_control import test_port as port_tests
from twin.center.ev_center import EvCenter
from twin.center.preemption import (
    RENEW_LAST_S,
    PreemptionPlanner,
    SignalOnRoute,
    TrackedEv,
    _renewable,
)

# the port tests' two-stage signal, with both greens 30 s and stage 1's minimum 12 s
PLAN = dataclasses.replace(
    port_tests.PLAN, min_green_s=(10.0, 12.0), green_s=(30.0, 30.0), offset_s=0.0
)
FOES = port_tests.FOES
STOP_M = 300.0
CAP_S = 20.0
STEP_S = 0.5


class Display:
    """What the controller showed, with when."""

    def __init__(self, now: list[float]) -> None:
        self.now = now
        self.shown: list[tuple[float, str]] = []

    def set_signal_state(self, tls_id: str, state: str) -> None:
        self.shown.append((self.now[0], state))

    def set_program(self, tls_id: str, program_id: str) -> None:  # pragma: no cover
        raise AssertionError("no hand-back here")

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None:
        raise AssertionError("no hand-back here")  # pragma: no cover


class StatedTrack:
    """A GPS track that says where the test puts the EV (always fresh)."""

    def __init__(self) -> None:
        self.s_m = 250.0
        self.speed_mps: float | None = 0.0  # standing in the queue of its approach
        self.last_received_s = 0.0

    def is_stale(self, t_s: float) -> bool:
        return False

    def position_s_m(self, t_s: float) -> float:
        return self.s_m


class Ev(TrackedEv):
    def link_speed_mps(self, net: Any, s_m: float) -> float:
        return 13.9


def run(
    max_renewals: int, *, passes_at_s: float, cross_green: str = "minimum"
) -> tuple[list[dict[str, Any]], Display]:
    """One EV stuck 50 m before ``J`` until ``passes_at_s``; the center's records and
    what the signal showed."""
    now = [0.0]
    display = Display(now)
    port = GuardedPort(display, {"J": PLAN}, start_s=0.0, foes=FOES, clock=lambda: now[0])
    manager = PriorityManager(
        port, recovery="immediate", recovery_cycles=2, max_hold_s=CAP_S,
        schedule=lambda t_s, action, name: None,
    )  # fmt: skip
    records: list[dict[str, Any]] = []
    center = EvCenter(
        planner=PreemptionPlanner(
            horizon_m=2000.0,
            lead_margin_s=15.0,
            renewal_cross_green=cross_green,  # type: ignore[arg-type]
        ),
        manager=manager,
        port=port,
        net=None,  # type: ignore[arg-type]  # the EV's link speed is stated
        queue_veh=lambda lanes: 0.0,
        record=lambda kind, **data: records.append({"kind": kind, **data}),
        max_renewals=max_renewals,
    )
    track = StatedTrack()
    ev = Ev(id="amb1", kind="ambulance", severity=3, tracker=track)  # type: ignore[arg-type]
    # stage 1 serves the EV: the signal starts in the cross street's (stage 0) green
    ev.signals = [SignalOnRoute("J", stage=1, stop_s_m=STOP_M, approach_lanes=("a_0",), index=0)]
    center.add(ev)
    t = 0.0
    while t <= 260.0:
        now[0] = t
        port.advance(t)
        if t >= passes_at_s:
            track.s_m = STOP_M + 20.0
        center.step(ev, t)
        t += STEP_S
    return records, display


def greens(display: Display, state: str) -> list[tuple[float, float]]:
    """(start, length) of every green ``state`` the display showed (the last one open)."""
    out = []
    for (t0, s0), (t1, _s1) in zip(display.shown, display.shown[1:], strict=False):
        if s0 == state:
            out.append((t0, t1 - t0))
    return out


def shown_at(display: Display, t_s: float) -> str:
    return [s for t, s in display.shown if t <= t_s + 1e-9][-1]


def kinds(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == kind]


def test_a_capped_hold_is_renewed_after_the_cross_streets_green() -> None:
    records, display = run(max_renewals=2, passes_at_s=150.0)
    (req,) = kinds(records, "priority_request")
    renewed = kinds(records, "priority_renewed")
    assert [r["renewal"] for r in renewed] == [1, 2]
    # each renewal came while the cross street (stage 0) showed green, after a cap
    for r in renewed:
        assert shown_at(display, r["t_s"]) == "GGrr"
        assert r["t_s"] > req["t_s"] + CAP_S
    # the cross street got its minimum green (12 s is stage 1's; stage 0's is 10 s)
    # every time, never less: the renewal only asks, the guard keeps the minimum
    cross = [g for g in greens(display, "GGrr") if g[0] > req["t_s"]]
    assert cross and all(length >= 10.0 - 1e-9 for _t, length in cross)
    # no third renewal: said once, then the plan runs until the EV passes
    (spent,) = kinds(records, "priority_renewals_spent")
    assert spent["renewals"] == 2 and spent["t_s"] > renewed[-1]["t_s"]
    # the EV's stage was held once per request: three greens, each ending by its cap
    # (counted from the request or renewal) or at its minimum, whichever is later
    asked = [req["t_s"]] + [r["t_s"] for r in renewed]
    held = [g for g in greens(display, "rrGG") if req["t_s"] <= g[0] < spent["t_s"]]
    assert len(held) == 3
    for at, (start, length) in zip(asked, held, strict=True):
        assert start + length == pytest.approx(max(at + CAP_S, start + PLAN.min_green_s[1]))
    # then the plan's own greens (30 s) until the EV passes
    after = [g for g in greens(display, "rrGG") if spent["t_s"] <= g[0] < 150.0]
    assert all(length == pytest.approx(30.0) for _t, length in after)
    (release,) = kinds(records, "priority_release")
    assert release["reason"] == "passed" and release["t_s"] >= 150.0


def test_a_renewal_can_wait_for_the_end_of_the_cross_streets_green() -> None:
    records, display = run(max_renewals=2, passes_at_s=150.0, cross_green="planned")
    (req,) = kinds(records, "priority_request")
    renewed = kinds(records, "priority_renewed")
    assert len(renewed) == 2
    # the cross street's greens after a cap ran their planned 30 s, less at most the
    # last second (when the renewal was asked)
    cross = [g for g in greens(display, "GGrr") if req["t_s"] < g[0] < renewed[-1]["t_s"]]
    assert len(cross) == 2
    assert all(30.0 - RENEW_LAST_S - 1e-9 <= length <= 30.0 for _t, length in cross)
    # with the minimum, the same EV is asked for sooner: the cross greens are shorter
    fast, _ = run(max_renewals=2, passes_at_s=150.0)
    assert [r["t_s"] for r in kinds(fast, "priority_renewed")] < [r["t_s"] for r in renewed]


def test_a_bad_renewal_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="renewal_cross_green 'later'; allowed: minimum, planned"):
        PreemptionPlanner(horizon_m=2000.0, lead_margin_s=15.0, renewal_cross_green="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the time t_s"):
        sig = SignalOnRoute("J", stage=1, stop_s_m=STOP_M, approach_lanes=(), index=0)
        _renewable(status(), sig, cross_green="planned")


def test_no_renewal_when_switched_off_the_plan_runs_after_the_cap() -> None:
    records, display = run(max_renewals=0, passes_at_s=150.0)
    (req,) = kinds(records, "priority_request")
    assert kinds(records, "priority_renewed") == []
    assert len(kinds(records, "priority_renewals_spent")) == 1
    # after the one capped hold the cross street gets its planned 30 s greens again
    cross = [g for g in greens(display, "GGrr") if req["t_s"] + CAP_S < g[0] < 150.0]
    assert cross and all(length == pytest.approx(30.0) for _t, length in cross)


def test_an_ev_that_passes_within_the_cap_renews_nothing() -> None:
    records, _display = run(max_renewals=2, passes_at_s=12.0)
    assert len(kinds(records, "priority_request")) == 1
    assert kinds(records, "priority_renewed") == []
    assert kinds(records, "priority_renewals_spent") == []


def status(**changes: Any) -> SignalStatus:
    base = SignalStatus(
        tls_id="J", interval="green", stage=0, target=0, entered_s=0.0,
        next_change_s=30.0, min_end_s=10.0, priority_stage=None,
        priority_until_s=math.nan, local=False, handing_back=False,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "renew"),
    [
        ({}, True),  # capped; the cross street shows green
        ({"priority_stage": 1, "priority_until_s": 40.0}, False),  # still held
        ({"priority_stage": 0, "priority_until_s": 40.0}, False),  # another EV's priority
        ({"interval": "yellow"}, False),  # the cross street's green has not come yet
        ({"interval": "all_red", "target": 0}, False),
        ({"stage": 1}, False),  # the EV's own stage shows green: nothing to take back
        ({"local": True}, False),  # handed back: not ours to command
        ({"handing_back": True}, False),
    ],
)
def test_when_a_hold_is_renewable(changes: dict[str, Any], renew: bool) -> None:
    sig = SignalOnRoute("J", stage=1, stop_s_m=STOP_M, approach_lanes=(), index=0)
    assert _renewable(status(**changes), sig) is renew
    # "planned": the same, but only in the green's last second (it ends at 30 s)
    for t_s, after in ((28.5, False), (29.0, renew), (29.5, renew)):
        assert _renewable(status(**changes), sig, t_s=t_s, cross_green="planned") is after


def test_max_renewals_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_renewals must be >= 0"):
        EvCenter(
            planner=PreemptionPlanner(horizon_m=2000.0, lead_margin_s=15.0),
            manager=None,  # type: ignore[arg-type]
            port=None,  # type: ignore[arg-type]
            net=None,  # type: ignore[arg-type]
            queue_veh=lambda lanes: 0.0,
            record=lambda kind, **data: None,
            max_renewals=-1,
        )
