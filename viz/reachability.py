"""Map of hospital reachability: every junction coloured by its time to the nearest
hospital, without and with center signal priority, side by side."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from city_models.build import City
from city_models.graph import Reachability

log = logging.getLogger(__name__)

CMAP = "viridis_r"  # short times bright, long times dark


def _share_text(reach: Reachability) -> str:
    return f"{100 * reach.share_within:.0f} % of junctions within {reach.limit_s / 60.0:g} min"


def _panel(
    ax: Axes, city: City, reach: Reachability, title: str, vmax_min: float
) -> tuple[PathCollection, int]:
    """Draw one map (colours 0..``vmax_min`` minutes); returns the node scatter (for the
    colorbar) and how many junctions are beyond the limit."""
    norm = Normalize(vmin=0.0, vmax=vmax_min)
    net = city.net
    ax.add_collection(
        LineCollection(
            [e.shape_xy for e in net.edges.values()], colors="0.75", linewidths=0.6, zorder=1
        )
    )
    nodes = sorted(reach.times_s)
    xy = np.array([net.nodes_xy[n] for n in nodes])
    minutes = np.array([reach.times_s[n] / 60.0 for n in nodes])
    beyond = minutes > reach.limit_s / 60.0
    shown = np.where(np.isfinite(minutes), minutes, vmax_min)
    points = ax.scatter(
        xy[~beyond, 0], xy[~beyond, 1], c=shown[~beyond], cmap=CMAP, norm=norm, s=22, zorder=3
    )
    if beyond.any():
        ax.scatter(
            xy[beyond, 0],
            xy[beyond, 1],
            c=shown[beyond],
            cmap=CMAP,
            norm=norm,
            s=46,
            marker="s",
            edgecolors="black",
            linewidths=0.8,
            hatch="////",
            zorder=3,
        )
    hospitals = [p for p in city.manifest.pois if p.role == "hospital"]
    ax.scatter(
        [p.x for p in hospitals],
        [p.y for p in hospitals],
        marker="P",
        s=150,
        c="red",
        edgecolors="white",
        linewidths=1.0,
        zorder=4,
    )
    ax.set_title(title)
    ax.set_xlabel("metres east of the city origin")
    ax.set_ylabel("metres north of the city origin")
    ax.set_aspect("equal")
    xmin, ymin, xmax, ymax = net.bbox_xy
    pad = 0.03 * max(xmax - xmin, ymax - ymin)
    ax.set_xlim(xmin - pad, xmax + pad)
    ax.set_ylim(ymin - pad, ymax + pad)
    return points, int(beyond.sum())


def plot_reachability(
    city: City, without: Reachability, with_: Reachability, out_png: Path
) -> Path:
    """Write the two reachability maps (without / with center priority) as a PNG.

    Parameters
    ----------
    city
        The city both results were computed on.
    without, with_
        :func:`city_models.graph.reachability` without and with priority.
    out_png
        Output file; its folder is created if missing.

    Returns
    -------
    pathlib.Path
        ``out_png``.
    """
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    finite = [t for r in (without, with_) for t in r.times_s.values() if math.isfinite(t)] or [0.0]
    vmax_min = max(*finite, 60.0) / 60.0  # one colour scale for both maps

    fig = Figure(figsize=(14, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # Agg backend for this figure only; no pyplot global state
    axes = fig.subplots(1, 2)
    panels = [
        _panel(ax, city, reach, f"{label}: {_share_text(reach)}", vmax_min)
        for ax, reach, label in zip(
            axes, (without, with_), ("Without priority", "Center priority"), strict=True
        )
    ]
    beyond_total = sum(beyond for _points, beyond in panels)
    bar = fig.colorbar(panels[0][0], ax=list(axes), pad=0.02)
    bar.set_label("fastest time to the nearest hospital [min]")
    limit_min = without.limit_s / 60.0
    limit_drawn = limit_min < vmax_min
    if limit_drawn:
        bar.ax.axhline(limit_min, color="red", lw=1.5)
    handles = [
        Line2D([], [], ls="", marker="P", ms=11, mfc="red", mec="white", label="hospital"),
        Line2D([], [], color="0.75", lw=1, label="street"),
    ]
    if beyond_total:
        handles.append(
            Line2D([], [], ls="", marker="s", ms=7, mfc="0.5", mec="black", label="beyond limit")
        )
    if limit_drawn:
        handles.append(Line2D([], [], color="red", lw=1.5, label=f"limit ({limit_min:g} min)"))
    fig.legend(handles=handles, loc="outside right lower", fontsize=9)
    fig.suptitle(f"{city.name}: emergency vehicle to the nearest hospital", size=14)
    note = city.manifest.note if city.manifest.synthetic else ""
    fig.supxlabel(
        f"{note} Edge times: free-flow × {without.congestion_factor:g}, plus the expected "
        "wait at each fixed-time signal unless it gives priority.",
        x=0.01,
        ha="left",
        fontsize=8,
        color="0.35",
    )
    fig.savefig(out_png, format="png")
    log.info("wrote reachability map %s", out_png)
    return out_png
