"""The Suwon benchmark: EV priority none vs field vs center, at the AM peak.

    python -m experiments.ev_priority --quick --json OUT.json

Per seed: a run without EVs (same demand, same guarded fixed-time signals), then the
same run with two ambulances (``--evs-per-run N``: N, every ``--ev-spacing-s``)
dispatched from the two fire stations in turn to seeded random calls (the same calls in
every mode of a seed) and on to the nearest hospital (``--quick``: district city, 3 seeds; full:
suwon-scale, 10 seeds), under ``none``, ``field`` (30 % of signals with
roadside units) and ``center`` (smooth recovery), plus ``center`` with immediate
recovery. Every mode runs under each EV behaviour at red (``ev_behaviour``, see
:mod:`scenarios.ev_priority`): ``obey_red`` (the EV stops) and ``siren`` (lights and
siren: it may pass a red signal slowly, drivers yield). Reported per behaviour and
mode (block ``ev_behaviour``): the EVs' seconds per km and time to hospital (means over
EVs and seeds), other vehicles' mean delay change against the no-EV run of the same
seed, the EV s/km reduction against ``none`` of the same behaviour and against
``none`` with ``obey_red``, the stop lines passed against red (``siren``) and SUMO's
collision counts: ``collisions``, all of them (``<safety collisions>`` of each run's
statistics; with ``siren`` SUMO checks junctions too, otherwise lanes only, its
default), and ``ev_collisions``, those with an EV (``siren`` runs only). The top-level keys
(``center.reduction_pct``, ``none.ev_s_per_km``, ...) are those of one behaviour,
``--ev-behaviour`` (default: the scenario default). Per behaviour and mode the block
also has the distribution over the EV trips (:func:`distribution`: ``ev_trips``,
p10/p50/p90 and every trip's seconds per km and time to hospital, each trip's stopped
time and stops, and what the trip's seconds per km are made of: the speed limits,
slower driving, standing); every run's trips are under ``runs[].trips``. And the cross
street's queue growth while signals were held for EVs (``cross_street_queue_growth``:
per hold, the longest queue on the approaches held red, from the hold until 60 s after
it, against the same approaches and minutes of the run without EVs; every run's holds
under ``runs[].cross_holds``; Ulsan reports up to +139 %, transiently), next to the same
comparison for the ``none`` run over the same holds (``cross_street_queue_growth_none``:
the EVs there, nothing held; what the comparison reads without priority). ``--modes`` and
``--siren-modes`` choose the modes to run. Also writes a Suwon-style table
(``ev_priority_table.md``) and the hospital reachability map (``reachability.png``)
next to the JSON.

Suwon's reported figures: 200 -> 87 s/km (-56.5 %) with the center method.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from city_models.build import build_city
from city_models.graph import reachability
from experiments._output import emit_json, finite_mean
from experiments._run import metrics, request, run_all
from scenarios.ev_priority import COLLISIONS_FILE, DEFAULT_EV_BEHAVIOUR, EV_BEHAVIOURS
from twin.center.preemption import RENEWAL_CROSS_GREENS
from twin.config import Settings, load_settings
from twin.engine.store import RunRecord, RunStore
from twin.engine.sumo_tools import iter_xml_elements
from twin.errors import SumoError
from viz.reachability import plot_reachability

MODES = ("none", "field", "center", "center_immediate")
EV_IDS = ("amb1", "amb2")
"""The EVs of a run with the default two (``--evs-per-run 2``)."""
STATIONS = ("fire_station_1", "fire_station_2")
FIRST_DISPATCH_S = 600.0
SUWON = {"before_s_per_km": 200.0, "after_s_per_km": 87.0, "reduction_pct": 56.5}
QUANTILES = {"p10": 10.0, "p50": 50.0, "p90": 90.0}


_mean = finite_mean


def ev_list(evs_per_run: int = 2, spacing_s: float = 300.0) -> list[dict[str, Any]]:
    """The EVs of one run: ``amb1``, ``amb2``, ... dispatched every ``spacing_s`` from
    600 s on, from the fire stations in turn (each to its own seeded random call). The
    default is the benchmark's two: ``amb1`` at 600 s from ``fire_station_1``, ``amb2``
    at 900 s from ``fire_station_2``."""
    if not 1 <= evs_per_run <= 20:
        raise ValueError(f"evs_per_run = {evs_per_run} is not allowed: 1 to 20")
    if spacing_s <= 0:
        raise ValueError(f"ev spacing_s = {spacing_s:g} is not allowed: > 0")
    return [
        {"id": f"amb{k + 1}", "dispatch_s": FIRST_DISPATCH_S + k * spacing_s,
         "station": STATIONS[k % len(STATIONS)]}
        for k in range(evs_per_run)
    ]  # fmt: skip


def _spec(
    mode: str,
    seed: int,
    duration_s: float,
    period: str,
    ev_behaviour: str = DEFAULT_EV_BEHAVIOUR,
    evs: list[dict[str, Any]] | None = None,
    hold_renewals: int | None = None,
    renewal_cross_green: str | None = None,
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": f"ev-{mode}" if mode == "baseline" else f"ev-{mode}-{ev_behaviour}",
        "seed": seed,
        "demand": {"period": period},
        "sim": {"duration_s": duration_s},
        "control": {"guard_fixed": True},
    }
    if mode == "baseline":
        return {**base, "kind": "baseline"}
    return {
        **base,
        "kind": "ev_priority",
        "evs": evs if evs is not None else ev_list(),
        "mode": "center" if mode.startswith("center") else mode,
        "recovery": "immediate" if mode == "center_immediate" else "smooth",
        "ev_behaviour": ev_behaviour,
        # the center's renewals of capped holds; None: the scenario's default
        **({} if hold_renewals is None else {"hold_renewals": hold_renewals}),
        **({} if renewal_cross_green is None else {"renewal_cross_green": renewal_cross_green}),
    }


KEYS = (
    "mean_delay_s",
    "ev_s_per_km",
    "ev_time_to_hospital_s",
    "ev_stops",
    "ev_stopped_s",
    "ev_preempted_signals",
    "ev_arrived",
    "cross_street_max_queue_veh",
    "recovery_mean_s",
    "ev_red_passes",  # siren runs only
    "ev_conflicts",
    "ev_hold_renewals",  # runs recorded before renewals existed: None
)


def _ev_ids(record: RunRecord) -> set[str]:
    """The ids of the EVs of a run (from its spec)."""
    evs = record.spec.get("evs") if isinstance(record.spec, dict) else None
    return {str(ev["id"]) for ev in evs} if evs else set(EV_IDS)


def _num(value: Any) -> float:
    """A number, NaN for None (a metric that was NaN is stored as null)."""
    return math.nan if value is None else float(value)


def trip_rows(
    per_ev: dict[str, dict[str, Any]],
    tripinfo: dict[str, dict[str, str]],
    dispatch: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One line per EV trip of a run, from the scenario's per-EV metrics (``ev``) and
    SUMO's ``tripinfo`` of the EV (None where it has none).

    ``stops`` is the scenario's count, the stop at the scene included; ``stopped_s`` is
    the time below 0.5 m/s less the time on scene, ``stopped_share`` its share of
    ``time_to_hospital_s``. From SUMO: ``free_flow_s_per_km`` (the trip at the speed
    limits times the EV's speed factor: duration − stop time − timeLoss),
    ``slowed_s_per_km`` (time lost while moving: timeLoss − waitingTime) and
    ``standing_s_per_km`` (waitingTime: at ≤ 0.1 m/s, the scene not counted)."""
    out = []
    for ev_id in sorted(per_ev, key=lambda i: (len(i), i)):
        ev = per_ev[ev_id]
        trip_s, km = _num(ev.get("time_to_hospital_s")), _num(ev.get("distance_km"))
        stopped_s = _num(ev.get("stopped_s"))
        line: dict[str, Any] = {
            "ev": ev_id,
            **(dispatch or {}).get(ev_id, {}),
            "arrived": bool(ev.get("arrived")),
            "hospital": ev.get("hospital"),
            "s_per_km": _num(ev.get("s_per_km")),
            "time_to_hospital_s": trip_s,
            "distance_km": km,
            "stops": ev.get("stops"),
            "stopped_s": stopped_s,
            "stopped_share": stopped_s / trip_s if trip_s > 0 else math.nan,
            "stopped_s_per_km": stopped_s / km if km > 0 else math.nan,
            "preempted_signals": ev.get("preempted_signals"),
            "free_flow_s_per_km": math.nan,
            "slowed_s_per_km": math.nan,
            "standing_s_per_km": math.nan,
        }
        info = tripinfo.get(ev_id)
        if info is not None and km > 0 and float(info.get("arrival", -1)) >= 0:
            loss_s, wait_s = float(info["timeLoss"]), float(info["waitingTime"])
            moving_s = float(info["duration"]) - float(info.get("stopTime", 0.0))
            line["free_flow_s_per_km"] = (moving_s - loss_s) / km
            line["slowed_s_per_km"] = (loss_s - wait_s) / km
            line["standing_s_per_km"] = wait_s / km
        out.append(line)
    return out


