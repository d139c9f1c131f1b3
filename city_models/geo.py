"""Local metric coordinates <-> WGS84, around the city's origin.

A local tangent-plane (equirectangular) projection: the error is below 0.1 m over the
12 km of the suwon-scale city, far below what a traffic model resolves. Imported cities
carry their net's own projection (:func:`projection_of`).
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Protocol

from twin.errors import CityError

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


class Projection:
    """Net coordinates <-> WGS84 for one city.

    A generated city uses the tangent plane around its origin (above); an imported city
    uses its net's own projection (``<location projParameter netOffset>``: net x/y =
    projected x/y + offset), through pyproj.
    """

    def __init__(
        self,
        *,
        lat0: float,
        lon0: float,
        proj_params: str | None = None,
        net_offset: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.lat0, self.lon0 = lat0, lon0
        self.proj_params = proj_params
        self.net_offset = net_offset
        self._fwd: Any = None
        self._inv: Any = None
        if proj_params:
            try:
                pyproj = importlib.import_module("pyproj")
            except ImportError:
                raise CityError(
                    "This city carries its net's own projection, which needs the package "
                    "pyproj: pip install -e '.[import]'"
                ) from None
            Transformer = pyproj.Transformer  # noqa: N806
            self._fwd = Transformer.from_crs("EPSG:4326", proj_params, always_xy=True)
            self._inv = Transformer.from_crs(proj_params, "EPSG:4326", always_xy=True)

    def xy_to_lonlat(self, x_m: float, y_m: float) -> tuple[float, float]:
        """Longitude and latitude (degrees) of a point in net coordinates."""
        if self._inv is None:
            return xy_to_lonlat(x_m, y_m, lat0=self.lat0, lon0=self.lon0)
        lon, lat = self._inv.transform(x_m - self.net_offset[0], y_m - self.net_offset[1])
        return float(lon), float(lat)

    def lonlat_to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        """Net coordinates [m] of a longitude and latitude."""
        if self._fwd is None:
            return lonlat_to_xy(lon, lat, lat0=self.lat0, lon0=self.lon0)
        x, y = self._fwd.transform(lon, lat)
        return float(x) + self.net_offset[0], float(y) + self.net_offset[1]


class _HasGeo(Protocol):
    @property
    def origin_lat(self) -> float: ...

    @property
    def origin_lon(self) -> float: ...

    @property
    def georef(self) -> Any: ...


def projection_of(manifest: _HasGeo) -> Projection:
    """The projection of a city's manifest (its net's own for an imported city)."""
    geo = manifest.georef
    if geo is None:
        return Projection(lat0=manifest.origin_lat, lon0=manifest.origin_lon)
    return Projection(
        lat0=manifest.origin_lat,
        lon0=manifest.origin_lon,
        proj_params=geo.proj_params,
        net_offset=(geo.net_offset[0], geo.net_offset[1]),
    )
