"""Evacuation planning without SUMO: areas, departure curves, waves, min-cost flow, greens."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest

from city_models.build import City
from city_models.graph import edge_graph
from scenarios import evacuation_plan as plan
from scenarios.evacuation_spec import EvacuationSpec
from scenarios.loader import parse_scenario
from twin.errors import ScenarioError


def test_polygon_area_and_vehicle_count() -> None:
    square = [(0.0, 0.0), (1000.0, 0.0), (1000.0, 1000.0), (0.0, 1000.0)]
    assert plan.polygon_area_km2(square) == pytest.approx(1.0)
    assert plan.polygon_area_km2(list(reversed(square))) == pytest.approx(1.0)
    n = plan.evacuee_vehicles(0.5, households_per_km2=2000, vehicles_per_household=1.5, share=0.6)
    assert n == 900


def test_simultaneous_and_staged_departures() -> None:
    rng = np.random.default_rng(1)
    simul = plan.departure_delays_s("simultaneous", 500, rng, spread_s=120.0)
    assert simul.min() >= 0.0 and simul.max() <= 120.0
    waves = np.repeat([0, 1, 2], 100)
    staged = plan.departure_delays_s(
        "staged", 300, np.random.default_rng(1), waves=waves, spread_s=60.0, wave_gap_s=600.0
    )
    for k in range(3):
        sel = staged[waves == k]
        assert sel.min() >= 600.0 * k and sel.max() <= 600.0 * k + 60.0
    with pytest.raises(ValueError, match="wave"):
        plan.departure_delays_s("staged", 3, rng)


def test_response_curves_follow_their_parameters() -> None:
    ray = plan.departure_delays_s("rayleigh", 20000, np.random.default_rng(2), rayleigh_scale_s=900)
    assert ray.mean() == pytest.approx(900 * math.sqrt(math.pi / 2), rel=0.02)
    logn = plan.departure_delays_s(
        "lognormal", 20000, np.random.default_rng(2), lognormal_median_s=1200, lognormal_sigma=0.6
    )
    assert np.median(logn) == pytest.approx(1200, rel=0.03)
    again = plan.departure_delays_s(
        "rayleigh", 20000, np.random.default_rng(2), rayleigh_scale_s=900
    )
    np.testing.assert_array_equal(ray, again)


def _line_graph() -> nx.DiGraph:
    """o (3 lanes) -> a -> s1 (fast, 1 lane) and o -> b -> s2 (slow, 1 lane)."""
    g = nx.DiGraph()
    for e, t in {"o": 10.0, "a": 10.0, "s1": 10.0, "b": 50.0, "s2": 10.0}.items():
        g.add_node(e, free_flow_s=t, lanes=3 if e == "o" else 1)
    g.add_edges_from([("o", "a"), ("a", "s1"), ("o", "b"), ("b", "s2")], signalized=False)
    return g


def test_system_optimal_spills_by_capacity_and_reports_the_unsheltered() -> None:
    g = _line_graph()
    shelters = {"S1": "s1", "S2": "s2"}
    out = plan.system_optimal_routes(g, {"o": 10}, shelters, {"S1": 6, "S2": 3}, horizon_s=3600)
    trips = out["o"]
    assert len(trips) == 10
    by = {sid: sum(1 for s, _r in trips if s == sid) for sid in ("S1", "S2", None)}
    assert by == {"S1": 6, "S2": 3, None: 1}  # the nearest fills first, one has no place
    for sid, route in trips:
        if sid is not None:
            assert route[0] == "o" and route[-1] == shelters[sid]
            assert all(g.has_edge(a, b) for a, b in itertools.pairwise(route))


def test_system_optimal_respects_street_capacity() -> None:
    g = _line_graph()
    # 1 lane x 1800 veh/h x 20 s = 10 vehicles through "a" (and "b") in the horizon:
    # the fast road takes 10, the slow one 10, the rest cannot get out in time
    out = plan.system_optimal_routes(g, {"o": 30}, {"S1": "s1", "S2": "s2"},
                                     {"S1": 100, "S2": 100}, horizon_s=20.0)  # fmt: skip
    by = {sid: sum(1 for s, _r in out["o"] if s == sid) for sid in ("S1", "S2", None)}
    assert by == {"S1": 10, "S2": 10, None: 10}


def test_evacuation_greens_weight_by_flow_within_bounds() -> None:
    greens = plan.evacuation_greens(
        [40.0, 20.0, 40.0, 20.0],
        [15.0, 7.0, 15.0, 7.0],
        [60.0, 40.0, 60.0, 40.0],
        np.array([90.0, 0.0, 10.0, 0.0]),
        cycle_stretch=1.25,
    )
    assert greens[1] == 7.0 and greens[3] == 7.0  # no evacuees: minimum green
    assert greens[0] == 60.0  # capped at the maximum
    assert greens[2] > 15.0
    same = plan.evacuation_greens([30.0, 30.0], [10.0, 10.0], [60.0, 60.0], np.zeros(2))
    assert same == [30.0, 30.0]  # no evacuees at all: the plan


# --------------------------------------------------------------------- the whole plan


def _spec(**over: object) -> EvacuationSpec:
    raw: dict[str, object] = {
        "name": "plan", "kind": "evacuation", "warning_s": 300,
        "departure": {"curve": "staged", "waves": 3}, "sim": {"duration_s": 3000},
    }  # fmt: skip
    raw.update(over)
    spec = parse_scenario(raw)
    assert isinstance(spec, EvacuationSpec)
    return spec


def test_plan_evacuation_without_sumo(district_city: City) -> None:
    """The whole plan from the city and the spec: no SUMO run, same rng => same plan."""
    spec = _spec()
    p = plan.plan_evacuation(district_city, spec, np.random.default_rng(5))
    again = plan.plan_evacuation(district_city, spec, np.random.default_rng(5))
    other = plan.plan_evacuation(district_city, spec, np.random.default_rng(6))
    n = plan.evacuee_vehicles(p.zone_area_km2, households_per_km2=spec.households_per_km2,
                              vehicles_per_household=spec.vehicles_per_household,
                              share=spec.evacuating_share)  # fmt: skip
    assert len(p.evacuees) == n > 100
    assert [e.id for e in p.evacuees] == [f"evac_{k}" for k in range(n)]
    assert p.run_city is district_city and p.contraflow_edges == []
    assert {e.wave for e in p.evacuees} == {0, 1, 2}
    graph = edge_graph(district_city.net)
    for e in p.evacuees:
        assert e.origin in p.zone_edges and e.depart_s >= spec.warning_s
        assert e.route[0] == e.origin and e.route[-1] == p.shelter_edges[e.shelter]
        assert all(b in graph.successors(a) for a, b in itertools.pairwise(e.route))
        assert e.order[0] == e.shelter  # nearest first (capacity-aware assignment)
    assert [(e.origin, e.depart_s, e.route) for e in p.evacuees] == [
        (e.origin, e.depart_s, e.route) for e in again.evacuees
    ]
    assert [e.depart_s for e in p.evacuees] != [e.depart_s for e in other.evacuees]


def test_plan_evacuation_names_the_bad_field(district_city: City) -> None:
    with pytest.raises(ScenarioError, match="'zone' = 'atlantis'"):
        plan.plan_evacuation(district_city, _spec(zone="atlantis"), np.random.default_rng(1))
    with pytest.raises(ScenarioError, match="'shelters' names nowhere"):
        plan.plan_evacuation(district_city, _spec(shelters=["nowhere"]), np.random.default_rng(1))
    far = [[1e6, 1e6], [1e6 + 10, 1e6], [1e6, 1e6 + 10]]
    with pytest.raises(ScenarioError, match="'zone_polygon_xy' contains no street"):
        plan.plan_evacuation(district_city, _spec(zone_polygon_xy=far), np.random.default_rng(1))


def test_system_optimal_plan_respects_shelter_capacity(district_city: City) -> None:
    spec = _spec(assignment="system_optimal")
    p = plan.plan_evacuation(district_city, spec, np.random.default_rng(2))
    placed: dict[str, int] = {}
    for e in p.evacuees:
        placed[e.shelter] = placed.get(e.shelter, 0) + 1
    assert len(p.evacuees) <= sum(p.capacity_veh.values())  # room for everyone here
    assert all(placed.get(s, 0) <= cap for s, cap in p.capacity_veh.items())
    # the nearest-shelter plan would overfill one of them: the flow plan really re-routes
    nearest: dict[str, int] = {}
    for e in plan.plan_evacuation(district_city, _spec(), np.random.default_rng(2)).evacuees:
        nearest[e.order[0]] = nearest.get(e.order[0], 0) + 1
    assert any(nearest.get(s, 0) > cap for s, cap in p.capacity_veh.items())
