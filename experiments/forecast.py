"""Benchmark: a 15-minute forecast at suwon-scale, micro and meso, from a fork.

    python -m experiments.forecast --json OUT.json [--preset suwon-scale] [--at-s 900]
        [--ahead-s 900] [--data-dir DIR]

One parent run (baseline, AM peak, fixed-time plans) saves its state at ``at_s`` and at
``at_s + ahead_s``. From the first state two forks run one after the other, each a
recorded run in its own worker process (:mod:`twin.app.fork`): the null fork in SUMO's
microscopic model and the same fork in its mesoscopic model (``sim.mode = "meso"``).

JSON keys: ``micro_s`` and ``meso_s`` (wall seconds of each fork's worker: loading the
city and the state, simulating ``ahead_s``, computing the metrics), ``micro_rtf`` and
``meso_rtf`` (``ahead_s`` / wall; goal for meso >= 30), ``meso_vs_micro_travel_time_err_pct``
(trip-weighted mean error of the mean travel time per OD pair of zones, trips departing
in the window; goal <= 10), ``meso_vs_micro_total_delay_err_pct`` (goal <= 15),
``null_fork_identical`` (the micro null fork reproduces the parent over the window:
every summary step, every signal switch, and the whole state at its end; must be true),
with the details under ``null_fork`` and ``meso_validation``, the parent's wall time,
the machine's load average, and the goals.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from city_models.build import build_city
from city_models.presets import PRESETS
from experiments._output import emit_json
from scenarios.loader import load_scenario
from twin.app.compose import run_request
from twin.app.fork import VariantsFile, meso_validation, null_fork_check, plan_forks
from twin.app.study import with_overrides
from twin.app.sweep import run_cells
from twin.config import Settings, load_settings
from twin.engine.store import RunRecord

log = logging.getLogger(__name__)
GOALS = {"meso_rtf_min": 30.0, "travel_time_err_pct_max": 10.0, "total_delay_err_pct_max": 15.0}


def _wall_s(record: RunRecord) -> float:
    if record.started_at is None or record.finished_at is None:
        return float("nan")
    return (record.finished_at - record.started_at).total_seconds()


def _one(settings: Settings, request: Any) -> RunRecord:
    (record,) = run_cells(settings, [request], workers=1, resume=False).records
    if record.status != "done":
        raise RuntimeError(f"run {record.id} failed: {record.error}")
    return record


def forecast(
    *,
    preset: str,
    at_s: float,
    ahead_s: float,
    seed: int,
    data_dir: Path,
    peak_trips_per_h: int | None = None,
) -> dict[str, Any]:
    settings = load_settings(data_dir=data_dir)
    load0 = os.getloadavg()[0]
    overrides = {"peak_trips_per_h": peak_trips_per_h} if peak_trips_per_h else None
    city = build_city(preset, seed=1, cities_dir=settings.cities_dir, overrides=overrides)
    spec = with_overrides(
        load_scenario("baseline"),
        [("city.preset", preset), ("demand.period", "am_peak"), ("sim.begin_s", 0.0),
         ("sim.duration_s", at_s + ahead_s), ("sim.save_state_at_s", [at_s, at_s + ahead_s]),
         ("outputs.signal_states", True)],
        source="experiments.forecast",
    )  # fmt: skip
    log.info("parent: %s, %g s, states at %g and %g s", city.name, at_s + ahead_s, at_s,
             at_s + ahead_s)  # fmt: skip
    parent = _one(settings, run_request(spec, city, seed=seed))
    out: dict[str, Any] = {
        "preset": preset, "city": city.name, "signals": len(city.manifest.signals),
        "peak_trips_per_h": city.manifest.demand.peak_trips_per_h,
        "at_s": at_s, "ahead_s": ahead_s, "seed": seed, "parent_run": parent.id,
        "parent_s": round(_wall_s(parent), 2),
        "parent_rtf": round((at_s + ahead_s) / _wall_s(parent), 2),
    }  # fmt: skip
    forks: dict[str, RunRecord] = {}
    for mode in ("micro", "meso"):
        plan = plan_forks(parent, VariantsFile(None, ()), at_s=at_s, ahead_s=ahead_s,
                          mode=mode, save_end_state=mode == "micro")  # fmt: skip
        log.info("%s fork", mode)
        forks[mode] = _one(settings, plan.requests[0])
    micro, meso = forks["micro"], forks["meso"]
    assert parent.run_dir is not None and micro.run_dir is not None and meso.run_dir is not None
    check = null_fork_check(parent.run_dir, micro.run_dir, t0_s=at_s, t1_s=at_s + ahead_s)
    state = parent.run_dir / "states" / f"state_{at_s:g}.xml"
    valid = meso_validation(micro.run_dir, meso.run_dir, state=state)
    micro_s, meso_s = _wall_s(micro), _wall_s(meso)
    out.update({
        "micro_s": round(micro_s, 2),
        "meso_s": round(meso_s, 2),
        "micro_rtf": round(ahead_s / micro_s, 2),
        "meso_rtf": round(ahead_s / meso_s, 2),
        "meso_vs_micro_travel_time_err_pct": valid["travel_time_err_pct"],
        "meso_vs_micro_total_delay_err_pct": valid["total_delay_err_pct"],
        "od_within_10pct_share": valid["od_within_10pct_share"],
        "null_fork_identical": bool(check["identical"]),
        "null_fork": check,
        "meso_validation": valid,
        "fork_runs": {"micro": micro.id, "meso": meso.id},
        "goals": GOALS,
        "goals_met": {
            "meso_rtf": ahead_s / meso_s >= GOALS["meso_rtf_min"],
            "travel_time": valid["travel_time_err_pct"] <= GOALS["travel_time_err_pct_max"],
            "total_delay": valid["total_delay_err_pct"] <= GOALS["total_delay_err_pct_max"],
            "null_fork": bool(check["identical"]),
        },
        "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "cores": os.cpu_count(),
    })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="Write the figures here.")
    ap.add_argument("--preset", default="suwon-scale", choices=list(PRESETS))
    ap.add_argument("--at-s", type=float, default=900.0, help="Fork time (AM peak, s).")
    ap.add_argument("--ahead-s", type=float, default=900.0, help="Forecast horizon (s).")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--peak-trips-per-h", type=int, default=None,
        help="the preset's peak demand instead of its own (docs/measured/forecast.json was "
        "measured at suwon-scale's old 12000)",
    )  # fmt: skip
    ap.add_argument(
        "--data-dir", type=Path, default=None, help="Cities and run records (default: temporary)."
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="forecast-") as tmp:
        t0 = time.perf_counter()
        result = forecast(preset=args.preset, at_s=args.at_s, ahead_s=args.ahead_s,
                          seed=args.seed, data_dir=args.data_dir or Path(tmp),
                          peak_trips_per_h=args.peak_trips_per_h)  # fmt: skip
        result["benchmark_s"] = round(time.perf_counter() - t0, 1)
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
