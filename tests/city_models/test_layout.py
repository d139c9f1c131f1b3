"""Tests of the synthetic street layout (city_models.layout), without netconvert."""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pytest

from city_models.layout import Layout, line_class, make_layout, write_plain_xml
from city_models.presets import ARTERIAL, COLLECTOR, LOCAL, CityPreset, get_preset

PRESET_NAMES = ["district", "suwon-scale"]
CLASS_SPEC = {"arterial": (3, 60.0), "collector": (2, 50.0), "local": (1, 30.0)}


@pytest.fixture(scope="module", params=PRESET_NAMES)
def preset_layout(request: pytest.FixtureRequest) -> tuple[CityPreset, Layout]:
    preset = get_preset(request.param)
    return preset, make_layout(preset, seed=1)


def _ij(node_id: str) -> tuple[int, int]:
    m = re.fullmatch(r"n(\d+)_(\d+)", node_id)
    assert m is not None, node_id
    return int(m.group(1)), int(m.group(2))


def _line_of(layout: Layout, edge_from: str, edge_to: str) -> tuple[int, str]:
    """The lattice line an edge lies on and its axis ('EW': constant j, 'NS': constant i)."""
    (i0, j0), (i1, j1) = _ij(edge_from), _ij(edge_to)
    if j0 == j1:
        assert abs(i0 - i1) == 1, (edge_from, edge_to)
        return j0, "EW"
    assert i0 == i1 and abs(j0 - j1) == 1, (edge_from, edge_to)
    return i0, "NS"


def _undirected(layout: Layout) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(layout.nodes)
    graph.add_edges_from((e.from_node, e.to_node) for e in layout.edges.values())
    return graph


# --------------------------------------------------------------------------- hierarchy


def test_road_classes_have_the_documented_cross_sections() -> None:
    assert (ARTERIAL.lanes, ARTERIAL.speed_kph) == (3, 60.0)
    assert (COLLECTOR.lanes, COLLECTOR.speed_kph) == (2, 50.0)
    assert (LOCAL.lanes, LOCAL.speed_kph) == (1, 30.0)
    assert ARTERIAL.priority > COLLECTOR.priority > LOCAL.priority


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_line_classes_follow_the_preset_rule(name: str) -> None:
    preset = get_preset(name)
    layout = make_layout(preset, seed=1)
    assert len(layout.line_classes) == preset.n_lines
    for i, cls in enumerate(layout.line_classes):
        if i % preset.arterial_every == preset.arterial_phase:
            expected = "arterial"
        elif i % 2 == 1:
            expected = "collector"
        else:
            expected = "local"
        assert cls == expected, i
        assert line_class(i, preset).name == expected
    assert {"arterial", "collector", "local"} <= set(layout.line_classes)


def test_every_edge_carries_the_class_of_its_line(
    preset_layout: tuple[CityPreset, Layout],
) -> None:
    _preset, layout = preset_layout
    for edge in layout.edges.values():
        line, axis = _line_of(layout, edge.from_node, edge.to_node)
        cls = layout.line_classes[line]
        assert edge.road.name == cls, edge.id
        assert (edge.road.lanes, edge.road.speed_kph) == CLASS_SPEC[cls], edge.id
        assert edge.name == f"{cls.capitalize()} {axis}-{line}", edge.id
        assert edge.id == f"{edge.from_node}-{edge.to_node}"


def test_every_street_is_two_way(preset_layout: tuple[CityPreset, Layout]) -> None:
    _preset, layout = preset_layout
    for edge in layout.edges.values():
        back = layout.edges.get(f"{edge.to_node}-{edge.from_node}")
        assert back is not None, edge.id
        assert back.road == edge.road and back.name == edge.name


# --------------------------------------------------------------------------- signals


def test_district_signals_exactly_where_two_non_local_lines_cross() -> None:
    preset = get_preset("district")
    assert preset.n_signals is None
    layout = make_layout(preset, seed=1)
    for node in layout.nodes.values():
        i, j = _ij(node.id)
        major = layout.line_classes[i] != "local" and layout.line_classes[j] != "local"
        assert node.signalized == major, node.id
    n_major = sum(c != "local" for c in layout.line_classes)
    assert sum(n.signalized for n in layout.nodes.values()) == n_major**2


def test_suwon_scale_has_exactly_893_signals_all_on_major_crossings() -> None:
    preset = get_preset("suwon-scale")
    layout = make_layout(preset, seed=1)
    signalized = [n for n in layout.nodes.values() if n.signalized]
    assert len(signalized) == 893
    classes = layout.line_classes
    for node in layout.nodes.values():
        i, j = _ij(node.id)
        pair = {classes[i], classes[j]}
        if "local" in pair:
            assert not node.signalized, node.id
        elif "arterial" in pair:  # only collector x collector crossings may be demoted
            assert node.signalized, node.id
    n_major = sum(c != "local" for c in classes)
    assert n_major**2 > 893  # some collector crossings really were demoted


