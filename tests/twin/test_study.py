"""A/B and seeds in one command (twin.app.study, `twin run --vary --seeds --set`)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from city_models.build import City
from scenarios.loader import load_scenario
from twin.app.cli import app
from twin.app.study import (
    paired,
    parse_seeds,
    parse_value,
    study_table,
    summarize,
    t975,
    variants_of,
    with_overrides,
)
from twin.config import load_settings
from twin.engine.store import RunStore
from twin.errors import ConfigError, ScenarioError


def test_seeds_values_and_variants_parse() -> None:
    assert parse_seeds("1-4") == [1, 2, 3, 4]
    assert parse_seeds("1,5,7-8") == [1, 5, 7, 8]
    for bad in ("x", "5-2", "1,1", "-3"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
    assert parse_value("600") == 600 and parse_value("1.5") == 1.5
    assert parse_value("true") is True and parse_value("center") == "center"
    assert parse_value('"08:10"') == "08:10"
    vs = variants_of(["mode=none,center", "recovery=smooth,immediate"])
    assert [v.label for v in vs] == [
        "mode=none recovery=smooth", "mode=none recovery=immediate",
        "mode=center recovery=smooth", "mode=center recovery=immediate",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        variants_of(["mode"])


def test_overrides_validate_like_a_scenario_file() -> None:
    spec = load_scenario("ev_priority")
    changed = with_overrides(
        spec, [("sim.duration_s", 900), ("evs.0.dispatch_s", 120), ("mode", "none")], source="t"
    )
    assert changed.sim.duration_s == 900 and changed.mode == "none"  # type: ignore[attr-defined]
    assert changed.evs[0].dispatch_s == 120  # type: ignore[attr-defined]
    assert spec.sim.duration_s == 2400  # the original is untouched
    with pytest.raises(ScenarioError, match=r"field 'mode' = 'sometimes'"):
        with_overrides(spec, [("mode", "sometimes")], source="t")
    with pytest.raises(ConfigError, match=r"evs\.7"):
        with_overrides(spec, [("evs.7.dispatch_s", 1)], source="t")


def test_summary_and_paired_differences_by_hand() -> None:
    s = summarize([10.0, 12.0, 14.0, math.nan])
    assert s.n == 3 and s.mean == 12.0 and s.sd == pytest.approx(2.0)
    assert s.ci95 == pytest.approx(4.303 * 2.0 / math.sqrt(3))
    assert t975(1) == 12.706 and t975(100) == 1.96
    # paired by seed: the common offset cancels, the noise shared by both does not count
    a = {1: 100.0, 2: 130.0, 3: 90.0}
    b = {1: 95.0, 2: 126.0, 3: 84.0, 4: 1.0}  # seed 4 has no partner
    mean, ci = paired(a, b)
    diffs = [-5.0, -4.0, -6.0]
    assert mean == pytest.approx(-5.0)
    assert ci == pytest.approx(4.303 * statistics.stdev(diffs) / math.sqrt(3))
    table = study_table(
        "baseline",
        {"fixed": {1: {"mean_delay_s": 10.0}, 2: {"mean_delay_s": 20.0}},
         "adaptive": {1: {"mean_delay_s": 8.0}, 2: {"mean_delay_s": 17.0}}},
    )  # fmt: skip
    assert table["fixed"]["mean_delay_s"].diff_mean is None
    assert table["adaptive"]["mean_delay_s"].diff_mean == pytest.approx(-2.5)
    assert math.isnan(table["adaptive"]["throughput_veh"].mean)  # not measured: no number


@pytest.mark.sumo
@pytest.mark.slow
def test_study_runs_every_case_with_common_random_numbers(
    district_city: City, tmp_path: Path
) -> None:
    """Two variants that differ in nothing the simulation sees (the description) give
    identical metrics seed by seed: the seeds, and so the random streams, are shared."""
    res = CliRunner().invoke(app, [
        "run", "baseline", "--city", str(district_city.path), "--data-dir", str(tmp_path),
        "--set", "sim.duration_s=120", "--vary", "description=a,b", "--seeds", "1-2",
        "--workers", "2", "--json",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["variants"] == ["description=a", "description=b"] and out["seeds"] == [1, 2]
    delay = out["table"]["description=b"]["mean_delay_s"]
    assert delay["n"] == 2 and delay["diff_mean"] == 0.0 and delay["diff_ci95"] == 0.0
    # every run is a record, with its variant's spec and its seed
    store = RunStore(load_settings(data_dir=tmp_path).db_url)
    ids = [i for by_seed in out["runs"].values() for i in by_seed.values()]
    records = [store.get(i) for i in ids]
    assert sorted(r.seed for r in records) == [1, 1, 2, 2]
    assert {r.spec["description"] for r in records} == {"a", "b"}
    assert all(r.spec["sim"]["duration_s"] == 120 for r in records)
    # the two seeds differ (the dice do change with the seed)
    a1, a2 = (store.get(out["runs"]["description=a"][k]) for k in ("1", "2"))
    assert a1.metrics != a2.metrics
