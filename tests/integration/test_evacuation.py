"""Evacuation end to end in real SUMO: clearance, shelters, contraflow, safe evacuation
signal plans, determinism, a spreading flood."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City, load_city
from tests import mmu
from tests.integration.test_controllers import monitored

pytestmark = pytest.mark.sumo

CAPS = {"shelter_1": 40, "shelter_2": 50, "shelter_3": 30}  # 120 places for ~180 cars


def _spec(**extra: Any) -> dict[str, Any]:
    return {
        "name": "evac-it", "kind": "evacuation", "seed": 4,
        "sim": {"duration_s": 900.0}, "warning_s": 30.0,
        "households_per_km2": 400.0, "evacuating_share": 0.6,
        "departure": {"curve": "simultaneous", "spread_s": 60.0},
        "shelter_capacity_veh": CAPS,
        "measures": {"contraflow": True, "evacuation_signals": True, "close_inbound": True,
                     "signal_update_s": 120.0},
        **extra,
    }  # fmt: skip


def _run(city_path: str, run_dir: str, raw: dict[str, Any], record: bool) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.evacuation import Evacuation
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    spec = parse_scenario(raw)
    extra: tuple[Path, ...] = ()
    record_path = None
    if record:  # SUMO records every signal's state every step, for the monitor
        recorder, record_path = mmu.recorder_for(city, Path(run_dir))
        extra = (recorder,)
    behaviour = Evacuation(spec)
    result = simulate(spec, city, behaviour, seed=spec.seed, run_dir=Path(run_dir),
                      extra_additional=extra)  # fmt: skip
    return {
        "metrics": result.metrics,
        "events": result.events,
        "curve": result.series["evacuation"].to_dict("list"),
        "occupancy": result.series["shelter_occupancy"].to_dict("list"),
        "record": str(record_path) if record_path else None,
        "run_city": str(behaviour.run_city.path),
    }


def _in_process(city: City, run_dir: Path, raw: dict[str, Any], record: bool) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_run, (str(city.path), str(run_dir), raw, record))


@pytest.fixture(scope="module")
def runs(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("evac")
    return {
        "a": _in_process(district_city, tmp / "a", _spec(), record=True),
        "again": _in_process(district_city, tmp / "again", _spec(), record=False),
        "flood": _in_process(
            district_city, tmp / "flood",
            _spec(measures={}, assignment="nearest", shelter_capacity_veh={},
                  hazard={"spreading": True, "onset_s": 60.0, "front_speed_mps": 2.0,
                          "close_after_s": 120.0}),
            record=False,
        ),
    }  # fmt: skip


def test_evacuees_leave_the_zone_and_fill_the_shelters(runs: dict[str, Any]) -> None:
    m = runs["a"]["metrics"]
    n = m["evacuees_veh"]
    assert 150 <= n <= 210
    assert m["zone_left_share"] == 1.0 and m["zone_clearance_s"] > 0
    # more cars than places: every shelter ends full, the rest are counted, not lost
    assert m["shelter_occupancy_veh"] == CAPS
    assert m["shelter_share"] == pytest.approx(sum(CAPS.values()) / n)
    assert m["left_without_shelter_veh"] > 0
    assert m["left_without_shelter_veh"] + sum(CAPS.values()) == m["reached_shelter_veh"]
    assert m["not_reaching_shelter_veh"] == n - m["reached_shelter_veh"]
    assert m["mean_evacuation_time_s"] > m["mean_time_to_leave_zone_s"] > 0
    curve = runs["a"]["curve"]
    for key in ("evacuated_share", "sheltered_share", "arrived_veh"):
        assert all(b >= a for a, b in zip(curve[key], curve[key][1:], strict=False)), key
    occ = runs["a"]["occupancy"]
    assert max(occ["occupancy_veh"]) <= max(CAPS.values())
    kinds = {e["kind"] for e in runs["a"]["events"]}
    assert {"evacuation_warning", "warning_received", "shelter_full", "contraflow_closed",
            "inbound_closed", "evacuation_signals"} <= kinds  # fmt: skip
    # background traffic is measured without the evacuees
    assert m["throughput_veh"] > 0 and m["mean_delay_s"] > 0


def test_evacuation_signal_plans_stay_safe_on_the_contraflow_network(
    runs: dict[str, Any],
) -> None:
    a = runs["a"]
    assert a["metrics"]["contraflow_edges"] and a["metrics"]["evacuation_signals_max"] > 0
    # the monitor judges the network the run drove: the contraflow variant
    monitored(load_city(Path(a["run_city"])), a["record"]).assert_clean(
        min_greens=100, min_yellows=100
    )
    clamped = [e for e in a["events"] if e["kind"] == "guard_timing_clamped"]
    assert all(g >= 0 for e in clamped for g in e["given"])


def test_same_inputs_same_evacuation(runs: dict[str, Any]) -> None:
    keys = ("zone_clearance_s", "shelter_share", "mean_evacuation_time_s", "stuck_veh",
            "left_without_shelter_veh", "mean_delay_s")  # fmt: skip
    assert {k: runs["a"]["metrics"][k] for k in keys} == {
        k: runs["again"]["metrics"][k] for k in keys
    }


def test_a_spreading_flood_slows_then_closes_streets(runs: dict[str, Any]) -> None:
    events = runs["flood"]["events"]
    flooded = [e for e in events if e["kind"] == "street_flooded"]
    closed = [e for e in events if e["kind"].startswith("street_closed")]
    assert flooded and closed
    assert min(e["t_s"] for e in closed) >= min(e["t_s"] for e in flooded) + 120.0
    m = runs["flood"]["metrics"]
    assert m["evacuees_veh"] == m["reached_shelter_veh"] + m["not_reaching_shelter_veh"]
