"""The Korean standard node-link (MOCT, 국가표준 노드링크) importer.

Reads the national node and link shapefiles (``MOCT_NODE.shp``, ``MOCT_LINK.shp``) and,
optionally, the turn table ``TURNINFO.dbf``, and builds a geo-referenced SUMO network.

How the source is read
----------------------
* **Fields.** Link: ``LINK_ID``, ``F_NODE``, ``T_NODE``, ``ROAD_RANK`` (required),
  ``LANES``, ``MAX_SPD``, ``ROAD_NAME``, ``ROAD_TYPE``, ``ROAD_NO``, ``LENGTH``. Node:
  ``NODE_ID`` (required), ``NODE_TYPE``, ``NODE_NAME``, ``TURN_P``. Field names are
  matched case-insensitively. Text is decoded with the ``.cpg`` next to the file when
  there is one, else as CP949 (the encoding the national files are published in).
* **Directed links.** Every record is one direction of travel; a road open both ways has
  two records (``F_NODE -> T_NODE`` and back), which become two SUMO edges. The SUMO edge
  id is the ``LINK_ID``.
* **Coordinates.** The CRS is read from the ``.prj`` (EPSG:5186 is usual, 5179 occurs);
  nothing is assumed. Nodes and link shapes are reprojected to WGS84 and written as plain
  XML in lon/lat; ``netconvert --proj.utm true`` then projects them, so the network keeps
  a real geo-reference. netconvert's own shapefile reader is not used (the PROJ of the
  SUMO wheel drops the geo-reference).
* **Road classes** from ``ROAD_RANK``: 101 고속국도, 102 도시고속도로, 103 일반국도 and
  104 특별·광역시도 are *arterial*; 105 국가지원지방도 and 106 지방도 *collector*;
  107 시군도 and 108 기타 *local*. An unknown rank is read as local (counted in the
  report). Edge priority follows the rank (101 -> 8 ... 108 -> 1).
* **Lanes** from ``LANES``; a missing or non-positive value becomes 1 (counted).
* **Speed** from ``MAX_SPD`` (km/h). Where it is 0 or missing, the default follows Korea's
  "safe speed 5030" rule: 50 km/h on urban roads (ranks 103-106) and 30 km/h in
  residential streets (ranks 107 and 108, the 시군도 and others, which in a city are
  mostly neighbourhood streets); the motorway ranks default to their usual limits
  (101: 100 km/h, 102: 80 km/h).
* **Filters.** ``region_code`` keeps the nodes and links whose id begins with it (the
  first three digits of ``NODE_ID``/``LINK_ID`` are the region code in the standard);
  ``bbox`` (S, W, N, E in WGS84 degrees) keeps the links with both end nodes inside.

Signals
-------
The node-link has no signals. They come, in this order of preference:

1. ``signals_csv``: a CSV with a ``NODE_ID`` column; every listed node is signalised.
2. ``signals_from``: an OpenStreetMap XML file; each node tagged
   ``highway=traffic_signals`` signalises the node-link node nearest to it within 30 m.
   (Both files may be given; their nodes are joined, source ``"csv+osm"``.)
3. Otherwise the node type: a node with ``NODE_TYPE`` 101 (교차로, intersection) that has
   at least 3 legs (distinct neighbouring nodes) of which at least 2 are arterial or
   collector roads is signalised.

Signalised nodes are written ``type="traffic_light"``, all others ``priority``; the
pipeline designs every plan (``guessed_signals=True``). A network without any signal is
an error that says how to give them.

Turn restrictions
-----------------
``TURNINFO.dbf`` rows (``NODE_ID``, ``ST_LINK``, ``ED_LINK``, ``TURN_TYPE``) of the
prohibiting types 003 (회전금지), 101 (좌회전금지), 102 (직진금지) and 103 (우회전금지) become
``<delete from=ST_LINK to=ED_LINK/>`` in a plain connection file. The other types
(001 비보호회전, 002 버스만회전, 011 U-turn, 012 P-turn) do not remove connections; U-turns
follow netconvert's ``--no-turnarounds.except-deadend`` and are counted, not added.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from city_models.importers.base import SourceNet, need
from twin.engine.sumo_tools import run_tool
from twin.errors import CityError

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"
SIGNAL_MATCH_RADIUS_M = 30.0
NODE_TYPE_INTERSECTION = 101
MIN_SIGNAL_LEGS = 3
MIN_SIGNAL_MAJOR_LEGS = 2

RANK_NAMES: dict[int, str] = {
    101: "고속국도",
    102: "도시고속도로",
    103: "일반국도",
    104: "특별·광역시도",
    105: "국가지원지방도",
    106: "지방도",
    107: "시군도",
    108: "기타",
}
RANK_CLASS: dict[int, str] = {
    101: "arterial",
    102: "arterial",
    103: "arterial",
    104: "arterial",
    105: "collector",
    106: "collector",
    107: "local",
    108: "local",
}
DEFAULT_SPEED_KPH: dict[int, float] = {
    101: 100.0,
    102: 80.0,
    103: 50.0,
    104: 50.0,
    105: 50.0,
    106: 50.0,
    107: 30.0,
    108: 30.0,
}
UNKNOWN_RANK_SPEED_KPH = 30.0
CLASS_ORDER = {"arterial": 0, "collector": 1, "local": 2}
# type defaults; every edge also carries its own lanes, speed and priority
CLASS_TYPES: dict[str, tuple[int, float, int]] = {
    "arterial": (2, 50.0, 3),
    "collector": (2, 50.0, 2),
    "local": (1, 30.0, 1),
}
PROHIBITED_TURN_TYPES: dict[str, str] = {
    "003": "회전금지",
    "101": "좌회전금지",
    "102": "직진금지",
    "103": "우회전금지",
}
UTURN_TURN_TYPES = frozenset({"011", "012"})

LINK_REQUIRED = ("LINK_ID", "F_NODE", "T_NODE", "ROAD_RANK")
NODE_REQUIRED = ("NODE_ID",)
TURN_REQUIRED = ("NODE_ID", "ST_LINK", "ED_LINK", "TURN_TYPE")

NETCONVERT_OPTIONS: tuple[str, ...] = (
    "--proj.utm", "true",
    "--no-turnarounds.except-deadend", "true",
    "--junctions.corner-detail", "5",
    "--tls.yellow.time", "3",
    "--tls.allred.time", "2",
    "--output.street-names", "true",
    "--no-warnings", "true",
    "--offset.disable-normalization", "false",
)  # fmt: skip

_SUMO_ID = re.compile(r"[\w.\-:]+")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_CPG_ALIASES = {"65001": "utf-8", "949": "cp949", "ansi 949": "cp949", "euc-kr": "cp949"}


@dataclass(frozen=True)
class _Node:
    id: str
    lon: float
    lat: float
    node_type: int | None
    name: str


@dataclass(frozen=True)
class _Link:
    id: str
    from_node: str
    to_node: str
    rank: int | None
    road_class: str
    lanes: int
    speed_kph: float
    name: str
    shape_lonlat: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class _Signals:
    nodes: frozenset[str]
    source: str
    counts: dict[str, int]


def read_nodelink(
    node_shp: Path,
    link_shp: Path,
    *,
    work: Path,
    turninfo: Path | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    region_code: str | None = None,
    signals_from: Path | None = None,
    signals_csv: Path | None = None,
    name: str | None = None,
) -> SourceNet:
    """Build a SUMO network from a Korean standard node-link pair (see the module docs).

    Parameters
    ----------
    node_shp, link_shp
        The node and link shapefiles (each with its ``.shx``, ``.dbf`` and ``.prj``).
    work
        Folder for the plain XML files and the network ``nodelink.net.xml``.
    turninfo
        ``TURNINFO.dbf``: its prohibited turns become connection deletions.
    bbox
        ``(S, W, N, E)`` in WGS84 degrees: keep the links with both end nodes inside.
    region_code
        Keep the nodes and links whose id begins with this code (e.g. ``"241"``).
    signals_from
        An OSM XML file whose ``highway=traffic_signals`` nodes mark signals.
    signals_csv
        A CSV whose ``NODE_ID`` column lists the signalised nodes.
    name
        The city's name (default: the node file's folder name).

    Raises
    ------
    CityError
        For a missing or unreadable file, a missing field, an unknown CRS, a filter that
        keeps no road, or a network without signals.
    """
    node_shp, link_shp = Path(node_shp), Path(link_shp)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    region = region_code.strip() if region_code else None
    if bbox is not None:
        bbox = _check_bbox(bbox)

    nodes_crs = _source_crs(node_shp, "node")
    links_crs = _source_crs(link_shp, "link")
    node_frame = _read_shapefile(node_shp, "node", NODE_REQUIRED, crs=nodes_crs)
    link_frame = _read_shapefile(link_shp, "link", LINK_REQUIRED, crs=links_crs)
    report: dict[str, Any] = {"crs": _crs_label(nodes_crs)}
    if _crs_label(links_crs) != report["crs"]:
        report["crs_links"] = _crs_label(links_crs)

    all_nodes = _nodes_from_frame(node_frame, node_shp, report)
    links = _links_from_frame(link_frame, link_shp, report)
    report["nodes_read"] = len(all_nodes)
    report["links_read"] = len(links)
    links = _drop_links_without_nodes(links, all_nodes, link_shp=link_shp, node_shp=node_shp)
    report["links_missing_nodes"] = report["links_read"] - len(links)

    nodes = all_nodes
    if region:
        nodes = {k: n for k, n in all_nodes.items() if k.startswith(region)}
        links = [lk for lk in links if lk.id.startswith(region)]
        if not nodes or not links:
            sample = next(iter(all_nodes), "")
            raise CityError(
                f"No {'node' if not nodes else 'link'} of region code {region!r} is in "
                f"{node_shp if not nodes else link_shp}: the NODE_ID/LINK_ID values begin "
                f"with other codes (e.g. {sample[:3]!r} in {sample!r}); give a region code "
                "that is the first 3 digits of the ids, or leave it out."
            )
    if bbox is not None:
        south, west, north, east = bbox
        nodes = {
            k: n for k, n in nodes.items() if south <= n.lat <= north and west <= n.lon <= east
        }
    kept = [lk for lk in links if lk.from_node in nodes and lk.to_node in nodes]
    if not kept:
        where = f"the bbox {_fmt_bbox(bbox)}" if bbox is not None else f"region {region!r}"
        raise CityError(
            f"There are no roads inside {where} of {link_shp}: no link has both end nodes "
            f"there ({len(all_nodes)} nodes span lon {_span(all_nodes, 'lon')}, lat "
            f"{_span(all_nodes, 'lat')}); give a bbox (S,W,N,E in WGS84 degrees) that "
            "covers the roads."
        )
    report["links_outside"] = len(links) - len(kept)
    report["links_kept"] = len(kept)
    used = {lk.from_node for lk in kept} | {lk.to_node for lk in kept}
    nodes = {k: nodes[k] for k in sorted(used)}
    report["nodes_kept"] = len(nodes)

    signals = _signals(
        nodes, kept, signals_csv=signals_csv, signals_from=signals_from, node_shp=node_shp
    )
    report.update(signals.counts)
    report["signals_source"] = signals.source
    if not signals.nodes:
        raise CityError(_no_signal_message(node_shp, signals.source, signals_csv, signals_from))

    deletes: list[tuple[str, str]] = []
    if turninfo is not None:
        deletes = _turn_prohibitions(Path(turninfo), nodes, {lk.id: lk for lk in kept}, report)
    else:
        report["turn_prohibitions_applied"] = 0
        report["turn_prohibitions_unknown"] = 0

    net_file = _netconvert(work, nodes, kept, signals.nodes, deletes, what=str(link_shp))
    location, net_edges, n_tls = _read_net_back(net_file)
    if location.get("projParameter", "!") == "!":
        raise CityError(
            f"netconvert wrote {net_file} without a geo-reference (projParameter '!'); "
            "the SUMO installation cannot project (check the eclipse-sumo wheel's PROJ)."
        )
    if n_tls == 0:
        raise CityError(_no_signal_message(node_shp, signals.source, signals_csv, signals_from))
    report["signals"] = n_tls
    report["edges_in_net"] = len(net_edges)

    link_class = {lk.id: lk.road_class for lk in kept}
    edge_classes = {e: _class_of_edge(e, link_class) for e in net_edges}
    report["classes"] = dict(sorted(Counter(edge_classes.values()).items()))

    sources = _source_files(node_shp, link_shp, turninfo, signals_from, signals_csv)
    options: dict[str, Any] = {
        "node_shp": str(node_shp),
        "link_shp": str(link_shp),
        "turninfo": str(turninfo) if turninfo else None,
        "bbox": list(bbox) if bbox else None,
        "region_code": region,
        "signals_from": str(signals_from) if signals_from else None,
        "signals_csv": str(signals_csv) if signals_csv else None,
    }
    log.info(
        "node-link %s: %d of %d links kept, %d signals (%s), net %s",
        link_shp.name,
        len(kept),
        report["links_read"],
        n_tls,
        signals.source,
        net_file,
    )
    return SourceNet(
        kind="nodelink",
        name=name or node_shp.resolve().parent.name or node_shp.stem,
        net_file=net_file,
        source_files=sources,
        options=options,
        edge_classes=edge_classes,
        guessed_signals=True,
        report=report,
    )


# --------------------------------------------------------------------------- reading


def _sidecar(path: Path, suffix: str) -> Path | None:
    """The file next to ``path`` with ``suffix`` (either case), if there is one."""
    for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        if candidate.exists():
            return candidate
    return None


def _check_shapefile(path: Path, role: str) -> dict[str, Any]:
    """``pyogrio.read_info`` of a shapefile, or a :class:`CityError` saying what is wrong."""
    pyogrio = need("pyogrio", "The node-link importer")
    if not path.exists():
        raise CityError(f"The node-link {role} file {path} does not exist.")
    if path.suffix.lower() != ".shp":
        raise CityError(
            f"The node-link {role} file {path} is not a shapefile (its name ends in "
            f"{path.suffix or 'nothing'!r}); give the .shp of the MOCT {role} layer."
        )
    try:
        info: dict[str, Any] = pyogrio.read_info(path)
    except Exception as exc:  # pyogrio's DataSourceError and GDAL's own errors
        prj = _sidecar(path, ".prj")
        if prj is not None and _prj_crs(prj) is None:  # GDAL also fails on a broken .prj
            raise CityError(_bad_prj_message(path, role, prj)) from exc
        raise CityError(
            f"The node-link {role} file {path} is not a shapefile GDAL can read ({exc}); "
            f"give the .shp of the MOCT {role} layer with its .shx, .dbf and .prj."
        ) from exc
    if info.get("driver") != "ESRI Shapefile":
        raise CityError(
            f"The node-link {role} file {path} is a {info.get('driver')} file, not a "
            "shapefile; give the .shp of the MOCT layer."
        )
    return info


def _prj_crs(prj: Path) -> Any:
    """The :class:`pyproj.CRS` a ``.prj`` describes, or ``None`` if PROJ cannot tell."""
    pyproj = need("pyproj", "The node-link importer")
    try:
        crs = pyproj.CRS.from_user_input(prj.read_text(encoding="utf-8", errors="replace"))
    except (pyproj.exceptions.CRSError, OSError):
        return None
    return crs if crs.is_projected or crs.is_geographic else None


def _bad_prj_message(path: Path, role: str, prj: Path) -> str:
    return (
        f"The .prj of the node-link {role} file {path} ({prj}) does not describe a "
        "coordinate reference system that PROJ can identify (a projected or geographic "
        "CRS); replace it with the .prj of the CRS the file is in (EPSG:5186 or EPSG:5179 "
        "for the national files)."
    )


def _source_crs(path: Path, role: str) -> Any:
    """The CRS of a shapefile's ``.prj`` as a :class:`pyproj.CRS`."""
    info = _check_shapefile(path, role)
    prj = _sidecar(path, ".prj")
    if prj is None:
        raise CityError(
            f"The node-link {role} file {path} has no .prj, so its coordinate system is "
            f"unknown; put the .prj that came with it next to it as {path.with_suffix('.prj')} "
            "(the national files use EPSG:5186 'Korea 2000 / Central Belt 2010' or EPSG:5179)."
        )
    crs = _prj_crs(prj)
    if not info.get("crs") or crs is None:
        raise CityError(_bad_prj_message(path, role, prj))
    return crs


