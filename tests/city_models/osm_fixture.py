"""Small OSM test files, written from scratch (no real map data is copied).

A 3x3 street grid with ~150 m blocks around Suwon City Hall (37.2636 N, 127.0286 E):

* ``경수대로`` (primary, two ways: west and east of the middle crossing, 4 lanes),
* ``팔달로`` (secondary, two-way) and ``Secondary East`` (secondary, one-way north),
* ``Local North`` (residential, one-way east), ``효원로`` and ``Middle Street``
  (residential, two-way),
* traffic signals where the primary crosses the two secondaries,
* a hospital node (``emergency=yes``), a second hospital drawn as a building polygon
  (closed way, no ``emergency`` tag), a fire station, a shelter and an assembly point,
* a turn restriction relation.

The same content is written as plain OSM XML (:func:`write_small_osm`), as an Overpass
``out geom`` export (:func:`write_overpass_geom`) and as PBF (:func:`write_pbf`). Each
returns :func:`fixture_info`: the ids and lon/lat of what the tests check.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from city_models.geo import lonlat_to_xy, xy_to_lonlat

LAT0 = 37.2636
LON0 = 127.0286
BLOCK_M = 150.0
END_M = 225.0  # streets run on past the outer crossings to dead ends

Tags = dict[str, str]


@dataclass(frozen=True)
class _Node:
    id: int
    lon: float
    lat: float
    tags: Tags


@dataclass(frozen=True)
class _Way:
    id: int
    refs: tuple[int, ...]
    tags: Tags


@dataclass(frozen=True)
class _Relation:
    id: int
    members: tuple[tuple[str, int, str], ...]  # (type, ref, role)
    tags: Tags


@dataclass(frozen=True)
class _Data:
    nodes: tuple[_Node, ...]
    ways: tuple[_Way, ...]
    relations: tuple[_Relation, ...]
    info: dict[str, Any]


def _lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = xy_to_lonlat(x, y, lat0=LAT0, lon0=LON0)
    return round(lon, 7), round(lat, 7)


def _build() -> _Data:
    nodes: dict[tuple[float, float], _Node] = {}
    next_id = [1001]

    def node(x: float, y: float, tags: Tags | None = None) -> int:
        key = (x, y)
        if key not in nodes:
            lon, lat = _lonlat(x, y)
            nodes[key] = _Node(next_id[0], lon, lat, tags or {})
            next_id[0] += 1
        return nodes[key].id

    lines = (-BLOCK_M, 0.0, BLOCK_M)
    # the signals first, so that they carry their tags
    signals = [node(-BLOCK_M, 0.0, {"highway": "traffic_signals"})]
    signals.append(node(BLOCK_M, 0.0, {"highway": "traffic_signals"}))

    def street_ew(y: float, x0: float, x1: float, bend: bool = False) -> list[int]:
        xs = [x0, *[x for x in lines if x0 < x < x1], x1]
        refs: list[int] = []
        for a, b in itertools.pairwise(xs):
            refs.append(node(a, y))
            if bend:
                refs.append(node((a + b) / 2, y + 6.0))  # a shape point
        refs.append(node(xs[-1], y))
        return refs

    def street_ns(x: float, y0: float, y1: float) -> list[int]:
        ys = [y0, *[y for y in lines if y0 < y < y1], y1]
        return [node(x, y) for y in ys]

    ways = [
        _Way(
            2001,
            tuple(street_ew(0.0, -END_M, 0.0, bend=True)),
            {
                "highway": "primary",
                "name": "경수대로",
                "name:en": "Gyeongsu-daero",
                "lanes": "4",
                "maxspeed": "60",
            },
        ),
        _Way(
            2002,
            tuple(street_ew(0.0, 0.0, END_M)),
            {"highway": "primary", "name": "경수대로", "lanes": "4", "maxspeed": "60"},
        ),
        _Way(
            2003,
            tuple(street_ew(BLOCK_M, -END_M, END_M)),
            {"highway": "residential", "name": "Local North", "oneway": "yes"},
        ),
        _Way(
            2004,
            tuple(street_ew(-BLOCK_M, -END_M, END_M)),
            {"highway": "residential", "name": "효원로"},
        ),
        _Way(
            2005,
            tuple(street_ns(-BLOCK_M, -END_M, END_M)),
            {"highway": "secondary", "name": "팔달로", "lanes": "2", "maxspeed": "50"},
        ),
        _Way(
            2006,
            tuple(street_ns(BLOCK_M, -END_M, END_M)),
            {"highway": "secondary", "name": "Secondary East", "oneway": "yes", "lanes": "2"},
        ),
        _Way(
            2007,
            tuple(street_ns(0.0, -END_M, END_M)),
            {"highway": "residential", "name": "Middle Street"},
        ),
    ]
    pois = {
        "hospital": (
            60.0, 40.0, {"amenity": "hospital", "emergency": "yes", "name": "아주대학교병원"},
        ),
        "fire_station": (-60.0, 90.0, {"amenity": "fire_station", "name": "수원소방서"}),
        "shelter": (175.0, 125.0, {"amenity": "shelter", "name": "Bus Shelter East"}),
        "assembly_point": (
            -100.0, 100.0, {"emergency": "assembly_point", "name": "대피소 Assembly Point"},
        ),
    }  # fmt: skip
    poi_ids = {kind: node(x, y, tags) for kind, (x, y, tags) in pois.items()}
    # the second hospital: a building polygon (closed way), no emergency tag
    cx, cy, half = -75.0, -75.0, 20.0
    ring = [
        node(cx - half, cy - half),
        node(cx + half, cy - half),
        node(cx + half, cy + half),
        node(cx - half, cy + half),
    ]
    ways.append(
        _Way(
            2010,
            (*ring, ring[0]),
            {"amenity": "hospital", "building": "hospital", "name": "Second Hospital"},
        )
    )
    middle = node(0.0, 0.0)
    relations = [
        _Relation(
            3001,
            (("way", 2001, "from"), ("node", middle, "via"), ("way", 2007, "to")),
            {"type": "restriction", "restriction": "no_left_turn"},
        )
    ]
    # the clip test's bbox: 40 m around the north-east crossing (150, 150)
    s_lon, s_lat = _lonlat(BLOCK_M - 40.0, BLOCK_M - 40.0)
    n_lon, n_lat = _lonlat(BLOCK_M + 40.0, BLOCK_M + 40.0)
    by_id = {n.id: n for n in nodes.values()}
    clip_ways = {2003, 2006}
    clip_nodes = {r for w in ways if w.id in clip_ways for r in w.refs} | {poi_ids["shelter"]}
    info: dict[str, Any] = {
        "origin": (LON0, LAT0),
        "signals": [(by_id[i].lon, by_id[i].lat) for i in signals],
        "signal_ids": signals,
        "pois": {kind: (by_id[i].lon, by_id[i].lat) for kind, i in poi_ids.items()},
        "poi_ids": poi_ids,
        "hospital_building": _lonlat(cx, cy),
        "hospital_building_id": 2010,
        "way_ids": {w.id for w in ways},
        "highway_way_ids": {w.id for w in ways if "highway" in w.tags},
        "node_ids": set(by_id),
        "way_node_ids": {r for w in ways for r in w.refs},
        "relation_ids": {r.id for r in relations},
        "names": {w.tags["name"] for w in ways},
        "clip_bbox": (s_lat, s_lon, n_lat, n_lon),
        "clip_ways": clip_ways,
        "clip_nodes": clip_nodes,
        "empty_bbox": (37.30, 127.10, 37.31, 127.11),  # ~8 km north-east: no roads
        "counts": {"nodes": len(by_id), "ways": len(ways), "relations": len(relations)},
    }
    ordered = tuple(sorted(nodes.values(), key=lambda n: n.id))
    return _Data(ordered, tuple(ways), tuple(relations), info)


def fixture_info() -> dict[str, Any]:
    """The ids, lon/lat and bboxes of the fixture's content (see the module docstring)."""
    return _build().info


