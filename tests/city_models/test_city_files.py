"""Cities open whole in the tools engineers use: a real geo-reference on generated nets,
the POIs / VMS / zones as a SUMO shapes file that city.sumocfg loads, a run.sumocfg in
every run folder, and --gui refused at once without a display."""

from __future__ import annotations

import os
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from city_models.build import City
from scenarios.loader import parse_scenario
from twin.app.cli import app
from twin.app.compose import RUN_SUMOCFG, build_run
from twin.engine.sumo_tools import load_sumolib_net, run_tool, sumo_home, tool_env


def test_generated_net_is_geo_referenced_like_its_manifest(district_city: City) -> None:
    net = load_sumolib_net(district_city.net_path)
    proj = net._location["projParameter"]
    assert proj.startswith("+proj=eqc") and "+lat_0=37.2636" in proj
    # SUMO's own conversion (through the net's projection) gives the manifest's lon/lat
    for sig in district_city.manifest.signals[:10]:
        lon, lat = net.convertXY2LonLat(sig.x, sig.y)
        assert lon == pytest.approx(sig.lon, abs=2e-7) and lat == pytest.approx(sig.lat, abs=2e-7)
    for poi in district_city.manifest.pois:
        lon, lat = net.convertXY2LonLat(poi.x, poi.y)
        assert lon == pytest.approx(poi.lon, abs=2e-7) and lat == pytest.approx(poi.lat, abs=2e-7)


def test_shapes_file_holds_pois_vms_and_zones(district_city: City) -> None:
    m = district_city.manifest
    assert m.files.shapes == "shapes.add.xml"
    root = ElementTree.parse(district_city.path / m.files.shapes).getroot()
    pois = {p.attrib["id"]: p.attrib["type"] for p in root.iter("poi")}
    assert {p.id: p.role for p in m.pois}.items() <= pois.items()
    assert {v.id for v in m.vms} <= set(pois)
    assert [p.attrib["id"] for p in root.iter("poly")] == [z.id for z in m.zones]
    cfg = (district_city.path / m.files.sumocfg).read_text(encoding="utf-8")
    assert "shapes.add.xml" in cfg
    out = run_tool("sumo", ["-c", m.files.sumocfg, "--end", "5", "--no-step-log", "true"],
                   what="loading city.sumocfg", cwd=district_city.path)  # fmt: skip
    assert "Error" not in out


def test_every_run_folder_has_a_sumocfg_that_reopens_it(
    district_city: City, tmp_path: Path
) -> None:
    spec = parse_scenario({"name": "b", "kind": "baseline", "sim": {"duration_s": 120}})
    run = build_run(spec, district_city, seed=3, run_dir=tmp_path / "run")
    cfg = tmp_path / "run" / RUN_SUMOCFG
    root = ElementTree.parse(cfg).getroot()
    routes = root.find("input/route-files")
    assert routes is not None and str(run.config.routes[0].resolve()) in routes.attrib["value"]
    seed = root.find("random_number/seed")
    assert seed is not None and seed.attrib["value"] == "3"
    assert root.find("output") is None  # reopening writes none of the run's outputs
    out = run_tool("sumo", ["-c", cfg, "--end", "30", "--no-step-log", "true"],
                   what="reopening a run", cwd=tmp_path)  # fmt: skip
    assert "Error" not in out
    assert not (tmp_path / "run" / "tripinfo.xml").exists()


def test_gui_without_a_display_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    res = CliRunner().invoke(app, ["run", "baseline", "--gui", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "needs a display" in res.output
    assert not (tmp_path / "runs").exists()  # nothing was recorded or started


def test_sumo_tools_run_with_sumo_home_and_without_a_test_runs_coverage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", "{}")
    monkeypatch.setenv("PROJ_LIB", "/elsewhere")
    env = tool_env()
    assert env["SUMO_HOME"] == str(sumo_home())
    assert "COVERAGE_PROCESS_CONFIG" not in env  # SUMO's scripts are not measured
    assert "COVERAGE_PROCESS_CONFIG" in os.environ  # ours still are
    if (sumo_home() / "data" / "proj" / "proj.db").exists():
        assert "PROJ_LIB" not in env and env["PROJ_DATA"].endswith("proj")
