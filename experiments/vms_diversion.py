"""VMS compliance sweep: does telling drivers about a crash help, and how many should divert?

    python -m experiments.vms_diversion --quick --json OUT.json

The shipped ``vms_diversion`` scenario (district city, PM peak x3, habitual routes, a
crash closing two of three lanes of Arterial EW-7 for 30 min) is run without signs
(``no_vms``) and with signs at compliance 0, 10, 25, 50, 75 and 100 %: the share of
drivers who act on an incident message (detour advice and plain warnings alike; the
travel-time messages keep their default 5 %). Every seed runs every level on the same
demand, and drivers' decisions use common random numbers, so the levels differ only
in who diverts. ``delay_change_pct`` is paired by seed against ``no_vms``
(negative = better). Writes ``vms_compliance.png`` (delay vs compliance) next to the
JSON.

``ev_vms``: the EV-only message. Two ambulances under center priority whose calls lie
just past a sign (PM peak x2, no incident); the sign tells drivers to keep the inner
lane clear as an ambulance approaches. Paired by seed: drivers ignore it (compliance 0)
vs 60 % follow it.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

from city_models.build import build_city
from city_models.graph import edge_graph, fastest_route
from experiments._output import emit_json, finite_mean
from experiments._run import metrics, request, run_all
from scenarios.loader import library_scenarios
from twin.config import load_settings
from twin.engine.store import RunRecord
from viz.vms import plot_compliance

LEVELS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
EV_COMPLIANCE = 0.6  # drivers who clear the lane when the EV-only message says so
KEYS = (
    "mean_delay_s",
    "total_delay_h",
    "throughput_veh",
    "teleports",
    "affected_veh",
    "diverted_share",
    "detour_trip_s",
    "closed_route_trip_s",
    "detour_arrived_veh",
    "closed_route_arrived_veh",
    "incident_throughput_veh",
    "incident_queue_max_veh",
    "incident_queue_mean_veh",
    "recovery_s",
    "unreachable_veh",
)


_mean = functools.partial(finite_mean, digits=3)


def scenario(level: float | None, seed: int) -> dict[str, Any]:
    """The shipped scenario at one compliance level (``None``: no signs)."""
    raw = tomllib.loads(library_scenarios()["vms_diversion"].read_text(encoding="utf-8"))
    raw["seed"] = seed
    if level is None:
        raw["vms"] = False
    else:
        raw["compliance"] = {**raw.get("compliance", {}), "incident_detour": level,
                             "incident_warning": level}  # fmt: skip
    return raw


def ev_scenario(city: Any, seed: int, ev_compliance: float) -> dict[str, Any]:
    """Two ambulances whose calls lie just past a sign on their way (so the EV-only
    message can matter), under center priority; no incident."""
    graph = edge_graph(city.net)
    evs = []
    for k, station in enumerate(("fire_station_1", "fire_station_2")):
        start = next(p.edge for p in city.manifest.pois if p.id == station)
        calls = [
            beyond
            for vms in city.manifest.vms
            for beyond in sorted(graph.successors(f"{vms.edge}_pocket"))
            if vms.edge in fastest_route(graph, start, beyond)
        ]
        if calls:
            evs.append({"id": f"amb{k + 1}", "dispatch_s": 300.0 + 300.0 * k,
                        "station": station, "call_edge": calls[0], "on_scene_s": 30.0})  # fmt: skip
    return {
        "name": "ev-vms", "kind": "vms_diversion", "seed": seed,
        "demand": {"period": "pm_peak", "scale": 2.0}, "sim": {"duration_s": 1800.0},
        "compliance": {"ev_clear": ev_compliance}, "evs": evs,
    }  # fmt: skip


EV_KEYS = ("ev_s_per_km", "ev_stopped_s", "ev_arrived", "ev_lane_clear_asked_veh", "mean_delay_s")
OWNER = "experiments.vms_diversion"


def ev_row(ev_compliance: float, seed: int, record: RunRecord) -> dict[str, Any]:
    """One EV-only-message run's line of the result, read from its record."""
    m = metrics(record)
    return {"ev_compliance": ev_compliance, "seed": seed, **{k: m.get(k) for k in EV_KEYS},
            "run_id": record.id}  # fmt: skip


def _change_pct(new: float | None, old: float | None) -> float:
    """Percent change; NaN when a value is missing (the store keeps NaN as null)."""
    if new is None or old is None:
        return math.nan
    return 100.0 * (new - old) / old


