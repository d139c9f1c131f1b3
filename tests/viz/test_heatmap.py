"""Queue heatmaps and the delay map (viz.heatmap) on small stored series."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd

from city_models.build import City
from viz.heatmap import delay_map, heatmap_matrix, los_of, queue_heatmap


def _series() -> pd.DataFrame:
    rows = []
    for t in (60.0, 120.0, 180.0):
        rows.append((t, "A", "e1", t / 10, t / 10 * 7.0))  # grows: 6, 12, 18 veh
        rows.append((t, "A", "e2", 1.0, 7.0))
        rows.append((t, "B", "e3", 30.0 if t == 120.0 else 0.0, 210.0 if t == 120.0 else 0.0))
    return pd.DataFrame(rows, columns=["t_s", "tls_id", "edge_id", "queue_max_veh", "queue_max_m"])


def test_matrix_rows_are_the_busiest_approaches_in_order() -> None:
    matrix, labels, times = heatmap_matrix(_series(), top=2)
    assert labels == ["B/e3", "A/e1"]  # largest queue first; A/e2 left out (top 2)
    assert list(times) == [60.0, 120.0, 180.0]
    assert matrix.tolist() == [[0.0, 30.0, 0.0], [6.0, 12.0, 18.0]]
    metres, _l, _t = heatmap_matrix(_series(), top=1, value="queue_max_m")
    assert metres.tolist() == [[0.0, 210.0, 0.0]]


def test_heatmap_figure(tmp_path: Path) -> None:
    fig, drawn = queue_heatmap(_series(), title="t", caption="run r seed 1")
    assert drawn["labels"][0] == "B/e3"
    ax = fig.axes[0]
    assert ax.get_xlabel() == "simulation time [s]" and "approach" in ax.get_ylabel()
    assert fig.axes[1].get_ylabel() == "largest queue [veh]"  # the colour bar
    fig.savefig(tmp_path / "h.png", dpi=100)
    assert mpimg.imread(tmp_path / "h.png").shape[1] == 1100


def test_los_letters_follow_hcm() -> None:
    assert [los_of(d) for d in (5, 10, 10.1, 20, 35, 55, 80, 80.5)] == list("AABBCDEF")
    assert los_of(math.nan) == "-"


def test_delay_map_colours_the_approach_edges(district_city: City, tmp_path: Path) -> None:
    tls = sorted(district_city.net.tls.values(), key=lambda t: t.id)[0]
    edges = sorted({k.from_edge for k in tls.links})
    delays = {f"{tls.id}/{edges[0]}": 12.0, f"{tls.id}/{edges[1]}": None, "x/unknown": 5.0}
    fig, by_edge = delay_map(district_city.net, delays, title="d", caption="c")
    assert by_edge == {edges[0]: 12.0, "unknown": 5.0}
    coloured = fig.axes[0].collections[1]
    assert np.asarray(coloured.get_array()).tolist() == [12.0]  # unknown edges not drawn
    fig.savefig(tmp_path / "d.png", dpi=80)
    assert (tmp_path / "d.png").stat().st_size > 10_000


def test_speed_map_at_a_moment(district_city: City) -> None:
    from viz.heatmap import edge_speeds, speed_map

    e1, e2 = sorted(district_city.net.edges)[:2]
    rows = pd.DataFrame(
        [(100.0, "a", "car", e1, 1.0, 4.0), (101.0, "a", "car", e1, 5.0, 6.0),
         (100.0, "b", "car", e2, 1.0, 0.0)],
        columns=["t_s", "vehicle", "type", "edge", "pos_m", "speed_mps"],
    )  # fmt: skip
    speeds = edge_speeds(rows)
    assert speeds == {e1: 5.0, e2: 0.0}
    _fig, ratio = speed_map(district_city.net, speeds, title="s", caption="c")
    assert ratio[e1] == 5.0 / district_city.net.edges[e1].speed_mps and ratio[e2] == 0.0


def test_sign_messages_at_a_moment() -> None:
    from viz.scene3d import vms_texts_at

    signs = pd.DataFrame(
        [(5.0, "vms_1", "travel_time", "To H1: 2 min"), (300.0, "vms_1", "incident", "Crash"),
         (5.0, "vms_2", "travel_time", "To H1: 3 min")],
        columns=["t_s", "sign", "kind", "text"],
    )  # fmt: skip
    assert vms_texts_at(signs, 100.0) == {"vms_1": "To H1: 2 min", "vms_2": "To H1: 3 min"}
    assert vms_texts_at(signs, 301.0)["vms_1"] == "Crash"
    assert vms_texts_at(None, 1.0) == {}
