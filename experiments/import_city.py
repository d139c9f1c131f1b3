"""Benchmark: importing a whole city, from OSM and from the node-link.

    python -m experiments.import_city --json OUT.json [--preset suwon-scale]

Builds the synthetic ``suwon-scale`` city (893 signals), writes it as OpenStreetMap XML
(:func:`city_models.osm_export.export_osm`) and as node-link shapefiles with a list of
its signalized nodes (:func:`city_models.nodelink_export.export_nodelink`), imports
each back through the shared pipeline (:func:`city_models.importing.import_city`,
no cache) and compares the result with the original.

JSON keys:

- ``osm_import_s``, ``nodelink_import_s``: wall time of each import (source to checked
  city folder), one run each;
- ``signals_recovered_share``: original signals with an imported signal within
  ``MATCH_M`` (lon/lat through each city's own projection), of all original signals
  (goal >= 0.98); ``nodelink_signals_recovered_share`` the same for the node-link;
- ``junctions_recovered_share``: original junctions (the generator's pocket split
  points are not junctions) with an imported junction within ``MATCH_M``;
- ``lane_km_ratio``: imported lane-km over the original's (goal 1 +- 0.02);
  ``nodelink_lane_km_ratio`` the same for the node-link;
- ``peak_rss_mb``: peak resident memory of this process and of its largest child
  (netconvert), the larger of the two;
- the counts behind each share.
"""

from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from city_models.build import City, build_city
from city_models.geo import projection_of
from city_models.importing import import_city
from city_models.nodelink_export import export_nodelink
from city_models.osm_export import export_osm
from experiments._output import emit_json
from twin.config import load_settings

MATCH_M = 20.0


def _points(city: City, ids: list[str] | None = None) -> np.ndarray:
    proj = projection_of(city.manifest)
    nodes = ids if ids is not None else list(city.net.nodes_xy)
    return np.array([proj.xy_to_lonlat(*city.net.nodes_xy[n]) for n in nodes])


def _metres(lonlat: np.ndarray, lat0: float) -> np.ndarray:
    k = 6_371_008.8 * math.pi / 180
    return np.column_stack([lonlat[:, 0] * k * math.cos(math.radians(lat0)), lonlat[:, 1] * k])


def recovered_share(original: np.ndarray, imported: np.ndarray, lat0: float) -> float:
    """Share of ``original`` lon/lat points with an ``imported`` point within MATCH_M."""
    if len(original) == 0:
        return math.nan
    if len(imported) == 0:
        return 0.0
    a, b = _metres(original, lat0), _metres(imported, lat0)
    hits = 0
    for p in a:  # blocks keep memory small at city scale
        d2 = np.min(np.sum((b - p) ** 2, axis=1))
        hits += d2 <= MATCH_M**2
    return hits / len(a)


def _lane_km(city: City) -> float:
    return sum(e.length_m * e.lanes for e in city.net.edges.values()) / 1000.0


def _compare(original: City, imported: City) -> dict[str, Any]:
    lat0 = original.manifest.origin_lat
    split = {e.from_node for e in original.net.edges.values() if e.id.endswith("_pocket")}
    junctions = [n for n in original.net.nodes_xy if n not in split]
    sig_a = _points(original, [t.node for t in original.net.tls.values()])
    sig_b = _points(imported, [t.node for t in imported.net.tls.values()])
    return {
        "signals": (len(sig_a), len(sig_b)),
        "signals_recovered_share": round(recovered_share(sig_a, sig_b, lat0), 4),
        "junctions": (len(junctions), len(imported.net.nodes_xy)),
        "junctions_recovered_share": round(
            recovered_share(_points(original, junctions), _points(imported), lat0), 4
        ),
        "lane_km": (round(_lane_km(original), 2), round(_lane_km(imported), 2)),
        "lane_km_ratio": round(_lane_km(imported) / _lane_km(original), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="Write the result here.")
    parser.add_argument("--preset", default="suwon-scale")
    args = parser.parse_args(argv)
    settings = load_settings()
    city = build_city(args.preset, seed=1, cities_dir=settings.cities_dir)
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        root = Path(tmp)
        exported = export_osm(city, root / f"{args.preset}.osm")
        t0 = time.perf_counter()
        osm = import_city("osm", src=root / f"{args.preset}.osm", out=root / "osm_city",
                          force=True)  # fmt: skip
        osm_s = time.perf_counter() - t0
        written = export_nodelink(city, root / "nodelink")
        t0 = time.perf_counter()
        nl = import_city(
            "nodelink",
            node=root / "nodelink" / "MOCT_NODE.shp",
            link=root / "nodelink" / "MOCT_LINK.shp",
            signals_csv=root / "nodelink" / "SIGNALS.csv",
            out=root / "nl_city",
            force=True,
        )
        nl_s = time.perf_counter() - t0
        by_osm, by_nl = _compare(city, osm), _compare(city, nl)
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "preset": args.preset,
        "osm_import_s": round(osm_s, 2),
        "nodelink_import_s": round(nl_s, 2),
        "signals_recovered_share": by_osm["signals_recovered_share"],
        "junctions_recovered_share": by_osm["junctions_recovered_share"],
        "lane_km_ratio": by_osm["lane_km_ratio"],
        "nodelink_signals_recovered_share": by_nl["signals_recovered_share"],
        "nodelink_junctions_recovered_share": by_nl["junctions_recovered_share"],
        "nodelink_lane_km_ratio": by_nl["lane_km_ratio"],
        "peak_rss_mb": round(max(rss_self, rss_child), 1),
        "peak_rss_self_mb": round(rss_self, 1),
        "peak_rss_children_mb": round(rss_child, 1),
        "osm_export": exported,
        "nodelink_export": written,
        "counts_osm": {k: by_osm[k] for k in ("signals", "junctions", "lane_km")},
        "counts_nodelink": {k: by_nl[k] for k in ("signals", "junctions", "lane_km")},
        "match_m": MATCH_M,
    }
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
