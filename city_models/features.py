"""What the city holds besides roads: detectors, POIs, VMS sites, the flood zone.

Placed on the built network (so lane ids and lengths are SUMO's own), seeded, and only
on edges of the network's largest strongly connected part (every POI is reachable
from everywhere and can reach everywhere).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from city_models.geo import xy_to_lonlat
from city_models.manifest import DetectorSpec, PoiSpec, VmsSpec, ZoneSpec
from city_models.net import EdgeInfo, NetInfo
from city_models.presets import CityPreset

STOPLINE_SETBACK_M = 3.0


def approach_edge(net: NetInfo, edge_id: str) -> str:
    """The edge upstream of a left-turn pocket (``X_pocket`` -> ``X``), else the edge."""
    base = edge_id.removesuffix("_pocket")
    return base if base in net.edges else edge_id


def make_detectors(net: NetInfo, *, preset: CityPreset) -> list[DetectorSpec]:
    """Induction loops at the stop line of every signalized approach lane, and VDS-like
    loops ``upstream_detector_m`` before it on every lane of the approach."""
    out: list[DetectorSpec] = []
    seen_upstream: set[str] = set()
    for tls in sorted(net.tls.values(), key=lambda t: t.id):
        lanes = sorted({k.from_lane for k in tls.links})
        for lane in lanes:
            length = net.lane_lengths_m[lane]
            out.append(
                DetectorSpec(
                    id=f"e1s_{lane}",
                    kind="stopline",
                    tls=tls.id,
                    lane=lane,
                    pos_m=round(max(length - STOPLINE_SETBACK_M, 0.5), 2),
                )
            )
        for edge_id in sorted({k.from_edge for k in tls.links}):
            last = net.edges[edge_id]
            up = net.edges[approach_edge(net, edge_id)]
            back_m = preset.upstream_detector_m - (last.length_m if up.id != last.id else 0.0)
            pos = max(up.length_m - back_m, min(10.0, up.length_m / 2))
            for k in range(up.lanes):
                lane = f"{up.id}_{k}"
                if lane in seen_upstream:
                    continue
                seen_upstream.add(lane)
                out.append(
                    DetectorSpec(
                        id=f"e1u_{lane}",
                        kind="upstream",
                        tls=tls.id,
                        lane=lane,
                        pos_m=round(pos, 2),
                    )
                )
    return out


def detectors_xml(detectors: list[DetectorSpec], *, period_s: float) -> str:
    """The loops as a SUMO additional; SUMO aggregates them every ``period_s``
    (``file="NUL"``: the twin reads the aggregates, nothing is written)."""
    lines = ["<additional>"]
    for d in detectors:
        lines.append(
            f'  <inductionLoop id="{d.id}" lane="{d.lane}" pos="{d.pos_m}" '
            f'period="{period_s:g}" file="NUL"/>'
        )
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


def strongly_connected_edges(net: NetInfo) -> set[str]:
    """Edges of the largest strongly connected component of the street graph."""
    graph = nx.DiGraph()
    for e in net.edges.values():
        graph.add_edge(e.from_node, e.to_node)
    core = max(nx.strongly_connected_components(graph), key=len)
    return {e.id for e in net.edges.values() if e.from_node in core and e.to_node in core}


def edge_mid_xy(edge: EdgeInfo) -> tuple[float, float]:
    """Midpoint of a street's end points [m]."""
    (x0, y0), (x1, y1) = edge.shape_xy[0], edge.shape_xy[-1]
    return (x0 + x1) / 2, (y0 + y1) / 2


def _nearest(candidates: list[EdgeInfo], target: tuple[float, float], used: set[str]) -> EdgeInfo:
    free = [e for e in candidates if e.id not in used and e.id.removesuffix("_pocket") not in used]
    return min(free, key=lambda e: math.dist(edge_mid_xy(e), target))


def _class_edges(net: NetInfo, core: set[str], classes: set[str]) -> list[EdgeInfo]:
    return [
        e
        for e in net.edges.values()
        if e.id in core
        and not e.id.endswith("_pocket")
        and e.name.split(" ")[0].lower() in classes
        and e.length_m > 60.0
    ]