def read_trips(record: RunRecord) -> list[dict[str, Any]]:
    """The EV trips of a run (:func:`trip_rows`), SUMO's figures read from its
    ``tripinfo.xml`` (left NaN where the run folder has none)."""
    per_ev = metrics(record).get("ev") or {}
    ids = _ev_ids(record)
    tripinfo: dict[str, dict[str, str]] = {}
    if record.run_dir is not None:
        with contextlib.suppress(SumoError):  # no tripinfo: SUMO's figures stay NaN
            tripinfo = {
                t["id"]: t
                for t in iter_xml_elements(record.run_dir / "tripinfo.xml", "tripinfo")
                if t.get("id") in ids
            }
    evs = record.spec.get("evs") if isinstance(record.spec, dict) else None
    dispatch = {
        str(e["id"]): {"station": e.get("station"), "dispatch_s": e.get("dispatch_s")}
        for e in evs or []
    }
    return trip_rows(per_ev, tripinfo, dispatch)


def sumo_collisions(record: RunRecord) -> tuple[int | None, int | None]:
    """SUMO's own collision counts of a run: all (``<safety collisions>`` of its
    statistics) and those with an EV as collider or victim (its ``collisions.xml``,
    written by ``siren`` runs only); None where the run folder has no such file."""
    if record.run_dir is None:
        return None, None
    ids = _ev_ids(record)
    total = with_ev = None
    try:
        for safety in iter_xml_elements(record.run_dir / "statistics.xml", "safety"):
            total = int(safety.get("collisions", 0))
        path = record.run_dir / COLLISIONS_FILE
        if path.exists():
            with_ev = sum(
                1
                for c in iter_xml_elements(path, "collision")
                if c.get("collider") in ids or c.get("victim") in ids
            )
    except SumoError:
        pass
    return total, with_ev


