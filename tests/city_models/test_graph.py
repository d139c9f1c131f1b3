"""Tests of city_models.graph: the street and edge graphs, routing, hospital reachability."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import networkx as nx
import pytest

from city_models.build import City
from city_models.graph import (
    Reachability,
    approach_greens,
    city_graph,
    edge_graph,
    fastest_route,
    free_flow_s,
    nearest_poi_by_time,
    pass_through_nodes,
    reachability,
    route_time,
    travel_times_s,
    uniform_arrival_delay_s,
)
from city_models.manifest import PoiSpec
from city_models.net import EdgeInfo, NetInfo
from twin.errors import CityError


@pytest.fixture(scope="module")
def moves(district_city: City) -> nx.DiGraph:
    return edge_graph(district_city)


@pytest.fixture(scope="module")
def reach_pair(district_city: City) -> tuple[Reachability, Reachability]:
    return (
        reachability(district_city, priority=False),
        reachability(district_city, priority=True),
    )


def _pois(city: City, role: str) -> list[PoiSpec]:
    return [p for p in city.manifest.pois if p.role == role]


def _toy_net() -> NetInfo:
    """A street A - B - P - C with a dead end at A and C; P is a geometry-only node
    (B-P continues as P-C, like a pocket), C-B runs back directly. D-E is cut off."""
    xy = {"A": (0.0, 0.0), "B": (100.0, 0.0), "P": (160.0, 0.0), "C": (200.0, 0.0)}
    xy |= {"D": (0.0, 50.0), "E": (100.0, 50.0)}

    def edge(a: str, b: str, speed_mps: float = 10.0) -> EdgeInfo:
        length = math.dist(xy[a], xy[b])
        return EdgeInfo(f"{a}-{b}", a, b, length, speed_mps, 1, "toy", (xy[a], xy[b]))

    edges = [edge("A", "B"), edge("B", "A"), edge("B", "P"), edge("P", "C", 5.0)]
    edges += [edge("C", "B"), edge("D", "E")]
    return NetInfo(
        path=Path("toy.net.xml"),
        edges={e.id: e for e in edges},
        nodes_xy=xy,
        node_types=dict.fromkeys(xy, "priority"),
        tls={},
        lane_lengths_m={},
        bbox_xy=(0.0, 0.0, 200.0, 50.0),
    )


# --------------------------------------------------------------------------- graphs


def test_city_graph_one_edge_per_sumo_edge(district_city: City) -> None:
    net = district_city.net
    graph = city_graph(district_city)
    assert set(graph.nodes) == set(net.nodes_xy)
    assert graph.number_of_edges() == len(net.edges)
    for u, v, key, data in graph.edges(keys=True, data=True):
        e = net.edges[key]
        assert (u, v) == (e.from_node, e.to_node) and data["edge_id"] == key
        assert data["free_flow_s"] == pytest.approx(e.length_m / e.speed_mps)
    signalized = {n for n, d in graph.nodes(data=True) if d["signalized"]}
    assert signalized == {t.node for t in net.tls.values()}
    node, attrs = next(iter(graph.nodes(data=True)))
    assert attrs["x"] == net.nodes_xy[node][0]
    assert abs(attrs["lat"] - district_city.manifest.origin_lat) < 0.1
    assert "lon" not in city_graph(net).nodes[node]  # a bare network has no origin


def test_free_flow_time_is_length_over_speed(district_city: City, moves: nx.DiGraph) -> None:
    edge = next(e for e in district_city.net.edges.values() if not e.id.endswith("_pocket"))
    expected = edge.length_m / edge.speed_mps
    assert free_flow_s(district_city.net, edge.id) == pytest.approx(expected)
    assert moves.nodes[edge.id]["free_flow_s"] == pytest.approx(expected)
    assert route_time(moves, [edge.id]) == pytest.approx(expected)
    assert route_time(moves, [edge.id], edge_time_s={edge.id: 42.0}) == 42.0


def test_edge_graph_has_every_tls_move(district_city: City, moves: nx.DiGraph) -> None:
    assert set(moves.nodes) == set(district_city.net.edges)
    for tls in district_city.net.tls.values():
        for link in tls.links:
            assert moves.has_edge(link.from_edge, link.to_edge), link
            assert moves.edges[link.from_edge, link.to_edge]["signalized"]


def test_edge_graph_forbids_u_turns_in_district(district_city: City, moves: nx.DiGraph) -> None:
    net = district_city.net
    out_degree = dict.fromkeys(net.nodes_xy, 0)
    for e in net.edges.values():
        out_degree[e.from_node] += 1
    for a, b, data in moves.edges(data=True):
        assert net.edges[a].to_node == net.edges[b].from_node == data["node"]
        u_turn = net.edges[b].to_node == net.edges[a].from_node
        assert not u_turn or out_degree[data["node"]] == 1, (a, b)
        # a pocket's street turning back: X_pocket never leads into the reverse of X
        assert b.removesuffix("_pocket") != "-".join(reversed(a.split("-"))), (a, b)
    # every street continues into its pocket and only there
    for e in net.edges:
        if e.endswith("_pocket"):
            assert list(moves.successors(e.removesuffix("_pocket"))) == [e]


def test_edge_graph_keeps_dead_end_turnarounds() -> None:
    net = _toy_net()
    assert pass_through_nodes(net) == {"P"}
    moves = edge_graph(net)
    assert moves.has_edge("P-C", "C-B")  # turnaround at dead end C
    assert moves.has_edge("B-A", "A-B")  # and at dead end A
    assert not moves.has_edge("A-B", "B-A")  # U-turn at B
    assert not moves.has_edge("C-B", "B-P")  # U-turn at B onto the street through P
    assert moves.has_edge("A-B", "B-P") and moves.has_edge("C-B", "B-A")
    route = fastest_route(moves, "A-B", "B-A")
    assert route == ["A-B", "B-P", "P-C", "C-B", "B-A"]
    assert route_time(moves, route) == pytest.approx(10 + 6 + 8 + 10 + 10)
    assert route_time(city_graph(net), route) == pytest.approx(44.0)
    with pytest.raises(CityError, match="cannot be reached"):
        fastest_route(moves, "A-B", "D-E")


# --------------------------------------------------------------------------- routing


def test_fastest_route_between_pois(district_city: City, moves: nx.DiGraph) -> None:
    start = _pois(district_city, "fire_station")[0].edge
    goal = _pois(district_city, "hospital")[0].edge
    route = fastest_route(moves, start, goal)
    assert route[0] == start and route[-1] == goal
    assert all(moves.has_edge(a, b) for a, b in itertools.pairwise(route))
    total = route_time(moves, route)
    assert total == pytest.approx(sum(free_flow_s(district_city.net, e) for e in route))
    # independent: Dijkstra on the arcs' time_s (time of the from edge), plus the last edge
    assert total == pytest.approx(
        nx.dijkstra_path_length(moves, start, goal, weight="time_s")
        + free_flow_s(district_city.net, goal)
    )
    # a slow edge on the route: the new route is no slower than the old one under it
    slow = {route[len(route) // 2]: 1e4}
    detour = fastest_route(moves, start, goal, edge_time_s=slow)
    assert route_time(moves, detour, edge_time_s=slow) <= route_time(moves, route, edge_time_s=slow)
    assert route_time(moves, detour, edge_time_s=slow) < 1e4


def test_nearest_hospital_by_time(district_city: City, moves: nx.DiGraph) -> None:
    start = _pois(district_city, "shelter")[0].edge
    hospitals = _pois(district_city, "hospital")
    best, time_s = nearest_poi_by_time(moves, start, hospitals)
    for h in hospitals:
        assert time_s <= route_time(moves, fastest_route(moves, start, h.edge)) + 1e-9
    assert time_s == pytest.approx(route_time(moves, fastest_route(moves, start, best.edge)))


def test_unknown_edges_raise(district_city: City, moves: nx.DiGraph) -> None:
    some = next(iter(moves.nodes))
    with pytest.raises(CityError, match="no_such_edge"):
        fastest_route(moves, some, "no_such_edge")
    with pytest.raises(CityError, match="no_such_edge"):
        route_time(moves, [some, "no_such_edge"])
    with pytest.raises(CityError, match="no_such_edge"):
        nearest_poi_by_time(moves, "no_such_edge", _pois(district_city, "hospital"))
    with pytest.raises(CityError, match="no POIs"):
        nearest_poi_by_time(moves, some, [])
    far = next(b for b in moves.nodes if b != some and not moves.has_edge(some, b))
    with pytest.raises(CityError, match="not connected"):
        route_time(moves, [some, far])


# --------------------------------------------------------------------------- reachability


def test_uniform_arrival_delay_hand_example() -> None:
    assert uniform_arrival_delay_s(100.0, 40.0) == pytest.approx(18.0)  # 60² / 200
    assert uniform_arrival_delay_s(100.0, 100.0) == 0.0
    assert uniform_arrival_delay_s(100.0, 0.0) == pytest.approx(50.0)


def test_approach_greens(district_city: City) -> None:
    net = district_city.net
    greens = approach_greens(district_city)
    assert set(greens) == {k.from_edge for t in net.tls.values() for k in t.links}
    for spec in district_city.manifest.signals:
        links = net.tls[spec.id].links
        for edge in spec.approach_edges:
            cycle_s, green_s = greens[edge]
            assert cycle_s == spec.cycle_s and 0.0 < green_s < cycle_s
            mine = [k.index for k in links if k.from_edge == edge]
            serving = [
                p.duration_s
                for p in spec.phases
                if p.kind == "green" and any(p.state[i] in "Gg" for i in mine)
            ]
            assert green_s == max(serving), edge  # the longest green that serves it


def test_reachability_shares(reach_pair: tuple[Reachability, Reachability]) -> None:
    without, with_ = reach_pair
    assert not without.priority and with_.priority
    assert 0.0 < without.share_within <= 1.0 and 0.0 < with_.share_within <= 1.0
    assert with_.share_within >= without.share_within
    assert without.limit_s == with_.limit_s == 600.0
    assert set(without.times_s) == set(with_.times_s)
    for node, t in without.times_s.items():
        assert t >= with_.times_s[node] - 1e-9, node


def test_reachability_matches_routing(
    district_city: City, moves: nx.DiGraph, reach_pair: tuple[Reachability, Reachability]
) -> None:
    net = district_city.net
    without = reach_pair[0]
    assert set(without.times_s) == set(net.nodes_xy) - pass_through_nodes(net)
    times = travel_times_s(district_city, priority=False)
    hospitals = _pois(district_city, "hospital")
    for h in hospitals:  # the hospital's own street, from its start
        start = net.edges[h.edge].from_node
        assert without.times_s[start] <= times[h.edge] + 1e-9
    for node in sorted(without.times_s)[::40]:  # independent: routes from a few junctions
        best = min(
            route_time(
                moves, fastest_route(moves, e.id, h.edge, edge_time_s=times), edge_time_s=times
            )
            for e in net.edges.values()
            if e.from_node == node
            for h in hospitals
        )
        assert without.times_s[node] == pytest.approx(best)


def test_reachability_options(
    district_city: City, reach_pair: tuple[Reachability, Reachability]
) -> None:
    with_ = reach_pair[1]
    slow = reachability(district_city, priority=True, congestion_factor=2.0)
    for node, t in with_.times_s.items():
        assert slow.times_s[node] == pytest.approx(2.0 * t)
    no_wait = reachability(district_city, priority=False, signal_delay_s=lambda _c, _g: 0.0)
    assert no_wait.times_s == pytest.approx(with_.times_s)
    tight = reachability(district_city, priority=False, limit_s=120.0)
    assert tight.share_within < 1.0
    with pytest.raises(CityError, match="congestion_factor"):
        reachability(district_city, priority=True, congestion_factor=0.0)
