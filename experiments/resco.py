"""Benchmark: RESCO's cologne8 and ingolstadt7 (real German corridors) under our controllers.

    python -m experiments.resco --json OUT.json [--quick]

RESCO (Ault & Sharon, NeurIPS 2021 datasets and benchmarks) is the usual yardstick of
learned signal control. Its scenarios ship as package data of ``sumo-rl`` (the
``[benchmarks]`` extra: ``pip install -e '.[benchmarks]'``); they are found with
:func:`importlib.util.find_spec`, never copied into this repository.

Each scenario is imported through the SUMO-model importer
(:func:`city_models.importing.import_city`, cached under the data directory's
``cities/``) with ``fit_signals``: the model's own programs stay the fixed plan, with
the least the safety guard needs added (an all-red of 1 s after each yellow, a
permissive ``g`` for the link that gives way where two conflicting links were both
``G``, a green lengthened to the pedestrian clearance it carries), and its own trips
stay the demand (``demand.source = "auto"``). Then ``fixed`` (that plan, run by SUMO),
``actuated`` (SUMO's, between the plan's minimum and maximum greens), ``max_pressure``,
``adaptive`` and ``adaptive_actuated`` (gap-out on advance loops, as
:mod:`experiments.controllers` tunes it; these three through the guard: minimum greens
with pedestrian clearance, yellow and all-red never cut) run RESCO's hour -- the
``begin``/``end`` of its ``.sumocfg`` (cologne8 25200-28800 s, ingolstadt7 57600-61200
s) with its route file -- each a recorded run of the executor.

The metric is RESCO's: per vehicle, tripinfo ``timeLoss + departDelay``, averaged over
vehicles (:func:`resco_delay`). Our tripinfo is written with unfinished trips, and
vehicles still driving at the end count with the delay they had so far (as our own
``mean_delay_s`` does); vehicles never inserted are not in the tripinfo and are
reported apart (``not_inserted``). The mean over arrived vehicles only is reported too.

The shipped programs, unfitted, are also run in plain ``sumo`` (same window, options and
seeds; :func:`plain_sumo_fixed`): ``shipped_fixed_plain_sumo`` says what the fit costs
the fixed plan (``fit_cost_pct``) and how far plain SUMO 1.28 already is from RESCO's
published fixed-time figure.

JSON: ``{"cologne8": {"fixed": s, "max_pressure": s, "adaptive": s, "actuated": s,
"adaptive_actuated": s}, "ingolstadt7": {...}}`` (means over seeds), plus ``published``
(RESCO's figures, approximate), ``gap_vs_published_pct``, ``shipped_fixed_plain_sumo``,
``details`` (per scenario and controller: both means, time loss and depart delay apart,
arrivals, unfinished, not inserted, teleports, seeds, run ids), ``window``,
``signals_fitted`` and ``wall_s``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from city_models.build import City
from city_models.importing import import_city
from city_models.pipeline import read_report
from experiments._output import emit_json
from experiments._run import metrics, request, run_all
from experiments.controllers import VARIANTS
from twin.config import Settings, load_settings
from twin.engine.executors import RunRequest
from twin.engine.metrics import statistics_metrics, sumo_value
from twin.engine.store import RunRecord
from twin.engine.sumo_session import SessionConfig
from twin.engine.sumo_tools import iter_xml_elements, run_tool
from twin.errors import ConfigError, TwinError

log = logging.getLogger(__name__)

PACKAGE = "sumo_rl"
PINNED = "sumo-rl==1.4.5"
INSTALL_HINT = "pip install -e '.[benchmarks]'"
SCENARIOS = ("cologne8", "ingolstadt7")
# SUMO's own actuation (with the plan's minimum greens) and our adaptive controller with
# gap-out on advance loops (experiments.controllers' tuned variant) run too since issue 17
CONTROLLERS = ("fixed", "max_pressure", "adaptive", "actuated", "adaptive_actuated")
OWNER = "experiments.resco"
# RESCO's published average delay (s), read off its figure: approximate
PUBLISHED: dict[str, dict[str, float]] = {
    "cologne8": {"fixed": 64.0, "max_pressure": 22.0},
    "ingolstadt7": {"fixed": 91.0, "max_pressure": 80.0, "best_rl": 31.0},
}


@dataclass(frozen=True)
class RescoScenario:
    """One RESCO scenario as sumo-rl ships it."""

    name: str
    sumocfg: Path
    net: Path
    routes: tuple[Path, ...]
    begin_s: float
    end_s: float


def resco_root() -> Path:
    """The folder of RESCO's scenarios inside the installed sumo-rl (``nets/RESCO``),
    found without importing sumo-rl (which would load gymnasium and traci).

    Raises
    ------
    ConfigError
        sumo-rl is not installed, or it has no RESCO scenarios.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"The RESCO benchmark needs RESCO's scenarios, which {PINNED} ships: install "
            f"the benchmarks extra ({INSTALL_HINT})."
        )
    for location in spec.submodule_search_locations:
        root = Path(location) / "nets" / "RESCO"
        if root.is_dir():
            return root
    raise ConfigError(
        f"The installed {PACKAGE} ({', '.join(spec.submodule_search_locations)}) has no "
        f"nets/RESCO folder; install the pinned {PINNED} ({INSTALL_HINT})."
    )