def make_pois(
    net: NetInfo,
    *,
    preset: CityPreset,
    core: set[str],
    flood_polygon: list[tuple[float, float]],
    rng: np.random.Generator,
) -> list[PoiSpec]:
    """Hospitals, fire stations and shelters spread around the city."""
    xmin, ymin, xmax, ymax = net.bbox_xy
    cx, cy, span = (xmin + xmax) / 2, (ymin + ymax) / 2, max(xmax - xmin, ymax - ymin)
    used: set[str] = set()
    pois: list[PoiSpec] = []
    plan = [
        ("hospital", preset.n_hospitals, 0.22, {"arterial", "collector"}, "University Hospital"),
        ("fire_station", preset.n_fire_stations, 0.30, {"collector"}, "Fire Station"),
        ("shelter", preset.n_shelters, 0.36, {"local", "collector"}, "Shelter (school)"),
    ]
    compass = ["East", "North", "West", "South", "NE", "NW", "SW", "SE"]
    for role, count, radius, classes, label in plan:
        candidates = _class_edges(net, core, classes)
        if role == "shelter":  # shelters stay out of the flood zone
            candidates = [e for e in candidates if not _inside(edge_mid_xy(e), flood_polygon)]
        phase = rng.uniform(0, 2 * math.pi)
        for k in range(count):
            angle = phase + 2 * math.pi * k / count
            ring = radius * (1 + 0.25 * (k // 8))
            target = (cx + ring * span * math.cos(angle), cy + ring * span * math.sin(angle))
            edge = _nearest(candidates, target, used)
            used.add(edge.id)
            x, y = edge_mid_xy(edge)
            lon, lat = xy_to_lonlat(x, y, lat0=preset.lat, lon0=preset.lon)
            pois.append(
                PoiSpec(
                    id=f"{role}_{k + 1}",
                    role=role,
                    name=f"{compass[k % 8]} {label} {k + 1}",
                    edge=edge.id,
                    pos_m=round(edge.length_m / 2, 2),
                    x=round(x, 2),
                    y=round(y, 2),
                    lon=round(lon, 7),
                    lat=round(lat, 7),
                    capacity_veh=int(rng.integers(300, 900)) if role == "shelter" else None,
                )
            )
    return pois


def make_vms(
    net: NetInfo, *, preset: CityPreset, core: set[str], usage: dict[str, float]
) -> list[VmsSpec]:
    """Signs on arterials, 150 m upstream of arterial x arterial junctions, on the most
    used approaches (``usage`` per edge id), spread out: at least 600 m from a sign
    facing the same way and 150 m from any other. Headings are not balanced."""
    majors = {
        t.node
        for t in net.tls.values()
        if len({k.from_edge for k in t.links if k.from_edge.endswith("_pocket")}) >= 4
    }
    candidates = [
        e
        for e in net.edges.values()
        if e.id in core
        and not e.id.endswith("_pocket")
        and e.name.startswith("Arterial")
        and f"{e.id}_pocket" in net.edges
        and net.edges[f"{e.id}_pocket"].to_node in majors
    ]
    # busiest approaches first (``usage``: e.g. the share of shortest paths through the
    # edge), spread out: >= 600 m from a sign facing the same way, 150 m from any
    ranked = sorted(candidates, key=lambda e: (-usage.get(e.id, 0.0), e.id))
    chosen: list[EdgeInfo] = []
    for e in ranked:
        if len(chosen) >= preset.n_vms:
            break
        near = [math.dist(edge_mid_xy(e), edge_mid_xy(c)) for c in chosen]
        same = [d for d, c in zip(near, chosen, strict=True) if _heading(c) == _heading(e)]
        if all(d > 600.0 for d in same) and all(d > 150.0 for d in near):
            chosen.append(e)
    out = []
    for k, e in enumerate(chosen):
        pos = max(e.length_m - 150.0 + net.edges[f"{e.id}_pocket"].length_m, e.length_m / 2)
        pos = min(pos, e.length_m - 5.0)
        (x0, y0), (x1, y1) = e.shape_xy[0], e.shape_xy[-1]
        frac = pos / max(e.length_m, 1.0)
        x, y = x0 + frac * (x1 - x0), y0 + frac * (y1 - y0)
        lon, lat = xy_to_lonlat(x, y, lat0=preset.lat, lon0=preset.lon)
        out.append(
            VmsSpec(
                id=f"vms_{k + 1}",
                edge=e.id,
                pos_m=round(pos, 2),
                x=round(x, 2),
                y=round(y, 2),
                lon=round(lon, 7),
                lat=round(lat, 7),
                junction=net.edges[f"{e.id}_pocket"].to_node,
            )
        )
    return out


def _heading(edge: EdgeInfo) -> str:
    """Compass heading of a street (E, N, S or W) from its end points."""
    (x0, y0), (x1, y1) = edge.shape_xy[0], edge.shape_xy[-1]
    dx, dy = x1 - x0, y1 - y0
    if abs(dx) >= abs(dy):
        return "E" if dx > 0 else "W"
    return "N" if dy > 0 else "S"


def flood_polygon(net: NetInfo) -> list[tuple[float, float]]:
    """A low-lying band along a stream in the south-west of the city."""
    xmin, ymin, xmax, ymax = net.bbox_xy
    w, h = xmax - xmin, ymax - ymin
    pts = [(0.08, 0.10), (0.40, 0.06), (0.46, 0.22), (0.30, 0.34), (0.12, 0.30)]
    return [(round(xmin + a * w, 1), round(ymin + b * h, 1)) for a, b in pts]


def make_flood_zone(net: NetInfo, *, preset: CityPreset) -> ZoneSpec:
    poly = flood_polygon(net)
    edges = edges_in_polygon(net, poly)
    lonlat = [
        tuple(round(v, 7) for v in xy_to_lonlat(x, y, lat0=preset.lat, lon0=preset.lon))
        for x, y in poly
    ]
    return ZoneSpec(
        id="flood_1",
        kind="flood",
        name="Low-lying stream basin (synthetic)",
        polygon_xy=poly,
        polygon_lonlat=lonlat,
        edges=edges,
    )


def edges_in_polygon(net: NetInfo, poly: list[tuple[float, float]]) -> list[str]:
    """Streets with both ends inside the polygon (how a zone's streets are chosen)."""
    return sorted(
        e.id
        for e in net.edges.values()
        if _inside(e.shape_xy[0], poly) and _inside(e.shape_xy[-1], poly)
    )


def _inside(point: tuple[float, float], poly: list[tuple[float, float]]) -> bool:
    """Even-odd rule point-in-polygon."""
    x, y = point
    inside = False
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1], strict=True):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


