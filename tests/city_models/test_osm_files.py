"""Tests of city_models.importers.osm_files: format detection, PBF conversion, Overpass
``out geom`` repair, bbox clipping and the errors on bad inputs (real files, netconvert
and osmnx)."""

from __future__ import annotations

import bz2
import gzip
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from city_models.importers.osm_files import PreparedOsm, check_bbox, detect_format, prepare_osm
from city_models.net import read_net
from tests.city_models.osm_fixture import write_overpass_geom, write_pbf, write_small_osm
from twin.engine.sumo_tools import run_tool
from twin.errors import CityError, SumoError

NAMES = ["--output.street-names", "true"]


def _read(path: Path) -> dict[str, Any]:
    """Nodes (id -> (lat, lon, tags)), ways (id -> (refs, tags)), relations, top-level order."""
    nodes: dict[int, tuple[float, float, dict[str, str]]] = {}
    ways: dict[int, tuple[list[int], dict[str, str]]] = {}
    relations: dict[int, tuple[list[tuple[str, int, str]], dict[str, str]]] = {}
    order: list[str] = []
    for child in ElementTree.parse(path).getroot():
        order.append(child.tag)
        tags = {t.get("k", ""): t.get("v", "") for t in child if t.tag == "tag"}
        if child.tag == "node":
            nodes[int(child.get("id", ""))] = (
                float(child.get("lat", "")),
                float(child.get("lon", "")),
                tags,
            )
        elif child.tag == "way":
            for nd in child:
                if nd.tag == "nd":
                    assert set(nd.attrib) == {"ref"}, "nd keeps only its ref"
                else:
                    assert nd.tag == "tag", f"way {child.get('id')} has a <{nd.tag}> child"
            refs = [int(nd.get("ref", "")) for nd in child if nd.tag == "nd"]
            ways[int(child.get("id", ""))] = (refs, tags)
        elif child.tag == "relation":
            members = [
                (m.get("type", ""), int(m.get("ref", "")), m.get("role", ""))
                for m in child
                if m.tag == "member"
            ]
            relations[int(child.get("id", ""))] = (members, tags)
    return {"nodes": nodes, "ways": ways, "relations": relations, "order": order}


def _assert_osm_order(order: list[str]) -> None:
    rank = {"bounds": 0, "node": 1, "way": 2, "relation": 3}
    ranks = [rank[t] for t in order]
    assert ranks == sorted(ranks), "OSM XML must list nodes, then ways, then relations"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("osm")
    info = write_small_osm(d / "small.osm")
    write_overpass_geom(d / "overpass.osm")
    write_pbf(d / "small.osm.pbf")
    return {"dir": d, "info": info}


# --------------------------------------------------------------------------- detection


def test_detect_format_by_content(files: dict[str, Any], tmp_path: Path) -> None:
    d = files["dir"]
    assert detect_format(d / "small.osm")[0] == "xml"
    assert detect_format(d / "overpass.osm")[0] == "xml"
    assert detect_format(d / "small.osm.pbf")[0] == "pbf"
    # content wins over the name: PBF in a file called .osm, XML compressed
    pbf_named_osm = tmp_path / "really_pbf.osm"
    pbf_named_osm.write_bytes((d / "small.osm.pbf").read_bytes())
    assert detect_format(pbf_named_osm)[0] == "pbf"
    gz = tmp_path / "small.osm.gz"
    gz.write_bytes(gzip.compress((d / "small.osm").read_bytes()))
    assert detect_format(gz)[0] == "xml"
    bz = tmp_path / "small.osm.bz2"
    bz.write_bytes(bz2.compress((d / "small.osm").read_bytes()))
    prepared = prepare_osm(bz, work=tmp_path / "work")
    assert prepared.format == "xml"
    assert prepared.counts == files["info"]["counts"]


