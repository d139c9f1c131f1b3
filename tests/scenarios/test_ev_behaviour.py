"""What an EV does at a red signal (``ev_behaviour``) without SUMO: the spec field, the
SUMO vehicle types and options it brings, the EV driver's approach speed, and the
benchmark's ``ev_behaviour`` block. SUMO's side is ``tests/integration/test_ev_siren.py``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from city_models.demand import VTYPES_XML
from experiments.ev_priority import MODES, summarise
from scenarios.ev_priority import (
    BLUELIGHT_REACTION_DIST_M,
    DEFAULT_EV_BEHAVIOUR,
    EV_BEHAVIOURS,
    EV_RED_APPROACH_DECEL_MPS2,
    EV_RED_SPEED_MPS,
    YIELD_DECEL_MPS2,
    EvPriority,
    EvPrioritySpec,
    ev_vtype,
    red_approach_speed_mps,
    siren_vtypes_xml,
)
from scenarios.loader import parse_scenario
from scenarios.vms_diversion import VmsDiversionSpec
from twin.engine.world import Approaching, NextSignal
from twin.errors import ScenarioError


def _raw(**extra: Any) -> dict[str, Any]:
    return {"name": "ev", "kind": "ev_priority",
            "evs": [{"id": "amb1", "dispatch_s": 60.0, "station": "fire_station_1"}],
            **extra}  # fmt: skip


def test_the_default_is_one_constant_and_obeys_red() -> None:
    spec = parse_scenario(_raw())
    assert isinstance(spec, EvPrioritySpec)
    assert spec.ev_behaviour == DEFAULT_EV_BEHAVIOUR == "obey_red"
    assert EV_BEHAVIOURS == ("obey_red", "siren")
    vms = VmsDiversionSpec(name="v", evs=[{"id": "a", "dispatch_s": 1.0, "station": "s"}])
    assert vms.ev_behaviour == DEFAULT_EV_BEHAVIOUR


@pytest.mark.parametrize("behaviour", ["obey_red", "siren"])
def test_each_behaviour_is_accepted_and_reaches_the_evs(behaviour: str) -> None:
    spec = parse_scenario(_raw(ev_behaviour=behaviour))
    assert isinstance(spec, EvPrioritySpec) and spec.ev_behaviour == behaviour
    vms = VmsDiversionSpec(name="v", ev_behaviour=behaviour,
                           evs=[{"id": "a", "dispatch_s": 1.0, "station": "s"}])  # fmt: skip
    assert vms.ev_spec().ev_behaviour == behaviour  # the EVs of a VMS run drive the same way


@pytest.mark.parametrize("bad", ["lights", "Siren", ""])
def test_an_unknown_behaviour_names_field_value_and_allowed_values(bad: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(_raw(ev_behaviour=bad), source="ev.toml")
    text = str(err.value)
    assert "ev.toml" in text and "'ev_behaviour'" in text and repr(bad) in text
    assert "'obey_red'" in text and "'siren'" in text


def test_siren_types_copy_the_city_types_and_add_the_bluelight_device() -> None:
    base = {v.get("id"): v.attrib for v in ET.fromstring(f"<r>{VTYPES_XML}</r>")}
    root = ET.fromstring(siren_vtypes_xml())
    assert root.tag == "additional"
    types = {v.get("id"): v for v in root.iter("vType")}
    assert set(types) == {"ambulance_siren", "fire_truck_siren"}
    for kind in ("ambulance", "fire_truck"):
        vtype = types[ev_vtype(kind, "siren")]
        attrs = dict(vtype.attrib)
        assert float(attrs.pop("jmDriveRedSpeed")) == pytest.approx(EV_RED_SPEED_MPS, abs=0.01)
        assert attrs.pop("id") == f"{kind}_siren"
        assert attrs == {k: v for k, v in base[kind].items() if k != "id"}  # one source
        params = {p.get("key"): p.get("value") for p in vtype.iter("param")}
        reaction = f"{BLUELIGHT_REACTION_DIST_M:g}"
        assert params == {"has.bluelight.device": "true", "device.bluelight.reactiondist": reaction}
        assert ev_vtype(kind, "obey_red") == kind  # today's types, no device


def test_prepare_adds_types_and_junction_collision_checks_only_with_siren(tmp_path: Path) -> None:
    city = cast(Any, object())  # prepare hands the city through untouched
    obey = EvPriority(cast(EvPrioritySpec, parse_scenario(_raw())))
    prepared = obey.prepare(city, seed=1, run_dir=tmp_path)
    assert (prepared.additional, prepared.routes, prepared.sumo_args) == ((), (), ())
    assert list(tmp_path.iterdir()) == []
    siren = EvPriority(cast(EvPrioritySpec, parse_scenario(_raw(ev_behaviour="siren"))))
    prepared = siren.prepare(city, seed=1, run_dir=tmp_path)
    assert prepared.city is city
    (types,) = prepared.additional
    assert types.parent == tmp_path and "ambulance_siren" in types.read_text(encoding="utf-8")
    args = prepared.sumo_args
    assert args[args.index("--collision.check-junctions") + 1] == "true"
    assert args[args.index("--collision.action") + 1] == "warn"  # counted, run unchanged
    assert Path(args[args.index("--collision-output") + 1]).parent == tmp_path.resolve()


@pytest.mark.parametrize("step_s", [1.0, 0.5, 0.2])
def test_the_approach_to_a_red_line_never_crosses_it_fast(step_s: float) -> None:
    cap = EV_RED_SPEED_MPS
    assert red_approach_speed_mps(0.0, step_s) == cap
    assert red_approach_speed_mps(-3.0, step_s) == cap  # past the line: inside the junction
    prev = cap
    for k in range(1, 4000):
        d = k * 0.05
        v = red_approach_speed_mps(d, step_s)
        assert v >= prev - 1e-12  # farther away, never slower
        if v > cap:  # above the cap it cannot reach the line within the next step
            assert v * step_s < d
        prev = v
    b = EV_RED_APPROACH_DECEL_MPS2
    for v in (cap, 8.0, 13.9, 20.0):  # the distance needed from v, as the doc says
        need = cap * step_s + (v * v - cap * cap) / (2 * b) + (v - cap) * step_s / 2
        assert red_approach_speed_mps(need, step_s) == pytest.approx(v)


def test_following_the_approach_speed_brakes_gently_and_crosses_at_the_cap() -> None:
    """An EV at 20 m/s, 100 m before a red line, driven step by step (SUMO's Euler
    update: move by the new speed) at the approach speed: it never brakes harder than
    its accepted deceleration and crosses the line at the cap."""
    step_s, d, v = 1.0, 100.0, 20.0
    decels = []
    while d > 0:
        new = min(v, red_approach_speed_mps(d, step_s))
        decels.append((v - new) / step_s)
        v, d = new, d - new * step_s
    assert max(decels) == pytest.approx(EV_RED_APPROACH_DECEL_MPS2)  # on the curve: exactly b
    assert v == pytest.approx(EV_RED_SPEED_MPS) and len(decels) < 20


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for seed in (1, 2):
        rows.append({"mode": "baseline", "seed": seed, "ev_behaviour": None,
                     "mean_delay_s": 100.0})  # fmt: skip
        for beh, slow in (("obey_red", 1.0), ("siren", 0.8)):
            for k, mode in enumerate(MODES):
                rows.append({
                    "mode": mode, "seed": seed, "ev_behaviour": beh,
                    "mean_delay_s": 101.0, "ev_s_per_km": slow * (100.0 - 10 * k),
                    "ev_time_to_hospital_s": 300.0, "ev_stops": 2, "ev_stopped_s": 10.0,
                    "ev_preempted_signals": k, "ev_arrived": 2,
                    "cross_street_max_queue_veh": 1.0, "recovery_mean_s": None,
                    "ev_red_passes": 3 if beh == "siren" else None,
                    "collisions": 2, "ev_collisions": 0 if beh == "siren" else None,
                })  # fmt: skip
    return rows


def test_the_benchmark_keeps_its_top_level_and_adds_the_behaviour_block() -> None:
    out = summarise(_rows())
    top = {"ev_s_per_km", "time_to_hospital_s", "other_delay_change_pct", "ev_stops",
           "ev_stopped_s", "preempted_signals", "cross_street_max_queue_veh",
           "recovery_mean_s", "evs_arrived", "seeds", "reduction_pct"}  # fmt: skip
    for mode in MODES:
        assert set(out[mode]) == top  # the keys the top level always had
    assert out["none"]["ev_s_per_km"] == 100.0 and out["center"]["reduction_pct"] == 20.0
    assert out["center"]["other_delay_change_pct"] == 1.0
    assert out["top_level_ev_behaviour"] == DEFAULT_EV_BEHAVIOUR
    block = out["ev_behaviour"]
    assert set(block) == {"obey_red", "siren"} and set(block["siren"]) == set(MODES)
    assert block["obey_red"]["center"]["ev_s_per_km"] == out["center"]["ev_s_per_km"]
    siren = block["siren"]
    assert siren["none"]["ev_s_per_km"] == 80.0 and siren["center"]["reduction_pct"] == 20.0
    assert siren["none"]["reduction_vs_obey_red_none_pct"] == 20.0
    assert (
        siren["none"]["ev_red_passes"] == 3 and block["obey_red"]["none"]["ev_red_passes"] is None
    )
    assert siren["none"]["collisions"] == 4 and siren["none"]["ev_collisions"] == 0  # 2 seeds
    assert block["obey_red"]["none"]["ev_collisions"] is None  # not checked without sirens
    flipped = summarise(_rows(), "siren")  # --ev-behaviour siren
    assert flipped["none"]["ev_s_per_km"] == 80.0 and flipped["top_level_ev_behaviour"] == "siren"
    assert set(flipped["none"]) == top


class _FakeWorld:
    """What the EV's driver asks of SUMO: the next signal, the cars near stop lines,
    speed caps (a stand-in for twin.engine.sumo_session.SumoSession)."""

    def __init__(self) -> None:
        self.ahead: NextSignal | None = None
        self.cars: list[Approaching] = []
        self.lane = 1
        self.caps: dict[str, float | None] = {}

    def next_signal(self, vehicle_id: str) -> NextSignal | None:
        return self.ahead

    def lane_index(self, vehicle_id: str) -> int:
        return self.lane

    def approaching(self, lane_ids: Sequence[str], *, within_m: float) -> list[Approaching]:
        return [c for c in self.cars if c.lane_id in lane_ids and c.distance_m <= within_m]

    def cap_speed(self, vehicle_id: str, speed_mps: float | None) -> None:
        self.caps[vehicle_id] = speed_mps


def _siren_ev() -> tuple[EvPriority, Any]:
    spec = cast(EvPrioritySpec, parse_scenario(_raw(ev_behaviour="siren")))
    scenario = EvPriority(spec)
    scenario._lanes = {("foes", "j1", 0): ("cross_0",), ("own", "j1", 0): ("a_0", "a_1"),
                       ("foes", "j2", 0): (), ("own", "j2", 0): ("b_0",)}  # fmt: skip
    return scenario, scenario.evs["amb1"]


def test_drivers_who_can_stop_make_way_and_the_ev_waits_for_those_who_cannot() -> None:
    scenario, ev = _siren_ev()
    world = _FakeWorld()
    world.cars = [Approaching("near", "cross_0", 3.0, 10.0),  # 17 m to stop: passes first
                  Approaching("far", "cross_0", 40.0, 10.0),  # stops before its line
                  Approaching("amb2", "cross_0", 20.0, 10.0)]  # fmt: skip  # another EV
    scenario.evs["amb2"] = scenario.evs["amb1"]
    assert scenario._make_way(cast(Any, world), ev, ("cross_0",)) is True
    assert ev.held == {"far"} and ev.made_way == 1 and set(world.caps) == {"far"}
    assert world.caps["far"] == pytest.approx(
        red_approach_speed_mps(40.0, 1.0, red_speed_mps=0.0, decel_mps2=YIELD_DECEL_MPS2)
    )
    world.cars = [Approaching("far", "cross_0", 0.1, 0.0)]  # at its line; "near" has passed
    assert scenario._make_way(cast(Any, world), ev, ("cross_0",)) is False
    assert world.caps["far"] == 0.0 and ev.made_way == 1  # still held, counted once
    scenario._let_go(cast(Any, world), ev)
    assert world.caps["far"] is None and ev.held == set()


def test_the_ev_driver_slows_for_red_crosses_slowly_then_drives_on() -> None:
    scenario, ev = _siren_ev()
    world = _FakeWorld()
    w = cast(Any, world)
    world.ahead = NextSignal("j1", 0, 200.0, "G")
    scenario._drive_with_siren(w, ev, "a", 0.0)
    assert ev.speed_cap_mps is None and world.caps == {}  # green, far: free
    world.ahead = NextSignal("j1", 0, 60.0, "r")
    world.cars = [Approaching("c1", "cross_0", 30.0, 8.0)]
    scenario._drive_with_siren(w, ev, "a", 0.0)
    assert world.caps["amb1"] == pytest.approx(red_approach_speed_mps(60.0, 1.0))
    assert ev.held == {"c1"}  # the cross street makes way
    world.ahead = NextSignal("j1", 0, 4.0, "r")
    scenario._drive_with_siren(w, ev, "a", 0.0)
    assert world.caps["amb1"] == EV_RED_SPEED_MPS and ev.crossing == ("cross_0",)
    scenario._drive_with_siren(w, ev, ":j1_0", 0.0)  # inside the junction: slowly
    scenario._drive_with_siren(w, ev, ":j1_0", 0.0)
    assert world.caps["amb1"] == EV_RED_SPEED_MPS and ev.red_passes == 1 and ev.held == {"c1"}
    world.ahead = NextSignal("j2", 0, 300.0, "G")
    scenario._drive_with_siren(w, ev, "b", 0.0)  # behind the junction: free, the others too
    assert world.caps["amb1"] is None and world.caps["c1"] is None and ev.held == set()


def test_from_the_wrong_lane_the_ev_slows_and_its_own_lane_lets_it_in() -> None:
    scenario, ev = _siren_ev()
    world = _FakeWorld()
    world.ahead = NextSignal("j1", 0, 30.0, "G")
    world.lane = 2  # a_2 does not lead where it goes (a_0, a_1 do)
    world.cars = [Approaching("q1", "a_1", 20.0, 0.0), Approaching("x", "cross_0", 20.0, 9.0)]
    scenario._drive_with_siren(cast(Any, world), ev, "a", 0.0)
    assert world.caps["amb1"] == pytest.approx(red_approach_speed_mps(30.0, 1.0))
    assert ev.held == {"q1"}  # green: the cross street has red, only its own lanes wait
    world.lane = 1
    scenario._drive_with_siren(cast(Any, world), ev, "a", 0.0)
    assert world.caps["amb1"] is None and ev.held == set()


def test_nobody_makes_way_while_the_ev_is_still_to_stop_at_the_scene() -> None:
    scenario, ev = _siren_ev()
    ev.call_edge = "a"
    scenario.net = cast(Any, SimpleNamespace(edges={"a": SimpleNamespace(length_m=100.0)}))
    world = _FakeWorld()
    world.ahead = NextSignal("j1", 0, 40.0, "r")
    world.cars = [Approaching("c1", "cross_0", 30.0, 8.0)]
    scenario._drive_with_siren(cast(Any, world), ev, "a", 40.0)  # the scene is at 50 m
    assert ev.held == set() and world.caps["amb1"] == pytest.approx(
        red_approach_speed_mps(40.0, 1.0)
    )
    scenario._drive_with_siren(cast(Any, world), ev, "a", 60.0)  # scene behind it
    assert ev.held == {"c1"}
