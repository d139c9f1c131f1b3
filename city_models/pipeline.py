"""The one pipeline after the source: an imported network becomes a city folder.

Every importer (:mod:`city_models.importers`) hands a :class:`SourceNet`; from there
the steps are the same for OpenStreetMap, an engineer's SUMO model and the node-link:

1. the net is copied into the city (``city.net.xml.gz``) and its geo-reference read;
2. signal plans: Korean-practice plans designed for every guessed signal
   (:func:`city_models.signals.design_plan_general`; a signal with a single stage is
   unset and reported), or the model's own programs kept;
3. loops at the stop line and upstream on every signalized approach;
4. POIs (tagged in the source, or from ``--pois POIS.toml``) snapped to the nearest
   drivable edge that has the POI on its right (right-hand traffic);
5. VMS sites on arterials before signalized junctions, by betweenness;
6. the flood zone from a GeoJSON polygon, or none;
7. the demand: the model's own routes, and always the gravity OD model over zones cut
   from the network, scaled by ``peak_trips_per_h`` or by road capacity;
8. the manifest (source hashes, importer version, options), the import report
   (``import_report.json``), a ``city.sumocfg`` that opens in sumo-gui; the plans are
   checked (:func:`city_models.plan_check.check_city_plans`) before the folder is kept.

Cities are cached by the hash of their sources and options.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import logging
import math
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import networkx as nx

from city_models.build import (
    GENERATOR_VERSION,
    STANDARD_FILES,
    City,
    _sumocfg,
    hash_files,
    load_city,
    publish_city,
    signal_spec,
)
from city_models.demand import (
    demand_load,
    lane_km,
    make_demand_model,
    mean_trip_length_m,
    sample_trips,
    trips_for_load,
    write_trips,
)
from city_models.features import detectors_xml, edges_in_polygon, make_detectors, shapes_xml
from city_models.geo import Projection
from city_models.graph import path_usage
from city_models.importers.base import (
    IMPORTER_VERSION,
    POI_KINDS,
    PoiCandidate,
    SourceNet,
    file_sha256,
)
from city_models.manifest import (
    MANIFEST_NAME,
    CityFiles,
    GeoRef,
    Manifest,
    PoiSpec,
    SourceSpec,
    VmsSpec,
    ZoneSpec,
    write_manifest,
)
from city_models.net import EdgeInfo, NetInfo, read_net
from city_models.plan_check import conflict_matrix
from city_models.presets import SUWON_LAT, SUWON_LON, CityPreset
from city_models.signals import SignalPlan, design_plan_general, plans_to_xml
from twin.engine.sumo_tools import run_tool, sumo_version
from twin.errors import CityError

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

REPORT_NAME = "import_report.json"
PIPELINE_VERSION = "1.1.0"  # 1.1.0: default demand by load (vehicle-km per lane-km)
# The AM peak's load when the source brings no volume, in vehicle-km driven per hour per
# lane-km (city_models.demand.demand_load): the district's calibrated Korean peak, 20,000
# trips/h of 1.53 km over 263.8 lane-km (docs/CALIBRATION.md, docs/IMPORT.md)
PEAK_LOAD_VKM_PER_LANE_KM = 116.0
VMS_PER_SIGNAL = 48 / 893  # Suwon: 40-55 VMS for 893 signals
SNAP_RIGHT_SLACK_M = 25.0  # a POI prefers the edge it is on the right of, if this near

IMPORT_PARAMS = CityPreset(
    name="imported",
    n_lines=0,
    spacing_m=(0.0, 0.0),
    arterial_every=0,
    arterial_phase=0,
    warp_m=0.0,
    jitter_m=0.0,
    local_drop_share=0.0,
    n_signals=None,
    peak_trips_per_h=0,
    n_hospitals=0,
    n_fire_stations=0,
    n_shelters=0,
    n_vms=0,
)
"""The design rules an imported city's plans and loops follow (the generator's own:
yellow 3 s, all-red 2 s, walk 7 s + crossing at 1.0 m/s, minimum green 10 s, left 7 s,
cycle 120 s, loops 100 m upstream, 30-s aggregation)."""


@dataclass(frozen=True)
class PipelineOptions:
    """What every importer accepts besides its source."""

    pois_toml: Path | None = None
    flood_geojson: Path | None = None
    peak_trips_per_h: int | None = None
    peak_load_vkm_per_lane_km: float = PEAK_LOAD_VKM_PER_LANE_KM
    n_vms: int | None = None
    origin_lat: float = SUWON_LAT  # where a net without a geo-reference is placed
    origin_lon: float = SUWON_LON
    seed: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pois_toml": file_sha256(self.pois_toml) if self.pois_toml else None,
            "flood_geojson": file_sha256(self.flood_geojson) if self.flood_geojson else None,
            "peak_trips_per_h": self.peak_trips_per_h,
            "peak_load_vkm_per_lane_km": self.peak_load_vkm_per_lane_km,
            "n_vms": self.n_vms,
            "origin": [self.origin_lat, self.origin_lon],
            "seed": self.seed,
        }


def import_key(source_kind: str, files: dict[str, str], options: dict[str, Any]) -> str:
    """Cache key of an import: the sources' hashes, the options, the versions."""
    blob = json.dumps(
        {
            "kind": source_kind,
            "files": files,
            "options": options,
            "importer": IMPORTER_VERSION,
            "pipeline": PIPELINE_VERSION,
            "generator": GENERATOR_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_import(out: Path, key: str) -> City | None:
    """The city already imported into ``out`` with the same key, if there is one."""
    if not (out / MANIFEST_NAME).exists():
        return None
    try:
        city = load_city(out)
    except CityError:
        log.warning("city folder %s is incomplete; importing again", out)
        return None
    return city if city.manifest.cache_key == key else None


# --------------------------------------------------------------------------- geo
def read_georef(net_file: Path) -> GeoRef | None:
    """The net's ``<location>``: its projection and offset, or ``None`` when the net
    has no geo-reference (``projParameter="!"``)."""
    opener: Any = gzip.open if net_file.suffix == ".gz" else open
    with opener(net_file, "rb") as fh:
        for _ev, el in ElementTree.iterparse(fh, events=("start",)):
            if el.tag == "location":
                proj = el.attrib.get("projParameter", "!")
                ox, oy = (float(v) for v in el.attrib.get("netOffset", "0,0").split(","))
                return None if proj in ("!", "") else GeoRef(proj_params=proj, net_offset=(ox, oy))
            if el.tag in ("edge", "junction"):
                break
    return None


def drivable_edges(net_file: Path) -> set[str]:
    """Normal edges with at least one lane a passenger car may use."""
    return set(drivable_lane_counts(net_file))


def drivable_lane_counts(net_file: Path) -> dict[str, int]:
    """Per normal edge with a lane a passenger car may use: how many it has (sidewalks,
    bike and bus lanes left out)."""
    opener: Any = gzip.open if net_file.suffix == ".gz" else open
    out: dict[str, int] = {}
    with opener(net_file, "rb") as fh:
        edge_id, internal = "", False
        for ev, el in ElementTree.iterparse(fh, events=("start", "end")):
            if ev == "start" and el.tag == "edge":
                edge_id, internal = el.attrib.get("id", ""), "function" in el.attrib
            elif ev == "end" and el.tag == "lane" and not internal:
                allow = el.attrib.get("allow")
                disallow = el.attrib.get("disallow", "").split()
                ok = (
                    ("passenger" in allow.split() or allow == "all")
                    if allow
                    else ("passenger" not in disallow and "all" not in disallow)
                )
                if ok:
                    out[edge_id] = out.get(edge_id, 0) + 1
            elif ev == "end" and el.tag == "edge":
                el.clear()
    return out


def drivable_core(net: NetInfo, drivable: set[str]) -> set[str]:
    """Drivable edges of the largest strongly connected part of the street graph."""
    graph = nx.DiGraph()
    for e in net.edges.values():
        if e.id in drivable:
            graph.add_edge(e.from_node, e.to_node)
    if graph.number_of_nodes() == 0:
        return set()
    core = max(nx.strongly_connected_components(graph), key=len)
    return {
        e.id
        for e in net.edges.values()
        if e.id in drivable and e.from_node in core and e.to_node in core
    }


# --------------------------------------------------------------------------- POIs
def read_pois_toml(path: Path) -> list[PoiCandidate]:
    """``[[pois]]`` tables: ``id``, ``kind`` (hospital | fire_station | shelter), ``lat``,
    ``lon``, optional ``name`` and ``capacity`` (shelters, vehicles)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CityError(f"POI file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise CityError(f"POI file {path} is not valid TOML: {exc}.") from None
    rows = raw.get("pois")
    if not isinstance(rows, list) or not rows:
        raise CityError(
            f"POI file {path}: expected one or more [[pois]] tables with id, kind, lat, lon "
            "(kind: hospital | fire_station | shelter)."
        )
    out: list[PoiCandidate] = []
    seen: set[str] = set()
    for k, row in enumerate(rows, start=1):
        where = f"POI file {path}, [[pois]] #{k}"
        if not isinstance(row, dict):
            raise CityError(f"{where}: expected a table.")
        unknown = set(row) - {"id", "kind", "lat", "lon", "name", "capacity"}
        if unknown:
            raise CityError(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: id, kind, lat, lon, "
                "name, capacity."
            )
        for f in ("id", "kind", "lat", "lon"):
            if f not in row:
                raise CityError(f"{where}: field '{f}' is missing.")
        pid, kind = str(row["id"]), row["kind"]
        if kind not in POI_KINDS:
            raise CityError(f"{where}: field 'kind' is {kind!r}; allowed: {', '.join(POI_KINDS)}.")
        lat, lon = row["lat"], row["lon"]
        if not isinstance(lat, int | float) or not -90 <= lat <= 90:
            raise CityError(f"{where}: field 'lat' is {lat!r}; allowed: degrees -90..90.")
        if not isinstance(lon, int | float) or not -180 <= lon <= 180:
            raise CityError(f"{where}: field 'lon' is {lon!r}; allowed: degrees -180..180.")
        cap = row.get("capacity")
        if cap is not None and (not isinstance(cap, int) or cap <= 0 or kind != "shelter"):
            raise CityError(
                f"{where}: field 'capacity' is {cap!r}; allowed: a positive whole number of "
                "vehicles, for shelters only."
            )
        if pid in seen:
            raise CityError(f"{where}: id {pid!r} is used twice in the file.")
        seen.add(pid)
        out.append(
            PoiCandidate(
                id=pid,
                kind=kind,
                name=str(row.get("name", pid)),
                lon=float(lon),
                lat=float(lat),
                capacity_veh=cap,
                preferred=True,
                source="toml",
            )
        )
    return out


def _point_on_edge(edge: EdgeInfo, p: tuple[float, float]) -> tuple[float, float, float, float]:
    """(distance, position along the edge, side) of ``p`` to the edge's shape;
    side < 0: ``p`` is on the right of the direction of travel."""
    best = (math.inf, 0.0, 0.0, 0.0)
    run = 0.0
    shape = edge.shape_xy
    geo_len = sum(math.dist(a, b) for a, b in itertools.pairwise(shape)) or 1.0
    for (x0, y0), (x1, y1) in itertools.pairwise(shape):
        dx, dy = x1 - x0, y1 - y0
        seg = math.hypot(dx, dy)
        if seg == 0:
            continue
        t = max(0.0, min(1.0, ((p[0] - x0) * dx + (p[1] - y0) * dy) / (seg * seg)))
        qx, qy = x0 + t * dx, y0 + t * dy
        d = math.hypot(p[0] - qx, p[1] - qy)
        if d < best[0]:
            side = dx * (p[1] - y0) - dy * (p[0] - x0)
            best = (d, (run + t * seg) * edge.length_m / geo_len, side, 0.0)
        run += seg
    return best


def snap_pois(
    net: NetInfo,
    candidates: list[PoiCandidate],
    *,
    projection: Projection,
    edges: set[str],
    shelter_capacity_veh: int = 500,
) -> tuple[list[PoiSpec], list[dict[str, Any]]]:
    """Each POI on the nearest edge of ``edges`` that has it on its right (within
    :data:`SNAP_RIGHT_SLACK_M` of the nearest edge at all), at its nearest point.

    Tagged POIs are numbered per kind (``hospital_1`` ...; preferred ones first: a
    hospital with ``emergency=yes``); ids from ``--pois`` are kept and must not clash.
    Returns the POIs and one report row each (id, kind, name, edge, snap distance)."""
    pool = [e for e in net.edges.values() if e.id in edges and e.length_m >= 20.0 and e.lanes >= 1]
    if not pool:
        raise CityError("The network has no drivable street to place points of interest on.")
    tagged = [c for c in candidates if c.source != "toml"]
    given = [c for c in candidates if c.source == "toml"]
    numbered: list[PoiCandidate] = []
    for kind in POI_KINDS:
        ofkind = sorted(
            (c for c in tagged if c.kind == kind), key=lambda c: (not c.preferred, c.name, c.id)
        )
        numbered += [replace(c, id=f"{kind}_{k}") for k, c in enumerate(ofkind, start=1)]
    taken = {c.id for c in numbered}
    for c in given:
        if c.id in taken:
            raise CityError(
                f"POI id {c.id!r} from --pois clashes with a POI found in the source "
                f"(tagged POIs are numbered {', '.join(k + '_N' for k in POI_KINDS)}); "
                "choose another id."
            )
    pois: list[PoiSpec] = []
    rows: list[dict[str, Any]] = []
    for c in numbered + given:
        p = projection.lonlat_to_xy(c.lon, c.lat)
        scored = sorted(((_point_on_edge(e, p), e) for e in pool), key=lambda s: s[0][0])
        nearest_d = scored[0][0][0]
        right = [s for s in scored if s[0][2] < 0 and s[0][0] <= nearest_d + SNAP_RIGHT_SLACK_M]
        (d, pos, _side, _), edge = right[0] if right else scored[0]
        pos = min(max(pos, 1.0), edge.length_m - 1.0)
        x, y = _xy_at(edge, pos)
        lon, lat = projection.xy_to_lonlat(x, y)
        cap = c.capacity_veh if c.capacity_veh else None
        if c.kind == "shelter" and cap is None:
            cap = shelter_capacity_veh
        pois.append(
            PoiSpec(
                id=c.id,
                role=c.kind,
                name=c.name,
                edge=edge.id,
                pos_m=round(pos, 2),
                x=round(x, 2),
                y=round(y, 2),
                lon=round(lon, 7),
                lat=round(lat, 7),
                capacity_veh=cap if c.kind == "shelter" else None,
            )
        )
        rows.append(
            {"id": c.id, "kind": c.kind, "name": c.name, "source": c.source, "edge": edge.id,
             "snap_m": round(d, 1), "right_side": bool(right)}
        )  # fmt: skip
    return pois, rows


def _xy_at(edge: EdgeInfo, pos_m: float) -> tuple[float, float]:
    shape = edge.shape_xy
    geo_len = sum(math.dist(a, b) for a, b in itertools.pairwise(shape)) or 1.0
    target = pos_m * geo_len / max(edge.length_m, 1e-9)
    run = 0.0
    for a, b in itertools.pairwise(shape):
        seg = math.dist(a, b)
        if run + seg >= target and seg > 0:
            t = (target - run) / seg
            return a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
        run += seg
    return shape[-1]


# --------------------------------------------------------------------------- VMS
def place_vms(
    net: NetInfo,
    *,
    classes: dict[str, str],
    core: set[str],
    n_vms: int,
    projection: Projection,
    seed: int,
) -> list[VmsSpec]:
    """Signs on arterials, 150 m before a signalized junction, on the approaches the most
    fastest paths use (betweenness), >= 600 m from a sign facing the same way (within
    45 degrees) and >= 150 m from any other."""
    signal_nodes = {t.node for t in net.tls.values()}
    cands = [
        e
        for e in net.edges.values()
        if e.id in core
        and classes.get(e.id) == "arterial"
        and e.to_node in signal_nodes
        and e.length_m >= 80.0
    ]
    if not cands or n_vms <= 0:
        return []
    usage = path_usage(net, seed=seed, samples=min(150, len(net.edges)))
    ranked = sorted(cands, key=lambda e: (-usage.get(e.id, 0.0), e.id))
    chosen: list[tuple[EdgeInfo, float, tuple[float, float]]] = []
    for e in ranked:
        if len(chosen) >= n_vms:
            break
        pos = min(max(e.length_m - 150.0, e.length_m / 2), e.length_m - 5.0)
        xy = _xy_at(e, pos)
        head = _heading_deg(e)
        ok = True
        for c, _p, cxy in chosen:
            d = math.dist(xy, cxy)
            diff = abs(head - _heading_deg(c)) % 360.0
            same = min(diff, 360.0 - diff) <= 45.0
            if d <= 150.0 or (same and d <= 600.0):
                ok = False
                break
        if ok:
            chosen.append((e, pos, xy))
    out = []
    for k, (e, pos, (x, y)) in enumerate(chosen, start=1):
        lon, lat = projection.xy_to_lonlat(x, y)
        out.append(
            VmsSpec(id=f"vms_{k}", edge=e.id, pos_m=round(pos, 2), x=round(x, 2), y=round(y, 2),
                    lon=round(lon, 7), lat=round(lat, 7), junction=e.to_node)
        )  # fmt: skip
    return out


def _heading_deg(edge: EdgeInfo) -> float:
    (x0, y0), (x1, y1) = edge.shape_xy[0], edge.shape_xy[-1]
    return math.degrees(math.atan2(y1 - y0, x1 - x0)) % 360.0


# --------------------------------------------------------------------------- zone
def read_zone_geojson(path: Path, *, projection: Projection, net: NetInfo) -> ZoneSpec:
    """The first polygon of a GeoJSON file (Polygon, MultiPolygon, Feature or
    FeatureCollection; lon/lat) as the city's flood zone ``flood_1``."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CityError(f"Flood zone file {path} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise CityError(f"Flood zone file {path} is not valid JSON: {exc}.") from None
    geom = raw
    name = "Flood zone"
    if raw.get("type") == "FeatureCollection":
        feats = raw.get("features") or []
        if not feats:
            raise CityError(f"Flood zone file {path}: the FeatureCollection has no feature.")
        geom = feats[0]
    if geom.get("type") == "Feature":
        name = str((geom.get("properties") or {}).get("name", name))
        geom = geom.get("geometry") or {}
    kind = geom.get("type")
    coords = geom.get("coordinates")
    if kind == "MultiPolygon" and coords:
        coords = coords[0]
    elif kind != "Polygon":
        raise CityError(
            f"Flood zone file {path}: geometry type {kind!r}; allowed: Polygon or "
            "MultiPolygon (lon/lat, as GeoJSON)."
        )
    try:
        ring = [(float(p[0]), float(p[1])) for p in coords[0]]
    except (TypeError, IndexError, ValueError):
        raise CityError(
            f"Flood zone file {path}: the polygon's coordinates are not [lon, lat] pairs."
        ) from None
    if len(ring) < 3:
        raise CityError(f"Flood zone file {path}: the polygon has fewer than 3 points.")
    if ring[0] == ring[-1]:
        ring = ring[:-1]
    xy = [tuple(round(v, 1) for v in projection.lonlat_to_xy(lon, lat)) for lon, lat in ring]
    poly = [(p[0], p[1]) for p in xy]
    edges = edges_in_polygon(net, poly)
    if not edges:
        raise CityError(
            f"Flood zone file {path}: no street of the city lies inside the polygon; check "
            "that coordinates are [longitude, latitude]."
        )
    lonlat = [(round(a, 7), round(b, 7)) for a, b in ring]
    return ZoneSpec(
        id="flood_1", kind="flood", name=name, polygon_xy=poly, polygon_lonlat=lonlat, edges=edges
    )


# --------------------------------------------------------------------------- signals
def install_plans(
    folder: Path, net_name: str, *, say: Progress
) -> tuple[NetInfo, list[SignalPlan], list[str]]:
    """Design a plan for every signal of the net; unset the signals that have a single
    stage; install the plans. Returns the net, the plans and the unset signal ids."""
    net = read_net(folder / net_name)
    say(f"designing Korean-practice plans for {len(net.tls)} signals")
    plans: list[SignalPlan] = []
    unset: list[str] = []
    for tid in sorted(net.tls):
        tls = net.tls[tid]
        plan = design_plan_general(net, tls, preset=IMPORT_PARAMS, conflict=conflict_matrix(tls))
        if plan is None:
            unset.append(tid)
        else:
            plans.append(plan)
    if unset:  # a junction controlled by a single-stage signal becomes a priority junction
        nodes = sorted({n for t in unset for n in _tls_nodes(net, t)})
        run_tool("netconvert", ["-s", net_name, "--tls.unset", ",".join(nodes), "-o", net_name],
                 what="unsetting single-stage signals", cwd=folder)  # fmt: skip
        net = read_net(folder / net_name)
        keep = {p.tls_id for p in plans}
        plans = [p for p in plans if p.tls_id in net.tls]
        missing = keep - set(net.tls)
        if missing:
            log.warning("signals lost while unsetting others: %s", sorted(missing))
    if plans:
        (folder / "signals.tll.xml").write_text(plans_to_xml(plans), encoding="utf-8")
        args = ["-s", net_name, "--tllogic-files", "signals.tll.xml", "-o", net_name]
        run_tool("netconvert", args, what="installing the signal plans", cwd=folder)
        net = read_net(folder / net_name)
    return net, plans, unset


def build_imported_network(
    folder: Path, *, files: CityFiles, say: Progress
) -> tuple[NetInfo, list[SignalPlan]]:
    """netconvert an imported city's plain XML files (a network variant: contraflow),
    then design and install its plans as :func:`install_plans` does on import."""
    say("building the SUMO network of the variant (netconvert)")
    args = [
        "--node-files", files.plain_nodes, "--edge-files", files.plain_edges,
        "--type-files", files.plain_types, "-o", files.net,
        "--no-turnarounds.except-deadend", "true", "--junctions.corner-detail", "5",
        "--output.street-names", "true", "--no-warnings", "true",
    ]  # fmt: skip
    run_tool("netconvert", args, what="building the network variant", cwd=folder)
    net, plans, unset = install_plans(folder, files.net, say=say)
    if unset:
        log.warning("variant: single-stage signals left unsignalized: %s", unset)
    return net, plans


def _tls_nodes(net: NetInfo, tls_id: str) -> set[str]:
    tls = net.tls[tls_id]
    nodes = {net.edges[k.from_edge].to_node for k in tls.links}
    return nodes or {tls.node}


def _kept_plans(net: NetInfo, plans: list[SignalPlan]) -> list[SignalPlan]:
    missing = sorted(set(net.tls) - {p.tls_id for p in plans})
    if missing:
        raise CityError(f"The importer kept no plan for signal(s) {missing[:10]}.")
    return plans


# --------------------------------------------------------------------------- the pipeline
def finish_city(
    source: SourceNet,
    *,
    out: Path,
    options: PipelineOptions,
    key: str,
    say: Progress | None = None,
) -> City:
    """Make a city folder of an imported network (the steps of the module doc)."""
    tell = say or (lambda msg: log.info("%s", msg))
    return publish_city(
        out,
        lambda tmp: _finish_into(tmp, source, options=options, key=key, say=tell),
        prefix=".import-",
    )


def _finish_into(
    folder: Path, source: SourceNet, *, options: PipelineOptions, key: str, say: Progress
) -> Manifest:
    files = STANDARD_FILES
    say("copying the network")
    run_tool("netconvert", ["-s", source.net_file.resolve(), "-o", files.net],
             what=f"reading the imported network {source.net_file.name}", cwd=folder)  # fmt: skip
    georef = read_georef(folder / files.net)
    if georef is None:
        log.warning("%s has no geo-reference: placed at %.4f, %.4f",
                    source.net_file.name, options.origin_lat, options.origin_lon)  # fmt: skip
    projection = Projection(
        lat0=options.origin_lat,
        lon0=options.origin_lon,
        proj_params=georef.proj_params if georef else None,
        net_offset=georef.net_offset if georef else (0.0, 0.0),
    )
    report: dict[str, Any] = {"source": source.kind, **source.report}
    if source.guessed_signals:
        net, plans, unset = install_plans(folder, files.net, say=say)
        report["signals_unset_single_stage"] = unset
    else:
        net = read_net(folder / files.net)
        plans = _kept_plans(net, list(source.plans or []))
        (folder / files.signal_plans).write_text(plans_to_xml(plans), encoding="utf-8")
        unset = []
    if not net.tls:
        raise CityError(
            f"The imported network {source.net_file.name} has no signal after import: a "
            "twin of signal control needs at least one. Check that the source tags its "
            "signals (OSM: highway=traffic_signals, and an Overpass export must ask for "
            'those nodes: node["highway"="traffic_signals"]; node-link: --signals-csv or '
            "--signals-from), or that the bbox covers signalized junctions."
        )
    say("writing the plain XML files (network variants)")
    run_tool("netconvert", ["-s", files.net, "--plain-output-prefix", "plain"],
             what="writing the plain XML files", cwd=folder)  # fmt: skip
    for name in (files.plain_types,):
        if not (folder / name).exists():
            (folder / name).write_text("<types/>\n", encoding="utf-8")
    car_lanes = drivable_lane_counts(folder / files.net)
    drivable = set(car_lanes)
    core = drivable_core(net, drivable)
    classes = {e: source.edge_classes.get(e, "local") for e in net.edges}
    say("placing loops, POIs, VMS sites")
    detectors = make_detectors(net, preset=IMPORT_PARAMS)
    (folder / files.detectors).write_text(
        detectors_xml(detectors, period_s=IMPORT_PARAMS.detector_period_s), encoding="utf-8"
    )
    candidates = list(source.pois)
    if options.pois_toml is not None:
        candidates += read_pois_toml(options.pois_toml)
    pois, poi_rows = snap_pois(net, candidates, projection=projection, edges=core)
    n_vms = (
        options.n_vms if options.n_vms is not None else max(1, round(VMS_PER_SIGNAL * len(net.tls)))
    )
    vms = place_vms(net, classes=classes, core=core, n_vms=n_vms, projection=projection,
                    seed=options.seed)  # fmt: skip
    zones = (
        [read_zone_geojson(options.flood_geojson, projection=projection, net=net)]
        if options.flood_geojson is not None
        else []
    )
    xmin, ymin, xmax, ymax = net.bbox_xy
    zones_axis = max(2, min(16, int(max(xmax - xmin, ymax - ymin) // 600)))
    demand = make_demand_model(
        net,
        peak_trips_per_h=options.peak_trips_per_h or 1,
        zones_per_axis=zones_axis,
        exclude=set(net.edges) - core,
    )
    core_lane_km = lane_km(net, core, lanes=car_lanes)  # lanes a car may use
    trip_m = mean_trip_length_m(demand, net, edges=core)  # once: the trips and the report's load
    peak = options.peak_trips_per_h or trips_for_load(
        demand, net, lane_km=core_lane_km, load=options.peak_load_vkm_per_lane_km, length_m=trip_m
    )
    demand = demand.model_copy(update={"peak_trips_per_h": peak})
    own_routes: list[str] = []
    for k, r in enumerate(source.routes):
        name = f"own_{k}_{r.name}"
        shutil.copy2(r, folder / name)
        own_routes.append(name)
    own_additional: list[str] = []
    for k, a in enumerate(source.additional):
        name = f"own_{k}_{a.name}"
        shutil.copy2(a, folder / name)
        own_additional.append(name)
    if own_routes:
        default_routes = own_routes[0]
        files = files.model_copy(update={"default_routes": default_routes})
        n_trips = sum(_count_trips(folder / name) for name in own_routes)
    else:
        trips = sample_trips(demand, period="am_peak", duration_s=3600.0, seed=options.seed)
        write_trips(trips, folder / files.default_routes)
        n_trips = len(trips)
    (folder / "shapes.add.xml").write_text(shapes_xml(pois, vms, zones), encoding="utf-8")
    (folder / files.sumocfg).write_text(
        _sumocfg(
            files.net,
            ",".join([files.detectors, "shapes.add.xml", *own_additional]),
            ",".join(own_routes) or files.default_routes,
        ),
        encoding="utf-8",
    )
    signals = [signal_spec_imported(net, p, projection=projection, classes=classes) for p in plans]
    src_files = {p.name: file_sha256(p) for p in source.source_files}
    content_hash = hash_files(folder, [files.net, files.detectors, files.signal_plans])
    lon0, lat0 = projection.xy_to_lonlat((xmin + xmax) / 2, (ymin + ymax) / 2)
    counts = {
        "signals": len(signals),
        "junctions": len(net.nodes_xy),
        "edges": len(net.edges),
        "detectors": len(detectors),
        "default_trips": n_trips,
        "pois": len(pois),
        "vms": len(vms),
    }
    manifest = Manifest(
        name=source.name,
        preset="imported",
        seed=options.seed,
        generator_version=GENERATOR_VERSION,
        sumo_version=sumo_version(),
        cache_key=key,
        content_hash=content_hash,
        synthetic=False,
        note=f"Imported from {source.kind} ({', '.join(src_files)}) by CityTwin importer "
        f"{IMPORTER_VERSION}.",
        origin_lat=round(lat0, 7) if georef else options.origin_lat,
        origin_lon=round(lon0, 7) if georef else options.origin_lon,
        bbox_xy=net.bbox_xy,
        params={
            **json.loads(json.dumps(IMPORT_PARAMS.to_dict())),
            "peak_trips_per_h": peak,
            # a kept program's all-red is the city's promise (>= the guard's 1-s floor)
            "all_red_s": float(source.report.get("min_all_red_s", IMPORT_PARAMS.all_red_s))
            if not source.guessed_signals
            else IMPORT_PARAMS.all_red_s,
        },
        files=files,
        signals=signals,
        detectors=detectors,
        detector_period_s=IMPORT_PARAMS.detector_period_s,
        pois=pois,
        vms=vms,
        zones=zones,
        demand=demand,
        counts=counts,
        source=SourceSpec(
            kind=source.kind,
            files=src_files,
            importer_version=IMPORTER_VERSION,
            options={
                **source.options,
                **options.to_dict(),
                "own_routes": own_routes,
                "own_additional": own_additional,
            },
        ),
        georef=georef,
        edge_classes=classes,
    )
    write_manifest(manifest, folder / MANIFEST_NAME)
    by_class: dict[str, float] = {}
    for e in net.edges.values():
        by_class[classes[e.id]] = by_class.get(classes[e.id], 0.0) + e.length_m * e.lanes / 1000
    missing_kinds = [k for k in POI_KINDS if not any(p.role == k for p in pois)]
    report.update(
        {
            "name": source.name,
            "edges": len(net.edges),
            "junctions": len(net.nodes_xy),
            "signals": len(signals),
            "suspicious_signals": suspicious_signals(net, plans),
            "loops": len(detectors),
            "lane_km": round(lane_km(net), 3),
            "lane_km_by_class": {k: round(v, 3) for k, v in sorted(by_class.items())},
            "drivable_core_edges": len(core),
            "edges_outside_core": len(net.edges) - len(core),
            "pois": poi_rows,
            "pois_missing": missing_kinds,
            "vms": len(vms),
            "peak_trips_per_h": peak,
            "peak_load_vkm_per_lane_km": round(
                demand_load(demand, net, lane_km=core_lane_km, length_m=trip_m), 2
            ),
            "georeferenced": georef is not None,
            "own_routes": own_routes,
        }
    )
    if missing_kinds:
        report["hint"] = (
            f"No {' / '.join(missing_kinds)} found in the source: add them with --pois "
            "POIS.toml ([[pois]] id, kind, lat, lon, name, capacity)."
        )
    (folder / REPORT_NAME).write_text(json.dumps(report, indent=1, ensure_ascii=False),
                                      encoding="utf-8")  # fmt: skip
    say(f"city {source.name}: {len(signals)} signals, {len(detectors)} loops, {len(pois)} POIs")
    return manifest


def _count_trips(path: Path) -> int:
    """Vehicles, trips and flows (a flow counts once) of a route file."""
    n = 0
    for _ev, el in ElementTree.iterparse(path, events=("end",)):
        if el.tag in ("vehicle", "trip", "flow", "person"):
            n += 1
            el.clear()
    return n


def suspicious_signals(net: NetInfo, plans: list[SignalPlan]) -> list[dict[str, Any]]:
    """Signals an engineer should look at: more than five approaches (often a cluster of
    junctions joined into one), more than four green stages (split phasing was needed to
    keep conflicting greens apart), or more than 48 links."""
    out = []
    for plan in plans:
        tls = net.tls[plan.tls_id]
        approaches = len({k.from_edge for k in tls.links})
        stages = sum(1 for p in plan.phases if p.kind == "green")
        if approaches > 5 or stages > 4 or len(tls.links) > 48:
            out.append({"signal": plan.tls_id, "approaches": approaches, "green_stages": stages,
                        "links": len(tls.links)})  # fmt: skip
    return out


def signal_spec_imported(
    net: NetInfo, plan: SignalPlan, *, projection: Projection, classes: dict[str, str]
) -> Any:
    """The manifest record of one signal of an imported city."""
    spec = signal_spec(net, plan, preset=IMPORT_PARAMS)
    tls = net.tls[plan.tls_id]
    lon, lat = projection.xy_to_lonlat(spec.x, spec.y)
    order = {"local": 0, "collector": 1, "arterial": 2}
    found = sorted({classes.get(k.from_edge, "local") for k in tls.links}, key=order.__getitem__)
    return spec.model_copy(
        update={"lon": round(lon, 7), "lat": round(lat, 7),
                "road_classes": (found[0], found[-1]) if found else ("local", "local")}
    )  # fmt: skip


def read_report(city: City) -> dict[str, Any]:
    """The import report of an imported city (``{}`` for a generated one)."""
    path = city.path / REPORT_NAME
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