CROSS_QUEUE_AFTER_S = 60.0
"""A hold's cross-street queue is read until this long after its release: the queue the
red built peaks when the cross street's green comes back (the yellow and all-red after
the hold, and the rest of the series interval the release fell in)."""


def cross_queue_growth(
    holds: pd.DataFrame,
    queues: pd.DataFrame,
    base_queues: pd.DataFrame,
    *,
    after_s: float = CROSS_QUEUE_AFTER_S,
) -> list[dict[str, Any]]:
    """Per hold of a signal for an EV (the scenario's ``ev_holds`` series), the longest
    queue on the approaches it held red (its ``cross_edges``) from the hold's first
    tick until ``after_s`` after its last, in the EV run (``queues``: the run's
    ``approach_queues``, each row the longest queue of one approach in the series
    interval that ends at ``t_s``) and over the same approaches and intervals in the
    run without EVs of the same seed (``base_queues``). ``growth_pct`` is the change
    against that run (None where its queue was below one vehicle: no base to compare
    with); ``growth_veh`` the change in vehicles."""

    def window_max(frame: pd.DataFrame, tls: str, edges: set[str], lo: float, hi: float) -> float:
        sel = frame[
            (frame["tls_id"] == tls)
            & frame["edge_id"].isin(edges)
            & (frame["t_s"] > lo)
            & (frame["t_s"] <= hi)
        ]
        return float(sel["queue_max_veh"].max()) if len(sel) else math.nan

    out: list[dict[str, Any]] = []
    for h in holds.itertuples(index=False):
        edges = {e for e in str(h.cross_edges).split(",") if e}
        if not edges:
            continue
        lo, hi = float(h.start_s), float(h.end_s) + after_s
        ev_q = window_max(queues, str(h.tls_id), edges, lo, hi)
        base_q = window_max(base_queues, str(h.tls_id), edges, lo, hi)
        if not (math.isfinite(ev_q) and math.isfinite(base_q)):
            continue  # an interval the runs did not record (the run ended)
        out.append({
            "ev": str(h.ev), "tls_id": str(h.tls_id), "start_s": float(h.start_s),
            "held_s": float(h.end_s) - float(h.start_s), "cross_queue_veh": ev_q,
            "base_queue_veh": base_q, "growth_veh": ev_q - base_q,
            "growth_pct": round(100.0 * (ev_q - base_q) / base_q, 2) if base_q >= 1.0 else None,
        })  # fmt: skip
    return out


