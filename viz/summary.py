"""One-page results summary (HTML + PNG) for a single simulation run, fitted to its
scenario: the network panels of every run plus the panels of each scenario kind
(:mod:`viz.panels`), the metrics grouped with units and a glossary
(:mod:`viz.metric_tables`), and the spec that ran.

``summary.png`` holds every panel on one figure; ``summary.html`` is self-contained
(one embedded image per panel, with its title, caption and note).
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from city_models.manifest import Manifest
from city_models.net import NetInfo, read_net
from viz.metric_tables import html_table, metrics_html, spec_toml
from viz.panels import EV, NETWORK, Panel, RunData, panels_for
from viz.scene3d import Scene, read_vehicles, render_png, states_at, vehicles_at
from viz.timespace import draw_timespace, ev_route, read_signal_states, read_trajectories

log = logging.getLogger(__name__)

COLUMNS = 2
"""Panels per row of ``summary.png``."""
DPI = 100
PANEL_W_IN, PANEL_H_IN = 7.0, 4.2
HEADER_IN = 0.9
"""Room above and below the panels of ``summary.png`` (title and caption)."""
_MANIFEST = "city.json"
_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".note{color:#555;font-size:90%;margin-bottom:1em}"
    ".error{border:2px solid #c00;background:#fee;color:#900;padding:1em;white-space:pre-wrap}"
    "figure{margin:1em 0}figcaption{color:#444;font-size:90%}"
    "pre.spec{background:#f6f6f6;padding:1em;overflow:auto}"
    "img{max-width:100%}"
)


@dataclass(frozen=True)
class SummaryFiles:
    """Paths of the files written by :func:`write_summary`."""

    html: Path
    png: Path


def png_size_px(n_panels: int) -> tuple[int, int]:
    """(width, height) in pixels of ``summary.png`` with ``n_panels`` panels."""
    rows = max(1, math.ceil(n_panels / COLUMNS))
    return round(COLUMNS * PANEL_W_IN * DPI), round((rows * PANEL_H_IN + HEADER_IN) * DPI)


# ---------------------------------------------------------------------- loading
def load_series(run_dir: Path, series_files: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The run's Parquet series by name (``events.parquet`` -> ``events``); a file that
    cannot be read is left out with a warning (a report never fails on one series)."""
    frames: dict[str, pd.DataFrame] = {}
    for file in series_files:
        name = str(file).removesuffix(".parquet")
        path = Path(run_dir) / str(file)
        try:
            frames[name] = pd.read_parquet(path, engine="pyarrow")
        except (OSError, ValueError) as exc:
            log.warning("summary: series %s of %s not read: %s", name, run_dir, exc)
    return frames


