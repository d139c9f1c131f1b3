"""Write a built synthetic city as OpenStreetMap XML.

The round-trip test and the import benchmark read the file back with the OSM importer
(netconvert ``--osm-files``), so the export says what OSM would say about the streets:

* one OSM node per plain node (``plain.nod.xml``), plus one per intermediate shape point;
  signalized plain nodes (``type="traffic_light*"``) carry ``highway=traffic_signals``;
* one OSM way per street segment: when the plain edges A->B and B->A both exist, one
  two-way way with ``lanes``, ``lanes:forward`` and ``lanes:backward``; otherwise a
  ``oneway=yes`` way along the edge;
* ``highway`` = ``primary`` / ``secondary`` / ``residential`` for arterials, collectors
  and local streets; ``maxspeed`` in km/h; ``name`` (without a direction suffix);
* the manifest's POIs as tagged nodes 15 m to the right of their edge's midpoint:
  hospitals (``amenity=hospital``, ``emergency=yes``), fire stations
  (``amenity=fire_station``), shelters (``amenity=shelter``,
  ``emergency=assembly_point``, ``capacity``), each with ``name`` and ``ref`` = POI id.

Left-turn pockets (``<split>`` in the plain edges) are not exported: netconvert adds
turn lanes itself or not, and the round trip compares lane-km within a tolerance.

Coordinates: the plain files are in the generator's local metres; netconvert shifts them
by the net's ``netOffset``, and the manifest's lon/lat (signals, POIs) are those of the
shifted net coordinates around the manifest origin (:func:`city_models.geo.xy_to_lonlat`).
The export applies the same shift, so an exported signal lies exactly at the manifest
signal's lon/lat.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from city_models.build import City
from city_models.geo import xy_to_lonlat
from city_models.manifest import PoiSpec
from twin.errors import CityError

log = logging.getLogger(__name__)

POI_OFFSET_M = 15.0
HIGHWAY_OF_CLASS = {"arterial": "primary", "collector": "secondary", "local": "residential"}
_SAME_POINT_M = 0.05
_DIRECTION_SUFFIX = re.compile(
    r"\s*(?:\((?:[NSEW]B|[NSEW])\)|\b(?:[NSEW]B|northbound|southbound|eastbound|westbound))$",
    re.IGNORECASE,
)
XY = tuple[float, float]


@dataclass(frozen=True)
class _PlainNode:
    id: str
    x: float
    y: float
    signal: bool


@dataclass(frozen=True)
class _PlainEdge:
    id: str
    from_node: str
    to_node: str
    lanes: int
    speed_mps: float
    road: str  # arterial | collector | local | "" (unknown)
    name: str
    shape: tuple[XY, ...]  # intermediate points only (plain coordinates)


def export_osm(city: City, path: Path) -> dict[str, int]:
    """Write ``city`` as OSM XML to ``path``.

    Returns
    -------
    dict
        ``nodes`` (all node elements), ``junctions`` (plain nodes), ``ways``,
        ``signals`` (nodes tagged ``highway=traffic_signals``) and ``pois``.

    Raises
    ------
    CityError
        When the city's plain XML files are missing or malformed.
    """
    files = city.manifest.files
    nodes = _read_plain_nodes(city.path / files.plain_nodes)
    types = _read_types(city.path / files.plain_types)
    edges = _read_plain_edges(city.path / files.plain_edges, types)
    off_x, off_y = _net_offset(city.net_path)
    lat0, lon0 = city.manifest.origin_lat, city.manifest.origin_lon

    def lonlat(x: float, y: float) -> tuple[float, float]:
        """Lon/lat of a point in plain coordinates."""
        return xy_to_lonlat(x + off_x, y + off_y, lat0=lat0, lon0=lon0)

    for e in edges:
        for end in (e.from_node, e.to_node):
            if end not in nodes:
                raise CityError(
                    f"City {city.path}: plain edge {e.id!r} ends at node {end!r}, which is "
                    f"not in {files.plain_nodes}; rebuild the city."
                )
    edges = [_strip_ends(e, nodes) for e in edges]

    # OSM nodes: plain nodes first (in file order), then shape points, then POIs
    osm_nodes: list[tuple[int, float, float, list[tuple[str, str]]]] = []
    node_ids: dict[str, int] = {}
    signals = 0
    for n in nodes.values():
        node_ids[n.id] = len(osm_nodes) + 1
        lon, lat = lonlat(n.x, n.y)
        tags = [("highway", "traffic_signals")] if n.signal else []
        signals += n.signal
        osm_nodes.append((node_ids[n.id], lon, lat, tags))

    def shape_node(x: float, y: float) -> int:
        nid = len(osm_nodes) + 1
        lon, lat = lonlat(x, y)
        osm_nodes.append((nid, lon, lat, []))
        return nid

    ways: list[tuple[list[int], list[tuple[str, str]]]] = []
    by_ends: dict[tuple[str, str], list[_PlainEdge]] = {}
    for e in edges:
        by_ends.setdefault((e.from_node, e.to_node), []).append(e)
    used: set[str] = set()
    order = {nid: i for i, nid in enumerate(nodes)}
    for e in edges:
        if e.id in used:
            continue
        used.add(e.id)
        back = next(
            (
                b
                for b in by_ends.get((e.to_node, e.from_node), [])
                if b.id not in used and _mirrored(e.shape, b.shape)
            ),
            None,
        )
        if back is not None:
            used.add(back.id)
            if order[e.from_node] > order[e.to_node]:  # the way runs from the lower index
                e, back = back, e
        refs = [node_ids[e.from_node]]
        refs += [shape_node(x, y) for x, y in e.shape]
        refs.append(node_ids[e.to_node])
        ways.append((refs, _way_tags(e, back)))

    pois = 0
    for poi in city.manifest.pois:
        x, y = _poi_xy(poi, nodes, edges, off_x, off_y)
        lon, lat = lonlat(x - off_x, y - off_y)
        osm_nodes.append((len(osm_nodes) + 1, lon, lat, _poi_tags(poi)))
        pois += 1

    _write(path, osm_nodes, ways, city)
    counts = {
        "nodes": len(osm_nodes),
        "junctions": len(nodes),
        "ways": len(ways),
        "signals": signals,
        "pois": pois,
    }
    log.info("exported city %s as OSM XML to %s: %s", city.name, path, counts)
    return counts


# --------------------------------------------------------------------------- reading


def _parse(path: Path, tag: str) -> list[dict[str, str | list[str]]]:
    """The ``<tag>`` elements of a small plain XML file, with their attributes."""
    if not path.exists():
        raise CityError(f"City file {path} is missing; rebuild the city.")
    found: list[dict[str, str | list[str]]] = []
    try:
        for _event, elem in ElementTree.iterparse(path, events=("end",)):
            if elem.tag == tag:
                found.append(dict(elem.attrib))
                elem.clear()
    except ElementTree.ParseError as exc:
        raise CityError(f"City file {path} is not well-formed XML ({exc}); rebuild.") from exc
    return found


def _attr(path: Path, attrs: dict[str, str | list[str]], name: str) -> str:
    value = attrs.get(name)
    if not isinstance(value, str):
        raise CityError(f"City file {path}: an element lacks the attribute {name!r}; rebuild.")
    return value


def _read_plain_nodes(path: Path) -> dict[str, _PlainNode]:
    nodes: dict[str, _PlainNode] = {}
    for a in _parse(path, "node"):
        nid = _attr(path, a, "id")
        kind = str(a.get("type", ""))
        nodes[nid] = _PlainNode(
            id=nid,
            x=float(_attr(path, a, "x")),
            y=float(_attr(path, a, "y")),
            signal=kind.startswith("traffic_light"),
        )
    return nodes


def _read_types(path: Path) -> dict[str, tuple[int, float]]:
    """Type id -> (numLanes, speed m/s); an absent types file means no defaults."""
    if not path.exists():
        return {}
    return {
        _attr(path, a, "id"): (
            int(str(a.get("numLanes", "1"))),
            float(str(a.get("speed", "13.89"))),
        )
        for a in _parse(path, "type")
    }


def _read_plain_edges(path: Path, types: dict[str, tuple[int, float]]) -> list[_PlainEdge]:
    edges: list[_PlainEdge] = []
    for a in _parse(path, "edge"):
        road = str(a.get("type", ""))
        name = str(a.get("name", ""))
        if road not in HIGHWAY_OF_CLASS and name:
            road = name.split(" ", maxsplit=1)[0].lower()
        lanes_default, speed_default = types.get(str(a.get("type", "")), (1, 13.89))
        shape: tuple[XY, ...] = ()
        if isinstance(a.get("shape"), str):
            shape = tuple(
                (float(p.split(",")[0]), float(p.split(",")[1])) for p in str(a["shape"]).split()
            )
        edges.append(
            _PlainEdge(
                id=_attr(path, a, "id"),
                from_node=_attr(path, a, "from"),
                to_node=_attr(path, a, "to"),
                lanes=int(str(a.get("numLanes", lanes_default))),
                speed_mps=float(str(a.get("speed", speed_default))),
                road=road if road in HIGHWAY_OF_CLASS else "",
                name=name,
                shape=shape,
            )
        )
    return edges


def _net_offset(net_path: Path) -> XY:
    """The ``netOffset`` netconvert added to the plain coordinates."""
    try:
        with _open_net(net_path) as fh:
            for _event, elem in ElementTree.iterparse(fh, events=("end",)):
                if elem.tag == "location":
                    x, y = elem.get("netOffset", "0,0").split(",")
                    return float(x), float(y)
                if elem.tag == "edge":
                    break
    except (ElementTree.ParseError, OSError, EOFError) as exc:
        raise CityError(f"Cannot read the city network {net_path} ({exc}); rebuild.") from exc
    log.warning("%s has no <location netOffset>; exporting plain coordinates as is", net_path)
    return 0.0, 0.0


def _open_net(net_path: Path) -> IO[bytes]:
    if net_path.suffix == ".gz":
        return gzip.open(net_path, "rb")  # type: ignore[return-value]
    return net_path.open("rb")


def _strip_ends(edge: _PlainEdge, nodes: dict[str, _PlainNode]) -> _PlainEdge:
    """Drop shape points that repeat the edge's end nodes (plain shapes may include them)."""
    a, b = nodes[edge.from_node], nodes[edge.to_node]
    inner = [
        p
        for p in edge.shape
        if math.dist(p, (a.x, a.y)) > _SAME_POINT_M and math.dist(p, (b.x, b.y)) > _SAME_POINT_M
    ]
    return _PlainEdge(
        edge.id,
        edge.from_node,
        edge.to_node,
        edge.lanes,
        edge.speed_mps,
        edge.road,
        edge.name,
        tuple(inner),
    )


