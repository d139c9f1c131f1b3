"""Evacuation planning before SUMO starts: who leaves from where, when, to which shelter.

:func:`plan_evacuation` makes the whole plan; it needs no running SUMO (only netconvert
when a contraflow variant must be built). Its parts are functions over the network: the
evacuating population of a zone, the origins of its vehicles (street length-weighted),
departure curves (simultaneous, staged waves by sub-zone, Rayleigh, log-normal),
shelter assignment (nearest, and a system plan: min-cost flow with networkx over the
street graph with lane capacities and shelter capacities), the default contraflow road,
and the signal stages that serve evacuation movements.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from city_models.build import City
from city_models.features import edge_mid_xy, edges_in_polygon
from city_models.geo import projection_of
from city_models.graph import _street_ends as street_ends
from city_models.graph import edge_graph
from city_models.net import NetInfo
from city_models.variants import contraflow_city, opposite_edges
from scenarios.evacuation_spec import EvacuationSpec
from twin.errors import CityError, ScenarioError

log = logging.getLogger(__name__)

SAT_FLOW_VPH_PER_LANE = 1800.0
SIGNAL_GREEN_SHARE = 0.5  # share of a signalized approach's saturation flow in the plan
UNSHELTERED_COST = 10_000_000  # min-cost flow: a vehicle with no shelter place


Polygon = Sequence[tuple[float, float]]


def polygon_area_km2(poly: Polygon) -> float:
    """Area of a simple polygon (shoelace) [km²]."""
    pts = list(poly)
    twice = sum(
        x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True)
    )
    return abs(twice) / 2.0 / 1e6


def polygon_centroid(poly: Polygon) -> tuple[float, float]:
    xs, ys = zip(*poly, strict=True)
    return float(np.mean(xs)), float(np.mean(ys))


def evacuee_vehicles(
    area_km2: float, *, households_per_km2: float, vehicles_per_household: float, share: float
) -> int:
    """Vehicles that leave: households x vehicles per household x evacuating share."""
    return round(area_km2 * households_per_km2 * vehicles_per_household * share)


@dataclass(frozen=True)
class Origins:
    """Where each evacuee vehicle starts: its edge and position on it."""

    edge: list[str]
    pos_m: np.ndarray


def sample_origins(net: NetInfo, edges: Sequence[str], n: int, rng: np.random.Generator) -> Origins:
    """``n`` homes on ``edges``, the chance of an edge proportional to its length."""
    cands = sorted(edges)
    lengths = np.array([net.edges[e].length_m for e in cands])
    idx = rng.choice(len(cands), size=n, p=lengths / lengths.sum())
    frac = rng.uniform(0.1, 0.9, size=n)
    return Origins([cands[i] for i in idx], np.round(frac * lengths[idx], 2))


def sub_zone_waves(
    net: NetInfo, origin_edges: Sequence[str], source_xy: tuple[float, float], waves: int
) -> np.ndarray:
    """Sub-zone (wave) of each origin: rings of equal count by distance from the hazard
    source, wave 0 nearest to it (the most exposed leave first)."""
    d = np.array([math.dist(edge_mid_xy(net.edges[e]), source_xy) for e in origin_edges])
    if len(d) == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.argsort(np.argsort(d, kind="stable"), kind="stable")
    return (rank * waves // len(d)).astype(np.int64)


def departure_delays_s(
    curve: str,
    n: int,
    rng: np.random.Generator,
    *,
    waves: np.ndarray | None = None,
    spread_s: float = 120.0,
    wave_gap_s: float = 600.0,
    rayleigh_scale_s: float = 900.0,
    lognormal_median_s: float = 1200.0,
    lognormal_sigma: float = 0.6,
) -> np.ndarray:
    """Seconds from the warning to each vehicle's departure.

    ``simultaneous``: uniform over ``spread_s`` (everyone reaches the car and goes);
    ``staged``: wave ``k`` (a sub-zone) is told ``k * wave_gap_s`` later, then leaves
    uniformly over ``spread_s``; ``rayleigh`` / ``lognormal``: behavioural response
    curves (scale = the mode of the Rayleigh; the log-normal by its median and sigma).
    """
    if curve == "simultaneous":
        return rng.uniform(0.0, spread_s, size=n)
    if curve == "staged":
        if waves is None:
            raise ValueError("staged departures need the wave of each vehicle")
        return waves * wave_gap_s + rng.uniform(0.0, spread_s, size=n)
    if curve == "rayleigh":
        return rng.rayleigh(rayleigh_scale_s, size=n)
    if curve == "lognormal":
        return rng.lognormal(math.log(lognormal_median_s), lognormal_sigma, size=n)
    raise ValueError(f"unknown departure curve {curve!r}")


# --------------------------------------------------------------------------- routing


def _cost(graph: nx.DiGraph) -> dict[str, float]:
    return {e: float(d["free_flow_s"]) for e, d in graph.nodes(data=True)}


def routing_graph(graph: nx.DiGraph, blocked: set[str]) -> nx.DiGraph:
    """The edge graph without edges evacuees may not use (closed, contraflow-reversed)."""
    return graph.subgraph([e for e in graph if e not in blocked]).copy()


def shelter_routes(
    graph: nx.DiGraph, origins: set[str], shelter_edges: Mapping[str, str]
) -> dict[str, dict[str, list[str]]]:
    """Free-flow fastest route from every origin edge to every reachable shelter,
    ``{origin: {shelter_id: route}}`` ordered nearest first."""
    cost = _cost(graph)
    out: dict[str, dict[str, list[str]]] = {}
    for o in sorted(origins):
        dist, paths = nx.single_source_dijkstra(graph, o, weight=lambda _u, v, _d: cost[v])
        reach = [(dist[s_edge], sid) for sid, s_edge in shelter_edges.items() if s_edge in dist]
        out[o] = {sid: paths[shelter_edges[sid]] for _d, sid in sorted(reach)}
    return out


def system_optimal_routes(
    graph: nx.DiGraph,
    origin_counts: Mapping[str, int],
    shelter_edges: Mapping[str, str],
    shelter_capacity_veh: Mapping[str, int],
    *,
    horizon_s: float,
) -> dict[str, list[tuple[str | None, list[str]]]]:
    """A system plan: min-cost flow (networkx) of every evacuee to a shelter.

    The street graph is node-split (each SUMO edge an arc with capacity lanes x
    saturation flow x ``horizon_s``, halved before a signal; cost its free-flow time),
    shelters are sinks with their capacity, and each origin may send vehicles to an
    "unsheltered" sink at a prohibitive cost (when places run out). The flow is
    decomposed into one fixed route per vehicle.

    Returns
    -------
    dict
        origin edge -> one ``(shelter id or None, route)`` per vehicle.
    """
    flow_net = nx.DiGraph()
    sink = "SINK"
    signalized = {a for a, _b, s in graph.edges(data="signalized") if s}
    for e, d in graph.nodes(data=True):
        share = SIGNAL_GREEN_SHARE if e in signalized else 1.0
        cap = int(d["lanes"] * SAT_FLOW_VPH_PER_LANE * share * horizon_s / 3600.0)
        flow_net.add_edge(("in", e), ("out", e), capacity=max(cap, 1),
                          weight=round(10 * d["free_flow_s"]))  # fmt: skip
    for a, b in graph.edges:
        flow_net.add_edge(("out", a), ("in", b), weight=0)
    for sid, s_edge in shelter_edges.items():
        if s_edge in graph:
            flow_net.add_edge(("out", s_edge), ("shelter", sid), weight=0)
            flow_net.add_edge(("shelter", sid), sink, capacity=int(shelter_capacity_veh[sid]),
                              weight=0)  # fmt: skip
    total = 0
    for o, count in origin_counts.items():
        flow_net.nodes[("in", o)]["demand"] = -int(count)
        flow_net.add_edge(("in", o), ("none", o), weight=UNSHELTERED_COST)
        flow_net.add_edge(("none", o), sink, weight=0)
        total += int(count)
    flow_net.add_node(sink, demand=total)
    flow = nx.min_cost_flow(flow_net)
    out: dict[str, list[tuple[str | None, list[str]]]] = {}
    for o, count in sorted(origin_counts.items()):
        trips: list[tuple[str | None, list[str]]] = []
        for _ in range(int(count)):
            node: tuple[str, str] | str = ("in", o)
            route: list[str] = []
            shelter: str | None = None
            while node != sink:
                nxt = next(v for v, f in flow[node].items() if f > 0)
                flow[node][nxt] -= 1
                if isinstance(node, tuple) and node[0] == "in":
                    route.append(node[1])
                if isinstance(node, tuple) and node[0] == "shelter":
                    shelter = node[1]
                node = nxt
            trips.append((shelter, route if shelter is not None else []))
        out[o] = trips
    return out


def default_contraflow_edges(
    net: NetInfo,
    zone_edges: set[str],
    routes: Sequence[Sequence[str]],
    *,
    weights: Sequence[float] | None = None,
    max_length_m: float = 2000.0,
    min_lanes: int = 2,
) -> list[str]:
    """The main outbound road: the multi-lane exit from the zone used by the most
    evacuees (``weights``: vehicles per route, default one), followed along the same
    street while it carries at least half of that exit's evacuees, up to
    ``max_length_m``. Returns SUMO edge ids (outbound)."""
    w = list(weights) if weights is not None else [1.0] * len(routes)
    exits: dict[str, float] = defaultdict(float)
    for r, wr in zip(routes, w, strict=True):
        first_out = next((e for e in r if e not in zone_edges), None)
        if first_out is not None:
            exits[first_out] += wr

    ends = street_ends(net)
    reverse = {(b, a) for a, b in ends.values()}

    def has_opposite(e: str) -> bool:
        return ends[e] in reverse

    ranked = [
        e
        for e, _n in sorted(exits.items(), key=lambda kv: (-kv[1], kv[0]))
        if net.edges[e].lanes >= min_lanes and has_opposite(e)
    ]
    if not ranked:
        return []
    start = ranked[0]
    street = net.edges[start].name
    chosen = [start]
    length = net.edges[start].length_m
    users = [(list(r), wr) for r, wr in zip(routes, w, strict=True) if start in r]
    current = start
    while length < max_length_m:
        succ: dict[str, float] = defaultdict(float)
        for r, wr in users:
            i = r.index(current)
            if i + 1 < len(r):
                succ[r[i + 1]] += wr
        if not succ:
            break
        nxt, n = max(succ.items(), key=lambda kv: (kv[1], kv[0]))
        if net.edges[nxt].name != street or n < 0.5 * exits[start] or nxt in chosen:
            break
        chosen.append(nxt)
        length += net.edges[nxt].length_m
        users = [(r, wr) for r, wr in users if nxt in r]
        current = nxt
    return chosen


# --------------------------------------------------------------------------- signals


def stage_flows(
    net: NetInfo, signals: Sequence[object], routes: Sequence[Sequence[str]]
) -> dict[str, np.ndarray]:
    """Evacuee vehicles per green stage of each signal their routes cross.

    ``signals`` are :class:`~city_models.manifest.SignalSpec`; a route's move from
    edge ``a`` to ``b`` counts for the first green stage that shows its link green.
    """
    greens = {
        s.id: [p.state for p in s.phases if p.kind == "green"]  # type: ignore[attr-defined]
        for s in signals
    }
    link_stage: dict[tuple[str, str], tuple[str, int]] = {}
    for tls_id, states in greens.items():
        for link in net.tls[tls_id].links:
            pair = (link.from_edge, link.to_edge)
            if pair in link_stage:
                continue
            for mark in ("G", "g"):
                stage = next((k for k, st in enumerate(states) if st[link.index] == mark), None)
                if stage is not None:
                    link_stage[pair] = (tls_id, stage)
                    break
    out: dict[str, np.ndarray] = {}
    for r in routes:
        for pair in itertools.pairwise(r):
            hit = link_stage.get(pair)
            if hit is not None:
                tls_id, stage = hit
                out.setdefault(tls_id, np.zeros(len(greens[tls_id])))[stage] += 1
    return out


def evacuation_greens(
    plan_green_s: Sequence[float],
    min_green_s: Sequence[float],
    max_green_s: Sequence[float],
    flow_veh: np.ndarray,
    *,
    cycle_stretch: float = 1.25,
) -> list[float]:
    """Greens that favour evacuation: every stage gets its minimum, the rest of a green
    time ``cycle_stretch`` x the plan's goes to stages by their evacuee flow (capped at
    each stage's maximum; the guard enforces the bounds again)."""
    mins = np.asarray(min_green_s, dtype=float)
    maxs = np.asarray(max_green_s, dtype=float)
    budget = float(np.sum(plan_green_s)) * cycle_stretch
    extra = max(budget - mins.sum(), 0.0)
    total = float(flow_veh.sum())
    if total <= 0:
        return [float(g) for g in plan_green_s]
    greens = np.minimum(mins + extra * flow_veh / total, maxs)
    return [float(round(g)) for g in greens]


