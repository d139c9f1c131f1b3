"""Local metric coordinates <-> WGS84, around the city's origin.

A local tangent-plane (equirectangular) projection: the error is below 0.1 m over the
12 km of the suwon-scale city, far below what a traffic model resolves.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8


def xy_to_lonlat(x_m: float, y_m: float, *, lat0: float, lon0: float) -> tuple[float, float]:
    """Longitude and latitude (degrees) of a point ``x_m`` east, ``y_m`` north of the origin."""
    lat = lat0 + math.degrees(y_m / EARTH_RADIUS_M)
    lon = lon0 + math.degrees(x_m / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return lon, lat


def lonlat_to_xy(lon: float, lat: float, *, lat0: float, lon0: float) -> tuple[float, float]:
    """Inverse of :func:`xy_to_lonlat`."""
    y = math.radians(lat - lat0) * EARTH_RADIUS_M
    x = math.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    return x, y
