"""Tests of the Korean standard node-link importer (city_models.importers.nodelink).

netconvert is real; the fixture (tests/city_models/nodelink_fixture.py) is a made-up 3x3
lattice near Suwon, small enough that every import takes well under a second.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest
from pyproj import Geod, Proj

from city_models.importers.base import SourceNet
from city_models.importers.nodelink import read_nodelink
from tests.city_models.nodelink_fixture import (
    CENTER_LAT,
    CENTER_LON,
    LINKS,
    NODE_LONLAT,
    ONE_WAY,
    RANK_CLASS,
    SIGNALS_BY_NODE_TYPE,
    link_id,
    node_id,
    write_nodelink,
    write_turninfo,
)
from twin.errors import CityError

GEOD = Geod(ellps="WGS84")


def _root(net: SourceNet) -> ElementTree.Element:
    return ElementTree.parse(net.net_file).getroot()


def _edges(net: SourceNet) -> dict[str, ElementTree.Element]:
    return {
        str(e.get("id")): e
        for e in _root(net).iter("edge")
        if e.get("function", "normal") == "normal"
    }


def _signals(net: SourceNet) -> set[str]:
    return {
        str(j.get("id"))
        for j in _root(net).iter("junction")
        if str(j.get("type")).startswith("traffic_light")
    }


def _connections(net: SourceNet) -> set[tuple[str, str]]:
    return {
        (str(c.get("from")), str(c.get("to")))
        for c in _root(net).iter("connection")
        if not str(c.get("from")).startswith(":")
    }


def _node_lonlat(net: SourceNet) -> dict[str, tuple[float, float]]:
    """Every junction's position converted back to lon/lat with the net's geo-reference."""
    root = _root(net)
    location = root.find("location")
    assert location is not None
    proj = Proj(location.get("projParameter"))
    off_x, off_y = (float(v) for v in str(location.get("netOffset")).split(","))
    out: dict[str, tuple[float, float]] = {}
    for j in root.iter("junction"):
        if j.get("type") == "internal":
            continue
        x, y = float(str(j.get("x"))) - off_x, float(str(j.get("y"))) - off_y
        lon, lat = proj(x, y, inverse=True)
        out[str(j.get("id"))] = (lon, lat)
    return out


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2])


def _import(tmp_path: Path, **kwargs: object) -> SourceNet:
    fixture_args = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("fx_")}
    node_shp, link_shp = write_nodelink(
        tmp_path / "src", **{k[3:]: v for k, v in fixture_args.items()}
    )
    return read_nodelink(node_shp, link_shp, work=tmp_path / "work", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base_net(tmp_path_factory: pytest.TempPathFactory) -> SourceNet:
    return _import(tmp_path_factory.mktemp("nodelink"))


# --------------------------------------------------------------------------- happy path


def test_fixture_imports(base_net: SourceNet) -> None:
    assert base_net.kind == "nodelink"
    assert base_net.guessed_signals is True
    assert base_net.net_file.exists()
    assert base_net.net_file.parent.name == "work"
    report = base_net.report
    assert report["nodes_read"] == 9
    assert report["links_read"] == len(LINKS) == 23
    assert report["links_kept"] == 23
    assert report["crs"] == "EPSG:5186"
    assert report["signals_source"] == "node_type"
    assert report["signals"] == 3
    assert report["turn_prohibitions_applied"] == 0
    assert report["turn_prohibitions_unknown"] == 0
    names = {p.name for p in base_net.source_files}
    assert {"MOCT_NODE.shp", "MOCT_NODE.dbf", "MOCT_LINK.prj", "MOCT_LINK.cpg"} <= names


def test_net_is_geo_referenced_and_nodes_land_on_their_lonlat(base_net: SourceNet) -> None:
    location = _root(base_net).find("location")
    assert location is not None
    assert location.get("projParameter") not in (None, "", "!")
    positions = _node_lonlat(base_net)
    assert set(NODE_LONLAT) <= set(positions)
    for nid, truth in NODE_LONLAT.items():
        assert _distance_m(positions[nid], truth) < 2.0, nid
    centre = positions[node_id(1, 1)]
    assert _distance_m(centre, (CENTER_LON, CENTER_LAT)) < 2.0


def test_korean_names_are_decoded(base_net: SourceNet) -> None:
    names = {str(e.get("name")) for e in _edges(base_net).values()}
    assert {"중부대로", "경수대로", "행궁로", "팔달로"} <= names


def test_names_decode_as_cp949_without_a_cpg(tmp_path: Path) -> None:
    net = _import(tmp_path, fx_cpg=False)
    assert not (tmp_path / "src" / "MOCT_LINK.cpg").exists()
    assert "중부대로" in {str(e.get("name")) for e in _edges(net).values()}


def test_directed_links_become_edges(base_net: SourceNet) -> None:
    edges = _edges(base_net)
    assert set(edges) == {str(lk["LINK_ID"]) for lk in LINKS}
    for lk in LINKS:
        edge = edges[str(lk["LINK_ID"])]
        assert (edge.get("from"), edge.get("to")) == (lk["F_NODE"], lk["T_NODE"])
    # the one-way link has no reverse edge; a two-way road has two
    a, b = ONE_WAY
    assert link_id(a, b) in edges
    pairs = {(e.get("from"), e.get("to")) for e in edges.values()}
    assert (node_id(*b), node_id(*a)) not in pairs
    assert (node_id(1, 1), node_id(2, 1)) in pairs and (node_id(2, 1), node_id(1, 1)) in pairs


def test_classes_lanes_and_speeds(base_net: SourceNet) -> None:
    edges = _edges(base_net)
    assert set(base_net.edge_classes) == set(edges)
    for lk in LINKS:
        eid = str(lk["LINK_ID"])
        assert base_net.edge_classes[eid] == RANK_CLASS[str(lk["ROAD_RANK"])], eid
        lanes = list(edges[eid].iter("lane"))
        assert len(lanes) == lk["LANES"]
        speed_kph = float(str(lanes[0].get("speed"))) * 3.6
        expected_kph = (
            {"107": 30.0, "105": 50.0}[str(lk["ROAD_RANK"])]
            if lk["MAX_SPD"] == 0
            else lk["MAX_SPD"]
        )
        assert speed_kph == pytest.approx(expected_kph, abs=0.1), eid
    assert base_net.report["speed_defaulted"] == 8


def test_signals_from_node_type(base_net: SourceNet) -> None:
    assert _signals(base_net) == SIGNALS_BY_NODE_TYPE


def test_signals_from_csv(tmp_path: Path) -> None:
    csv_path = tmp_path / "signals.csv"
    listed = [node_id(0, 1), node_id(1, 0), "2419999999"]
    csv_path.write_text("NODE_ID,메모\n" + "\n".join(f"{n},교차로" for n in listed) + "\n",
                        encoding="utf-8")  # fmt: skip
    net = _import(tmp_path, signals_csv=csv_path)
    assert _signals(net) == {node_id(0, 1), node_id(1, 0)}
    assert net.report["signals_source"] == "csv"
    assert net.report["signals"] == 2
    assert net.report["signals_csv_unknown"] == 1
    assert csv_path in net.source_files


def test_signals_from_osm_within_30_m(tmp_path: Path) -> None:
    lon, lat = NODE_LONLAT[node_id(0, 1)]
    lon_far = (NODE_LONLAT[node_id(1, 1)][0] + NODE_LONLAT[node_id(2, 2)][0]) / 2
    lat_far = (NODE_LONLAT[node_id(1, 1)][1] + NODE_LONLAT[node_id(2, 2)][1]) / 2
    osm = tmp_path / "signals.osm"
    osm.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6">\n'
        f'  <node id="1" lat="{lat + 0.0001:.7f}" lon="{lon:.7f}">'  # about 11 m north
        '<tag k="highway" v="traffic_signals"/></node>\n'
        f'  <node id="2" lat="{lat_far:.7f}" lon="{lon_far:.7f}">'  # a block's middle
        '<tag k="highway" v="traffic_signals"/></node>\n'
        f'  <node id="3" lat="{lat:.7f}" lon="{lon + 0.0025:.7f}"/>\n'
        "</osm>\n",
        encoding="utf-8",
    )
    net = _import(tmp_path, signals_from=osm)
    assert _signals(net) == {node_id(0, 1)}
    assert net.report["signals_source"] == "osm"
    assert net.report["signals_osm_read"] == 2
    assert net.report["signals_osm_matched"] == 1


def test_no_signal_at_all_is_an_error(tmp_path: Path) -> None:
    all_minor = {node_id(i, j): "103" for i in range(3) for j in range(3)}
    with pytest.raises(CityError, match="no traffic signal") as info:
        _import(tmp_path, fx_node_types=all_minor)
    message = str(info.value)
    assert "MOCT_NODE.shp" in message
    assert "NODE_TYPE 101" in message
    assert "--signals-csv" in message and "--signals-from" in message


def test_turn_prohibition_removes_the_connection(tmp_path: Path, base_net: SourceNet) -> None:
    left = (link_id((0, 1), (1, 1)), link_id((1, 1), (1, 2)))  # eastbound, turning north
    straight = (link_id((0, 1), (1, 1)), link_id((1, 1), (2, 1)))
    assert left in _connections(base_net) and straight in _connections(base_net)
    turninfo = write_turninfo(
        tmp_path / "src",
        [
            (node_id(1, 1), *left, "101"),  # 좌회전금지
            (node_id(1, 1), "2419999999", left[1], "003"),  # unknown link
            (node_id(1, 1), *straight, "001"),  # 비보호회전: not a prohibition
        ],
    )
    net = _import(tmp_path, turninfo=turninfo)
    connections = _connections(net)
    assert left not in connections
    assert straight in connections
    assert net.report["turn_prohibitions_applied"] == 1
    assert net.report["turn_prohibitions_unknown"] == 1
    assert (tmp_path / "work" / "nodelink.con.xml").exists()


def test_epsg_5179_source(tmp_path: Path) -> None:
    net = _import(tmp_path, fx_crs="EPSG:5179")
    assert net.report["crs"] == "EPSG:5179"
    positions = _node_lonlat(net)
    for nid, truth in NODE_LONLAT.items():
        assert _distance_m(positions[nid], truth) < 2.0, nid


def test_bbox_keeps_links_with_both_ends_inside(tmp_path: Path) -> None:
    lat_mid = (NODE_LONLAT[node_id(0, 1)][1] + NODE_LONLAT[node_id(0, 2)][1]) / 2
    bbox = (CENTER_LAT - 0.01, CENTER_LON - 0.01, lat_mid, CENTER_LON + 0.01)
    net = _import(tmp_path, bbox=bbox)
    inside = {node_id(i, j) for i in range(3) for j in range(2)}
    expected = {str(lk["LINK_ID"]) for lk in LINKS if {lk["F_NODE"], lk["T_NODE"]} <= inside}
    assert set(_edges(net)) == expected
    assert net.report["links_kept"] == len(expected)
    assert net.report["links_outside"] == 23 - len(expected)


def test_region_code(tmp_path: Path) -> None:
    net = _import(tmp_path, region_code="241")
    assert net.report["links_kept"] == 23
    with pytest.raises(CityError, match="region code '999'"):
        read_nodelink(
            tmp_path / "src" / "MOCT_NODE.shp",
            tmp_path / "src" / "MOCT_LINK.shp",
            work=tmp_path / "work2",
            region_code="999",
        )


def test_links_to_missing_nodes_are_dropped(tmp_path: Path) -> None:
    corner = node_id(2, 2)
    net = _import(tmp_path, fx_drop_nodes=[corner])
    lost = [lk for lk in LINKS if corner in (lk["F_NODE"], lk["T_NODE"])]
    assert net.report["links_missing_nodes"] == len(lost) == 4
    assert net.report["links_kept"] == 23 - 4


# --------------------------------------------------------------------------- bad input


def test_missing_link_id_field(tmp_path: Path) -> None:
    with pytest.raises(CityError, match="LINK_ID") as info:
        _import(tmp_path, fx_drop_link_fields=["LINK_ID"])
    assert "MOCT_LINK.shp" in str(info.value)
    assert "has no field LINK_ID" in str(info.value)


def test_missing_prj(tmp_path: Path) -> None:
    node_shp, link_shp = write_nodelink(tmp_path / "src")
    link_shp.with_suffix(".prj").unlink()
    with pytest.raises(CityError, match=r"has no \.prj") as info:
        read_nodelink(node_shp, link_shp, work=tmp_path / "work")
    assert str(link_shp) in str(info.value)
    assert "EPSG:5186" in str(info.value)


def test_unknown_crs(tmp_path: Path) -> None:
    node_shp, link_shp = write_nodelink(tmp_path / "src")
    node_shp.with_suffix(".prj").write_text("GEOGCS[this is not a projection", encoding="ascii")
    with pytest.raises(CityError, match="coordinate reference system") as info:
        read_nodelink(node_shp, link_shp, work=tmp_path / "work")
    assert str(node_shp.with_suffix(".prj")) in str(info.value)


def test_bbox_with_no_roads(tmp_path: Path) -> None:
    bbox = (35.0, 129.0, 35.1, 129.1)  # Busan
    with pytest.raises(CityError, match=r"no roads inside the bbox 35,129,35\.1,129\.1") as info:
        _import(tmp_path, bbox=bbox)
    assert "MOCT_LINK.shp" in str(info.value)


def test_not_a_shapefile(tmp_path: Path) -> None:
    node_shp, _ = write_nodelink(tmp_path / "src")
    garbage = tmp_path / "src" / "garbage.shp"
    garbage.write_text("LINK_ID,F_NODE\n1,2\n", encoding="utf-8")
    with pytest.raises(CityError, match="not a shapefile") as info:
        read_nodelink(node_shp, garbage, work=tmp_path / "work")
    assert str(garbage) in str(info.value)
    as_csv = tmp_path / "src" / "links.csv"
    as_csv.write_text("LINK_ID\n1\n", encoding="utf-8")
    with pytest.raises(CityError, match="not a shapefile") as info:
        read_nodelink(node_shp, as_csv, work=tmp_path / "work")
    assert str(as_csv) in str(info.value) and "'.csv'" in str(info.value)


def test_no_link_ends_at_a_node(tmp_path: Path) -> None:
    keep = node_id(1, 1)
    others = [n for n in NODE_LONLAT if n != keep]
    with pytest.raises(CityError, match="ends at a node") as info:
        _import(tmp_path, fx_drop_nodes=others)
    message = str(info.value)
    assert "MOCT_LINK.shp" in message and "MOCT_NODE.shp" in message
    assert "F_NODE" in message or "T_NODE" in message


def test_signal_csv_without_node_id_column(tmp_path: Path) -> None:
    csv_path = tmp_path / "signals.csv"
    csv_path.write_text("ID\n1\n", encoding="utf-8")
    with pytest.raises(CityError, match="no NODE_ID column") as info:
        _import(tmp_path, signals_csv=csv_path)
    assert str(csv_path) in str(info.value)
