"""Evacuation planning without SUMO: areas, departure curves, waves, min-cost flow, greens."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest

from scenarios import evacuation_plan as plan


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