def test_signal_count_holds_for_other_seeds() -> None:
    preset = get_preset("suwon-scale")
    for seed in (2, 3):
        layout = make_layout(preset, seed=seed)
        assert sum(n.signalized for n in layout.nodes.values()) == 893


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_same_seed_gives_identical_layout(name: str) -> None:
    preset = get_preset(name)
    a, b = make_layout(preset, seed=5), make_layout(preset, seed=5)
    assert a == b
    assert list(a.edges) == list(b.edges)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_other_seed_gives_different_layout(name: str) -> None:
    preset = get_preset(name)
    a, b = make_layout(preset, seed=5), make_layout(preset, seed=6)
    assert a != b
    moved = sum(a.nodes[k].x != b.nodes[k].x or a.nodes[k].y != b.nodes[k].y for k in a.nodes)
    assert moved > 0.9 * len(a.nodes)
    assert set(a.edges) != set(b.edges)  # other local segments dropped


# --------------------------------------------------------------------------- irregularity


def test_block_lengths_vary_within_the_preset_spacing(
    preset_layout: tuple[CityPreset, Layout],
) -> None:
    preset, layout = preset_layout
    n = preset.n_lines
    x = np.array([[layout.nodes[f"n{i}_{j}"].x for j in range(n)] for i in range(n)])
    y = np.array([[layout.nodes[f"n{i}_{j}"].y for j in range(n)] for i in range(n)])
    # averaging along a line cancels the warp of the other axis and most of the jitter
    for spacing in (np.diff(x.mean(axis=1)), np.diff(y.mean(axis=0))):
        assert spacing.std() > 10.0
        lo, hi = preset.spacing_m
        assert spacing.min() > lo - 25.0
        assert spacing.max() < hi + 25.0
    lengths = np.array(
        [
            np.hypot(
                layout.nodes[e.from_node].x - layout.nodes[e.to_node].x,
                layout.nodes[e.from_node].y - layout.nodes[e.to_node].y,
            )
            for e in layout.edges.values()
        ]
    )
    assert lengths.std() > 10.0


def test_lines_are_warped_not_straight(preset_layout: tuple[CityPreset, Layout]) -> None:
    preset, layout = preset_layout
    n = preset.n_lines
    # the x of one N-S line wanders by much more than the jitter
    xs = np.array([layout.nodes[f"n{n // 2}_{j}"].x for j in range(n)])
    assert np.ptp(xs) > 4 * preset.jitter_m


def test_some_local_segments_are_dropped_and_only_locals(
    preset_layout: tuple[CityPreset, Layout],
) -> None:
    preset, layout = preset_layout
    n = preset.n_lines
    present = {frozenset((e.from_node, e.to_node)) for e in layout.edges.values()}
    full: dict[frozenset[str], str] = {}
    for j in range(n):
        for i in range(n - 1):
            full[frozenset((f"n{i}_{j}", f"n{i + 1}_{j}"))] = layout.line_classes[j]
    for i in range(n):
        for j in range(n - 1):
            full[frozenset((f"n{i}_{j}", f"n{i}_{j + 1}"))] = layout.line_classes[i]
    assert present <= set(full)
    dropped = set(full) - present
    assert dropped, "a uniform lattice: no local segment was dropped"
    assert all(full[s] == "local" for s in dropped)
    n_local = sum(cls == "local" for cls in full.values())
    target = int(preset.local_drop_share * n_local)
    assert 0.8 * target <= len(dropped) <= target
    assert len(layout.edges) == 2 * len(present)


def test_every_node_has_degree_two_and_graph_is_connected(
    preset_layout: tuple[CityPreset, Layout],
) -> None:
    _preset, layout = preset_layout
    graph = _undirected(layout)
    assert graph.number_of_nodes() == len(layout.nodes)
    assert min(d for _, d in graph.degree()) >= 2
    assert nx.is_connected(graph)


# --------------------------------------------------------------------------- pockets


def test_pockets_only_on_arterial_edges_into_signals(
    preset_layout: tuple[CityPreset, Layout],
) -> None:
    _preset, layout = preset_layout
    n_pockets = 0
    for edge in layout.edges.values():
        expected = edge.road is ARTERIAL and layout.nodes[edge.to_node].signalized
        assert edge.pocket == expected, edge.id
        n_pockets += edge.pocket
    assert n_pockets > 0


def test_plain_xml_splits_pocket_edges_only() -> None:
    preset = get_preset("district")
    layout = make_layout(preset, seed=1)
    nodes_xml, edges_xml, types_xml = write_plain_xml(layout, preset=preset)
    n_splits = edges_xml.count("<split ")
    assert n_splits == sum(e.pocket for e in layout.edges.values())
    pocket = next(e for e in layout.edges.values() if e.pocket)
    assert f'idAfter="{pocket.id}_pocket"' in edges_xml
    assert f'pos="-{preset.left_pocket_m:g}" lanes="0 1 2 3"' in edges_xml
    assert nodes_xml.count('type="traffic_light_right_on_red"') == sum(
        n.signalized for n in layout.nodes.values()
    )
    assert 'id="arterial" numLanes="3" speed="16.67"' in types_xml
