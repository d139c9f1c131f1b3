"""Every shipped scenario kind runs on an imported city, in real SUMO, and what SUMO
showed passes the independent monitor (tests/mmu.py): OSM and node-link imports,
the EV to the nearest tagged hospital, an incident given by street name, an evacuation
zone given in lon/lat with contraflow, a SUMO model's own demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from city_models.build import City, load_city
from city_models.importing import import_city
from tests import spawned
from tests.city_models.nodelink_fixture import write_nodelink
from tests.city_models.osm_fixture import write_small_osm
from tests.integration.test_controllers import monitored
from tests.integration.test_safety import monitored_run
from twin.engine.sumo_tools import run_tool

pytestmark = [pytest.mark.sumo, pytest.mark.slow]


@pytest.fixture(scope="module")
def osm_city(tmp_path_factory: pytest.TempPathFactory) -> City:
    root = tmp_path_factory.mktemp("osm")
    write_small_osm(root / "small.osm")
    return import_city("osm", src=root / "small.osm", out=root / "city")


def _run(city: City, tmp_path: Path, name: str, raw: dict[str, Any]) -> dict[str, Any]:
    raw = {"seed": 3, **raw, "city": {"path": str(city.path)}}
    out: dict[str, Any] = spawned.in_process(
        monitored_run, str(city.path), str(tmp_path / name), raw
    )
    return out


def _clean(out: dict[str, Any], city: City) -> None:
    run_city = load_city(Path(out.get("run_city", city.path)))
    monitored(run_city, out["record"]).assert_clean(min_greens=5, min_yellows=5)


def test_baseline_and_ev_priority_on_an_osm_city(osm_city: City, tmp_path: Path) -> None:
    base = _run(osm_city, tmp_path, "base", {"name": "b", "kind": "baseline",
                                             "sim": {"duration_s": 900.0}})  # fmt: skip
    assert base["metrics"]["throughput_veh"] > 20
    _clean(base, osm_city)
    ev = _run(osm_city, tmp_path, "ev", {
        "name": "ev", "kind": "ev_priority", "mode": "center", "sim": {"duration_s": 900.0},
        "evs": [{"id": "amb1", "dispatch_s": 60.0, "station": "fire_station_1",
                 "on_scene_s": 20.0}],
    })  # fmt: skip
    m = ev["metrics"]
    assert m["ev_arrived"] == 1
    # the nearest hospital by travel time, one of the two the OSM file tags
    assert m["ev"]["amb1"]["hospital"] in {"hospital_1", "hospital_2"}
    assert m["ev_preempted_signals"] >= 1 and m["guard_late_changes"] == 0
    _clean(ev, osm_city)


def test_vms_incident_by_street_name_and_evacuation_by_lonlat(
    osm_city: City, tmp_path: Path
) -> None:
    street = "경수대로"  # the fixture's primary road, by its Korean name
    vms = _run(osm_city, tmp_path, "vms", {
        "name": "vms", "kind": "vms_diversion", "sim": {"duration_s": 900.0},
        "demand": {"period": "pm_peak"},
        "incidents": [{"id": "c1", "street": street, "closed_lanes": 1,
                       "start_s": 120.0, "end_s": 600.0}],
    })  # fmt: skip
    m = vms["metrics"]
    edge = osm_city.net.edges
    resolved = [e for e in edge.values() if e.name == street]
    assert resolved and m["incident_throughput_veh"] >= 0
    _clean(vms, osm_city)
    lon0, lat0 = 127.0286, 37.2636
    ring = [[lon0 - 0.002, lat0 - 0.002], [lon0 + 0.002, lat0 - 0.002],
            [lon0 + 0.002, lat0 + 0.002], [lon0 - 0.002, lat0 + 0.002]]  # fmt: skip
    evac = _run(osm_city, tmp_path, "evac", {
        "name": "evac", "kind": "evacuation", "zone_polygon_lonlat": ring,
        "warning_s": 60.0, "sim": {"duration_s": 1200.0},
        "measures": {"contraflow": False, "evacuation_signals": True},
    })  # fmt: skip
    m = evac["metrics"]
    assert m["evacuees_veh"] > 0 and m["zone_left_share"] > 0.9
    _clean(evac, osm_city)


def test_nodelink_city_runs_and_a_sumo_model_keeps_its_demand(tmp_path: Path) -> None:
    node, link = write_nodelink(tmp_path / "nl")
    nl = import_city("nodelink", node=node, link=link, out=tmp_path / "nl_city")
    out = _run(nl, tmp_path, "nl", {"name": "b", "kind": "baseline",
                                    "sim": {"duration_s": 600.0}})  # fmt: skip
    assert out["metrics"]["throughput_veh"] > 0
    _clean(out, nl)
    model = tmp_path / "model"
    model.mkdir()
    net = model / "grid.net.xml"
    run_tool("netgenerate", ["--grid", "--grid.number", "4", "--grid.length", "250",
                             "--default.lanenumber", "2", "--tls.guess", "true",
                             "--tls.yellow.time", "3", "--tls.allred.time", "2", "-o", net],
             what="test net")  # fmt: skip
    routes = model / "own.rou.xml"
    trips = "\n".join(f'  <trip id="v{k}" depart="{k * 5}" from="A0A1" to="D3D2"/>'
                      for k in range(60))  # fmt: skip
    routes.write_text(f"<routes>\n{trips}\n</routes>\n", encoding="utf-8")
    city = import_city("sumo", net=net, routes=[routes], out=tmp_path / "sumo_city")
    out = _run(city, tmp_path, "own", {"name": "b", "kind": "baseline",
                                       "sim": {"duration_s": 900.0}})  # fmt: skip
    assert out["metrics"]["vehicles_loaded"] == 60  # the model's own trips, not the OD model
    _clean(out, city)
    od = _run(city, tmp_path, "od", {"name": "b", "kind": "baseline",
                                     "demand": {"source": "od_model"},
                                     "sim": {"duration_s": 900.0}})  # fmt: skip
    assert od["metrics"]["vehicles_loaded"] != 60
