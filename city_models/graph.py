"""The city's SUMO network as networkx graphs, for routing and hospital reachability.

Two views of one network:

* :func:`city_graph`: a ``MultiDiGraph`` of junctions (nodes) and streets (edges, keyed
  by the SUMO edge id), for maps and distances. It knows nothing of turn restrictions.
* :func:`edge_graph`: a ``DiGraph`` whose nodes are SUMO edges and whose arcs are the
  allowed edge-to-edge moves, for routing. A route is a list of SUMO edge ids, as in a
  ``.rou.xml``; its cost is the travel time of every edge entered, the first included.

The allowed moves are SUMO's own lane connections (passenger lanes to passenger lanes),
which :func:`city_models.net.read_net` keeps as ``NetInfo.successors``: on an imported
city with turn prohibitions the router sees exactly what SUMO allows. For a
:class:`~city_models.net.NetInfo` made without them (hand-built in tests), the moves are
approximated: at a signalized junction exactly the TLS links; at an unsignalized
junction every incoming -> outgoing pair except the U-turn
back along the same street; this approximates netconvert's connections (built with
``--no-turnarounds.except-deadend``): a U-turn is kept only where the junction has a
single outgoing edge (a dead end). "The same street" looks through geometry-only nodes
(one edge in, its continuation out), such as the node where a left-turn pocket
``X_pocket`` splits off its street ``X``.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import networkx as nx

from city_models.features import approach_edge
from city_models.geo import Projection, projection_of
from city_models.net import NetInfo
from twin.errors import CityError

if TYPE_CHECKING:
    from city_models.build import City

log = logging.getLogger(__name__)

GREEN_STATES = "Gg"  # SUMO signal states that let a link go (priority / permissive green)
SignalDelay = Callable[[float, float], float]  # (cycle_s, green_s) -> expected delay [s]


class OnEdge(Protocol):
    """Anything placed on a SUMO edge, e.g. :class:`~city_models.manifest.PoiSpec`."""

    @property
    def edge(self) -> str: ...


P = TypeVar("P", bound=OnEdge)


def _net(city_or_net: City | NetInfo) -> NetInfo:
    return city_or_net if isinstance(city_or_net, NetInfo) else city_or_net.net


def free_flow_s(net: NetInfo, edge_id: str) -> float:
    """Free-flow travel time of an edge: its length over its speed limit [s]."""
    edge = net.edges[edge_id]
    return edge.length_m / edge.speed_mps


# --------------------------------------------------------------------------- graphs


def city_graph(
    city_or_net: City | NetInfo, *, signals: Iterable[str] | None = None
) -> nx.MultiDiGraph:
    """The street network: junctions as nodes, SUMO normal edges as keyed edges.

    Parameters
    ----------
    city_or_net
        A built city (nodes then also get ``lon``/``lat`` from its manifest's origin)
        or a bare network.
    signals
        Junction ids to mark ``signalized``; default: the junctions of the network's
        traffic lights.

    Returns
    -------
    networkx.MultiDiGraph
        Nodes carry ``x``, ``y`` [m] (and ``lon``, ``lat`` [deg]) and ``signalized``;
        edges are keyed by edge id and carry ``edge_id``, ``length_m``, ``speed_mps``,
        ``lanes``, ``name`` and ``free_flow_s``.
    """
    net = _net(city_or_net)
    signalized = set(signals) if signals is not None else {t.node for t in net.tls.values()}
    proj: Projection | None = None
    if not isinstance(city_or_net, NetInfo):
        proj = projection_of(city_or_net.manifest)
    graph = nx.MultiDiGraph(name=net.path.name)
    for node, (x, y) in net.nodes_xy.items():
        attrs: dict[str, object] = {"x": x, "y": y, "signalized": node in signalized}
        if proj is not None:
            attrs["lon"], attrs["lat"] = proj.xy_to_lonlat(x, y)
        graph.add_node(node, **attrs)
    for e in net.edges.values():
        graph.add_edge(
            e.from_node,
            e.to_node,
            key=e.id,
            edge_id=e.id,
            length_m=e.length_m,
            speed_mps=e.speed_mps,
            lanes=e.lanes,
            name=e.name,
            free_flow_s=free_flow_s(net, e.id),
        )
    return graph


def _incidence(net: NetInfo) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Incoming and outgoing edge ids per node."""
    ins: dict[str, list[str]] = defaultdict(list)
    outs: dict[str, list[str]] = defaultdict(list)
    for e in net.edges.values():
        outs[e.from_node].append(e.id)
        ins[e.to_node].append(e.id)
    return ins, outs


def pass_through_nodes(net: NetInfo) -> set[str]:
    """Geometry-only nodes: one edge in and one edge out that carries on ahead (turns by
    less than 90°), e.g. where a left-turn pocket splits off; not real junctions."""
    ins, outs = _incidence(net)

    def ahead(a: str, b: str) -> bool:
        (x0, y0), (x1, y1) = net.edges[a].shape_xy[-2:]
        (x2, y2), (x3, y3) = net.edges[b].shape_xy[:2]
        return (x1 - x0) * (x3 - x2) + (y1 - y0) * (y3 - y2) > 0.0

    return {
        node
        for node in net.nodes_xy
        if len(ins[node]) == 1 and len(outs[node]) == 1 and ahead(ins[node][0], outs[node][0])
    }


def _street_ends(net: NetInfo) -> dict[str, tuple[str, str]]:
    """Per edge, the junctions where its street starts and ends (through pass-through nodes)."""
    through = pass_through_nodes(net)
    next_edge = {net.edges[e].from_node: e for e in net.edges if net.edges[e].from_node in through}
    prev_edge = {net.edges[e].to_node: e for e in net.edges if net.edges[e].to_node in through}
    ends: dict[str, tuple[str, str]] = {}
    for e in net.edges.values():
        start, seen = e.from_node, {e.from_node}
        while start in prev_edge and (up := net.edges[prev_edge[start]].from_node) not in seen:
            start = up
            seen.add(up)
        end, seen = e.to_node, {e.to_node}
        while end in next_edge and (down := net.edges[next_edge[end]].to_node) not in seen:
            end = down
            seen.add(down)
        ends[e.id] = (start, end)
    return ends


def edge_graph(city_or_net: City | NetInfo) -> nx.DiGraph:
    """The allowed edge-to-edge moves (see the module doc for the rules).

    Returns
    -------
    networkx.DiGraph
        Nodes are SUMO edge ids with ``from_node``, ``to_node``, ``length_m``,
        ``speed_mps``, ``lanes``, ``name`` and ``free_flow_s``. Arcs carry ``node``
        (the junction), ``signalized`` and ``time_s``: the free-flow time of the arc's
        *from* edge [s].
    """
    net = _net(city_or_net)
    graph = nx.DiGraph(name=net.path.name)
    for e in net.edges.values():
        graph.add_node(
            e.id,
            from_node=e.from_node,
            to_node=e.to_node,
            length_m=e.length_m,
            speed_mps=e.speed_mps,
            lanes=e.lanes,
            name=e.name,
            free_flow_s=free_flow_s(net, e.id),
        )

    def move(a: str, b: str, *, signalized: bool) -> None:
        node = net.edges[a].to_node
        graph.add_edge(a, b, node=node, signalized=signalized, time_s=free_flow_s(net, a))

    controlled: set[str] = set()
    for tls in net.tls.values():
        for link in tls.links:
            controlled.add(net.edges[link.from_edge].to_node)
            move(link.from_edge, link.to_edge, signalized=True)
    if net.successors:  # SUMO's own connections (read_net): exactly what vehicles may do
        for a, nexts in net.successors.items():
            for b in nexts:
                if b in net.edges and not graph.has_edge(a, b):
                    move(a, b, signalized=net.edges[a].to_node in controlled)
        return graph
    ins, outs = _incidence(net)
    ends = _street_ends(net)
    for node in net.nodes_xy:
        if node in controlled:
            continue
        dead_end = len(outs[node]) == 1
        for a in ins[node]:
            for b in outs[node]:
                u_turn = ends[b][1] == ends[a][0] or net.edges[b].to_node == net.edges[a].from_node
                if dead_end or not u_turn:
                    move(a, b, signalized=False)
    return graph


def path_usage(city_or_net: City | NetInfo, *, seed: int, samples: int = 150) -> dict[str, float]:
    """Share of fastest paths (free flow) through each edge: networkx betweenness of the
    :func:`edge_graph`, estimated from ``samples`` seeded source edges. A proxy for how
    busy a street is before any demand is known (where to put a VMS)."""
    graph = edge_graph(city_or_net)
    k = min(samples, graph.number_of_nodes())
    free = nx.get_node_attributes(graph, "free_flow_s")
    for _a, b, data in graph.edges(data=True):
        data["cost_s"] = free[b]
    scores: dict[str, float] = nx.betweenness_centrality(graph, k=k, weight="cost_s", seed=seed)
    return scores


# --------------------------------------------------------------------------- routing


def _times_s(graph: nx.DiGraph | nx.MultiDiGraph) -> dict[str, float]:
    """Free-flow time per edge id, from either kind of graph."""
    if isinstance(graph, nx.MultiDiGraph):
        return {k: d["free_flow_s"] for _u, _v, k, d in graph.edges(keys=True, data=True)}
    return {e: d["free_flow_s"] for e, d in graph.nodes(data=True)}


def _edge_cost(
    graph: nx.DiGraph, edge_time_s: Mapping[str, float] | None
) -> Callable[[str], float]:
    free = graph.nodes
    if edge_time_s is None:
        return lambda e: float(free[e]["free_flow_s"])
    return lambda e: float(edge_time_s.get(e, free[e]["free_flow_s"]))


def _check_edges(graph: nx.DiGraph, *edges: str) -> None:
    unknown = [e for e in edges if e not in graph]
    if unknown:
        raise CityError(
            f"Unknown edge id(s) {', '.join(map(repr, unknown))}: not a normal edge of "
            f"network {graph.graph.get('name', '?')!r}."
        )


def route_time(
    graph: nx.DiGraph | nx.MultiDiGraph,
    route_edges: Sequence[str],
    *,
    edge_time_s: Mapping[str, float] | None = None,
) -> float:
    """Travel time of a route: the sum of its edges' times [s], the first included.

    Parameters
    ----------
    graph
        An :func:`edge_graph` (the moves are checked) or a :func:`city_graph` (the edges
        are checked to join end to end).
    route_edges
        SUMO edge ids in driving order.
    edge_time_s
        Travel time per edge id [s]; edges not in it take their free-flow time.

    Raises
    ------
    CityError
        For an unknown edge or a move that is not allowed.
    """
    free = _times_s(graph)
    unknown = [e for e in route_edges if e not in free]
    if unknown:
        raise CityError(f"Route has unknown edge id(s) {', '.join(map(repr, unknown))}.")
    ends = {k: (u, v) for u, v, k in graph.edges(keys=True)} if graph.is_multigraph() else {}
    for a, b in itertools.pairwise(route_edges):
        if not (ends[a][1] == ends[b][0] if ends else graph.has_edge(a, b)):
            raise CityError(f"Route is not connected: no allowed move from {a!r} to {b!r}.")
    times = free if edge_time_s is None else {**free, **edge_time_s}
    return float(sum(times[e] for e in route_edges))


def fastest_route(
    edge_graph: nx.DiGraph,
    from_edge: str,
    to_edge: str,
    *,
    edge_time_s: Mapping[str, float] | None = None,
) -> list[str]:
    """The fastest route (Dijkstra on the edge graph) from one edge to another.

    Parameters
    ----------
    edge_graph
        From :func:`edge_graph`.
    from_edge, to_edge
        SUMO edge ids; the route starts with ``from_edge`` and ends with ``to_edge``.
    edge_time_s
        Travel time per edge id [s], e.g. current travel times from SUMO; edges not in
        it take their free-flow time.

    Returns
    -------
    list of str
        The route's edge ids; its cost (:func:`route_time`) is minimal.

    Raises
    ------
    CityError
        For an unknown edge, or when ``to_edge`` cannot be reached from ``from_edge``.
    """
    _check_edges(edge_graph, from_edge, to_edge)
    cost = _edge_cost(edge_graph, edge_time_s)
    try:
        path: list[str] = nx.dijkstra_path(
            edge_graph, from_edge, to_edge, weight=lambda _u, v, _d: cost(v)
        )
    except nx.NetworkXNoPath as exc:
        raise CityError(
            f"Edge {to_edge!r} cannot be reached from edge {from_edge!r} "
            "(no sequence of allowed moves joins them)."
        ) from exc
    return path


def nearest_poi_by_time(
    edge_graph: nx.DiGraph,
    from_edge: str,
    pois: Iterable[P],
    *,
    edge_time_s: Mapping[str, float] | None = None,
) -> tuple[P, float]:
    """The POI fastest to reach from ``from_edge``, and the time to reach it [s].

    The time is that of :func:`fastest_route` to the POI's edge (both edges included).

    Raises
    ------
    CityError
        For an unknown edge, no POIs, or no POI reachable.
    """
    candidates = list(pois)
    if not candidates:
        raise CityError("nearest_poi_by_time got no POIs to choose from.")
    _check_edges(edge_graph, from_edge, *(p.edge for p in candidates))
    cost = _edge_cost(edge_graph, edge_time_s)
    dist = nx.single_source_dijkstra_path_length(
        edge_graph, from_edge, weight=lambda _u, v, _d: cost(v)
    )
    reached = [(p, dist[p.edge] + cost(from_edge)) for p in candidates if p.edge in dist]
    if not reached:
        raise CityError(f"None of the {len(candidates)} POIs can be reached from {from_edge!r}.")
    return min(reached, key=lambda pt: pt[1])


# --------------------------------------------------------------------------- reachability


def uniform_arrival_delay_s(cycle_s: float, green_s: float) -> float:
    """Expected wait at a fixed-time signal of a vehicle arriving uniformly in the cycle:
    it arrives in red with probability ``(C - g) / C`` and then waits ``(C - g) / 2`` on
    average, so ``(C - g)² / (2 C)`` [s]."""
    red_s = min(max(cycle_s - green_s, 0.0), cycle_s)
    return red_s * red_s / (2.0 * cycle_s) if cycle_s > 0 else 0.0


def approach_greens(city: City) -> dict[str, tuple[float, float]]:
    """Per edge that ends at a signal: ``(cycle_s, green_s)`` of its approach.

    ``green_s`` is the longest green phase of the manifest's plan in which a link of the
    approach shows green (``G`` or ``g``). Links from a pocket ``X_pocket`` and from its
    street ``X`` form one approach (the pocket is the last part of the approach).
    """
    net = city.net
    out: dict[str, tuple[float, float]] = {}
    for spec in city.manifest.signals:
        links = net.tls[spec.id].links
        by_approach: dict[str, set[int]] = defaultdict(set)
        for link in links:
            by_approach[approach_edge(net, link.from_edge)].add(link.index)
        for link in links:
            indices = by_approach[approach_edge(net, link.from_edge)]
            green_s = max(
                (
                    p.duration_s
                    for p in spec.phases
                    if p.kind == "green" and any(p.state[i] in GREEN_STATES for i in indices)
                ),
                default=0.0,
            )
            out[link.from_edge] = (spec.cycle_s, green_s)
    return out


def travel_times_s(
    city: City,
    *,
    priority: bool,
    congestion_factor: float = 1.0,
    signal_delay_s: SignalDelay | None = None,
) -> dict[str, float]:
    """Expected time to drive each edge [s]: free-flow time × ``congestion_factor``,
    plus, for an edge that ends at a signal and without ``priority``, the signal delay
    ``signal_delay_s(cycle_s, green_s)`` (default :func:`uniform_arrival_delay_s`).

    The delay is charged to the edge that reaches the stop line: ``X_pocket``, not its
    street ``X`` (``X``'s only move is into its pocket, so a route through pays it once,
    and a trip that ends on ``X``, e.g. at a hospital, does not wait at the signal).
    """
    if congestion_factor <= 0:
        raise CityError(f"congestion_factor must be > 0 (got {congestion_factor}).")
    net = city.net
    times = {e: free_flow_s(net, e) * congestion_factor for e in net.edges}
    if not priority:
        delay = signal_delay_s or uniform_arrival_delay_s
        for e, (cycle_s, green_s) in approach_greens(city).items():
            times[e] += delay(cycle_s, green_s)
    return times


@dataclass(frozen=True)
class Reachability:
    """Fastest time from each junction to the nearest hospital.

    Attributes
    ----------
    times_s
        Junction id -> time [s] to the nearest hospital's edge (its full length
        included); ``inf`` where none can be reached. Geometry-only nodes
        (:func:`pass_through_nodes`) are left out.
    share_within
        Share of the junctions with a time ≤ ``limit_s``.
    limit_s
        The time limit [s].
    priority
        Whether signals gave the vehicle green (no signal delay).
    congestion_factor
        Multiplier of the free-flow times.
    """

    times_s: dict[str, float]
    share_within: float
    limit_s: float
    priority: bool
    congestion_factor: float = 1.0


def reachability(
    city: City,
    *,
    limit_s: float = 600.0,
    priority: bool,
    signal_delay_s: SignalDelay | None = None,
    congestion_factor: float = 1.0,
) -> Reachability:
    """How fast an emergency vehicle gets from every junction to a hospital.

    The time from a junction is that of the fastest route that starts on one of its
    outgoing edges and ends with a hospital's edge, edge times from
    :func:`travel_times_s` (one multi-source Dijkstra from the hospitals on the
    reversed edge graph).

    Parameters
    ----------
    city
        A built city with hospitals among its POIs.
    limit_s
        Time limit for :attr:`Reachability.share_within` [s].
    priority
        With center priority every signal is green when the vehicle arrives (no signal
        delay); without, each signalized approach costs the expected signal delay.
    signal_delay_s
        ``(cycle_s, green_s) -> delay [s]``; default :func:`uniform_arrival_delay_s`.
    congestion_factor
        Multiplier of the free-flow times.
    """
    hospitals = sorted({p.edge for p in city.manifest.pois if p.role == "hospital"})
    if not hospitals:
        raise CityError(f"City {city.name!r} has no hospital among its POIs.")
    graph = edge_graph(city.net)
    _check_edges(graph, *hospitals)
    times = travel_times_s(
        city,
        priority=priority,
        congestion_factor=congestion_factor,
        signal_delay_s=signal_delay_s,
    )
    # reversed arc b -> a stands for the move a -> b and costs the edge entered, b; the
    # start edge's own time is added below
    dist = nx.multi_source_dijkstra_path_length(
        graph.reverse(copy=False), hospitals, weight=lambda u, _v, _d: times[u]
    )
    route_s = {e: d + times[e] for e, d in dist.items()}
    _ins, outs = _incidence(city.net)
    skip = pass_through_nodes(city.net)
    node_s = {
        node: min((route_s.get(e, math.inf) for e in outs[node]), default=math.inf)
        for node in city.net.nodes_xy
        if node not in skip
    }
    within = sum(t <= limit_s for t in node_s.values())
    result = Reachability(
        times_s=node_s,
        share_within=within / len(node_s) if node_s else 0.0,
        limit_s=limit_s,
        priority=priority,
        congestion_factor=congestion_factor,
    )
    log.info(
        "%s: %.1f %% of %d junctions reach a hospital within %.0f s (priority=%s)",
        city.name,
        100 * result.share_within,
        len(node_s),
        limit_s,
        priority,
    )
    return result