def test_prepare_each_format(files: dict[str, Any], tmp_path: Path) -> None:
    d, info = files["dir"], files["info"]
    xml = prepare_osm(d / "small.osm", work=tmp_path / "a", bbox=None)
    pbf = prepare_osm(d / "small.osm.pbf", work=tmp_path / "b", bbox=None)
    geom = prepare_osm(d / "overpass.osm", work=tmp_path / "c", bbox=None)
    assert isinstance(xml, PreparedOsm)
    assert (xml.format, pbf.format, geom.format) == ("xml", "pbf", "overpass_geom")
    assert xml.counts == pbf.counts == info["counts"]
    assert (xml.repaired_nodes, pbf.repaired_nodes) == (0, 0)
    # way nodes without a <node> element (the tagged ones, signals, are in the export)
    assert geom.repaired_nodes == len(info["way_node_ids"] - set(info["signal_ids"]))
    assert not (xml.clipped or pbf.clipped or geom.clipped)
    assert [p.xml for p in (xml, pbf, geom)] == [
        tmp_path / "a" / "small.osm",
        tmp_path / "b" / "small.osm",
        tmp_path / "c" / "overpass.osm",
    ]
    # the source is never overwritten, even when work is its own folder
    same = prepare_osm(d / "small.osm", work=d)
    assert same.xml != d / "small.osm"
    assert _read(d / "small.osm")["ways"] == _read(same.xml)["ways"]


def test_pbf_gives_the_same_xml(files: dict[str, Any], tmp_path: Path) -> None:
    d, info = files["dir"], files["info"]
    a = _read(prepare_osm(d / "small.osm", work=tmp_path / "a").xml)
    b = _read(prepare_osm(d / "small.osm.pbf", work=tmp_path / "b").xml)
    assert set(a["nodes"]) == set(b["nodes"]) == info["node_ids"]
    for nid, (lat, lon, tags) in a["nodes"].items():
        lat_b, lon_b, tags_b = b["nodes"][nid]
        assert lat == pytest.approx(lat_b, abs=1e-7)
        assert lon == pytest.approx(lon_b, abs=1e-7)
        assert tags == tags_b
    assert a["ways"] == b["ways"]
    assert set(a["ways"]) == info["way_ids"]
    assert a["relations"] == b["relations"]
    assert set(a["relations"]) == info["relation_ids"]
    # Korean names survive both ways
    names = {t.get("name") for _refs, t in b["ways"].values()}
    assert {"경수대로", "팔달로", "효원로"} <= names
    _assert_osm_order(b["order"])


def test_xml_and_pbf_build_nets_with_the_signals(files: dict[str, Any], tmp_path: Path) -> None:
    d, info = files["dir"], files["info"]
    for name in ("small.osm", "small.osm.pbf"):
        prepared = prepare_osm(d / name, work=tmp_path / name)
        out = tmp_path / f"{name}.net.xml"
        run_tool("netconvert", ["--osm-files", prepared.xml, "-o", out, *NAMES], what="test")
        net = read_net(out)
        assert len(net.tls) == len(info["signal_ids"])
        assert {e.name for e in net.edges.values()} >= {"경수대로", "팔달로", "Middle Street"}


# --------------------------------------------------------------------------- Overpass


def test_overpass_geom_fails_raw_and_works_repaired(files: dict[str, Any], tmp_path: Path) -> None:
    import osmnx

    d, info = files["dir"], files["info"]
    raw = d / "overpass.osm"
    with pytest.raises(SumoError, match="No nodes loaded"):
        run_tool("netconvert", ["--osm-files", raw, "-o", tmp_path / "raw.net.xml"], what="raw")
    with pytest.raises((ValueError, KeyError)):
        osmnx.graph_from_xml(raw)

    prepared = prepare_osm(raw, work=tmp_path / "work")
    assert prepared.format == "overpass_geom"
    assert prepared.repaired_nodes == len(info["way_node_ids"] - set(info["signal_ids"]))
    data = _read(prepared.xml)
    _assert_osm_order(data["order"])
    assert set(data["nodes"]) == info["node_ids"]
    assert set(data["ways"]) == info["way_ids"]
    # the POI nodes keep their tags; the relation keeps its members, without geometry
    hospital = data["nodes"][info["poi_ids"]["hospital"]]
    assert hospital[2] == {"amenity": "hospital", "emergency": "yes", "name": "아주대학교병원"}
    assert (hospital[1], hospital[0]) == pytest.approx(info["pois"]["hospital"], abs=1e-7)
    (members, tags), *_ = data["relations"].values()
    assert tags["type"] == "restriction"
    assert [m[0] for m in members] == ["way", "node", "way"]
    text = prepared.xml.read_text(encoding="utf-8")
    assert "<note" not in text
    assert "<meta" not in text

    out = tmp_path / "repaired.net.xml"
    run_tool("netconvert", ["--osm-files", prepared.xml, "-o", out], what="repaired")
    net = read_net(out)
    assert len(net.edges) > 10
    graph = osmnx.graph_from_xml(prepared.xml)
    assert graph.number_of_nodes() > 10
    assert graph.number_of_edges() > 10


