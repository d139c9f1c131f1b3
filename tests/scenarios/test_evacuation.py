"""The evacuation scenario before SUMO starts: its inputs and its errors on bad input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from scenarios.evacuation import Evacuation
from scenarios.loader import parse_scenario
from twin.errors import ScenarioError


def _prepare(city: City, tmp_path: Path, **extra: Any) -> Evacuation:
    spec = parse_scenario({"name": "evac", "kind": "evacuation", **extra})
    behaviour = Evacuation(spec)
    tmp_path.mkdir(parents=True, exist_ok=True)
    behaviour.prepare(city, seed=3, run_dir=tmp_path)
    return behaviour


def test_population_from_density_and_a_deterministic_route_file(
    district_city: City, tmp_path: Path
) -> None:
    a = _prepare(district_city, tmp_path / "a", households_per_km2=1000, evacuating_share=0.5)
    _prepare(district_city, tmp_path / "b", households_per_km2=1000, evacuating_share=0.5)
    assert len(a.vehicles) == round(a.zone_area_km2 * 1000 * 0.5)
    text = (tmp_path / "a" / "evacuees.rou.xml").read_text()
    assert text == (tmp_path / "b" / "evacuees.rou.xml").read_text()
    departs = [float(x) for x in re.findall(r'depart="([0-9.]+)"', text)]
    assert departs == sorted(departs) and min(departs) >= 300.0  # after the warning
    zone = set(district_city.manifest.zones[0].edges)
    assert all(v.origin in zone and v.route[-1] == a.shelter_edges[v.shelter]
               for v in a.vehicles.values())  # fmt: skip
    assert a.special_vehicles == set(a.vehicles)


def test_staged_waves_leave_in_order_nearest_the_source_first(
    district_city: City, tmp_path: Path
) -> None:
    staged = {"curve": "staged", "waves": 3, "wave_gap_s": 600, "spread_s": 60}
    b = _prepare(district_city, tmp_path, departure=staged)
    by_wave = {k: [v.depart_s for v in b.vehicles.values() if v.wave == k] for k in range(3)}
    assert all(by_wave.values())
    assert max(by_wave[0]) < min(by_wave[1]) and max(by_wave[1]) < min(by_wave[2])


def test_system_optimal_never_plans_more_than_a_shelter_holds(
    district_city: City, tmp_path: Path
) -> None:
    caps = {"shelter_1": 40, "shelter_2": 40, "shelter_3": 40}
    b = _prepare(district_city, tmp_path, assignment="system_optimal", households_per_km2=500,
                 shelter_capacity_veh=caps)  # fmt: skip
    assert len(b.vehicles) > 120  # more evacuees than places
    for sid, cap in caps.items():
        planned = sum(1 for v in b.vehicles.values() if v.shelter == sid)
        assert planned >= cap  # full (plus the unsheltered, sent to their nearest)


def test_contraflow_runs_on_a_variant_and_keeps_evacuees_off_the_reversed_lanes(
    district_city: City, tmp_path: Path
) -> None:
    b = _prepare(district_city, tmp_path, measures={"contraflow": True})
    assert b.contraflow_edges and b.run_city.path != district_city.path
    for e in b.contraflow_edges:
        assert b.run_city.net.edges[e].lanes > district_city.net.edges[e].lanes
    reversed_ = set(b.reversed_edges)
    assert reversed_ and all(b.run_city.net.edges[e].lanes <= 2 for e in reversed_)
    assert not any(reversed_ & set(v.route) for v in b.vehicles.values())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"zone": "flood_9"}, r"field 'zone' = 'flood_9'.*allowed: flood_1"),
        ({"zone_polygon_xy": [[-900, -900], [-800, -900], [-800, -800]]},
         r"field 'zone_polygon_xy' contains no street"),
        ({"shelters": ["shelter_7"]}, r"field 'shelters' names shelter_7.*allowed: shelter_1"),
        ({"measures": {"contraflow": True, "contraflow_edges": ["nope"]}},
         r"field 'measures.contraflow_edges' names 'nope'.*exits of the zone are e\.g\. "),
    ],
)  # fmt: skip
def test_bad_input_is_named(
    district_city: City, tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError, match=message):
        _prepare(district_city, tmp_path, **extra)


def test_zero_capacity_and_a_warning_outside_the_run_are_refused() -> None:
    with pytest.raises(ScenarioError, match=r"shelter_capacity_veh\.shelter_2' = 0"):
        parse_scenario({"name": "e", "kind": "evacuation",
                        "shelter_capacity_veh": {"shelter_2": 0}})  # fmt: skip
    with pytest.raises(ScenarioError, match="warning_s = 4000 is outside the run"):
        parse_scenario({"name": "e", "kind": "evacuation", "warning_s": 4000})
