"""OpenStreetMap (XML, PBF, Overpass "out geom") -> a :class:`SourceNet`.

- The file is made plain OSM XML first (:func:`city_models.importers.osm_files.prepare_osm`:
  PBF converted with pyosmium, Overpass geometry repaired, clipped to the bbox).
- netconvert with the options SUMO recommends for OSM (:data:`NETCONVERT_OSM`: geometry
  cleaning, ramps, junction joining, signal guessing and joining, roundabouts), cars
  only, right-hand traffic, a UTM projection; the base typemap together with
  :data:`KOREAN_TYPES` (Korea's "safe speed 5030": 50 km/h on urban roads, 30 km/h in
  residential streets; a ``maxspeed`` tag still wins). A ``--type-files`` list
  replaces netconvert's defaults, so the base map is always named first.
- osmnx reads the same file: the graph view (its size goes in the report) and the POIs
  from tags: hospitals (``amenity=hospital``, ``emergency=yes`` preferred), fire
  stations (``amenity=fire_station``), shelters (``amenity=shelter``,
  ``emergency=assembly_point``, ``social_facility=shelter``).
- Road classes from the edge type: motorway/trunk/primary -> arterial,
  secondary/tertiary -> collector, the rest local.
"""

from __future__ import annotations

import gzip
import logging
import math
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from city_models.importers.base import PoiCandidate, SourceNet, need
from city_models.importers.osm_files import prepare_osm
from twin.engine.sumo_tools import run_tool, sumo_home
from twin.errors import CityError, SumoError

log = logging.getLogger(__name__)

NETCONVERT_OSM = [
    "--geometry.remove", "true", "--ramps.guess", "true", "--junctions.join", "true",
    "--tls.guess-signals", "true", "--tls.discard-simple", "true", "--tls.join", "true",
    "--roundabouts.guess", "true", "--keep-edges.by-vclass", "passenger",
    "--remove-edges.isolated", "true", "--no-turnarounds.except-deadend", "true",
    "--junctions.corner-detail", "5", "--tls.yellow.time", "3", "--tls.allred.time", "2",
    "--output.street-names", "true", "--output.original-names", "true",
    "--proj.utm", "true", "--no-warnings", "true",
]  # fmt: skip
"""SUMO's recommended OSM options ("Networks/Import/OpenStreetMap"), cars only."""

KMH = 1 / 3.6
KOREAN_TYPES = {  # Korea's safe speed 5030 (2021): 50 km/h urban, 30 km/h residential
    "highway.primary": 50,
    "highway.primary_link": 50,
    "highway.secondary": 50,
    "highway.secondary_link": 50,
    "highway.tertiary": 50,
    "highway.tertiary_link": 50,
    "highway.unclassified": 50,
    "highway.residential": 30,
    "highway.living_street": 20,
    "highway.service": 20,
}
CLASS_OF_HIGHWAY = {
    "motorway": "arterial",
    "trunk": "arterial",
    "primary": "arterial",
    "secondary": "collector",
    "tertiary": "collector",
}
SHELTER_TAGS = {"amenity": "shelter", "emergency": "assembly_point", "social_facility": "shelter"}


def korean_typemap(path: Path) -> Path:
    """Write the speed overrides of :data:`KOREAN_TYPES` as a SUMO type file."""
    lines = ["<types>"]
    for tid, kmh in KOREAN_TYPES.items():
        lines.append(f'    <type id="{tid}" speed="{kmh * KMH:.2f}"/>')
    lines.append("</types>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_osm(
    src: Path,
    *,
    work: Path,
    bbox: tuple[float, float, float, float] | None = None,
    name: str | None = None,
) -> SourceNet:
    """Import an OSM file into a geo-referenced SUMO net with its POIs (module doc)."""
    work.mkdir(parents=True, exist_ok=True)
    prepared = prepare_osm(src, work=work, bbox=bbox)
    base = sumo_home() / "data" / "typemap" / "osmNetconvert.typ.xml"
    korean = korean_typemap(work / "korean.typ.xml")
    net_file = work / "osm.net.xml.gz"
    try:
        run_tool(
            "netconvert",
            ["--osm-files", prepared.xml, "--type-files", f"{base},{korean}", *NETCONVERT_OSM,
             "-o", net_file],
            what=f"converting the OSM file {src.name}",
        )  # fmt: skip
    except SumoError as exc:
        raise CityError(
            f"netconvert could not build a road network from {src}: {exc}\nCheck that the "
            "file holds streets (highway=*) for cars inside the bbox."
        ) from None
    edges = _net_edges(net_file)
    if not edges:
        raise CityError(
            f"No street for cars in {src}" + (f" inside the bbox {bbox}" if bbox else "") + "; "
            "check the bbox (S,W,N,E) or the extract."
        )
    classes = {eid: _class_of(etype) for eid, etype in edges.items()}
    pois, poi_report = osm_pois(prepared.xml)
    graph_report = _osmnx_graph(prepared.xml)
    signals_tagged = _count_signal_nodes(prepared.xml)
    tls_ids, tls_joined = _net_signals(net_file)
    report = {
        "input_format": prepared.format,
        "overpass_nodes_repaired": prepared.repaired_nodes,
        "clipped_to_bbox": prepared.clipped,
        "osm_counts": prepared.counts,
        "osm_signal_nodes": signals_tagged,
        "signals_guessed": len(tls_ids),
        "signals_joined": tls_joined,
        "osmnx_graph": graph_report,
        "pois_tagged": poi_report,
    }
    opts: dict[str, Any] = {"bbox": list(bbox) if bbox else None}
    return SourceNet(
        kind="osm",
        name=name or src.name.split(".")[0],
        net_file=net_file,
        source_files=[src],
        options=opts,
        edge_classes=classes,
        guessed_signals=True,
        pois=pois,
        report=report,
    )