def growth_summary(holds: list[dict[str, Any]]) -> dict[str, Any]:
    """The holds' cross-street queue growth (:func:`cross_queue_growth`) of one mode:
    how many, the mean, p10/p50/p90 and largest growth in per cent (holds with a base
    queue of at least one vehicle) and in vehicles (every hold)."""
    pct = [float(h["growth_pct"]) for h in holds if h.get("growth_pct") is not None]
    veh = [float(h["growth_veh"]) for h in holds]
    out: dict[str, Any] = {"holds": len(holds), "holds_with_base_queue": len(pct)}
    for unit, vals in (("pct", pct), ("veh", veh)):
        out[f"growth_{unit}_mean"] = round(float(np.mean(vals)), 2) if vals else None
        out |= {f"growth_{unit}_{q}": v for q, v in quantiles(vals).items()}
        out[f"growth_{unit}_max"] = round(max(vals), 2) if vals else None
    return out


def row(
    mode: str, seed: int, record: RunRecord, ev_behaviour: str | None = DEFAULT_EV_BEHAVIOUR
) -> dict[str, Any]:
    """One run's line of the result, read from its record (``ev_behaviour`` None: the
    run without EVs)."""
    m = metrics(record)
    collisions, ev_collisions = sumo_collisions(record)
    trips = read_trips(record) if ev_behaviour is not None else []
    return {"mode": mode, "seed": seed, "ev_behaviour": ev_behaviour,
            **{k: m.get(k) for k in KEYS}, "collisions": collisions,
            "ev_collisions": ev_collisions, "trips": trips,
            "run_id": record.id}  # fmt: skip


def hold_caps(events: pd.DataFrame) -> dict[str, int]:
    """From a run's event log: how often the guard's cap (``max_hold_s``) ended a hold
    while a signal was still held for an EV (``holds_capped``: from the center's request
    until its release), and of those how many were not renewed before the release
    (``holds_capped_unrenewed``: the EV came to a signal that ran its plan)."""
    held: set[str] = set()
    pending: set[str] = set()  # capped, not renewed yet
    capped = unrenewed = 0
    # a run stores the guards' events after its own: in time order (stable for ties)
    for e in events.sort_values("t_s", kind="stable").itertuples(index=False):
        kind = e.kind
        if kind == "priority_request":
            held.add(str(e.tls))
        elif kind == "priority_renewed":
            pending.discard(str(e.tls))
        elif kind == "guard_priority_expired" and str(e.tls_id) in held:
            capped += 1
            pending.add(str(e.tls_id))
        elif kind == "priority_release":
            tls = str(e.tls)
            unrenewed += tls in pending
            held.discard(tls)
            pending.discard(tls)
    return {"holds_capped": capped, "holds_capped_unrenewed": unrenewed + len(pending)}


def add_hold_caps(settings: Settings, rows: list[dict[str, Any]], records: list[RunRecord]) -> None:
    """Each run with priority gets :func:`hold_caps` from its stored event log."""
    store = RunStore.from_settings(settings)
    try:
        for r, rec in zip(rows, records, strict=True):
            if r["mode"] in ("baseline", "none"):
                continue
            events = _series(store, rec, "events")
            if events is None or "kind" not in events.columns:
                continue  # failed, or recorded before the event log was stored
            r.update(hold_caps(events.reindex(columns=["t_s", "kind", "tls", "tls_id"])))
    finally:
        store.close()


def _series(store: RunStore, record: RunRecord, name: str) -> pd.DataFrame | None:
    """A run's stored series ``name``, or None where it has none (a failed run, a city
    without signals, a run recorded before the series existed)."""
    if record.status != "done" or f"{name}.parquet" not in record.series_files:
        return None
    return store.read_series(record.id, name)


