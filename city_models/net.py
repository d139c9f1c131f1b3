"""The road network as CityTwin sees it: plain, frozen records read from a ``.net.xml``.

Every layer above the engine works on these records (:class:`NetInfo`, its edges,
signals, links and the links' conflict relation) and never on sumolib's objects; the
file itself is read through :func:`twin.engine.sumo_tools.load_sumolib_net`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from twin.engine.sumo_tools import load_sumolib_net

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeInfo:
    """One normal (non-internal) edge."""

    id: str
    from_node: str
    to_node: str
    length_m: float
    speed_mps: float
    lanes: int
    name: str
    shape_xy: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class LinkInfo:
    """One controlled connection of a traffic light (a signal group's lane-to-lane link)."""

    index: int
    from_edge: str
    from_lane: str
    to_edge: str
    direction: str  # SUMO's dir: s, r, l, t (turnaround), R, L (partial)


@dataclass(frozen=True)
class PhaseInfo:
    duration_s: float
    state: str
    min_dur_s: float
    max_dur_s: float
    name: str


@dataclass(frozen=True)
class TlsInfo:
    """A signal: its links, which links conflict, and its programs' phases."""

    id: str
    node: str
    x: float
    y: float
    links: tuple[LinkInfo, ...]
    foes: tuple[tuple[bool, ...], ...]  # foes[i][j]: links i and j cross or merge
    yields: tuple[tuple[bool, ...], ...]  # yields[i][j]: link i must give way to j if both go
    phases: tuple[PhaseInfo, ...]
    program_id: str


@dataclass(frozen=True)
class NetInfo:
    """Everything the rest of CityTwin needs from a ``.net.xml`` file."""

    path: Path
    edges: dict[str, EdgeInfo]
    nodes_xy: dict[str, tuple[float, float]]
    node_types: dict[str, str]
    tls: dict[str, TlsInfo]
    lane_lengths_m: dict[str, float]
    bbox_xy: tuple[float, float, float, float]
    # the edges a car may enter from each edge: SUMO's own lane connections (passenger
    # lanes to passenger lanes), what every router of the twin follows
    successors: dict[str, tuple[str, ...]] = field(default_factory=dict)


_NET_CACHE_FORMAT = 1


def net_cache_dir() -> Path:
    """Where the records read from nets are kept: ``$XDG_CACHE_HOME/citytwin/netinfo``
    (``~/.cache/...``). sumolib takes seconds on a large net (5 s at suwon-scale) and every
    run and fork needs them. Never inside a city's folder: a city folder is shared and
    uploaded, and a pickle is only ever read from files this user's own runs wrote."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "citytwin" / "netinfo"


def read_net(path: Path) -> NetInfo:
    """Read a SUMO network into plain records (cached in :func:`net_cache_dir`, keyed by
    the file's path, size and modification time; a cache that cannot be written is
    skipped).

    Raises
    ------
    SumoError
        When the file is missing or sumolib cannot parse it.
    """
    try:
        stat = path.stat()
        key = (_NET_CACHE_FORMAT, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return _read_net(path)  # sumolib says what is wrong
    name = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    cache = net_cache_dir() / f"{name}.pkl"
    try:
        with cache.open("rb") as fh:
            cached_key, info = pickle.load(fh)
        if cached_key == key and isinstance(info, NetInfo):
            return replace(info, path=path)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        pass
    info = _read_net(path)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            pickle.dump((key, info), fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache)
    except OSError as exc:
        log.debug("net records not cached at %s: %s", cache, exc)
        tmp.unlink(missing_ok=True)
    return info


def _read_net(path: Path) -> NetInfo:
    net = load_sumolib_net(path)
    edges: dict[str, EdgeInfo] = {}
    lane_lengths: dict[str, float] = {}
    for e in net.getEdges(withInternal=False):
        edges[e.getID()] = EdgeInfo(
            id=e.getID(),
            from_node=e.getFromNode().getID(),
            to_node=e.getToNode().getID(),
            length_m=float(e.getLength()),
            speed_mps=float(e.getSpeed()),
            lanes=int(e.getLaneNumber()),
            name=str(e.getName() or ""),
            shape_xy=tuple((float(x), float(y)) for x, y in e.getShape()),
        )
        for lane in e.getLanes():
            lane_lengths[lane.getID()] = float(lane.getLength())
    successors: dict[str, tuple[str, ...]] = {}
    for e in net.getEdges(withInternal=False):
        nxt: set[str] = set()
        for lane in e.getLanes():
            if not lane.allows("passenger"):
                continue
            for conn in lane.getOutgoing():
                to_lane = conn.getToLane()
                if to_lane.allows("passenger") and not to_lane.getEdge().isSpecial():
                    nxt.add(to_lane.getEdge().getID())
        successors[e.getID()] = tuple(sorted(nxt))
    nodes_xy = {n.getID(): (float(n.getCoord()[0]), float(n.getCoord()[1])) for n in net.getNodes()}
    node_types = {n.getID(): str(n.getType()) for n in net.getNodes()}
    tls = {t.getID(): _tls_info(net, t) for t in net.getTrafficLights()}
    (xmin, ymin), (xmax, ymax) = net.getBBoxXY()
    return NetInfo(
        path=path,
        edges=edges,
        nodes_xy=nodes_xy,
        node_types=node_types,
        tls=tls,
        lane_lengths_m=lane_lengths,
        bbox_xy=(float(xmin), float(ymin), float(xmax), float(ymax)),
        successors=successors,
    )


def _tls_info(net: Any, t: Any) -> TlsInfo:
    by_index: dict[int, Any] = {}
    for in_lane, out_lane, index in t.getConnections():
        for conn in in_lane.getOutgoing():
            if conn.getToLane() is out_lane and conn.getTLLinkIndex() == index:
                by_index[index] = conn
    links = tuple(
        LinkInfo(
            index=i,
            from_edge=c.getFrom().getID(),
            from_lane=c.getFromLane().getID(),
            to_edge=c.getTo().getID(),
            direction=str(c.getDirection()),
        )
        for i, c in sorted(by_index.items())
    )
    node = next(iter(by_index.values())).getJunction() if by_index else None
    n = len(links)
    foes = [[False] * n for _ in range(n)]
    yields = [[False] * n for _ in range(n)]
    if node is not None:
        junction_index = {i: node.getLinkIndex(c) for i, c in by_index.items()}
        # the junction's <request> rows: foes and prohibitions, by junction link index
        # (read directly: sumolib's forbids() looks each index up again, O(n^3) per node)
        foe_rows, prohibit_rows = node._foes, node._prohibits
        for i in range(n):
            a = junction_index[i]
            foe_row, prohibit_row = foe_rows.get(a, ""), prohibit_rows.get(a, "")
            for j in range(n):
                if i != j:
                    b = junction_index[j]
                    foes[i][j] = len(foe_row) > b and foe_row[-(b + 1)] == "1"
                    # link i must give way to link j
                    yields[i][j] = len(prohibit_row) > b and prohibit_row[-(b + 1)] == "1"
    programs = t.getPrograms()
    program_id = sorted(programs)[0]
    phases = tuple(
        PhaseInfo(
            duration_s=float(p.duration),
            state=str(p.state),
            min_dur_s=float(p.minDur) if p.minDur not in (None, -1) else float(p.duration),
            max_dur_s=float(p.maxDur) if p.maxDur not in (None, -1) else float(p.duration),
            name=str(p.name or ""),
        )
        for p in programs[program_id].getPhases()
    )
    x, y = node.getCoord() if node is not None else (math.nan, math.nan)
    return TlsInfo(
        id=str(t.getID()),
        node=node.getID() if node is not None else "",
        x=float(x),
        y=float(y),
        links=links,
        foes=tuple(tuple(r) for r in foes),
        yields=tuple(tuple(r) for r in yields),
        phases=phases,
        program_id=str(program_id),
    )
