"""Tests of scenario loading (scenarios.loader): typed specs and errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.loader import library_scenarios, load_scenario, parse_scenario, resolve
from scenarios.registry import kinds
from scenarios.spec import BaselineSpec
from twin.errors import ScenarioError, TwinError

HEAD = 'name = "probe"\nkind = "baseline"\n'


def _write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg  # every message names the file
    return msg


def test_scenario_error_is_a_value_error() -> None:
    assert issubclass(ScenarioError, ValueError)
    assert issubclass(ScenarioError, TwinError)
    with pytest.raises(ValueError):
        load_scenario("/no/such/scenario.toml")


def test_shipped_baseline_loads() -> None:
    assert "baseline" in library_scenarios()
    spec = load_scenario("baseline")
    assert isinstance(spec, BaselineSpec)
    assert spec.name == "baseline"
    assert spec.kind == "baseline"
    assert spec.city.preset == "district"
    assert spec.demand.period == "am_peak"
    assert spec.sim.duration_s == 3600.0
    assert spec.sim.series_interval_s % spec.sim.control_interval_s == 0
    assert spec.sim.end_s == spec.sim.begin_s + spec.sim.duration_s
    assert resolve("baseline") == library_scenarios()["baseline"]


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    spec = load_scenario(_write(tmp_path, HEAD))
    assert spec.name == "probe"
    assert spec.city.preset == "district"
    assert spec.sim.backend == "libsumo"
    assert spec.control.default == "fixed" and spec.control.by_signal == {}


def test_specs_are_frozen() -> None:
    spec = load_scenario("baseline")
    with pytest.raises(ValueError):
        spec.seed = 1  # type: ignore[misc]


def test_malformed_toml(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, 'name = "probe"\nkind = baseline\n'))
    assert "not valid TOML" in msg
    assert "line 2" in msg


def test_unknown_kind(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, 'name = "probe"\nkind = "tornado"\n'))
    assert "'kind'" in msg
    assert "'tornado'" in msg
    assert "allowed: " + ", ".join(kinds()) in msg
    assert "baseline" in msg


def test_missing_kind(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, 'name = "probe"\n'))
    assert "'kind' is missing" in msg
    assert "baseline" in msg


def test_unknown_field_lists_the_allowed_ones(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, HEAD + "[sim]\nduraton_s = 100\n"))
    assert "'sim.duraton_s'" in msg
    assert "not a known field" in msg
    for field in ("begin_s", "duration_s", "control_interval_s", "series_interval_s"):
        assert field in msg


def test_unknown_top_level_field(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, HEAD + "speed = 3\n"))
    assert "'speed'" in msg
    for field in ("city", "demand", "sim", "seed", "name"):
        assert field in msg


@pytest.mark.parametrize(
    ("body", "field", "value", "allowed"),
    [
        ("[sim]\nduration_s = 10\n", "sim.duration_s", "10", "greater than or equal to 60"),
        ("[sim]\nstep_length_s = 2.0\n", "sim.step_length_s", "2.0", "less than or equal to 1"),
        ("[demand]\nscale = -1\n", "demand.scale", "-1", "greater than 0"),
        ("seed = -5\n", "seed", "-5", "greater than or equal to 0"),
        ("[city]\nseed = -1\n", "city.seed", "-1", "greater than or equal to 0"),
    ],
    ids=["duration", "step", "scale", "seed", "city-seed"],
)
def test_out_of_range_value(
    tmp_path: Path, body: str, field: str, value: str, allowed: str
) -> None:
    msg = _error(_write(tmp_path, HEAD + body))
    assert f"'{field}'" in msg
    assert f"= {value}" in msg
    assert allowed in msg


def test_bad_literal_lists_the_choices(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, HEAD + '[demand]\nperiod = "noon"\n'))
    assert "'demand.period'" in msg
    assert "'noon'" in msg
    for period in ("night", "am_peak", "midday", "pm_peak"):
        assert period in msg


def test_bad_preset_lists_the_presets(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, HEAD + '[city]\npreset = "seoul"\n'))
    assert "'city.preset'" in msg
    assert "'seoul'" in msg
    assert "district" in msg
    assert "suwon-scale" in msg


def test_series_interval_must_be_a_multiple_of_control_interval(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, HEAD + "[sim]\ncontrol_interval_s = 7\nseries_interval_s = 60\n"))
    assert "'sim'" in msg
    assert "series_interval_s (60)" in msg
    assert "multiple of control_interval_s (7)" in msg


def test_series_interval_multiple_is_accepted(tmp_path: Path) -> None:
    body = "[sim]\ncontrol_interval_s = 2.5\nseries_interval_s = 7.5\n"
    spec = load_scenario(_write(tmp_path, HEAD + body))
    assert spec.sim.series_interval_s == 7.5


def test_series_interval_float_multiple_is_accepted(tmp_path: Path) -> None:
    body = "[sim]\ncontrol_interval_s = 3.3\nseries_interval_s = 9.9\n"
    spec = load_scenario(_write(tmp_path, HEAD + body))
    assert spec.sim.series_interval_s == 9.9


def test_wrong_type_for_a_table(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, HEAD + "sim = 5\n"))
    assert "'sim' = 5" in msg


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    body = '[sim]\nduration_s = 1\n[demand]\nperiod = "noon"\n'
    msg = _error(_write(tmp_path, HEAD + body))
    assert "'sim.duration_s'" in msg
    assert "'demand.period'" in msg


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "does not exist" in msg
    assert "baseline" in msg  # lists the shipped scenarios


def test_parse_scenario_names_its_source() -> None:
    with pytest.raises(ScenarioError, match=r"^api: field 'sim.duration_s' = 5"):
        parse_scenario({"name": "x", "kind": "baseline", "sim": {"duration_s": 5}}, source="api")
