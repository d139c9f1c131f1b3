"""Benchmark: what does the twin cost over plain SUMO on the same inputs?

    python -m experiments.overhead --preset district --json OUT.json

One city, one demand file, one detector file. Each repeat runs, interleaved (order
alternating), plain ``sumo`` with exactly the command line the twin gives libsumo
(same outputs: tripinfo, summary, statistics; same loops), and the twin's full
:func:`twin.app.compose.simulate` (libsumo in a fresh process: reads signals every
control interval, detector aggregates every detector period, queues every series
interval, the SimPy bus, the scenario hooks, metric parsing). Reported: medians.

JSON keys: ``plain_s``, ``twin_s``, ``ratio`` (twin_s / plain_s), ``sim_s`` (simulated
seconds), ``real_time_factor`` (sim_s / twin_s), plus the per-repeat figures.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.progress import Progress

from city_models.build import build_city, load_city
from city_models.presets import PRESETS
from experiments._output import emit_json
from scenarios.loader import parse_scenario
from scenarios.registry import get_kind
from twin.app.compose import session_config, simulate
from twin.config import load_settings
from twin.engine.sumo_tools import sumo_binary, tool_env


def _plain(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [str(sumo_binary("sumo")), *args],
        check=True,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def _twin_worker(
    spec_raw: dict[str, Any], city_path: str, seed: int, run_dir: str, config: Any, out: Any
) -> None:
    spec = parse_scenario(spec_raw)
    city = load_city(Path(city_path))
    behaviour = get_kind(spec.kind).make(spec)
    _ = city.manifest  # loading the city is setup, not simulation
    t0 = time.perf_counter()
    result = simulate(spec, city, behaviour, seed=seed, run_dir=Path(run_dir), config=config)
    out.put((time.perf_counter() - t0, result.metrics["throughput_veh"]))


def _twin(spec_raw: dict[str, Any], city_path: str, seed: int, run_dir: Path, config: Any) -> float:
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    args = (spec_raw, city_path, seed, str(run_dir), config, q)
    proc = ctx.Process(target=_twin_worker, args=args)
    proc.start()
    while True:  # never wait forever on a worker that died
        try:
            wall, _throughput = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"twin worker died (exit code {proc.exitcode})") from None
    proc.join()
    return float(wall)


def measure(
    *,
    preset: str,
    repeats: int,
    duration_s: float,
    period: str,
    seed: int,
    data_dir: Path,
    controllers: tuple[str, ...] = ("fixed",),
    peak_trips_per_h: int | None = None,
) -> dict[str, Any]:
    overrides = {"peak_trips_per_h": peak_trips_per_h} if peak_trips_per_h else None
    city = build_city(preset, seed=1, cities_dir=data_dir / "cities", overrides=overrides)
    specs = {
        ctl: parse_scenario(
            {
                "name": f"overhead-{preset}-{ctl}",
                "kind": "baseline",
                "seed": seed,
                "demand": {"period": period},
                "sim": {"duration_s": duration_s},
                "control": {"default": ctl},
            }
        )
        for ctl in controllers
    }
    work = data_dir / "bench" / f"overhead-{preset}"
    work.mkdir(parents=True, exist_ok=True)
    config = session_config(specs[controllers[0]], city, seed=seed, run_dir=work)
    plain_runs: list[float] = []
    twin_runs: dict[str, list[float]] = {ctl: [] for ctl in controllers}
    with Progress() as bar:
        task = bar.add_task(f"overhead {preset}", total=(1 + len(controllers)) * repeats)
        for r in range(repeats):
            order = ["plain", *controllers]
            for which in order if r % 2 == 0 else order[::-1]:
                if which == "plain":
                    plain_runs.append(_plain(config.args()))
                else:
                    raw = specs[which].model_dump(mode="json")
                    twin_runs[which].append(_twin(raw, str(city.path), seed, work, config))
                bar.advance(task)
    plain_s = statistics.median(plain_runs)
    by_controller = {}
    for ctl, runs in twin_runs.items():
        med = statistics.median(runs)
        by_controller[ctl] = {
            "twin_s": round(med, 3),
            "ratio": round(med / plain_s, 4),
            "real_time_factor": round(duration_s / med, 1),
            "twin_runs_s": [round(v, 3) for v in runs],
        }
    first = by_controller[controllers[0]]
    return {
        "preset": preset,
        "peak_trips_per_h": city.manifest.demand.peak_trips_per_h,
        "signals": len(city.manifest.signals),
        "detectors": len(city.manifest.detectors),
        "period": period,
        "repeats": repeats,
        "controller": controllers[0],
        "plain_s": round(plain_s, 3),
        "twin_s": first["twin_s"],
        "ratio": first["ratio"],
        "sim_s": duration_s,
        "real_time_factor": first["real_time_factor"],
        "plain_runs_s": [round(v, 3) for v in plain_runs],
        "by_controller": by_controller,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="district", choices=list(PRESETS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=3600.0)
    parser.add_argument("--period", default="am_peak")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--controllers",
        default="fixed",
        help="comma-separated, e.g. fixed,adaptive (the first fills twin_s)",
    )
    parser.add_argument(
        "--peak-trips-per-h",
        type=int,
        default=None,
        help="the preset's peak demand instead of its own (suwon-scale's overhead figures were "
        "measured at 12000; its calibrated 100000 runs below real time on 2 cores)",
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="Write the result here.")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    data_dir = load_settings(data_dir=args.data_dir).data_dir
    result = measure(
        preset=args.preset,
        repeats=args.repeats,
        duration_s=args.duration_s,
        period=args.period,
        seed=args.seed,
        data_dir=data_dir,
        controllers=tuple(args.controllers.split(",")),
        peak_trips_per_h=args.peak_trips_per_h,
    )
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