def _crs_label(crs: Any) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(crs.name)


def _encoding(path: Path) -> str:
    """The text encoding of a shapefile's ``.dbf``: its ``.cpg``, else CP949."""
    cpg = _sidecar(path, ".cpg")
    if cpg is None:
        return "cp949"
    raw = cpg.read_text(encoding="ascii", errors="replace").strip()
    name = _CPG_ALIASES.get(raw.lower(), raw)
    if name.isdigit():
        name = f"cp{name}"
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise CityError(
            f"The code page file {cpg} names encoding {raw!r}, which Python does not know; "
            "write 'CP949' (the national files' encoding) or 'UTF-8' into it, or delete it "
            "to read the file as CP949."
        ) from None


def _read_shapefile(path: Path, role: str, required: Sequence[str], *, crs: Any) -> Any:
    """A shapefile as a GeoDataFrame in WGS84, its columns upper-cased."""
    need("geopandas", "The node-link importer")
    pyogrio = need("pyogrio", "The node-link importer")
    encoding = _encoding(path)
    try:
        frame = pyogrio.read_dataframe(path, encoding=encoding)
    except Exception as exc:  # GDAL errors, or text that is not in the encoding
        raise CityError(
            f"The node-link {role} file {path} could not be read as {encoding} ({exc}); "
            "check the file and its .cpg (the national files are CP949)."
        ) from exc
    frame.columns = [c if c == frame.geometry.name else str(c).upper() for c in frame.columns]
    missing = [f for f in required if f not in frame.columns]
    if missing:
        present = ", ".join(c for c in frame.columns if c != frame.geometry.name)
        raise CityError(
            f"The node-link {role} file {path} has no field {', '.join(missing)}; a MOCT "
            f"{role} layer needs {', '.join(required)} (its fields are: {present})."
        )
    if frame.crs is None:
        frame = frame.set_crs(crs)
    return frame.to_crs(WGS84)


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return not str(value).strip()


