"""Time-space diagrams of a corridor, from what SUMO recorded.

Distance along a corridor (an EV's route, or a list of edges) against time: every signal
on it drawn at its stop line as the green / yellow / red bands SUMO actually showed
(``signal_states.xml``: a ``SaveTLSSwitchStates`` record, not the plan), the vehicles'
trajectories on the corridor from SUMO's FCD output (``fcd.xml.gz``), the EV bold, and the
priority windows (request to release) shaded. A run records both with ``[outputs]
signal_states = true`` (the default) and ``trajectories = true``.
"""

from __future__ import annotations

import gzip
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from city_models.net import NetInfo
from twin.errors import ConfigError

log = logging.getLogger(__name__)

BAND_COLORS = {"G": "#1a9850", "g": "#91cf60", "y": "#fee08b", "r": "#d73027", "s": "#d73027",
               "u": "#fdae61", "o": "#cccccc", "O": "#cccccc"}  # fmt: skip


@dataclass(frozen=True)
class Band:
    """One interval a link showed one state: ``[t0_s, t1_s)``."""

    t0_s: float
    t1_s: float
    state: str


@dataclass(frozen=True)
class CorridorSignal:
    """A signal on the corridor: where its stop line is and which link the corridor uses."""

    tls: str
    distance_m: float
    link_index: int
    from_edge: str
    to_edge: str


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def read_signal_states(path: Path) -> dict[str, list[tuple[float, str]]]:
    """Signal id -> [(time, state)] in time order, from a ``SaveTLSSwitchStates`` or
    ``SaveTLSStates`` record."""
    if not path.exists():
        raise ConfigError(
            f"No signal-state record at {path}: the run was made with "
            "[outputs] signal_states = false (or before it existed); run it again."
        )
    out: dict[str, list[tuple[float, str]]] = {}
    with _open(path) as fh:
        for _ev, el in ElementTree.iterparse(fh, events=("end",)):
            if el.tag == "tlsState":
                out.setdefault(el.attrib["id"], []).append(
                    (float(el.attrib["time"]), el.attrib["state"])
                )
                el.clear()
    for timeline in out.values():
        timeline.sort(key=lambda r: r[0])
    return out


def signal_bands(
    timeline: Sequence[tuple[float, str]], link_index: int, *, end_s: float
) -> list[Band]:
    """The intervals one link of a signal spent in each state, merged where it did not
    change (a switch of another link leaves this one's band whole)."""
    bands: list[Band] = []
    for k, (t, state) in enumerate(timeline):
        t1 = timeline[k + 1][0] if k + 1 < len(timeline) else end_s
        ch = state[link_index] if link_index < len(state) else "o"
        if t1 <= t:
            continue
        if bands and bands[-1].state == ch and abs(bands[-1].t1_s - t) < 1e-9:
            bands[-1] = Band(bands[-1].t0_s, t1, ch)
        else:
            bands.append(Band(t, t1, ch))
    return bands


def iter_fcd(path: Path) -> Iterator[tuple[float, dict[str, str]]]:
    """(time, vehicle attributes) for every vehicle of every FCD timestep."""
    with _open(path) as fh:
        t = 0.0
        for ev, el in ElementTree.iterparse(fh, events=("start", "end")):
            if ev == "start" and el.tag == "timestep":
                t = float(el.attrib["time"])
            elif ev == "end" and el.tag == "vehicle":
                yield t, dict(el.attrib)
                el.clear()
            elif ev == "end" and el.tag == "timestep":
                el.clear()


def read_trajectories(
    path: Path, *, edges: set[str] | None = None, vehicles: set[str] | None = None
) -> pd.DataFrame:
    """FCD rows (``t_s, vehicle, type, edge, pos_m, speed_mps``) on ``edges`` and/or of
    ``vehicles`` (internal junction lanes are left out)."""
    if not path.exists():
        raise ConfigError(
            f"No trajectories at {path}: run the scenario with [outputs] trajectories = "
            "true (or --set outputs.trajectories=true)."
        )
    rows = []
    for t, v in iter_fcd(path):
        lane = v.get("lane", "")
        if lane.startswith(":"):
            continue
        edge = lane.rsplit("_", 1)[0]
        wanted = (edges is None and vehicles is None) or (edges is not None and edge in edges)
        if wanted or (vehicles is not None and v["id"] in vehicles):
            rows.append((t, v["id"], v.get("type", ""), edge, float(v.get("pos", 0.0)),
                         float(v.get("speed", 0.0))))  # fmt: skip
    return pd.DataFrame(rows, columns=["t_s", "vehicle", "type", "edge", "pos_m", "speed_mps"])


def ev_route(path: Path, ev_id: str) -> list[str]:
    """The normal edges an EV drove, in order (from the FCD record)."""
    route: list[str] = []
    for _t, v in iter_fcd(path):
        if v["id"] != ev_id or v.get("lane", "").startswith(":"):
            continue
        edge = v["lane"].rsplit("_", 1)[0]
        if not route or route[-1] != edge:
            route.append(edge)
    if not route:
        raise ConfigError(f"Vehicle {ev_id!r} is not in the run's trajectories ({path}).")
    return route


