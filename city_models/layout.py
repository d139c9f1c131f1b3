"""Street layout of the synthetic city: a warped, jittered lattice with a road hierarchy.

Not a uniform grid: block lengths vary, the lines bend (a smooth sinusoidal warp),
nodes are jittered, and some local street segments are missing. Arterials (3 lanes,
60 km/h) and collectors (2 lanes, 50 km/h) carry through traffic; locals (1 lane,
30 km/h) fill the blocks. Signals stand where two non-local lines cross.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import networkx as nx
import numpy as np

from city_models.presets import ARTERIAL, COLLECTOR, LOCAL, CityPreset, RoadClass


@dataclass(frozen=True)
class Node:
    id: str
    x: float
    y: float
    signalized: bool


@dataclass(frozen=True)
class Edge:
    id: str
    from_node: str
    to_node: str
    road: RoadClass
    name: str
    pocket: bool  # an exclusive left-turn pocket before a signal


@dataclass(frozen=True)
class Layout:
    nodes: dict[str, Node]
    edges: dict[str, Edge]
    line_classes: tuple[str, ...]


def line_class(i: int, preset: CityPreset) -> RoadClass:
    if i % preset.arterial_every == preset.arterial_phase:
        return ARTERIAL
    return COLLECTOR if i % 2 == 1 else LOCAL


def make_layout(preset: CityPreset, *, seed: int) -> Layout:
    """The seeded street layout of ``preset``."""
    rng = np.random.default_rng(seed)
    n = preset.n_lines
    xs = np.concatenate([[0.0], np.cumsum(rng.uniform(*preset.spacing_m, n - 1))])
    ys = np.concatenate([[0.0], np.cumsum(rng.uniform(*preset.spacing_m, n - 1))])
    xs -= xs.mean()
    ys -= ys.mean()
    span = float(max(np.ptp(xs), np.ptp(ys)))
    classes = [line_class(i, preset) for i in range(n)]

    def nid(i: int, j: int) -> str:
        return f"n{i}_{j}"

    major = [c is not LOCAL for c in classes]
    signal_cells = [(i, j) for i in range(n) for j in range(n) if major[i] and major[j]]
    if preset.n_signals is not None and len(signal_cells) > preset.n_signals:
        minor = [c for c in signal_cells if ARTERIAL not in (classes[c[0]], classes[c[1]])]
        drop_idx = rng.choice(len(minor), len(signal_cells) - preset.n_signals, replace=False)
        dropped = {minor[k] for k in drop_idx}
        signal_cells = [c for c in signal_cells if c not in dropped]
    signals = set(signal_cells)

    nodes: dict[str, Node] = {}
    jitter = rng.normal(0.0, preset.jitter_m, size=(n, n, 2))
    for i in range(n):
        for j in range(n):
            wx = preset.warp_m * math.sin(2 * math.pi * ys[j] / span)
            wy = preset.warp_m * math.sin(2 * math.pi * xs[i] / span + 1.0)
            x = float(xs[i] + wx + jitter[i, j, 0])
            y = float(ys[j] + wy + jitter[i, j, 1])
            nodes[nid(i, j)] = Node(nid(i, j), round(x, 2), round(y, 2), (i, j) in signals)

    # undirected segments: (a, b, class, name); the class is that of the line they lie on
    segments: list[tuple[str, str, RoadClass, str]] = []
    for j in range(n):  # E-W lines (rows)
        for i in range(n - 1):
            segments.append((nid(i, j), nid(i + 1, j), classes[j], _road_name(classes[j], j, "EW")))
    for i in range(n):  # N-S lines (columns)
        for j in range(n - 1):
            segments.append((nid(i, j), nid(i, j + 1), classes[i], _road_name(classes[i], i, "NS")))
    segments = _drop_locals(segments, preset.local_drop_share, rng)

    edges: dict[str, Edge] = {}
    for a, b, road, name in segments:
        for u, v in ((a, b), (b, a)):
            pocket = road is ARTERIAL and nodes[v].signalized
            eid = f"{u}-{v}"
            edges[eid] = Edge(eid, u, v, road, name, pocket)
    return Layout(nodes=nodes, edges=edges, line_classes=tuple(c.name for c in classes))


def _road_name(road: RoadClass, index: int, axis: str) -> str:
    kind = {"arterial": "Arterial", "collector": "Collector", "local": "Local"}[road.name]
    return f"{kind} {axis}-{index}"


def _drop_locals(
    segments: list[tuple[str, str, RoadClass, str]], share: float, rng: np.random.Generator
) -> list[tuple[str, str, RoadClass, str]]:
    """Remove about ``share`` of the local segments, keeping every node on >= 2 segments
    and the street graph connected."""
    graph = nx.Graph()
    for a, b, road, name in segments:
        graph.add_edge(a, b, road=road, name=name)
    locals_ = [(a, b) for a, b, road, _ in segments if road is LOCAL]
    order = rng.permutation(len(locals_))
    target = int(share * len(locals_))
    removed = 0
    for k in order:
        if removed >= target:
            break
        a, b = locals_[k]
        if graph.degree(a) <= 2 or graph.degree(b) <= 2:
            continue
        data = graph.edges[a, b]
        graph.remove_edge(a, b)
        if nx.has_path(graph, a, b):
            removed += 1
        else:
            graph.add_edge(a, b, **data)
    return [(a, b, d["road"], d["name"]) for a, b, d in graph.edges(data=True)]


def write_plain_xml(layout: Layout, *, preset: CityPreset) -> tuple[str, str, str]:
    """SUMO plain-XML node, edge and type files (as strings) for netconvert."""
    type_lines = ["<types>"]
    for road in (ARTERIAL, COLLECTOR, LOCAL):
        type_lines.append(
            f'  <type id="{road.name}" numLanes="{road.lanes}" speed="{road.speed_kph / 3.6:.2f}" '
            f'priority="{road.priority}"/>'
        )
    type_lines.append("</types>")
    node_lines = ["<nodes>"]
    for node in layout.nodes.values():
        kind = "traffic_light_right_on_red" if node.signalized else "priority"
        node_lines.append(f'  <node id="{node.id}" x="{node.x}" y="{node.y}" type="{kind}"/>')
    node_lines.append("</nodes>")
    edge_lines = ["<edges>"]
    for e in layout.edges.values():
        speed = e.road.speed_kph / 3.6
        attrs = (
            f'id="{e.id}" from="{e.from_node}" to="{e.to_node}" numLanes="{e.road.lanes}" '
            f'speed="{speed:.2f}" priority="{e.road.priority}" type="{e.road.name}" '
            f"name={quoteattr(e.name)}"
        )
        if e.pocket:
            lanes = " ".join(str(k) for k in range(e.road.lanes + 1))
            edge_lines.append(f"  <edge {attrs}>")
            edge_lines.append(
                f'    <split pos="-{preset.left_pocket_m:g}" lanes="{lanes}" '
                f'idBefore="{e.id}" idAfter="{e.id}_pocket"/>'
            )
            edge_lines.append("  </edge>")
        else:
            edge_lines.append(f"  <edge {attrs}/>")
    edge_lines.append("</edges>")
    return (
        "\n".join(node_lines) + "\n",
        "\n".join(edge_lines) + "\n",
        "\n".join(type_lines) + "\n",
    )
