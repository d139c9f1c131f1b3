"""Write a built synthetic city as the Korean standard node-link (MOCT shapefiles).

What the import benchmark (``experiments/import_city.py``) reads back with the
node-link importer: ``MOCT_NODE.shp`` (one node per junction; the generator's
left-turn-pocket split points are not junctions and are left out), ``MOCT_LINK.shp``
(one record per direction of travel: a street and its pocket are one link), CP949 text,
in EPSG:5186 (Korea 2000 / Central Belt 2010) unless told otherwise, and
``SIGNALS.csv`` (the ``NODE_ID`` of every signalized junction: the node-link itself has
no signals). Roads: arterial -> ``ROAD_RANK`` 104, collector -> 106, local -> 107.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from city_models.build import City
from city_models.geo import projection_of
from city_models.importers.base import need

RANK_OF_CLASS = {"arterial": "104", "collector": "106", "local": "107"}
REGION = "241"  # the ids' region prefix (any three digits)


def export_nodelink(city: City, folder: Path, *, crs: str = "EPSG:5186") -> dict[str, int]:
    """Write ``MOCT_NODE.shp``, ``MOCT_LINK.shp`` and ``SIGNALS.csv`` into ``folder``;
    return the counts (nodes, links, signals)."""
    gpd = need("geopandas", "Writing node-link shapefiles")
    geometry = need("shapely.geometry", "Writing node-link shapefiles")
    folder.mkdir(parents=True, exist_ok=True)
    net, m = city.net, city.manifest
    proj = projection_of(m)
    edges = net.edges
    split = {e.from_node for e in edges.values() if e.id.endswith("_pocket")}
    nodes = sorted(n for n in net.nodes_xy if n not in split)
    node_id = {n: f"{REGION}{k + 1:07d}" for k, n in enumerate(nodes)}
    neighbours: dict[str, set[str]] = {n: set() for n in nodes}
    links: list[dict[str, Any]] = []
    for e in sorted(edges.values(), key=lambda e: e.id):
        if e.id.endswith("_pocket") or e.from_node in split:
            continue
        shape = list(e.shape_xy)
        to_node, length = e.to_node, e.length_m
        pocket = edges.get(f"{e.id}_pocket")
        if pocket is not None and e.to_node in split:
            shape += list(pocket.shape_xy[1:])
            to_node, length = pocket.to_node, e.length_m + pocket.length_m
        if e.from_node not in node_id or to_node not in node_id:
            continue
        neighbours[e.from_node].add(to_node)
        neighbours[to_node].add(e.from_node)
        cls = m.edge_classes.get(e.id) or (e.name.split(" ")[0].lower() or "local")
        links.append(
            {
                "LINK_ID": f"{REGION}{len(links) + 1:07d}",
                "F_NODE": node_id[e.from_node],
                "T_NODE": node_id[to_node],
                "LANES": e.lanes,
                "ROAD_RANK": RANK_OF_CLASS.get(cls, "107"),
                "ROAD_TYPE": "000",
                "ROAD_NO": "",
                "ROAD_NAME": e.name.rsplit(" ", 1)[0] if e.name else "",
                "MAX_SPD": round(e.speed_mps * 3.6),
                "LENGTH": round(length, 2),
                "geometry": geometry.LineString([proj.xy_to_lonlat(x, y) for x, y in shape]),
            }
        )
    signal_nodes = {t.node for t in net.tls.values()}
    node_rows = [
        {
            "NODE_ID": node_id[n],
            "NODE_TYPE": "101" if len(neighbours[n]) >= 3 else "103",
            "NODE_NAME": n,
            "TURN_P": "0",
            "geometry": geometry.Point(proj.xy_to_lonlat(*net.nodes_xy[n])),
        }
        for n in nodes
    ]
    for rows, name in ((node_rows, "MOCT_NODE"), (links, "MOCT_LINK")):
        frame = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326").to_crs(crs)
        frame.to_file(folder / f"{name}.shp", encoding="cp949")
    with (folder / "SIGNALS.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["NODE_ID"])
        for n in sorted(signal_nodes & set(node_id)):
            writer.writerow([node_id[n]])
    return {"nodes": len(node_rows), "links": len(links), "signals": len(signal_nodes)}