# --------------------------------------------------------------------------- the whole plan


@dataclass
class Evacuee:
    """One evacuating vehicle: where and when it leaves, where it goes, what it did."""

    id: str
    origin: str
    pos_m: float
    wave: int
    depart_s: float
    shelter: str
    route: list[str]
    departed_s: float = math.nan
    left_zone_s: float = math.nan
    arrived_s: float = math.nan
    index: int = 0
    order: list[str] = field(default_factory=list)  # shelters nearest first


@dataclass(frozen=True)
class EvacuationPlan:
    """Everything decided before SUMO starts (:func:`plan_evacuation`).

    Attributes
    ----------
    zone_polygon, zone_area_km2, zone_edges
        The zone, its area and its streets.
    capacity_veh, shelter_edges
        Places and street of every shelter in use.
    run_city
        The city to run on (a contraflow variant when asked).
    contraflow_edges, reversed_edges
        Outbound streets widened by contraflow, and the inbound lanes left (emergency
        vehicles only).
    source_xy
        Where the hazard starts (waves and the spreading flood count from here).
    evacuees
        Every evacuating vehicle, ``evac_0 ... evac_{n-1}``.
    home_edges
        How many zone streets vehicles can start from.
    """

    zone_polygon: list[tuple[float, float]]
    zone_area_km2: float
    zone_edges: list[str]
    capacity_veh: dict[str, int]
    shelter_edges: dict[str, str]
    run_city: City
    contraflow_edges: list[str]
    reversed_edges: list[str]
    source_xy: tuple[float, float]
    evacuees: list[Evacuee]
    home_edges: int


