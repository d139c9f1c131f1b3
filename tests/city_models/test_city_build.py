"""Tests of the built default city (city_models.build): signals, detectors, POIs, cache."""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import networkx as nx
import pytest

from city_models.build import SYNTHETIC_NOTE, City, build_city, cache_key, load_city
from city_models.features import approach_edge, strongly_connected_edges
from city_models.geo import lonlat_to_xy, xy_to_lonlat
from city_models.manifest import MANIFEST_NAME
from city_models.net import TlsInfo
from city_models.presets import SUWON_LAT, SUWON_LON, get_preset, with_overrides
from city_models.signals import LANE_WIDTH_M, axis_of
from tests.conftest import LIGHT_DISTRICT
from twin.engine.sumo_tools import sumo_binary, tool_env
from twin.errors import CityError

GREEN = "Gg"


def _green(state: str) -> set[int]:
    return {i for i, ch in enumerate(state) if ch in GREEN}


def _pocket_lefts(tls: TlsInfo) -> list[int]:
    return [k.index for k in tls.links if k.direction == "l" and k.from_edge.endswith("_pocket")]


# --------------------------------------------------------------------------- signals


def test_district_has_30_to_60_signals(district_city: City) -> None:
    net = district_city.net
    assert 30 <= len(net.tls) <= 60
    assert len(district_city.manifest.signals) == len(net.tls)
    assert district_city.manifest.counts["signals"] == len(net.tls)
    assert {s.id for s in district_city.manifest.signals} == set(net.tls)
    for tls in net.tls.values():
        assert tls.links, tls.id
        assert net.node_types[tls.node].startswith("traffic_light"), tls.id


def test_stopline_loops_on_every_incoming_lane(district_city: City) -> None:
    net = district_city.net
    stop = {(d.tls, d.lane): d for d in district_city.manifest.detectors if d.kind == "stopline"}
    for tls in net.tls.values():
        for lane in {k.from_lane for k in tls.links}:
            det = stop.get((tls.id, lane))
            assert det is not None, (tls.id, lane)
            length = net.lane_lengths_m[lane]
            assert 0.0 < det.pos_m <= length
            assert length - det.pos_m <= 3.0 + 1e-6  # at the stop line
    # nothing but signalized approach lanes carries a stop-line loop
    incoming = {(t.id, k.from_lane) for t in net.tls.values() for k in t.links}
    assert set(stop) == incoming


def test_upstream_loops_on_every_approach(district_city: City) -> None:
    net = district_city.net
    preset = get_preset(district_city.manifest.preset)
    upstream = {d.lane: d for d in district_city.manifest.detectors if d.kind == "upstream"}
    for tls in net.tls.values():
        for from_edge in {k.from_edge for k in tls.links}:
            last = net.edges[from_edge]
            up = net.edges[approach_edge(net, from_edge)]
            for k in range(up.lanes):
                det = upstream.get(f"{up.id}_{k}")
                assert det is not None, (tls.id, from_edge, k)
                assert det.tls == tls.id
                assert 0.0 <= det.pos_m <= up.length_m
                to_stopline = up.length_m - det.pos_m + (last.length_m if up is not last else 0)
                assert to_stopline <= preset.upstream_detector_m + 0.05


def test_detector_file_matches_manifest(district_city: City) -> None:
    root = ElementTree.parse(district_city.detectors_path).getroot()
    loops = {el.get("id"): el for el in root.iter("inductionLoop")}
    manifest = district_city.manifest
    assert set(loops) == {d.id for d in manifest.detectors}
    assert len(loops) == len(manifest.detectors) == manifest.counts["detectors"]
    for d in manifest.detectors:
        assert loops[d.id].get("lane") == d.lane
        assert d.lane in district_city.net.lane_lengths_m
        assert float(loops[d.id].get("period", "nan")) == manifest.detector_period_s


def test_installed_programs_match_the_manifest_plans(district_city: City) -> None:
    net = district_city.net
    for spec in district_city.manifest.signals:
        phases = net.tls[spec.id].phases
        assert [p.state for p in phases] == [p.state for p in spec.phases], spec.id
        assert [p.duration_s for p in phases] == [p.duration_s for p in spec.phases]
        assert [p.name for p in phases] == [p.name for p in spec.phases]


