"""Evacuation benchmark: simultaneous vs staged departure x no measures vs contraflow
vs contraflow + evacuation signal plans, on the district city's flood zone.

    python -m experiments.evacuation --quick --json OUT.json

Every configuration runs the same seeds (each run in its own process: libsumo allows
one simulation per process). The zone's households (1500 per km², one car each, 60 %
leave: about 680 vehicles from 0.76 km²) are warned 300 s into the AM peak hour and
drive to the city's three shelters (capacity-aware: a full shelter sends the rest on
to the next). ``simultaneous``: everyone leaves within 2 min of the warning;
``staged``: three sub-zones (rings around the zone's centre, the inner first) warned
10 min apart, each leaving within 2 min. Contraflow is the automatic choice: the exit
road most evacuees use, reversed for up to 2 km.

Output: ``{"strategies": {"<departure>+<measures>": {"zone_clearance_s",
"network_clearance_s", "shelter_share", "seeds", ...}}}``; a clearance time is the
mean over seeds that cleared within the run (``null`` when none did; the ``*_cleared``
counts say how many did). Beside the JSON: ``evacuation_curves.png``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from city_models.build import City, build_city
from experiments._output import emit_json, finite_mean
from experiments._run import metrics, request, run_all
from scenarios.loader import parse_scenario
from scenarios.registry import make_scenario
from twin.config import load_settings
from twin.engine.store import RunRecord, RunStore
from viz.evacuation import plot_clearance_curves

DEPARTURES = ("simultaneous", "staged")
MEASURES = ("none", "contraflow", "contraflow_signals")
WARNING_S = 300.0


_mean = functools.partial(finite_mean, empty=None)  # JSON null when no seed has it


def _spec(departure: str, measures: str, seed: int, duration_s: float) -> dict[str, Any]:
    return {
        "name": f"evac-{departure}-{measures}",
        "kind": "evacuation",
        "seed": seed,
        "demand": {"period": "am_peak"},
        "sim": {"duration_s": duration_s},
        "warning_s": WARNING_S,
        "households_per_km2": 1500.0,
        "vehicles_per_household": 1.0,
        "evacuating_share": 0.6,
        "assignment": "capacity_aware",
        "departure": {"curve": departure, "spread_s": 120.0, "waves": 3, "wave_gap_s": 600.0},
        "measures": {
            "contraflow": measures != "none",
            "evacuation_signals": measures == "contraflow_signals",
        },
    }


KEYS = (
    "evacuees_veh", "zone_clearance_s", "network_clearance_s", "shelter_share",
    "zone_left_share", "mean_evacuation_time_s", "mean_time_to_leave_zone_s",
    "stuck_veh", "not_departed_veh", "not_reaching_shelter_veh",
    "left_without_shelter_veh", "evacuation_signals_max", "contraflow_edges",
    "mean_delay_s", "teleports",
)  # fmt: skip


def row(departure: str, measures: str, seed: int, record: RunRecord,
        store: RunStore) -> dict[str, Any]:  # fmt: skip
    """One run's line of the result: metrics from its record, the clearance curve from
    its stored ``evacuation`` series."""
    m = metrics(record)
    curve = store.read_series(record.id, "evacuation")
    return {
        "departure": departure,
        "measures": measures,
        "seed": seed,
        **{k: m.get(k) for k in KEYS},
        "run_id": record.id,
        "curve": [
            (float(t), float(e), float(s))
            for t, e, s in zip(
                curve["t_s"], curve["evacuated_share"], curve["sheltered_share"], strict=True
            )
        ],
    }


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dep in DEPARTURES:
        for meas in MEASURES:
            sel = sorted(
                (r for r in rows if r["departure"] == dep and r["measures"] == meas),
                key=lambda r: r["seed"],
            )
            if not sel:
                continue

            def cleared(key: str, sel: list[dict[str, Any]] = sel) -> int:
                return sum(1 for r in sel if _clean(r[key]) is not None)

            out[f"{dep}+{meas}"] = {
                "zone_clearance_s": _mean([r["zone_clearance_s"] for r in sel]),
                "network_clearance_s": _mean([r["network_clearance_s"] for r in sel]),
                "shelter_share": _mean([r["shelter_share"] for r in sel]),
                "seeds": [r["seed"] for r in sel],
                "zone_cleared_runs": cleared("zone_clearance_s"),
                "network_cleared_runs": cleared("network_clearance_s"),
                "zone_clearance_s_by_seed": [_clean(r["zone_clearance_s"]) for r in sel],
                "network_clearance_s_by_seed": [_clean(r["network_clearance_s"]) for r in sel],
                "zone_left_share": _mean([r["zone_left_share"] for r in sel]),
                "mean_evacuation_time_s": _mean([r["mean_evacuation_time_s"] for r in sel]),
                "mean_time_to_leave_zone_s": _mean([r["mean_time_to_leave_zone_s"] for r in sel]),
                "stuck_veh": _mean([r["stuck_veh"] for r in sel]),
                "not_reaching_shelter_veh": _mean([r["not_reaching_shelter_veh"] for r in sel]),
                "left_without_shelter_veh": _mean([r["left_without_shelter_veh"] for r in sel]),
                "background_mean_delay_s": _mean([r["mean_delay_s"] for r in sel]),
                "teleports": _mean([r["teleports"] for r in sel]),
                "evacuees_veh": _mean([r["evacuees_veh"] for r in sel]),
                "evacuation_signals_max": _mean([r["evacuation_signals_max"] for r in sel]),
                "contraflow_edges": sel[0]["contraflow_edges"],
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds on the district city")
    parser.add_argument("--preset", default="district", choices=["district", "suwon-scale"])
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--duration-s", type=float, default=3600.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    n_seeds = args.seeds or (3 if args.quick else 10)
    settings = load_settings(data_dir=args.data_dir)
    city = build_city(args.preset, seed=1, cities_dir=settings.data_dir / "cities")
    cases = [
        (dep, meas, seed)
        for seed in range(args.first_seed, args.first_seed + n_seeds)
        for dep in DEPARTURES
        for meas in MEASURES
    ]
    # the contraflow variant is built (and cached) by the first run that needs it; build
    # it here once so parallel workers do not race to build it
    _warm_variant(*cases[1], args.duration_s, city)
    requests = [
        request(_spec(dep, meas, seed, args.duration_s), city, seed=seed,
                source=f"evacuation {dep}+{meas}", owner="experiments.evacuation")
        for dep, meas, seed in cases
    ]  # fmt: skip
    records = run_all(settings, requests, workers=args.workers, label="evacuation")
    store = RunStore.from_settings(settings)
    try:
        rows = [
            row(dep, meas, seed, rec, store)
            for (dep, meas, seed), rec in zip(cases, records, strict=True)
        ]
    finally:
        store.close()
    result: dict[str, Any] = {"strategies": summarise(rows)}
    result["city"] = city.name
    result["config"] = {k: v for k, v in _spec("staged", "contraflow", 0, args.duration_s).items()
                        if k not in ("name", "seed")}  # fmt: skip
    out_dir = args.json.parent if args.json else Path("out")
    curves: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        curves.setdefault((r["departure"], r["measures"]), []).append(r.pop("curve"))
    png = plot_clearance_curves(
        curves,
        out_dir / "evacuation_curves.png",
        warning_s=WARNING_S,
        title=f"Evacuation of the flood zone, {city.name} ({n_seeds} seeds)",
    )
    result["plot"] = png.name
    result["runs"] = [
        {k: _clean(v) for k, v in r.items()}
        for r in sorted(rows, key=lambda r: (r["departure"], r["measures"], r["seed"]))
    ]
    emit_json(result, args.json)
    return 0


def _warm_variant(departure: str, measures: str, seed: int, duration_s: float,
                  city: City) -> None:  # fmt: skip
    spec = parse_scenario(_spec(departure, measures, seed, duration_s))
    with tempfile.TemporaryDirectory(prefix="evac-") as tmp:
        make_scenario(spec).prepare(city, seed=seed, run_dir=Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