def plan_evacuation(city: City, spec: EvacuationSpec, rng: np.random.Generator) -> EvacuationPlan:
    """Plan an evacuation: the zone, its population, origins, departures, shelters and
    routes, and the network measures (a contraflow variant is built with netconvert
    and cached, :func:`city_models.variants.contraflow_city`).

    Raises
    ------
    ScenarioError
        Naming the scenario field that does not fit the city (zone, shelters,
        contraflow streets).
    """
    poly, zone_edges = zone_of(city, spec)
    area_km2 = polygon_area_km2(poly)
    capacity_veh = shelter_capacities(city, spec)
    shelter_edges = {p.id: p.edge for p in city.manifest.pois if p.id in capacity_veh}
    n = evacuee_vehicles(
        area_km2,
        households_per_km2=spec.households_per_km2,
        vehicles_per_household=spec.vehicles_per_household,
        share=spec.evacuating_share,
    )
    run_city = city
    blocked: set[str] = set()
    contraflow: list[str] = []
    reversed_edges: list[str] = []
    m = spec.measures
    if m.contraflow:
        edges = list(m.contraflow_edges)
        if edges:
            check_contraflow_edges(city, spec, edges, zone_edges)
        else:
            base = edge_graph(city.net)
            homes = home_edges(base, zone_edges, shelter_edges)
            routes = shelter_routes(base, set(homes), shelter_edges)
            nearest = [(o, next(iter(r.values()))) for o, r in routes.items() if r]
            edges = default_contraflow_edges(
                city.net,
                set(zone_edges),
                [r for _o, r in nearest],
                weights=[city.net.edges[o].length_m for o, _r in nearest],
                max_length_m=m.contraflow_max_length_m,
            )
            if not edges:
                raise ScenarioError(
                    f"Scenario {spec.name!r}: field 'measures.contraflow' found no "
                    "multi-lane two-way exit from the zone; name the road in "
                    "'measures.contraflow_edges'."
                )
        try:
            run_city = contraflow_city(city, edges)
            pairs = opposite_edges(city, edges)
        except CityError as exc:
            raise ScenarioError(
                f"Scenario {spec.name!r}: field 'measures.contraflow_edges': {exc}"
            ) from exc
        contraflow = sorted(pairs)
        reversed_edges = sorted(
            e for b in pairs.values() for e in (b, f"{b}_pocket") if e in run_city.net.edges
        )
        blocked |= set(reversed_edges)
    if m.close_inbound:
        blocked |= set(inbound_edges(run_city.net, zone_edges))
    graph = routing_graph(edge_graph(run_city.net), blocked)
    homes = home_edges(graph, zone_edges, shelter_edges)
    origins = sample_origins(run_city.net, homes, n, rng)
    source = spec.hazard.source_xy or polygon_centroid(poly)
    waves = sub_zone_waves(run_city.net, origins.edge, source, spec.departure.waves)
    d = spec.departure
    delays = departure_delays_s(
        d.curve, n, rng, waves=waves, spread_s=d.spread_s, wave_gap_s=d.wave_gap_s,
        rayleigh_scale_s=d.rayleigh_scale_s, lognormal_median_s=d.lognormal_median_s,
        lognormal_sigma=d.lognormal_sigma,
    )  # fmt: skip
    routes_by_origin = shelter_routes(graph, set(origins.edge), shelter_edges)
    optimal: dict[str, list[tuple[str | None, list[str]]]] = {}
    if spec.assignment == "system_optimal":
        counts: dict[str, int] = {}
        for o in origins.edge:
            counts[o] = counts.get(o, 0) + 1
        optimal = system_optimal_routes(
            graph, counts, shelter_edges, capacity_veh, horizon_s=spec.system_horizon_s
        )
    evacuees = []
    for k in range(n):
        o = origins.edge[k]
        order = list(routes_by_origin[o])
        shelter, route = order[0], routes_by_origin[o][order[0]]
        if optimal:
            planned, planned_route = optimal[o].pop()
            if planned is not None:
                shelter, route = planned, planned_route
        evacuees.append(Evacuee(
            f"evac_{k}", o, float(origins.pos_m[k]), int(waves[k]),
            round(spec.warning_s + float(delays[k]), 2), shelter, list(route), order=order,
        ))  # fmt: skip
    return EvacuationPlan(
        zone_polygon=poly,
        zone_area_km2=area_km2,
        zone_edges=list(zone_edges),
        capacity_veh=capacity_veh,
        shelter_edges=shelter_edges,
        run_city=run_city,
        contraflow_edges=contraflow,
        reversed_edges=reversed_edges,
        source_xy=(float(source[0]), float(source[1])),
        evacuees=evacuees,
        home_edges=len(homes),
    )