def test_phase_plans_are_conflict_free(district_city: City) -> None:
    n_permissive = 0
    for tls in district_city.net.tls.values():
        n = len(tls.links)
        assert any(any(row) for row in tls.foes), tls.id  # the check below is not vacuous
        for phase in tls.phases:
            assert len(phase.state) == n, (tls.id, phase.name)
            major = [i for i, ch in enumerate(phase.state) if ch == "G"]
            minor = [i for i, ch in enumerate(phase.state) if ch == "g"]
            for a in major:
                for b in major:
                    assert not tls.foes[a][b], (tls.id, phase.name, tls.links[a], tls.links[b])
            for a in minor:
                for b in major:
                    if tls.foes[a][b]:
                        assert tls.yields[a][b], (tls.id, phase.name, a, b)
                        assert not tls.yields[b][a], (tls.id, phase.name, a, b)
                        n_permissive += 1
    assert n_permissive > 0  # permissive lefts (shared lanes) exist and were checked


def test_every_link_gets_green_in_the_cycle(district_city: City) -> None:
    for tls in district_city.net.tls.values():
        served: set[int] = set()
        for phase in tls.phases:
            served |= _green(phase.state)
        assert served == set(range(len(tls.links))), tls.id


def test_phase_durations_respect_minimums_and_intergreens(district_city: City) -> None:
    preset = get_preset(district_city.manifest.preset)
    for spec in district_city.manifest.signals:
        for p in spec.phases:
            assert p.duration_s >= p.min_green_s, (spec.id, p.name)
            assert p.max_green_s >= p.duration_s, (spec.id, p.name)
            if p.kind == "yellow":
                assert p.duration_s == 3.0 == preset.yellow_s
            elif p.kind == "all_red":
                assert p.duration_s >= 1.0
            elif "left" in p.name:
                assert p.min_green_s >= preset.left_min_green_s
            else:
                assert p.min_green_s >= preset.vehicle_min_green_s


def test_each_green_is_followed_by_yellow_then_all_red(district_city: City) -> None:
    for spec in district_city.manifest.signals:
        phases = spec.phases
        assert len(phases) % 3 == 0
        assert [p.index for p in phases] == list(range(len(phases)))
        greens = phases[0::3]
        for k, green in enumerate(greens):
            yellow, all_red = phases[3 * k + 1], phases[3 * k + 2]
            nxt = greens[(k + 1) % len(greens)]
            assert (green.kind, yellow.kind, all_red.kind) == ("green", "yellow", "all_red")
            assert yellow.name == f"{green.name} yellow"
            assert all_red.name == f"{green.name} all-red"
            assert "y" not in green.state and "y" not in all_red.state
            ending = _green(green.state) - _green(nxt.state)
            for i in ending:  # every link losing its green shows yellow, then red
                assert yellow.state[i] == "y", (spec.id, green.name, i)
                assert all_red.state[i] in "rs", (spec.id, green.name, i)
            # nothing turns green during the change interval
            assert _green(yellow.state) <= _green(green.state)
            assert _green(all_red.state) <= _green(green.state) & _green(nxt.state)


def test_cycle_is_the_sum_of_phase_durations(district_city: City) -> None:
    net = district_city.net
    for spec in district_city.manifest.signals:
        total = sum(p.duration_s for p in spec.phases)
        assert spec.cycle_s == pytest.approx(total), spec.id
        assert sum(p.duration_s for p in net.tls[spec.id].phases) == pytest.approx(total)
        assert 0.0 <= spec.offset_s < spec.cycle_s


def test_arterial_approaches_have_a_protected_left_phase(district_city: City) -> None:
    net = district_city.net
    phases_of = {s.id: s.phases for s in district_city.manifest.signals}
    n_protected = 0
    for tls in net.tls.values():
        for link in tls.links:
            if net.edges[link.from_edge].name.startswith("Arterial"):
                assert link.from_edge.endswith("_pocket"), (tls.id, link)
        for i in _pocket_lefts(tls):
            axis = axis_of(net, tls.links[i].from_edge)
            left = [p for p in phases_of[tls.id] if p.name == f"{axis} left"]
            assert len(left) == 1, (tls.id, axis)
            assert left[0].kind == "green"
            assert left[0].state[i] == "G", (tls.id, i)
            # the pocket lane's left is never permissive, and the left phase serves lefts only
            for p in phases_of[tls.id]:
                assert p.state[i] != "g"
            for j in _green(left[0].state):
                assert tls.links[j].direction in {"l", "L", "t"}, (tls.id, j)
            n_protected += 1
    assert n_protected > 0


