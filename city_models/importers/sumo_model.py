"""The importer of an engineer's own SUMO model (``twin city import sumo``).

The model's network is checked (well-formed XML, a ``<net>``, accepted by ``netconvert``,
which also normalises it into ``work/city.net.xml.gz``), its signal programs are kept as
the city's fixed plans when the safety guard can accept them, and its demand and
additional files are copied into the city.

Signal programs
    For each traffic light the program ``"0"`` is kept (else the first the net lists,
    renamed ``"0"``, the id the pipeline and the plan check expect). Each phase is
    classified: *green* (some ``G``/``g``, no ``y``), *yellow* (some ``y``) and
    *all-red* (right after a yellow: the yellow links red and no link newly green, so
    only ``r``/``s`` or the greens that carry on). The guard's phase model repeats green,
    yellow (>= 3 s), all-red (>= 1 s) from phase 0, with no two conflicting links both
    ``G`` (:func:`city_models.plan_check.conflict_matrix`). A program that breaks this is
    reported by signal and phase, never repaired here: the engineer fixes the model, or
    asks for ``redesign_signals`` (every program replaced by a Korean-practice plan that
    the pipeline designs), or for ``fit_signals``: the model's stages, their order and
    their greens kept, with the least the guard needs added (:func:`_fit_program`: an
    all-red of the guard's 1-s floor after every yellow that runs straight into a green,
    as netconvert's default programs do; of two conflicting ``G`` the one that yields in
    SUMO's own right of way made permissive ``g``; a green shorter than the pedestrian
    clearance it carries lengthened to it), every change listed in the report. An
    actuated (``actuated``, ``delay_based``) program is kept as its static skeleton: its
    planned durations, run as ``type="static"``.

Minimum greens, per green stage
    ``minDur`` where the program sets it (``"minDur"``); else the pedestrian clearance
    ``walk_s + crossing_m / ped_speed_mps`` of the crossings the stage serves, at least
    the vehicle minimum ``default_min_green_s`` (``"pedestrian"``); else
    ``default_min_green_s`` (``"default"``). The vehicle minimum never exceeds the
    planned green (it is a guess, not the model's data); ``minDur`` and the pedestrian
    clearance are never lowered, and a green shorter than them is reported. A stage
    serves a crossing where the net has ``<crossing>`` edges and the crossing's link is
    green (walking distance: the crossing's length); without crossing edges, the crossing
    over a leg walks once per cycle, in the longest green stage (the first of equals)
    that none of its through links and none of its protected (``G``) left or U turns
    enter or leave it (the Korean practice of a crosswalk beside the through movement;
    right and permissive turns yield to pedestrians; a shorter lead or lag stage that
    also leaves the leg free shows no walk, and neither does a stage that gives green to
    left or U turns only, as in the pipeline's own plans), and the crossing is ``lanes
    crossed * 3.2`` m long. Maximum green: ``maxDur`` where set,
    else ``max(2 * green, 60)`` s.
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, cast
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr, unescape

from city_models.build import phase_specs
from city_models.importers.base import POI_KINDS, PoiCandidate, SourceNet, need
from city_models.manifest import SignalSpec
from city_models.net import TlsInfo, read_net
from city_models.plan_check import conflict_matrix, signal_problems
from city_models.signals import LANE_WIDTH_M, Phase, SignalPlan
from signal_control.guard import ALL_RED_FLOOR_S, YELLOW_MIN_S
from twin.engine.sumo_tools import run_tool, xml_problem
from twin.errors import CityError, SumoError

__all__ = ["read_sumo_model", "read_sumo_pois"]

log = logging.getLogger(__name__)

NET_NAME = "city.net.xml.gz"
KEPT_PROGRAM_ID = "0"
KEPT_TYPES = frozenset({"static", "actuated", "delay_based"})
ACTUATED_TYPES = frozenset({"actuated", "delay_based"})
STATE_CHARS = frozenset("Ggyrs")
ARTERIAL_TYPES = frozenset({"motorway", "trunk", "primary"})
COLLECTOR_TYPES = frozenset({"secondary", "tertiary"})
NON_VEHICLE_CLASSES = frozenset({"pedestrian", "bicycle"})
MAX_LISTED = 60
TOL_S = 1e-6
FIX_HINT = (
    "Fix the program in the model (netedit, or a tllogic file given to netconvert "
    "--tllogic-files), or pass --redesign-signals to replace every program with a "
    "Korean-practice plan, or fit_signals=True (city_models.importing.import_city) to keep "
    "the model's stages and add only what the guard needs (all-reds, permissive turns, "
    "pedestrian clearance)."
)
# elements of a route file and the attributes that name edges (space-separated lists)
ROUTE_EDGE_LISTS = {"edges", "via"}
ROUTE_EDGE_ATTRS = {"from", "to", "edge"}
ROUTE_TAGS = frozenset(
    {
        "route",
        "trip",
        "flow",
        "vehicle",
        "walk",
        "ride",
        "personTrip",
        "transport",
        "tranship",
        "stop",
    }
)


# --------------------------------------------------------------------------- records


@dataclass
class _Lane:
    speed_mps: float
    length_m: float
    vehicles: bool  # not a sidewalk or bike lane


@dataclass
class _Edge:
    id: str
    function: str
    type: str
    from_node: str
    to_node: str
    lanes: list[_Lane] = field(default_factory=list)

    @property
    def vehicle_lanes(self) -> int:
        return sum(1 for ln in self.lanes if ln.vehicles) or len(self.lanes)

    @property
    def speed_mps(self) -> float:
        return max((ln.speed_mps for ln in self.lanes), default=0.0)


@dataclass
class _XmlPhase:
    duration_s: float
    state: str
    min_dur_s: float | None
    max_dur_s: float | None
    name: str
    next: str | None


@dataclass
class _Program:
    tls_id: str
    type: str
    program_id: str
    offset_s: float
    phases: list[_XmlPhase]


@dataclass
class _NetXml:
    """What the importer reads from a ``.net.xml`` itself (sumolib only via read_net)."""

    net_offset: tuple[float, float] = (0.0, 0.0)
    proj: str = "!"
    edges: dict[str, _Edge] = field(default_factory=dict)
    programs: dict[str, list[_Program]] = field(default_factory=dict)  # in the net's order
    crossing_lengths: dict[str, float] = field(default_factory=dict)  # crossing edge -> m
    crossing_links: dict[str, dict[int, str]] = field(default_factory=dict)  # tls -> idx -> edge

    @property
    def georeferenced(self) -> bool:
        return self.proj.strip() not in {"", "!"}


# --------------------------------------------------------------------------- public API


def read_sumo_model(
    net: Path | None,
    *,
    work: Path,
    routes: Sequence[Path] = (),
    additional: Sequence[Path] = (),
    sumocfg: Path | None = None,
    name: str | None = None,
    redesign_signals: bool = False,
    fit_signals: bool = False,
    default_min_green_s: float = 10.0,
    walk_s: float = 7.0,
    ped_speed_mps: float = 1.0,
) -> SourceNet:
    """Import an engineer's SUMO model (see the module doc for the rules).

    Parameters
    ----------
    net
        The model's ``.net.xml`` (or ``.gz``); ``None`` to take the ``net-file`` of
        ``sumocfg``.
    work
        Folder for the normalised net (``city.net.xml.gz``) and the copied files.
    routes, additional
        Demand and additional files; when empty, those of ``sumocfg`` (if given).
    sumocfg
        A ``.sumocfg`` whose ``net-file``, ``route-files`` and ``additional-files``
        (relative to its folder) fill in what is not given explicitly.
    name
        The city's name (default: the net's file name without its suffixes).
    redesign_signals
        Replace every program by a plan the pipeline designs (``guessed_signals``).
    fit_signals
        Keep the model's programs with the least changes the guard needs
        (:func:`_fit_program`), listed in the report's ``signals_fitted``; without it
        (the default) such a program is reported and the import refused.
    default_min_green_s, walk_s, ped_speed_mps
        The minimum-green rules (module doc).

    Raises
    ------
    CityError
        A file is missing or malformed, netconvert refuses the net, a route file names
        only edges the net lacks, or (without ``redesign_signals``) a signal program the
        guard cannot accept (one line per signal and phase).
    """
    options: dict[str, Any] = {
        "net": str(net) if net is not None else None,
        "routes": [str(p) for p in routes],
        "additional": [str(p) for p in additional],
        "sumocfg": str(sumocfg) if sumocfg is not None else None,
        "redesign_signals": redesign_signals,
        "fit_signals": fit_signals,
        "default_min_green_s": default_min_green_s,
        "walk_s": walk_s,
        "ped_speed_mps": ped_speed_mps,
    }
    net_src, route_srcs, add_srcs = _inputs(net, list(routes), list(additional), sumocfg)
    work.mkdir(parents=True, exist_ok=True)
    net_file = _normalise_net(net_src, work)
    xml = _read_net_xml(net_file)
    kept = _choose_programs(xml)
    renamed = {tid: p.program_id for tid, p in kept.items() if p.program_id != KEPT_PROGRAM_ID}
    actuated = sorted(tid for tid, p in kept.items() if p.type in ACTUATED_TYPES)
    if renamed or actuated:
        _rewrite_programs(net_file, kept)
    fitted: dict[str, list[str]] = {}
    if fit_signals and kept and not redesign_signals:
        links = read_net(net_file).tls  # the links and their conflicts; programs change
        for tid, prog in kept.items():
            kept[tid], fitted[tid] = _fit_program(
                prog, links.get(tid), xml, walk_s=walk_s, ped_speed_mps=ped_speed_mps
            )
        fitted = {tid: changes for tid, changes in fitted.items() if changes}
        if fitted:
            _install_programs(net_file, [kept[tid] for tid in sorted(fitted)], work)
    notes: list[str] = []
    if not xml.georeferenced:
        notes.append(
            f"{net_src.name} has no geo-reference (<location projParameter='!'>); the "
            "pipeline places it at the given origin"
        )
    if renamed:
        notes.append(
            f"{len(renamed)} program(s) renamed to '{KEPT_PROGRAM_ID}' (the id the plan "
            f"check expects): {_sample(f'{t} ({p!r})' for t, p in sorted(renamed.items()))}"
        )
    report: dict[str, Any] = {
        "signals": len(kept),
        "signals_kept": 0,
        "programs_replaced": 0,
        "programs_renamed": renamed,
        "actuated_programs": actuated,
        "min_green_sources": {"minDur": 0, "pedestrian": 0, "default": 0},
        "min_all_red_s": None,
        "signals_fitted": fitted,
        "georeferenced": xml.georeferenced,
    }

    plans: list[SignalPlan] | None = None
    if kept:
        info = read_net(net_file)
        built = [
            _plan_of(
                kept[tid],
                info.tls.get(tid),
                xml,
                default_min_green_s=default_min_green_s,
                walk_s=walk_s,
                ped_speed_mps=ped_speed_mps,
            )
            for tid in sorted(kept)
        ]
        problems = [line for b in built for line in b.problems]
        if redesign_signals:
            report["programs_replaced"] = len(kept)
            report["signal_problems"] = len(problems)
            notes.append(
                f"{len(kept)} signal program(s) replaced by Korean-practice plans "
                f"(--redesign-signals; {len(problems)} problem(s) in the model's programs)"
            )
        elif problems:
            raise _program_error(
                net_src, problems, len({b.plan.tls_id for b in built if b.problems})
            )
        else:
            plans = [b.plan for b in built]
            report["signals_kept"] = len(plans)
            for b in built:
                for rule in b.min_sources:
                    report["min_green_sources"][rule] += 1
            all_reds = [p.duration_s for plan in plans for p in plan.phases if p.kind == "all_red"]
            report["min_all_red_s"] = min(all_reds, default=None)
            if fitted:
                notes.append(
                    f"{len(fitted)} program(s) fitted to the guard ({_fit_summary(fitted)}; "
                    f"signals_fitted lists each change): {_sample(sorted(fitted))}"
                )
            if actuated:
                notes.append(
                    f"{len(actuated)} actuated program(s) kept as their static skeleton "
                    f"(planned durations, type set to static): {_sample(actuated)}"
                )
    elif redesign_signals:
        notes.append("the net has no traffic lights; nothing to redesign")

    copied_routes = _copy_inputs(route_srcs, work, what="route")
    copied_adds = _copy_inputs(add_srcs, work, what="additional")
    _refuse_loaded_programs([*route_srcs, *add_srcs], [*copied_routes, *copied_adds])
    unknown = _check_routes(copied_routes, route_srcs, set(_normal_edges(xml)))
    pois: list[PoiCandidate] = []
    skipped = 0
    for src, path in zip(add_srcs, copied_adds, strict=True):
        found, n_skipped = _pois_of(path, xml, shown=src)
        pois += found
        skipped += n_skipped
    report.update(
        routes=[p.name for p in copied_routes],
        additional=[p.name for p in copied_adds],
        unknown_route_edges=unknown,
        pois=len(pois),
        pois_without_geo=skipped,
        notes=notes,
    )
    for line in notes:
        log.info("sumo model %s: %s", net_src.name, line)
    return SourceNet(
        kind="sumo",
        name=name or _stem(net_src),
        net_file=net_file,
        source_files=[net_src, *route_srcs, *add_srcs, *([sumocfg] if sumocfg else [])],
        options=options,
        edge_classes=_edge_classes(xml),
        guessed_signals=plans is None,
        plans=plans,
        pois=pois,
        routes=copied_routes,
        additional=copied_adds,
        report=report,
    )


def read_sumo_pois(path: Path, *, net: Path) -> list[PoiCandidate]:
    """The hospitals, fire stations and shelters among the ``<poi>`` of a SUMO
    poly/POI additional file.

    A POI counts when its ``type`` (``hospital``, ``amenity.hospital``, ...) or its
    ``<param key="amenity">`` names one of :data:`~city_models.importers.base.POI_KINDS`.
    Its position is its ``lon``/``lat`` where given, else its ``x``/``y`` in the net's
    coordinates, turned into lon/lat with the net's projection (``<location netOffset
    projParameter>``); a POI given in x/y on a net without a geo-reference is skipped
    with a warning.

    Raises
    ------
    CityError
        ``path`` or ``net`` is missing or not XML, or the net's projection is unusable.
    """
    _require_xml(net, "SUMO network")
    _require_xml(path, "POI file")
    pois, _skipped = _pois_of(path, _read_net_xml(net), shown=path)
    return pois


def _edge_classes(xml: _NetXml) -> dict[str, str]:
    """Road class of every normal edge: from its OSM-style ``type`` (``highway.primary``,
    ``highway.trunk``, ``highway.motorway`` -> arterial; ``secondary``, ``tertiary`` ->
    collector; other ``highway.*`` -> local), else from lanes and speed (>= 3 lanes or
    >= 60 km/h: arterial; 2 lanes or >= 50 km/h: collector; else local)."""
    out: dict[str, str] = {}
    for eid, edge in _normal_edges(xml).items():
        kind = edge.type.split("|", 1)[0].strip().lower()
        if kind.startswith("highway."):
            base = kind.removeprefix("highway.").removesuffix("_link")
            if base in ARTERIAL_TYPES:
                out[eid] = "arterial"
            elif base in COLLECTOR_TYPES:
                out[eid] = "collector"
            else:
                out[eid] = "local"
            continue
        kmh = edge.speed_mps * 3.6 + 0.5  # 13.89 m/s is 50 km/h
        lanes = edge.vehicle_lanes
        if lanes >= 3 or kmh >= 60:
            out[eid] = "arterial"
        elif lanes == 2 or kmh >= 50:
            out[eid] = "collector"
        else:
            out[eid] = "local"
    return out


# --------------------------------------------------------------------------- inputs


def _inputs(
    net: Path | None, routes: list[Path], additional: list[Path], sumocfg: Path | None
) -> tuple[Path, list[Path], list[Path]]:
    if sumocfg is not None:
        cfg = _read_sumocfg(sumocfg)
        if net is None:
            nets = cfg.get("net-file", [])
            if not nets:
                raise CityError(
                    f"SUMO configuration {sumocfg} names no net-file; add <net-file "
                    "value='...'/> to it or give the network explicitly."
                )
            net = nets[0]
        routes = routes or cfg.get("route-files", [])
        additional = additional or cfg.get("additional-files", [])
    if net is None:
        raise CityError(
            "A SUMO model import needs a network (a .net.xml) or a .sumocfg naming one."
        )
    return net, routes, additional


def _read_sumocfg(cfg: Path) -> dict[str, list[Path]]:
    _require_xml(cfg, "SUMO configuration")
    out: dict[str, list[Path]] = {}
    for tag, attrs, _params in _elements(cfg, {"net-file", "route-files", "additional-files"}):
        value = attrs.get("value", attrs.get("v", ""))
        out[tag] = [cfg.parent / v for v in re.split(r"[,\s]+", value) if v]
    return out


def _require_xml(path: Path, what: str) -> None:
    problem = xml_problem(path)
    if problem is not None:
        if not path.exists():
            raise CityError(f"The {what} {path} does not exist; check the path.")
        raise CityError(f"The {what} {path} cannot be read: {problem}.")


def _root_tag(path: Path) -> str:
    with _open(path) as fh:
        for _event, elem in ElementTree.iterparse(fh, events=("start",)):
            return str(elem.tag)
    return ""  # pragma: no cover - xml_problem refuses an empty file first


def _normalise_net(net: Path, work: Path) -> Path:
    """Check the model's net and write it, normalised by netconvert, to ``work``."""
    _require_xml(net, "SUMO network")
    root = _root_tag(net)
    if root != "net":
        raise CityError(
            f"{net} is not a SUMO network: its root element is <{root}>, not <net>. Give "
            "the model's .net.xml (a route, additional or configuration file goes to "
            "--routes, --additional or --sumocfg)."
        )
    out = work / NET_NAME
    try:
        run_tool("netconvert", ["-s", net, "-o", out], what=f"reading the SUMO network {net}")
    except SumoError as exc:
        raise CityError(
            f"netconvert refuses the SUMO network {net}; fix what it names in the model "
            f"(netedit shows it) and import again. {exc}"
        ) from exc
    return out


