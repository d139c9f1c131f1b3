"""The center's travel-time estimate: a moving mean of measured edge speeds."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from city_models.graph import fastest_route, route_time
from twin.center.travel_times import MIN_SPEED_MPS, EdgeTravelTimes


def reference_times_s(
    length_m: dict[str, float], samples: list[list[float]], n_window: int
) -> dict[str, float]:
    """Plain Python: each edge's length over the mean of its last ``n_window`` speeds."""
    last = samples[-n_window:]
    out = {}
    for j, (edge, length) in enumerate(length_m.items()):
        mean = sum(row[j] for row in last) / len(last)
        out[edge] = length / max(mean, MIN_SPEED_MPS)
    return out


@given(
    rows=st.lists(st.lists(st.floats(0.0, 25.0), min_size=3, max_size=3), min_size=1, max_size=60),
    window_s=st.sampled_from([5.0, 30.0, 180.0, 182.0]),
)
def test_the_estimate_is_the_mean_of_the_window(rows: list[list[float]], window_s: float) -> None:
    length_m = {"a": 120.0, "b": 250.0, "c": 40.0}
    est = EdgeTravelTimes(length_m, interval_s=5.0, window_s=window_s)
    assert est.n_samples == math.ceil(window_s / 5.0)
    for row in rows:
        est.buffer[:] = row
        est.observe()
    got = est.times_s()
    want = reference_times_s(length_m, rows, est.n_samples)
    assert est.samples == min(len(rows), est.n_samples)
    assert got.keys() == want.keys()
    for edge in want:
        assert got[edge] == pytest.approx(want[edge], rel=1e-9)


def test_one_car_stopped_at_red_does_not_make_the_street_cost_hours() -> None:
    # a 200 m approach at 50 km/h, sampled every 5 s for 3 min: flowing, then at the last
    # sample one car waits at the stop line (its edge's mean speed is 0)
    est = EdgeTravelTimes({"approach": 200.0}, interval_s=5.0)
    for _ in range(est.n_samples - 1):
        est.observe([13.9])
    est.observe([0.0])
    smoothed = est.times_s()["approach"]
    last_step = 200.0 / max(0.0, 1e-3)  # SUMO's estimate: length / last step's speed
    assert smoothed == pytest.approx(200.0 / (13.9 * 35 / 36))
    assert smoothed < 20.0 < last_step
    # stopped for the whole window: long, but finite
    for _ in range(est.n_samples):
        est.observe([0.0])
    assert est.times_s()["approach"] == pytest.approx(200.0 / MIN_SPEED_MPS)


def test_older_samples_leave_the_window() -> None:
    est = EdgeTravelTimes({"e": 100.0}, interval_s=10.0, window_s=30.0)
    assert est.times_s() == {}  # no sample yet: routing takes free-flow times
    for v in (1.0, 1.0, 1.0, 10.0, 10.0, 10.0):
        est.observe([v])
    assert est.samples == 3
    assert est.times_s()["e"] == pytest.approx(10.0)  # the three 1 m/s samples are gone


def toy_graph() -> nx.DiGraph:
    """From ``start`` to ``end``: straight on through ``approach`` (200 m), or round a
    block through ``d1``, ``d2``, ``d3`` (3 x 250 m), all at 13.9 m/s."""
    g = nx.DiGraph(name="toy")
    length = {"start": 100.0, "approach": 200.0, "d1": 250.0, "d2": 250.0, "d3": 250.0}
    length["end"] = 100.0
    for edge, m in length.items():
        g.add_node(edge, free_flow_s=m / 13.9, length_m=m)
    nx.add_path(g, ["start", "approach", "end"])
    nx.add_path(g, ["start", "d1", "d2", "d3", "end"])
    return g


def test_route_guidance_keeps_the_direct_street_when_its_queue_is_only_the_red_light() -> None:
    g = toy_graph()
    length_m = {e: g.nodes[e]["length_m"] for e in g}
    # the approach: a signal's cycle, sampled every 5 s: moving at 8 m/s for most of it,
    # stopped for the 30 s of red at its end (the sample the route is chosen on); the
    # window holds two 120 s cycles
    cycle = [8.0] * 18 + [0.0] * 6
    est = EdgeTravelTimes(length_m, interval_s=5.0, window_s=240.0)
    last: dict[str, float] = {}
    for t in range(est.n_samples):
        speeds = dict.fromkeys(length_m, 13.9) | {"approach": cycle[t % len(cycle)]}
        est.observe([speeds[e] for e in est.edge_ids])
        last = {e: length_m[e] / max(v, 1e-3) for e, v in speeds.items()}
    assert last["approach"] > 1e4  # the last step's estimate: the street is blocked
    detour = fastest_route(g, "start", "end", edge_time_s=last)
    assert detour == ["start", "d1", "d2", "d3", "end"]
    smoothed = est.times_s()
    assert fastest_route(g, "start", "end", edge_time_s=smoothed) == ["start", "approach", "end"]
    # what the street costs on average over its cycles: 200 m at 6 m/s
    assert smoothed["approach"] == pytest.approx(200.0 / (8.0 * 18 / 24))
    assert route_time(g, ["start", "approach", "end"], edge_time_s=smoothed) < route_time(
        g, detour, edge_time_s=smoothed
    )


def test_bad_input_is_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="interval_s = 0 and window_s = 180: both must be > 0"):
        EdgeTravelTimes({"e": 1.0}, interval_s=0.0)
    est = EdgeTravelTimes({"e": 1.0, "f": 2.0}, interval_s=5.0)
    with pytest.raises(ValueError, match="3 speeds for 2 edges"):
        est.observe(np.zeros(3))