def zone_of(city: City, spec: EvacuationSpec) -> tuple[list[tuple[float, float]], list[str]]:
    """The zone's polygon and streets (the city's zone, or the scenario's polygon)."""
    if spec.zone_polygon_xy is not None:
        poly = [(float(x), float(y)) for x, y in spec.zone_polygon_xy]
        edges = edges_in_polygon(city.net, poly)
        field_name = "zone_polygon_xy"
    elif spec.zone_polygon_lonlat is not None:
        proj = projection_of(city.manifest)
        poly = [proj.lonlat_to_xy(float(lon), float(lat)) for lon, lat in spec.zone_polygon_lonlat]
        edges = edges_in_polygon(city.net, poly)
        field_name = "zone_polygon_lonlat"
    else:
        zones = {z.id: z for z in city.manifest.zones}
        if spec.zone not in zones:
            raise ScenarioError(
                f"Scenario {spec.name!r}: field 'zone' = {spec.zone!r} is not a zone of city "
                f"{city.name}; allowed: {', '.join(sorted(zones)) or '(none)'} "
                "(or give 'zone_polygon_xy' or 'zone_polygon_lonlat')."
            )
        zone = zones[spec.zone]
        poly = [(float(x), float(y)) for x, y in zone.polygon_xy]
        edges = [e for e in zone.edges if e in city.net.edges]
        field_name = "zone"
    homes = [e for e in edges if not e.endswith("_pocket")]
    if not homes:
        raise ScenarioError(
            f"Scenario {spec.name!r}: field '{field_name}' contains no street of city "
            f"{city.name} (a street counts when both its ends lie inside the polygon); "
            f"the city spans x, y = {city.net.bbox_xy}."
        )
    return poly, edges


