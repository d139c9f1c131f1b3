"""Tests of city_models.osm_export: the district city written as OSM XML, read back by
ElementTree, by prepare_osm and by netconvert."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from city_models.build import City
from city_models.geo import lonlat_to_xy, xy_to_lonlat
from city_models.importers.osm_files import prepare_osm
from city_models.net import read_net
from city_models.osm_export import POI_OFFSET_M, export_osm
from twin.engine.sumo_tools import run_tool

HIGHWAYS = {"primary", "secondary", "residential"}


@pytest.fixture(scope="module")
def exported(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The district city (seed 1, the session's) exported once for this module."""
    path = tmp_path_factory.mktemp("osm_export") / "district.osm"
    counts = export_osm(district_city, path)
    root = ElementTree.parse(path).getroot()
    nodes = {
        int(n.get("id", "")): (
            float(n.get("lon", "")),
            float(n.get("lat", "")),
            {t.get("k", ""): t.get("v", "") for t in n if t.tag == "tag"},
        )
        for n in root.iter("node")
    }
    ways = {
        int(w.get("id", "")): (
            [int(nd.get("ref", "")) for nd in w.iter("nd")],
            {t.get("k", ""): t.get("v", "") for t in w if t.tag == "tag"},
        )
        for w in root.iter("way")
    }
    return {"path": path, "counts": counts, "root": root, "nodes": nodes, "ways": ways}


def _plain_nodes(city: City) -> list[ElementTree.Element]:
    return list(ElementTree.parse(city.path / city.manifest.files.plain_nodes).iter("node"))


def test_counts(district_city: City, exported: dict[str, Any]) -> None:
    counts = exported["counts"]
    manifest = district_city.manifest
    assert counts["signals"] == len(manifest.signals) == manifest.counts["signals"]
    assert counts["pois"] == len(manifest.pois)
    assert counts["junctions"] == len(_plain_nodes(district_city))
    assert counts["nodes"] == len(exported["nodes"])
    assert counts["ways"] == len(exported["ways"])
    signals = [n for n in exported["nodes"].values() if n[2].get("highway") == "traffic_signals"]
    assert len(signals) == counts["signals"]


def test_file_is_valid_osm(exported: dict[str, Any]) -> None:
    root = exported["root"]
    assert root.tag == "osm"
    order = [c.tag for c in root]
    assert order[0] == "bounds"
    assert order == sorted(order, key=["bounds", "node", "way"].index)
    ids = [int(n.get("id", "")) for n in root.iter("node")]
    assert len(ids) == len(set(ids))
    assert min(ids) > 0
    assert min(exported["ways"]) > 0
    for refs, _tags in exported["ways"].values():
        assert len(refs) >= 2
        assert all(r in exported["nodes"] for r in refs)
    b = root.find("bounds")
    assert b is not None
    for lon, lat, _tags in exported["nodes"].values():
        assert float(b.get("minlat", "")) <= lat <= float(b.get("maxlat", ""))
        assert float(b.get("minlon", "")) <= lon <= float(b.get("maxlon", ""))


def test_export_is_deterministic(
    district_city: City, exported: dict[str, Any], tmp_path: Path
) -> None:
    again = tmp_path / "again.osm"
    export_osm(district_city, again)
    assert again.read_bytes() == exported["path"].read_bytes()


def test_every_junction_and_signal_is_there(district_city: City, exported: dict[str, Any]) -> None:
    m = district_city.manifest
    net = district_city.net
    points = [(lon, lat) for lon, lat, _t in exported["nodes"].values()]
    for plain in _plain_nodes(district_city):
        x, y = net.nodes_xy[plain.get("id", "")]  # the net junction of the plain node
        lonlat = xy_to_lonlat(x, y, lat0=m.origin_lat, lon0=m.origin_lon)
        assert min(math.dist(lonlat, p) for p in points) < 1e-6, plain.get("id")
    signal_points = [
        (lon, lat)
        for lon, lat, tags in exported["nodes"].values()
        if tags.get("highway") == "traffic_signals"
    ]
    for s in m.signals:
        best = min(math.dist((s.lon, s.lat), p) for p in signal_points)
        assert best < 1e-6, s.id


def test_way_tags(exported: dict[str, Any]) -> None:
    ways = exported["ways"].values()
    assert {t["highway"] for _r, t in ways} == HIGHWAYS
    for _refs, tags in ways:
        assert tags["name"]
        assert not tags["name"].endswith(("NB", "SB", "EB", "WB"))
        assert int(tags["maxspeed"]) in (30, 50, 60)
        lanes = int(tags["lanes"])
        if tags.get("oneway") == "yes":
            assert "lanes:forward" not in tags
        else:
            assert int(tags["lanes:forward"]) + int(tags["lanes:backward"]) == lanes
        expected = {"primary": 3, "secondary": 2, "residential": 1}[tags["highway"]]
        assert lanes in (expected, 2 * expected)
    arterial = [t for _r, t in ways if t["name"].startswith("Arterial")]
    assert arterial
    assert all(t["highway"] == "primary" and t["maxspeed"] == "60" for t in arterial)


def test_pois(district_city: City, exported: dict[str, Any]) -> None:
    m = district_city.manifest
    by_ref = {t["ref"]: (lon, lat, t) for lon, lat, t in exported["nodes"].values() if "ref" in t}
    assert set(by_ref) == {p.id for p in m.pois}
    net = district_city.net
    for poi in m.pois:
        lon, lat, tags = by_ref[poi.id]
        assert tags["name"] == poi.name
        if poi.role == "hospital":
            assert (tags["amenity"], tags["emergency"]) == ("hospital", "yes")
        elif poi.role == "fire_station":
            assert tags["amenity"] == "fire_station"
        else:
            assert (tags["amenity"], tags["emergency"]) == ("shelter", "assembly_point")
            assert tags["capacity"] == str(poi.capacity_veh)
        # 15 m to the right of the edge, beside the manifest's point
        x, y = lonlat_to_xy(lon, lat, lat0=m.origin_lat, lon0=m.origin_lon)
        assert math.dist((x, y), (poi.x, poi.y)) == pytest.approx(POI_OFFSET_M, abs=0.5)
        edge = net.edges[poi.edge]
        (x0, y0), (x1, y1) = edge.shape_xy[0], edge.shape_xy[-1]
        cross = (x1 - x0) * (y - poi.y) - (y1 - y0) * (x - poi.x)
        assert cross < 0, f"{poi.id} is not on the right of {poi.edge}"


def test_prepare_osm_reads_the_export(exported: dict[str, Any], tmp_path: Path) -> None:
    prepared = prepare_osm(exported["path"], work=tmp_path)
    assert prepared.format == "xml"
    assert prepared.repaired_nodes == 0
    assert prepared.counts == {
        "nodes": exported["counts"]["nodes"],
        "ways": exported["counts"]["ways"],
        "relations": 0,
    }


def test_netconvert_converts_the_export(
    district_city: City, exported: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "export.net.xml"
    run_tool(
        "netconvert",
        ["--osm-files", exported["path"], "-o", out, "--output.street-names", "true"],
        what="converting the exported city",
    )
    net = read_net(out)
    city = district_city.net
    assert len(net.tls) == len(district_city.manifest.signals)
    lane_km = sum(net.lane_lengths_m.values()) / 1000
    city_lane_km = sum(city.lane_lengths_m.values()) / 1000
    assert lane_km == pytest.approx(city_lane_km, rel=0.05)
    names = {e.name for e in net.edges.values()}
    assert names == {e.name for e in city.edges.values()}
