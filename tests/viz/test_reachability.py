"""Tests for viz.reachability.plot_reachability."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from city_models.build import City
from city_models.graph import reachability
from viz.reachability import plot_reachability

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("limit_s", [600.0, 150.0])  # 150 s: some junctions beyond the limit
def test_plot_writes_png(district_city: City, tmp_path: Path, limit_s: float) -> None:
    without = reachability(district_city, priority=False, limit_s=limit_s)
    with_ = reachability(district_city, priority=True, limit_s=limit_s)
    out = tmp_path / "maps" / "reach.png"
    assert plot_reachability(district_city, without, with_, out) == out
    assert out.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(out)
    assert img.shape[:2] == (650, 1400)  # 14 x 6.5 in at 100 dpi
    assert float(np.std(img)) > 0.01  # not a blank canvas