def _text(value: Any) -> str:
    return "" if _blank(value) else _CONTROL_CHARS.sub("", str(value)).strip()


def _id(value: Any) -> str | None:
    """An id field as text: ``2410000011``, also when the DBF stores it as a number."""
    if _blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(value: Any) -> float | None:
    if _blank(value):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _check_id(value: str, *, path: Path, field: str) -> str:
    if not _SUMO_ID.fullmatch(value):
        raise CityError(
            f"The node-link file {path} has {field} {value!r}, which cannot be a SUMO id; "
            "ids may hold letters, digits, '_', '-', '.' and ':' only."
        )
    return value


def _nodes_from_frame(frame: Any, path: Path, report: dict[str, Any]) -> dict[str, _Node]:
    has_type = "NODE_TYPE" in frame.columns
    has_name = "NODE_NAME" in frame.columns
    nodes: dict[str, _Node] = {}
    no_id = no_geom = duplicates = 0
    for row in frame.itertuples(index=False):
        data = row._asdict()
        node_id = _id(data["NODE_ID"])
        geom = data[frame.geometry.name]
        if node_id is None:
            no_id += 1
            continue
        if geom is None or geom.is_empty:
            no_geom += 1
            continue
        if node_id in nodes:
            duplicates += 1
            continue
        point = geom if geom.geom_type == "Point" else geom.centroid
        node_type = _number(data["NODE_TYPE"]) if has_type else None
        nodes[node_id] = _Node(
            id=_check_id(node_id, path=path, field="NODE_ID"),
            lon=float(point.x),
            lat=float(point.y),
            node_type=int(node_type) if node_type is not None else None,
            name=_text(data["NODE_NAME"]) if has_name else "",
        )
    if no_id or no_geom or duplicates:
        log.warning(
            "%s: dropped %d nodes without NODE_ID, %d without a point, %d repeated NODE_IDs",
            path,
            no_id,
            no_geom,
            duplicates,
        )
    report["nodes_dropped"] = no_id + no_geom + duplicates
    report["node_type_field"] = has_type
    return nodes