def net_file_of(run_dir: Path) -> Path | None:
    """The city network a run used, from its ``sumo_args.json`` (``--net-file``)."""
    args_file = Path(run_dir) / "sumo_args.json"
    try:
        args = json.loads(args_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(args, list) and "--net-file" in args:
        i = args.index("--net-file")
        if i + 1 < len(args):
            return Path(str(args[i + 1]))
    return None


def load_city_geometry(run_dir: Path) -> tuple[NetInfo | None, dict[str, Any] | None]:
    """The run's network records and its city manifest (raw ``city.json``), or None
    each where they cannot be found."""
    net_file = net_file_of(run_dir)
    if net_file is None or not net_file.is_file():
        return None, None
    net: NetInfo | None = None
    manifest: dict[str, Any] | None = None
    try:
        net = read_net(net_file)
    except Exception as exc:  # a map is optional; the report goes on
        log.warning("summary: network %s not read: %s", net_file, exc)
    try:
        raw = json.loads((net_file.parent / _MANIFEST).read_text(encoding="utf-8"))
        manifest = raw if isinstance(raw, dict) else None
    except (OSError, ValueError) as exc:
        log.warning("summary: city manifest next to %s not read: %s", net_file, exc)
    return net, manifest


# ---------------------------------------------------------------------- drawing
def _draw(panel: Panel, ax: Axes) -> None:
    try:
        panel.draw(ax)
    except Exception:  # a bad series must not cost the whole report
        log.exception("summary: panel %r failed", panel.title)
        ax.clear()
        ax.text(
            0.5,
            0.5,
            "panel failed (see log)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="tab:red",
        )
    ax.set_title(panel.title, fontsize=11)
    ax.grid(alpha=0.3)


def _render_png(d: RunData, panels: Sequence[Panel], path: Path) -> None:
    """All panels on one figure, ``COLUMNS`` per row, title and caption on the figure."""
    w, h = png_size_px(len(panels))
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg for this figure only; no pyplot global state
    rows = max(1, math.ceil(len(panels) / COLUMNS))
    axes = fig.subplots(rows, COLUMNS, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        _draw(panel, ax)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    run = d.run
    fig.suptitle(
        f"{run.get('scenario_name') or '?'} ({d.kind or '?'}) — "
        f"{run.get('city_name') or '?'} — run {run.get('id')}, seed {run.get('seed')}",
        size=14,
    )
    fig.supxlabel(d.caption(), size=9, color="0.3")
    fig.savefig(path, format="png", dpi=DPI)


def _panel_png(d: RunData, panel: Panel) -> bytes:
    fig = Figure(figsize=(PANEL_W_IN, PANEL_H_IN + 0.3), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    _draw(panel, fig.subplots())
    fig.supxlabel(d.caption(), size=8, color="0.3")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


# ---------------------------------------------------------------------- page
def _charts_html(d: RunData, panels: Sequence[Panel]) -> str:
    e = html.escape
    parts: list[str] = []
    section = ""
    for k, panel in enumerate(panels):
        if panel.section != section:
            section = panel.section
            parts.append(f"<h3 class='section'>{e(section)}</h3>")
        img = base64.b64encode(_panel_png(d, panel)).decode("ascii")
        parts.append(
            f"<figure id='panel-{k}'><h4 class='panel'>{e(panel.title)}</h4>"
            f"<img alt='{e(panel.title)}' src='data:image/png;base64,{img}'>"
            f"<figcaption>{e(panel.title)} — {e(d.caption())}."
            + (f" {e(panel.note)}" if panel.note else "")
            + "</figcaption>"
            + panel.table_html
            + "</figure>"
        )
    return "".join(parts)


def write_summary(
    *,
    run: Mapping[str, Any],
    series: pd.DataFrame | None,
    queues: pd.DataFrame | None,
    out_dir: Path,
    extra: Mapping[str, pd.DataFrame] | None = None,
    net: NetInfo | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> SummaryFiles:
    """Write ``summary.png`` and a self-contained ``summary.html`` for one run.

    Parameters
    ----------
    run : Mapping[str, Any]
        Run record as :meth:`RunRecord.to_dict` gives it (id, status, scenario_name,
        scenario_kind, spec, city_name, city_hash, seed, created_at, finished_at,
        versions, error, metrics, run_dir, series_files).
    series : pandas.DataFrame or None
        Network time series with ``t_s`` and any of ``vehicles_running``,
        ``vehicles_arrived``, ``mean_speed_mps``, ``vehicles_halting``.
    queues : pandas.DataFrame or None
        Long-format queues with ``t_s``, ``tls_id``, ``queue_veh``.
    out_dir : pathlib.Path
        Output directory; created if missing.
    extra : Mapping[str, pandas.DataFrame] or None
        The run's other series by name (``events``, ``vms``, ``incident``,
        ``evacuation``, ``shelter_occupancy``, ``signal_timings``, ``greens_served``).
        None: read from ``run["run_dir"]`` (its ``series_files``) when the record names
        a folder; pass ``{}`` to use none.
    net, manifest : optional
        The city's network records and raw manifest for the maps. None: found through
        the run folder's ``sumo_args.json`` when the record names a folder.

    Returns
    -------
    SummaryFiles
        Paths of the written HTML and PNG files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, page = out_dir / "summary.png", out_dir / "summary.html"
    run_dir = run.get("run_dir")
    if extra is None:
        extra = (
            load_series(
                Path(run_dir),
                [
                    f
                    for f in run.get("series_files") or ()
                    if f not in ("network.parquet", "queues.parquet")
                ],
            )
            if run_dir
            else {}
        )
    if net is None and manifest is None and run_dir:
        net, manifest = load_city_geometry(Path(run_dir))
    frames = {k: v for k, v in extra.items() if v is not None}
    if series is not None:
        frames["network"] = series
    if queues is not None:
        frames["queues"] = queues
    d = RunData(run=run, frames=frames, net=net, manifest=manifest)
    panels = panels_for(d)
    if run_dir and net is not None:
        panels += record_panels(d, Path(run_dir))
    _render_png(d, panels, png)
    page.write_text(_page(d, panels), encoding="utf-8")
    log.info("wrote run summary %s and %s (%d panels)", page, png, len(panels))
    return SummaryFiles(html=page, png=png)


def record_panels(d: RunData, run_dir: Path) -> list[Panel]:
    """Pictures from SUMO's own records in the run folder, where the run kept them
    (``[outputs] trajectories``): the EV corridor's time-space diagram, and a 3D still
    where pyvista is installed."""
    fcd, states_file = run_dir / "fcd.xml.gz", run_dir / "signal_states.xml"
    if d.net is None or not (fcd.exists() and states_file.exists()):
        return []
    net = d.net
    out: list[Panel] = []
    sim = d.spec.get("sim", {}) if isinstance(d.spec.get("sim"), Mapping) else {}
    begin = float(sim.get("begin_s", 0.0))
    end = begin + float(sim.get("duration_s", 3600.0))
    evs = [str(e["id"]) for e in d.spec.get("evs", []) if isinstance(e, Mapping)]
    if evs:
        ev_id = evs[0]

        def timespace(ax: Any) -> None:
            route = ev_route(fcd, ev_id)
            draw_timespace(ax, net=net, edges=route, states=read_signal_states(states_file),
                           trajectories=read_trajectories(fcd, edges=set(route)),
                           events=d.frames.get("events"), t_range=(begin, end),
                           ev_ids=[ev_id])  # fmt: skip

        note = "From signal_states.xml (SUMO's switch record) and fcd.xml.gz."
        out.append(Panel(EV, f"Time-space diagram of {ev_id}'s corridor", timespace, note))
    if importlib.util.find_spec("pyvista") is None:  # the [viz3d] extra
        return out

    def still(ax: Any) -> None:
        t = begin + (end - begin) / 2
        if d.manifest is None:
            raise ValueError("no manifest")
        scene = Scene(net, Manifest.model_validate(d.manifest), window=(900, 560), symbol_scale=3)
        steps = read_vehicles(fcd, t - 1, t + 1)
        scene.update(signal_states=states_at(read_signal_states(states_file), t),
                     vehicles=vehicles_at(steps, t), ev_ids=evs)  # fmt: skip
        png = render_png(scene, run_dir / "scene_summary.png")
        ax.imshow(mpimg.imread(png))
        ax.set_axis_off()

    note3d = "pyvista off screen: signals as SUMO showed them, vehicles by speed."
    out.append(Panel(NETWORK, "3D scene at mid-run", still, note3d))
    return out


def _page(d: RunData, panels: Sequence[Panel]) -> str:
    e = html.escape
    run = d.run
    v_rows = [[e(str(k)), e(str(v))] for k, v in (run.get("versions") or {}).items()]
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
    toml = spec_toml(d.spec)
    spec = f"<pre class='spec'>{e(toml)}</pre>" if toml else "<p>No spec recorded.</p>"
    sections = sorted({p.section for p in panels}, key=[p.section for p in panels].index)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Run {e(str(run.get('id')))}</title><style>{_CSS}</style></head><body>"
        f"<h1>Run {e(str(run.get('id')))}</h1>"
        + "".join(f"<div><b>{k}:</b> {e(v)}</div>" for k, v in header)
        + f"<div><b>Report sections:</b> {e(', '.join(sections))}</div>"
        + error
        + "<h2>Metrics</h2>"
        + metrics_html(d.metrics, d.kind)
        + "<h2>Charts</h2>"
        + _charts_html(d, panels)
        + "<h2>Spec that ran</h2>"
        + spec
        + "<h2>Versions</h2>"
        + (html_table(v_rows, ["Component", "Version"]) if v_rows else "<p>No version info.</p>")
        + "</body></html>\n"
    )
