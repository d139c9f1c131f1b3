"""Plots of the VMS diversion experiment: delay and diverted share vs compliance."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def plot_compliance(result: dict[str, Any], path: Path) -> Path:
    """Mean delay (left axis) and the share of affected drivers who diverted (right
    axis) against compliance, with the no-VMS delay as a reference line.

    ``result`` is what :func:`experiments.vms_diversion.summarise` returns.
    """
    levels = sorted(result["levels"], key=float)
    x = [100.0 * float(k) for k in levels]
    delay = [result["levels"][k]["mean_delay_s"] for k in levels]
    share = [100.0 * result["levels"][k]["diverted_share"] for k in levels]
    fig = Figure(figsize=(6.4, 4.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(x, delay, "o-", color="tab:blue", label="with VMS")
    no_vms = result["no_vms"]["mean_delay_s"]
    if not math.isnan(no_vms):
        ax.axhline(no_vms, color="0.4", ls="--", label="no VMS")
    best = result.get("best_compliance")
    if best is not None:
        ax.axvline(100.0 * best, color="tab:green", ls=":", label=f"best: {100 * best:g} %")
    ax.set_xlabel("compliance with incident messages [%]")
    ax.set_ylabel("mean delay, all vehicles [s]")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    right.plot(x, share, "s:", color="tab:orange", alpha=0.7, label="diverted share")
    right.set_ylabel("affected drivers who diverted [%]")
    right.set_ylim(0, 105)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper center", fontsize=8)
    ax.set_title(f"VMS diversion around a crash ({result.get('city', '')})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    log.info("wrote %s", path)
    return path