def test_arterial_crossings_have_two_left_phases(district_city: City) -> None:
    art_art = [s for s in district_city.manifest.signals if s.road_classes == ("arterial",) * 2]
    assert art_art
    for spec in art_art:
        names = {p.name for p in spec.phases if p.kind == "green"}
        assert names == {"EW through", "EW left", "NS through", "NS left"}, spec.id


def test_pedestrian_minimum_green_is_respected(district_city: City) -> None:
    net = district_city.net
    params = district_city.manifest.params
    walk_s, ped_speed = params["walk_s"], params["ped_speed_mps"]
    assert ped_speed <= 1.0
    n_checked = 0
    for spec in district_city.manifest.signals:
        tls = net.tls[spec.id]
        for p in spec.phases:
            if p.kind != "green" or not p.name.endswith("through"):
                continue
            axis = p.name.split(" ")[0]
            other = [k for k in tls.links if axis_of(net, k.from_edge) != axis]
            assert other, (spec.id, p.name)
            # the crosswalk beside this phase crosses the other road: its lanes in and out
            lanes_in = max(net.edges[k.from_edge].lanes for k in other)
            lanes_out = max(net.edges[k.to_edge].lanes for k in other if k.direction == "s")
            crossing_m = (lanes_in + lanes_out) * LANE_WIDTH_M
            assert p.ped_min_green_s > walk_s
            assert p.ped_min_green_s >= walk_s + crossing_m / ped_speed - 1e-9, (spec.id, p.name)
            assert p.min_green_s >= p.ped_min_green_s, (spec.id, p.name)
            assert p.duration_s >= p.ped_min_green_s
            n_checked += 1
    assert n_checked >= 2 * len(net.tls)


# --------------------------------------------------------------------------- POIs, VMS, zone


def test_pois_vms_and_flood_zone(district_city: City) -> None:
    manifest, net = district_city.manifest, district_city.net
    by_role: dict[str, list[Any]] = {}
    for poi in manifest.pois:
        by_role.setdefault(poi.role, []).append(poi)
        assert poi.edge in net.edges
        assert 0.0 < poi.pos_m < net.edges[poi.edge].length_m
    assert len(by_role["hospital"]) >= 2
    assert len(by_role["fire_station"]) >= 2
    assert len(by_role["shelter"]) >= 3
    assert all(p.capacity_veh is not None and p.capacity_veh > 0 for p in by_role["shelter"])
    assert len({p.edge for p in manifest.pois}) == len(manifest.pois)
    assert len({p.id for p in manifest.pois}) == len(manifest.pois)

    assert len(manifest.vms) >= 1
    for vms in manifest.vms:
        edge = net.edges[vms.edge]
        assert edge.name.startswith("Arterial"), vms.id
        assert 0.0 < vms.pos_m < edge.length_m
        assert vms.junction in net.nodes_xy

    floods = [z for z in manifest.zones if z.kind == "flood"]
    assert len(floods) == 1
    flood = floods[0]
    assert flood.edges
    assert set(flood.edges) <= set(net.edges)
    assert len(flood.polygon_xy) >= 3
    assert len(flood.polygon_lonlat) == len(flood.polygon_xy)
    assert not {p.edge for p in by_role["shelter"]} & set(flood.edges)


def _connection_graph(city: City) -> nx.DiGraph:
    """Edge -> edge graph of SUMO's own lane connections (turn restrictions included)."""
    import sumolib

    net = sumolib.net.readNet(str(city.net_path))
    graph = nx.DiGraph()
    for edge in net.getEdges(withInternal=False):
        graph.add_node(edge.getID())
        for to in edge.getOutgoing():
            graph.add_edge(edge.getID(), to.getID(), weight=edge.getLength())
    return graph


def test_every_poi_reaches_every_other_poi(district_city: City) -> None:
    net = district_city.net
    core = strongly_connected_edges(net)
    sites = [p.edge for p in district_city.manifest.pois]
    sites += [v.edge for v in district_city.manifest.vms]
    assert set(sites) <= core
    assert len(core) > 0.9 * len(net.edges)
    graph = _connection_graph(district_city)
    assert set(graph.nodes) == set(net.edges)
    for a in sites:
        lengths = nx.single_source_dijkstra_path_length(graph, a)
        for b in sites:
            assert b in lengths, f"{b} cannot be reached from {a}"
            assert math.isfinite(lengths[b])


