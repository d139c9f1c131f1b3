"""Benchmark: how a sweep scales from one core to the local pool and to Dask.

    python -m experiments.sweep_scaling --json OUT.json

16 runs of the baseline scenario on the district city, 600 s simulated each (seeds
1..16), through the sweep runner (:func:`twin.app.sweep.run_cells`, every run a record,
nothing resumed) three ways: one at a time (``serial_s``), the local process pool with
2 workers (``pool_s``), and a Dask LocalCluster of 2 workers x 1 thread with the
resource ``sumo=1`` (``dask_local_s``, the cluster's start and close included). The
efficiency is the speed-up over serial divided by the workers (goal: >= 0.85 on 2
cores). One run first, untimed, warms the caches (city, numba). Per mode the CPU time
that other processes took meanwhile is written too (``other_cpu_s``: the machine's busy
time from /proc/stat less this process's and its children's): on a machine shared with
other work the figures are lower bounds, and the note says so.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from city_models.build import build_city
from city_models.presets import PRESETS
from experiments._output import emit_json
from scenarios.loader import parse_scenario
from twin.app.compose import run_request
from twin.app.sweep import progress_bar, run_cells
from twin.config import Settings, load_settings
from twin.engine.executors import RunRequest
from twin.errors import RunError

OWNER = "experiments.sweep_scaling"
SHARED_SHARE = 0.05
"""Other processes' CPU time above this share of a mode's core-seconds: the machine was
shared, the figures are lower bounds."""


def _busy_s() -> float:
    """The machine's busy CPU time so far (all cores; /proc/stat), NaN where unknown."""
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
    except OSError:
        return math.nan
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _requests(settings: Settings, runs: int, duration_s: float) -> list[RunRequest]:
    city = build_city("district", seed=1, cities_dir=settings.cities_dir)
    spec = parse_scenario({
        "name": "sweep-scaling", "kind": "baseline", "seed": 1,
        "demand": {"period": "am_peak"},
        "sim": {"duration_s": duration_s, "control_interval_s": 5, "series_interval_s": 60},
    }, source="sweep_scaling")  # fmt: skip
    return [run_request(spec, city, seed=k, owner=OWNER) for k in range(1, runs + 1)]


def _timed(settings: Settings, requests: list[RunRequest], label: str, *, workers: int,
           scheduler: str | None) -> dict[str, Any]:  # fmt: skip
    load_before = os.getloadavg()[0]
    busy0, own0 = _busy_s(), _own_cpu_s()
    t0 = time.perf_counter()
    with progress_bar(label, len(requests)) as on_progress:
        ran = run_cells(settings, requests, workers=workers, scheduler=scheduler,
                        resume=False, progress=on_progress)  # fmt: skip
    wall_s = time.perf_counter() - t0
    other = max((_busy_s() - busy0) - (_own_cpu_s() - own0), 0.0)
    if ran.failed:
        raise RunError(f"{label}: {len(ran.failed)} run(s) failed: {ran.failed[0].error}")
    return {"wall_s": round(wall_s, 2), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2), "other_cpu_s": round(other, 1),
            "other_cpu_share": round(other / (wall_s * (os.cpu_count() or 1)), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = load_settings(data_dir=args.data_dir)
    requests = _requests(settings, args.runs, args.duration_s)
    _timed(settings, requests[:1], "warm-up", workers=1, scheduler=None)
    serial = _timed(settings, requests, "serial", workers=1, scheduler=None)
    pool = _timed(settings, requests, f"pool x{args.workers}", workers=args.workers,
                  scheduler=None)  # fmt: skip
    dask = _timed(settings, requests, f"dask local x{args.workers}", workers=args.workers,
                  scheduler="local")  # fmt: skip
    result = {
        "preset": "district", "peak_trips_per_h": PRESETS["district"].peak_trips_per_h,
        "runs": args.runs, "sim_s_per_run": args.duration_s,
        "workers": args.workers, "cores": os.cpu_count(),
        "serial_s": serial["wall_s"], "pool_s": pool["wall_s"], "dask_local_s": dask["wall_s"],
        "efficiency_pool": round(serial["wall_s"] / pool["wall_s"] / args.workers, 3),
        "efficiency_dask": round(serial["wall_s"] / dask["wall_s"] / args.workers, 3),
        "modes": {"serial": serial, "pool": pool, "dask_local": dask},
    }  # fmt: skip
    shared = max(m["other_cpu_share"] for m in (serial, pool, dask))
    if shared > SHARED_SHARE:
        result["note"] = (
            f"Other work shared the cores: other processes took up to {shared:.0%} of a "
            "mode's core-seconds, so the parallel modes had less than their cores; these "
            "figures are lower bounds of the runner's scaling. Measure on an idle machine."
        )
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