def add_cross_holds(
    settings: Settings, rows: list[dict[str, Any]], records: list[RunRecord]
) -> None:
    """Each EV run's row gets ``cross_holds`` (:func:`cross_queue_growth` against the
    run without EVs of its seed), from the runs' stored series; a run with priority also
    ``cross_holds_none``: the same comparison for the ``none`` run of its seed and
    behaviour over the same holds' approaches and minutes (the EVs without priority:
    what the comparison reads where nothing was held, its noise)."""
    store = RunStore.from_settings(settings)
    try:
        queues = {
            r["run_id"]: q
            for r, rec in zip(rows, records, strict=True)
            if (q := _series(store, rec, "approach_queues")) is not None
        }
        base = {r["seed"]: queues.get(r["run_id"]) for r in rows if r["mode"] == "baseline"}
        none = {
            (r["seed"], r["ev_behaviour"]): queues.get(r["run_id"])
            for r in rows
            if r["mode"] == "none"
        }
        for r, rec in zip(rows, records, strict=True):
            b = base.get(r["seed"])
            holds = _series(store, rec, "ev_holds")
            if r["mode"] == "baseline" or b is None or holds is None or r["run_id"] not in queues:
                continue
            r["cross_holds"] = cross_queue_growth(holds, queues[r["run_id"]], b)
            n = none.get((r["seed"], r["ev_behaviour"]))
            if r["mode"] != "none" and n is not None:
                r["cross_holds_none"] = cross_queue_growth(holds, n, b)
    finally:
        store.close()


def summarise(
    rows: list[dict[str, Any]], ev_behaviour: str = DEFAULT_EV_BEHAVIOUR
) -> dict[str, Any]:
    """Per mode under ``ev_behaviour`` at the top level (the keys as they always were),
    and per behaviour and mode under ``ev_behaviour``."""
    base = {r["seed"]: r["mean_delay_s"] for r in rows if r["mode"] == "baseline"}
    blocks = {
        beh: _per_mode([r for r in rows if r.get("ev_behaviour", DEFAULT_EV_BEHAVIOUR) == beh
                        and r["mode"] != "baseline"], base)
        for beh in EV_BEHAVIOURS
    }  # fmt: skip
    blocks = {beh: block for beh, block in blocks.items() if block}
    reference = blocks.get("obey_red", {}).get("none", {}).get("ev_s_per_km", math.nan)
    for block in blocks.values():
        for entry in block.values():
            entry["reduction_vs_obey_red_none_pct"] = round(
                100 * (reference - entry["ev_s_per_km"]) / reference, 2
            )
    out: dict[str, Any] = {
        mode: dict(entry) for mode, entry in blocks.get(ev_behaviour, {}).items()
    }
    for entry in out.values():  # the top level as it was before the block
        for key in (
            "reduction_vs_obey_red_none_pct",
            "ev_red_passes",
            "collisions",
            "ev_collisions",
            "cross_street_queue_growth",
            "cross_street_queue_growth_none",
            *DISTRIBUTION_KEYS,
        ):
            entry.pop(key, None)
    out["ev_behaviour"] = blocks
    out["top_level_ev_behaviour"] = ev_behaviour
    return out