def shelter_capacities(city: City, spec: EvacuationSpec) -> dict[str, int]:
    """Places per shelter in use (the scenario's overrides, else the city's)."""
    pois = {p.id: p for p in city.manifest.pois if p.role == "shelter"}
    names = spec.shelters or sorted(pois)
    for fld, ids in (("shelters", names), ("shelter_capacity_veh", spec.shelter_capacity_veh)):
        unknown = sorted(set(ids) - set(pois))
        if unknown:
            raise ScenarioError(
                f"Scenario {spec.name!r}: field '{fld}' names {', '.join(unknown)}, not "
                f"shelters of city {city.name}; allowed: {', '.join(sorted(pois))}."
            )
    caps: dict[str, int] = {}
    for sid in names:
        cap = spec.shelter_capacity_veh.get(sid, pois[sid].capacity_veh or 0)
        if cap <= 0:
            raise ScenarioError(
                f"Scenario {spec.name!r}: shelter {sid!r} of city {city.name} has capacity "
                f"{cap}; give it a capacity > 0 in 'shelter_capacity_veh' or leave it out "
                "of 'shelters'."
            )
        caps[sid] = int(cap)
    if not caps:
        raise ScenarioError(f"Scenario {spec.name!r}: city {city.name} has no shelters.")
    return caps


