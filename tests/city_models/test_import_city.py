"""Imported cities through the shared pipeline (city_models.importing / .pipeline):
OSM (XML, Overpass geometry, PBF), an engineer's SUMO model, the node-link; the round
trip of the district city through OSM; POIs from TOML; bad input; the CLI."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from city_models.build import City, load_city
from city_models.demand import lane_km
from city_models.geo import projection_of
from city_models.graph import reachability
from city_models.importing import import_city, parse_bbox
from city_models.osm_export import export_osm
from city_models.pipeline import (
    PEAK_LOAD_VKM_PER_LANE_KM,
    PipelineOptions,
    drivable_lane_counts,
    read_georef,
    read_pois_toml,
    read_report,
)
from city_models.plan_check import city_plan_problems, conflict_matrix
from city_models.presets import get_preset
from tests.city_models.nodelink_fixture import write_nodelink
from tests.city_models.osm_fixture import write_overpass_geom, write_pbf, write_small_osm
from twin.app.cli import app
from twin.engine.sumo_tools import run_tool
from twin.errors import CityError

POIS_TOML = """
[[pois]]
id = "seoul_fs"
kind = "fire_station"
lat = 37.2650
lon = 127.0300
name = "Designated station"

[[pois]]
id = "school_shelter"
kind = "shelter"
lat = 37.2630
lon = 127.0270
capacity = 250
"""


@pytest.fixture(scope="module")
def osm_city(tmp_path_factory: pytest.TempPathFactory) -> tuple[City, dict[str, object]]:
    root = tmp_path_factory.mktemp("osm")
    info = write_small_osm(root / "small.osm")
    (root / "pois.toml").write_text(POIS_TOML, encoding="utf-8")
    city = import_city(
        "osm",
        src=root / "small.osm",
        out=root / "city",
        options=PipelineOptions(pois_toml=root / "pois.toml"),
    )
    return city, info


# --------------------------------------------------------------------------- OSM
def test_osm_import_makes_a_checked_geo_referenced_city(
    osm_city: tuple[City, dict[str, object]],
) -> None:
    city, info = osm_city
    m = city.manifest
    assert not m.synthetic and m.source is not None and m.source.kind == "osm"
    assert list(m.source.files) == ["small.osm"] and len(m.source.files["small.osm"]) == 64
    assert m.georef is not None and "+proj=utm" in m.georef.proj_params
    assert read_georef(city.net_path) == m.georef
    # the fixture's two signalized crossings are signals, their plans pass every rule
    assert m.counts["signals"] >= 2
    assert city_plan_problems(m, city.net) == []
    reloaded = load_city(city.path)  # the plan check again, from disk
    assert reloaded.manifest.content_hash == m.content_hash
    # every signal's stage greens never conflict (SUMO's own foes + merges)
    for sig in m.signals:
        conflict = conflict_matrix(city.net.tls[sig.id])
        for ph in sig.phases:
            g = [i for i, ch in enumerate(ph.state) if ch == "G"]
            assert not any(conflict[i][j] for i in g for j in g), (sig.id, ph.name)
    # a signal's lon/lat, through the net's own projection, is within 20 m of the
    # OSM traffic_signals node it came from (junction joining may move it a little)
    proj = projection_of(m)
    tagged = info["signals"]  # type: ignore[index]
    for sig in m.signals:
        x, y = proj.lonlat_to_xy(sig.lon, sig.lat)
        assert math.dist((x, y), (sig.x, sig.y)) < 0.5
        nearest = min(math.dist(proj.lonlat_to_xy(lo, la), (sig.x, sig.y)) for lo, la in tagged)
        assert nearest < 20.0


def test_osm_pois_tagged_and_from_toml_snapped_on_the_right(
    osm_city: tuple[City, dict[str, object]],
) -> None:
    city, _info = osm_city
    pois = {p.id: p for p in city.manifest.pois}
    # two hospitals tagged; the one with emergency=yes is the first
    assert {"hospital_1", "hospital_2", "fire_station_1", "seoul_fs", "school_shelter"} <= set(pois)
    report = read_report(city)
    rows = {r["id"]: r for r in report["pois"]}
    assert rows["hospital_1"]["name"] != rows["hospital_2"]["name"]
    assert report["pois_tagged"]["hospital"] == 2
    assert report["pois_tagged"]["shelter"] >= 2  # amenity=shelter and an assembly point
    assert pois["school_shelter"].capacity_veh == 250
    for p in pois.values():
        edge = city.net.edges[p.edge]
        assert 0.0 < p.pos_m < edge.length_m
        assert rows[p.id]["snap_m"] < 150.0
    assert sum(r["right_side"] for r in rows.values()) >= len(rows) - 1
    assert report["pois_missing"] == []


def test_osm_road_classes_speeds_and_report(
    osm_city: tuple[City, dict[str, object]], district_city: City
) -> None:
    city, _info = osm_city
    classes = city.manifest.edge_classes
    assert set(classes.values()) >= {"arterial", "collector", "local"}
    for edge_id, cls in classes.items():
        e = city.net.edges[edge_id]
        if cls == "local":  # residential: Korea's 30 km/h (safe speed 5030)
            assert e.speed_mps == pytest.approx(30 / 3.6, abs=0.05)
    report = read_report(city)
    for key in ("edges", "junctions", "signals", "osm_signal_nodes", "signals_joined",
                "lane_km", "osmnx_graph", "pois_tagged", "edges_outside_core"):  # fmt: skip
        assert key in report
    assert report["osmnx_graph"]["nodes"] > 0  # osmnx read the same file as a graph
    # no volume in the source: the calibrated district's load, not its trips per lane-km
    # (the fixture's short trips need more of them per lane-km than the district's)
    assert report["peak_load_vkm_per_lane_km"] == pytest.approx(PEAK_LOAD_VKM_PER_LANE_KM, rel=0.02)
    district_per_lane_km = get_preset("district").peak_trips_per_h / lane_km(district_city.net)
    assert report["peak_trips_per_h"] / report["lane_km"] > 1.5 * district_per_lane_km


def test_import_is_cached_by_the_sources_hash(tmp_path: Path) -> None:
    src = tmp_path / "small.osm"
    write_small_osm(src)
    first = import_city("osm", src=src, cities_dir=tmp_path / "cities")
    stamp = (first.path / "city.json").stat().st_mtime_ns
    again = import_city("osm", src=src, cities_dir=tmp_path / "cities")
    assert again.path == first.path and (again.path / "city.json").stat().st_mtime_ns == stamp
    # a changed source is another city
    src.write_text(src.read_text(encoding="utf-8").replace("경수대로", "경수대로2"), "utf-8")
    other = import_city("osm", src=src, cities_dir=tmp_path / "cities")
    assert other.path != first.path
    assert other.manifest.counts["signals"] == first.manifest.counts["signals"]


@pytest.mark.parametrize("writer", [write_overpass_geom, write_pbf], ids=["overpass", "pbf"])
def test_overpass_and_pbf_give_the_same_city(
    writer: object, osm_city: tuple[City, dict[str, object]], tmp_path: Path
) -> None:
    city, _info = osm_city
    suffix = ".osm.pbf" if writer is write_pbf else ".osm"
    src = tmp_path / f"small{suffix}"
    writer(src)  # type: ignore[operator]
    other = import_city("osm", src=src, out=tmp_path / "city")
    for key in ("signals", "junctions", "edges"):
        assert other.manifest.counts[key] == city.manifest.counts[key], key
    tagged = {p.id for p in city.manifest.pois if "_" in p.id and p.id[-1].isdigit()}
    assert tagged <= {p.id for p in other.manifest.pois}
    fmt = read_report(other)["input_format"]
    assert fmt == ("pbf" if writer is write_pbf else "overpass_geom")


def test_osm_bad_inputs_name_the_file(tmp_path: Path) -> None:
    src = tmp_path / "small.osm"
    info = write_small_osm(src)
    with pytest.raises(CityError, match=r"small\.osm") as exc:
        import_city("osm", src=src, out=tmp_path / "a", bbox=info["empty_bbox"])
    assert "bbox" in str(exc.value)
    broken = tmp_path / "broken.osm"
    broken.write_text("<osm><node id='1' lat='37.2' lon='127'></osm>", encoding="utf-8")
    with pytest.raises(CityError, match=r"broken\.osm.*line"):
        import_city("osm", src=broken, out=tmp_path / "b")
    fake = tmp_path / "fake.osm.pbf"
    fake.write_text("not a pbf", encoding="utf-8")
    with pytest.raises(CityError, match=r"fake\.osm\.pbf is not an OSM PBF"):
        import_city("osm", src=fake, out=tmp_path / "c")
    with pytest.raises(CityError, match="S,W,N,E"):
        parse_bbox("127.0,37.2,127.1,37.3")  # lon first: latitude out of range
    with pytest.raises(CityError, match="does not exist"):
        import_city("osm", src=tmp_path / "missing.osm", out=tmp_path / "d")


def test_a_network_without_signals_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "small.osm"
    write_small_osm(src)
    text = src.read_text(encoding="utf-8").replace('v="traffic_signals"', 'v="stop"')
    src.write_text(text, encoding="utf-8")
    with pytest.raises(CityError, match="has no signal") as exc:
        import_city("osm", src=src, out=tmp_path / "city")
    assert "highway=traffic_signals" in str(exc.value)
    assert not (tmp_path / "city").exists()  # nothing half-built is left


def test_no_hospital_gives_a_hint_and_pois_toml_errors(tmp_path: Path) -> None:
    src = tmp_path / "small.osm"
    write_small_osm(src)
    text = src.read_text(encoding="utf-8").replace('v="hospital"', 'v="clinic"')
    src.write_text(text, encoding="utf-8")
    city = import_city("osm", src=src, out=tmp_path / "city")
    report = read_report(city)
    assert report["pois_missing"] == ["hospital"]
    assert "--pois" in report["hint"]
    clash = tmp_path / "clash.toml"
    clash.write_text('[[pois]]\nid = "fire_station_1"\nkind = "fire_station"\n'
                     "lat = 37.264\nlon = 127.029\n", encoding="utf-8")  # fmt: skip
    with pytest.raises(CityError, match=r"fire_station_1.*clashes"):
        import_city("osm", src=src, out=tmp_path / "c2",
                    options=PipelineOptions(pois_toml=clash))  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text('[[pois]]\nid = "x"\nkind = "school"\nlat = 37.2\nlon = 127.0\n', "utf-8")
    with pytest.raises(CityError, match=r"bad\.toml.*'kind' is 'school'; allowed: hospital"):
        read_pois_toml(bad)
    bad.write_text('[[pois]]\nid = "x"\nkind = "hospital"\nlat = 137.2\nlon = 127.0\n', "utf-8")
    with pytest.raises(CityError, match=r"'lat' is 137\.2"):
        read_pois_toml(bad)


def test_flood_zone_from_geojson(tmp_path: Path) -> None:
    src = tmp_path / "small.osm"
    info = write_small_osm(src)
    lon0, lat0 = info["origin"]  # type: ignore[misc]
    s, w, n, e = lat0 - 0.003, lon0 - 0.003, lat0 + 0.003, lon0 + 0.003
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    geo = tmp_path / "flood.geojson"
    feature = {"type": "Feature", "properties": {"name": "Stream"},
               "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip
    geo.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}), "utf-8")
    city = import_city("osm", src=src, out=tmp_path / "city",
                       options=PipelineOptions(flood_geojson=geo))  # fmt: skip
    (zone,) = city.manifest.zones
    assert zone.id == "flood_1" and zone.name == "Stream" and zone.edges
    geo.write_text(json.dumps({"type": "Point", "coordinates": [127.0, 37.2]}), "utf-8")
    with pytest.raises(CityError, match="geometry type 'Point'; allowed: Polygon"):
        import_city("osm", src=src, out=tmp_path / "c2",
                    options=PipelineOptions(flood_geojson=geo))  # fmt: skip


# --------------------------------------------------------------------------- round trip
@pytest.mark.slow
def test_district_round_trip_through_osm(district_city: City, tmp_path: Path) -> None:
    """Export the synthetic district as OSM XML, import it back, compare."""
    exported = export_osm(district_city, tmp_path / "district.osm")
    city = import_city("osm", src=tmp_path / "district.osm", out=tmp_path / "city")
    a, b = district_city.manifest, city.manifest
    assert b.counts["signals"] == a.counts["signals"] == exported["signals"]
    # junctions: the generator's intersections (not its pocket split points)
    pockets = {e.to_node for e in district_city.net.edges.values() if e.id.endswith("_pocket")}
    pockets |= {e.from_node for e in district_city.net.edges.values() if e.id.endswith("_pocket")}
    real = {n for n in district_city.net.nodes_xy if n not in _split_nodes(district_city)}
    assert abs(len(city.net.nodes_xy) - len(real)) <= 0.05 * len(real)
    lane_km_a = sum(e.length_m * e.lanes for e in district_city.net.edges.values())
    lane_km_b = sum(e.length_m * e.lanes for e in city.net.edges.values())
    assert lane_km_b == pytest.approx(lane_km_a, rel=0.02)
    # every signal lands where it was (lon/lat through each city's own projection)
    pa, pb = projection_of(a), projection_of(b)
    signals_a = [pa.xy_to_lonlat(s.x, s.y) for s in a.signals]
    for s in b.signals:
        x, y = pb.lonlat_to_xy(s.lon, s.lat)
        d = min(math.dist((x, y), pb.lonlat_to_xy(lo, la)) for lo, la in signals_a)
        assert d < 5.0
    # POIs: same ids, and the hospital reachability map agrees
    assert {p.role for p in b.pois} == {p.role for p in a.pois}
    assert len(b.pois) == len(a.pois)
    ra = reachability(district_city, priority=False, limit_s=240.0)
    rb = reachability(city, priority=False, limit_s=240.0)
    assert abs(ra.share_within - rb.share_within) <= 0.10
    med_a = statistics.median(t for t in ra.times_s.values() if math.isfinite(t))
    med_b = statistics.median(t for t in rb.times_s.values() if math.isfinite(t))
    assert med_b == pytest.approx(med_a, rel=0.15)
    del pockets


def _split_nodes(city: City) -> set[str]:
    """The generator's pocket split points (one street in, its pocket out)."""
    return {e.from_node for e in city.net.edges.values() if e.id.endswith("_pocket")}