def _copy_inputs(paths: list[Path], work: Path, *, what: str) -> list[Path]:
    out: list[Path] = []
    seen: dict[str, Path] = {}
    for src in paths:
        _require_xml(src, f"{what} file")
        if src.name in seen or src.name == NET_NAME:
            raise CityError(
                f"The {what} files {seen.get(src.name, src)} and {src} share the name "
                f"{src.name!r}, and the city keeps its files by name; rename one of them."
            )
        seen[src.name] = src
        dst = work / src.name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
        out.append(dst)
    return out


def _check_routes(copied: list[Path], sources: list[Path], edges: set[str]) -> int:
    """Distinct unknown edges named by the route files (error: a file naming only those)."""
    unknown_all: set[str] = set()
    for path, src in zip(copied, sources, strict=True):
        named: set[str] = set()
        for _tag, attrs, _params in _elements(path, ROUTE_TAGS):
            for key in ROUTE_EDGE_LISTS:
                named.update(attrs.get(key, "").split())
            for key in ROUTE_EDGE_ATTRS:
                if attrs.get(key):
                    named.add(attrs[key])
        unknown = named - edges
        if named and unknown == named:
            raise CityError(
                f"The route file {src} names {len(named)} edge(s) and none is in the "
                f"network (e.g. {_sample(sorted(unknown), 5)}); it belongs to another "
                "network. Give the model's own route files."
            )
        if unknown:
            log.warning(
                "route file %s names %d edge(s) the network lacks: %s",
                src,
                len(unknown),
                _sample(sorted(unknown), 10),
            )
        unknown_all |= unknown
    return len(unknown_all)