def _line_coords(geom: Any) -> list[tuple[float, float]]:
    if geom is None or geom.is_empty:
        return []
    if geom.geom_type == "LineString":
        return [(float(x), float(y)) for x, y, *_ in geom.coords]
    if geom.geom_type == "MultiLineString":
        shapely_ops = need("shapely.ops", "The node-link importer")
        merged = shapely_ops.linemerge(geom)
        parts = [merged] if merged.geom_type == "LineString" else list(merged.geoms)
        coords: list[tuple[float, float]] = []
        for part in parts:
            coords += [(float(x), float(y)) for x, y, *_ in part.coords]
        return coords
    return []


def _links_from_frame(frame: Any, path: Path, report: dict[str, Any]) -> list[_Link]:
    cols = set(frame.columns)
    links: dict[str, _Link] = {}
    dropped = Counter[str]()
    unknown_ranks = Counter[str]()
    lanes_defaulted = speed_defaulted = 0
    for row in frame.itertuples(index=False):
        data = row._asdict()
        link_id, f_node, t_node = (_id(data[k]) for k in ("LINK_ID", "F_NODE", "T_NODE"))
        if link_id is None or f_node is None or t_node is None:
            dropped["no id, F_NODE or T_NODE"] += 1
            continue
        if f_node == t_node:
            dropped["F_NODE equal to T_NODE"] += 1
            continue
        if link_id in links:
            dropped["repeated LINK_ID"] += 1
            continue
        rank_value = _number(data["ROAD_RANK"])
        rank = int(rank_value) if rank_value is not None else None
        road_class = RANK_CLASS.get(rank, "") if rank is not None else ""
        if not road_class:
            unknown_ranks[_text(data["ROAD_RANK"]) or "(empty)"] += 1
            road_class = "local"
        lanes_value = _number(data["LANES"]) if "LANES" in cols else None
        lanes = int(lanes_value) if lanes_value is not None and lanes_value >= 1 else 0
        if lanes < 1:
            lanes, lanes_defaulted = 1, lanes_defaulted + 1
        speed_value = _number(data["MAX_SPD"]) if "MAX_SPD" in cols else None
        if speed_value is None or speed_value <= 0:
            speed_kph = DEFAULT_SPEED_KPH.get(rank or 0, UNKNOWN_RANK_SPEED_KPH)
            speed_defaulted += 1
        else:
            speed_kph = float(speed_value)
        links[link_id] = _Link(
            id=_check_id(link_id, path=path, field="LINK_ID"),
            from_node=f_node,
            to_node=t_node,
            rank=rank,
            road_class=road_class,
            lanes=lanes,
            speed_kph=speed_kph,
            name=_text(data["ROAD_NAME"]) if "ROAD_NAME" in cols else "",
            shape_lonlat=tuple(_line_coords(data[frame.geometry.name])),
        )
    for why, count in dropped.items():
        log.warning("%s: dropped %d links (%s)", path, count, why)
    if unknown_ranks:
        log.warning(
            "%s: ROAD_RANK values %s are not 101-108; those links are read as local",
            path,
            dict(unknown_ranks),
        )
    report["links_dropped"] = sum(dropped.values())
    report["road_rank_unknown"] = sum(unknown_ranks.values())
    report["lanes_defaulted"] = lanes_defaulted
    report["speed_defaulted"] = speed_defaulted
    return list(links.values())


