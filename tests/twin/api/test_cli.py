"""``twin admin``: tenants and keys from the shell (the key alone on the last stdout
line); and a real run through the API equals the same run from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from typer.testing import CliRunner

from city_models.build import City
from scenarios.loader import library_scenarios
from tests.twin.api.conftest import Api, link_district
from twin.app.api.settings import load_api_settings
from twin.app.cli import app
from twin.app.compose import execute_request

ROOT = Path(__file__).resolve().parents[3]


def _twin(data: Path, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(data)], env={"CITYTWIN_DB": ""})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_admin_commands_make_tenants_and_keys_that_work(
    tmp_path: Path, make_api: Callable[..., Api]
) -> None:
    data = tmp_path / "data"
    assert _twin(data, "admin", "tenant", "create", "lab").strip().splitlines()[-1] == "lab"
    key = _twin(data, "admin", "key", "create", "--tenant", "lab", "--role", "researcher")
    key = key.strip().splitlines()[-1]
    assert key.startswith("ctk_") and " " not in key
    api = make_api(load_api_settings(data=data, run_workers=0))
    headers = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/v1/tenant", headers=headers).json()["role"] == "researcher"
    listed = _twin(data, "admin", "key", "list", "--tenant", "lab")
    key_id = listed.split()[0]
    assert key[:12] in listed and key not in listed
    new = _twin(data, "admin", "key", "rotate", key_id).strip().splitlines()[-1]
    assert api.client.get("/v1/tenant", headers=headers).status_code == 401
    fresh = {"Authorization": f"Bearer {new}"}
    assert api.client.get("/v1/tenant", headers=fresh).status_code == 200
    new_id = _twin(data, "admin", "key", "list", "--tenant", "lab").splitlines()[-1].split()[0]
    _twin(data, "admin", "key", "revoke", new_id)
    assert api.client.get("/v1/tenant", headers=fresh).status_code == 401
    bad = CliRunner().invoke(app, ["admin", "key", "create", "--tenant", "lab", "--role", "boss",
                                   "--data-dir", str(data)])  # fmt: skip
    assert bad.exit_code != 0 and "boss" in str(bad.exception)


@pytest.mark.sumo
@pytest.mark.slow
def test_a_real_run_through_the_api_equals_the_same_run_from_the_cli(
    tmp_path: Path, district_city: City, make_api: Callable[..., Api]
) -> None:
    data = tmp_path / "data"
    link_district(data, district_city)
    api = make_api(load_api_settings(data=data, run_workers=1), work=execute_request)
    headers = api.key(api.tenant("lab"), "researcher")
    body = {"scenario": "baseline", "seed": 7, "overrides": {"sim": {"duration_s": 300}}}
    run = api.client.post("/v1/runs", json=body, headers=headers)
    assert run.status_code == 202, run.text
    through_api = api.wait(run.json()["id"], headers, timeout_s=300)
    assert through_api["status"] == "done", through_api["error"]

    spec = tomllib.loads(library_scenarios()["baseline"].read_text(encoding="utf-8"))
    spec["sim"]["duration_s"] = 300
    scenario = tmp_path / "baseline_300.toml"
    scenario.write_text(tomli_w.dumps(spec), encoding="utf-8")
    cli = subprocess.run(
        [sys.executable, "-m", "twin.app.cli", "run", str(scenario), "--seed", "7", "--json",
         "--no-report", "--data-dir", str(data), "--db", f"sqlite:///{tmp_path / 'cli.sqlite'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]
    from_cli = json.loads(cli.stdout.strip().splitlines()[-1])
    assert from_cli["city_hash"] == api.door.store.get(through_api["id"]).city_hash
    assert through_api["metrics"] == from_cli["metrics"]
    assert through_api["metrics"]["throughput_veh"] > 0
