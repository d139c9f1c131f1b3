"""RESCO's cologne8 (shipped by sumo-rl, the [benchmarks] extra) imported through the
SUMO-model importer with its programs fitted to the guard, run with max-pressure through
the executor in RESCO's time window: RESCO's delay is finite and positive, and what SUMO
showed passes the independent monitor (tests/mmu.py)."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import replace
from pathlib import Path

import pytest

from experiments import resco
from experiments._run import metrics, run_all
from tests import mmu
from twin.config import Settings

pytestmark = [
    pytest.mark.sumo,
    pytest.mark.skipif(
        importlib.util.find_spec("sumo_rl") is None,
        reason="sumo-rl (the [benchmarks] extra) is not installed: pip install -e '.[benchmarks]'",
    ),
]

DURATION_S = 180.0


def test_cologne8_max_pressure_through_the_executor(settings: Settings, tmp_path: Path) -> None:
    scenario = resco.resco_scenario("cologne8")
    city = resco.import_resco(scenario, settings.cities_dir)
    report = city.path / "import_report.json"
    assert '"signals_fitted"' in report.read_text(encoding="utf-8")
    assert city.manifest.counts["signals"] == 8
    short = replace(scenario, end_s=scenario.begin_s + DURATION_S)
    recorder, record_file = mmu.recorder_for(city, tmp_path / "monitor")
    req = resco.resco_request(short, city, "max_pressure", 1, extra_additional=(recorder,))
    (record,) = run_all(settings, [req], workers=1, label="resco test")
    m = metrics(record)
    assert m["controllers"]["max_pressure"] == 8 and m["guard_late_changes"] == 0
    row = resco.run_row(record)
    assert math.isfinite(row["resco_delay_s"]) and row["resco_delay_s"] > 0
    assert row["vehicles"] > 50 and row["teleports"] == 0
    # RESCO's window: the first trips depart at 25200 s
    assert record.spec["sim"]["begin_s"] == 25200.0
    mmu.check_city_record(record_file, city).assert_clean(min_greens=8, min_yellows=8)