def resco_scenario(name: str, root: Path | None = None) -> RescoScenario:
    """A RESCO scenario's files and time window, from its ``.sumocfg``.

    Raises
    ------
    ConfigError
        Unknown scenario, or its configuration lacks the net, routes or time window.
    """
    root = root if root is not None else resco_root()
    cfg = root / name / f"{name}.sumocfg"
    if not cfg.is_file():
        known = sorted(p.name for p in root.iterdir() if (p / f"{p.name}.sumocfg").is_file())
        raise ConfigError(f"RESCO has no scenario {name!r} in {root}; known: {', '.join(known)}.")
    values: dict[str, str] = {}
    for elem in ElementTree.parse(cfg).getroot().iter():
        value = elem.get("value")
        if value is not None:
            values[elem.tag] = value
    missing = [k for k in ("net-file", "route-files", "begin", "end") if k not in values]
    if missing:
        raise ConfigError(f"RESCO's {cfg} does not set {', '.join(missing)}.")
    return RescoScenario(
        name=name,
        sumocfg=cfg,
        net=cfg.parent / values["net-file"],
        routes=tuple(cfg.parent / r for r in values["route-files"].replace(",", " ").split()),
        begin_s=float(values["begin"]),
        end_s=float(values["end"]),
    )


def import_resco(scenario: RescoScenario, cities_dir: Path) -> City:
    """The scenario as a city (cached by the importer under ``cities_dir``): its programs
    fitted to the guard, its trips as the city's own demand."""
    city = import_city(
        "sumo", sumocfg=scenario.sumocfg, cities_dir=cities_dir, name=scenario.name,
        fit_signals=True,
    )  # fmt: skip
    source = city.manifest.source
    if source is None or not source.options.get("own_routes"):
        raise ConfigError(
            f"The imported {scenario.name} ({city.path}) has no routes of its own; RESCO's "
            f"demand is {', '.join(p.name for p in scenario.routes)}."
        )
    return city


def resco_delay(tripinfo: Path) -> dict[str, float | int]:
    """RESCO's delay from a tripinfo output: per vehicle ``timeLoss + departDelay``.

    ``resco_delay_s`` averages every vehicle written (arrived, and, where the output
    was written with ``--tripinfo-output.write-unfinished``, still driving: their delay
    so far); ``resco_delay_arrived_s`` the arrived ones only. A vehicle whose timeLoss is
    not available is left out; a missing departDelay counts as 0.
    """
    every: list[float] = []
    arrived: list[float] = []
    for trip in iter_xml_elements(tripinfo, "tripinfo"):
        loss = sumo_value(trip.get("timeLoss"))
        wait = sumo_value(trip.get("departDelay", "0"))
        if math.isnan(loss):
            continue
        delay = loss + (0.0 if math.isnan(wait) else wait)
        every.append(delay)
        if float(trip.get("arrival", "-1")) >= 0:
            arrived.append(delay)
    nan = float("nan")
    return {
        "resco_delay_s": statistics.fmean(every) if every else nan,
        "resco_delay_arrived_s": statistics.fmean(arrived) if arrived else nan,
        "vehicles": len(every),
        "arrived": len(arrived),
        "unfinished": len(every) - len(arrived),
    }


