"""One-page results summary (HTML + PNG) for a single simulation run."""

from __future__ import annotations

import base64
import html
import logging
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_UNITS = (("_pct", "%"), ("_kmh", "km/h"), ("_mps", "m/s"), ("_km", "km"), ("_veh", "veh"))
_TOP_QUEUES = 15
_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".error{border:2px solid #c00;background:#fee;color:#900;padding:1em;white-space:pre-wrap}"
    "img{max-width:100%}"
)


@dataclass(frozen=True)
class SummaryFiles:
    """Paths of the files written by :func:`write_summary`."""

    html: Path
    png: Path


def _unit(name: str) -> str:
    """Return the unit implied by a metric name suffix, or ``""``."""
    if name.endswith("_s"):
        return "s"
    return next((unit for suffix, unit in _UNITS if name.endswith(suffix)), "")


def _fmt(value: Any) -> str:
    """Format a metric value: thousands separators for ints, 2 decimals for floats."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1e4 else f"{v:,.2f}"
    if isinstance(value, Mapping):
        return f"{len(value):,} entries"
    if isinstance(value, list | tuple | set):
        return f"{len(value):,} items"
    return str(value)


def _col(df: pd.DataFrame | None, *cols: str) -> pd.DataFrame | None:
    """Return ``df[cols]`` without NaN rows, or None if a column is missing or no rows remain."""
    if df is None or any(c not in df.columns for c in cols):
        return None
    sub = df[list(cols)].apply(pd.to_numeric, errors="coerce").dropna()
    return sub if len(sub) else None


def _no_data(ax: Axes) -> None:
    """Mark a panel as having no data."""
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_xticks([])
    ax.set_yticks([])


def _render_png(
    run: Mapping[str, Any], series: pd.DataFrame | None, queues: pd.DataFrame | None, path: Path
) -> None:
    """Draw the 2×2 overview figure and save it to ``path``."""
    fig = Figure(figsize=(12, 8), dpi=100)
    FigureCanvasAgg(fig)  # Agg backend for this figure only; no pyplot global state
    (ax_veh, ax_spd), (ax_halt, ax_q) = fig.subplots(2, 2)
    city = run.get("city_name") or "?"
    fig.suptitle(f"{run.get('scenario_name') or '?'} — {city} — seed {run.get('seed')}", size=14)

    drawn = False
    for col, label in (("vehicles_running", "running"), ("vehicles_arrived", "arrived (cum.)")):
        if (d := _col(series, "t_s", col)) is not None:
            ax_veh.plot(d["t_s"] / 60.0, d[col], label=label)
            drawn = True
    if drawn:
        ax_veh.legend(loc="best")
    else:
        _no_data(ax_veh)
    ax_veh.set(title="Vehicles", xlabel="simulation time [min]", ylabel="veh")

    if (d := _col(series, "t_s", "mean_speed_mps")) is not None:
        ax_spd.plot(d["t_s"] / 60.0, d["mean_speed_mps"] * 3.6, color="tab:green")
    else:
        _no_data(ax_spd)
    ax_spd.set(title="Mean speed", xlabel="simulation time [min]", ylabel="km/h")

    if (d := _col(series, "t_s", "vehicles_halting")) is not None:
        ax_halt.fill_between(d["t_s"] / 60.0, d["vehicles_halting"], color="tab:red", alpha=0.4)
        ax_halt.plot(d["t_s"] / 60.0, d["vehicles_halting"], color="tab:red")
    else:
        _no_data(ax_halt)
    ax_halt.set(title="Halting vehicles (whole network)", xlabel="simulation time [min]")
    ax_halt.set_ylabel("veh")

    top = pd.Series(dtype=float)
    if queues is not None and {"tls_id", "queue_veh"} <= set(queues.columns):
        qv = pd.to_numeric(queues["queue_veh"], errors="coerce")
        top = qv.groupby(queues["tls_id"].astype(str)).max().dropna().nlargest(_TOP_QUEUES)
    if len(top):
        ax_q.barh([i[:24] for i in top.index[::-1]], top.to_numpy()[::-1], color="tab:orange")
        ax_q.tick_params(axis="y", labelsize=8)
        ax_q.set_xlabel("max queue [veh]")
    else:
        _no_data(ax_q)
    ax_q.set_title(f"Top {_TOP_QUEUES} intersections by max queue")

    for ax in (ax_veh, ax_spd, ax_halt, ax_q):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _table(rows: Sequence[tuple[str, ...]], head: tuple[str, ...], num_col: int = -1) -> str:
    """Build an HTML table; all cells must already be escaped. ``num_col`` is right-aligned."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i == num_col else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def write_summary(
    *,
    run: Mapping[str, Any],
    series: pd.DataFrame | None,
    queues: pd.DataFrame | None,
    out_dir: Path,
) -> SummaryFiles:
    """Write ``summary.png`` and a self-contained ``summary.html`` for one run.

    Parameters
    ----------
    run : Mapping[str, Any]
        Run record (id, status, scenario_name, city_name, city_hash, seed, created_at,
        finished_at, versions, error, metrics, ...).
    series : pandas.DataFrame or None
        Network time series with ``t_s`` and any of ``vehicles_running``,
        ``vehicles_arrived``, ``mean_speed_mps``, ``vehicles_halting``.
    queues : pandas.DataFrame or None
        Long-format queues with ``t_s``, ``tls_id``, ``queue_veh``.
    out_dir : pathlib.Path
        Output directory; created if missing.

    Returns
    -------
    SummaryFiles
        Paths of the written HTML and PNG files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, page = out_dir / "summary.png", out_dir / "summary.html"
    _render_png(run, series, queues, png)

    e = html.escape
    metrics = run.get("metrics") or {}
    m_rows = [
        (e(str(k)), e(_fmt(v)), "" if isinstance(v, Mapping | list | tuple) else e(_unit(str(k))))
        for k, v in metrics.items()
    ]
    v_rows = [(e(str(k)), e(str(v))) for k, v in (run.get("versions") or {}).items()]
    status = str(run.get("status") or "unknown")
    city_hash = str(run.get("city_hash") or "")[:12]
    when = f"{run.get('created_at') or '?'} → {run.get('finished_at') or '…'}"
    header = [
        ("Status", status),
        ("Scenario", f"{run.get('scenario_name')} ({run.get('scenario_kind')})"),
        ("City", f"{run.get('city_name')} [{city_hash}]"),
        ("Seed", str(run.get("seed"))),
        ("Time", when),
    ]
    error = ""
    if status == "failed":
        msg = e(str(run.get("error") or "(no message)"))
        error = f"<div class='error'><b>Run failed</b>\n{msg}</div>"
    img = base64.b64encode(png.read_bytes()).decode("ascii")
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Run {e(str(run.get('id')))}</title><style>{_CSS}</style></head><body>"
        f"<h1>Run {e(str(run.get('id')))}</h1>"
        + "".join(f"<div><b>{k}:</b> {e(v)}</div>" for k, v in header)
        + error
        + "<h2>Metrics</h2>"
        + (
            _table(m_rows, ("Metric", "Value", "Unit"), num_col=1)
            if m_rows
            else "<p>No metrics.</p>"
        )
        + f"<h2>Charts</h2><img alt='run summary charts' src='data:image/png;base64,{img}'>"
        + "<h2>Versions</h2>"
        + (_table(v_rows, ("Component", "Version")) if v_rows else "<p>No version info.</p>")
        + "</body></html>\n"
    )
    page.write_text(doc, encoding="utf-8")
    log.info("wrote run summary %s and %s", page, png)
    return SummaryFiles(html=page, png=png)
