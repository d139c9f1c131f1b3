"""Turn whatever OSM file a user has into plain OSM XML that netconvert and osmnx read.

Users bring OpenStreetMap data in several shapes:

* plain OSM XML (``.osm``, also gzip- or bzip2-compressed: ``.osm.gz``, ``.osm.bz2``),
* PBF (``.osm.pbf``), which netconvert cannot read: it is converted with pyosmium,
* an Overpass ``out geom`` export, whose ways carry their coordinates on
  ``<nd ref lat lon>`` and which often has no ``<node>`` element for them: netconvert
  then says "No nodes loaded" and osmnx "Some edges missing nodes". The missing nodes
  are written from the ``nd`` coordinates (:attr:`PreparedOsm.repaired_nodes`).

:func:`prepare_osm` reads the file in three streaming passes (nodes, ways, then
everything again to write), so a large file never sits in memory as a DOM; only the
ids of nodes (and, with a bbox, of the nodes inside it and the kept ways) are held.
With a bbox (south, west, north, east in degrees) the data is clipped: a way is kept when
at least one of its nodes lies inside, with all its nodes (netconvert and osmnx need
whole geometries); tagged nodes inside the bbox (POIs) are kept too; relations keep the
members that survive. The output is ordered nodes, ways, relations, as OSM XML requires.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import math
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from city_models.importers.base import need
from twin.errors import CityError

log = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]  # south, west, north, east (degrees)
Tags = list[tuple[str, str]]

PBF_MAGIC = b"OSMHeader"
_HEAD_BYTES = 512
_MEMBER_TYPES = {"n": "node", "w": "way", "r": "relation"}
_WAY_GEOMETRY = frozenset({"bounds", "center", "geometry"})  # Overpass extras of a way


@dataclass(frozen=True)
class PreparedOsm:
    """What :func:`prepare_osm` made of a user's OSM file.

    Attributes
    ----------
    xml
        The plain OSM XML file (nodes, then ways, then relations) for netconvert/osmnx.
    format
        What the source was: ``"xml"``, ``"pbf"`` or ``"overpass_geom"`` (an Overpass
        ``out geom`` export, whose ways carry their coordinates).
    repaired_nodes
        Nodes written from the coordinates on ``<nd>`` elements (Overpass exports).
    clipped
        True when a bbox was applied.
    counts
        Nodes, ways and relations written.
    """

    xml: Path
    format: str
    repaired_nodes: int
    clipped: bool
    counts: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class _Node:
    id: int
    lat: float | None
    lon: float | None
    tags: Tags


@dataclass(slots=True)
class _Way:
    id: int
    refs: list[int]
    coords: list[tuple[float, float] | None] | None  # (lat, lon) from <nd>, Overpass geom
    tags: Tags
    geometry: bool = False  # had <bounds>/<center>/<geometry> children (Overpass)


@dataclass(slots=True)
class _Relation:
    id: int
    members: list[tuple[str, int, str]]  # (type, ref, role)
    tags: Tags


_Object = _Node | _Way | _Relation
_Reader = Callable[[frozenset[str]], Iterator[_Object]]


# --------------------------------------------------------------------------- public


def prepare_osm(src: Path, *, work: Path, bbox: BBox | None = None) -> PreparedOsm:
    """Convert, repair and clip an OSM file into plain OSM XML under ``work``.

    Parameters
    ----------
    src
        The user's file: OSM XML (optionally ``.gz``/``.bz2``), PBF or an Overpass
        export. The format is told from the content, not the name; a file named
        ``*.pbf`` must really be PBF.
    work
        Folder for the output (created if missing); the source is never changed.
    bbox
        ``(south, west, north, east)`` in degrees, or ``None`` to keep everything.

    Raises
    ------
    CityError
        The file is missing, empty, not OSM, not well-formed (the message names the line
        and column), has no ``highway=*`` ways, or none inside the bbox; or the bbox is
        invalid. Every message names the file.
    """
    if bbox is not None:
        bbox = check_bbox(bbox, src)
    kind, opener = detect_format(src)
    reader = _pbf_reader(src) if kind == "pbf" else _xml_reader(src, opener)
    work.mkdir(parents=True, exist_ok=True)
    out = _output_path(src, work)
    result = _convert(src, reader, out=out, bbox=bbox)
    fmt = "pbf" if kind == "pbf" else ("overpass_geom" if result.geometry else "xml")
    log.info(
        "prepared %s (%s) -> %s: %d nodes (%d repaired), %d ways, %d relations%s",
        src,
        fmt,
        out,
        result.counts["nodes"],
        result.repaired,
        result.counts["ways"],
        result.counts["relations"],
        f", clipped to {_fmt_bbox(bbox)}" if bbox else "",
    )
    return PreparedOsm(
        xml=out,
        format=fmt,
        repaired_nodes=result.repaired,
        clipped=bbox is not None,
        counts=result.counts,
    )


def check_bbox(bbox: Iterable[float], src: Path | None = None) -> BBox:
    """Validate a ``(south, west, north, east)`` bbox in degrees; return it as floats.

    Raises
    ------
    CityError
        Not four finite numbers, out of range, or south >= north / west >= east.
    """
    where = f" for {src}" if src is not None else ""
    allowed = (
        "a bbox is S,W,N,E (south, west, north, east) in degrees with "
        "-90 <= S < N <= 90 and -180 <= W < E <= 180"
    )
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise CityError(f"Invalid bbox {bbox!r}{where}: {allowed}.") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise CityError(f"Invalid bbox {bbox!r}{where}: {allowed}.")
    s, w, n, e = values
    problems = []
    if not (-90.0 <= s <= 90.0 and -90.0 <= n <= 90.0):
        problems.append("a latitude is outside -90..90")
    if not (-180.0 <= w <= 180.0 and -180.0 <= e <= 180.0):
        problems.append("a longitude is outside -180..180")
    if s >= n:
        problems.append(f"south {s:g} is not below north {n:g}")
    if w >= e:
        problems.append(f"west {w:g} is not below east {e:g}")
    if problems:
        hint = ""
        if abs(s) > 90 or abs(n) > 90:
            hint = " (longitude first? give S,W,N,E: latitude, longitude, latitude, longitude)"
        raise CityError(
            f"Invalid bbox {_fmt_bbox(values)}{where}: {'; '.join(problems)}{hint}; {allowed}."
        )
    return s, w, n, e


def detect_format(src: Path) -> tuple[str, Callable[[Path], IO[bytes]]]:
    """``("pbf" | "xml", opener)`` from the file's first bytes (gzip/bzip2 XML is opened
    through the decompressor). The name only matters for ``*.pbf``, which must be PBF.

    Raises
    ------
    CityError
        Missing, empty, not OSM data, or a ``*.pbf`` that is not PBF.
    """
    if not src.exists():
        raise CityError(f"OSM file {src} does not exist.")
    if src.is_dir():
        raise CityError(f"OSM file {src} is a folder; give the .osm or .osm.pbf file.")
    try:
        with src.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise CityError(f"Cannot read OSM file {src}: {exc.strerror}.") from exc
    named_pbf = src.name.lower().endswith(".pbf")
    if not head:
        if named_pbf:
            raise CityError(
                f"{src} is not an OSM PBF file (it is empty); "
                "export PBF again or give the .osm XML."
            )
        raise CityError(f"OSM file {src} is empty; export it again.")
    if _is_pbf(head):
        return "pbf", _open_plain
    opener: Callable[[Path], IO[bytes]] = _open_plain
    what = "compressed data"
    if head[:2] == b"\x1f\x8b":
        opener, what = _open_gzip, "gzip-compressed data"
    elif head[:3] == b"BZh":
        opener, what = _open_bz2, "bzip2-compressed data"
    if opener is not _open_plain:
        try:
            with opener(src) as fh:
                head = fh.read(_HEAD_BYTES)
        except (OSError, EOFError) as exc:
            raise CityError(f"{src} holds {what} that cannot be unpacked ({exc}).") from exc
    looks = _describe(head)
    if named_pbf:
        if looks == "it holds XML":
            looks = "it holds XML, so name it .osm"
        raise CityError(
            f"{src} is not an OSM PBF file ({looks}); export PBF again or give the .osm XML."
        )
    if looks != "it holds XML":
        raise CityError(
            f"{src} is not OSM data ({looks}); give an OSM XML (.osm) or PBF (.osm.pbf) file."
        )
    return "xml", opener


# --------------------------------------------------------------------------- detection


def _is_pbf(head: bytes) -> bool:
    """A PBF file starts with a 4-byte BlobHeader length, then field 1 ``"OSMHeader"``."""
    return (
        len(head) >= 15
        and head[4] == 0x0A
        and head[5] == len(PBF_MAGIC)
        and (head[6 : 6 + len(PBF_MAGIC)] == PBF_MAGIC)
    )


def _describe(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        lower = text[:200].lower()
        if b"<html" in lower or b"<!doctype html" in lower:
            return "it is an HTML page, perhaps an error page saved by a failed download"
        return "it holds XML"
    if text.startswith((b"{", b"[")):
        return "it holds JSON; export with [out:xml] or give the PBF"
    if head[:2] == b"\x1f\x8b":
        return "it is gzip-compressed"
    if head[:4] == b"PK\x03\x04":
        return "it is a ZIP archive; unpack it first"
    return f"it starts with the bytes {head[:8].hex(' ')}"


def _open_plain(path: Path) -> IO[bytes]:
    return path.open("rb")


def _open_gzip(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb")  # type: ignore[return-value]


def _open_bz2(path: Path) -> IO[bytes]:
    return bz2.open(path, "rb")


# --------------------------------------------------------------------------- readers


def _xml_reader(src: Path, opener: Callable[[Path], IO[bytes]]) -> _Reader:
    def read(kinds: frozenset[str]) -> Iterator[_Object]:
        return _iter_xml(src, opener, kinds)

    return read


def _iter_xml(
    src: Path, opener: Callable[[Path], IO[bytes]], kinds: frozenset[str]
) -> Iterator[_Object]:
    """Stream the top-level elements of an OSM XML file; each is cleared once read."""
    try:
        with opener(src) as fh:
            depth = 0
            root: ElementTree.Element | None = None
            for event, elem in ElementTree.iterparse(fh, events=("start", "end")):
                if event == "start":
                    depth += 1
                    if root is None:
                        root = elem
                        _check_root(src, elem.tag)
                    continue
                depth -= 1
                if depth != 1:
                    continue
                tag = elem.tag
                if tag in kinds:
                    if _skipped(elem):
                        pass
                    elif tag == "node":
                        yield _xml_node(src, elem)
                    elif tag == "way":
                        yield _xml_way(src, elem)
                    elif tag == "relation":
                        yield _xml_relation(src, elem)
                elif tag == "remark" and "node" in kinds:
                    _remark(src, elem.text or "")
                if root is not None:
                    root.clear()
    except ElementTree.ParseError as exc:
        line, col = exc.position
        reason = str(exc).split(":", 1)[0]
        raise CityError(
            f"{src}: line {line}, column {col + 1}: the file is not well-formed OSM XML "
            f"({reason}); export it again (a download cut short ends mid-element)."
        ) from exc
    except (OSError, EOFError) as exc:
        raise CityError(f"Cannot read OSM file {src}: {exc}.") from exc


def _check_root(src: Path, tag: str) -> None:
    if tag == "osm":
        return
    if tag == "osmChange":
        raise CityError(f"{src} is an OSM change file (<osmChange>), not map data.")
    if tag.lower() == "html":
        raise CityError(
            f"{src} is an HTML page, not OSM XML (perhaps a failed download's error page)."
        )
    raise CityError(f"{src} is not OSM XML: its root element is <{tag}>, not <osm>.")


def _skipped(elem: ElementTree.Element) -> bool:
    """JOSM marks deleted objects with ``action="delete"``; history has ``visible="false"``."""
    return elem.get("action") == "delete" or elem.get("visible") == "false"


def _remark(src: Path, text: str) -> None:
    text = " ".join(text.split())
    if "error" in text.lower():
        raise CityError(
            f"{src} ends with an Overpass error, so the export is incomplete: {text!r}; "
            "run the query again (a larger [timeout:] or a smaller area)."
        )
    log.warning("%s: Overpass remark: %s", src, text)


def _int_attr(src: Path, elem: ElementTree.Element, name: str) -> int:
    value = elem.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CityError(
            f"{src}: a <{elem.tag}> element has {name}={value!r}, not an integer; "
            "the file is not valid OSM XML."
        ) from None


def _coord(src: Path, elem: ElementTree.Element, owner: str) -> tuple[float, float] | None:
    lat, lon = elem.get("lat"), elem.get("lon")
    if lat is None or lon is None:
        return None
    try:
        return float(lat), float(lon)
    except ValueError:
        raise CityError(
            f"{src}: {owner} has lat={lat!r} lon={lon!r}, not numbers; "
            "the file is not valid OSM XML."
        ) from None


def _tags(elem: ElementTree.Element) -> Tags:
    return [(t.get("k", ""), t.get("v", "")) for t in elem if t.tag == "tag"]


def _xml_node(src: Path, elem: ElementTree.Element) -> _Node:
    nid = _int_attr(src, elem, "id")
    ll = _coord(src, elem, f"node {nid}")
    return _Node(nid, ll[0] if ll else None, ll[1] if ll else None, _tags(elem))


def _xml_way(src: Path, elem: ElementTree.Element) -> _Way:
    wid = _int_attr(src, elem, "id")
    refs: list[int] = []
    coords: list[tuple[float, float] | None] = []
    geometry = False
    for child in elem:
        if child.tag == "nd":
            refs.append(_int_attr(src, child, "ref"))
            ll = _coord(src, child, f"way {wid}")
            coords.append(ll)
            geometry = geometry or ll is not None
        elif child.tag in _WAY_GEOMETRY:
            geometry = True
    return _Way(wid, refs, coords if geometry else None, _tags(elem), geometry)


def _xml_relation(src: Path, elem: ElementTree.Element) -> _Relation:
    rid = _int_attr(src, elem, "id")
    members = [
        (child.get("type", ""), _int_attr(src, child, "ref"), child.get("role", ""))
        for child in elem
        if child.tag == "member"
    ]
    return _Relation(rid, members, _tags(elem))


def _pbf_reader(src: Path) -> _Reader:
    osmium = need("osmium", "Reading OSM PBF files")

    def read(kinds: frozenset[str]) -> Iterator[_Object]:
        bits = {"node": osmium.osm.NODE, "way": osmium.osm.WAY, "relation": osmium.osm.RELATION}
        entities = osmium.osm.NOTHING
        for kind in sorted(kinds):
            entities |= bits[kind]
        return _iter_pbf(src, osmium, entities)

    return read


def _iter_pbf(src: Path, osmium: Any, entities: Any) -> Iterator[_Object]:
    try:
        for obj in osmium.FileProcessor(str(src), entities):
            tags = [(t.k, t.v) for t in obj.tags]
            if obj.is_node():
                loc = obj.location
                if loc.valid():
                    yield _Node(obj.id, loc.lat, loc.lon, tags)
                else:
                    yield _Node(obj.id, None, None, tags)
            elif obj.is_way():
                yield _Way(obj.id, [n.ref for n in obj.nodes], None, tags)
            elif obj.is_relation():
                members = [(_MEMBER_TYPES.get(m.type, m.type), m.ref, m.role) for m in obj.members]
                yield _Relation(obj.id, members, tags)
    except RuntimeError as exc:
        raise CityError(f"{src} could not be read as OSM PBF ({exc}); export it again.") from exc


# --------------------------------------------------------------------------- conversion


@dataclass
class _Result:
    counts: dict[str, int]
    repaired: int
    geometry: bool


@dataclass
class _Extent:
    s: float = math.inf
    w: float = math.inf
    n: float = -math.inf
    e: float = -math.inf

    def add(self, lat: float, lon: float) -> None:
        self.s, self.n = min(self.s, lat), max(self.n, lat)
        self.w, self.e = min(self.w, lon), max(self.e, lon)

    @property
    def empty(self) -> bool:
        return self.s > self.n

    def text(self) -> str:
        return f"{self.s:.5f},{self.w:.5f},{self.n:.5f},{self.e:.5f}"


def _inside(bbox: BBox, lat: float, lon: float) -> bool:
    return bbox[0] <= lat <= bbox[2] and bbox[1] <= lon <= bbox[3]


def _has_highway(tags: Tags) -> bool:
    return any(k == "highway" for k, _ in tags)


def _convert(src: Path, read: _Reader, *, out: Path, bbox: BBox | None) -> _Result:
    # pass 1: the nodes that exist, and those inside the bbox
    defined: set[int] = set()
    inside: set[int] = set()  # with a bbox: nodes inside it
    tagged_inside: set[int] = set()
    extent = _Extent()
    n_nodes = 0
    for node in read(frozenset({"node"})):
        if not isinstance(node, _Node):
            continue
        n_nodes += 1
        if node.lat is None or node.lon is None:
            continue
        defined.add(node.id)
        extent.add(node.lat, node.lon)
        if bbox is not None and _inside(bbox, node.lat, node.lon):
            inside.add(node.id)
            if node.tags:
                tagged_inside.add(node.id)

    # pass 2: the ways kept, the nodes they need, the nodes to repair from <nd lat lon>
    kept_ways: set[int] = set()
    needed: set[int] = set()
    repair: dict[int, tuple[float, float]] = {}
    n_ways = n_highways = kept_highways = 0
    geometry = False
    road_extent = _Extent()
    for way in read(frozenset({"way"})):
        if not isinstance(way, _Way):
            continue
        n_ways += 1
        geometry = geometry or way.geometry
        coords = way.coords or [None] * len(way.refs)
        highway = _has_highway(way.tags)
        n_highways += highway
        if highway:
            for ll in coords:
                if ll is not None:
                    road_extent.add(*ll)
        if bbox is None:
            keep = True
        else:
            keep = any(
                ref in inside or (ll is not None and _inside(bbox, *ll))
                for ref, ll in zip(way.refs, coords, strict=True)
            )
        if not keep:
            continue
        resolvable = 0
        for ref, ll in zip(way.refs, coords, strict=True):
            if ref in defined:
                resolvable += 1
            elif ll is not None:
                repair.setdefault(ref, ll)
                resolvable += 1
            elif ref in repair:
                resolvable += 1
        if resolvable < 2:
            log.debug("%s: way %d has fewer than 2 nodes with coordinates; dropped", src, way.id)
            continue
        kept_ways.add(way.id)
        kept_highways += highway
        if bbox is not None:
            needed.update(way.refs)

    if n_highways == 0:
        what = f"none of its {n_ways} ways has a highway=* tag" if n_ways else "it has no ways"
        raise CityError(
            f"{src} has no roads: {what} ({n_nodes} nodes); export the roads with their "
            "nodes (e.g. the Overpass query way[highway](S,W,N,E); (._;>;); out;)."
        )
    if kept_highways == 0:
        if bbox is not None:
            span = extent
            if not road_extent.empty:
                span.add(road_extent.s, road_extent.w)
                span.add(road_extent.n, road_extent.e)
            raise CityError(
                f"There are no roads inside the bbox {_fmt_bbox(bbox)} of {src}; check the "
                "order S,W,N,E (south, west, north, east)"
                + (f"; the file's data spans {span.text()}" if not span.empty else "")
                + "."
            )
        raise CityError(
            f"{src} has {n_highways} highway=* ways but none has two nodes with coordinates; "
            "export the ways with their nodes (Overpass: (._;>;); out; or out geom;)."
        )

    def node_kept(nid: int) -> bool:
        if nid not in defined and nid not in repair:
            return False
        return bbox is None or nid in needed or nid in tagged_inside

    # pass 3: write nodes, ways and relations into three parts, then join them
    parts = [out.with_name(f".{out.name}.{k}.part") for k in ("nodes", "ways", "relations")]
    repaired = [ref for ref in repair if ref not in defined]
    written: set[int] = set()
    written_ways: set[int] = set()
    counts = {"nodes": 0, "ways": 0, "relations": 0}
    out_extent = _Extent()
    try:
        with (
            parts[0].open("w", encoding="utf-8") as f_nodes,
            parts[1].open("w", encoding="utf-8") as f_ways,
            parts[2].open("w", encoding="utf-8") as f_rels,
        ):
            for obj in read(frozenset({"node", "way", "relation"})):
                if isinstance(obj, _Node):
                    if obj.lat is None or obj.lon is None or obj.id in written:
                        continue
                    if not node_kept(obj.id):
                        continue
                    written.add(obj.id)
                    out_extent.add(obj.lat, obj.lon)
                    f_nodes.write(_node_xml(obj.id, obj.lat, obj.lon, obj.tags))
                    counts["nodes"] += 1
                elif isinstance(obj, _Way):
                    if obj.id not in kept_ways or obj.id in written_ways:
                        continue
                    written_ways.add(obj.id)  # a duplicate id is written once
                    refs = [r for r in obj.refs if r in defined or r in repair]
                    f_ways.write(_way_xml(obj.id, refs, obj.tags))
                    counts["ways"] += 1
                else:
                    members = [
                        m
                        for m in obj.members
                        if (m[0] == "node" and node_kept(m[1]))
                        or (m[0] == "way" and m[1] in kept_ways)
                        or (m[0] == "relation" and bbox is None)
                    ]
                    if members:
                        f_rels.write(_relation_xml(obj.id, members, obj.tags))
                        counts["relations"] += 1
            for ref in sorted(repaired):
                lat, lon = repair[ref]
                out_extent.add(lat, lon)
                f_nodes.write(_node_xml(ref, lat, lon, []))
                counts["nodes"] += 1
        tmp = out.with_name(f".{out.name}.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write('<?xml version="1.0" encoding="UTF-8"?>\n')
            fh.write('<osm version="0.6" generator="CityTwin prepare_osm">\n')
            box = bbox or (out_extent.s, out_extent.w, out_extent.n, out_extent.e)
            if not out_extent.empty:
                fh.write(
                    f'  <bounds minlat="{box[0]:.7f}" minlon="{box[1]:.7f}" '
                    f'maxlat="{box[2]:.7f}" maxlon="{box[3]:.7f}"/>\n'
                )
            for part in parts:
                with part.open("r", encoding="utf-8") as fp:
                    shutil.copyfileobj(fp, fh)
            fh.write("</osm>\n")
        tmp.replace(out)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    return _Result(counts=counts, repaired=len(repaired), geometry=geometry)


# --------------------------------------------------------------------------- writing


def _fmt_bbox(bbox: Iterable[float]) -> str:
    return ",".join(f"{v:g}" for v in bbox)


def _tags_xml(tags: Tags) -> str:
    return "".join(f"    <tag k={quoteattr(k)} v={quoteattr(v)}/>\n" for k, v in tags)


def _node_xml(nid: int, lat: float, lon: float, tags: Tags) -> str:
    head = f'  <node id="{nid}" lat="{lat:.7f}" lon="{lon:.7f}"'
    if not tags:
        return head + "/>\n"
    return f"{head}>\n{_tags_xml(tags)}  </node>\n"


def _way_xml(wid: int, refs: list[int], tags: Tags) -> str:
    nds = "".join(f'    <nd ref="{r}"/>\n' for r in refs)
    return f'  <way id="{wid}">\n{nds}{_tags_xml(tags)}  </way>\n'


def _relation_xml(rid: int, members: list[tuple[str, int, str]], tags: Tags) -> str:
    body = "".join(
        f'    <member type={quoteattr(t)} ref="{ref}" role={quoteattr(role)}/>\n'
        for t, ref, role in members
    )
    return f'  <relation id="{rid}">\n{body}{_tags_xml(tags)}  </relation>\n'


def _output_path(src: Path, work: Path) -> Path:
    name = src.name
    for suffix in (".gz", ".bz2", ".pbf", ".osm", ".xml"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    out = work / f"{name or 'map'}.osm"
    if out.resolve() == src.resolve():
        out = work / f"{name or 'map'}.prepared.osm"
    return out