def _tags_xml(tags: Tags, indent: str) -> list[str]:
    return [f"{indent}<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items()]


def _bounds(data: _Data) -> str:
    lats = [n.lat for n in data.nodes]
    lons = [n.lon for n in data.nodes]
    return (
        f'<bounds minlat="{min(lats)}" minlon="{min(lons)}" '
        f'maxlat="{max(lats)}" maxlon="{max(lons)}"/>'
    )


def write_small_osm(path: Path) -> dict[str, Any]:
    """Write the fixture as plain OSM XML (nodes, ways, relations); return its info."""
    data = _build()
    meta = 'version="1" timestamp="2024-01-01T00:00:00Z" visible="true"'
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<osm version="0.6" generator="CityTwin test fixture">',
        f"  {_bounds(data)}",
    ]
    for n in data.nodes:
        head = f'  <node id="{n.id}" {meta} lat="{n.lat}" lon="{n.lon}"'
        if n.tags:
            lines += [f"{head}>", *_tags_xml(n.tags, "    "), "  </node>"]
        else:
            lines.append(f"{head}/>")
    for w in data.ways:
        lines.append(f'  <way id="{w.id}" {meta}>')
        lines += [f'    <nd ref="{r}"/>' for r in w.refs]
        lines += [*_tags_xml(w.tags, "    "), "  </way>"]
    for r in data.relations:
        lines.append(f'  <relation id="{r.id}" {meta}>')
        lines += [
            f'    <member type="{t}" ref="{ref}" role="{role}"/>' for t, ref, role in r.members
        ]
        lines += [*_tags_xml(r.tags, "    "), "  </relation>"]
    lines.append("</osm>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data.info


def write_overpass_geom(path: Path) -> dict[str, Any]:
    """Write the fixture as an Overpass ``out geom`` export: the ways carry their
    coordinates on ``<nd lat lon>`` (and a ``<bounds>`` child), no ``<node>`` element
    stands for an untagged way node, the tagged nodes (signals, POIs) follow the ways (a
    second ``out`` statement), the relation's members carry their geometry too."""
    data = _build()
    by_id = {n.id: n for n in data.nodes}
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<osm version="0.6" generator="Overpass API 0.7.62.1 084b4234">',
        "<note>The data included in this document is from www.openstreetmap.org. "
        "The data is made available under ODbL.</note>",
        '<meta osm_base="2024-01-01T00:00:00Z"/>',
        f"  {_bounds(data)}",
    ]
    for w in data.ways:
        pts = [by_id[r] for r in w.refs]
        lines.append(f'  <way id="{w.id}">')
        lines.append(
            f'    <bounds minlat="{min(p.lat for p in pts)}" minlon="{min(p.lon for p in pts)}" '
            f'maxlat="{max(p.lat for p in pts)}" maxlon="{max(p.lon for p in pts)}"/>'
        )
        lines += [f'    <nd ref="{p.id}" lat="{p.lat}" lon="{p.lon}"/>' for p in pts]
        lines += [*_tags_xml(w.tags, "    "), "  </way>"]
    for n in data.nodes:  # tagged nodes the query asks for, e.g. node[highway=traffic_signals]
        if n.tags:
            lines.append(f'  <node id="{n.id}" lat="{n.lat}" lon="{n.lon}">')
            lines += [*_tags_xml(n.tags, "    "), "  </node>"]
    ways = {w.id: w for w in data.ways}
    for r in data.relations:
        lines.append(f'  <relation id="{r.id}">')
        for t, ref, role in r.members:
            if t == "way":
                lines.append(f'    <member type="way" ref="{ref}" role="{role}">')
                lines += [
                    f'      <nd lat="{by_id[x].lat}" lon="{by_id[x].lon}"/>' for x in ways[ref].refs
                ]
                lines.append("    </member>")
            else:
                p = by_id[ref]
                lines.append(
                    f'    <member type="node" ref="{ref}" role="{role}" '
                    f'lat="{p.lat}" lon="{p.lon}"/>'
                )
        lines += [*_tags_xml(r.tags, "    "), "  </relation>"]
    lines.append("</osm>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data.info


def write_pbf(path: Path) -> dict[str, Any]:
    """Write the fixture as an OSM PBF file with pyosmium's ``SimpleWriter``."""
    import osmium

    data = _build()
    path.unlink(missing_ok=True)
    writer = osmium.SimpleWriter(str(path))
    try:
        for n in data.nodes:
            writer.add_node(
                osmium.osm.mutable.Node(id=n.id, location=(n.lon, n.lat), tags=n.tags, version=1)
            )
        for w in data.ways:
            writer.add_way(
                osmium.osm.mutable.Way(id=w.id, nodes=list(w.refs), tags=w.tags, version=1)
            )
        for r in data.relations:
            members = [(t[0], ref, role) for t, ref, role in r.members]
            writer.add_relation(
                osmium.osm.mutable.Relation(id=r.id, members=members, tags=r.tags, version=1)
            )
    finally:
        writer.close()
    return data.info


def lonlat_xy(lon: float, lat: float) -> tuple[float, float]:
    """Metres east and north of the fixture's origin."""
    return lonlat_to_xy(lon, lat, lat0=LAT0, lon0=LON0)
