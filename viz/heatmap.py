"""Queue heatmaps per approach over time, and the network coloured by delay.

From a run's stored series: ``approach_queues`` (per minute, the largest halting queue
on each approach since the last row, read every control tick) and the per-approach delay
of the run's metrics (``approach_delay_s``, SUMO's time loss on the approach's edges).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from city_models.net import NetInfo

LOS_BOUNDS_S = (10.0, 20.0, 35.0, 55.0, 80.0)  # HCM signalized: A|B|C|D|E|F


def heatmap_matrix(
    series: pd.DataFrame, *, top: int = 30, value: str = "queue_max_veh"
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Approaches (``tls/edge``, the ``top`` with the largest queues) x time: the matrix,
    its row labels and the times."""
    if series.empty:
        return np.zeros((0, 0)), [], np.zeros(0)
    df = series.assign(approach=series["tls_id"] + "/" + series["edge_id"])
    wide = df.pivot_table(index="approach", columns="t_s", values=value, aggfunc="max")
    order = wide.max(axis=1).sort_values(ascending=False).index[:top]
    wide = wide.loc[order]
    return wide.to_numpy(dtype=float), [str(a) for a in wide.index], wide.columns.to_numpy(float)


def queue_heatmap(
    series: pd.DataFrame, *, title: str, caption: str, top: int = 30, metres: bool = False
) -> tuple[Figure, dict[str, Any]]:
    """A heatmap of the busiest approaches' queues over time."""
    value = "queue_max_m" if metres else "queue_max_veh"
    matrix, labels, times = heatmap_matrix(series, top=top, value=value)
    fig, ax = plt.subplots(figsize=(11, max(3.0, 0.22 * len(labels) + 1.6)))
    if matrix.size:
        step = float(np.median(np.diff(times))) if len(times) > 1 else 60.0
        extent = (times[0] - step, times[-1], len(labels) - 0.5, -0.5)
        im = ax.imshow(matrix, aspect="auto", cmap="magma_r", extent=extent,
                       interpolation="nearest")  # fmt: skip
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        fig.colorbar(im, ax=ax, label="largest queue [m]" if metres else "largest queue [veh]")
    else:
        ax.text(0.5, 0.5, "no approach queues recorded", ha="center", transform=ax.transAxes)
    ax.set_xlabel("simulation time [s]")
    ax.set_ylabel("approach (signal / incoming edge)")
    ax.set_title(title)
    fig.text(0.01, 0.005, caption, fontsize=8, color="#444")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig, {"matrix": matrix, "labels": labels, "times": times}


def los_of(delay_s: float) -> str:
    """HCM level of service of a signalized approach from its control delay per vehicle."""
    if not math.isfinite(delay_s):
        return "-"
    for letter, bound in zip("ABCDE", LOS_BOUNDS_S, strict=True):
        if delay_s <= bound:
            return letter
    return "F"


def delay_map(
    net: NetInfo,
    approach_delay_s: Mapping[str, float | None],
    *,
    title: str,
    caption: str,
    vmax_s: float = 80.0,
) -> tuple[Figure, dict[str, float]]:
    """The network, each approach's edge coloured by its delay per vehicle (grey: other
    streets or no vehicle); the colour scale ends at LOS E's bound (80 s)."""
    by_edge: dict[str, float] = {}
    for key, delay in approach_delay_s.items():
        edge = key.split("/", 1)[-1]
        if delay is not None and math.isfinite(float(delay)):
            by_edge[edge] = max(by_edge.get(edge, 0.0), float(delay))
    fig, ax = plt.subplots(figsize=(8.5, 8.0))
    grey = [e.shape_xy for e in net.edges.values() if e.id not in by_edge]
    ax.add_collection(LineCollection(grey, colors="#c8c8c8", linewidths=0.8))
    shapes = [net.edges[e].shape_xy for e in by_edge if e in net.edges]
    values = [by_edge[e] for e in by_edge if e in net.edges]
    norm = Normalize(0.0, vmax_s)
    lc = LineCollection(shapes, cmap="RdYlGn_r", norm=norm, linewidths=2.4)
    lc.set_array(np.asarray(values, dtype=float))
    ax.add_collection(lc)
    fig.colorbar(lc, ax=ax, label="delay per vehicle on the approach [s] (LOS E ends at 80)",
                 shrink=0.7)  # fmt: skip
    _finish_map(fig, ax, net, title=title, caption=caption)
    return fig, by_edge


def edge_speeds(trajectories: pd.DataFrame) -> dict[str, float]:
    """Mean speed [m/s] per edge of FCD rows (``edge``, ``speed_mps``)."""
    if trajectories.empty:
        return {}
    means = trajectories.groupby("edge")["speed_mps"].mean()
    return {str(e): float(v) for e, v in means.items()}


def speed_map(
    net: NetInfo, speeds_mps: Mapping[str, float], *, title: str, caption: str
) -> tuple[Figure, dict[str, float]]:
    """The network at a moment: each edge with vehicles coloured by their mean speed as a
    share of the edge's limit (red: standing, green: free flow); grey: no vehicle."""
    ratio = {
        e: v / max(net.edges[e].speed_mps, 0.1) for e, v in speeds_mps.items() if e in net.edges
    }
    fig, ax = plt.subplots(figsize=(8.5, 8.0))
    grey = [e.shape_xy for e in net.edges.values() if e.id not in ratio]
    ax.add_collection(LineCollection(grey, colors="#d0d0d0", linewidths=0.8))
    lc = LineCollection([net.edges[e].shape_xy for e in ratio], cmap="RdYlGn",
                        norm=Normalize(0.0, 1.0), linewidths=2.4)  # fmt: skip
    lc.set_array(np.asarray(list(ratio.values()), dtype=float))
    ax.add_collection(lc)
    fig.colorbar(lc, ax=ax, label="mean speed / speed limit", shrink=0.7)
    _finish_map(fig, ax, net, title=title, caption=caption)
    return fig, ratio


def _finish_map(fig: Figure, ax: Any, net: NetInfo, *, title: str, caption: str) -> None:
    """The frame every network map shares: the city's extent, metres, title, caption."""
    xmin, ymin, xmax, ymax = net.bbox_xy
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(title)
    fig.text(0.01, 0.005, caption, fontsize=8, color="#444")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