def _mirrored(shape: tuple[XY, ...], other: tuple[XY, ...]) -> bool:
    if len(shape) != len(other):
        return False
    return all(math.dist(p, q) <= 1.0 for p, q in zip(shape, reversed(other), strict=True))


# --------------------------------------------------------------------------- tags


def _clean_name(name: str) -> str:
    return _DIRECTION_SUFFIX.sub("", name).strip()


def _kmh(speed_mps: float) -> str:
    return str(round(speed_mps * 3.6))


def _way_tags(e: _PlainEdge, back: _PlainEdge | None) -> list[tuple[str, str]]:
    tags = [("highway", HIGHWAY_OF_CLASS.get(e.road, "unclassified"))]
    name = _clean_name(e.name) or (_clean_name(back.name) if back else "")
    if name:
        tags.append(("name", name))
    if back is None:
        tags += [("oneway", "yes"), ("lanes", str(e.lanes)), ("maxspeed", _kmh(e.speed_mps))]
        return tags
    tags += [
        ("lanes", str(e.lanes + back.lanes)),
        ("lanes:forward", str(e.lanes)),
        ("lanes:backward", str(back.lanes)),
    ]
    if _kmh(e.speed_mps) == _kmh(back.speed_mps):
        tags.append(("maxspeed", _kmh(e.speed_mps)))
    else:
        tags += [
            ("maxspeed:forward", _kmh(e.speed_mps)),
            ("maxspeed:backward", _kmh(back.speed_mps)),
        ]
    return tags