def _drop_links_without_nodes(
    links: list[_Link], nodes: dict[str, _Node], *, link_shp: Path, node_shp: Path
) -> list[_Link]:
    """The links whose F_NODE and T_NODE are both in the node file (warns about the rest)."""
    kept = [lk for lk in links if lk.from_node in nodes and lk.to_node in nodes]
    orphans = [lk for lk in links if lk.from_node not in nodes or lk.to_node not in nodes]
    if orphans and not kept:
        first = orphans[0]
        field, value = (
            ("F_NODE", first.from_node)
            if first.from_node not in nodes
            else ("T_NODE", first.to_node)
        )
        raise CityError(
            f"None of the {len(links)} links of {link_shp} ends at a node of {node_shp}: "
            f"e.g. link {first.id} has {field} {value!r}, which is no NODE_ID there "
            f"(NODE_IDs look like {next(iter(nodes), '(none)')!r}); give the node file that "
            "belongs to this link file."
        )
    if orphans:
        log.warning(
            "%s: dropped %d links whose F_NODE or T_NODE is not in %s (e.g. link %s)",
            link_shp,
            len(orphans),
            node_shp,
            orphans[0].id,
        )
    return kept


def _check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    if len(bbox) != 4:
        raise CityError(f"A bbox has 4 numbers (S,W,N,E in WGS84 degrees), not {list(bbox)}.")
    south, west, north, east = (float(v) for v in bbox)
    if not (-90 <= south < north <= 90 and -180 <= west < east <= 180):
        raise CityError(
            f"The bbox {_fmt_bbox((south, west, north, east))} is not S,W,N,E in WGS84 "
            "degrees with S < N and W < E (e.g. 37.25,127.00,37.30,127.05)."
        )
    return south, west, north, east


def _fmt_bbox(bbox: Sequence[float] | None) -> str:
    return ",".join(f"{v:g}" for v in bbox) if bbox is not None else ""


