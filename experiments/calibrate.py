"""Benchmark: calibrating the demand to detector counts recovers a known demand.

    python -m experiments.calibrate --json OUT.json [--seeds 1,2,3] [--peak-trips-per-h 3600]

Per seed: a known demand (the district's OD model, AM peak) runs in SUMO; its loops'
counts over ``[begin_s, end_s)`` are perturbed as a field would report them (×1.2 on a
fifth of the streets, 5 % noise per loop); ``twin calibrate``'s code
(:func:`city_models.calibrate.calibrate_demand`) recovers a demand from them and checks
it in SUMO. Figures (means over seeds, each seed beside them): ``geh_lt5_share`` (share
of site-intervals with GEH < 5; accepted at >= 0.85), ``total_flow_err_pct`` (simulated
against counted total; accepted within ±5 %), ``vehicles_ratio`` (generated vehicles /
sum of entry counts; plausible in 0.5-1.5), and the known demand's own vehicles in the
window against both.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from city_models.build import build_city
from city_models.calibrate import (
    GEH_OK,
    SITES_SHARE_OK,
    TOTAL_FLOW_OK_PCT,
    VEHICLES_RATIO_OK,
    CalibrationOptions,
    calibrate_demand,
    perturb_counts,
    simulate_loop_counts,
)
from city_models.counts import check_counts
from city_models.demand import sample_trips, write_trips
from experiments._output import emit_json, finite_mean
from twin.app.study import parse_seeds

log = logging.getLogger(__name__)


def one_seed(
    city: Any, *, seed: int, begin_s: int, end_s: int, interval_s: int, work: Path
) -> dict[str, Any]:
    """Known demand -> perturbed loop counts -> calibrated demand -> its report."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    truth = sample_trips(city.manifest.demand, period="am_peak", duration_s=end_s + 300.0,
                         seed=1000 + seed)  # fmt: skip
    routes = write_trips(truth, work / "truth.rou.xml")
    rows = simulate_loop_counts(city, routes, begin_s=begin_s, end_s=end_s,
                                interval_s=interval_s, seed=seed, work=work)  # fmt: skip
    counts = check_counts(perturb_counts(rows, city, seed=seed), city, source=f"seed {seed}")
    variant = calibrate_demand(city, counts, name=f"bench-s{seed}",
                               options=CalibrationOptions(seed=seed), force=True)  # fmt: skip
    rep = variant.report
    in_window = sum(begin_s <= t.depart_s < end_s for t in truth)
    return {
        "seed": seed,
        "accepted": rep["accepted"],
        "geh_lt5_share": rep["geh_lt5_share"],
        "total_flow_err_pct": rep["total_flow_err_pct"],
        "vehicles_ratio": rep["vehicles_ratio"],
        "vehicles_generated": rep["vehicles_generated"],
        "entry_count_veh": rep["entry_count_veh"],
        "known_vehicles_in_window": in_window,
        "generated_vs_known": round(rep["vehicles_generated"] / in_window, 3),
        "sites": rep["sites"],
        "site_intervals": rep["site_intervals"],
        "counted_total_veh": rep["counted_total_veh"],
        "distinct_routes": rep["distinct_routes"],
        "calibrate_s": rep["runtime_s"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def calibrate_benchmark(
    *, seeds: list[int], peak_trips_per_h: int, begin_s: int, end_s: int, interval_s: int,
    data_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    city = build_city("district", seed=1, cities_dir=data_dir / "cities",
                      overrides={"peak_trips_per_h": peak_trips_per_h})  # fmt: skip
    per_seed = []
    for seed in seeds:
        log.info("seed %d", seed)
        per_seed.append(one_seed(city, seed=seed, begin_s=begin_s, end_s=end_s,
                                 interval_s=interval_s, work=data_dir / f"seed{seed}"))  # fmt: skip
    keys = ("geh_lt5_share", "total_flow_err_pct", "vehicles_ratio", "generated_vs_known")
    out: dict[str, Any] = {k: finite_mean([r[k] for r in per_seed], digits=4) for k in keys}
    out["all_accepted"] = all(r["accepted"] for r in per_seed)
    out["acceptance"] = {
        "geh_lt5_share_min": SITES_SHARE_OK, "geh_ok": GEH_OK,
        "total_flow_err_pct_max": TOTAL_FLOW_OK_PCT, "vehicles_ratio": list(VEHICLES_RATIO_OK),
    }  # fmt: skip
    out.update(city=city.name, peak_trips_per_h=peak_trips_per_h, window_s=[begin_s, end_s],
               interval_s=interval_s, seeds=seeds, per_seed=per_seed)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="Write the figures here.")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--peak-trips-per-h", type=int, default=3600,
                    help="The district's AM peak (3600: the suite's light district).")  # fmt: skip
    ap.add_argument("--begin-s", type=int, default=600)
    ap.add_argument("--end-s", type=int, default=1500)
    ap.add_argument("--interval-s", type=int, default=900)
    ap.add_argument("--data-dir", type=Path, default=None, help="Default: temporary.")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        result = calibrate_benchmark(
            seeds=parse_seeds(args.seeds), peak_trips_per_h=args.peak_trips_per_h,
            begin_s=args.begin_s, end_s=args.end_s, interval_s=args.interval_s,
            data_dir=args.data_dir or Path(tmp),
        )  # fmt: skip
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
