"""Clearance curves: the mean over seeds on a common grid, and the PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viz.evacuation import mean_curve, plot_clearance_curves


def test_mean_curve_interpolates_onto_the_first_grid() -> None:
    a = [(0.0, 0.0, 0.0), (10.0, 1.0, 0.5)]
    b = [(0.0, 0.0, 0.0), (5.0, 0.5, 0.5), (10.0, 0.5, 0.5)]
    np.testing.assert_allclose(mean_curve([a, b]), [[0.0, 0.0, 0.0], [10.0, 0.75, 0.5]])
    assert mean_curve([]).shape == (0, 3)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    curve = [(t, min(t / 600.0, 1.0), min(t / 900.0, 1.0)) for t in range(0, 1200, 5)]
    curves = {(d, m): [curve] for d in ("simultaneous", "staged") for m in ("none", "contraflow")}
    out = plot_clearance_curves(curves, tmp_path / "c.png", warning_s=0.0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