def scenario_raw(scenario: RescoScenario, city: City, controller: str, seed: int) -> dict[str, Any]:
    """The run's scenario: RESCO's window and demand, one controller everywhere."""
    return {
        "name": f"resco-{scenario.name}-{controller}",
        "kind": "baseline",
        "seed": seed,
        "city": {"path": str(city.path)},
        "demand": {"source": "auto"},
        "sim": {"begin_s": scenario.begin_s, "duration_s": scenario.end_s - scenario.begin_s},
        "control": _control(controller),
    }


def _control(controller: str) -> dict[str, Any]:
    """A scenario's ``control`` block: the controller kind everywhere, with its settings
    where it is a variant (``adaptive_actuated``)."""
    kind, adaptive = VARIANTS.get(controller, (controller, {}))
    return {"default": kind, **({"adaptive": adaptive} if adaptive else {})}


def resco_request(
    scenario: RescoScenario, city: City, controller: str, seed: int,
    extra_additional: tuple[Path, ...] = (),
) -> RunRequest:  # fmt: skip
    """The executor's request for one run."""
    return request(
        scenario_raw(scenario, city, controller, seed), city, seed=seed,
        source=f"{OWNER}:{scenario.name}", owner=OWNER, extra_additional=extra_additional,
    )  # fmt: skip


def run_row(record: RunRecord) -> dict[str, Any]:
    """One run's figures: RESCO's delay from its tripinfo, the rest from its metrics."""
    if record.run_dir is None:
        raise ConfigError(f"Run {record.id} has no run folder; its tripinfo cannot be read.")
    m = metrics(record)
    return {
        **resco_delay(record.run_dir / "tripinfo.xml"),
        "mean_time_loss_s": m.get("mean_delay_s"),
        "mean_depart_delay_s": m.get("mean_depart_delay_s"),
        "not_inserted": m.get("vehicles_waiting"),  # still waiting to enter at the end
        "teleports": m.get("teleports"),
        "run_id": record.id,
    }


def plain_sumo_fixed(scenario: RescoScenario, seed: int, out_dir: Path) -> dict[str, Any]:
    """RESCO's files exactly as shipped, in plain ``sumo`` (no twin, no guard, no fit:
    the programs without all-reds), in the same window with the same SUMO options and
    seed as the twin's runs: what the fit costs the fixed plan, measured."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = SessionConfig(
        net=scenario.net, routes=scenario.routes, additional=(), begin_s=scenario.begin_s,
        end_s=scenario.end_s, seed=seed, tripinfo=out_dir / "tripinfo.xml",
        statistics=out_dir / "statistics.xml",
    )  # fmt: skip
    run_tool("sumo", config.args(), what=f"running RESCO's {scenario.name} as shipped")
    stats = statistics_metrics(out_dir / "statistics.xml")
    return {
        **resco_delay(out_dir / "tripinfo.xml"),
        "not_inserted": stats.get("vehicles_waiting"),
        "teleports": stats.get("teleports"),
    }


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    values = [v for v in values if not math.isnan(v)]
    return round(statistics.fmean(values), 2) if values else None


def summarise(
    rows: dict[tuple[str, str, int], dict[str, Any]],
    plain: dict[tuple[str, int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The result blocks from every run's row, keyed (scenario, controller, seed), and
    from the plain-SUMO runs of the shipped files, keyed (scenario, seed)."""
    result: dict[str, Any] = {}
    details: dict[str, Any] = {}
    gaps: dict[str, dict[str, float | None]] = {}
    for name in SCENARIOS:
        result[name], details[name] = {}, {}
        for ctl in CONTROLLERS:
            sel = [(seed, r) for (n, c, seed), r in sorted(rows.items()) if (n, c) == (name, ctl)]
            if not sel:
                continue
            runs = [r for _seed, r in sel]
            result[name][ctl] = _mean(runs, "resco_delay_s")
            details[name][ctl] = {
                key: _mean(runs, key)
                for key in ("resco_delay_s", "resco_delay_arrived_s", "mean_time_loss_s",
                            "mean_depart_delay_s", "vehicles", "arrived", "unfinished",
                            "not_inserted", "teleports")
            }  # fmt: skip
            details[name][ctl]["seeds"] = [seed for seed, _r in sel]
            details[name][ctl]["run_ids"] = [r["run_id"] for r in runs]
        gaps[name] = {
            ctl: round(100.0 * (ours - pub) / pub, 1)
            for ctl, pub in PUBLISHED[name].items()
            if (ours := result[name].get(ctl)) is not None
        }
    result["published"] = PUBLISHED
    result["gap_vs_published_pct"] = gaps
    if plain:
        shipped: dict[str, Any] = {}
        for name in SCENARIOS:
            shipped_rows = [r for (n, _seed), r in sorted(plain.items()) if n == name]
            if not shipped_rows:
                continue
            ours, base = result[name].get("fixed"), _mean(shipped_rows, "resco_delay_s")
            shipped[name] = {
                "resco_delay_s": base,
                "resco_delay_arrived_s": _mean(shipped_rows, "resco_delay_arrived_s"),
                "unfinished": _mean(shipped_rows, "unfinished"),
                "not_inserted": _mean(shipped_rows, "not_inserted"),
                "teleports": _mean(shipped_rows, "teleports"),
                "seeds": [seed for (n, seed) in sorted(plain) if n == name],
                "fit_cost_pct": round(100.0 * (ours - base) / base, 1) if ours and base else None,
                "gap_vs_published_pct": round(100.0 * (base - PUBLISHED[name]["fixed"])
                                              / PUBLISHED[name]["fixed"], 1) if base else None,
            }  # fmt: skip
        result["shipped_fixed_plain_sumo"] = shipped
    result["details"] = details
    return result


