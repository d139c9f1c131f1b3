"""The twin's router follows SUMO's own connections (NetInfo.successors), so its routes
are routes SUMO accepts, as fast as duarouter's, and a prohibited turn is never taken."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from xml.etree import ElementTree

import pytest

from city_models.build import City
from city_models.graph import edge_graph, fastest_route, route_time
from city_models.importing import import_city
from tests.city_models.nodelink_fixture import link_id, node_id, write_nodelink, write_turninfo
from twin.engine.sumo_tools import run_tool
from twin.errors import CityError


def _duarouter(city: City, pairs: list[tuple[str, str]], folder: Path) -> dict[str, list[str]]:
    trips = folder / "trips.xml"
    lines = [
        f'  <trip id="t{k}" depart="0" from="{a}" to="{b}"/>' for k, (a, b) in enumerate(pairs)
    ]
    trips.write_text("<routes>\n" + "\n".join(lines) + "\n</routes>\n", encoding="utf-8")
    out = folder / "routes.xml"
    run_tool("duarouter", ["-n", city.net_path, "--route-files", trips, "-o", out,
                           "--ignore-errors", "true", "--no-warnings", "true",
                           "--weights.minor-penalty", "0", "--alternatives-output", "NUL",
                           "--no-step-log", "true"], what="routing the test trips")  # fmt: skip
    routes: dict[str, list[str]] = {}
    for veh in ElementTree.parse(out).getroot().iter("vehicle"):
        route = veh.find("route")
        if route is not None:
            routes[veh.attrib["id"]] = route.attrib["edges"].split()
    return routes


def test_routes_match_sumo_router_on_the_district(district_city: City, tmp_path: Path) -> None:
    graph = edge_graph(district_city)
    real = {(a, b) for a, nxt in district_city.net.successors.items() for b in nxt}
    assert set(graph.edges) == real  # the router's moves are SUMO's connections
    rng = random.Random(7)
    edges = sorted(e for e in district_city.net.edges if not e.endswith("_pocket"))
    pairs = [(a, b) for a, b in (rng.sample(edges, 2) for _ in range(40))]
    sumo = _duarouter(district_city, pairs, tmp_path)
    same = 0
    for k, (a, b) in enumerate(pairs):
        ours = fastest_route(graph, a, b)
        theirs = sumo[f"t{k}"]
        for u, v in itertools.pairwise(ours):  # every move of ours is a SUMO connection
            assert v in district_city.net.successors[u]
        t_ours, t_theirs = route_time(graph, ours), route_time(graph, theirs)
        assert t_ours <= t_theirs + 1e-6  # ours is the fastest by its own cost
        assert t_theirs <= 1.05 * t_ours  # and SUMO's is as fast, within 5 %
        same += ours == theirs
    assert same >= 0.8 * len(pairs)


def test_a_prohibited_turn_is_never_routed(tmp_path: Path) -> None:
    node, link = write_nodelink(tmp_path / "nl")
    into, left = link_id((0, 1), (1, 1)), link_id((1, 1), (1, 2))
    turninfo = write_turninfo(tmp_path / "nl", [(node_id(1, 1), into, left, "101")])
    city = import_city("nodelink", node=node, link=link, turninfo=turninfo,
                       out=tmp_path / "city")  # fmt: skip
    assert left not in city.net.successors[into]
    graph = edge_graph(city)
    assert not graph.has_edge(into, left)
    route = fastest_route(graph, into, left)  # must go round the block
    assert len(route) > 2 and all(v in city.net.successors[u] for u, v in itertools.pairwise(route))
    sumo = _duarouter(city, [(into, left)], tmp_path)
    assert route_time(graph, sumo["t0"]) == pytest.approx(route_time(graph, route), rel=0.05)
    with pytest.raises(CityError, match="not connected"):
        route_time(graph, [into, left])