POI_COLORS = {"hospital": "1,0,0", "fire_station": "1,0.5,0", "shelter": "0,0.6,0"}


def shapes_xml(pois: list[PoiSpec], vms: list[VmsSpec], zones: list[ZoneSpec]) -> str:
    """POIs, VMS sites and zones as a SUMO additional of ``<poi>`` and ``<poly>`` (what
    ``city.sumocfg`` shows in sumo-gui; runs do not load it)."""
    lines = ["<additional>"]
    for p in pois:
        lines.append(
            f'  <poi id="{p.id}" type="{p.role}" color="{POI_COLORS[p.role]}" layer="10" '
            f'x="{p.x:.2f}" y="{p.y:.2f}" width="12" height="12">'
        )
        lines.append(f'    <param key="name" value="{_xml_attr(p.name)}"/>')
        lines.append("  </poi>")
    for v in vms:
        lines.append(
            f'  <poi id="{v.id}" type="vms" color="0,0.3,1" layer="10" '
            f'x="{v.x:.2f}" y="{v.y:.2f}" width="8" height="8"/>'
        )
    for z in zones:
        shape = " ".join(f"{x:.1f},{y:.1f}" for x, y in z.polygon_xy)
        lines.append(
            f'  <poly id="{z.id}" type="{z.kind}" color="0,0.4,1,0.25" fill="1" layer="-1" '
            f'shape="{shape}"/>'
        )
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


def _xml_attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )
