"""Gap-out inside the adaptive plan, in real SUMO (issue 17, item 4).

The same 600 s of the light district, same seed, adaptive with and without
``actuation = "gap_out"`` (with idle protected-left stages skipped): with it greens end
early (the port's telemetry, and SUMO's own record shows more greens in the same time),
no interval is cut on SUMO's record (the independent monitor, ``tests/mmu.py``), and
vehicles lose less time. The gap is read at the run's own advance loops (upstream, where
SUMO's actuated puts its loops): they are in the run's inputs, not in the city's files,
and in light traffic most greens end well before their maximum, none before its minimum.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from city_models.build import City, hash_files
from tests import mmu, spawned

pytestmark = pytest.mark.sumo

DURATION_S = 600.0


GAP_OUT = {"actuation": "gap_out", "skip_empty": True}
# case -> (control.adaptive, demand scale of the suite's light district)
ACTUATION: dict[str, tuple[dict[str, Any], float]] = {
    "none": ({}, 1.2),
    "gap_out": (GAP_OUT, 1.2),
    # as experiments.controllers' adaptive_actuated: the maximum about the max green
    "light": ({**GAP_OUT, "green_headroom": 4.0}, 0.5),
    # coordinated: one cycle, the main streets' greens ending at their yield points
    "coordinated": ({**GAP_OUT, "coordination": "arterial"}, 1.2),
}


def _observe(city_path: str, run_dir: str, case: str) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    adaptive, scale = ACTUATION[case]
    spec = parse_scenario({
        "name": f"gap-{case}", "kind": "baseline", "seed": 4,
        "demand": {"scale": scale}, "sim": {"duration_s": DURATION_S},
        "control": {"default": "adaptive", "adaptive": adaptive},
    })  # fmt: skip
    recorder, record = mmu.recorder_for(city, Path(run_dir))
    result = simulate(spec, city, seed=4, run_dir=Path(run_dir), extra_additional=(recorder,))
    served = result.series["greens_served"]
    return {
        "record": str(record),
        "metrics": result.metrics,
        "greens": len(served),
        "mean_green_s": float(served["green_s"].mean()),
        "served": served[["tls_id", "stage", "green_s", "credited_s"]].to_dict("records"),
        "run_dir": run_dir,
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
    for case in ACTUATION:
        # libsumo: one run per process
        out[case] = spawned.in_process(_observe, str(district_city.path), str(base / case), case)
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


def test_coordination_holds_main_streets_to_one_cycle_through_the_guard(
    district_city: City, runs: dict[str, Any]
) -> None:
    run = runs["coordinated"]
    m = run["metrics"]
    # SUMO's record: no interval cut, no conflicting green
    report = mmu.check_city_record(Path(run["record"]), district_city)
    report.assert_clean(min_greens=500, min_yellows=1000)
    assert m["coordinated_greens"] > 100
    assert 60.0 <= m["coordination_cycle_s"] <= 150.0
    assert m["guard_late_changes"] == 0
    # the guard changed nothing: every hold and every split within the greens' bounds
    assert m["guard_interventions"] == 0, m["guard_interventions_by_kind"]


def test_gap_out_loses_less_time(runs: dict[str, Any]) -> None:
    plain, actuated = runs["none"]["metrics"], runs["gap_out"]["metrics"]
    assert actuated["mean_delay_s"] < 0.95 * plain["mean_delay_s"]
    assert actuated["throughput_veh"] >= plain["throughput_veh"]


def _loops(path: Path) -> dict[str, tuple[str, float]]:
    """Induction loops of a SUMO additional: id -> (lane, pos_m)."""
    root = ElementTree.parse(path).getroot()
    return {str(e.get("id")): (str(e.get("lane")), float(str(e.get("pos"))))
            for e in root.iter("inductionLoop")}  # fmt: skip


def test_gap_out_reads_advance_loops_written_for_the_run_only(
    district_city: City, runs: dict[str, Any]
) -> None:
    stop = {d.lane: d.pos_m for d in district_city.manifest.detectors if d.kind == "stopline"}
    lengths = district_city.net.lane_lengths_m
    for case in ("gap_out", "light"):
        run_dir = Path(runs[case]["run_dir"])
        loops = _loops(run_dir / "programs.add.xml")
        # one per detected lane, upstream of its stop-line loop, on the lane
        assert {lane for lane, _pos in loops.values()} == set(stop)
        assert all(loop == f"e1g_{lane}" for loop, (lane, _pos) in loops.items())
        assert all(0.0 <= pos < stop[lane] for lane, pos in loops.values())
        setbacks = [lengths[lane] - pos for lane, pos in loops.values()]
        assert max(setbacks) < 40.0 and sorted(setbacks)[len(setbacks) // 2] > 20.0
        # SUMO loaded them (libsumo refuses an unknown loop; the run read them)
        args = json.loads((run_dir / "sumo_args.json").read_text(encoding="utf-8"))
        assert any(str(run_dir / "programs.add.xml") in a for a in args)
    # the city's own loops are not touched
    assert not any(loop.startswith("e1g_") for loop in _loops(district_city.detectors_path))
    files = district_city.manifest.files
    assert district_city.manifest.content_hash == hash_files(
        district_city.path, [files.net, files.detectors, files.signal_plans]
    )
    # without gap-out, no advance loop and no programs file at all
    assert not (Path(runs["none"]["run_dir"]) / "programs.add.xml").exists()


def test_in_light_traffic_greens_end_before_their_maximum_never_before_their_minimum(
    district_city: City, runs: dict[str, Any]
) -> None:
    light = runs["light"]
    greens = {s.id: [p for p in s.phases if p.kind == "green"]
              for s in district_city.manifest.signals}  # fmt: skip
    whole = [g for g in light["served"] if g["credited_s"] == 0.0]
    assert len(whole) > 500
    short = [g for g in whole
             if g["green_s"] < greens[g["tls_id"]][g["stage"]].max_green_s - 1.0]  # fmt: skip
    assert len(short) > 0.8 * len(whole)
    assert light["metrics"]["gap_outs"] > 0.5 * len(whole)
    # the guard's minimum (pedestrian clearance included) is never cut
    assert all(g["green_s"] >= greens[g["tls_id"]][g["stage"]].min_green_s - 1e-6
               for g in whole)  # fmt: skip
    m = light["metrics"]
    assert m["guard_interventions_by_kind"]["min_green_extended"] == 0
    assert m["guard_late_changes"] == 0
    mmu.check_city_record(Path(light["record"]), district_city).assert_clean(
        min_greens=500, min_yellows=1000
    )