def _class_of(edge_type: str) -> str:
    hw = edge_type.split("|", maxsplit=1)[0].removeprefix("highway.").removesuffix("_link")
    return CLASS_OF_HIGHWAY.get(hw, "local")


def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _net_edges(net_file: Path) -> dict[str, str]:
    """Normal edge id -> its type."""
    out: dict[str, str] = {}
    with _open(net_file) as fh:
        for _ev, el in ElementTree.iterparse(fh, events=("start",)):
            if el.tag == "edge" and "function" not in el.attrib:
                out[el.attrib["id"]] = el.attrib.get("type", "")
    return out


def _net_signals(net_file: Path) -> tuple[list[str], int]:
    """Traffic light ids, and how many of them control a joined cluster of junctions."""
    tls: list[str] = []
    with _open(net_file) as fh:
        for _ev, el in ElementTree.iterparse(fh, events=("start",)):
            if el.tag == "tlLogic":
                tls.append(el.attrib["id"])
    joined = sum(1 for t in set(tls) if t.startswith(("joinedS_", "joinedG_", "cluster_", "GS_")))
    return sorted(set(tls)), joined


def _count_signal_nodes(xml: Path) -> int:
    n = 0
    for _ev, el in ElementTree.iterparse(xml, events=("end",)):
        if el.tag == "node":
            if any(t.get("k") == "highway" and t.get("v") == "traffic_signals" for t in el):
                n += 1
            el.clear()
        elif el.tag in ("way", "relation"):
            el.clear()
    return n


def _osmnx_graph(xml: Path) -> dict[str, Any]:
    """The drivable graph view osmnx makes of the same file (its size, or why not)."""
    ox = need("osmnx", "Reading OSM files")
    try:
        g = ox.graph_from_xml(xml, retain_all=True)
    except Exception as exc:  # osmnx raises several kinds; the report says which
        log.warning("osmnx could not read %s as a graph: %s", xml, exc)
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"nodes": int(g.number_of_nodes()), "edges": int(g.number_of_edges())}


def _kind_of(tags: dict[str, Any]) -> str | None:
    def val(k: str) -> str:
        v = tags.get(k)
        return v if isinstance(v, str) else ""

    if val("amenity") == "hospital":
        return "hospital"
    if val("amenity") == "fire_station":
        return "fire_station"
    if any(val(k) == v for k, v in SHELTER_TAGS.items()):
        return "shelter"
    return None


def osm_pois(xml: Path) -> tuple[list[PoiCandidate], dict[str, int]]:
    """Hospitals, fire stations and shelters tagged in an OSM XML file (osmnx)."""
    ox = need("osmnx", "Reading OSM files")
    tags: dict[str, bool | str | list[str]] = {
        "amenity": ["hospital", "fire_station", "shelter"],
        "emergency": "assembly_point",
        "social_facility": "shelter",
    }
    try:
        gdf = ox.features_from_xml(xml, tags=tags)
    except Exception as exc:  # osmnx: InsufficientResponseError when nothing matches
        if "nsufficient" in type(exc).__name__ or "No matching features" in str(exc):
            return [], {"hospital": 0, "fire_station": 0, "shelter": 0}
        raise CityError(f"osmnx could not read the points of interest of {xml}: {exc}") from None
    out: list[PoiCandidate] = []
    counts = {"hospital": 0, "fire_station": 0, "shelter": 0}
    for idx, row in gdf.iterrows():
        t = {k: row[k] for k in row.index if k != "geometry"}
        kind = _kind_of(t)
        if kind is None:
            continue
        geom = row["geometry"]
        pt = geom if geom.geom_type == "Point" else geom.representative_point()
        name = next(
            (t[k] for k in ("name", "name:en", "name:ko", "ref") if isinstance(t.get(k), str)),
            f"{kind} {idx[1] if isinstance(idx, tuple) else idx}",
        )
        cap_raw = t.get("capacity")
        cap = int(cap_raw) if isinstance(cap_raw, str) and cap_raw.isdigit() else None
        osm_id = f"{idx[0]}/{idx[1]}" if isinstance(idx, tuple) else str(idx)
        out.append(
            PoiCandidate(
                id=osm_id,
                kind=kind,
                name=str(name),
                lon=float(pt.x),
                lat=float(pt.y),
                capacity_veh=cap,
                preferred=kind == "hospital" and t.get("emergency") == "yes",
            )
        )
        counts[kind] += 1
    if any(math.isnan(p.lon) or math.isnan(p.lat) for p in out):
        raise CityError(f"A point of interest of {xml} has no coordinates.")
    return out, counts
