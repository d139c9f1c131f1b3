"""A tiny made-up Korean standard node-link (MOCT) pair for the importer's tests.

A 3x3 lattice of nodes about 250 m apart around Suwon City Hall (lat 37.2636, lon
127.0286), with one directed link per direction of travel. Every geometry, id and name
here is invented (the road names are common Korean street names, not map data).

Lines (``i`` counts west to east, ``j`` south to north)::

    row j=2  권선로   rank 104 (arterial)  2 lanes, 50 km/h
    row j=1  중부대로 rank 103 (arterial)  3 lanes, 60 km/h (bent in the middle)
    row j=0  행궁로   rank 107 (local)     1 lane,  MAX_SPD 0 (-> 30 km/h)
    col i=0  매산로   rank 108 (local)     1 lane,  30 km/h; (0,0)->(0,1) is one-way
    col i=1  팔달로   rank 106 (collector) 2 lanes, 50 km/h
    col i=2  경수대로 rank 105 (collector) 2 lanes, MAX_SPD 0 (-> 50 km/h)

Nodes with 3 or more legs have NODE_TYPE 101 (교차로), the corners 103. By the node-type
rule, (1,1), (1,2) and (2,1) are signals: 3+ legs, 2+ of them arterial or collector.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
from pyproj import Transformer
from shapely.geometry import LineString, Point

CENTER_LAT = 37.2636
CENTER_LON = 127.0286
SPACING_M = 250.0
REGION = "241"
EARTH_RADIUS_M = 6_371_008.8

# line -> (ROAD_NAME, ROAD_RANK, LANES, MAX_SPD)
ROWS: dict[int, tuple[str, str, int, int]] = {
    0: ("행궁로", "107", 1, 0),
    1: ("중부대로", "103", 3, 60),
    2: ("권선로", "104", 2, 50),
}
COLS: dict[int, tuple[str, str, int, int]] = {
    0: ("매산로", "108", 1, 30),
    1: ("팔달로", "106", 2, 50),
    2: ("경수대로", "105", 2, 0),
}
RANK_CLASS = {"103": "arterial", "104": "arterial", "105": "collector", "106": "collector"}
RANK_CLASS |= {"107": "local", "108": "local"}


def node_id(i: int, j: int) -> str:
    """NODE_ID of lattice node ``(i, j)``: region code 241, then 7 digits."""
    return f"{REGION}00000{i}{j}"


def _lonlat(east_m: float, north_m: float) -> tuple[float, float]:
    lat = CENTER_LAT + math.degrees(north_m / EARTH_RADIUS_M)
    lon = CENTER_LON + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(CENTER_LAT))))
    return lon, lat


NODE_LONLAT: dict[str, tuple[float, float]] = {
    node_id(i, j): _lonlat((i - 1) * SPACING_M, (j - 1) * SPACING_M)
    for i in range(3)
    for j in range(3)
}
ONE_WAY = ((0, 0), (0, 1))  # only this direction exists


def _segments() -> list[tuple[tuple[int, int], tuple[int, int], tuple[str, str, int, int]]]:
    segs = []
    for j, spec in ROWS.items():
        segs += [((i, j), (i + 1, j), spec) for i in range(2)]
    for i, spec in COLS.items():
        segs += [((i, j), (i, j + 1), spec) for j in range(2)]
    return segs


def _links() -> list[dict[str, object]]:
    links: list[dict[str, object]] = []
    for a, b, (name, rank, lanes, max_spd) in _segments():
        for u, v in ((a, b), (b, a)):
            if (a, b) == ONE_WAY and (u, v) != ONE_WAY:
                continue
            links.append(
                {
                    "LINK_ID": f"{REGION}{len(links) + 1:07d}",
                    "F_NODE": node_id(*u),
                    "T_NODE": node_id(*v),
                    "ROAD_NAME": name,
                    "ROAD_RANK": rank,
                    "LANES": lanes,
                    "MAX_SPD": max_spd,
                    "u": u,
                    "v": v,
                }
            )
    return links


LINKS: list[dict[str, object]] = _links()
LINK_BY_NODES: dict[tuple[str, str], str] = {
    (str(lk["F_NODE"]), str(lk["T_NODE"])): str(lk["LINK_ID"]) for lk in LINKS
}
SIGNALS_BY_NODE_TYPE = {node_id(1, 1), node_id(1, 2), node_id(2, 1)}


def link_id(a: tuple[int, int], b: tuple[int, int]) -> str:
    """LINK_ID of the link from lattice node ``a`` to ``b``."""
    return LINK_BY_NODES[node_id(*a), node_id(*b)]


def _legs(i: int, j: int) -> int:
    return sum(0 <= i + di < 3 and 0 <= j + dj < 3 for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)))


def _line(u: tuple[int, int], v: tuple[int, int]) -> list[tuple[float, float]]:
    """lon/lat vertices of a link: its ends and a midpoint (bent 8 m north on row 1)."""
    (i0, j0), (i1, j1) = u, v
    east = ((i0 + i1) / 2 - 1) * SPACING_M
    north = ((j0 + j1) / 2 - 1) * SPACING_M + (8.0 if j0 == j1 == 1 else 0.0)
    return [NODE_LONLAT[node_id(*u)], _lonlat(east, north), NODE_LONLAT[node_id(*v)]]


def write_nodelink(
    folder: Path,
    *,
    crs: str = "EPSG:5186",
    node_name: str = "MOCT_NODE",
    link_name: str = "MOCT_LINK",
    drop_link_fields: Sequence[str] = (),
    drop_node_fields: Sequence[str] = (),
    drop_nodes: Iterable[str] = (),
    node_types: Mapping[str, str] | None = None,
    cpg: bool = True,
) -> tuple[Path, Path]:
    """Write the made-up node and link shapefiles (CP949 text) in ``crs``; their paths.

    ``drop_*_fields`` leave fields out, ``drop_nodes`` leaves nodes out of the node file,
    ``node_types`` overrides NODE_TYPE by NODE_ID, ``cpg=False`` deletes the ``.cpg``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    dropped = set(drop_nodes)
    node_rows = []
    node_geoms = []
    for i in range(3):
        for j in range(3):
            nid = node_id(i, j)
            if nid in dropped:
                continue
            default_type = "101" if _legs(i, j) >= 3 else "103"
            node_rows.append(
                {
                    "NODE_ID": nid,
                    "NODE_TYPE": (node_types or {}).get(nid, default_type),
                    "NODE_NAME": f"{'중앙' if (i, j) == (1, 1) else '수원'}{i}{j}사거리",
                    "TURN_P": "1" if (i, j) == (1, 1) else "0",
                }
            )
            node_geoms.append(Point(*to_crs.transform(*NODE_LONLAT[nid])))
    link_rows = []
    link_geoms = []
    for lk in LINKS:
        coords = [to_crs.transform(lon, lat) for lon, lat in _line(lk["u"], lk["v"])]
        line = LineString(coords)
        link_rows.append(
            {
                "LINK_ID": lk["LINK_ID"],
                "F_NODE": lk["F_NODE"],
                "T_NODE": lk["T_NODE"],
                "LANES": lk["LANES"],
                "ROAD_RANK": lk["ROAD_RANK"],
                "ROAD_TYPE": "000",
                "ROAD_NO": "-",
                "ROAD_NAME": lk["ROAD_NAME"],
                "MAX_SPD": lk["MAX_SPD"],
                "LENGTH": round(line.length, 3),
            }
        )
        link_geoms.append(line)
    nodes = gpd.GeoDataFrame(pd.DataFrame(node_rows), geometry=node_geoms, crs=crs)
    links = gpd.GeoDataFrame(pd.DataFrame(link_rows), geometry=link_geoms, crs=crs)
    nodes = nodes.drop(columns=list(drop_node_fields))
    links = links.drop(columns=list(drop_link_fields))
    node_shp = folder / f"{node_name}.shp"
    link_shp = folder / f"{link_name}.shp"
    nodes.to_file(node_shp, encoding="cp949")
    links.to_file(link_shp, encoding="cp949")
    if not cpg:
        node_shp.with_suffix(".cpg").unlink()
        link_shp.with_suffix(".cpg").unlink()
    return node_shp, link_shp


def write_turninfo(
    folder: Path, rows: Iterable[tuple[str, str, str, str]], *, name: str = "TURNINFO"
) -> Path:
    """Write a ``TURNINFO.dbf`` (no geometry) of ``(NODE_ID, ST_LINK, ED_LINK, TURN_TYPE)``."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        [
            {"TURN_ID": f"{k:010d}", "NODE_ID": n, "ST_LINK": s, "ED_LINK": e, "TURN_TYPE": t}
            for k, (n, s, e, t) in enumerate(rows, start=1)
        ],
        columns=["TURN_ID", "NODE_ID", "ST_LINK", "ED_LINK", "TURN_TYPE"],
    )
    path = folder / f"{name}.dbf"
    pyogrio.write_dataframe(frame, path, driver="ESRI Shapefile", encoding="cp949")
    return path