# --------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("name", ["small.osm", "small.osm.pbf", "overpass.osm"])
def test_bbox_clip_keeps_the_expected_ways(
    files: dict[str, Any], tmp_path: Path, name: str
) -> None:
    d, info = files["dir"], files["info"]
    prepared = prepare_osm(d / name, work=tmp_path, bbox=info["clip_bbox"])
    assert prepared.clipped
    data = _read(prepared.xml)
    assert set(data["ways"]) == info["clip_ways"]
    assert set(data["nodes"]) == info["clip_nodes"]  # whole ways + the POI inside
    assert data["relations"] == {}  # the restriction lies outside
    assert prepared.counts == {"nodes": len(info["clip_nodes"]), "ways": 2, "relations": 0}
    for refs, _tags in data["ways"].values():
        assert all(r in data["nodes"] for r in refs)
    _assert_osm_order(data["order"])
    out = tmp_path / "clip.net.xml"
    run_tool("netconvert", ["--osm-files", prepared.xml, "-o", out, *NAMES], what="clipped")
    assert {e.name for e in read_net(out).edges.values()} == {"Local North", "Secondary East"}


def test_bbox_clip_keeps_relations_with_kept_members(files: dict[str, Any], tmp_path: Path) -> None:
    d, info = files["dir"], files["info"]
    lons = [lon for lon, _lat in info["signals"]]
    lats = [lat for _lon, lat in info["signals"]]
    # a strip along the primary: both signals, the middle crossing and the restriction
    bbox = (min(lats) - 0.0002, min(lons) - 0.0002, max(lats) + 0.0002, max(lons) + 0.0002)
    data = _read(prepare_osm(d / "small.osm", work=tmp_path, bbox=bbox).xml)
    assert {2001, 2002, 2005, 2006, 2007} <= set(data["ways"])
    assert 2003 not in data["ways"]
    assert 2004 not in data["ways"]
    assert set(data["relations"]) == info["relation_ids"]


# --------------------------------------------------------------------------- bad inputs