def test_coordinates_are_near_suwon(district_city: City) -> None:
    manifest = district_city.manifest
    assert (manifest.origin_lat, manifest.origin_lon) == (SUWON_LAT, SUWON_LON)
    points = [(s.lon, s.lat) for s in manifest.signals]
    points += [(p.lon, p.lat) for p in manifest.pois]
    points += [(v.lon, v.lat) for v in manifest.vms]
    points += list(manifest.zones[0].polygon_lonlat)
    for lon, lat in points:
        assert abs(lat - 37.26) < 0.1
        assert abs(lon - 127.03) < 0.1


def test_manifest_lonlat_agrees_with_xy(district_city: City) -> None:
    m = district_city.manifest
    for item in [*m.signals, *m.pois, *m.vms]:
        x, y = lonlat_to_xy(item.lon, item.lat, lat0=m.origin_lat, lon0=m.origin_lon)
        assert x == pytest.approx(item.x, abs=0.05)
        assert y == pytest.approx(item.y, abs=0.05)


@pytest.mark.parametrize("xy", [(0.0, 0.0), (1234.5, -987.6), (-6000.0, 6000.0)])
def test_geo_round_trip(xy: tuple[float, float]) -> None:
    lon, lat = xy_to_lonlat(*xy, lat0=SUWON_LAT, lon0=SUWON_LON)
    x, y = lonlat_to_xy(lon, lat, lat0=SUWON_LAT, lon0=SUWON_LON)
    assert (x, y) == pytest.approx(xy, abs=1e-6)


def test_geo_scale_is_metric() -> None:
    lon, lat = xy_to_lonlat(0.0, 1000.0, lat0=SUWON_LAT, lon0=SUWON_LON)
    assert lon == SUWON_LON
    assert (lat - SUWON_LAT) * 111_195 == pytest.approx(1000.0, rel=1e-3)  # 1° ≈ 111.2 km
    lon, lat = xy_to_lonlat(1000.0, 0.0, lat0=SUWON_LAT, lon0=SUWON_LON)
    assert lat == SUWON_LAT
    east_m_per_deg = 111_195 * math.cos(math.radians(SUWON_LAT))
    assert (lon - SUWON_LON) * east_m_per_deg == pytest.approx(1000.0, rel=1e-3)


def test_manifest_says_the_geometry_is_synthetic(district_city: City) -> None:
    manifest = district_city.manifest
    assert manifest.synthetic is True
    assert manifest.note == SYNTHETIC_NOTE
    assert "synthetic" in manifest.note.lower()
    assert "not Suwon" in manifest.note


# --------------------------------------------------------------------------- files, cache


def test_sumocfg_references_existing_files(district_city: City) -> None:
    root = ElementTree.parse(district_city.sumocfg_path).getroot()
    inputs = root.find("input")
    assert inputs is not None
    for tag in ("net-file", "route-files", "additional-files"):
        el = inputs.find(tag)
        assert el is not None, tag
        for name in el.get("value", "").split(","):
            assert name
            assert (district_city.path / name).is_file(), name
    files = district_city.manifest.files
    for name in files.model_dump().values():
        assert (district_city.path / name).is_file(), name