def summarise_ev(rows: list[dict[str, Any]]) -> dict[str, Any]:
    off = {r["seed"]: r for r in rows if r["ev_compliance"] == 0.0}
    on = {r["seed"]: r for r in rows if r["ev_compliance"] > 0.0}
    paired = sorted(set(off) & set(on))
    change = [_change_pct(on[s]["ev_s_per_km"], off[s]["ev_s_per_km"]) for s in paired]
    return {
        "ev_s_per_km_message_ignored": _mean([off[s]["ev_s_per_km"] for s in paired]),
        "ev_s_per_km_message_followed": _mean([on[s]["ev_s_per_km"] for s in paired]),
        "ev_change_pct": _mean(change),
        "ev_stopped_s_ignored": _mean([off[s]["ev_stopped_s"] for s in paired]),
        "ev_stopped_s_followed": _mean([on[s]["ev_stopped_s"] for s in paired]),
        "lane_clear_asked_veh": _mean([on[s]["ev_lane_clear_asked_veh"] for s in paired]),
        "ev_compliance": sorted({r["ev_compliance"] for r in on.values()}),
        "seeds": paired,
    }


def row(level: float | None, seed: int, record: RunRecord) -> dict[str, Any]:
    """One sweep run's line of the result, read from its record."""
    m = metrics(record)
    return {"level": level, "seed": seed, **{k: m.get(k) for k in KEYS}, "run_id": record.id}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    base = {r["seed"]: r for r in rows if r["level"] is None}
    out: dict[str, Any] = {
        "no_vms": {k: _mean([r[k] for r in base.values()]) for k in KEYS},
        "levels": {},
    }
    out["no_vms"]["seeds"] = sorted(base)
    for level in LEVELS:
        sel = [r for r in rows if r["level"] == level]
        if not sel:
            continue
        entry = {k: _mean([r[k] for r in sel]) for k in KEYS}
        changes = [
            100.0
            * (r["mean_delay_s"] - base[r["seed"]]["mean_delay_s"])
            / base[r["seed"]]["mean_delay_s"]
            for r in sel
            if r["seed"] in base
        ]
        entry["delay_change_pct"] = _mean(changes)
        entry["delay_change_pct_by_seed"] = [round(c, 3) for c in changes]
        entry["seeds"] = sorted(r["seed"] for r in sel)
        out["levels"][f"{level:g}"] = entry
    levels = out["levels"]
    out["best_compliance"] = (
        float(min(levels, key=lambda k: levels[k]["mean_delay_s"])) if levels else None
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds (else 8)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-ev", action="store_true", help="skip the EV-only message runs")
    args = parser.parse_args(argv)
    n_seeds = args.seeds or (3 if args.quick else 8)
    settings = load_settings(data_dir=args.data_dir)
    city = build_city("district", seed=1, cities_dir=settings.data_dir / "cities")
    seeds = range(args.first_seed, args.first_seed + n_seeds)
    cases = [(level, seed) for seed in seeds for level in (None, *LEVELS)]
    ev_cases = [] if args.no_ev else [(c, seed) for seed in seeds for c in (0.0, EV_COMPLIANCE)]
    requests = [
        request(scenario(level, seed), city, seed=seed, source="vms_diversion sweep", owner=OWNER)
        for level, seed in cases
    ] + [
        request(ev_scenario(city, seed, c), city, seed=seed, source="ev-vms", owner=OWNER)
        for c, seed in ev_cases
    ]
    records = run_all(settings, requests, workers=args.workers, label="vms compliance sweep")
    rows = [row(lvl, seed, rec) for (lvl, seed), rec in zip(cases, records, strict=False)]
    ev_rows = [
        ev_row(c, seed, rec) for (c, seed), rec in zip(ev_cases, records[len(cases) :], strict=True)
    ]
    result = summarise(rows)
    if ev_rows:
        result["ev_vms"] = summarise_ev(ev_rows)
        result["ev_runs"] = sorted(ev_rows, key=lambda r: (r["seed"], r["ev_compliance"]))
    result["city"] = city.name
    order: dict[float | None, float] = {None: -1.0, **{level: level for level in LEVELS}}
    result["runs"] = sorted(rows, key=lambda r: (r["seed"], order[r["level"]]))
    out_dir = args.json.parent if args.json else Path("out")
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_compliance(result, out_dir / "vms_compliance.png")
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
