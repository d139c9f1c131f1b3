"""Benchmark: does each default city's peak look like a Korean city centre at peak?

    python -m experiments.calibration --json OUT.json [--presets district] [--seeds 1,2]

Per preset and peak period, the figures of ``twin city check-peak``
(:mod:`twin.app.peak`) — ``arterial_speed_kph``, ``network_speed_kph``, ``vc_p90``,
``stops_per_km``, ``intersection_delay_s`` — the medians over seeds, with the targets
beside them and whether each is met. Background traffic only, fixed-time plans: no
emergency vehicle enters these runs, so nothing is tuned on the EV's figures.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from city_models.build import build_city
from city_models.demand import demand_load, lane_km, mean_trip_length_m
from city_models.features import strongly_connected_edges
from experiments._output import emit_json
from twin.app.peak import DEFAULT_DURATION_S, DEFAULT_WARMUP_S, PEAK_TARGETS, check_peak
from twin.app.study import parse_seeds
from twin.config import load_settings

log = logging.getLogger(__name__)
PERIODS = ("am_peak", "pm_peak")


def calibration(
    *,
    presets: list[str],
    seeds: list[int],
    duration_s: float,
    warmup_s: float,
    data_dir: Path,
    workers: int | None,
) -> dict[str, Any]:
    settings = load_settings(data_dir=data_dir)
    out: dict[str, Any] = {"targets": {k: list(v) for k, v in PEAK_TARGETS.items()}}
    for name in presets:
        city = build_city(name, seed=1, cities_dir=settings.cities_dir)
        core = strongly_connected_edges(city.net)
        trip_m = mean_trip_length_m(city.manifest.demand, city.net)
        block: dict[str, Any] = {
            "peak_trips_per_h": city.manifest.demand.peak_trips_per_h,
            # what those trips put on the streets (the import default's measure)
            "load_vkm_per_lane_km": round(
                demand_load(
                    city.manifest.demand, city.net, lane_km=lane_km(city.net, core), length_m=trip_m
                ),
                1,
            ),
            "mean_trip_length_m": round(trip_m),
            "city": city.name,
        }
        for period in PERIODS:
            log.info("check-peak %s %s (seeds %s)", name, period, seeds)
            result = check_peak(
                settings, city, period=period, seeds=seeds, work_dir=data_dir / "check-peak",
                duration_s=duration_s, warmup_s=warmup_s, workers=workers,
            )  # fmt: skip
            block[period] = result
        out[name] = block
    out["all_met"] = all(out[p][period]["all_met"] for p in presets for period in PERIODS)
    out["seeds"] = seeds
    out["duration_s"] = duration_s
    out["warmup_s"] = warmup_s
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="Write the figures here.")
    ap.add_argument("--presets", default="district,suwon-scale")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S)
    ap.add_argument("--warmup-s", type=float, default=DEFAULT_WARMUP_S)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument(
        "--data-dir", type=Path, default=None, help="Cities and run records (default: temporary)."
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        result = calibration(
            presets=presets, seeds=parse_seeds(args.seeds), duration_s=args.duration_s,
            warmup_s=args.warmup_s, data_dir=data_dir, workers=args.workers,
        )  # fmt: skip
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