def _per_mode(rows: list[dict[str, Any]], base: dict[int, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        sel = [r for r in rows if r["mode"] == mode]
        if not sel:
            continue
        changes = [
            100 * (r["mean_delay_s"] - base[r["seed"]]) / base[r["seed"]]
            for r in sel
            if r["seed"] in base
        ]
        out[mode] = {
            "ev_s_per_km": _mean([r["ev_s_per_km"] for r in sel]),
            "time_to_hospital_s": _mean([r["ev_time_to_hospital_s"] for r in sel]),
            "other_delay_change_pct": _mean(changes),
            "ev_stops": _mean([r["ev_stops"] for r in sel]),
            "ev_stopped_s": _mean([r["ev_stopped_s"] for r in sel]),
            "preempted_signals": _mean([r["ev_preempted_signals"] for r in sel]),
            "cross_street_max_queue_veh": _mean([r["cross_street_max_queue_veh"] for r in sel]),
            "cross_street_queue_growth": growth_summary(
                [h for r in sel for h in r.get("cross_holds") or []]
            ),
            "cross_street_queue_growth_none": growth_summary(
                [h for r in sel for h in r.get("cross_holds_none") or []]
            ),
            "recovery_mean_s": _mean([r["recovery_mean_s"] for r in sel]),
            "evs_arrived": sum(int(r["ev_arrived"] or 0) for r in sel),
            "seeds": sorted(r["seed"] for r in sel),
            "ev_red_passes": _mean([r.get("ev_red_passes") for r in sel], empty=None),
            "collisions": _total([r.get("collisions") for r in sel]),
            "ev_collisions": _total([r.get("ev_collisions") for r in sel]),
            **distribution([t for r in sel for t in r.get("trips") or []]),
            "ev_conflicts": _total([r.get("ev_conflicts") for r in sel]),
            "ev_hold_renewals": _total([r.get("ev_hold_renewals") for r in sel]),
            "holds_capped": _total([r.get("holds_capped") for r in sel]),
            "holds_capped_unrenewed": _total([r.get("holds_capped_unrenewed") for r in sel]),
        }
    none = out.get("none", {}).get("ev_s_per_km", math.nan)
    for mode, entry in out.items():
        entry["reduction_pct"] = (
            0.0 if mode == "none" else round(100 * (none - entry["ev_s_per_km"]) / none, 2)
        )
    return out


DISTRIBUTION_KEYS = (
    "ev_trips",
    "ev_dispatched",
    *(f"ev_s_per_km_{q}" for q in QUANTILES),
    "ev_s_per_km_trips",
    *(f"time_to_hospital_s_{q}" for q in QUANTILES),
    "time_to_hospital_s_trips",
    "ev_stopped_s_trips",
    "ev_stops_trips",
    "ev_stopped_share",
    *(f"ev_stopped_s_per_km_{q}" for q in QUANTILES),
    "ev_stopped_s_per_km",
    "ev_free_flow_s_per_km",
    "ev_slowed_s_per_km",
    "ev_standing_s_per_km",
    "ev_conflicts",
    "ev_hold_renewals",
    "holds_capped",
    "holds_capped_unrenewed",
)
"""Per behaviour and mode (block ``ev_behaviour`` only; the top level keeps its keys)."""


def quantiles(values: Sequence[Any], *, digits: int = 2) -> dict[str, float | None]:
    """p10, p50 and p90 of the finite values (linear interpolation, numpy's default);
    None each when there are none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return dict.fromkeys(QUANTILES)
    return {q: round(float(np.percentile(vals, pct)), digits) for q, pct in QUANTILES.items()}


def distribution(trips: list[dict[str, Any]]) -> dict[str, Any]:
    """The EV trips of one behaviour and mode (:func:`trip_rows`, over all its runs)
    summarised: ``ev_trips`` (those that reached the hospital) of ``ev_dispatched``;
    p10/p50/p90 and every trip's value (``..._trips``, in run and EV order) of the
    seconds per km and the time to hospital; each trip's stopped time and stops; the
    stopped share of all trip time; and, as means over the trips, the seconds per km
    the EV would need at the speed limits (``ev_free_flow_s_per_km``), those it lost
    moving slower (``ev_slowed_s_per_km``) and standing (``ev_standing_s_per_km``)."""
    done = [t for t in trips if t.get("arrived")]

    def col(key: str) -> list[float]:
        return [_num(t.get(key)) for t in done]

    def rounded(values: list[float]) -> list[float | None]:
        return [round(v, 2) if math.isfinite(v) else None for v in values]

    trip_s, stopped_s = col("time_to_hospital_s"), col("stopped_s")
    both = [(s, t) for s, t in zip(stopped_s, trip_s, strict=True) if t > 0 and math.isfinite(s)]
    out: dict[str, Any] = {"ev_trips": len(done), "ev_dispatched": len(trips)}
    out |= {f"ev_s_per_km_{q}": v for q, v in quantiles(col("s_per_km")).items()}
    out["ev_s_per_km_trips"] = rounded(col("s_per_km"))
    out |= {f"time_to_hospital_s_{q}": v for q, v in quantiles(trip_s).items()}
    out["time_to_hospital_s_trips"] = rounded(trip_s)
    out["ev_stopped_s_trips"] = rounded(stopped_s)
    out["ev_stops_trips"] = [t.get("stops") for t in done]
    out["ev_stopped_share"] = (
        round(sum(s for s, _ in both) / sum(t for _, t in both), 4) if both else None
    )
    out |= {f"ev_stopped_s_per_km_{q}": v for q, v in quantiles(col("stopped_s_per_km")).items()}
    for key in ("stopped_s_per_km", "free_flow_s_per_km", "slowed_s_per_km", "standing_s_per_km"):
        out[f"ev_{key}"] = _mean(col(key), empty=None)
    return out


def _total(values: list[Any]) -> int | None:
    """The sum of the counts that were read (None when none was)."""
    counts = [int(v) for v in values if v is not None]
    return sum(counts) if counts else None


def _qs(
    e: dict[str, Any] | None, key: str, qs: Sequence[str] = tuple(QUANTILES), fmt: str = "{:.0f}"
) -> str:
    """``p10 / p50 / p90`` (or the ``qs`` given) of ``key`` in an entry, each written
    with ``fmt`` (blank without a distribution)."""
    vals = [(e or {}).get(f"{key}_{q}") for q in qs]
    return "" if any(v is None for v in vals) else " / ".join(fmt.format(v) for v in vals)


def _table_row(label: str, e: dict[str, Any]) -> str:
    share = e.get("ev_stopped_share")
    stopped = "" if share is None else f"{e['ev_stopped_s']:.0f} s ({100 * share:.0f} %)"
    trips = e.get("ev_trips", e.get("evs_arrived", ""))
    return (
        f"| {label} | {e['ev_s_per_km']:.0f} | {_qs(e, 'ev_s_per_km')} | {trips} | "
        f"{_change(e.get('reduction_pct'))} | {e['time_to_hospital_s']:.0f} | "
        f"{_qs(e, 'time_to_hospital_s')} | {stopped} | {e['other_delay_change_pct']:+.2f} % | "
        f"{_growth(e.get('cross_street_queue_growth'), e.get('cross_street_queue_growth_none'))} |"
    )


def _change(reduction_pct: float | None) -> str:
    """The change against ``none`` (blank when the run had no ``none`` rows)."""
    if reduction_pct is None or not math.isfinite(reduction_pct):
        return ""
    return f"{-reduction_pct:+.1f} %"


def _growth(g: dict[str, Any] | None, none: dict[str, Any] | None = None) -> str:
    """``p50 / p90 / max`` of the cross-street queue growth, % (blank without holds),
    and of the ``none`` runs over the same holds where there are such."""

    def three(x: dict[str, Any] | None) -> str:
        return _qs(x, "growth_pct", ("p50", "p90", "max"), "{:+.0f} %")

    text, control = three(g), three(none)
    return f"{text} (none: {control})" if text and control else text


def table(result: dict[str, Any]) -> str:
    """The Suwon-style table: per behaviour and mode, the mean EV s/km and time to
    hospital with their p10 / p50 / p90 over the EV trips, the trips, the EV's stopped
    time per trip (and its share of the trip) and other traffic's delay change."""
    top = result.get("top_level_ev_behaviour", DEFAULT_EV_BEHAVIOUR)
    blocks = result.get("ev_behaviour") or {top: {m: result[m] for m in MODES if m in result}}
    lines = [
        "| method | EV s/km | p10 / p50 / p90 | EV trips | change vs none | "
        "time to hospital s | p10 / p50 / p90 | EV stopped per trip (share) | "
        "other traffic delay | cross-street queue growth p50 / p90 / max |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| Suwon, before (reported) | {SUWON['before_s_per_km']:.0f} | | | | | | | | |",
        f"| Suwon, center method (reported) | {SUWON['after_s_per_km']:.0f} | | | "
        f"-{SUWON['reduction_pct']} % | | | | | |",
        "| Ulsan, center method (reported) | | | | | | | | | up to +139 % (transient) |",
    ]
    order = [top, *(beh for beh in blocks if beh != top)]
    for beh in order:
        for mode in MODES:
            if mode in blocks.get(beh, {}):
                label = f"twin: {mode}" if beh == top else f"twin: {mode}, EV {beh}"
                lines.append(_table_row(label, blocks[beh][mode]))
    return "\n".join(lines) + "\n"


def _modes(text: str) -> tuple[str, ...]:
    """``--modes`` / ``--siren-modes``: comma-separated names of :data:`MODES`."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown mode(s) {', '.join(unknown)}; allowed: {', '.join(MODES)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds on the district city")
    parser.add_argument(
        "--preset",
        default=None,
        choices=["district", "suwon-scale"],
        help="city (default: district with --quick, suwon-scale without)",
    )
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=101,
        help="seeds 1-3 tuned lead_margin_s; evaluate on others",
    )
    parser.add_argument("--duration-s", type=float, default=2400.0)
    parser.add_argument("--period", default="am_peak")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--ev-behaviour",
        default=DEFAULT_EV_BEHAVIOUR,
        choices=EV_BEHAVIOURS,
        help="the EV behaviour at red whose figures fill the top-level keys (every "
        "behaviour runs; all are under ev_behaviour; default: the scenario default)",
    )
    parser.add_argument(
        "--evs-per-run",
        type=int,
        default=2,
        help="EVs dispatched in each run, every --ev-spacing-s from 600 s on, from the "
        "two fire stations in turn (1-20; default 2)",
    )
    parser.add_argument(
        "--hold-renewals",
        type=int,
        default=None,
        help="renewals of a hold the guard capped, per EV and signal (0-10; default: the "
        "scenario's, 2)",
    )
    parser.add_argument(
        "--renewal-cross-green",
        default=None,
        choices=RENEWAL_CROSS_GREENS,
        help="what the cross street gets before a renewal: its minimum or its planned "
        "green (default: the scenario's, minimum)",
    )
    parser.add_argument(
        "--ev-spacing-s",
        type=float,
        default=300.0,
        help="seconds between two EVs' dispatches (default 300)",
    )
    parser.add_argument(
        "--modes",
        type=_modes,
        default=MODES,
        help=f"comma-separated modes to run (default: all of {','.join(MODES)})",
    )
    parser.add_argument(
        "--siren-modes",
        type=_modes,
        default=None,
        help="the modes to run with siren (default: --modes; '' for none)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.evs_per_run <= 20:
        parser.error(f"--evs-per-run {args.evs_per_run}: allowed 1 to 20")
    if args.hold_renewals is not None and not 0 <= args.hold_renewals <= 10:
        parser.error(f"--hold-renewals {args.hold_renewals}: allowed 0 to 10")
    if args.ev_spacing_s <= 0:
        parser.error(f"--ev-spacing-s {args.ev_spacing_s:g}: must be > 0")
    evs = ev_list(args.evs_per_run, args.ev_spacing_s)
    if evs[-1]["dispatch_s"] >= args.duration_s:
        parser.error(
            f"the last EV is dispatched at {evs[-1]['dispatch_s']:g} s, not before "
            f"--duration-s {args.duration_s:g}: lower --evs-per-run or --ev-spacing-s"
        )
    modes_of = dict.fromkeys(EV_BEHAVIOURS, args.modes)
    if args.siren_modes is not None:
        modes_of["siren"] = args.siren_modes
    n_seeds = args.seeds or (3 if args.quick else 10)
    settings = load_settings(data_dir=args.data_dir)
    data_dir = settings.data_dir
    preset = args.preset or ("district" if args.quick else "suwon-scale")
    city = build_city(preset, seed=1, cities_dir=data_dir / "cities")
    cases: list[tuple[str, int, str | None]] = [
        (mode, seed, beh)
        for seed in range(args.first_seed, args.first_seed + n_seeds)
        for mode, beh in [
            ("baseline", None),
            *((m, b) for b in EV_BEHAVIOURS for m in MODES if m in modes_of[b]),
        ]
    ]
    renewal = (args.hold_renewals, args.renewal_cross_green)  # the center's modes only
    requests = [
        request(_spec(mode, seed, args.duration_s, args.period, beh or DEFAULT_EV_BEHAVIOUR,
                      evs, *(renewal if mode.startswith("center") else (None, None))),
                city, seed=seed, source=f"ev_priority {mode} {beh or ''}".strip(),
                owner="experiments.ev_priority")
        for mode, seed, beh in cases
    ]  # fmt: skip
    records = run_all(settings, requests, workers=args.workers, label="ev priority")
    rows = [
        row(mode, seed, rec, beh) for (mode, seed, beh), rec in zip(cases, records, strict=True)
    ]
    add_cross_holds(settings, rows, records)
    add_hold_caps(settings, rows, records)
    result = summarise(rows, args.ev_behaviour)
    result["city"] = city.name
    result["evs_per_run"] = args.evs_per_run
    result["ev_spacing_s"] = args.ev_spacing_s
    result["hold_renewals"] = args.hold_renewals  # None: the scenario's default
    result["renewal_cross_green"] = args.renewal_cross_green
    result["duration_s"] = args.duration_s
    out_dir = args.json.parent if args.json else Path("out")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ev_priority_table.md").write_text(table(result), encoding="utf-8")
    shares: dict[str, Any] = {}
    for name in ("district", "suwon-scale"):
        c = build_city(name, seed=1, cities_dir=data_dir / "cities")
        for limit_s in (600.0, 180.0):
            without = reachability(c, priority=False, limit_s=limit_s)
            with_ = reachability(c, priority=True, limit_s=limit_s)
            shares[f"{name}_{limit_s / 60:.0f}min"] = {
                "without_priority": round(without.share_within, 4),
                "center_priority": round(with_.share_within, 4),
            }
            if limit_s == 600.0:
                plot_reachability(c, without, with_, out_dir / f"reachability_{name}.png")
    result["reachability_share"] = shares
    result["suwon_reported"] = SUWON
    result["runs"] = sorted(rows, key=lambda r: (r["mode"], r["ev_behaviour"] or "", r["seed"]))
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
