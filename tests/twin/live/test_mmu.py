"""The emulator's own conflict monitor: each rule refuses what breaks it, and it agrees
with the test suite's independent record checker (tests/mmu.py) on a whole plan."""

from __future__ import annotations

import pytest

from city_models.build import City
from tests import mmu as record_checker
from twin.app.live.emulator import EmulatedController, default_stage_phases
from twin.app.live.mmu import MonitorRules, SignalMonitor, judge_timeline

TLS = "n7_7"


def _greens(city: City, tls: str) -> list[str]:
    sig = next(s for s in city.manifest.signals if s.id == tls)
    return [p.state for p in sig.phases if p.kind == "green"]


def _yellow_of(state: str, nxt: str) -> str:
    return "".join(
        "y" if a in "Gg" and b not in "Gg" else a for a, b in zip(state, nxt, strict=True)
    )


def _red_of(state: str) -> str:
    return "".join("r" if ch in "Ggy" else ch for ch in state)


def test_a_conflicting_green_is_refused(
    district_city: City, rules: dict[str, MonitorRules]
) -> None:
    r = rules[TLS]
    green = _greens(district_city, TLS)[0]
    i = green.index("G")
    j = next(iter(r.conflicts[i]))
    bad = "".join("G" if k in (i, j) else ("r" if ch in "Gg" else ch) for k, ch in enumerate(green))
    mon = SignalMonitor(r, _red_of(green), 0.0)
    found = mon.propose(10.0, bad)
    assert [f.rule for f in found] == ["conflict"]
    assert mon.state == _red_of(green)  # refused: nothing changed


def test_a_green_cut_short_is_refused_then_allowed(
    district_city: City, rules: dict[str, MonitorRules]
) -> None:
    r = rules[TLS]
    g0, g1 = _greens(district_city, TLS)[:2]
    minimum = r.stage_min_green_s[g0]
    mon = SignalMonitor(r, g0, 0.0)
    assert [f.rule for f in mon.propose(minimum - 0.5, _yellow_of(g0, g1))] == ["short_green"]
    assert mon.propose(minimum, _yellow_of(g0, g1)) == []


def test_yellow_and_clearance_rules(district_city: City, rules: dict[str, MonitorRules]) -> None:
    r = rules[TLS]
    g0, g1 = _greens(district_city, TLS)[:2]
    mon = SignalMonitor(r, g0, 0.0)
    assert {f.rule for f in mon.check(100.0, _red_of(g0))} == {"no_yellow"}
    assert mon.propose(100.0, _yellow_of(g0, g1)) == []
    assert "short_yellow" in [f.rule for f in mon.check(101.0, _red_of(g0))]
    assert "yellow_to_green" in [f.rule for f in mon.check(104.0, g0)]
    assert mon.propose(100.0 + r.yellow_min_s, _red_of(g0)) == []
    # the next stage's green too soon after the yellow (all-red promise: 2 s)
    assert "clearance" in [f.rule for f in mon.check(104.0, g1)]
    assert mon.propose(103.0 + r.clearance_min_s, g1) == []


def test_the_controllers_own_plan_passes_both_monitors(
    district_city: City, rules: dict[str, MonitorRules]
) -> None:
    """Two hours of every signal's own plan: the emulator's monitor refuses nothing, and
    the independent record checker of the test suite finds nothing either."""
    independent = record_checker.city_rules(district_city)
    for sig in district_city.manifest.signals:
        ctl = EmulatedController(
            sig, stage_phases=default_stage_phases(sig), rules=rules[sig.id], now_s=0.0
        )
        ctl.tick(7200.0)
        assert ctl.monitor.refusals == []
        timeline = [(h.t_s, h.state) for h in ctl.history]
        assert judge_timeline(rules[sig.id], timeline) == []
        # the record checker wants one state per step: sample every 0.5 s
        step, states, k = 0.5, [], 0
        t0 = timeline[0][0] + 0.5
        for i in range(int((7200.0 - t0) / step)):
            t = t0 + i * step
            while k + 1 < len(timeline) and timeline[k + 1][0] <= t + 1e-9:
                k += 1
            states.append((t, timeline[k][1]))
        # the first interval began before the samples: credit it with the time it had run
        credit = (timeline[0][1], t0 - timeline[0][0])
        rep = record_checker.check_timeline(independent[sig.id], states, step_s=step, credit=credit)
        assert rep.violations == [], rep.summary()
        assert rep.counts.greens > 100


@pytest.mark.parametrize("rule", ["short_green", "clearance"])
def test_the_monitor_refuses_what_the_controllers_own_timing_would_allow(
    district_city: City, rules: dict[str, MonitorRules], rule: str
) -> None:
    """Timing writes within NTCIP's ranges (a 1 s minimum green, a 0.5 s red clearance)
    make the controller's own logic try to cut an interval; its monitor refuses, and
    what is shown keeps the city's minimum."""
    from twin.app.live import ntcip

    sig = next(s for s in district_city.manifest.signals if s.id == TLS)
    ctl = EmulatedController(
        sig, stage_phases=default_stage_phases(sig), rules=rules[TLS], now_s=0.0
    )
    # wait for the start of a green, then write the short timing and force it off
    t = 0.0
    while not (ctl.interval == "green" and ctl.entered_s > 0):
        t += 0.5
        ctl.tick(t)
    stage, start = ctl.stage, ctl.entered_s
    phase = stage + 1
    if rule == "short_green":
        writes = [
            (ntcip.phase_timing_oid("phaseMinimumGreen", phase), 1),
            (ntcip.control_oid("force_off", 1), 1 << stage),
        ]
    else:
        writes = [
            (ntcip.phase_timing_oid("phaseRedClear", phase), 5),
            (ntcip.control_oid("force_off", 1), 1 << stage),
        ]
    for oid, value in writes:
        assert ctl.check_set(oid, value) is None  # the controller accepts them
    ctl.apply_set(start + 2.0, writes)
    for k in range(200):
        ctl.tick(start + 2.0 + k * 0.25)
    assert rule in {r.rule for r in ctl.monitor.refusals}
    shown = [(h.t_s, h.state) for h in ctl.history]
    assert judge_timeline(rules[TLS], shown) == []  # nothing unsafe was ever shown
    green_end = next(h.t_s for h in ctl.history if h.t_s > start and h.interval == "yellow")
    assert green_end - start >= rules[TLS].stage_min_green_s[ctl.green_states[stage]] - 1e-6
