"""Time-of-day demand from a gravity OD model, sampled into SUMO trips, seeded.

Traffic zones are cells of a coarse grid. Homes weigh more towards the edge of the
city, jobs towards its centre. Each period has a total (share of the peak hour) and a
direction: in the AM peak trips go home -> job, in the PM peak job -> home, midday and
night mix both. ``trips_ij ∝ P_i · A_j · exp(-d_ij / decay_m)``. SUMO routes each trip
at insertion (fastest path), so the trip file holds origins and destinations only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from city_models.manifest import DemandModel, TrafficZone
from city_models.net import NetInfo
from twin.errors import ScenarioError

# period -> share of the peak-hour total and its direction; start of the period (s of day)
PERIODS: dict[str, dict[str, float | str]] = {
    "night": {"share": 0.12, "direction": "mixed", "start_s": 2 * 3600},
    "am_peak": {"share": 1.00, "direction": "home_to_job", "start_s": 8 * 3600},
    "midday": {"share": 0.55, "direction": "mixed", "start_s": 12 * 3600},
    "pm_peak": {"share": 0.95, "direction": "job_to_home", "start_s": 18 * 3600},
}
TRUCK_SHARE = 0.05


def make_demand_model(
    net: NetInfo, *, peak_trips_per_h: int, zones_per_axis: int, exclude: set[str]
) -> DemandModel:
    """Zones and weights of the OD model for a built network."""
    xmin, ymin, xmax, ymax = net.bbox_xy
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    half = max(xmax - xmin, ymax - ymin) / 2
    cells: dict[tuple[int, int], list[tuple[str, float]]] = {}
    for e in net.edges.values():
        if e.id.endswith("_pocket") or e.id in exclude or e.length_m < 20.0:
            continue
        (x0, y0), (x1, y1) = e.shape_xy[0], e.shape_xy[-1]
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        i = min(int((mx - xmin) / (xmax - xmin) * zones_per_axis), zones_per_axis - 1)
        j = min(int((my - ymin) / (ymax - ymin) * zones_per_axis), zones_per_axis - 1)
        cells.setdefault((i, j), []).append((e.id, e.length_m * e.lanes))
    zones = []
    for (i, j), edges in sorted(cells.items()):
        zx = xmin + (i + 0.5) * (xmax - xmin) / zones_per_axis
        zy = ymin + (j + 0.5) * (ymax - ymin) / zones_per_axis
        r = math.hypot(zx - cx, zy - cy) / half
        edges.sort()
        zones.append(
            TrafficZone(
                id=f"z{i}_{j}",
                x=round(zx, 1),
                y=round(zy, 1),
                edges=[e for e, _ in edges],
                edge_weights=[round(w, 1) for _, w in edges],
                homes=round(0.4 + r, 4),
                jobs=round(math.exp(-2.5 * r * r) + 0.15, 4),
            )
        )
    return DemandModel(
        zones=zones,
        decay_m=round(0.5 * half, 1),
        peak_trips_per_h=peak_trips_per_h,
        periods=PERIODS,
        truck_share=TRUCK_SHARE,
    )


@dataclass(frozen=True)
class Trip:
    id: str
    depart_s: float
    from_edge: str
    to_edge: str
    vtype: str


def od_matrix(model: DemandModel, period: str) -> np.ndarray:
    """Expected trips per hour between zones in ``period`` (zones in manifest order)."""
    if period not in model.periods:
        raise ScenarioError(
            f"Unknown demand period {period!r}; allowed: {', '.join(model.periods)}."
        )
    spec = model.periods[period]
    homes = np.array([z.homes for z in model.zones])
    jobs = np.array([z.jobs for z in model.zones])
    if spec["direction"] == "home_to_job":
        prod, attr = homes, jobs
    elif spec["direction"] == "job_to_home":
        prod, attr = jobs, homes
    else:
        prod = attr = 0.5 * (homes / homes.sum() + jobs / jobs.sum())
    xy = np.array([(z.x, z.y) for z in model.zones])
    dist = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    weight = prod[:, None] * attr[None, :] * np.exp(-dist / model.decay_m)
    total = model.peak_trips_per_h * float(spec["share"])
    od: np.ndarray = weight / weight.sum() * total
    return od


ROUTE_SAMPLE_TRIPS = 2000
"""Trips :func:`mean_trip_length_m` samples to estimate the driven length (it then moves
by about 1 % with the sample)."""
DIJKSTRA_CHUNK = 256  # origins per shortest-path call (the distance rows it holds at once)


def mean_trip_length_m(
    model: DemandModel,
    net: NetInfo,
    period: str = "am_peak",
    *,
    n_trips: int = ROUTE_SAMPLE_TRIPS,
    edges: set[str] | None = None,
) -> float:
    """Expected driven length of a trip of ``period`` under the OD model: about
    ``n_trips`` trips sampled as :func:`sample_trips` draws them (seed 0), each its origin
    edge, the shortest street path from its end to the destination's start, and the
    destination edge (SUMO departs at an edge's start and arrives at its end; turn bans
    are ignored). Paths use ``edges`` only (default: every edge; an imported city passes
    the streets cars may use, so a footpath is no shortcut). A trip with no path is left
    out; NaN when none has one."""
    total = float(od_matrix(model, period).sum())
    if not (n_trips > 0 and total > 0):
        raise ValueError(f"need n_trips > 0 and a demand > 0 (got {n_trips}, {total})")
    trips = sample_trips(model, period=period, duration_s=3600.0 * n_trips / total, seed=0)
    node = {n: k for k, n in enumerate(sorted({x for e in net.edges.values()
                                                for x in (e.from_node, e.to_node)}))}  # fmt: skip
    shortest: dict[tuple[int, int], float] = {}  # parallel streets: the shorter one
    for e in net.edges.values():
        if edges is not None and e.id not in edges:
            continue
        key = (node[e.from_node], node[e.to_node])
        shortest[key] = min(shortest.get(key, math.inf), e.length_m)
    rows, cols = zip(*shortest, strict=True) if shortest else ((), ())
    graph = csr_matrix((list(shortest.values()), (rows, cols)), shape=(len(node), len(node)))
    ends = [(net.edges[t.from_edge], net.edges[t.to_edge]) for t in trips]
    pairs = [(node[a.to_node], node[b.from_node]) for a, b in ends]
    origins = sorted({src for src, _ in pairs})
    between: dict[tuple[int, int], float] = {}
    for k in range(0, len(origins), DIJKSTRA_CHUNK):
        chunk = origins[k : k + DIJKSTRA_CHUNK]
        row = {n: r for r, n in enumerate(chunk)}
        dist = dijkstra(graph, directed=True, indices=chunk)
        for src, dst in pairs:
            if src in row:
                between[src, dst] = float(dist[row[src], dst])
    lengths = [
        a.length_m + between[pair] + b.length_m
        for (a, b), pair in zip(ends, pairs, strict=True)
        if math.isfinite(between[pair])
    ]
    return float(np.mean(lengths)) if lengths else math.nan


def lane_km(
    net: NetInfo, edges: set[str] | None = None, *, lanes: Mapping[str, int] | None = None
) -> float:
    """Lane-kilometres of ``edges`` of ``net`` (default: every edge), counting ``lanes[e]``
    lanes of edge ``e`` where given (e.g. only those a car may use), else all of them."""
    return (
        sum(
            e.length_m * (e.lanes if lanes is None else lanes.get(e.id, 0))
            for e in net.edges.values()
            if edges is None or e.id in edges
        )
        / 1000.0
    )


def demand_load(
    model: DemandModel,
    net: NetInfo,
    *,
    lane_km: float,
    period: str = "am_peak",
    edges: set[str] | None = None,
    length_m: float | None = None,
) -> float:
    """How much the OD model loads the network ``net`` of ``lane_km`` in ``period``:
    vehicle-km driven per hour per lane-km (= the mean flow per lane, veh/h; trips at
    their :func:`mean_trip_length_m`). Unlike trips per lane-km it carries across city
    sizes: a bigger city's longer trips each use more of its streets. ``edges``: as for
    :func:`mean_trip_length_m`."""
    if not lane_km > 0:
        raise ValueError(f"lane_km must be > 0 (got {lane_km})")
    total = float(od_matrix(model, period).sum())
    if length_m is None:  # a caller that has it already (the same model) passes it
        length_m = mean_trip_length_m(model, net, period, edges=edges)
    return total * length_m / 1000.0 / lane_km


def trips_for_load(
    model: DemandModel,
    net: NetInfo,
    *,
    lane_km: float,
    load: float,
    edges: set[str] | None = None,
    length_m: float | None = None,
) -> int:
    """The AM-peak trips per hour that give ``load`` (:func:`demand_load`) on ``net`` of
    ``lane_km``, with the model's zones and decay (rounded to 10, at least 100)."""
    if not load > 0:
        raise ValueError(f"load must be > 0 (got {load})")
    if length_m is None:
        length_m = mean_trip_length_m(model, net, "am_peak", edges=edges)
    length_km = length_m / 1000.0
    if not length_km > 0:
        raise ValueError("no sampled trip of the demand model has a path through the network")
    share = float(model.periods["am_peak"]["share"])
    return max(100, int(round(load * lane_km / length_km / share, -1)))