def _poi_tags(poi: PoiSpec) -> list[tuple[str, str]]:
    if poi.role == "hospital":
        tags = [("amenity", "hospital"), ("emergency", "yes")]
    elif poi.role == "fire_station":
        tags = [("amenity", "fire_station")]
    else:
        tags = [("amenity", "shelter"), ("emergency", "assembly_point")]
        if poi.capacity_veh is not None:
            tags.append(("capacity", str(poi.capacity_veh)))
    return [*tags, ("name", poi.name), ("ref", poi.id)]


def _poi_xy(
    poi: PoiSpec,
    nodes: dict[str, _PlainNode],
    edges: list[_PlainEdge],
    off_x: float,
    off_y: float,
) -> XY:
    """Net coordinates of a POI node: 15 m to the right of its edge at the POI's point."""
    plain_id = poi.edge.removesuffix("_pocket")
    edge = next((e for e in edges if e.id == plain_id), None)
    if edge is None:
        log.warning("POI %s: edge %s is not a plain edge; placed on the edge", poi.id, poi.edge)
        return poi.x, poi.y
    a, b = nodes[edge.from_node], nodes[edge.to_node]
    line = [(a.x + off_x, a.y + off_y)]
    line += [(x + off_x, y + off_y) for x, y in edge.shape]
    line.append((b.x + off_x, b.y + off_y))
    best: tuple[float, XY] | None = None
    for (x0, y0), (x1, y1) in itertools.pairwise(line):
        dx, dy = x1 - x0, y1 - y0
        length = math.hypot(dx, dy)
        if length == 0:
            continue
        t = max(0.0, min(1.0, ((poi.x - x0) * dx + (poi.y - y0) * dy) / length**2))
        d = math.dist((poi.x, poi.y), (x0 + t * dx, y0 + t * dy))
        if best is None or d < best[0]:
            best = (d, (dx / length, dy / length))
    if best is None:
        return poi.x, poi.y
    ux, uy = best[1]
    return poi.x + POI_OFFSET_M * uy, poi.y - POI_OFFSET_M * ux  # right of (ux, uy)


