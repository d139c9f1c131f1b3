"""The panels of a run's summary, per scenario kind.

A :class:`Panel` is a title, a section, a drawing function on one matplotlib ``Axes``
and a note saying what it is drawn from (and what the run store does not keep).
:func:`panels_for` picks the panels for a run: the network panels always, then those of
each scenario kind the run is (EV priority, also EVs inside a VMS run; VMS diversion;
evacuation; adaptive signal control).

Everything is read from what the run store keeps: the record (metrics, spec), the
Parquet series of the run folder and the city's network geometry.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection

from city_models.net import NetInfo
from viz.heatmap import heatmap_matrix
from viz.metric_tables import html_table

# section names (also the headings of the HTML page)
NETWORK = "Network"
EV = "EV priority"
VMS = "VMS diversion"
EVACUATION = "Evacuation"
ADAPTIVE = "Adaptive signals"

TOP_QUEUES = 15
BUSIEST_SIGNALS = 4
GREENS_SIGNALS = 2
_T = "simulation time [min]"
_RELEASE_COLOURS = {
    "passed": "tab:green",
    "arrived": "tab:blue",
    "rerouted": "tab:purple",
    "stale": "tab:orange",
    "lost": "tab:red",
}
_MESSAGE_COLOURS = ("tab:blue", "tab:red", "tab:orange", "tab:green", "tab:purple", "tab:brown")
_RECOVERY = re.compile(r"^recovery (\S+) (.+)$")


@dataclass(frozen=True)
class RunData:
    """What a report is drawn from."""

    run: Mapping[str, Any]
    frames: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    net: NetInfo | None = None
    manifest: Mapping[str, Any] | None = None

    @property
    def kind(self) -> str:
        return str(self.run.get("scenario_kind") or "")

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.run.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    @property
    def metrics(self) -> Mapping[str, Any]:
        m = self.run.get("metrics")
        return m if isinstance(m, Mapping) else {}

    def frame(self, name: str, *cols: str) -> pd.DataFrame | None:
        """The series ``name`` if it has rows and the columns ``cols``, else None."""
        df = self.frames.get(name)
        if df is None or not len(df) or any(c not in df.columns for c in cols):
            return None
        return df

    def events(self, *kinds: str) -> pd.DataFrame:
        """Rows of the event log whose kind is one of ``kinds`` (all if none given)."""
        ev = self.frame("events", "t_s", "kind")
        if ev is None:
            return pd.DataFrame(columns=["t_s", "kind"])
        if kinds:
            ev = ev[ev["kind"].astype(str).isin(kinds)]
        return ev.sort_values("t_s", kind="stable")

    def pois(self) -> dict[str, Mapping[str, Any]]:
        pois = (self.manifest or {}).get("pois") or []
        return {str(p["id"]): p for p in pois if isinstance(p, Mapping) and "id" in p}

    def caption(self) -> str:
        return (
            f"run {self.run.get('id')} · seed {self.run.get('seed')} · "
            f"{self.run.get('scenario_name') or '?'} ({self.kind or '?'}) on "
            f"{self.run.get('city_name') or '?'}"
        )


@dataclass(frozen=True)
class Panel:
    """One plot of the report. ``draw`` sets the axis labels (with units) and the
    legend; the title is set from ``title`` by whoever lays the panels out."""

    section: str
    title: str
    draw: Callable[[Axes], None]
    note: str = ""
    table_html: str = ""


# ---------------------------------------------------------------------- helpers
def no_data(ax: Axes, why: str = "no data") -> None:
    """Mark a panel as having nothing to draw (and say why)."""
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.5", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _num(df: pd.DataFrame, *cols: str) -> pd.DataFrame | None:
    """``df[cols]`` as numbers without NaN rows, or None."""
    if any(c not in df.columns for c in cols):
        return None
    sub = df[list(cols)].apply(pd.to_numeric, errors="coerce").dropna()
    return sub if len(sub) else None


def _legend(ax: Axes, **kw: Any) -> None:
    handles, _labels = ax.get_legend_handles_labels()
    if len(handles) > 1:
        ax.legend(loc=kw.pop("loc", "best"), fontsize=kw.pop("fontsize", 8), **kw)


def draw_net(ax: Axes, net: NetInfo) -> None:
    """The network's edges in light grey, metres, equal aspect."""
    segs = [np.asarray(e.shape_xy) for e in net.edges.values() if len(e.shape_xy) >= 2]
    ax.add_collection(LineCollection(segs, colors="0.78", linewidths=0.6, zorder=1))
    xmin, ymin, xmax, ymax = net.bbox_xy
    pad = 0.03 * max(xmax - xmin, ymax - ymin, 1.0)
    ax.set_xlim(xmin - pad, xmax + pad)
    ax.set_ylim(ymin - pad, ymax + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.set(xlabel="x [m]", ylabel="y [m]")


def _edge_mid(net: NetInfo, edge: str) -> tuple[float, float] | None:
    e = net.edges.get(edge)
    if e is None or not e.shape_xy:
        return None
    pts = np.asarray(e.shape_xy)
    mid = pts[len(pts) // 2] if len(pts) > 2 else pts.mean(axis=0)
    return float(mid[0]), float(mid[1])


def _draw_edges(ax: Axes, net: NetInfo, edges: Sequence[str], **kw: Any) -> bool:
    segs = [np.asarray(net.edges[e].shape_xy) for e in edges if e in net.edges]
    if not segs:
        return False
    ax.add_collection(LineCollection(segs, zorder=3, **kw))
    return True


def _strs(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series([""] * len(df), index=df.index, dtype=object)
    return df[col].astype(object).where(df[col].notna(), "").astype(str)


def _run_end_s(d: RunData) -> float:
    end = d.metrics.get("sim_end_s")
    if isinstance(end, int | float) and math.isfinite(end):
        return float(end)
    sim = d.spec.get("sim")
    if isinstance(sim, Mapping):
        return float(sim.get("begin_s", 0.0) or 0.0) + float(sim.get("duration_s", 0.0) or 0.0)
    return math.nan


# ---------------------------------------------------------------------- network
def network_panels(d: RunData) -> list[Panel]:
    """Vehicles, mean speed, halting vehicles, the intersections with the longest queues."""
    series = d.frame("network", "t_s")
    queues = d.frame("queues", "tls_id", "queue_veh")

    def vehicles(ax: Axes) -> None:
        drawn = False
        for col, label in (("vehicles_running", "running"), ("vehicles_arrived", "arrived (cum.)")):
            if series is not None and (s := _num(series, "t_s", col)) is not None:
                ax.plot(s["t_s"] / 60.0, s[col], label=label)
                drawn = True
        if not drawn:
            no_data(ax, "no network series stored")
        ax.set(xlabel=_T, ylabel="vehicles [veh]")
        _legend(ax)

    def speed(ax: Axes) -> None:
        s = _num(series, "t_s", "mean_speed_mps") if series is not None else None
        if s is None:
            no_data(ax, "no network series stored")
        else:
            ax.plot(s["t_s"] / 60.0, s["mean_speed_mps"] * 3.6, color="tab:green")
        ax.set(xlabel=_T, ylabel="mean speed [km/h]")

    def halting(ax: Axes) -> None:
        s = _num(series, "t_s", "vehicles_halting") if series is not None else None
        if s is None:
            no_data(ax, "no network series stored")
        else:
            t = s["t_s"] / 60.0
            ax.fill_between(t, s["vehicles_halting"], color="tab:red", alpha=0.35)
            ax.plot(t, s["vehicles_halting"], color="tab:red")
        ax.set(xlabel=_T, ylabel="halting vehicles [veh]")

    def top_queues(ax: Axes) -> None:
        top = pd.Series(dtype=float)
        if queues is not None:
            qv = pd.to_numeric(queues["queue_veh"], errors="coerce")
            top = qv.groupby(queues["tls_id"].astype(str)).max().dropna().nlargest(TOP_QUEUES)
        if not len(top):
            no_data(ax, "no queue series stored")
        else:
            ax.barh(
                [str(i)[:24] for i in top.index[::-1]], top.to_numpy()[::-1], color="tab:orange"
            )
            ax.tick_params(axis="y", labelsize=7)
        ax.set(xlabel="max queue [veh]", ylabel="signal (intersection)")

    return [
        Panel(NETWORK, "Vehicles in the network", vehicles, "From network.parquet."),
        Panel(NETWORK, "Mean speed (network)", speed, "From network.parquet."),
        Panel(NETWORK, "Halting vehicles (whole network)", halting, "From network.parquet."),
        Panel(
            NETWORK,
            f"Top {TOP_QUEUES} intersections by max queue",
            top_queues,
            "From queues.parquet (queue per signal, sampled).",
        ),
    ]


# ---------------------------------------------------------------------- EV priority
def has_evs(d: RunData) -> bool:
    """EV priority in this run: the kind, EVs in the spec, or priority events."""
    if d.kind == "ev_priority" or d.spec.get("evs"):
        return True
    return bool(len(d.events("priority_request", "ev_dispatched")))


def ev_ids(d: RunData) -> list[str]:
    ids = [str(e.get("id")) for e in d.spec.get("evs") or [] if isinstance(e, Mapping)]
    ev = d.events()
    if "ev" in ev.columns:
        ids += [i for i in _strs(ev, "ev").unique() if i and i not in ids]
    return ids


def holds(d: RunData) -> pd.DataFrame:
    """One row per priority request: ev, tls, requested, released (NaN if never), the
    release reason; in request order."""
    ev = d.events("priority_request", "priority_release")
    cols = ["ev", "tls", "request_s", "release_s", "reason"]
    if not len(ev) or "tls" not in ev.columns:
        return pd.DataFrame(columns=cols)
    evs, tls, reasons = _strs(ev, "ev"), _strs(ev, "tls"), _strs(ev, "reason")
    open_: dict[tuple[str, str], int] = {}
    rows: list[dict[str, Any]] = []
    for i, t, kind in zip(ev.index, ev["t_s"].astype(float), ev["kind"].astype(str), strict=True):
        key = (evs[i], tls[i])
        if kind == "priority_request":
            if key in open_:  # a second request while held: the hold goes on
                continue
            open_[key] = len(rows)
            rows.append(
                {"ev": key[0], "tls": key[1], "request_s": t, "release_s": math.nan, "reason": ""}
            )
        elif key in open_:
            row = rows[open_.pop(key)]
            row["release_s"], row["reason"] = t, reasons[i] or "released"
    return pd.DataFrame(rows, columns=cols)


def _recoveries(d: RunData) -> dict[str, list[tuple[float, str]]]:
    out: dict[str, list[tuple[float, str]]] = {}
    ev = d.events()
    for t, kind in zip(ev["t_s"].astype(float), ev["kind"].astype(str), strict=True):
        if m := _RECOVERY.match(kind):
            out.setdefault(m.group(1), []).append((t, m.group(2)))
    return out


def _ev_points(d: RunData, ev_id: str) -> list[tuple[float, str, float, float]]:
    """(t, label, x, y) of one EV: its station at dispatch, then each signal it passed
    (released with reason ``passed``), then the hospital on arrival."""
    net, pois = d.net, d.pois()
    if net is None:
        return []
    pts: list[tuple[float, str, float, float]] = []
    spec_ev = next(
        (
            e
            for e in d.spec.get("evs") or []
            if isinstance(e, Mapping) and str(e.get("id")) == ev_id
        ),
        {},
    )
    disp = d.events("ev_dispatched")
    disp = disp[_strs(disp, "ev") == ev_id]
    station = pois.get(str(spec_ev.get("station")))
    if len(disp) and station is not None:
        pts.append(
            (
                float(disp["t_s"].iloc[0]),
                str(station["id"]),
                float(station["x"]),
                float(station["y"]),
            )
        )
    h = holds(d)
    for row in (
        h[(h["ev"] == ev_id) & (h["reason"] == "passed")].sort_values("release_s").itertuples()
    ):
        info = net.tls.get(str(row.tls))
        if info is not None:
            pts.append((float(row.release_s), str(row.tls), float(info.x), float(info.y)))
    arr = d.events("ev_arrived")
    arr = arr[_strs(arr, "ev") == ev_id]
    if len(arr):
        hosp = pois.get(_strs(arr, "hospital").iloc[0])
        if hosp is not None:
            pts.append(
                (float(arr["t_s"].iloc[0]), str(hosp["id"]), float(hosp["x"]), float(hosp["y"]))
            )
    return pts


def ev_panels(d: RunData) -> list[Panel]:
    """Route map, speed/time profile, requests and holds of the run's EVs."""
    ids = ev_ids(d)
    h = holds(d)
    colours = dict(
        zip(ids, ("tab:red", "tab:blue", "tab:purple", "tab:brown", "tab:olive"), strict=False)
    )

    def route_map(ax: Axes) -> None:
        net = d.net
        if net is None:
            no_data(ax, "city network geometry not found")
            return
        draw_net(ax, net)
        pois = d.pois()
        disp = d.events("ev_dispatched")
        for ev_id in ids:
            c = colours.get(ev_id, "tab:red")
            order = [net.tls[t] for t in h[h["ev"] == ev_id]["tls"] if t in net.tls]
            if order:
                ax.plot(
                    [s.x for s in order],
                    [s.y for s in order],
                    "-o",
                    color=c,
                    ms=5,
                    lw=1.5,
                    alpha=0.8,
                    zorder=4,
                    label=f"{ev_id}: signals requested, in order",
                )
            mine = disp[_strs(disp, "ev") == ev_id]
            for call in _strs(mine, "call_edge"):
                drawn = _draw_edges(ax, net, [call], colors="black", linewidths=3.5)
                if drawn and (mid := _edge_mid(net, call)) is not None:
                    ax.plot(
                        *mid, "*", color="black", ms=12, zorder=5, label=f"{ev_id}: call (scene)"
                    )
        roles = {"hospital": ("P", "tab:green"), "fire_station": ("s", "tab:orange")}
        for role, (marker, c) in roles.items():
            pts = [p for p in pois.values() if p.get("role") == role]
            if pts:
                ax.scatter(
                    [float(p["x"]) for p in pts],
                    [float(p["y"]) for p in pts],
                    marker=marker,
                    s=70,
                    color=c,
                    edgecolors="black",
                    zorder=6,
                    label=role.replace("_", " "),
                )
        _legend(ax, loc="upper left", fontsize=7)

    def profile(ax: Axes) -> None:
        drawn = False
        for ev_id in ids:
            pts = _ev_points(d, ev_id)
            if len(pts) < 2:
                continue
            t = np.array([p[0] for p in pts])
            xy = np.array([(p[2], p[3]) for p in pts])
            dist = np.hypot(*np.diff(xy, axis=0).T)
            dt = np.diff(t)
            # back at the same signal (out to the scene and back): speed unknown there
            kph = np.where((dt > 0) & (dist > 0), dist / np.maximum(dt, 1e-9) * 3.6, np.nan)
            c = colours.get(ev_id, "tab:red")
            ax.stairs(
                kph,
                t / 60.0,
                color=c,
                lw=1.8,
                label=f"{ev_id}: straight-line speed between passings",
            )
            ax.plot(t[1:-1] / 60.0, kph[:-1], "v", color=c, ms=6, label=f"{ev_id}: signal passed")
            for ti, (_t, name, _x, _y) in zip(t, pts, strict=True):
                ax.annotate(
                    name,
                    (ti / 60.0, 0),
                    xytext=(0, 3),
                    textcoords="offset points",
                    rotation=90,
                    fontsize=6,
                    color="0.3",
                )
            per = d.metrics.get("ev")
            info = per.get(ev_id) if isinstance(per, Mapping) else None
            if isinstance(info, Mapping):
                km, s = info.get("distance_km"), info.get("time_to_hospital_s")
                if isinstance(km, float | int) and isinstance(s, float | int) and s > 0:
                    ax.axhline(
                        km / s * 3600.0,
                        color=c,
                        ls="--",
                        lw=1,
                        label=f"{ev_id}: trip mean (route km / trip time)",
                    )
            drawn = True
        if not drawn:
            no_data(ax, "no signal passings recorded")
        ax.set(xlabel=_T, ylabel="EV speed [km/h]")
        ax.set_ylim(bottom=0)
        _legend(ax, fontsize=7)

    def timeline(ax: Axes) -> None:
        if not len(h):
            no_data(ax, "no priority requests in the event log")
            ax.set(xlabel=_T, ylabel="signal")
            return
        end = _run_end_s(d)
        rec = _recoveries(d)
        labels: list[str] = []
        seen: set[str] = set()
        for y, row in enumerate(h.itertuples()):
            labels.append(f"{row.ev} @ {row.tls}" if len(ids) > 1 else str(row.tls))
            stop = row.release_s if math.isfinite(row.release_s) else end
            reason = str(row.reason or "still held")
            lab = f"hold, released: {reason}"
            ax.barh(
                y,
                (stop - row.request_s) / 60.0,
                left=row.request_s / 60.0,
                height=0.6,
                color=_RELEASE_COLOURS.get(reason, "tab:gray"),
                label=None if lab in seen else lab,
            )
            seen.add(lab)
            done = [t for t, what in rec.get(str(row.tls), []) if what == "done" and t >= stop]
            if done and math.isfinite(stop):
                lab2 = "recovery to the plan"
                ax.barh(
                    y,
                    (done[0] - stop) / 60.0,
                    left=stop / 60.0,
                    height=0.25,
                    color="0.6",
                    label=None if lab2 in seen else lab2,
                )
                seen.add(lab2)
        for kind, marker, c, lab in (
            ("priority_refused", "x", "black", "request refused"),
            ("ev_conflict_lost", "X", "tab:red", "lost to another EV"),
            ("priority_renewed", "^", "tab:green", "hold renewed after its cap"),
            ("ev_gps_stale", "|", "tab:orange", "GPS stale"),
        ):
            ev = d.events(kind)
            if len(ev):
                ax.plot(
                    ev["t_s"].astype(float) / 60.0,
                    [-0.8] * len(ev),
                    marker,
                    color=c,
                    ls="none",
                    ms=8,
                    label=lab,
                )
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.invert_yaxis()
        ax.set(xlabel=_T, ylabel="signal (in request order)")
        _legend(ax, fontsize=7, loc="lower right")

    n_req = len(h)
    return [
        Panel(
            EV,
            "EV route map",
            route_map,
            "The network from the city's net geometry; the line joins the signals the EV "
            "asked priority from, in order (the EV's own trajectory is not stored).",
        ),
        Panel(
            EV,
            "EV speed/time profile",
            profile,
            "Straight-line speed between consecutive signals passed (priority_release "
            "'passed' events, station and hospital at dispatch and arrival); no per-second "
            "EV speed series is stored, so the stops themselves cannot be placed in time.",
        ),
        Panel(
            EV,
            "EV priority requests and holds",
            timeline,
            f"From events.parquet: {n_req} requests (priority_request -> priority_release, "
            "colour = release reason), recovery to the plan after each hold.",
        ),
    ]


# ---------------------------------------------------------------------- VMS
def _incident_windows(d: RunData) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    ev = d.events("incident_start", "incident_detected", "incident_end")
    ids, kinds = _strs(ev, "id"), ev["kind"].astype(str)
    for i, t in zip(ev.index, ev["t_s"].astype(float), strict=True):
        out.setdefault(ids[i] or "?", {})[kinds[i].removeprefix("incident_")] = t
    return out


def vms_panels(d: RunData) -> list[Panel]:
    """Incident window and the queue at the scene, signs over time, diverted share, map."""
    windows = _incident_windows(d)
    signs = d.frame("vms", "t_s", "sign", "kind")
    end = _run_end_s(d)

    def scene(ax: Axes) -> None:
        inc = d.frame("incident", "t_s", "queue_veh")
        drawn = False
        if inc is not None:
            names = _strs(inc, "incident") if "incident" in inc.columns else None
            for name in sorted(set(names)) if names is not None else [""]:
                part = inc[names == name] if names is not None else inc
                s = _num(part, "t_s", "queue_veh")
                if s is not None:
                    ax.plot(
                        s["t_s"] / 60.0,
                        s["queue_veh"],
                        lw=1,
                        label=f"queue upstream of {name or 'the incident'}",
                    )
                    drawn = True
        for k, (name, w) in enumerate(sorted(windows.items())):
            if "start" in w:
                ax.axvspan(
                    w["start"] / 60.0,
                    w.get("end", end) / 60.0,
                    color="tab:red",
                    alpha=0.12 + 0.05 * k,
                    label=f"{name}: lanes closed",
                )
            if "detected" in w:
                ax.axvline(
                    w["detected"] / 60.0,
                    color="black",
                    ls="--",
                    lw=1,
                    label=f"{name}: detected by the center",
                )
        if not drawn and not windows:
            no_data(ax, "no incident series stored")
        ax.set(xlabel=_T, ylabel="queue at the scene [veh]")
        _legend(ax, fontsize=7)

    def messages(ax: Axes) -> None:
        if signs is None:
            no_data(ax, "no sign log stored (vms.parquet)")
            ax.set(xlabel=_T, ylabel="sign")
            return
        log_ = signs.sort_values("t_s", kind="stable")
        names = sorted(_strs(log_, "sign").unique())
        kinds = sorted(_strs(log_, "kind").unique())
        colour = dict(zip(kinds, _MESSAGE_COLOURS * 4, strict=False))
        seen: set[str] = set()
        for y, sign in enumerate(names):
            rows = log_[_strs(log_, "sign") == sign]
            t = rows["t_s"].astype(float).to_numpy()
            stop = np.append(t[1:], end if math.isfinite(end) else t[-1] + 60.0)
            for t0, t1, kind in zip(t, stop, _strs(rows, "kind"), strict=True):
                ax.barh(
                    y,
                    (t1 - t0) / 60.0,
                    left=t0 / 60.0,
                    height=0.6,
                    color=colour[kind],
                    label=None if kind in seen else kind,
                )
                seen.add(kind)
        for name, w in windows.items():
            if "start" in w:
                ax.axvline(w["start"] / 60.0, color="black", lw=0.8, ls=":", label=f"{name}: start")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_ylim(-0.6, len(names) + 0.9)  # room for the legend above the bars
        ax.set(xlabel=_T, ylabel="sign")
        _legend(ax, fontsize=7, loc="upper center", ncol=4, title="message shown")

    def diverted(ax: Axes) -> None:
        m = d.metrics
        keys = (
            ("affected_veh", "affected"),
            ("diverted_veh", "diverted"),
            ("replanned_on_travel_time_veh", "replanned (travel time)"),
            ("detour_arrived_veh", "arrived via detour"),
            ("closed_route_arrived_veh", "arrived via closed route"),
        )
        vals = [(lab, float(m[k])) for k, lab in keys if isinstance(m.get(k), int | float)]
        if not vals:
            no_data(ax, "no diversion metrics")
        else:
            ax.barh([v[0] for v in vals][::-1], [v[1] for v in vals][::-1], color="tab:blue")
            ax.tick_params(axis="y", labelsize=7)
            share = m.get("diverted_share")
            if isinstance(share, int | float):
                ax.text(
                    0.98,
                    0.04,
                    f"diverted share {100.0 * share:.1f} %",
                    ha="right",
                    transform=ax.transAxes,
                    fontsize=10,
                    weight="bold",
                )
        ax.set(xlabel="drivers [veh]", ylabel="")

    def sign_map(ax: Axes) -> None:
        net = d.net
        if net is None:
            no_data(ax, "city network geometry not found")
            return
        draw_net(ax, net)
        inc = d.events("incident_start")
        edges = [e for e in _strs(inc, "edge") if e]
        if _draw_edges(ax, net, edges, colors="tab:red", linewidths=4):
            ax.plot([], [], color="tab:red", lw=4, label="incident edge")
        vms = [v for v in (d.manifest or {}).get("vms") or [] if isinstance(v, Mapping)]
        used = set(_strs(signs, "sign")) if signs is not None else set()
        for v in vms:
            on = str(v.get("id")) in used
            ax.plot(
                float(v["x"]),
                float(v["y"]),
                "s",
                ms=8,
                zorder=5,
                color="tab:blue" if on else "0.6",
                mec="black",
            )
            ax.annotate(
                str(v.get("id")),
                (float(v["x"]), float(v["y"])),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
            )
        if vms:
            ax.plot([], [], "s", color="tab:blue", mec="black", label="sign that showed messages")
            if any(str(v.get("id")) not in used for v in vms):
                ax.plot([], [], "s", color="0.6", mec="black", label="sign not used")
        _legend(ax, loc="upper left", fontsize=7)

    table = ""
    if signs is not None:
        table = _sign_log_table(signs)
    return [
        Panel(
            VMS,
            "Incident window and queue at the scene",
            scene,
            "From incident.parquet and the incident_* events.",
        ),
        Panel(
            VMS,
            "Signs and their messages over time",
            messages,
            "From vms.parquet: a sign shows a message from its row until its next row.",
            table_html=table,
        ),
        Panel(
            VMS,
            "Diverted share",
            diverted,
            "End-of-run totals from the metrics; the diverted share over time is not "
            "stored (no per-time diversion series).",
        ),
        Panel(
            VMS,
            "Signs and the incident on the network",
            sign_map,
            "Sign positions from the city manifest.",
        ),
    ]


def _sign_log_table(signs: pd.DataFrame, top: int = 12) -> str:
    log_ = signs.sort_values("t_s", kind="stable")
    prev: dict[str, str] = {}
    rows: list[list[str]] = []
    for t, sign, kind, text in zip(
        log_["t_s"].astype(float),
        _strs(log_, "sign"),
        _strs(log_, "kind"),
        _strs(log_, "text"),
        strict=True,
    ):
        if kind != "travel_time" and prev.get(sign) != kind:
            rows.append(
                [f"{t / 60.0:.1f}", html.escape(sign), html.escape(kind), html.escape(text)]
            )
        prev[sign] = kind
    if not rows:
        return ""
    shown = rows[:top]
    note = f"first {len(shown)} of {len(rows)} incident messages (travel-time updates left out)"
    return (
        html_table(shown, ["t [min]", "sign", "message", "text"], cls="nested")
        + f"<div class='note'>{html.escape(note)}</div>"
    )


# ---------------------------------------------------------------------- evacuation
def evacuation_panels(d: RunData) -> list[Panel]:
    """Clearance curves, shelter occupancy, the zone and the shelters on the network."""
    warning = float(d.spec.get("warning_s", 0.0) or 0.0)
    n = d.metrics.get("evacuees_veh")

    def clearance(ax: Axes) -> None:
        curve = d.frame("evacuation", "t_s")
        drawn = False
        if curve is not None:
            cols: list[tuple[str, str, str]] = [
                ("evacuated_share", "out of the zone", "-"),
                ("sheltered_share", "sheltered", "--"),
            ]
            if isinstance(n, int | float) and n > 0 and "departed_veh" in curve.columns:
                curve = curve.assign(departed_share=curve["departed_veh"] / float(n))
                cols.insert(0, ("departed_share", "departed", ":"))
            for col, lab, ls in cols:
                if (s := _num(curve, "t_s", col)) is not None:
                    ax.plot((s["t_s"] - warning) / 60.0, 100.0 * s[col], ls=ls, lw=1.8, label=lab)
                    drawn = True
        if not drawn:
            no_data(ax, "no clearance series stored (evacuation.parquet)")
        ax.set(xlabel="minutes after the warning [min]", ylabel="share of evacuee vehicles [%]")
        ax.set_ylim(0, 102)
        _legend(ax, loc="lower right")

    def occupancy(ax: Axes) -> None:
        occ = d.frame("shelter_occupancy", "t_s", "shelter", "occupancy_veh")
        cap = d.metrics.get("shelter_capacity_veh")
        if occ is None:
            no_data(ax, "no shelter series stored (shelter_occupancy.parquet)")
        else:
            for k, name in enumerate(sorted(_strs(occ, "shelter").unique())):
                part = occ[_strs(occ, "shelter") == name].sort_values("t_s")
                c = f"C{k % 10}"
                ax.step(
                    (part["t_s"].astype(float) - warning) / 60.0,
                    part["occupancy_veh"],
                    where="post",
                    color=c,
                    label=name,
                )
                if isinstance(cap, Mapping) and isinstance(cap.get(name), int | float):
                    ax.axhline(float(cap[name]), color=c, ls="--", lw=0.8, label=f"{name} capacity")
        ax.set(xlabel="minutes after the warning [min]", ylabel="vehicles sheltered [veh]")
        _legend(ax, fontsize=7, loc="upper left")

    def zone_map(ax: Axes) -> None:
        net = d.net
        if net is None:
            no_data(ax, "city network geometry not found")
            return
        draw_net(ax, net)
        zone_id = str(d.spec.get("zone") or "")
        zones = [z for z in (d.manifest or {}).get("zones") or [] if isinstance(z, Mapping)]
        poly = d.spec.get("zone_polygon_xy") or next(
            (z.get("polygon_xy") for z in zones if str(z.get("id")) == zone_id), None
        )
        if poly:
            p = np.asarray(poly, dtype=float)
            ax.fill(
                p[:, 0],
                p[:, 1],
                color="tab:blue",
                alpha=0.2,
                label=f"zone {zone_id or '(polygon)'}",
            )
        cf = d.metrics.get("contraflow_edges")
        if isinstance(cf, list) and _draw_edges(
            ax, net, [str(e) for e in cf], colors="tab:purple", linewidths=3
        ):
            ax.plot([], [], color="tab:purple", lw=3, label="contraflow")
        shelters = [p for p in d.pois().values() if p.get("role") == "shelter"]
        if shelters:
            ax.scatter(
                [float(s["x"]) for s in shelters],
                [float(s["y"]) for s in shelters],
                marker="^",
                s=80,
                color="tab:green",
                edgecolors="black",
                zorder=6,
                label="shelter",
            )
            for s in shelters:
                ax.annotate(
                    str(s["id"]),
                    (float(s["x"]), float(s["y"])),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                )
        _legend(ax, loc="upper right", fontsize=7)

    return [
        Panel(
            EVACUATION,
            "Clearance curves",
            clearance,
            "From evacuation.parquet: shares of the evacuee vehicles departed, out of "
            "the zone and sheltered.",
        ),
        Panel(
            EVACUATION,
            "Shelter occupancy over time",
            occupancy,
            "From shelter_occupancy.parquet; dashed: capacity (metrics).",
        ),
        Panel(
            EVACUATION,
            "Evacuation zone, shelters and contraflow",
            zone_map,
            "Zone and shelters from the city manifest; contraflow edges from the metrics.",
        ),
    ]


# ---------------------------------------------------------------------- adaptive
def is_adaptive(d: RunData) -> bool:
    control = d.spec.get("control")
    if isinstance(control, Mapping):
        by = control.get("by_signal")
        if control.get("default") == "adaptive" or (
            isinstance(by, Mapping) and "adaptive" in by.values()
        ):
            return True
    return d.frame("signal_timings", "t_s", "tls_id", "cycle_s") is not None


def busiest_signals(d: RunData, n: int) -> list[str]:
    """The ``n`` signals with the largest mean queue (else the largest flow ratio)."""
    q = d.frame("queues", "tls_id", "queue_veh")
    if q is not None:
        mean = pd.to_numeric(q["queue_veh"], errors="coerce").groupby(q["tls_id"].astype(str))
        return [str(t) for t in mean.mean().dropna().nlargest(n).index]
    st = d.frame("signal_timings", "tls_id", "flow_ratio_sum")
    if st is not None:
        fr = pd.to_numeric(st["flow_ratio_sum"], errors="coerce").groupby(st["tls_id"].astype(str))
        return [str(t) for t in fr.mean().dropna().nlargest(n).index]
    return []


def adaptive_panels(d: RunData) -> list[Panel]:
    """Cycle length over time for the busiest signals, greens served per stage."""
    busiest = busiest_signals(d, BUSIEST_SIGNALS)
    timings = d.frame("signal_timings", "t_s", "tls_id", "cycle_s")
    greens = d.frame("greens_served", "tls_id", "stage", "start_s", "green_s")

    def cycles(ax: Axes) -> None:
        drawn = False
        if timings is not None:
            for tls in busiest:
                part = timings[timings["tls_id"].astype(str) == tls]
                if (s := _num(part, "t_s", "cycle_s")) is not None:
                    ax.step(s["t_s"] / 60.0, s["cycle_s"], where="post", label=tls)
                    drawn = True
        if not drawn:
            no_data(ax, "no signal timings stored (signal_timings.parquet)")
        ax.set(xlabel=_T, ylabel="cycle length [s]")
        _legend(ax, fontsize=7, title="signal")

    def greens_of(tls: str) -> Callable[[Axes], None]:
        def draw(ax: Axes) -> None:
            part = greens[greens["tls_id"].astype(str) == tls] if greens is not None else None
            if part is None or not len(part):
                no_data(ax, "no greens served stored (greens_served.parquet)")
            else:
                for stage in sorted(pd.to_numeric(part["stage"]).unique()):
                    s = _num(part[part["stage"] == stage], "start_s", "green_s")
                    if s is not None:
                        ax.plot(
                            s["start_s"] / 60.0,
                            s["green_s"],
                            ".-",
                            lw=0.8,
                            ms=3,
                            label=f"stage {int(stage)}",
                        )
            ax.set(xlabel=_T, ylabel="green served [s]")
            _legend(ax, fontsize=7)

        return draw

    panels = [
        Panel(
            ADAPTIVE,
            "Cycle length over time (busiest signals)",
            cycles,
            f"From signal_timings.parquet; the {len(busiest)} signals with the largest mean queue.",
        ),
    ]
    for tls in busiest[:GREENS_SIGNALS]:
        panels.append(
            Panel(
                ADAPTIVE,
                f"Greens served per stage at {tls}",
                greens_of(tls),
                "From greens_served.parquet (each green as the guard let it run).",
            )
        )
    return panels


# ---------------------------------------------------------------------- choice
def approach_panels(d: RunData) -> list[Panel]:
    """The busiest approaches' queues over time (viz.heatmap), where the run stored them."""
    series = d.frame("approach_queues", "t_s", "tls_id", "edge_id", "queue_max_veh")
    if series is None:
        return []

    def draw(ax: Axes) -> None:
        matrix, labels, times = heatmap_matrix(series, top=20)
        if not matrix.size:
            no_data(ax, "no approach queues stored")
            return
        step = float(np.median(np.diff(times))) if len(times) > 1 else 60.0
        extent = ((times[0] - step) / 60, times[-1] / 60, len(labels) - 0.5, -0.5)
        im = ax.imshow(matrix, aspect="auto", cmap="magma_r", interpolation="nearest",
                       extent=extent)  # fmt: skip
        ax.set_yticks(range(len(labels)), [lbl[:28] for lbl in labels], fontsize=6)
        ax.figure.colorbar(im, ax=ax, label="largest queue [veh]")
        ax.set(xlabel=_T, ylabel="approach (signal / edge)")

    return [Panel(NETWORK, "Queues per approach over time (busiest 20)", draw,
                  "From approach_queues.parquet: each minute, the largest halting queue "
                  "on the approach, read every control tick.")]  # fmt: skip


def panels_for(d: RunData) -> list[Panel]:
    """The panels of this run: network, then each scenario kind it is."""
    panels = network_panels(d) + approach_panels(d)
    if has_evs(d):
        panels += ev_panels(d)
    if d.kind == "vms_diversion":
        panels += vms_panels(d)
    if d.kind == "evacuation":
        panels += evacuation_panels(d)
    if is_adaptive(d):
        panels += adaptive_panels(d)
    return panels