def check_contraflow_edges(
    city: City, spec: EvacuationSpec, edges: list[str], zone: list[str]
) -> None:
    """Every contraflow street named in the scenario is a street of the city."""
    unknown = [e for e in edges if e not in city.net.edges]
    if unknown:
        exits = sorted(
            e.id
            for e in city.net.edges.values()
            if e.id not in zone
            and e.lanes >= 2
            and any(city.net.edges[z].to_node == e.from_node for z in zone)
        )
        raise ScenarioError(
            f"Scenario {spec.name!r}: field 'measures.contraflow_edges' names "
            f"{', '.join(map(repr, unknown))}, not streets of city {city.name}; outbound "
            f"multi-lane exits of the zone are e.g. {', '.join(exits[:6])}."
        )


def home_edges(
    graph: nx.DiGraph, zone_edges: Sequence[str], shelter_edges: Mapping[str, str]
) -> list[str]:
    """Zone streets vehicles can start on and leave from (a route to a shelter)."""
    targets = {s for s in shelter_edges.values() if s in graph}
    reach: set[str] = set()
    for t in targets:
        reach |= nx.ancestors(graph, t) | {t}
    return [e for e in zone_edges if not e.endswith("_pocket") and e in reach]


def inbound_edges(net: NetInfo, zone_edges: Sequence[str]) -> list[str]:
    """Streets that enter the zone from outside."""
    zone = set(zone_edges)
    nodes = {net.edges[z].from_node for z in zone} | {net.edges[z].to_node for z in zone}
    return sorted(
        e.id
        for e in net.edges.values()
        if e.id not in zone and e.to_node in nodes and e.from_node not in nodes
    )