def _span(nodes: dict[str, _Node], attr: str) -> str:
    values = [getattr(n, attr) for n in nodes.values()]
    return f"{min(values):.4f}..{max(values):.4f}" if values else "(none)"


# --------------------------------------------------------------------------- signals


def _legs(links: Iterable[_Link]) -> dict[str, dict[str, str]]:
    """Node -> neighbouring node -> best road class of the links between them."""
    legs: dict[str, dict[str, str]] = defaultdict(dict)
    for lk in links:
        for a, b in ((lk.from_node, lk.to_node), (lk.to_node, lk.from_node)):
            old = legs[a].get(b)
            if old is None or CLASS_ORDER[lk.road_class] < CLASS_ORDER[old]:
                legs[a][b] = lk.road_class
    return legs


def _signals_by_node_type(nodes: dict[str, _Node], links: Iterable[_Link]) -> set[str]:
    """The nodes of NODE_TYPE 101 with >= 3 legs, >= 2 of them arterial or collector."""
    chosen: set[str] = set()
    for node_id, neighbours in _legs(links).items():
        node = nodes.get(node_id)
        if node is None or node.node_type != NODE_TYPE_INTERSECTION:
            continue
        major = sum(1 for c in neighbours.values() if c != "local")
        if len(neighbours) >= MIN_SIGNAL_LEGS and major >= MIN_SIGNAL_MAJOR_LEGS:
            chosen.add(node_id)
    return chosen


def _signals(
    nodes: dict[str, _Node],
    links: list[_Link],
    *,
    signals_csv: Path | None,
    signals_from: Path | None,
    node_shp: Path,
) -> _Signals:
    counts: dict[str, int] = {}
    chosen: set[str] = set()
    sources: list[str] = []
    if signals_csv is not None:
        listed = _read_signal_csv(Path(signals_csv))
        found = listed & nodes.keys()
        counts["signals_csv_listed"] = len(listed)
        counts["signals_csv_unknown"] = len(listed) - len(found)
        if listed - found:
            log.warning(
                "%s: %d NODE_IDs are not nodes of the imported network (e.g. %s)",
                signals_csv,
                len(listed - found),
                sorted(listed - found)[0],
            )
        chosen |= found
        sources.append("csv")
    if signals_from is not None:
        points = _read_osm_signals(Path(signals_from))
        matched = _match_points(points, nodes)
        counts["signals_osm_read"] = len(points)
        counts["signals_osm_matched"] = len(matched)
        chosen |= matched
        sources.append("osm")
    if not sources:
        chosen = _signals_by_node_type(nodes, links)
        sources.append("node_type")
    counts["signals_requested"] = len(chosen)
    return _Signals(nodes=frozenset(chosen), source="+".join(sources), counts=counts)


def _no_signal_message(
    node_shp: Path, source: str, signals_csv: Path | None, signals_from: Path | None
) -> str:
    if source == "node_type":
        why = (
            f"no node of {node_shp} has NODE_TYPE {NODE_TYPE_INTERSECTION} (교차로) with at "
            f"least {MIN_SIGNAL_LEGS} legs, {MIN_SIGNAL_MAJOR_LEGS} of them arterial or "
            "collector roads"
        )
    else:
        given = ", ".join(str(p) for p in (signals_csv, signals_from) if p is not None)
        why = f"no node of the imported roads is a signal according to {given}"
    return (
        f"The node-link network has no traffic signal: {why}. The node-link carries no "
        "signals; give them with --signals-csv (a CSV with a NODE_ID column) or "
        "--signals-from (an OpenStreetMap file whose highway=traffic_signals nodes lie "
        f"within {SIGNAL_MATCH_RADIUS_M:g} m of node-link nodes)."
    )


