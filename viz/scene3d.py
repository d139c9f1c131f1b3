"""3D scenes of a run with pyvista, off screen: a still PNG, an MP4 following an EV, or an
interactive HTML page.

Roads are ribbons as wide as their lanes around the net's edge shapes (SUMO's edge shape
runs through the middle of its lanes), junctions discs, signal heads coloured by
the state SUMO showed at that moment (``signal_states.xml``), vehicles oriented boxes
coloured by speed (EVs red and larger), VMS panels with their message, the flood zone a
translucent volume. VTK renders through EGL (no display needed); the backend is chosen
before VTK loads so no X warning appears. The packages are the ``[viz3d]`` extra.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from city_models.manifest import Manifest
from city_models.net import NetInfo
from twin.errors import ConfigError

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

LANE_WIDTH_M = 3.2
STATE_RGB = {"G": (0.1, 0.75, 0.2), "g": (0.55, 0.85, 0.4), "y": (1.0, 0.85, 0.1),
             "r": (0.9, 0.1, 0.1), "s": (0.9, 0.1, 0.1), "o": (0.5, 0.5, 0.5)}  # fmt: skip
ROAD_RGB = (0.35, 0.35, 0.38)
GROUND_RGB = (0.93, 0.93, 0.9)


@dataclass(frozen=True)
class Vehicle:
    """A vehicle at one moment: net coordinates, heading (SUMO: degrees clockwise from
    north), speed."""

    id: str
    x: float
    y: float
    angle_deg: float
    speed_mps: float
    type: str = "car"


def _pyvista() -> Any:
    try:
        import pyvista  # noqa: PLC0415  (optional: the [viz3d] extra)
    except ImportError:
        raise ConfigError(
            "3D scenes need pyvista: pip install -e '.[viz3d]' (pyvista, imageio-ffmpeg)."
        ) from None
    pyvista.OFF_SCREEN = True
    return pyvista


def _ribbon(shape: Sequence[tuple[float, float]], width: float, offset: float) -> np.ndarray:
    """A strip polygon's points: the shape shifted ``offset`` to the right, ``width`` wide."""
    pts = np.asarray(shape, dtype=float)
    d = np.diff(pts, axis=0)
    n = np.column_stack([d[:, 1], -d[:, 0]])  # right normal
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    normals = np.vstack([n[:1], (n[:-1] + n[1:]) / 2, n[-1:]])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
    left = pts + normals * (offset - width / 2)
    right = pts + normals * (offset + width / 2)
    return np.vstack([left, right[::-1]])


def _polygon_mesh(pv: Any, ring: np.ndarray, z: float) -> Any:
    pts = np.column_stack([ring, np.full(len(ring), z)])
    faces = np.hstack([[len(ring)], np.arange(len(ring))])
    return pv.PolyData(pts, faces).triangulate()


def signal_heads(
    net: NetInfo, states: Mapping[str, str]
) -> list[tuple[str, float, float, tuple[float, float, float]]]:
    """One head per signalized approach, at its stop line: (signal, x, y, colour) of the
    most permissive state its links show (green over yellow over red)."""
    rank = {"G": 0, "g": 1, "y": 2, "r": 3, "s": 3}
    heads = []
    for tls in sorted(net.tls.values(), key=lambda t: t.id):
        state = states.get(tls.id, "")
        best: dict[str, str] = {}
        for link in tls.links:
            ch = state[link.index] if link.index < len(state) else "o"
            cur = best.get(link.from_edge)
            if cur is None or rank.get(ch, 9) < rank.get(cur, 9):
                best[link.from_edge] = ch
        for edge_id in sorted(best):
            ch = best[edge_id]
            e = net.edges[edge_id]
            (x0, y0), (x1, y1) = e.shape_xy[-2], e.shape_xy[-1]
            seg = math.hypot(x1 - x0, y1 - y0) or 1.0
            rx, ry = (y1 - y0) / seg, -(x1 - x0) / seg  # right of travel
            side = e.lanes * LANE_WIDTH_M / 2 + 1.5  # SUMO's edge shape: its lanes' middle
            heads.append((tls.id, x1 + rx * side, y1 + ry * side,
                          STATE_RGB.get(ch, STATE_RGB["o"])))  # fmt: skip
    return heads


