"""3D scenes (viz.scene3d): an off-screen render of the district shows roads, signal heads
in the colours of the states given, vehicles; the frame changes with the states; a short
MP4 is written."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from city_models.build import City
from viz.scene3d import Scene, Vehicle, render_png, signal_heads, vehicles_at, write_movie

pytestmark = pytest.mark.slow


def _all(city: City, ch: str) -> dict[str, str]:
    return {t.id: ch * len(t.links) for t in city.net.tls.values()}


def _share(img: np.ndarray, rgb: tuple[float, float, float], tol: float = 0.12) -> float:
    px = img[..., :3]
    return float(np.mean(np.all(np.abs(px - np.array(rgb)) < tol, axis=-1)))


def _vehicles(city: City, n: int = 60) -> list[Vehicle]:
    edges = sorted(city.net.edges.values(), key=lambda e: e.id)[:n]
    return [Vehicle(f"v{k}", *e.shape_xy[0], 90.0, 8.0) for k, e in enumerate(edges)]


def test_render_shows_roads_signals_and_vehicles(district_city: City, tmp_path: Path) -> None:
    heads = signal_heads(district_city.net, _all(district_city, "G"))
    assert len(heads) >= 4 * 40  # a head per signalized approach
    scene = Scene(district_city.net, district_city.manifest, window=(1280, 800), symbol_scale=3)
    scene.update(signal_states=_all(district_city, "G"), vehicles=_vehicles(district_city))
    green = mpimg.imread(render_png(scene, tmp_path / "green.png"))
    assert green.shape[:2] == (800, 1280)
    px = green[..., :3]
    grey = (
        (px.max(axis=-1) - px.min(axis=-1) < 0.06)
        & (px.mean(axis=-1) > 0.15)
        & (px.mean(axis=-1) < 0.55)
    )  # roads and junctions, whatever the shading
    light = px.mean(axis=-1) > 0.75
    assert grey.mean() > 0.02 and light.mean() > 0.2  # not an empty frame
    green_px = _share(green, (0.1, 0.75, 0.2), tol=0.15)
    assert green_px > 0.0002  # 190 heads of a few pixels each
    # the same scene with every signal red: green heads are gone, red ones appear
    scene.update(signal_states=_all(district_city, "r"), vehicles=_vehicles(district_city))
    red = mpimg.imread(render_png(scene, tmp_path / "red.png"))
    assert _share(red, (0.9, 0.1, 0.1), tol=0.15) > _share(green, (0.9, 0.1, 0.1), tol=0.15)
    assert _share(red, (0.1, 0.75, 0.2), tol=0.15) < green_px / 2


def test_interpolated_movie(district_city: City, tmp_path: Path) -> None:
    a = {"v": Vehicle("v", 0.0, 0.0, 90.0, 10.0)}
    b = {"v": Vehicle("v", 10.0, 0.0, 90.0, 12.0)}
    (mid,) = vehicles_at({0.0: a, 1.0: b}, 0.5)
    assert (mid.x, mid.speed_mps) == (5.0, 11.0)
    (turn,) = vehicles_at({0.0: {"v": Vehicle("v", 0, 0, 350.0, 1)},
                           1.0: {"v": Vehicle("v", 0, 0, 10.0, 1)}}, 0.5)  # fmt: skip
    assert turn.angle_deg == pytest.approx(0.0)  # the short way round
    e = next(iter(district_city.net.edges.values()))
    (x0, y0), (x1, y1) = e.shape_xy[0], e.shape_xy[-1]
    steps = {float(t): {"ev": Vehicle("ev", x0 + (x1 - x0) * t / 3, y0 + (y1 - y0) * t / 3,
                                      90.0, 10.0, "ambulance")} for t in range(4)}  # fmt: skip
    scene = Scene(district_city.net, district_city.manifest, window=(320, 240))
    timelines = {t: [(0.0, s)] for t, s in _all(district_city, "G").items()}
    out = tmp_path / "m.mp4"
    n = write_movie(scene, out, steps=steps, timelines=timelines, t0_s=0.0, seconds=1.0, fps=5,
                    ev_ids=["ev"], follow="ev")  # fmt: skip
    assert n == 5 and out.stat().st_size > 1000