def _refuse_loaded_programs(sources: list[Path], copied: list[Path]) -> None:
    """Refuse signal programs in the demand or additional files: SUMO would switch to
    them, running a plan nobody checked instead of the net's program ``"0"``."""
    found: list[str] = []
    for src, path in zip(sources, copied, strict=True):
        for tag, attrs, _params in _elements(path, {"tlLogic", "WAUT"}):
            what = f"program {attrs.get('programID', '?')!r}" if tag == "tlLogic" else "a WAUT"
            found.append(f"  - {src.name}: {tag} {attrs.get('id', '?')!r} ({what})")
    if found:
        lines = found[:MAX_LISTED] + (
            [f"  ... and {len(found) - MAX_LISTED} more"] if len(found) > MAX_LISTED else []
        )
        raise CityError(
            "The model's route or additional files load signal programs, which SUMO would "
            "run instead of the checked program '0' of the net:\n"
            + "\n".join(lines)
            + "\nMove the program into the net (netconvert -s NET --tllogic-files FILE) "
            "and drop it from these files, or remove it."
        )


# --------------------------------------------------------------------------- XML


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return path.open("rb")


def _elements(
    path: Path, tags: frozenset[str] | set[str]
) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """Tag, attributes and ``<param>`` children of every element named in ``tags``."""
    with _open(path) as fh:
        for _event, elem in ElementTree.iterparse(fh, events=("end",)):
            if elem.tag in tags:
                params = {p.get("key", ""): p.get("value", "") for p in elem if p.tag == "param"}
                yield str(elem.tag), dict(elem.attrib), params
                elem.clear()