class Scene:
    """A city scene whose static parts (ground, roads, junctions, zones, VMS panels) are
    built once; :meth:`update` moves the vehicles and recolours the signal heads, so a
    movie costs one render per frame.

    ``symbol_scale`` enlarges signal heads and vehicles (1: true size; the overview of a
    whole district draws them 3x so they can be seen)."""

    def __init__(
        self,
        net: NetInfo,
        manifest: Manifest,
        *,
        window: tuple[int, int] = (1280, 800),
        title: str = "",
        symbol_scale: float = 1.0,
    ) -> None:
        pv = self.pv = _pyvista()
        self.net, self.manifest, self.scale = net, manifest, symbol_scale
        p = self.plotter = pv.Plotter(off_screen=True, window_size=list(window))
        p.set_background("white")
        xmin, ymin, xmax, ymax = net.bbox_xy
        p.add_mesh(pv.Plane(center=((xmin + xmax) / 2, (ymin + ymax) / 2, -0.2),
                            i_size=xmax - xmin + 200, j_size=ymax - ymin + 200),
                   color=GROUND_RGB)  # fmt: skip
        roads = [
            _polygon_mesh(pv, _ribbon(e.shape_xy, e.lanes * LANE_WIDTH_M, 0.0), 0.0)
            for e in net.edges.values()
            if len(e.shape_xy) >= 2
        ]
        if roads:
            p.add_mesh(pv.merge(roads), color=ROAD_RGB)
        discs = [pv.Disc(center=(x, y, 0.05), inner=0.0, outer=9.0, c_res=12)
                 for x, y in net.nodes_xy.values()]  # fmt: skip
        if discs:
            p.add_mesh(pv.merge(discs), color=(0.42, 0.42, 0.45))
        for zone in manifest.zones:
            ring = np.asarray(zone.polygon_xy, dtype=float)
            volume = _polygon_mesh(pv, ring, 0.3).extrude((0, 0, 3.0), capping=True)
            p.add_mesh(volume, color=(0.2, 0.45, 0.9), opacity=0.25)
        # signal heads: one merged mesh, recoloured per frame through its cell colours
        self.heads = signal_heads(net, {})
        k = symbol_scale
        cubes, poles = [], []
        for _tls, x, y, _rgb in self.heads:
            poles.append(pv.Cylinder(center=(x, y, 2.5 * k), direction=(0, 0, 1),
                                     radius=0.25 * k, height=5 * k))  # fmt: skip
            cubes.append(pv.Cube(center=(x, y, 5.5 * k), x_length=2.2 * k, y_length=2.2 * k,
                                 z_length=2.2 * k))  # fmt: skip
        self._cells = cubes[0].n_cells if cubes else 0
        self.head_mesh = pv.merge(cubes) if cubes else None
        if poles:
            p.add_mesh(pv.merge(poles), color=(0.2, 0.2, 0.2))
        if self.head_mesh is not None:
            self.head_mesh.cell_data["rgb"] = np.zeros((self.head_mesh.n_cells, 3), np.uint8)
            p.add_mesh(self.head_mesh, scalars="rgb", rgb=True)
        self._vms_labels: Any = None
        for v in manifest.vms:
            p.add_mesh(pv.Cube(center=(v.x, v.y, 8.0), x_length=6, y_length=1, z_length=3),
                       color=(0.05, 0.05, 0.1))  # fmt: skip
        self._vehicle_actors: list[Any] = []
        if title:
            p.add_text(title, font_size=10, color="black", name="title")

    def update(
        self,
        *,
        signal_states: Mapping[str, str],
        vehicles: Sequence[Vehicle] = (),
        ev_ids: Sequence[str] = (),
        vms_text: Mapping[str, str] | None = None,
        follow: str | None = None,
        caption: str = "",
    ) -> None:
        """Show one moment: signal colours, vehicles, VMS messages, the camera."""
        pv, p, k = self.pv, self.plotter, self.scale
        if self.head_mesh is not None:
            colours = signal_heads(self.net, signal_states)
            rgb = np.repeat(np.array([c for *_r, c in colours]) * 255, self._cells, axis=0)
            self.head_mesh.cell_data["rgb"] = rgb.astype(np.uint8)
        for actor in self._vehicle_actors:
            p.remove_actor(actor)
        self._vehicle_actors = []
        cars = [v for v in vehicles if v.id not in ev_ids]
        evs = [v for v in vehicles if v.id in ev_ids]
        for group, size, colour in ((cars, (1.9, 4.5, 1.6), None),
                                    (evs, (2.4, 7.0, 2.6), (0.85, 0.0, 0.0))):  # fmt: skip
            if not group:
                continue
            # one glyph per vehicle: a box whose long (x) axis follows the heading
            heading = np.radians(90.0 - np.array([v.angle_deg for v in group]))
            points = pv.PolyData(np.array([(v.x, v.y, size[2] * k / 2) for v in group]))
            points["dir"] = np.column_stack([np.cos(heading), np.sin(heading),
                                             np.zeros(len(group))])  # fmt: skip
            points["speed_mps"] = np.array([v.speed_mps for v in group])
            box = pv.Cube(x_length=size[1] * k, y_length=size[0] * k, z_length=size[2] * k)
            mesh = points.glyph(orient="dir", scale=False, geom=box)
            if colour is None:
                actor = p.add_mesh(mesh, scalars="speed_mps", cmap="viridis", clim=(0.0, 17.0),
                                   scalar_bar_args={"title": "speed [m/s]"})  # fmt: skip
            else:
                actor = p.add_mesh(mesh, color=colour)
            self._vehicle_actors.append(actor)
        if self.manifest.vms:
            if self._vms_labels is not None:
                p.remove_actor(self._vms_labels)
            pts = np.array([(v.x, v.y, 10.0) for v in self.manifest.vms])
            labels = [f"{v.id}: {(vms_text or {}).get(v.id, '')}".rstrip(": ")
                      for v in self.manifest.vms]  # fmt: skip
            self._vms_labels = p.add_point_labels(
                pts, labels, font_size=10, point_size=1, text_color="orange",
                shape_color="black", always_visible=True,
            )  # fmt: skip
        if caption:
            p.add_text(caption, position="lower_left", font_size=8, color="black", name="caption")
        xmin, ymin, xmax, ymax = self.net.bbox_xy
        target = next((v for v in vehicles if v.id == follow), None) if follow else None
        if target is not None:
            a = math.radians(90.0 - target.angle_deg)  # heading as a math angle
            behind = (target.x - 90 * math.cos(a), target.y - 90 * math.sin(a), 60.0)
            p.camera_position = [behind, (target.x, target.y, 0.0), (0, 0, 1)]
        else:
            cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
            span = max(xmax - xmin, ymax - ymin)
            p.camera_position = [(cx, cy - 0.55 * span, 0.45 * span), (cx, cy, 0.0), (0, 0, 1)]