# --------------------------------------------------------------------------- writing


def _tags_xml(tags: list[tuple[str, str]]) -> str:
    return "".join(f"    <tag k={quoteattr(k)} v={quoteattr(v)}/>\n" for k, v in tags)


def _write(
    path: Path,
    osm_nodes: list[tuple[int, float, float, list[tuple[str, str]]]],
    ways: list[tuple[list[int], list[tuple[str, str]]]],
    city: City,
) -> None:
    lons = [n[1] for n in osm_nodes]
    lats = [n[2] for n in osm_nodes]
    note = f"{city.name}: {city.manifest.note}".replace("--", "-")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        '<osm version="0.6" generator="CityTwin osm_export">\n',
        f"  <!-- {note} -->\n",
        f'  <bounds minlat="{min(lats):.7f}" minlon="{min(lons):.7f}" '
        f'maxlat="{max(lats):.7f}" maxlon="{max(lons):.7f}"/>\n',
    ]
    for nid, lon, lat, tags in osm_nodes:
        head = f'  <node id="{nid}" version="1" lat="{lat:.7f}" lon="{lon:.7f}"'
        lines.append(f"{head}>\n{_tags_xml(tags)}  </node>\n" if tags else f"{head}/>\n")
    for wid, (refs, tags) in enumerate(ways, start=1):
        nds = "".join(f'    <nd ref="{r}"/>\n' for r in refs)
        lines.append(f'  <way id="{wid}" version="1">\n{nds}{_tags_xml(tags)}  </way>\n')
    lines.append("</osm>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