def _float(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _read_net_xml(path: Path) -> _NetXml:
    out = _NetXml()
    tl_links: list[tuple[str, int, str]] = []
    with _open(path) as fh:
        depth = 0
        for event, elem in ElementTree.iterparse(fh, events=("start", "end")):
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if depth != 1:
                continue  # children are read with their top-level element
            tag = elem.tag
            a = elem.attrib
            if tag == "location":
                x, _, y = a.get("netOffset", "0,0").partition(",")
                out.net_offset = (_float(x) or 0.0, _float(y) or 0.0)
                out.proj = a.get("projParameter", "!")
            elif tag == "edge":
                edge = _Edge(
                    id=a.get("id", ""),
                    function=a.get("function", "normal"),
                    type=a.get("type", ""),
                    from_node=a.get("from", ""),
                    to_node=a.get("to", ""),
                )
                for lane in elem.iter("lane"):
                    allow = set(lane.get("allow", "").split())
                    edge.lanes.append(
                        _Lane(
                            speed_mps=_float(lane.get("speed")) or 0.0,
                            length_m=_float(lane.get("length")) or 0.0,
                            vehicles=not allow or not allow <= NON_VEHICLE_CLASSES,
                        )
                    )
                out.edges[edge.id] = edge
                if edge.function == "crossing":
                    out.crossing_lengths[edge.id] = max(
                        (ln.length_m for ln in edge.lanes), default=0.0
                    )
            elif tag == "tlLogic":
                phases = [
                    _XmlPhase(
                        duration_s=_float(p.get("duration")) or 0.0,
                        state=p.get("state", ""),
                        min_dur_s=_float(p.get("minDur")),
                        max_dur_s=_float(p.get("maxDur")),
                        name=p.get("name", ""),
                        next=p.get("next"),
                    )
                    for p in elem.iter("phase")
                ]
                prog = _Program(
                    tls_id=a.get("id", ""),
                    type=a.get("type", "static"),
                    program_id=a.get("programID", ""),
                    offset_s=_float(a.get("offset")) or 0.0,
                    phases=phases,
                )
                out.programs.setdefault(prog.tls_id, []).append(prog)
            elif tag == "connection" and a.get("tl") and a.get("linkIndex"):
                tl_links.append((a["tl"], int(a["linkIndex"]), a.get("to", "")))
            elem.clear()
    for tls_id, index, to_edge in tl_links:
        if to_edge in out.crossing_lengths:
            out.crossing_links.setdefault(tls_id, {})[index] = to_edge
    return out


def _normal_edges(xml: _NetXml) -> dict[str, _Edge]:
    return {eid: e for eid, e in xml.edges.items() if e.function == "normal"}


def _choose_programs(xml: _NetXml) -> dict[str, _Program]:
    """Each signal's kept program: ``"0"`` where the net has one, else its first."""
    out: dict[str, _Program] = {}
    for tls_id, progs in xml.programs.items():
        zero = [p for p in progs if p.program_id == KEPT_PROGRAM_ID]
        out[tls_id] = zero[0] if zero else progs[0]
        if len(progs) > 1:
            log.info(
                "signal %s has %d programs; program %r is kept",
                tls_id,
                len(progs),
                out[tls_id].program_id,
            )
    return out


_TLLOGIC = re.compile(r"<tlLogic\b[^>]*>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def _rewrite_programs(net_file: Path, kept: dict[str, _Program]) -> None:
    """Give each kept program the id ``"0"`` and run an actuated one as static (the
    net's ``<tlLogic>`` start tags, as netconvert writes them: one per line)."""
    wanted = {(tid, p.program_id) for tid, p in kept.items()}

    def fix(match: re.Match[str]) -> str:
        tag = match.group(0)
        attrs = {k: unescape(v, {"&quot;": '"', "&apos;": "'"}) for k, v in _ATTR.findall(tag)}
        if (attrs.get("id"), attrs.get("programID")) not in wanted:
            return tag
        tag = re.sub(r'\bprogramID="[^"]*"', f'programID="{KEPT_PROGRAM_ID}"', tag)
        return re.sub(r'\btype="(actuated|delay_based)"', 'type="static"', tag)

    tmp = net_file.with_name(net_file.name + ".tmp")
    with (
        gzip.open(net_file, "rt", encoding="utf-8") as src,
        gzip.open(tmp, "wt", encoding="utf-8") as dst,
    ):
        for line in src:
            dst.write(_TLLOGIC.sub(fix, line) if "<tlLogic" in line else line)
    tmp.replace(net_file)


FIT_ALL_RED = "all-red"
FIT_PERMISSIVE = "permissive"
FIT_PEDESTRIAN = "pedestrian"


def _fit_program(
    prog: _Program, tls: TlsInfo | None, xml: _NetXml, *, walk_s: float, ped_speed_mps: float
) -> tuple[_Program, list[str]]:
    """The program with the least changes the guard needs, and one line per change
    (each starting with what it is: all-red, permissive, pedestrian).

    1. After every yellow that runs straight into a green, an all-red of the guard's
       floor (:data:`~signal_control.guard.ALL_RED_FLOOR_S`): the yellow's state with its
       yellows red (greens carried through the yellow stay green). The greens keep their
       durations, so the cycle grows.
    2. Of two conflicting links both ``G`` (:func:`~city_models.plan_check.conflict_matrix`)
       the one that gives way in SUMO's own right of way (the junction's ``<request>``)
       becomes permissive ``g``, as SUMO drives it; where neither or both give way, the
       turning one (else the higher index), as the pipeline's plans make a conflicting
       right turn permissive.
    3. A green shorter than the pedestrian clearance it carries (module doc) is lengthened
       to it (whole seconds), its ``minDur`` raised to it where set.

    A program that jumps (``next=``) or has no green is left as it is, to be reported.
    """
    kinds = _kinds([p.state for p in prog.phases])
    if any(p.next for p in prog.phases) or "green" not in kinds or not prog.phases:
        return prog, []
    changes: list[str] = []
    phases: list[_XmlPhase] = []
    n = len(prog.phases)
    for i, (phase, kind) in enumerate(zip(prog.phases, kinds, strict=True)):
        phases.append(replace(phase))
        if kind == "yellow" and kinds[(i + 1) % n] == "green":
            phases.append(_XmlPhase(ALL_RED_FLOOR_S, phase.state.replace("y", "r"), None,
                                    None, "", None))  # fmt: skip
            changes.append(
                f"{FIT_ALL_RED}: {ALL_RED_FLOOR_S:g} s after phase {i} ({phase.state!r})"
            )
    if tls is not None:
        conflicts = conflict_matrix(tls)
        for phase in phases:
            if "y" in phase.state or len(phase.state) < len(conflicts):
                continue
            chars = list(phase.state)
            while True:
                hi = [k for k in range(len(conflicts)) if chars[k] == "G"]
                pairs = [(a, b) for x, a in enumerate(hi) for b in hi[x + 1 :] if conflicts[a][b]]
                if not pairs:
                    break
                a, b = pairs[0]
                loser = _gives_way(tls, a, b)
                chars[loser] = "g"
                changes.append(
                    f"{FIT_PERMISSIVE}: link {loser} g in {phase.state!r} (conflicts with "
                    f"link {b if loser == a else a})"
                )
            phase.state = "".join(chars)
    kinds = _kinds([p.state for p in phases])
    greens = [(i, p.state, p.duration_s) for i, (p, k) in enumerate(zip(phases, kinds,
              strict=True)) if k == "green"]  # fmt: skip
    ped_of = _ped_clearances(tls, xml, walk_s=walk_s, ped_speed_mps=ped_speed_mps, greens=greens)
    for i, state, duration in greens:
        ped, crossing = ped_of(i, state)
        need_s = float(math.ceil(ped - TOL_S))
        phase = phases[i]
        if need_s > duration + TOL_S:
            phase.duration_s = need_s
            changes.append(
                f"{FIT_PEDESTRIAN}: green {state!r} {duration:g} -> {need_s:g} s ({crossing})"
            )
        if phase.min_dur_s is not None and 0 < phase.min_dur_s < need_s - TOL_S:
            phase.min_dur_s = need_s
            if phase.max_dur_s is not None and phase.max_dur_s < need_s:
                phase.max_dur_s = need_s
    if not changes:
        return prog, []
    return _Program(prog.tls_id, prog.type, KEPT_PROGRAM_ID, prog.offset_s, phases), changes


def _gives_way(tls: TlsInfo, a: int, b: int) -> int:
    """Which of two conflicting links gives way: SUMO's right of way where it is one-sided,
    else the turning link (the higher index of two alike)."""
    if tls.yields[a][b] != tls.yields[b][a]:
        return a if tls.yields[a][b] else b
    turning = [k for k in (a, b) if tls.links[k].direction != "s"]
    return turning[0] if len(turning) == 1 else max(a, b)


def _fit_summary(fitted: dict[str, list[str]]) -> str:
    counts = dict.fromkeys((FIT_ALL_RED, FIT_PERMISSIVE, FIT_PEDESTRIAN), 0)
    for changes in fitted.values():
        for line in changes:
            counts[line.split(":", 1)[0]] += 1
    return ", ".join(f"{k}: {v}" for k, v in counts.items() if v)


def _install_programs(net_file: Path, programs: list[_Program], work: Path) -> None:
    """Write ``programs`` into the net as its static programs ``"0"`` (netconvert
    ``--tllogic-files``; the model's ``minDur``/``maxDur`` go with them)."""

    def attr(value: float | None, name: str) -> str:
        return f' {name}="{value:g}"' if value is not None else ""

    lines = ["<additional>"]
    for prog in programs:
        lines.append(
            f'  <tlLogic id={quoteattr(prog.tls_id)} type="static" '
            f'programID="{KEPT_PROGRAM_ID}" offset="{prog.offset_s:g}">'
        )
        for p in prog.phases:
            name = f" name={quoteattr(p.name)}" if p.name else ""
            lines.append(
                f'    <phase duration="{p.duration_s:g}" state="{p.state}"'
                f"{attr(p.min_dur_s, 'minDur')}{attr(p.max_dur_s, 'maxDur')}{name}/>"
            )
        lines.append("  </tlLogic>")
    lines.append("</additional>")
    tll = work / "all_red.tll.xml"
    tll.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = net_file.with_name("with_all_red." + net_file.name)
    run_tool("netconvert", ["-s", net_file, "--tllogic-files", tll, "-o", out],
             what="inserting all-reds into the model's programs")  # fmt: skip
    out.replace(net_file)
    tll.unlink()


# --------------------------------------------------------------------------- signals


@dataclass
class _Built:
    plan: SignalPlan
    problems: list[str]
    min_sources: list[str]


def _kinds(states: list[str]) -> list[str]:
    """``green``, ``yellow``, ``all_red``, ``red`` (only r/s, not after a yellow) or
    ``other`` (a character the guard does not model) for each phase."""
    out: list[str] = []
    n = len(states)
    for i, s in enumerate(states):
        prev = states[i - 1] if n > 1 else ""
        after_yellow = "y" in prev and len(prev) == len(s)
        if set(s) - STATE_CHARS:
            out.append("other")
        elif "y" in s:
            out.append("yellow")
        elif any(c in "Gg" for c in s):
            # an all-red may carry greens on through the change, never give a new one: a
            # link newly green, or permissive ``g`` becoming protected ``G`` (a protected
            # left after the opposing through's yellow), starts a green stage
            carried = after_yellow and all(
                prev[k] == "G" or (prev[k] == "g" and c == "g")
                for k, c in enumerate(s)
                if c in "Gg"
            )
            out.append("all_red" if carried else "green")
        else:
            out.append("all_red" if after_yellow else "red")
    return out


def _ped_clearances(
    tls: TlsInfo | None,
    xml: _NetXml,
    *,
    walk_s: float,
    ped_speed_mps: float,
    greens: Sequence[tuple[int, str, float]] = (),
) -> Any:
    """A function: (phase index, state) -> (pedestrian clearance in s or 0, what it
    crosses). ``greens`` are the program's green phases (index, state, duration): without
    ``<crossing>`` edges, each crossing walks in one stage per cycle, the longest green
    that leaves its leg free (the first of equals), as in the plans the pipeline designs."""
    crossings = xml.crossing_links.get(tls.id, {}) if tls is not None else {}
    if xml.crossing_lengths:  # the model draws its crossings: use those only

        def from_crossings(_index: int, state: str) -> tuple[float, str]:
            served = [
                (xml.crossing_lengths[c], c)
                for k, c in crossings.items()
                if k < len(state) and state[k] in "Gg"
            ]
            if not served:
                return 0.0, ""
            length, cid = max(served)
            return walk_s + length / ped_speed_mps, f"crossing {cid} ({length:g} m)"

        return from_crossings
    if tls is None:
        return lambda _index, _state: (0.0, "")
    legs: dict[tuple[str, str], set[str]] = {}
    link_legs: list[tuple[tuple[str, str], tuple[str, str]]] = []
    for link in tls.links:
        e_in, e_out = xml.edges.get(link.from_edge), xml.edges.get(link.to_edge)
        if e_in is None or e_out is None:
            link_legs.append((("", ""), ("", "")))
            continue
        leg_in, leg_out = (e_in.to_node, e_in.from_node), (e_out.from_node, e_out.to_node)
        legs.setdefault(leg_in, set()).add(e_in.id)
        legs.setdefault(leg_out, set()).add(e_out.id)
        link_legs.append((leg_in, leg_out))

    def blocked_by(state: str) -> set[tuple[str, str]]:
        blocked: set[tuple[str, str]] = set()
        for link, pair in zip(tls.links, link_legs, strict=True):
            ch = state[link.index] if link.index < len(state) else "r"
            through = link.direction == "s" and ch in "Gg"
            protected_turn = link.direction in {"l", "L", "t"} and ch == "G"
            if through or protected_turn:
                blocked.update(pair)
        return blocked

    def turns_only(state: str) -> bool:  # a protected-turn stage: no walk beside it
        green = [k for k in tls.links if k.index < len(state) and state[k.index] in "Gg"]
        return all(k.direction in {"l", "L", "t"} for k in green)

    # the stage each leg's crossing walks in: the longest green leaving it free
    walks_in: dict[tuple[str, str], int] = {}
    longest: dict[tuple[str, str], float] = {}
    for index, state, duration in greens:
        if turns_only(state):
            continue
        free = set(legs) - blocked_by(state)
        for leg in free:
            if duration > longest.get(leg, -1.0) + TOL_S:
                walks_in[leg], longest[leg] = index, duration

    def from_legs(index: int, state: str) -> tuple[float, str]:
        blocked = blocked_by(state)
        served = []
        for leg, edge_ids in legs.items():
            if leg not in blocked and walks_in.get(leg) == index:
                lanes = sum(xml.edges[e].vehicle_lanes for e in edge_ids)
                served.append((lanes * LANE_WIDTH_M, " ".join(sorted(edge_ids))))
        if not served:
            return 0.0, ""
        width, edges = max(served)
        return walk_s + width / ped_speed_mps, f"the crossing over {edges} ({width:g} m)"

    return from_legs


def _plan_of(
    prog: _Program,
    tls: TlsInfo | None,
    xml: _NetXml,
    *,
    default_min_green_s: float,
    walk_s: float,
    ped_speed_mps: float,
) -> _Built:
    """The kept plan of one program, and every reason the guard could not accept it."""
    tid = prog.tls_id
    states = [p.state for p in prog.phases]
    kinds = _kinds(states)
    problems: list[str] = []

    def bad(i: int, what: str) -> None:
        problems.append(f"signal {tid}, phase {i} ({states[i]!r}): {what}")

    if prog.type not in KEPT_TYPES:
        problems.append(
            f"signal {tid}, program {prog.program_id!r}: type {prog.type!r} cannot be kept "
            f"(kept: {', '.join(sorted(KEPT_TYPES))})"
        )
    if not prog.phases:
        problems.append(f"signal {tid}, program {prog.program_id!r}: the program has no phases")
    greens = [(i, p.state, p.duration_s) for i, (p, k) in enumerate(zip(prog.phases, kinds,
              strict=True)) if k == "green"]  # fmt: skip
    ped_of = _ped_clearances(tls, xml, walk_s=walk_s, ped_speed_mps=ped_speed_mps, greens=greens)
    conflicts = conflict_matrix(tls) if tls is not None else None
    width = len(tls.links) if tls is not None and not xml.crossing_links.get(tid) else None
    width = width if width is not None else (len(states[0]) if states else 0)
    n = len(prog.phases)
    if n and kinds[0] != "green" and "green" in kinds:
        bad(
            0,
            f"the program starts with a {_kind_word(kinds[0])}; the guard's phase model "
            "repeats green, yellow, all-red from phase 0 (start it at its first green)",
        )
    phases: list[Phase] = []
    sources: list[str] = []
    stage = 0
    for i, (xp, kind) in enumerate(zip(prog.phases, kinds, strict=True)):
        nxt = kinds[(i + 1) % n]
        if len(xp.state) != width:
            bad(i, f"{len(xp.state)} characters; the signal has {width} links")
        odd = sorted(set(xp.state) - STATE_CHARS)
        if odd:
            bad(i, f"shows {''.join(odd)!r}; the guard models only G g y r s")
        if xp.next:
            bad(i, f"jumps to phase(s) {xp.next} (next=); the guard runs phases in order")
        if conflicts is not None and len(conflicts) <= len(xp.state):
            hi = [k for k in range(len(conflicts)) if xp.state[k] == "G"]
            pairs = [(a, b) for x, a in enumerate(hi) for b in hi[x + 1 :] if conflicts[a][b]]
            if pairs:
                shown = ", ".join(f"{a}+{b}" for a, b in pairs[:6])
                more = f" (and {len(pairs) - 6} more)" if len(pairs) > 6 else ""
                bad(i, f"conflicting links both G: {shown}{more} (they cross or merge)")
        d = xp.duration_s
        if kind == "green":
            stage += 1
            if nxt != "yellow":
                bad(
                    i,
                    f"a green followed directly by a {_kind_word(nxt)} (phase "
                    f"{(i + 1) % n}) without a yellow",
                )
            ped, crossing = ped_of(i, xp.state)
            if xp.min_dur_s is not None and xp.min_dur_s > 0:
                min_green, source = xp.min_dur_s, "minDur"
                if min_green > d + TOL_S:
                    bad(i, f"minDur {min_green:g} s is longer than the planned green {d:g} s")
                if min_green < ped - TOL_S:
                    bad(
                        i,
                        f"minDur {min_green:g} s is below the pedestrian clearance "
                        f"{ped:.1f} s of {crossing} it serves",
                    )
            elif ped > 0:
                vehicle = min(default_min_green_s, d)
                min_green = max(float(math.ceil(ped - TOL_S)), vehicle)
                source = "pedestrian" if math.ceil(ped - TOL_S) >= vehicle else "default"
                if ped > d + TOL_S:
                    bad(
                        i,
                        f"a green of {d:g} s is shorter than the pedestrian clearance "
                        f"{ped:.1f} s ({walk_s:g} s walk + {crossing} at "
                        f"{ped_speed_mps:g} m/s)",
                    )
            else:
                min_green, source = min(default_min_green_s, d), "default"
            max_green = xp.max_dur_s if xp.max_dur_s else max(2 * d, 60.0)
            if max_green < min_green - TOL_S:
                bad(i, f"maxDur {max_green:g} s is below the min green {min_green:g} s")
            sources.append(source)
            name = xp.name or f"stage {stage}"
            phases.append(Phase(name, "green", xp.state, d, min_green, ped, max_green))
            continue
        if kind == "yellow":
            if d < YELLOW_MIN_S - TOL_S:
                bad(i, f"a yellow of {d:g} s; the guard needs >= {YELLOW_MIN_S:g} s")
            if nxt != "all_red":
                bad(
                    i,
                    f"a yellow followed by a {_kind_word(nxt)} (phase {(i + 1) % n}), not "
                    f"an all-red of >= {ALL_RED_FLOOR_S:g} s",
                )
            name = xp.name or f"stage {stage} yellow"
        elif kind == "all_red":
            if d < ALL_RED_FLOOR_S - TOL_S:
                bad(i, f"an all-red of {d:g} s; the guard needs >= {ALL_RED_FLOOR_S:g} s")
            if nxt != "green":
                bad(
                    i,
                    f"an all-red followed by a {_kind_word(nxt)} (phase {(i + 1) % n}), "
                    "not a green",
                )
            name = xp.name or f"stage {stage} all-red"
        elif kind == "red":
            bad(
                i,
                "a red phase that follows no yellow; the guard's phase model is green, "
                "yellow, all-red",
            )
            name = xp.name or f"phase {i} red"
        else:
            name = xp.name or f"phase {i}"
        phases.append(
            Phase(name, kind if kind in {"yellow", "all_red"} else "green", xp.state, d, d, 0.0, d)
        )
    plan = SignalPlan(tid, sum(p.duration_s for p in phases), prog.offset_s, tuple(phases))
    if not problems:  # the plan check of every city, as a last word
        spec = _spec_of(plan, tls)
        problems += [
            str(p) for p in signal_problems(spec, tls, promise_s=ALL_RED_FLOOR_S, net_known=True)
        ]
    return _Built(plan, problems, sources)


def _kind_word(kind: str) -> str:
    return {
        "all_red": "all-red",
        "red": "red phase",
        "other": "phase the guard does not model",
    }.get(kind, kind)


def _spec_of(plan: SignalPlan, tls: TlsInfo | None) -> SignalSpec:
    return SignalSpec(
        id=plan.tls_id,
        node=tls.node if tls is not None else "",
        x=0.0,
        y=0.0,
        lon=0.0,
        lat=0.0,
        cycle_s=plan.cycle_s,
        offset_s=plan.offset_s,
        road_classes=("local", "local"),
        approach_edges=[],
        incoming_lanes=[],
        phases=phase_specs(plan),
    )


def _program_error(net: Path, problems: list[str], signals: int) -> CityError:
    lines = [f"  - {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
    return CityError(
        f"The signal programs of the SUMO model {net} cannot be kept: {len(problems)} "
        f"problem(s) in {signals} signal(s) that the safety guard cannot accept (its phase "
        f"model repeats green, yellow >= {YELLOW_MIN_S:g} s, all-red >= "
        f"{ALL_RED_FLOOR_S:g} s, and no two conflicting links are green together):\n"
        + "\n".join(lines)
        + "\n"
        + FIX_HINT
    )


# --------------------------------------------------------------------------- POIs


def _poi_kind(attrs: dict[str, str], params: dict[str, str]) -> str | None:
    for value in (attrs.get("type", ""), params.get("amenity", ""), params.get("emergency", "")):
        token = re.split(r"[.:]", value.strip().lower())[-1].replace("-", "_").replace(" ", "_")
        if token in POI_KINDS:
            return token
    return None


def _pois_of(path: Path, xml: _NetXml, *, shown: Path) -> tuple[list[PoiCandidate], int]:
    """The POI candidates of one file, and how many were skipped (x/y, no geo-reference)."""
    out: list[PoiCandidate] = []
    skipped = 0
    to_lonlat: Any = None
    for _tag, a, params in _elements(path, {"poi"}):
        kind = _poi_kind(a, params)
        if kind is None:
            continue
        pid = a.get("id", "")
        lon, lat = _float(a.get("lon")), _float(a.get("lat"))
        if lon is None or lat is None:
            x, y = _float(a.get("x")), _float(a.get("y"))
            if x is None or y is None:
                log.warning("POI %s of %s has no position; skipped", pid, shown)
                skipped += 1
                continue
            if not xml.georeferenced:
                log.warning(
                    "POI %s of %s is given in x/y and the network has no geo-reference; "
                    "skipped (give its lon/lat, or add it with --pois)",
                    pid,
                    shown,
                )
                skipped += 1
                continue
            if to_lonlat is None:
                to_lonlat = _projection(xml, shown)
            lon, lat = to_lonlat(x - xml.net_offset[0], y - xml.net_offset[1], inverse=True)
        capacity = _float(params.get("capacity_veh", params.get("capacity")))
        out.append(
            PoiCandidate(
                id=pid,
                kind=kind,
                name=a.get("name") or params.get("name") or pid,
                lon=float(lon),
                lat=float(lat),
                capacity_veh=int(capacity) if capacity is not None else None,
                preferred=params.get("emergency", "").lower() == "yes",
            )
        )
    return out, skipped


def _projection(xml: _NetXml, shown: Path) -> Any:
    pyproj = need("pyproj", "Placing the POIs of a SUMO model")
    try:
        return pyproj.Proj(xml.proj)
    except Exception as exc:  # pyproj raises CRSError and others on a bad string
        raise CityError(
            f"The network's projection {xml.proj!r} (<location projParameter>) is not "
            f"usable, so the POIs of {shown} cannot be placed: {exc}. Fix the projection "
            "in the model (netconvert --proj) or give the POIs' lon/lat."
        ) from exc


# --------------------------------------------------------------------------- helpers


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".xml", ".net"):
        name = name.removesuffix(suffix)
    return name or path.stem


def _sample(items: Any, limit: int = 8) -> str:
    items = list(items)
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")