def render_png(scene: Scene, path: Path) -> Path:
    """Render the scene to a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.plotter.screenshot(str(path))
    return path


def export_html(scene: Scene, path: Path) -> Path:
    """The scene as an interactive HTML page (pyvista's export)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.plotter.export_html(str(path))
    return path


def states_at(timelines: Mapping[str, Sequence[tuple[float, str]]], t_s: float) -> dict[str, str]:
    """Every signal's state at ``t_s`` (its last switch at or before it)."""
    out = {}
    for tls, timeline in timelines.items():
        current = None
        for t, state in timeline:
            if t > t_s:
                break
            current = state
        if current is not None:
            out[tls] = current
    return out


def read_vehicles(fcd: Path, t0_s: float, t1_s: float) -> dict[float, dict[str, Vehicle]]:
    """FCD timesteps in ``[t0_s, t1_s]``: time -> vehicle id -> :class:`Vehicle`."""
    from viz.timespace import iter_fcd  # noqa: PLC0415  (one module reads FCD)

    out: dict[float, dict[str, Vehicle]] = {}
    for t, v in iter_fcd(fcd):
        if t < t0_s:
            continue
        if t > t1_s:
            break
        out.setdefault(t, {})[v["id"]] = Vehicle(
            v["id"], float(v["x"]), float(v["y"]), float(v.get("angle", 0.0)),
            float(v.get("speed", 0.0)), v.get("type", "car"),
        )  # fmt: skip
    return out


def vehicles_at(steps: Mapping[float, Mapping[str, Vehicle]], t_s: float) -> list[Vehicle]:
    """Vehicles at ``t_s``, interpolated between the FCD steps around it (a vehicle in
    only the earlier step is shown there; positions, speed and heading linearly, the
    heading the short way round)."""
    times = sorted(steps)
    if not times:
        return []
    before = [t for t in times if t <= t_s]
    a = before[-1] if before else times[0]
    after = [t for t in times if t > a]
    b = after[0] if after else a
    w = 0.0 if b == a else min(max((t_s - a) / (b - a), 0.0), 1.0)
    out = []
    for vid, va in steps[a].items():
        vb = steps[b].get(vid)
        if vb is None or w == 0.0:
            out.append(va)
            continue
        turn = (vb.angle_deg - va.angle_deg + 180.0) % 360.0 - 180.0
        out.append(
            Vehicle(vid, va.x + w * (vb.x - va.x), va.y + w * (vb.y - va.y),
                    (va.angle_deg + w * turn) % 360.0,
                    va.speed_mps + w * (vb.speed_mps - va.speed_mps), va.type)
        )  # fmt: skip
    return out


def write_movie(
    scene: Scene,
    path: Path,
    *,
    steps: Mapping[float, Mapping[str, Vehicle]],
    timelines: Mapping[str, Sequence[tuple[float, str]]],
    t0_s: float,
    seconds: float,
    fps: int = 10,
    ev_ids: Sequence[str] = (),
    follow: str | None = None,
    caption: str = "",
    signs: Any = None,
) -> int:
    """An MP4 (imageio-ffmpeg) of ``seconds`` of simulated time from ``t0_s`` at ``fps``
    frames per simulated second; returns the number of frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.plotter.open_movie(str(path), framerate=fps, quality=7)
    n = max(1, round(seconds * fps))
    for k in range(n):
        t = t0_s + k / fps
        scene.update(signal_states=states_at(timelines, t), vehicles=vehicles_at(steps, t),
                     ev_ids=ev_ids, follow=follow, caption=f"{caption} t={t:.1f} s",
                     vms_text=vms_texts_at(signs, t))  # fmt: skip
        scene.plotter.write_frame()
    scene.plotter.close()
    return n


def vms_texts_at(signs: Any, t_s: float) -> dict[str, str]:
    """Each sign's message at ``t_s`` from a run's ``vms`` series (``t_s, sign, text``):
    the last one shown at or before it."""
    if signs is None or len(signs) == 0:
        return {}
    shown = signs[signs["t_s"] <= t_s].sort_values("t_s")
    return {str(r["sign"]): str(r["text"]) for _i, r in shown.groupby("sign").tail(1).iterrows()}
