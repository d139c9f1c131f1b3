"""Clearance curves of evacuation runs: the share of evacuees out of the zone and the
share sheltered over time, one panel per network measure, one colour per departure."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# (t_s, evacuated share, sheltered share) rows of one run
Curve = Sequence[tuple[float, float, float]]


def mean_curve(curves: Sequence[Curve]) -> np.ndarray:
    """Mean over runs on the common time grid of the first; rows ``t_s, evac, shelter``."""
    if not curves:
        return np.zeros((0, 3))
    grid = np.array([row[0] for row in curves[0]], dtype=float)
    stack = []
    for c in curves:
        arr = np.asarray(c, dtype=float)
        stack.append(np.column_stack([np.interp(grid, arr[:, 0], arr[:, k]) for k in (1, 2)]))
    return np.column_stack([grid, np.mean(stack, axis=0)])


def plot_clearance_curves(
    curves: Mapping[tuple[str, str], Sequence[Curve]],
    out: Path,
    *,
    warning_s: float = 0.0,
    title: str = "Evacuation clearance curves",
) -> Path:
    """Plot ``{(departure, measures): [curve per seed]}`` to ``out`` (PNG).

    Solid lines: share of evacuees out of the zone; dashed: share sheltered; the
    mean over seeds, time counted from the warning.
    """
    measures = sorted({m for _d, m in curves}, key=lambda m: (len(m), m))
    departures = sorted({d for d, _m in curves})
    fig = Figure(figsize=(4.2 * len(measures), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(measures), sharey=True, squeeze=False)[0]
    colours = dict(zip(departures, ("tab:red", "tab:blue", "tab:green", "tab:purple"),
                       strict=False))  # fmt: skip
    for ax, measure in zip(axes, measures, strict=True):
        for dep in departures:
            mean = mean_curve(curves.get((dep, measure), []))
            if not len(mean):
                continue
            t_min = (mean[:, 0] - warning_s) / 60.0
            ax.plot(t_min, mean[:, 1], color=colours[dep], label=f"{dep}: out of zone")
            ax.plot(t_min, mean[:, 2], color=colours[dep], ls="--", label=f"{dep}: sheltered")
        ax.set_title(f"measures: {measure}")
        ax.set_xlabel("minutes after the warning")
        ax.set_xlim(left=0.0)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of evacuee vehicles")
    axes[-1].legend(loc="lower right", fontsize=7)
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    log.info("wrote %s", out)
    return out