def sample_trips(
    model: DemandModel,
    *,
    period: str,
    duration_s: float,
    seed: int,
    scale: float = 1.0,
    begin_s: float = 0.0,
) -> list[Trip]:
    """Trips departing in ``[begin_s, begin_s + duration_s)``, Poisson in number, seeded."""
    if duration_s <= 0:
        raise ScenarioError(f"duration_s must be > 0 (got {duration_s}).")
    rng = np.random.default_rng(seed)
    od = od_matrix(model, period) * scale * duration_s / 3600.0
    flat = od.ravel()
    n_trips = int(rng.poisson(flat.sum()))
    pairs = rng.choice(flat.size, size=n_trips, p=flat / flat.sum())
    departs = np.sort(rng.uniform(begin_s, begin_s + duration_s, size=n_trips))
    n_zones = len(model.zones)
    probs = [np.asarray(z.edge_weights) / np.sum(z.edge_weights) for z in model.zones]
    trips: list[Trip] = []
    for k, (pair, t) in enumerate(zip(pairs, departs, strict=True)):
        oz, dz = model.zones[pair // n_zones], model.zones[pair % n_zones]
        src = oz.edges[rng.choice(len(oz.edges), p=probs[pair // n_zones])]
        dst = dz.edges[rng.choice(len(dz.edges), p=probs[pair % n_zones])]
        if src == dst or src.split("-")[::-1] == dst.split("-"):
            continue  # same street, either way: not a trip through the network
        vtype = "truck" if rng.random() < model.truck_share else "car"
        trips.append(Trip(f"t{k}", round(float(t), 2), src, dst, vtype))
    return trips


VTYPES_XML = (
    '  <vType id="car" vClass="passenger" length="4.5" minGap="2.5" accel="2.6" decel="4.5" '
    'sigma="0.5" speedDev="0.1"/>\n'
    '  <vType id="truck" vClass="truck" length="10.0" minGap="3.0" accel="1.3" decel="4.0" '
    'sigma="0.5" speedDev="0.05"/>\n'
    # emergency vehicles: no bluelight device, so they obey red like everyone else;
    # they may drive 20 % (ambulance) / 10 % (fire truck) above the limit
    '  <vType id="ambulance" vClass="emergency" guiShape="emergency" color="1,0,0" '
    'length="6.5" minGap="2.5" accel="2.6" decel="4.5" sigma="0.2" speedFactor="1.2" '
    'speedDev="0"/>\n'
    '  <vType id="fire_truck" vClass="emergency" guiShape="firebrigade" color="1,0.3,0" '
    'length="10.0" minGap="3.0" accel="1.5" decel="4.0" sigma="0.2" speedFactor="1.1" '
    'speedDev="0"/>\n'
)


def write_trips(trips: list[Trip], path: Path) -> Path:
    """Write trips as a SUMO route file (routed by SUMO at insertion)."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("<routes>\n")
        fh.write(VTYPES_XML)
        for t in trips:
            fh.write(
                f'  <trip id="{t.id}" type="{t.vtype}" depart="{t.depart_s:.2f}" '
                f'from="{t.from_edge}" to="{t.to_edge}" departLane="best" departSpeed="max"/>\n'
            )
        fh.write("</routes>\n")
    return path
