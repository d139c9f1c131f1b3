"""Gap-out inside the adaptive plan, in real SUMO (issue 17, item 4).

The same 600 s of the light district, same seed, adaptive with and without
``actuation = "gap_out"`` (with idle protected-left stages skipped): with it greens end
early (the port's telemetry, and SUMO's own record shows more greens in the same time),
no interval is cut on SUMO's record (the independent monitor, ``tests/mmu.py``), and
vehicles lose less time.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from tests import mmu

pytestmark = pytest.mark.sumo

DURATION_S = 600.0


ACTUATION: dict[str, dict[str, Any]] = {
    "none": {},
    "gap_out": {"actuation": "gap_out", "skip_empty": True},
}


def _observe(city_path: str, run_dir: str, actuation: str) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    spec = parse_scenario({
        "name": f"gap-{actuation}", "kind": "baseline", "seed": 4,
        "demand": {"scale": 1.2}, "sim": {"duration_s": DURATION_S},
        "control": {"default": "adaptive", "adaptive": ACTUATION[actuation]},
    })  # fmt: skip
    recorder, record = mmu.recorder_for(city, Path(run_dir))
    result = simulate(spec, city, seed=4, run_dir=Path(run_dir), extra_additional=(recorder,))
    served = result.series["greens_served"]
    return {
        "record": str(record),
        "metrics": result.metrics,
        "greens": len(served),
        "mean_green_s": float(served["green_s"].mean()),
    }


def mean_green_on_record_s(record: Path) -> float:
    """Mean length of a green stage as SUMO showed it (a run of steps showing one state
    with a green and no yellow light; the last one of each signal is still running)."""
    lengths = []
    for steps in mmu.read_tls_states(record).values():
        start = 0
        for k in range(1, len(steps) + 1):
            if k == len(steps) or steps[k][1] != steps[start][1]:
                state = steps[start][1]
                if k < len(steps) and "y" not in state and set(state) & {"G", "g"}:
                    lengths.append(steps[k][0] - steps[start][0])
                start = k
    return sum(lengths) / len(lengths)


@pytest.fixture(scope="module")
def runs(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = {}
    base = tmp_path_factory.mktemp("gap_out")
    for actuation in ACTUATION:
        with mp.get_context("spawn").Pool(1) as pool:  # libsumo: one run per process
            out[actuation] = pool.apply(
                _observe, (str(district_city.path), str(base / actuation), actuation)
            )
    return out


def test_gap_out_ends_greens_early_and_cuts_no_interval(
    district_city: City, runs: dict[str, Any]
) -> None:
    plain, actuated = runs["none"], runs["gap_out"]
    m = actuated["metrics"]
    assert m["gap_outs"] > 100  # of ~1,200 greens
    assert m["stages_skipped"] > 10
    assert "gap_outs" not in plain["metrics"]
    assert actuated["mean_green_s"] < plain["mean_green_s"] - 1.5
    assert m["guard_late_changes"] == 0
    # every force-off came after the minimum: the guard never had to keep one
    assert m["guard_interventions_by_kind"]["min_green_extended"] == 0
    reports = {k: mmu.check_city_record(Path(r["record"]), district_city) for k, r in runs.items()}
    n_signals = len(district_city.manifest.signals)
    for report in reports.values():
        assert report.counts.signal_steps == n_signals * DURATION_S
        report.assert_clean(min_greens=500, min_yellows=1000)
    # SUMO's own record: shorter greens, so more of them in the same 600 s
    on_record = {k: mean_green_on_record_s(Path(r["record"])) for k, r in runs.items()}
    assert on_record["gap_out"] < on_record["none"] - 1.0
    assert reports["gap_out"].counts.greens > reports["none"].counts.greens


def test_gap_out_loses_less_time(runs: dict[str, Any]) -> None:
    plain, actuated = runs["none"]["metrics"], runs["gap_out"]["metrics"]
    assert actuated["mean_delay_s"] < 0.95 * plain["mean_delay_s"]
    assert actuated["throughput_veh"] >= plain["throughput_veh"]