def _fit_counts(city: City) -> dict[str, int]:
    counts: dict[str, int] = {}
    for changes in read_report(city).get("signals_fitted", {}).values():
        for line in changes:
            what = line.split(":", 1)[0]
            counts[what] = counts.get(what, 0) + 1
    return counts


def run_benchmark(
    settings: Settings, *, seeds: int, workers: int, scenarios: tuple[str, ...] = SCENARIOS
) -> dict[str, Any]:
    """Import, run every (scenario, controller, seed) through the executor, summarise."""
    t0 = time.perf_counter()
    root = resco_root()
    found = {name: resco_scenario(name, root) for name in scenarios}
    cities = {name: import_resco(sc, settings.cities_dir) for name, sc in found.items()}
    import_s = time.perf_counter() - t0
    cases = [(n, c, s) for n in scenarios for c in CONTROLLERS for s in range(1, seeds + 1)]
    requests = [resco_request(found[n], cities[n], c, s) for n, c, s in cases]
    records = run_all(settings, requests, workers=workers, label="resco")
    rows = {case: run_row(rec) for case, rec in zip(cases, records, strict=True)}
    work = settings.data_dir / "inputs" / "resco"
    plain_cases = [(n, s) for n in scenarios for s in range(1, seeds + 1)]
    with ThreadPoolExecutor(max(workers, 1)) as threads:  # plain sumo: subprocesses
        plain_rows = threads.map(
            lambda c: plain_sumo_fixed(found[c[0]], c[1], work / f"{c[0]}-shipped-seed{c[1]}"),
            plain_cases,
        )
        plain = dict(zip(plain_cases, plain_rows, strict=True))
    result = summarise(rows, plain)
    result["window"] = {
        n: {"begin_s": sc.begin_s, "end_s": sc.end_s, "routes": [p.name for p in sc.routes],
            "city": str(cities[n].path)}
        for n, sc in found.items()
    }  # fmt: skip
    result["signals_fitted"] = {n: _fit_counts(city) for n, city in cities.items()}
    result["wall_s"] = {"import": round(import_s, 1), "total": round(time.perf_counter() - t0, 1)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed (default 3)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="Write the result here.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    seeds = args.seeds or (1 if args.quick else 3)
    try:
        settings = load_settings(data_dir=args.data_dir)
        result = run_benchmark(settings, seeds=seeds, workers=args.workers)
    except TwinError as exc:
        sys.stderr.write(f"experiments.resco: {exc}\n")
        return 2
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
