"""Calibrating the demand to detector counts: the counts reader's errors, the GEH report,
live mode's counts over a rolling window, demand variants in scenarios, and (real SUMO)
recovering a known, perturbed demand."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from city_models.build import City
from city_models.calibrate import (
    VEHICLES_RATIO_OK,
    CalibrationOptions,
    calibrate_demand,
    fit_report,
    load_demand_variant,
    measured_counts,
    perturb_counts,
    simulate_loop_counts,
)
from city_models.counts import (
    Counts,
    check_counts,
    counts_from_loops,
    lane_edge,
    read_counts,
)
from city_models.demand import sample_trips, write_trips
from scenarios.loader import parse_scenario
from twin.app.compose import session_config
from twin.app.live.ingest import Count
from twin.engine.metrics import geh
from twin.errors import CityError, ScenarioError

ROOT = Path(__file__).resolve().parents[2]


def _street_loops(city: City, kind: str = "stopline") -> tuple[str, list[str]]:
    """A street with two or more loops of ``kind`` and no loop of another kind."""
    groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for d in city.manifest.detectors:
        groups[lane_edge(d.lane)][d.kind].append(d.id)
    for edge, kinds in sorted(groups.items()):
        if list(kinds) == [kind] and len(kinds[kind]) >= 2:
            return edge, sorted(kinds[kind])
    raise AssertionError(f"no street with {kind} loops only")


def _rows(loops: list[str], begin_s: int, end_s: int, counts: list[int]) -> str:
    return "".join(f"{lp},{begin_s},{end_s},{c}\n" for lp, c in zip(loops, counts, strict=True))


def _csv(tmp_path: Path, text: str, name: str = "counts.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the reader


def test_loops_are_summed_per_street_and_kinds_averaged(
    district_city: City, tmp_path: Path
) -> None:
    edge, loops = _street_loops(district_city)
    n = len(loops)
    plain = next(e for e in sorted(district_city.net.edges) if not e.endswith("_pocket"))
    path = _csv(
        tmp_path,
        "site,begin_s,end_s,count\n"
        + _rows(loops, 600, 1500, [40, 25] + [5] * (n - 2))
        + _rows(loops, 1500, 2400, [10, 12] + [0] * (n - 2))
        + f"{plain},600,1500,7\n",
    )
    counts = read_counts(path, district_city)
    assert counts.intervals == ((600.0, 1500.0), (1500.0, 2400.0))
    assert counts.targets[(edge, 600.0, 1500.0)] == 65.0 + 5 * (n - 2)
    assert counts.targets[(edge, 1500.0, 2400.0)] == 22.0
    assert counts.targets[(plain, 600.0, 1500.0)] == 7.0
    assert counts.total_veh == 94.0 + 5 * (n - 2)
    street = counts.sites[plain]
    assert [g.kind for g in street.groups] == ["street"]
    assert len(street.groups[0].loops) == district_city.net.edges[plain].lanes
    # a street counted by its loops and by its id: the two measurements are averaged
    text = "site,begin_s,end_s,count\n" + _rows(loops, 0, 900, [40, 20] + [0] * (n - 2))
    both = _csv(tmp_path, text + f"{edge},0,900,50\n", name="both.csv")
    assert read_counts(both, district_city).targets == {(edge, 0.0, 900.0): 55.0}
    # what the loops measured, aggregated the same way (per 300 s cell from 0 s)
    a, b = loops[:2]
    loop_counts = {(a, 600): 10.0, (a, 900): 11.0, (a, 1200): 9.0, (b, 900): 5.0, (b, 1500): 1.0}
    measured = measured_counts(counts, loop_counts, step_s=300)
    assert measured[(edge, 600.0, 1500.0)] == 35.0 and measured[(plain, 600.0, 1500.0)] == 0.0


def test_parquet_is_read_like_csv(district_city: City, tmp_path: Path) -> None:
    edge, loops = _street_loops(district_city)
    path = tmp_path / "counts.parquet"
    n = len(loops)
    frame = {"site": loops, "begin_s": [0] * n, "end_s": [900] * n, "count": list(range(n))}
    pd.DataFrame(frame).to_parquet(path)
    assert read_counts(path, district_city).targets == {(edge, 0.0, 900.0): n * (n - 1) / 2}
    a = loops[0]
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"site": [a], "begin_s": [0], "end_s": [900], "count": [-2]}).to_parquet(bad)
    with pytest.raises(CityError, match=r"bad\.parquet, row 1: field 'count' is -2"):
        read_counts(bad, district_city)


BAD_FILES = [
    ("site,begin,end_s,count\nX,0,900,1\n", r"column\(s\) begin_s missing .*required: site, "
     "begin_s, end_s, count"),
    ("site,begin_s,end_s,count\n", "has no rows"),
    ("site,begin_s,end_s,count\n{a},0,900,-3\n", r"line 2: field 'count' is -3.*allowed: a "
     "number of vehicles >= 0"),
    ("site,begin_s,end_s,count\n{a},0,900,nan\n", r"line 2: field 'count' is nan"),
    ("site,begin_s,end_s,count\n{a},0,900,many\n", r"line 2: field 'count' is 'many'"),
    ("site,begin_s,end_s,count\n{a},0.5,900,3\n", r"line 2: field 'begin_s' is 0\.5.*whole "
     "number of seconds"),
    ("site,begin_s,end_s,count\n{a},900,900,3\n", r"line 2: field 'end_s' is 900.*end_s > "
     "begin_s"),
    ("site,begin_s,end_s,count\nnowhere_1,0,900,3\n{all}",
     r"line 2: field 'site' is 'nowhere_1', which is neither a loop nor a street"),
    ("site,begin_s,end_s,count\n{all}{a},0,900,4\n",
     r"line \d+: site '.*' in \[0, 900\) is counted again \(first at line 2\)"),
    ("site,begin_s,end_s,count\n{a},600,1500,4\n{all}",
     r"interval \[600, 1500\) at line 2 overlaps \[0, 900\) at line 3"),
    ("site,begin_s,end_s,count\n{a},0,900,3\n", r"street '.*' in \[0, 900\) has its stopline "
     r"loop\(s\) .* but not .*give all of them, or give the street's total"),
    ("site,begin_s,end_s,count\n{a},0,60,900\n", r"line 2: field 'count' is 900 "
     "vehicles in 60 s .* at most 3000 vehicles/h per lane"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_counts_name_file_row_field_value_and_what_is_allowed(
    district_city: City, tmp_path: Path, text: str, message: str
) -> None:
    _edge, loops = _street_loops(district_city)
    every = _rows(loops, 0, 900, [3] * len(loops))
    path = _csv(tmp_path, text.format(a=loops[0], all=every), name="field_counts.csv")
    with pytest.raises(CityError, match=message) as info:
        read_counts(path, district_city)
    assert "field_counts.csv" in str(info.value)


def test_unknown_site_gets_a_suggestion_and_a_bad_format_is_refused(
    district_city: City, tmp_path: Path
) -> None:
    _edge, loops = _street_loops(district_city)
    path = _csv(tmp_path, f"site,begin_s,end_s,count\n{loops[0][:-1]}9,0,900,3\n")
    with pytest.raises(CityError, match="did you mean"):
        read_counts(path, district_city)
    with pytest.raises(CityError, match=r"format '\.xlsx' is not read; allowed: \.csv or"):
        read_counts(_csv(tmp_path, "x", name="counts.xlsx"), district_city)
    with pytest.raises(CityError, match="does not exist"):
        read_counts(tmp_path / "missing.csv", district_city)


# --------------------------------------------------------------------------- GEH report


def test_geh_lives_in_the_engine_and_the_live_import_still_works() -> None:
    from twin.app.live.shadow import geh as shadow_geh

    assert shadow_geh is geh
    assert geh(400.0, 100.0) == pytest.approx(math.sqrt(2 * 300**2 / 500))
    assert geh(0.0, 0.0) == 0.0


def test_fit_report_geh_per_site_and_interval_and_acceptance() -> None:
    counted = {("A", 0.0, 900.0): 100.0, ("B", 0.0, 900.0): 50.0, ("A", 900.0, 1800.0): 80.0}
    simulated = {("A", 0.0, 900.0): 104.0, ("B", 0.0, 900.0): 20.0, ("A", 900.0, 1800.0): 80.0}
    rep = fit_report(counted, simulated, vehicles_generated=120, entry_count_veh=100.0)
    by = {(f.site, f.begin_s): f for f in rep.fits}
    # hourly flows: 400 vs 416 -> GEH 0.79; 200 vs 80 -> GEH 10.1
    assert by[("A", 0.0)].geh == pytest.approx(geh(416.0, 400.0), abs=1e-3)
    assert by[("B", 0.0)].geh == pytest.approx(math.sqrt(2 * 120**2 / 280), abs=1e-3)
    assert rep.geh_lt5_share == pytest.approx(2 / 3)
    assert rep.total_flow_err_pct == pytest.approx(100 * (204 - 230) / 230)
    assert rep.vehicles_ratio == pytest.approx(1.2)
    assert rep.checks == {"geh_lt5_share": False, "total_flow": False, "vehicles_plausible": True}
    assert not rep.accepted
    assert rep.as_dict()["fits"][0]["site"] == "A"


def test_a_good_geh_with_twenty_times_the_vehicles_is_not_accepted() -> None:
    counted = {("A", 0.0, 900.0): 100.0, ("B", 0.0, 900.0): 100.0}
    rep = fit_report(counted, dict(counted), vehicles_generated=2000, entry_count_veh=100.0)
    assert rep.geh_lt5_share == 1.0 and rep.total_flow_err_pct == 0.0
    assert rep.checks["vehicles_plausible"] is False and not rep.accepted
    ok = fit_report(counted, dict(counted), vehicles_generated=100, entry_count_veh=100.0)
    assert ok.accepted and VEHICLES_RATIO_OK[0] <= ok.vehicles_ratio <= VEHICLES_RATIO_OK[1]


def test_options_are_checked() -> None:
    with pytest.raises(CityError, match="'period' is 'rush'; allowed: night, am_peak"):
        CalibrationOptions(period="rush")
    with pytest.raises(CityError, match="'optimize' is 'most'"):
        CalibrationOptions(optimize="most")
    with pytest.raises(CityError, match=r"'minimize_vehicles' is 1\.0"):
        CalibrationOptions(minimize_vehicles=1.0)


# --------------------------------------------------------------------------- live counts


def test_live_counts_over_a_rolling_window(
    district_city: City, caplog: pytest.LogCaptureFixture
) -> None:
    edge, loops = _street_loops(district_city)
    other, (c, d, *_) = _street_loops(district_city, kind="upstream")
    end = 30_000.0  # live clock seconds
    live = [Count(loops[0], end - 900 + 30 * k, 30.0, 2, None) for k in range(1, 31)]
    live += [Count(lp, end - 900 + 30 * k, 30.0, 1, None, late=True)
             for lp in loops[1:] for k in range(1, 31)]  # fmt: skip
    live += [Count(loops[0], end - 1200.0, 30.0, 50, None)]  # before the window: left out
    live += [Count(c, end - 300.0, 30.0, 4, None)]  # d never reported: c's street is dropped
    per_interval = 20.0 + 10.0 * (len(loops) - 1)
    with caplog.at_level(logging.WARNING):
        counts = counts_from_loops(live, district_city, window_end_s=end, window_s=900.0,
                                   interval_s=300.0)  # fmt: skip
    assert counts.intervals == ((0.0, 300.0), (300.0, 600.0), (600.0, 900.0))
    assert counts.targets == {(edge, b0, b0 + 300.0): per_interval for b0 in (0.0, 300.0, 600.0)}
    assert other not in counts.sites and d in caplog.text
    # on the period's time line: the window is [1800, 2700) s after the period start
    shifted = counts_from_loops(live, district_city, window_end_s=end, window_s=900.0,
                                interval_s=900.0, period_start_s=end - 2700.0)  # fmt: skip
    assert shifted.targets == {(edge, 1800.0, 2700.0): 3 * per_interval}
    with pytest.raises(CityError, match="not a multiple of interval_s"):
        counts_from_loops(live, district_city, window_end_s=end, window_s=900.0,
                          interval_s=400.0)  # fmt: skip
    with pytest.raises(CityError, match="no loop count ends in the window"):
        counts_from_loops([], district_city, window_end_s=end, window_s=900.0, interval_s=300.0)


# --------------------------------------------------------------------------- variants


def test_a_scenario_names_a_demand_variant_that_must_exist(
    district_city: City, tmp_path: Path
) -> None:
    spec = parse_scenario(
        {"name": "v", "kind": "baseline", "demand": {"variant": "counts-am_peak"}}, source="t"
    )
    with pytest.raises(ScenarioError, match=r"Demand variant 'counts-am_peak' does not exist"):
        session_config(spec, district_city, seed=1, run_dir=tmp_path)
    with pytest.raises(ScenarioError, match="variant"):
        parse_scenario({"name": "v", "kind": "baseline", "demand": {"variant": "../x"}},
                       source="t")  # fmt: skip
    both = {"variant": "x", "source": "city_routes"}
    with pytest.raises(ScenarioError, match="city_routes"):
        parse_scenario({"name": "v", "kind": "baseline", "demand": both}, source="t")


def test_cli_refuses_a_bad_counts_file_before_sumo(district_city: City, tmp_path: Path) -> None:
    bad = _csv(tmp_path, "site,begin_s,end_s,count\nnowhere,0,900,5\n", name="bad.csv")
    cmd = [sys.executable, "-c", "from twin.app.cli import main; main()", "calibrate",
           "--city", str(district_city.path), "--counts", str(bad)]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "CITYTWIN_DB": "", "COLUMNS": "200"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
                          check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "bad.csv, line 2: field 'site' is 'nowhere'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (district_city.path / "demands" / "counts-am_peak").exists()


# --------------------------------------------------------------------------- real SUMO


@pytest.fixture(scope="module")
def known_counts(
    district_city: City, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[Any], Counts]:
    """A known demand's trips and its loop counts over [600, 1500), perturbed."""
    tmp = tmp_path_factory.mktemp("known")
    truth = sample_trips(district_city.manifest.demand, period="am_peak",
                         duration_s=1500 + 300.0, seed=7)  # fmt: skip
    routes = write_trips(truth, tmp / "truth.rou.xml")
    rows = simulate_loop_counts(district_city, routes, begin_s=600, end_s=1500,
                                interval_s=900, seed=3, work=tmp)  # fmt: skip
    perturbed = perturb_counts(rows, district_city, seed=5)
    return truth, check_counts(perturbed, district_city, source="perturbed truth")