def _read_signal_csv(path: Path) -> set[str]:
    if not path.exists():
        raise CityError(f"The signal list {path} does not exist.")
    for encoding in ("utf-8-sig", "cp949"):
        try:
            text = path.read_text(encoding=encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise CityError(f"The signal list {path} is neither UTF-8 nor CP949 text.")
    reader = csv.DictReader(text.splitlines())
    columns = {str(c).strip().upper(): c for c in reader.fieldnames or []}
    if "NODE_ID" not in columns:
        raise CityError(
            f"The signal list {path} has no NODE_ID column (its header is "
            f"{list(reader.fieldnames or [])}); write one NODE_ID per row under a NODE_ID header."
        )
    column = columns["NODE_ID"]
    return {v for row in reader if (v := _id(row.get(column))) is not None}


def _open_maybe_gz(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return path.open("rb")


def _iter_osm_signals(path: Path) -> Iterator[tuple[float, float]]:
    with _open_maybe_gz(path) as fh:
        for _event, elem in ElementTree.iterparse(fh, events=("end",)):
            if elem.tag == "node":
                tags = {t.get("k"): t.get("v") for t in elem.iter("tag")}
                if tags.get("highway") == "traffic_signals":
                    lon, lat = _number(elem.get("lon")), _number(elem.get("lat"))
                    if lon is not None and lat is not None:
                        yield lon, lat
                elem.clear()
            elif elem.tag in ("way", "relation"):
                elem.clear()


def _read_osm_signals(path: Path) -> list[tuple[float, float]]:
    """The lon/lat of every ``highway=traffic_signals`` node of an OSM XML file."""
    if not path.exists():
        raise CityError(f"The OSM file {path} given for signals does not exist.")
    try:
        return list(_iter_osm_signals(path))
    except (ElementTree.ParseError, OSError, EOFError) as exc:
        raise CityError(
            f"The OSM file {path} given for signals is not OSM XML ({exc}); give an .osm "
            "(or .osm.gz) file, e.g. an export of the same area."
        ) from exc


def _match_points(points: list[tuple[float, float]], nodes: dict[str, _Node]) -> set[str]:
    """The nodes nearest to each point within :data:`SIGNAL_MATCH_RADIUS_M`."""
    if not points or not nodes:
        return set()
    geopandas = need("geopandas", "The node-link importer")
    shapely = need("shapely", "The node-link importer")
    ids = list(nodes)
    node_frame = geopandas.GeoDataFrame(
        {"id": ids},
        geometry=geopandas.points_from_xy([nodes[k].lon for k in ids], [nodes[k].lat for k in ids]),
        crs=WGS84,
    )
    metric = node_frame.estimate_utm_crs()
    node_xy = node_frame.to_crs(metric)
    point_xy = geopandas.GeoSeries(
        geopandas.points_from_xy([p[0] for p in points], [p[1] for p in points]), crs=WGS84
    ).to_crs(metric)
    tree = shapely.STRtree(node_xy.geometry.values)
    pairs = tree.query_nearest(point_xy.values, max_distance=SIGNAL_MATCH_RADIUS_M)
    return {ids[int(j)] for j in pairs[1]}


# --------------------------------------------------------------------------- turns


def _turn_type(value: Any) -> str:
    number = _number(value)
    if number is not None and number.is_integer():
        return f"{int(number):03d}"
    return _text(value)


def _turn_prohibitions(
    path: Path, nodes: dict[str, _Node], links: dict[str, _Link], report: dict[str, Any]
) -> list[tuple[str, str]]:
    """``(from_edge, to_edge)`` of every prohibited turn of ``TURNINFO.dbf`` at a kept node."""
    pyogrio = need("pyogrio", "The node-link importer")
    if not path.exists():
        raise CityError(f"The turn table {path} does not exist.")
    encoding = _encoding(path)
    try:
        frame = pyogrio.read_dataframe(path, encoding=encoding, read_geometry=False)
    except Exception as exc:
        raise CityError(
            f"The turn table {path} is not a dBASE (.dbf) file GDAL can read ({exc}); give "
            "the TURNINFO.dbf of the node-link."
        ) from exc
    frame.columns = [str(c).upper() for c in frame.columns]
    missing = [f for f in TURN_REQUIRED if f not in frame.columns]
    if missing:
        raise CityError(
            f"The turn table {path} has no field {', '.join(missing)}; TURNINFO needs "
            f"{', '.join(TURN_REQUIRED)} (its fields are: {', '.join(frame.columns)})."
        )
    deletes: dict[tuple[str, str], None] = {}
    unknown = not_adjacent = outside = uturns = other = 0
    for row in frame.itertuples(index=False):
        data = row._asdict()
        kind = _turn_type(data["TURN_TYPE"])
        node_id = _id(data["NODE_ID"])
        if kind in UTURN_TURN_TYPES:
            uturns += 1
        if kind not in PROHIBITED_TURN_TYPES:
            other += 1
            continue
        if node_id not in nodes:
            outside += 1
            continue
        start, end = _id(data["ST_LINK"]) or "", _id(data["ED_LINK"]) or ""
        if start not in links or end not in links:
            unknown += 1
            continue
        if links[start].to_node != links[end].from_node:
            not_adjacent += 1
            continue
        deletes[start, end] = None
    if unknown or not_adjacent:
        log.warning(
            "%s: %d prohibited turns name links not in the network, %d join links that do "
            "not meet; they are ignored",
            path,
            unknown,
            not_adjacent,
        )
    report["turn_rows_read"] = len(frame)
    report["turn_prohibitions_applied"] = len(deletes)
    report["turn_prohibitions_unknown"] = unknown
    report["turn_prohibitions_not_adjacent"] = not_adjacent
    report["turn_prohibitions_outside"] = outside
    report["turn_uturns_ignored"] = uturns
    report["turn_rows_other"] = other
    return list(deletes)


# --------------------------------------------------------------------------- netconvert


def _shape(link: _Link, nodes: dict[str, _Node]) -> list[tuple[float, float]]:
    """The link's geometry from its F_NODE to its T_NODE, ends snapped to the nodes."""
    start, end = nodes[link.from_node], nodes[link.to_node]
    coords = list(link.shape_lonlat)
    if len(coords) >= 2:

        def d2(p: tuple[float, float], n: _Node) -> float:
            return (p[0] - n.lon) ** 2 + (p[1] - n.lat) ** 2

        if d2(coords[0], start) + d2(coords[-1], end) > d2(coords[0], end) + d2(coords[-1], start):
            coords.reverse()  # digitised against the direction of travel
        inner = coords[1:-1]
    else:
        inner = []
    return [(start.lon, start.lat), *inner, (end.lon, end.lat)]


def _write_plain_xml(
    work: Path,
    nodes: dict[str, _Node],
    links: list[_Link],
    signals: frozenset[str],
    deletes: list[tuple[str, str]],
) -> dict[str, Path]:
    """Write the plain node, edge, type (and connection) files in lon/lat; their paths."""
    files = {
        "nodes": work / "nodelink.nod.xml",
        "edges": work / "nodelink.edg.xml",
        "types": work / "nodelink.typ.xml",
    }
    node_lines = ["<nodes>"]
    for node in nodes.values():
        kind = "traffic_light" if node.id in signals else "priority"
        node_lines.append(
            f'  <node id="{node.id}" x="{node.lon:.8f}" y="{node.lat:.8f}" type="{kind}"/>'
        )
    node_lines.append("</nodes>")
    edge_lines = ["<edges>"]
    for lk in links:
        shape = " ".join(f"{x:.8f},{y:.8f}" for x, y in _shape(lk, nodes))
        priority = 109 - lk.rank if lk.rank in RANK_CLASS and lk.rank is not None else 1
        attrs = (
            f'id="{lk.id}" from="{lk.from_node}" to="{lk.to_node}" type="{lk.road_class}" '
            f'numLanes="{lk.lanes}" speed="{lk.speed_kph / 3.6:.2f}" priority="{priority}" '
            f'shape="{shape}"'
        )
        if lk.name:
            attrs += f" name={quoteattr(lk.name)}"
        edge_lines.append(f"  <edge {attrs}/>")
    edge_lines.append("</edges>")
    type_lines = ["<types>"]
    for road_class, (lanes, speed_kph, priority) in CLASS_TYPES.items():
        type_lines.append(
            f'  <type id="{road_class}" numLanes="{lanes}" speed="{speed_kph / 3.6:.2f}" '
            f'priority="{priority}"/>'
        )
    type_lines.append("</types>")
    files["nodes"].write_text("\n".join(node_lines) + "\n", encoding="utf-8")
    files["edges"].write_text("\n".join(edge_lines) + "\n", encoding="utf-8")
    files["types"].write_text("\n".join(type_lines) + "\n", encoding="utf-8")
    if deletes:
        files["connections"] = work / "nodelink.con.xml"
        con_lines = ["<connections>"]
        con_lines += [f'  <delete from="{a}" to="{b}"/>' for a, b in deletes]
        con_lines.append("</connections>")
        files["connections"].write_text("\n".join(con_lines) + "\n", encoding="utf-8")
    return files


def _netconvert(
    work: Path,
    nodes: dict[str, _Node],
    links: list[_Link],
    signals: frozenset[str],
    deletes: list[tuple[str, str]],
    *,
    what: str,
) -> Path:
    files = _write_plain_xml(work, nodes, links, signals, deletes)
    net_file = work / "nodelink.net.xml"
    args: list[str | Path] = [
        "--node-files", files["nodes"].name,
        "--edge-files", files["edges"].name,
        "--type-files", files["types"].name,
        "-o", net_file.name,
        *NETCONVERT_OPTIONS,
    ]  # fmt: skip
    if "connections" in files:
        args += ["--connection-files", files["connections"].name]
    run_tool("netconvert", args, what=f"building the network of {what}", cwd=work)
    return net_file


def _read_net_back(net_file: Path) -> tuple[dict[str, str], list[str], int]:
    """The ``<location>`` attributes, the normal edge ids and the signal count of a net."""
    location: dict[str, str] = {}
    edges: list[str] = []
    n_tls = 0
    try:
        for _event, elem in ElementTree.iterparse(net_file, events=("end",)):
            if elem.tag == "location":
                location = dict(elem.attrib)
            elif elem.tag == "edge":
                if elem.get("function", "normal") == "normal" and elem.get("id"):
                    edges.append(str(elem.get("id")))
                elem.clear()
            elif elem.tag == "junction":
                n_tls += elem.get("type", "").startswith("traffic_light")
                elem.clear()
    except (ElementTree.ParseError, OSError) as exc:
        raise CityError(f"netconvert wrote an unreadable network {net_file}: {exc}") from exc
    return location, edges, n_tls


def _class_of_edge(edge_id: str, link_class: dict[str, str]) -> str:
    """The class of a net edge: its LINK_ID's, also after netconvert split it (``id#1``)."""
    for candidate in (edge_id, edge_id.split("#", 1)[0], edge_id.rsplit(".", 1)[0]):
        if candidate in link_class:
            return link_class[candidate]
    log.warning("net edge %s matches no LINK_ID; it is classed local", edge_id)
    return "local"


def _source_files(
    node_shp: Path,
    link_shp: Path,
    turninfo: Path | None,
    signals_from: Path | None,
    signals_csv: Path | None,
) -> list[Path]:
    files: list[Path] = []
    for shp in (node_shp, link_shp):
        files += [p for s in _SIDECARS if (p := _sidecar(shp, s)) is not None]
    if turninfo is not None:
        turn = Path(turninfo)
        files += [p for s in (".dbf", ".cpg") if (p := _sidecar(turn, s)) is not None]
    files += [Path(p) for p in (signals_from, signals_csv) if p is not None]
    return files
