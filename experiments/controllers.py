"""Benchmark: signal controllers on the district city at three demand levels.

    python -m experiments.controllers --quick --json OUT.json

Controllers: ``fixed`` (the network's plan), ``actuated`` (SUMO's own, with our
minimum greens), ``adaptive`` (numba Webster/HCM estimates through the safety guard),
``max_pressure`` (through the guard), and ``tlsCycleAdaptation`` (SUMO's
``tools/tlsCycleAdaptation.py``, Webster on the routed demand of the same seed, run
offline, with ``--min-cycle``/``--max-cycle`` set like the adaptive controller's;
note that it knows only one minimum green and no pedestrian minimums, so its plans
may be shorter than ours are allowed to be).

Same seed ⇒ same demand for every controller. ``mean_delay_s`` is SUMO's timeLoss over
all inserted vehicles (arrived or not); ``mean_depart_delay_s`` is the wait to enter.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.progress import Progress

from experiments._output import emit_json

# × the district's AM-peak OD. The district has spare capacity at 1× (delay barely
# grows up to 4×), so 2× stands in for a dense, Suwon-like peak hour.
LEVELS = {"offpeak": 0.5, "shoulder": 1.0, "peak": 2.0}
CONTROLLERS = ("fixed", "actuated", "adaptive", "max_pressure", "tlsCycleAdaptation")
KEYS = (
    "mean_delay_s",
    "mean_depart_delay_s",
    "throughput_veh",
    "unfinished_veh",
    "mean_travel_time_s",
    "teleports",
)


def _spec(level: str, controller: str, seed: int, duration_s: float) -> Any:
    from scenarios.loader import parse_scenario

    kind = "fixed" if controller == "tlsCycleAdaptation" else controller
    return parse_scenario(
        {
            "name": f"ctl-{level}-{controller}",
            "kind": "baseline",
            "seed": seed,
            "demand": {"period": "am_peak", "scale": LEVELS[level]},
            "sim": {"duration_s": duration_s},
            "control": {"default": kind},
        }
    )


def _tls_cycle_adaptation(config: Any, net: Path, work: Path, adaptive: Any) -> Path:
    from twin.engine.sumo_tools import run_tool, sumo_tool, tool_env

    routes = work / "routed.rou.xml"
    run_tool(
        "duarouter",
        [
            "-n",
            net,
            "-r",
            config.routes[0],
            "-o",
            routes,
            "--ignore-errors",
            "--no-warnings",
            "--seed",
            str(config.seed),
        ],
        what="routing trips",
    )
    out = work / "tca.add.xml"
    subprocess.run(
        [
            sys.executable,
            str(sumo_tool("tlsCycleAdaptation.py")),
            "-n",
            str(net),
            "-r",
            str(routes),
            "-o",
            str(out),
            "-y",
            "3",
            "-a",
            "2",
            "-g",
            "7",
            "--min-cycle",
            f"{adaptive.c_min_s:g}",
            "--max-cycle",
            f"{adaptive.c_max_s:g}",
            "-b",
            "0",
            "-p",
            "tca",
        ],
        check=True,
        env=tool_env(),
        capture_output=True,
    )
    return out


def below_min_green(tca_file: Path, city: Any) -> tuple[int, int]:
    """(greens shorter than our minimum incl. pedestrian clearance, greens) in a
    tlsCycleAdaptation output, matching phases by their state string."""
    from xml.etree import ElementTree

    mins = {
        (s.id, p.state): p.min_green_s
        for s in city.manifest.signals
        for p in s.phases
        if p.kind == "green"
    }
    below = total = 0
    for logic in ElementTree.parse(tca_file).getroot().iter("tlLogic"):
        for phase in logic.iter("phase"):
            key = (logic.get("id"), phase.get("state"))
            if key in mins:
                total += 1
                below += float(phase.get("duration", 0)) < mins[key] - 1e-9
    return below, total


def run_case(case: tuple[str, str, int, float, str]) -> dict[str, Any]:
    """One (level, controller, seed) run in this (fresh) process."""
    level, controller, seed, duration_s, city_path = case
    from city_models.build import load_city
    from scenarios.registry import get_kind
    from twin.app.compose import session_config, simulate

    city = load_city(Path(city_path))
    spec = _spec(level, controller, seed, duration_s)
    with tempfile.TemporaryDirectory(prefix="ctl-") as tmp:
        work = Path(tmp)
        config = session_config(spec, city, seed=seed, run_dir=work)
        below = (0, 0)
        if controller == "tlsCycleAdaptation":
            extra = _tls_cycle_adaptation(config, city.net_path, work, spec.control.adaptive)
            config = replace(config, additional=(*config.additional, extra))
            below = below_min_green(extra, city)
        result = simulate(
            spec, city, get_kind("baseline").make(spec), seed=seed, run_dir=work, config=config
        )
    out = {k: result.metrics.get(k) for k in KEYS}
    out["greens_below_min"], out["greens"] = below
    return {"level": level, "controller": controller, "seed": seed, **out}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for level in LEVELS:
        result[level] = {}
        for ctl in CONTROLLERS:
            sel = [r for r in rows if r["level"] == level and r["controller"] == ctl]
            if not sel:
                continue
            entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in sel)}
            for key in KEYS:
                entry[key] = round(statistics.fmean(float(r[key]) for r in sel), 3)
            if ctl == "tlsCycleAdaptation":
                greens = sum(r["greens"] for r in sel)
                entry["greens_below_our_min_green_pct"] = round(
                    100 * sum(r["greens_below_min"] for r in sel) / max(greens, 1), 1
                )
            result[level][ctl] = entry
    peak = result.get("peak", {})
    if "fixed" in peak and "adaptive" in peak:
        fixed, adaptive = peak["fixed"]["mean_delay_s"], peak["adaptive"]["mean_delay_s"]
        result["peak_adaptive_vs_fixed_pct"] = round(100 * (adaptive - fixed) / fixed, 2)
        tca = peak.get("tlsCycleAdaptation", {}).get("mean_delay_s")
        if tca is not None:
            result["peak_adaptive_vs_tlsCycleAdaptation_pct"] = round(
                100 * (adaptive - tca) / tca, 2
            )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 30 min each")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from city_models.build import build_city
    from twin.config import load_settings

    n_seeds = args.seeds or (2 if args.quick else 5)
    duration_s = args.duration_s or (1800.0 if args.quick else 3600.0)
    data_dir = load_settings(data_dir=args.data_dir).data_dir
    city = build_city("district", seed=1, cities_dir=data_dir / "cities")
    cases = [
        (lvl, ctl, seed, duration_s, str(city.path))
        for lvl in LEVELS
        for ctl in CONTROLLERS
        for seed in range(1, n_seeds + 1)
    ]
    rows = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, maxtasksperchild=1) as pool, Progress() as bar:
        task = bar.add_task("controllers", total=len(cases))
        for row in pool.imap_unordered(run_case, cases):
            rows.append(row)
            bar.advance(task)
    result = summarise(rows)
    result["runs"] = sorted(rows, key=lambda r: (r["level"], r["controller"], r["seed"]))
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