def test_malformed_xml_names_file_line_and_column(files: dict[str, Any], tmp_path: Path) -> None:
    text = (files["dir"] / "small.osm").read_text(encoding="utf-8")
    bad = tmp_path / "broken.osm"
    bad.write_text(text.replace("</node>", "</way>", 1), encoding="utf-8")  # mismatched tag
    line = text[: text.index("</node>")].count("\n") + 1
    with pytest.raises(CityError, match="not well-formed OSM XML") as err:
        prepare_osm(bad, work=tmp_path / "w")
    assert str(bad) in str(err.value)
    assert f"line {line}, column 5" in str(err.value)
    cut = tmp_path / "cut.osm"
    cut.write_text(text[: len(text) // 2], encoding="utf-8")  # a download cut short
    with pytest.raises(CityError, match=r"cut\.osm: line \d+, column \d+"):
        prepare_osm(cut, work=tmp_path / "w")


def test_bbox_without_roads(files: dict[str, Any], tmp_path: Path) -> None:
    src = files["dir"] / "small.osm"
    with pytest.raises(CityError, match="no roads inside the bbox") as err:
        prepare_osm(src, work=tmp_path, bbox=files["info"]["empty_bbox"])
    assert str(src) in str(err.value)
    assert "S,W,N,E (south, west, north, east)" in str(err.value)


def test_pbf_name_without_pbf_content(files: dict[str, Any], tmp_path: Path) -> None:
    fake = tmp_path / "map.osm.pbf"
    fake.write_bytes((files["dir"] / "small.osm").read_bytes())
    with pytest.raises(CityError, match="is not an OSM PBF file") as err:
        prepare_osm(fake, work=tmp_path / "w")
    assert str(fake) in str(err.value)
    assert "export PBF again or give the .osm XML" in str(err.value)
    assert "XML" in str(err.value)
    html = tmp_path / "download.osm.pbf"
    html.write_text("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>")
    with pytest.raises(CityError, match="HTML page"):
        prepare_osm(html, work=tmp_path / "w")


@pytest.mark.parametrize(
    ("bbox", "says"),
    [
        ((37.27, 127.02, 37.26, 127.03), "south 37.27 is not below north 37.26"),
        ((37.26, 127.03, 37.27, 127.02), "west 127.03 is not below east 127.02"),
        ((127.02, 37.26, 127.03, 37.27), "longitude first"),
        ((37.26, 127.02, 37.27, float("nan")), "four finite"),
        ((37.26, 127.02, 37.27), "four finite"),
    ],
)
def test_invalid_bbox(
    files: dict[str, Any], tmp_path: Path, bbox: tuple[float, ...], says: str
) -> None:
    src = files["dir"] / "small.osm"
    message = "Invalid bbox" if says == "four finite" else says
    with pytest.raises(CityError, match=message) as err:
        prepare_osm(src, work=tmp_path, bbox=bbox)  # type: ignore[arg-type]
    assert str(src) in str(err.value)
    assert "-90 <= S < N <= 90 and -180 <= W < E <= 180" in str(err.value)


def test_check_bbox_accepts_a_valid_one() -> None:
    assert check_bbox([37.26, 127.02, 37.27, 127.03]) == (37.26, 127.02, 37.27, 127.03)


def test_other_bad_inputs(tmp_path: Path) -> None:
    missing = tmp_path / "missing.osm"
    with pytest.raises(CityError, match="does not exist"):
        prepare_osm(missing, work=tmp_path)
    empty = tmp_path / "empty.osm"
    empty.write_bytes(b"")
    with pytest.raises(CityError, match=f"{re.escape(str(empty))}.*empty"):
        prepare_osm(empty, work=tmp_path)
    no_roads = tmp_path / "buildings.osm"
    no_roads.write_text(
        '<osm version="0.6"><node id="1" lat="37.26" lon="127.02"/>'
        '<node id="2" lat="37.261" lon="127.02"/><node id="3" lat="37.261" lon="127.021"/>'
        '<way id="9"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="1"/>'
        '<tag k="building" v="yes"/></way></osm>'
    )
    with pytest.raises(CityError, match=r"buildings\.osm has no roads.*highway=\*"):
        prepare_osm(no_roads, work=tmp_path / "w")
    not_osm = tmp_path / "routes.xml"
    not_osm.write_text('<routes><vehicle id="a" depart="0"/></routes>')
    with pytest.raises(CityError, match=r"routes\.xml is not OSM XML: its root element is"):
        prepare_osm(not_osm, work=tmp_path / "w")
    as_json = tmp_path / "export.osm"
    as_json.write_text('{"version": 0.6, "elements": []}')
    with pytest.raises(CityError, match=r"export\.osm is not OSM data.*JSON"):
        prepare_osm(as_json, work=tmp_path / "w")
    timed_out = tmp_path / "timeout.osm"
    timed_out.write_text(
        '<osm version="0.6"><node id="1" lat="37.26" lon="127.02"/>'
        '<remark> runtime error: Query timed out in "query" at line 3 after 26 seconds. </remark>'
        "</osm>"
    )
    with pytest.raises(CityError, match=r"timeout\.osm ends with an Overpass error"):
        prepare_osm(timed_out, work=tmp_path / "w")