# --------------------------------------------------------------------------- SUMO model
def _grid_model(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    net = folder / "grid.net.xml"
    run_tool("netgenerate", ["--grid", "--grid.number", "4", "--grid.length", "250",
                             "--default.lanenumber", "2", "--tls.guess", "true",
                             "--tls.yellow.time", "3", "--tls.allred.time", "2", "-o", net],
             what="making a test net")  # fmt: skip
    routes = folder / "own.rou.xml"
    trips = "\n".join(
        f'  <trip id="v{k}" depart="{k * 10}" from="A0A1" to="D3D2"/>' for k in range(40)
    )
    routes.write_text(f"<routes>\n{trips}\n</routes>\n", encoding="utf-8")
    return net, routes


def test_sumo_model_keeps_its_programs_and_demand(tmp_path: Path) -> None:
    net, routes = _grid_model(tmp_path / "model")
    (tmp_path / "pois.toml").write_text(
        '[[pois]]\nid = "h"\nkind = "hospital"\nlat = 37.2650\nlon = 127.0300\n', "utf-8"
    )
    city = import_city("sumo", net=net, routes=[routes], out=tmp_path / "city",
                       options=PipelineOptions(pois_toml=tmp_path / "pois.toml"))  # fmt: skip
    m = city.manifest
    assert m.source is not None and m.source.options["own_routes"] == ["own_0_own.rou.xml"]
    assert (city.path / "own_0_own.rou.xml").exists()
    report = read_report(city)
    assert report["signals_kept"] == m.counts["signals"] > 0
    assert report["georeferenced"] is False and m.georef is None
    assert [p.id for p in m.pois] == ["h"]
    # the kept programs are the plans the guard enforces (rule 'program' of plan_check)
    assert city_plan_problems(m, city.net) == []
    assert "own_0_own.rou.xml" in (city.path / "city.sumocfg").read_text(encoding="utf-8")


def test_sumo_model_with_a_short_yellow_is_refused_by_signal_and_phase(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    net = folder / "bad.net.xml"
    run_tool("netgenerate", ["--grid", "--grid.number", "4", "--grid.length", "200",
                             "--default.lanenumber", "2", "--tls.guess", "true",
                             "--tls.yellow.time", "2", "--tls.allred.time", "2", "-o", net],
             what="test net")  # fmt: skip
    with pytest.raises(CityError, match=r"signal \S+, phase \d") as exc:
        import_city("sumo", net=net, out=tmp_path / "city")
    assert "--redesign-signals" in str(exc.value)
    city = import_city("sumo", net=net, out=tmp_path / "city", redesign_signals=True)
    assert city_plan_problems(city.manifest, city.net) == []


# --------------------------------------------------------------------------- node-link
def test_nodelink_import_through_the_pipeline(tmp_path: Path) -> None:
    node, link = write_nodelink(tmp_path / "nl")
    city = import_city("nodelink", node=node, link=link, out=tmp_path / "city")
    m = city.manifest
    assert m.source is not None and m.source.kind == "nodelink"
    assert set(m.source.files) >= {"MOCT_NODE.shp", "MOCT_LINK.dbf", "MOCT_LINK.prj"}
    assert m.georef is not None and m.counts["signals"] >= 1
    assert city_plan_problems(m, city.net) == []
    names = {e.name for e in city.net.edges.values()}
    assert any("대로" in n for n in names)  # CP949 names decoded
    assert "arterial" in set(m.edge_classes.values())


# --------------------------------------------------------------------------- CLI
def test_cli_import_osm_prints_the_report(tmp_path: Path) -> None:
    src = tmp_path / "small.osm"
    write_small_osm(src)
    runner = CliRunner()
    res = runner.invoke(app, ["city", "import", "osm", str(src), "--out", str(tmp_path / "c"),
                              "--data-dir", str(tmp_path / "data"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads(res.output.strip().splitlines()[-1])
    assert info["signals"] >= 2 and info["path"] == str(tmp_path / "c")
    assert info["report"]["input_format"] == "xml"
    res = runner.invoke(app, ["city", "import", "osm", str(src), "--bbox", "1,2,3",
                              "--data-dir", str(tmp_path / "data")])  # fmt: skip
    assert res.exit_code != 0
    assert "S,W,N,E" in str(res.exception)
    shutil.rmtree(tmp_path / "c")


# --------------------------------------------------------------------------- odd geometry
def _star_osm(path: Path, legs_deg: list[float]) -> None:
    """One signalized junction with a leg at each heading, 250 m long, two-way."""
    lat0, lon0 = 37.2636, 127.0286
    k = 6_371_008.8 * math.pi / 180
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6">',
             f'<node id="1" lat="{lat0}" lon="{lon0}">'
             '<tag k="highway" v="traffic_signals"/></node>']  # fmt: skip
    for i, deg in enumerate(legs_deg, start=2):
        dx, dy = 250 * math.cos(math.radians(deg)), 250 * math.sin(math.radians(deg))
        lat, lon = lat0 + dy / k, lon0 + dx / (k * math.cos(math.radians(lat0)))
        lines.append(f'<node id="{i}" lat="{lat:.7f}" lon="{lon:.7f}"/>')
    for i, _deg in enumerate(legs_deg, start=2):
        hw = "primary" if i % 2 else "secondary"
        lines.append(f'<way id="{100 + i}"><nd ref="1"/><nd ref="{i}"/>'
                     f'<tag k="highway" v="{hw}"/><tag k="lanes" v="4"/></way>')  # fmt: skip
    lines.append("</osm>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    "legs_deg",
    [[0, 72, 144, 216, 288], [10, 100, 190], [0, 35, 180, 250]],
    ids=["five_legs", "tee", "skewed"],
)
def test_plans_for_any_geometry_serve_every_link_and_never_conflict(
    legs_deg: list[float], tmp_path: Path
) -> None:
    _star_osm(tmp_path / "star.osm", legs_deg)
    city = import_city("osm", src=tmp_path / "star.osm", out=tmp_path / "city")
    (sig,) = city.manifest.signals
    tls = city.net.tls[sig.id]
    conflict = conflict_matrix(tls)
    greens = [p for p in sig.phases if p.kind == "green"]
    assert len(greens) >= 2
    served = {i for p in greens for i, ch in enumerate(p.state) if ch in "Gg"}
    assert served == set(range(len(tls.links)))  # every movement gets green somewhere
    for p in greens:
        g = [i for i, ch in enumerate(p.state) if ch == "G"]
        assert not any(conflict[i][j] for i in g for j in g), p.name
        assert p.min_green_s >= p.ped_min_green_s  # pedestrian clearance held
        if p.name.endswith("through"):  # a through stage's crosswalk crosses the other legs
            assert p.ped_min_green_s > 7.0
    assert city_plan_problems(city.manifest, city.net) == []


def test_the_default_load_counts_only_the_lanes_cars_may_use(tmp_path: Path) -> None:
    """A SUMO model with sidewalks: they are not lane-km a car's trips load, nor
    shortcuts for its paths; the same grid without them gets the same trips."""
    cities = {}
    for walk in ("false", "true"):
        folder = tmp_path / f"walk_{walk}"
        folder.mkdir()
        net = folder / "grid.net.xml"
        run_tool("netgenerate", ["--grid", "--grid.number", "4", "--grid.length", "250",
                                 "--default.lanenumber", "2", "--tls.guess", "true",
                                 "--tls.yellow.time", "3", "--tls.allred.time", "2",
                                 "--sidewalks.guess", walk, "-o", net],
                 what="making a test net")  # fmt: skip
        counts = drivable_lane_counts(net)
        assert set(counts.values()) == {2}  # the two car lanes, with or without a sidewalk
        cities[walk] = import_city("sumo", net=net, out=folder / "city")
    plain, walked = (read_report(cities[w]) for w in ("false", "true"))
    assert walked["lane_km"] > 1.4 * plain["lane_km"]  # the sidewalks are lanes too
    assert walked["peak_trips_per_h"] == pytest.approx(plain["peak_trips_per_h"], rel=0.02)
    for report in (plain, walked):
        assert report["peak_load_vkm_per_lane_km"] == pytest.approx(
            PEAK_LOAD_VKM_PER_LANE_KM, rel=0.02
        )