@pytest.mark.sumo
def test_sumocfg_opens_in_sumo(district_city: City) -> None:
    proc = subprocess.run(
        [str(sumo_binary("sumo")), "-c", str(district_city.sumocfg_path), "--end", "30"],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Error" not in proc.stderr


def _net_without_header(city: City) -> list[str]:
    with gzip.open(city.net_path, "rt", encoding="utf-8") as fh:
        return [line for line in fh if "generated on" not in line]


@pytest.mark.slow
def test_build_cache_reuses_and_force_rebuilds(tmp_path: Path) -> None:
    cities = tmp_path / "cities"
    first = build_city("district", seed=3, cities_dir=cities)
    first_net = _net_without_header(first)
    key = cache_key(get_preset("district"), 3)
    assert first.path == cities / f"district-s3-{key}"
    assert first.manifest.cache_key == key
    mtime = first.net_path.stat().st_mtime_ns

    again = build_city("district", seed=3, cities_dir=cities)
    assert again.path == first.path
    assert again.manifest.model_dump_json() == first.manifest.model_dump_json()
    assert again.net_path.stat().st_mtime_ns == mtime
    assert [p.name for p in cities.iterdir()] == [first.path.name]  # no stray build folders

    forced = build_city("district", seed=3, cities_dir=cities, force=True)
    assert forced.path == first.path
    assert forced.net_path.stat().st_mtime_ns != mtime
    assert forced.manifest.cache_key == first.manifest.cache_key
    # deterministic: the same network, except netconvert's "generated on <date>" comment
    assert _net_without_header(forced) == first_net
    assert [p.name for p in cities.iterdir()] == [first.path.name]


@pytest.mark.slow
def test_rebuild_gives_the_same_content_hash(district_city: City, tmp_path: Path) -> None:
    again = build_city("district", seed=district_city.manifest.seed, out=tmp_path / "again",
                       overrides=LIGHT_DISTRICT)  # fmt: skip
    assert again.manifest.cache_key == district_city.manifest.cache_key
    assert again.manifest.content_hash == district_city.manifest.content_hash


def test_load_city_round_trips(district_city: City) -> None:
    loaded = load_city(district_city.path)
    assert loaded.manifest == district_city.manifest
    assert loaded.path == district_city.path


def test_load_city_without_manifest_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "empty-city"
    folder.mkdir()
    with pytest.raises(CityError, match=MANIFEST_NAME) as info:
        load_city(folder)
    assert str(folder / MANIFEST_NAME) in str(info.value)


def test_load_city_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CityError, match="does not exist"):
        load_city(tmp_path / "nowhere")


def _copy_city(city: City, dest: Path) -> Path:
    shutil.copytree(city.path, dest)
    return dest


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m.update(seed="one"), "seed"),
        (lambda m: m["signals"][0].update(cycle_s="long"), "signals.0.cycle_s"),
        (lambda m: m["pois"][0].update(role="police"), "pois.0.role"),
        (lambda m: m.pop("note"), "note"),
        (lambda m: m["files"].update(extra_file="x.xml"), "files.extra_file"),
    ],
    ids=["seed", "cycle", "role", "missing-note", "extra-field"],
)
def test_broken_manifest_field_is_named(
    district_city: City, tmp_path: Path, edit: Any, field: str
) -> None:
    folder = _copy_city(district_city, tmp_path / "city")
    path = folder / MANIFEST_NAME
    raw = json.loads(path.read_text(encoding="utf-8"))
    edit(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(CityError) as info:
        load_city(folder)
    msg = str(info.value)
    assert f"'{field}'" in msg
    assert str(path) in msg


def test_manifest_that_is_not_json(district_city: City, tmp_path: Path) -> None:
    folder = _copy_city(district_city, tmp_path / "city")
    (folder / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(CityError, match="not valid JSON"):
        load_city(folder)


def test_missing_net_file_is_named(district_city: City, tmp_path: Path) -> None:
    folder = _copy_city(district_city, tmp_path / "city")
    (folder / district_city.manifest.files.net).unlink()
    with pytest.raises(CityError, match=r"city\.net\.xml\.gz.*files\.net"):
        load_city(folder)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(CityError) as info:
        get_preset("nope")
    msg = str(info.value)
    assert "'nope'" in msg
    assert "district" in msg
    assert "suwon-scale" in msg


def test_build_city_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(CityError, match="suwon-scale"):
        build_city("nope", out=tmp_path / "x")
    with pytest.raises(CityError, match="seed"):
        build_city("district", seed=-1, out=tmp_path / "x")
    with pytest.raises(CityError, match="cities_dir"):
        build_city("district", seed=1)
    assert not (tmp_path / "x").exists()


def test_overrides_enter_the_cache_key_and_the_demand(district_city: City) -> None:
    """The suite's light district differs from the calibrated preset only in its demand."""
    light = with_overrides(get_preset("district"), LIGHT_DISTRICT)
    assert cache_key(light, 1) == district_city.manifest.cache_key
    assert cache_key(get_preset("district"), 1) != district_city.manifest.cache_key
    assert district_city.manifest.demand.peak_trips_per_h == 3600
    assert get_preset("district").peak_trips_per_h > 3600


@pytest.mark.parametrize(
    ("overrides", "words"),
    [({"name": "x"}, "cannot be overridden; allowed:"), ({"peak_trips_per_h": 0}, "a number > 0"),
     ({"lat": 1.0}, "'lat' cannot be overridden")],
)  # fmt: skip
def test_bad_overrides_are_named(overrides: dict[str, Any], words: str) -> None:
    with pytest.raises(CityError, match=re.escape(words)):
        with_overrides(get_preset("district"), overrides)
