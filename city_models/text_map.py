"""A city drawn in characters, for ``twin city show`` (a terminal has no plot window)."""

from __future__ import annotations

import math
from typing import Protocol

from city_models.features import _inside
from city_models.manifest import Manifest
from city_models.net import NetInfo

MARKS = {"hospital": "H", "fire_station": "F", "shelter": "S"}


class _CityLike(Protocol):
    @property
    def net(self) -> NetInfo: ...

    @property
    def manifest(self) -> Manifest: ...


def text_map(city: _CityLike, *, width: int = 64) -> str:
    """Streets as dots, signals ``+``, POIs by their letter, VMS ``V``, the flood zone
    ``~``; north up, one character ~ (city width / ``width``) metres (half as wide as
    tall, like a terminal's cells)."""
    net, m = city.net, city.manifest
    xmin, ymin, xmax, ymax = net.bbox_xy
    width = max(16, width)
    cell = max(xmax - xmin, 1.0) / (width - 1)
    height = max(4, math.ceil((ymax - ymin) / (2 * cell)) + 1)
    grid = [[" "] * width for _ in range(height)]

    def put(x: float, y: float, ch: str) -> None:
        i = round((x - xmin) / cell)
        j = height - 1 - round((y - ymin) / (2 * cell))
        if 0 <= i < width and 0 <= j < height:
            grid[j][i] = ch

    for zone in m.zones:
        for j in range(height):
            for i in range(width):
                x, y = xmin + i * cell, ymin + (height - 1 - j) * 2 * cell
                if _inside((x, y), zone.polygon_xy):
                    grid[j][i] = "~"
    for e in net.edges.values():
        for (x0, y0), (x1, y1) in zip(e.shape_xy, e.shape_xy[1:], strict=False):
            steps = max(1, int(math.dist((x0, y0), (x1, y1)) / (cell / 2)))
            for k in range(steps + 1):
                put(x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, ".")
    for t in net.tls.values():
        put(t.x, t.y, "+")
    for v in m.vms:
        put(v.x, v.y, "V")
    for p in m.pois:
        put(p.x, p.y, MARKS.get(p.role, "?"))
    return "\n".join("".join(row).rstrip() for row in grid)
