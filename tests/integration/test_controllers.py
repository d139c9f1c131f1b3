"""Controllers in real SUMO: what SUMO actually shows obeys the safety rules.

Each run has SUMO record every signal's state every step (``SaveTLSStates``, through
``extra_additional``), and the independent monitor (``tests/mmu.py``, not the guard)
checks that record against the net: no two conflicting links both priority-green, every
green held at least its minimum (pedestrian minimum included) from the very first green
of each signal, every yellow at least 3 s and ending in red, every clearance at least
the city's all-red promise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from tests import mmu, spawned

pytestmark = pytest.mark.sumo

DURATION_S = 600.0


def _observe(city_path: str, run_dir: str, controller: str) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.baseline import Baseline
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    spec = parse_scenario({
        "name": f"obs-{controller}", "kind": "baseline", "seed": 4,
        "demand": {"scale": 1.2}, "sim": {"duration_s": DURATION_S},
        "control": {"default": controller, "adaptive": {"update_s": 30}},
    })  # fmt: skip
    recorder, record = mmu.recorder_for(city, Path(run_dir))
    result = simulate(spec, city, Baseline(spec), seed=4, run_dir=Path(run_dir),
                      extra_additional=(recorder,))  # fmt: skip
    return {"record": str(record), "metrics": result.metrics,
            "series": {k: len(v) for k, v in result.series.items()}}  # fmt: skip


def _run(city: City, tmp_path: Path, controller: str) -> dict[str, Any]:
    out: dict[str, Any] = spawned.in_process(
        _observe, str(city.path), str(tmp_path / controller), controller
    )
    return out


def monitored(city: City, record: str | Path) -> mmu.Report:
    """The independent monitor's report on SUMO's record of a run on ``city``."""
    return mmu.check_city_record(Path(record), city)


@pytest.mark.parametrize("controller", ["adaptive", "max_pressure", "actuated", "delay_based"])
def test_what_sumo_shows_is_safe(district_city: City, tmp_path: Path, controller: str) -> None:
    out = _run(district_city, tmp_path, controller)
    assert out["metrics"]["throughput_veh"] > 0
    assert out["metrics"]["controllers"][controller] == len(district_city.manifest.signals)
    report = monitored(district_city, out["record"])
    n_signals = len(district_city.manifest.signals)
    assert report.counts.signals == n_signals
    assert report.counts.signal_steps == n_signals * DURATION_S
    report.assert_clean(min_greens=100, min_yellows=100)  # it saw real signal changes
    if controller not in ("actuated", "delay_based"):
        assert out["metrics"]["guard_late_changes"] == 0
    if controller == "adaptive":
        assert out["series"]["signal_timings"] > 0
    if controller in ("adaptive", "max_pressure"):
        assert out["series"]["greens_served"] > 0


def test_unknown_signal_in_by_signal_is_a_clear_error(district_city: City, tmp_path: Path) -> None:
    from scenarios.baseline import Baseline
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate
    from twin.errors import ScenarioError

    spec = parse_scenario({"name": "x", "kind": "baseline",
                           "control": {"by_signal": {"no_such_signal": "adaptive"}}})  # fmt: skip
    with pytest.raises(ScenarioError, match=r"control\.by_signal.*no_such_signal"):
        simulate(spec, district_city, Baseline(spec), seed=1, run_dir=tmp_path)
