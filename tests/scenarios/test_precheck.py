"""Config errors against the city (unknown station, street, zone) are bad input before
any run is recorded: `twin run` exits 2 with one paragraph and leaves no failed record."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from city_models.build import City
from scenarios.loader import parse_scenario
from twin.app.cli import app
from twin.app.compose import run_request
from twin.config import load_settings
from twin.engine.store import RunStore
from twin.errors import ScenarioError

CASES = {
    "station": ({"kind": "ev_priority",
                 "evs": [{"id": "a", "station": "fire_station_9", "dispatch_s": 60}]},
                r"evs\[0\]\.station' = 'fire_station_9'"),
    "street": ({"kind": "vms_diversion", "incidents": [
        {"id": "c", "street": "No Such Road", "start_s": 60, "end_s": 600}]},
               r"incidents\[0\]\.street' = 'No Such Road'"),
    "edge": ({"kind": "vms_diversion", "incidents": [
        {"id": "c", "edge": "nowhere", "start_s": 60, "end_s": 600}]},
             r"incidents\[0\]\.edge' = 'nowhere'"),
    "zone": ({"kind": "evacuation", "zone": "lake_3"}, r"'zone' = 'lake_3'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_checked_before_a_request_exists(district_city: City, case: str) -> None:
    raw, pattern = CASES[case]
    spec = parse_scenario({"name": case, **raw})
    with pytest.raises(ScenarioError, match=pattern):
        run_request(spec, district_city)


def test_cli_reports_it_like_a_schema_error_and_records_nothing(
    district_city: City, tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nkind = "evacuation"\nzone = "lake_3"\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["run", str(path), "--city", str(district_city.path),
                                   "--data-dir", str(tmp_path / "data"), "--json"])  # fmt: skip
    assert res.exit_code != 0
    assert isinstance(res.exception, ScenarioError) and "lake_3" in str(res.exception)
    store = RunStore(load_settings(data_dir=tmp_path / "data").db_url)
    assert store.list() == []  # no failed record with empty charts
