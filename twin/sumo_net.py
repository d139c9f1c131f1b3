"""SUMO's files and command-line tools: binaries, netconvert, reading a network.

With :mod:`twin.sumo_session` this is the only place that touches SUMO (here through
``sumolib`` and the binaries of the ``eclipse-sumo`` wheel). Everything else receives
plain records (:class:`NetInfo`) and never imports sumolib.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import math
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from twin.errors import SumoError

log = logging.getLogger(__name__)

SUMO_VERSION_PIN = "1.28.0"


@cache
def sumo_home() -> Path:
    """The SUMO installation of the ``eclipse-sumo`` wheel (no ``SUMO_HOME`` needed)."""
    import sumo  # the eclipse-sumo wheel

    return Path(sumo.SUMO_HOME)


def sumo_binary(name: str) -> Path:
    """Path of a SUMO executable (``sumo``, ``sumo-gui``, ``netconvert``, ``duarouter``)."""
    path = sumo_home() / "bin" / name
    if not path.exists():
        raise SumoError(
            f"SUMO executable {name!r} is not in {path.parent}; reinstall the pinned "
            f"'eclipse-sumo=={SUMO_VERSION_PIN}' package (pip install -e .)."
        )
    return path


def sumo_tool(relpath: str) -> Path:
    """Path of a script under SUMO's ``tools/`` folder, e.g. ``tls/tlsCycleAdaptation.py``."""
    path = sumo_home() / "tools" / relpath
    if not path.exists():
        raise SumoError(f"SUMO tool {relpath!r} is missing from {path.parent}.")
    return path


def tool_env() -> dict[str, str]:
    """Environment for a SUMO subprocess: ``SUMO_HOME`` set for the child only."""
    return {**os.environ, "SUMO_HOME": str(sumo_home())}


@cache
def sumo_version() -> str:
    """Version string of the SUMO binaries, e.g. ``'1.28.0'``."""
    out = subprocess.run(
        [str(sumo_binary("sumo")), "--version"], capture_output=True, text=True, check=False
    ).stdout
    first = out.splitlines()[0].strip() if out else ""
    # "Eclipse SUMO sumo 1.28.0" (older releases: "... Version 1.20.0")
    version = first.rsplit(" ", 1)[-1] if first else ""
    return version if version[:1].isdigit() else "unknown"


def run_tool(name: str, args: Sequence[str | Path], *, what: str, cwd: Path | None = None) -> str:
    """Run a SUMO binary; raise :class:`SumoError` with its own message if it fails.

    Parameters
    ----------
    name
        Binary name, e.g. ``"netconvert"``.
    args
        Arguments after the binary.
    what
        What the call is doing, for the error message ("building the network of ...").
    """
    cmd = [str(sumo_binary(name)), *map(str, args)]
    log.debug("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, env=tool_env())
    if proc.returncode != 0:
        errors = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "rror" in ln]
        detail = "\n".join(errors[-8:]) or (proc.stderr or proc.stdout)[-2000:]
        raise SumoError(f"{name} failed while {what} (exit code {proc.returncode}):\n{detail}")
    return proc.stdout + proc.stderr


def diagnose(args: Sequence[str], *, timeout_s: float = 120.0) -> str:
    """SUMO's own complaint about a command line, from a plain ``sumo`` that loads the
    inputs and stops at once (used when libsumo died without saying why)."""
    kept: list[str] = []
    skip = False
    for arg in args:  # drop the run's own window: load the inputs, then stop
        if skip:
            skip = False
        elif arg in ("--begin", "--end", "-b", "-e"):
            skip = True
        else:
            kept.append(arg)
    cmd = [str(sumo_binary("sumo")), *kept, "--begin", "0", "--end", "0"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              timeout=timeout_s, env=tool_env())  # fmt: skip
    except subprocess.TimeoutExpired:
        return "plain sumo did not finish loading the inputs either (timed out)"
    errors = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if "rror" in ln]
    if errors:
        return "\n".join(errors[-6:])
    if proc.returncode != 0:
        broken = [msg for msg in map(xml_problem, _input_files(kept)) if msg]
        if broken:
            return "; ".join(broken)
        return f"plain sumo failed too (exit code {proc.returncode}) while loading the inputs"
    return "plain sumo loads the inputs without error (the crash happened later in the run)"


def _input_files(args: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for flag, value in itertools.pairwise(args):
        if flag in ("--net-file", "--route-files", "--additional-files"):
            files += [Path(v) for v in value.split(",") if v]
    return files


def xml_problem(path: Path) -> str | None:
    """``None`` if ``path`` is well-formed (optionally gzipped) XML, else what is wrong."""
    try:
        with _open_xml(path) as fh:
            for _event, elem in ElementTree.iterparse(fh, events=("end",)):
                elem.clear()
    except FileNotFoundError:
        return f"{path} does not exist"
    except (ElementTree.ParseError, OSError, EOFError) as exc:
        return f"{path} is not well-formed XML ({exc}); rebuild or replace it"
    return None


# --------------------------------------------------------------------------- net records


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


def read_net(path: Path) -> NetInfo:
    """Read a SUMO network into plain records.

    Raises
    ------
    SumoError
        When the file is missing or sumolib cannot parse it.
    """
    import sumolib

    if not path.exists():
        raise SumoError(f"Network file {path} does not exist.")
    try:
        net = sumolib.net.readNet(str(path), withPrograms=True, withLatestPrograms=True)
    except Exception as exc:  # sumolib raises plain exceptions from the XML parser
        raise SumoError(f"Network file {path} could not be read: {exc}") from exc
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


# --------------------------------------------------------------------------- outputs


def _open_xml(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def iter_xml_elements(path: Path, tag: str) -> Iterator[dict[str, str]]:
    """Stream the attributes of every ``<tag>`` element of a SUMO output file."""
    if not path.exists():
        raise SumoError(f"SUMO output {path} was not written (did the simulation start?).")
    with _open_xml(path) as fh:
        try:
            for _event, elem in ElementTree.iterparse(fh, events=("end",)):
                if elem.tag == tag:
                    yield dict(elem.attrib)
                    elem.clear()
        except ElementTree.ParseError as exc:
            raise SumoError(f"SUMO output {path} is truncated or malformed: {exc}") from exc