def corridor(net: NetInfo, edges: Sequence[str]) -> tuple[dict[str, float], list[CorridorSignal]]:
    """Start distance of each corridor edge, and the signals at the corridor's junctions
    (at the end of the edge that enters them) with the link the corridor takes. An edge
    that appears twice (a route out and back) keeps its first position."""
    unknown = [e for e in edges if e not in net.edges]
    if unknown:
        raise ConfigError(f"Corridor edges {unknown[:5]} are not in the city's network.")
    offsets: dict[str, float] = {}
    signals: list[CorridorSignal] = []
    d = 0.0
    for k, e in enumerate(edges):
        offsets.setdefault(e, d)
        d += net.edges[e].length_m
        nxt = edges[k + 1] if k + 1 < len(edges) else None
        for tls in net.tls.values():
            links = [
                lk for lk in tls.links if lk.from_edge == e and (nxt is None or lk.to_edge == nxt)
            ]
            if links and nxt is not None:
                signals.append(CorridorSignal(tls.id, d, links[0].index, e, nxt))
    return offsets, signals


def draw_timespace(
    ax: Any,
    *,
    net: NetInfo,
    edges: Sequence[str],
    states: dict[str, list[tuple[float, str]]],
    trajectories: pd.DataFrame | None,
    events: pd.DataFrame | None,
    t_range: tuple[float, float],
    ev_ids: Sequence[str] = (),
    title: str = "",
) -> dict[str, Any]:
    """Draw one time-space diagram on ``ax``; returns what went in (for tests)."""
    offsets, signals = corridor(net, edges)
    t0, t1 = t_range
    drawn: dict[str, Any] = {"signals": [], "bands": {}, "vehicles": 0, "windows": 0}
    # priority windows: request -> release at each signal
    if events is not None and not events.empty and "tls" in events:
        opened: dict[str, float] = {}
        for _i, row in events.sort_values("t_s").iterrows():
            tls = row.get("tls")
            if row["kind"] == "priority_request" and isinstance(tls, str):
                opened.setdefault(tls, float(row["t_s"]))
            elif row["kind"] == "priority_release" and isinstance(tls, str) and tls in opened:
                start = opened.pop(tls)
                for sig in signals:
                    if sig.tls == tls:
                        ax.fill_between([start, float(row["t_s"])], sig.distance_m - 120,
                                        sig.distance_m + 20, color="#4575b4", alpha=0.3,
                                        linewidth=0, zorder=2)  # fmt: skip
                        drawn["windows"] += 1
    for sig in signals:
        timeline = [(t, s) for t, s in states.get(sig.tls, []) if t <= t1]
        bands = signal_bands(timeline, sig.link_index, end_s=t1)
        drawn["signals"].append(sig.tls)
        drawn["bands"][sig.tls] = bands
        for b in bands:
            lo, hi = max(b.t0_s, t0), min(b.t1_s, t1)
            if hi > lo:
                color = BAND_COLORS.get(b.state, "#999")
                ax.plot([lo, hi], [sig.distance_m, sig.distance_m], color=color, linewidth=4,
                        solid_capstyle="butt", zorder=3)  # fmt: skip
    if trajectories is not None and not trajectories.empty:
        df = trajectories[trajectories["edge"].isin(offsets)].copy()
        df["d_m"] = df["edge"].map(offsets) + df["pos_m"]
        segments, colors = [], []
        for vid, g in df.sort_values("t_s").groupby("vehicle"):
            if vid in ev_ids:
                continue
            pts = g[["t_s", "d_m"]].to_numpy()
            # a new segment where the vehicle left the corridor and came back (or jumped)
            cut = [0]
            for k in range(1, len(pts)):
                dt, dd = pts[k, 0] - pts[k - 1, 0], pts[k, 1] - pts[k - 1, 1]
                if dt > 2.5 or dd < -1.0 or dd > 60.0 * max(dt, 1.0):
                    cut.append(k)
            cut.append(len(pts))
            for lo_k, hi_k in itertools.pairwise(cut):
                if hi_k - lo_k > 1:
                    segments.append(pts[lo_k:hi_k])
                    colors.append("#555555")
        if segments:
            ax.add_collection(LineCollection(segments, colors=colors, linewidths=0.5, alpha=0.6))
        drawn["vehicles"] = len(segments)
        for vid in ev_ids:
            g = df[df["vehicle"] == vid].sort_values("t_s")
            if not g.empty:
                ax.plot(g["t_s"], g["d_m"], color="#b2182b", linewidth=2.5, zorder=4,
                        label=f"EV {vid}")  # fmt: skip
    ax.set_xlim(t0, t1)
    ax.set_ylim(0, sum(net.edges[e].length_m for e in dict.fromkeys(edges)) or 1.0)
    ax.set_xlabel("simulation time [s]")
    ax.set_ylabel("distance along the corridor [m]")
    ax.set_title(title)
    handles = [Patch(color=BAND_COLORS["G"], label="green"),
               Patch(color=BAND_COLORS["y"], label="yellow"),
               Patch(color=BAND_COLORS["r"], label="red"),
               Patch(color="#4575b4", alpha=0.3, label="priority window")]  # fmt: skip
    h2, _l2 = ax.get_legend_handles_labels()
    ax.legend(handles=[*handles, *h2], loc="upper left", fontsize=8)
    return drawn


def timespace_figure(
    panels: Sequence[dict[str, Any]], *, caption: str, width_in: float = 11.0
) -> tuple[Figure, list[dict[str, Any]]]:
    """One figure with one time-space diagram per panel (side by side for --compare);
    each panel is the keyword arguments of :func:`draw_timespace`."""
    fig, axes = plt.subplots(1, len(panels), figsize=(width_in * len(panels) ** 0.5, 6.0),
                             squeeze=False, sharey=True)  # fmt: skip
    drawn = [draw_timespace(ax, **p) for ax, p in zip(axes[0], panels, strict=True)]
    fig.text(0.01, 0.005, caption, fontsize=8, color="#444")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig, drawn
