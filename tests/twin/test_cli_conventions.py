"""CLI conventions (--version, -h, env vars in help, -v/-q, completion), `twin
scenarios list|show`, `twin city show`, and the Python API (`import twin`)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from city_models.build import City
from scenarios.loader import resolve
from twin.app.cli import app

runner = CliRunner()


def test_version_help_and_env_vars() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("citytwin ") and "SUMO 1.28" in res.output
    short, long = runner.invoke(app, ["-h"]), runner.invoke(app, ["--help"])
    assert short.exit_code == 0 and short.output == long.output
    assert "--install-completion" in short.output and "--quiet" in short.output
    run_help = runner.invoke(app, ["run", "-h"], terminal_width=120).output
    assert "CITYTWIN_DATA" in run_help and "CITYTWIN_DB" in run_help
    assert "--vary" in run_help and "--seeds" in run_help and "--set" in run_help


def test_env_var_sets_the_data_dir(tmp_path: Path) -> None:
    res = runner.invoke(app, ["runs", "list", "--json"], env={"CITYTWIN_DATA": str(tmp_path)})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs.sqlite").exists() or any(tmp_path.iterdir())


def test_scenarios_list_and_show() -> None:
    res = runner.invoke(app, ["scenarios", "list", "--json"])
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert {"baseline", "ev_priority", "vms_diversion", "evacuation", "adaptive"} <= set(rows)
    assert rows["ev_priority"]["kind"] == "ev_priority" and rows["ev_priority"]["description"]
    shown = runner.invoke(app, ["scenarios", "show", "ev_priority"]).output
    assert shown == resolve("ev_priority").read_text(encoding="utf-8")
    assert tomllib.loads(shown)["kind"] == "ev_priority" and shown.startswith("#")


def test_city_show(district_city: City) -> None:
    res = runner.invoke(app, ["city", "show", str(district_city.path), "--json"])
    info = json.loads(res.output)
    assert info["signals"] == 49 and info["georeferenced"] is True
    assert {p["id"] for p in info["pois"]} == {p.id for p in district_city.manifest.pois}
    text = runner.invoke(app, ["city", "show", str(district_city.path), "--width", "50"]).output
    drawn = text.split("zones:")[-1]
    assert drawn.count("+") >= 20 and "H" in drawn and "F" in drawn and "~" in drawn
    assert max(len(line) for line in drawn.splitlines()[1:-1]) <= 50


def test_importing_twin_stays_light() -> None:
    code = "import sys, twin.errors; print('twin.app' in sys.modules, callable(twin.run))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert out == ["False", "True"]


@pytest.mark.sumo
@pytest.mark.slow
def test_python_api_runs_and_records(district_city: City, tmp_path: Path) -> None:
    import twin

    record = twin.run("baseline", city=district_city.path, seed=4, data_dir=tmp_path,
                      overrides={"sim.duration_s": 120})  # fmt: skip
    assert record.status == "done" and record.seed == 4
    assert record.spec["sim"]["duration_s"] == 120
    store = twin.runs(data_dir=tmp_path)
    assert store.get(record.id).metrics == record.metrics
    assert len(store.read_series(record.id, "network")) > 0
