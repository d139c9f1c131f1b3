"""The variants file of ``twin fork`` and the spec fields forks use: every bad input is
one message naming the file, the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from city_models.build import City
from scenarios.loader import load_scenario
from twin.app.compose import run_request
from twin.app.fork import NULL_FORK, load_variants, place_queue_veh
from twin.app.study import with_overrides
from twin.engine.states import find_state, read_state, saved_times, state_path
from twin.errors import ConfigError, ScenarioError


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "v.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_reads_in_order(tmp_path: Path) -> None:
    got = load_variants(_file(tmp_path, """
places = ["n5_5", "n7_7/n6_7-n7_7"]
metrics = ["mean_travel_time_s"]
[variant.adaptive]
"control.default" = "adaptive"
[variant.guarded.control]
guard_fixed = true
"""))  # fmt: skip
    assert [v.name for v in got.variants] == ["adaptive", "guarded"]
    assert got.variants[0].overrides == (("control.default", "adaptive"),)
    assert got.variants[1].overrides == (("control.guard_fixed", True),)
    assert got.places == ("n5_5", "n7_7/n6_7-n7_7")
    assert got.metrics == ("mean_travel_time_s",)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('variants = 1\n[variant.a]\n"control.default" = "adaptive"\n',
         ["field 'variants' is not a known field", "allowed: variant, places, metrics"]),
        ("places = []\n", ["field 'variant'", "one or more tables"]),
        ('[variant."as-is"]\n"control.default" = "adaptive"\n',
         ["variant name 'as-is'", "not 'as-is'"]),
        ('[variant."a b"]\n"control.default" = "adaptive"\n', ["variant name 'a b'"]),
        ('[variant.a]\n"sim.duration_s" = 60\n',
         ["field 'variant.a.sim.duration_s' = 60", "keeps the parent's 'sim'", "control.*"]),
        ('[variant.a]\n"demand.scale" = 2.0\n', ["variant.a.demand.scale", "'demand'"]),
        ('[variant.a]\nseed = 3\n', ["variant.a.seed", "'seed'"]),
        ('places = "n5_5"\n[variant.a]\n"control.default" = "adaptive"\n',
         ["field 'places' = n5_5", "a list of signal ids"]),
        ("[variant.a\n", ["is not valid TOML"]),
    ],
)  # fmt: skip
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, words: list[str]) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_variants(path)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_too_many_variants_are_refused(tmp_path: Path) -> None:
    body = "".join(f'[variant.v{k}]\n"control.default" = "adaptive"\n' for k in range(17))
    with pytest.raises(ConfigError, match="at most 16"):
        load_variants(_file(tmp_path, body))


def test_the_null_fork_name_is_reserved() -> None:
    assert NULL_FORK == "as-is"


def test_save_times_must_fall_on_control_ticks() -> None:
    base = load_scenario("baseline")
    ok = with_overrides(base, [("sim.save_state_at_s", [300, 1800])], source="t")
    assert ok.sim.save_state_at_s == (300.0, 1800.0)
    with pytest.raises(ScenarioError, match=r"save_state_at_s has 302.*control ticks"):
        with_overrides(base, [("sim.save_state_at_s", [302])], source="t")
    with pytest.raises(ScenarioError, match="up to the end"):
        with_overrides(base, [("sim.save_state_at_s", [7200])], source="t")
    with pytest.raises(ScenarioError, match="twice"):
        with_overrides(base, [("sim.save_state_at_s", [300, 300])], source="t")
    with pytest.raises(ScenarioError, match=r"sim\.mode"):
        with_overrides(base, [("sim.mode", "macro")], source="t")


def test_a_state_without_sidecar_or_of_another_format_is_refused(tmp_path: Path) -> None:
    state = state_path(tmp_path, 300.0)
    with pytest.raises(ScenarioError, match="does not exist"):
        read_state(state, sumo_version="1.28.0")
    state.write_text("<snapshot/>", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"sidecar state_300\.json is missing"):
        read_state(state, sumo_version="1.28.0")
    state.with_suffix(".json").write_text('{"format": 99}', encoding="utf-8")
    with pytest.raises(ScenarioError, match="sidecar format 99; allowed: 2"):
        read_state(state, sumo_version="1.28.0")
    # a state saved before the adaptive controller split shared lanes (format 1): its
    # pickled controllers lack that split, so it is refused, not half-restored
    state.with_suffix(".json").write_text('{"format": 1}', encoding="utf-8")
    with pytest.raises(ScenarioError, match="sidecar format 1; allowed: 2"):
        read_state(state, sumo_version="1.28.0")
    assert saved_times(tmp_path) == [300.0]
    assert find_state(tmp_path, 300.0) == state and find_state(tmp_path, 600.0) is None


def test_queue_at_a_place_is_its_longest_approach() -> None:
    metrics = {"approach_queue_max_veh": {"n5_5/a": 3.0, "n5_5/b": 7.0, "n6_6/c": 1.0}}
    assert place_queue_veh(metrics, "n5_5") == 7.0
    assert place_queue_veh(metrics, "n5_5/a") == 3.0
    assert place_queue_veh(metrics, "n9_9") != place_queue_veh(metrics, "n9_9")  # NaN


def test_adaptive_runs_save_states_on_the_detector_period(district_city: City) -> None:
    base = with_overrides(load_scenario("baseline"), [("control.default", "adaptive")],
                          source="t")  # fmt: skip
    period = district_city.manifest.detector_period_s
    ok = with_overrides(base, [("sim.save_state_at_s", [17 * period])], source="t")
    assert run_request(ok, district_city).spec["sim"]["save_state_at_s"] == [17 * period]
    off = with_overrides(base, [("sim.save_state_at_s", [17 * period + 5])], source="t")
    with pytest.raises(ScenarioError, match=rf"has {17 * period + 5:g}; with adaptive control"):
        run_request(off, district_city)
    fixed = with_overrides(off, [("control.default", "fixed")], source="t")
    assert run_request(fixed, district_city).spec["sim"]["save_state_at_s"] == [17 * period + 5]
