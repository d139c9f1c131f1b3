"""Interactive sessions with real SUMO: an outside controller drives the twin through the
guard, sees what the guard did, injects events; a session is its own process.

The HTTP layer over these is tested in tests/api; here the session manager is driven
directly (same worker processes, same protocol).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from scenarios.loader import parse_scenario
from tests import mmu, spawned
from twin.app.compose import simulate
from twin.app.sessions import SessionError, SessionGoneError, SessionManager
from twin.client import max_pressure_commands, policy_from_layout
from twin.config import Settings

pytestmark = pytest.mark.sumo

DURATION_S = 600.0


def _raw(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "session", "kind": "baseline", "seed": 4,
        "demand": {"scale": 1.2}, "sim": {"duration_s": DURATION_S},
    }  # fmt: skip
    raw.update(over)
    return raw


@pytest.fixture
def manager(settings: Settings) -> Any:
    m = SessionManager(settings, idle_timeout_s=300.0)
    yield m
    m.shutdown()


def test_commands_go_through_the_guard_and_say_what_it_did(
    manager: SessionManager, district_city: City, tmp_path: Path
) -> None:
    recorder, record = mmu.recorder_for(district_city, tmp_path / "rec")
    sid, layout = manager.create(_raw(), district_city, seed=4, owner="lab",
                                 extra_additional=[recorder])  # fmt: skip
    assert len(layout["signals"]) == len(district_city.manifest.signals)
    assert layout["control_interval_s"] == 5.0 and layout["edge_lanes"]
    obs = manager.call(sid, "advance", owner="lab", seconds=30.0)
    assert obs["t_s"] == 30.0 and set(obs["signals"]) == {s["id"] for s in layout["signals"]}
    assert all(v >= 0 for v in obs["lane_halting_veh"].values())
    tls = layout["signals"][0]["id"]
    n_stages = sum(1 for p in layout["signals"][0]["phases"] if p["kind"] == "green")
    # a green of 1 s is clamped to the stage's minimum: the guard says so
    ans = manager.call(sid, "command", owner="lab", verb="apply_timing", signal=tls,
                       args={"green_s": [1.0] * n_stages})  # fmt: skip
    assert ans["accepted"] is True
    assert [g["what"] for g in ans["guard"]] == ["timing_clamped"]
    mins = [p["min_green_s"] for p in layout["signals"][0]["phases"] if p["kind"] == "green"]
    assert ans["result"] == pytest.approx([max(m, 1.0) for m in mins], abs=0.5)
    # no stage 99: refused, with the guard's reason, nothing changed
    ans = manager.call(sid, "command", owner="lab", verb="skip", signal=tls, args={"stage": 99})
    assert ans["accepted"] is False and "no stage 99" in ans["reason"]
    # a wrong number of greens: refused
    ans = manager.call(sid, "command", owner="lab", verb="apply_timing", signal=tls,
                       args={"green_s": [30.0]})  # fmt: skip
    assert ans["accepted"] is False and "greens given" in ans["reason"]
    # force-off during an intergreen or the minimum: ignored or deferred, never cut
    results = manager.call(sid, "commands", owner="lab", commands=[
        {"verb": "force_off", "signal": s["id"]} for s in layout["signals"]
    ])  # fmt: skip
    whats = {g["what"] for r in results for g in r["guard"]}
    assert results and all(r["accepted"] for r in results)
    assert whats & {"force_off_deferred", "force_off_ignored"}
    # bad requests are errors that name what is wrong
    with pytest.raises(SessionError, match="unknown command"):
        manager.call(sid, "command", owner="lab", verb="explode", signal=tls, args={})
    with pytest.raises(SessionError, match="not one this session controls"):
        manager.call(sid, "command", owner="lab", verb="force_off", signal="nope", args={})
    with pytest.raises(SessionError, match="seconds"):
        manager.call(sid, "advance", owner="lab", seconds=-5.0)
    # another tenant's session does not exist for it
    with pytest.raises(SessionError, match="no session"):
        manager.call(sid, "observe", owner="someone-else")
    # random-ish commands for a while, then SUMO's own record must be clean
    for k in range(40):
        obs = manager.call(sid, "advance", owner="lab", seconds=5.0)
        batch = []
        for j, s in enumerate(layout["signals"]):
            stages = sum(1 for p in s["phases"] if p["kind"] == "green")
            if (j + k) % 3 == 0:
                batch.append({"verb": "skip", "signal": s["id"], "args": {"stage": k % stages}})
                batch.append({"verb": "force_off", "signal": s["id"]})
            elif (j + k) % 3 == 1:
                batch.append({"verb": "hold", "signal": s["id"],
                              "args": {"until_s": obs["t_s"] + 60.0}})  # fmt: skip
        manager.call(sid, "commands", owner="lab", commands=batch)
    out = manager.close(sid, owner="lab")
    assert out["metrics"]["throughput_veh"] > 0 and out["vehicle_s"] > 0
    report = mmu.check_city_record(record, district_city)
    report.assert_clean(min_greens=200, min_yellows=500)
    with pytest.raises(SessionError, match="no session"):
        manager.call(sid, "observe", owner="lab")


def test_events_incident_and_unsupported_kinds(
    manager: SessionManager, district_city: City
) -> None:
    sid, layout = manager.create(_raw(), district_city, seed=4)
    edge = next(iter(layout["edge_lanes"]))
    ans = manager.call(sid, "inject", event={"kind": "incident", "edge": edge,
                                             "closed_lanes": "all", "duration_s": 120})  # fmt: skip
    assert ans["accepted"] and ans["t_s"] == 0.0
    with pytest.raises(SessionError, match="not a street"):
        manager.call(sid, "inject", event={"kind": "incident", "edge": "nowhere"})
    with pytest.raises(SessionError, match="needs a scenario with EV priority"):
        manager.call(sid, "inject", event={"kind": "ev_dispatch", "id": "a",
                                           "station": "fire_station_1"})  # fmt: skip
    with pytest.raises(SessionError, match="unknown event kind"):
        manager.call(sid, "inject", event={"kind": "meteor"})
    manager.call(sid, "advance", seconds=60.0)
    manager.close(sid)


def test_ev_dispatch_into_an_ev_priority_session(
    manager: SessionManager, district_city: City
) -> None:
    raw = {"name": "ev", "kind": "ev_priority", "seed": 3, "sim": {"duration_s": 900.0},
           "evs": [{"id": "amb1", "dispatch_s": 800.0, "station": "fire_station_1"}]}  # fmt: skip
    sid, _layout = manager.create(raw, district_city, seed=3)
    ans = manager.call(sid, "inject", event={"kind": "ev_dispatch", "id": "amb9",
                                             "station": "fire_station_2"})  # fmt: skip
    assert ans["accepted"] and ans["id"] == "amb9"
    with pytest.raises(SessionError, match="already in the run"):
        manager.call(sid, "inject", event={"kind": "ev_dispatch", "id": "amb9",
                                           "station": "fire_station_2"})  # fmt: skip
    obs = manager.call(sid, "advance", seconds=300.0)
    held = [t for t, s in obs["signals"].items() if s["priority_stage"] is not None]
    out = manager.close(sid)
    assert out["metrics"]["ev_preempted_signals"] >= 1 or held


def test_a_dead_worker_and_the_idle_timeout(settings: Settings, district_city: City) -> None:
    manager = SessionManager(settings, idle_timeout_s=4.0)
    try:
        sid, _ = manager.create(_raw(), district_city, seed=4)
        proc = manager._sessions[sid].proc
        os.kill(proc.pid, signal.SIGKILL)  # SUMO (or the worker) taken down
        with pytest.raises(SessionGoneError, match="died"):
            manager.call(sid, "advance", seconds=5.0)
        other, _ = manager.create(_raw(), district_city, seed=4)
        assert manager.count() == 1
        deadline = time.monotonic() + 30
        while manager.count() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert manager.count() == 0  # the idle one was closed by the reaper
        with pytest.raises(SessionError, match="no session"):
            manager.call(other, "observe")
    finally:
        manager.shutdown()


def test_a_session_may_not_run_past_its_cap(settings: Settings, district_city: City) -> None:
    manager = SessionManager(settings, max_sim_s=20.0)
    try:
        sid, _ = manager.create(_raw(), district_city, seed=4)
        manager.call(sid, "advance", seconds=15.0)
        with pytest.raises(SessionError, match="may run 20 s in all"):
            manager.call(sid, "advance", seconds=10.0)
        manager.close(sid)
    finally:
        manager.shutdown()


def _in_process_max_pressure(city_path: str, run_dir: str) -> dict[str, Any]:
    from city_models.build import load_city

    city = load_city(Path(city_path))
    spec = parse_scenario(_raw(control={"default": "max_pressure"}))
    return simulate(spec, city, seed=4, run_dir=Path(run_dir)).metrics


@pytest.mark.slow
def test_remote_max_pressure_reproduces_the_in_process_controller(
    manager: SessionManager, district_city: City, tmp_path: Path
) -> None:
    """The same policy from outside, tick by tick through the session, gives the same
    delay as the twin's own max-pressure controller on the same seed (within 1 %)."""
    inside = spawned.in_process(_in_process_max_pressure, str(district_city.path), str(tmp_path))
    sid, layout = manager.create(_raw(), district_city, seed=4)
    policy = policy_from_layout(layout)
    obs = manager.call(sid, "observe")
    switches = 0
    while not obs["done"]:
        obs = manager.call(sid, "advance", seconds=layout["control_interval_s"])
        batch = max_pressure_commands(policy, obs)
        switches += sum(1 for c in batch if c["verb"] == "skip")
        answers = manager.call(sid, "commands", commands=batch)
        assert all(a["accepted"] for a in answers)
    outside = manager.close(sid)["metrics"]
    assert switches == inside["max_pressure_switches"] > 0
    assert outside["mean_delay_s"] == pytest.approx(inside["mean_delay_s"], rel=0.01)
    assert outside["throughput_veh"] == inside["throughput_veh"]