@pytest.mark.sumo
@pytest.mark.slow
def test_calibration_recovers_a_known_perturbed_demand(
    district_city: City, tmp_path: Path, known_counts: tuple[list[Any], Counts]
) -> None:
    begin_s, end_s = 600, 1500
    truth, counts = known_counts
    assert len(counts.sites) > 200 and counts.total_veh > 3000
    variant = calibrate_demand(district_city, counts, name="counts-test",
                               options=CalibrationOptions(seed=2))  # fmt: skip
    rep = variant.report
    assert rep["geh_lt5_share"] >= 0.85, rep["geh_lt5_share"]
    assert abs(rep["total_flow_err_pct"]) <= 5.0, rep["total_flow_err_pct"]
    lo, hi = VEHICLES_RATIO_OK
    assert lo <= rep["vehicles_ratio"] <= hi, rep["vehicles_ratio"]
    assert rep["accepted"] is True
    # the sum of entry counts stands for the known demand's vehicles in the window, and
    # the calibrated demand has neither many times more nor far fewer of them
    in_window = sum(begin_s <= t.depart_s < end_s for t in truth)
    assert 0.75 * in_window <= rep["entry_count_veh"] <= 1.25 * in_window
    # and about as many vehicles as the known demand (routeSampler is given the sum of
    # entry counts as its total; without it, about two thirds)
    assert 0.9 * in_window <= rep["vehicles_generated"] <= 1.1 * in_window
    assert {(f["site"], f["begin_s"]) for f in rep["fits"]} == {
        (s, b) for s, b, _e in counts.targets
    }
    # stored with the city, found by name, reused for the same inputs
    meta = json.loads((variant.path / "calibration.json").read_text(encoding="utf-8"))
    assert meta["period"] == "am_peak" and meta["begin_s"] == 600.0
    assert (variant.path / "mismatch.xml").is_file() and (variant.path / "counts.csv").is_file()
    again = calibrate_demand(district_city, counts, name="counts-test",
                             options=CalibrationOptions(seed=2))  # fmt: skip
    assert again.report == rep
    assert load_demand_variant(district_city, "counts-test").routes_path == variant.routes_path
    demand = {"variant": "counts-test", "scale": 1.1}
    spec = parse_scenario({"name": "v", "kind": "baseline", "demand": demand}, source="t")
    config = session_config(spec, district_city, seed=1, run_dir=tmp_path)
    assert config.routes == (variant.routes_path,) and config.extra_args == ("--scale", "1.1")
    demand = {"variant": "counts-test", "period": "pm_peak"}
    pm = parse_scenario({"name": "v", "kind": "baseline", "demand": demand}, source="t")
    with pytest.raises(ScenarioError, match="calibrated for period 'am_peak'"):
        session_config(pm, district_city, seed=1, run_dir=tmp_path)
