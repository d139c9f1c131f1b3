"""experiments.ev_priority without SUMO: the EVs of a run, one line per EV trip (the
scenario's metrics with SUMO's tripinfo) and the distribution over the trips of every
behaviour and mode, next to the top-level keys that other tools read."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from experiments.ev_priority import (
    DISTRIBUTION_KEYS,
    EV_IDS,
    MODES,
    _spec,
    add_cross_holds,
    add_hold_caps,
    cross_queue_growth,
    distribution,
    ev_list,
    growth_summary,
    hold_caps,
    quantiles,
    summarise,
    table,
    trip_rows,
)
from scenarios.loader import parse_scenario
from twin.config import Settings
from twin.engine.store import RunStore
from twin.errors import ScenarioError

TOP_KEYS = {"ev_s_per_km", "time_to_hospital_s", "other_delay_change_pct", "ev_stops",
            "ev_stopped_s", "preempted_signals", "cross_street_max_queue_veh",
            "recovery_mean_s", "evs_arrived", "seeds", "reduction_pct"}  # fmt: skip


def _trip(s_per_km: float, *, arrived: bool = True, km: float = 5.0) -> dict[str, Any]:
    return {"ev": "amb1", "arrived": arrived, "s_per_km": s_per_km,
            "time_to_hospital_s": s_per_km * km, "distance_km": km, "stops": 3,
            "stopped_s": 10.0 * km, "stopped_s_per_km": 10.0,
            "free_flow_s_per_km": 55.0, "slowed_s_per_km": 20.0,
            "standing_s_per_km": 9.0}  # fmt: skip


def test_the_default_run_keeps_its_two_evs() -> None:
    spec = _spec("center", 101, 2400.0, "am_peak")
    assert spec["evs"] == [
        {"id": "amb1", "dispatch_s": 600.0, "station": "fire_station_1"},
        {"id": "amb2", "dispatch_s": 900.0, "station": "fire_station_2"},
    ]
    assert tuple(ev["id"] for ev in spec["evs"]) == EV_IDS


def test_more_evs_per_run_alternate_stations_and_are_staggered() -> None:
    evs = ev_list(20, 90.0)
    assert [ev["id"] for ev in evs] == [f"amb{k}" for k in range(1, 21)]
    assert [ev["dispatch_s"] for ev in evs[:3]] == [600.0, 690.0, 780.0]
    assert evs[-1]["dispatch_s"] == 600.0 + 19 * 90.0
    assert {ev["station"] for ev in evs[::2]} == {"fire_station_1"}
    assert {ev["station"] for ev in evs[1::2]} == {"fire_station_2"}
    spec = _spec("none", 1, 3600.0, "am_peak", "siren", evs)
    assert len(spec["evs"]) == 20 and spec["ev_behaviour"] == "siren"


def test_hold_renewals_reach_the_scenario_only_when_asked() -> None:
    assert "hold_renewals" not in _spec("center", 1, 1200.0, "am_peak")
    spec = _spec("center", 1, 1200.0, "am_peak", hold_renewals=0)
    assert parse_scenario(spec).hold_renewals == 0  # type: ignore[attr-defined]
    assert parse_scenario(_spec("center", 1, 1200.0, "am_peak")).hold_renewals == 2  # type: ignore[attr-defined]
    with pytest.raises(ScenarioError, match=r"hold_renewals.*-1"):
        parse_scenario(_spec("center", 1, 1200.0, "am_peak", hold_renewals=-1))


@pytest.mark.parametrize(("n", "spacing_s"), [(0, 60.0), (21, 60.0), (2, 0.0)])
def test_a_bad_ev_count_or_spacing_is_refused(n: int, spacing_s: float) -> None:
    with pytest.raises(ValueError, match=r"evs_per_run|spacing_s"):
        ev_list(n, spacing_s)


def test_quantiles_interpolate_and_skip_missing_values() -> None:
    values = [float(v) for v in range(1, 12)] + [None, math.nan]  # 1..11
    assert quantiles(values) == {"p10": 2.0, "p50": 6.0, "p90": 10.0}
    assert quantiles([None, math.nan]) == {"p10": None, "p50": None, "p90": None}


def test_trip_rows_split_the_trip_into_speed_limits_slow_driving_and_standing() -> None:
    per_ev: dict[str, dict[str, Any]] = {
        "amb2": {"arrived": True, "time_to_hospital_s": 500.0, "distance_km": 5.0,
                 "s_per_km": 100.0, "stops": 4, "stopped_s": 100.0, "hospital": "h1"},
        "amb10": {"arrived": False, "time_to_hospital_s": None, "distance_km": 1.0,
                  "s_per_km": None, "stops": 1, "stopped_s": 0.0, "hospital": "h2"},
    }  # fmt: skip
    tripinfo = {"amb2": {"id": "amb2", "arrival": "1400", "duration": "560",
                         "stopTime": "60", "timeLoss": "225", "waitingTime": "90"}}  # fmt: skip
    rows = trip_rows(per_ev, tripinfo, {"amb2": {"station": "fire_station_2"}})
    assert [r["ev"] for r in rows] == ["amb2", "amb10"]  # amb2 before amb10
    a = rows[0]
    assert a["station"] == "fire_station_2" and a["arrived"]
    assert a["stopped_share"] == pytest.approx(0.2) and a["stopped_s_per_km"] == 20.0
    # 560 - 60 s on scene = 500 s moving: 275 s at the limits, 135 s slowed, 90 s standing
    assert a["free_flow_s_per_km"] == pytest.approx(55.0)
    assert a["slowed_s_per_km"] == pytest.approx(27.0)
    assert a["standing_s_per_km"] == pytest.approx(18.0)
    assert (a["free_flow_s_per_km"] + a["slowed_s_per_km"] + a["standing_s_per_km"]
            == pytest.approx(a["s_per_km"]))  # fmt: skip
    b = rows[1]
    assert not b["arrived"] and math.isnan(b["s_per_km"]) and math.isnan(b["free_flow_s_per_km"])


def test_distribution_counts_arrived_trips_only() -> None:
    trips = [_trip(v) for v in (80.0, 90.0, 100.0, 110.0, 120.0)] + [_trip(0.0, arrived=False)]
    out = distribution(trips)
    assert (out["ev_trips"], out["ev_dispatched"]) == (5, 6)
    assert out["ev_s_per_km_trips"] == [80.0, 90.0, 100.0, 110.0, 120.0]
    assert (out["ev_s_per_km_p10"], out["ev_s_per_km_p50"], out["ev_s_per_km_p90"]) == (
        84.0, 100.0, 116.0)  # fmt: skip
    assert out["time_to_hospital_s_p50"] == 500.0
    assert out["ev_stopped_share"] == pytest.approx(50.0 * 5 / (5 * 500.0))
    assert out["ev_stops_trips"] == [3] * 5
    assert out["ev_free_flow_s_per_km"] == 55.0 and out["ev_standing_s_per_km"] == 9.0
    empty = distribution([])
    assert empty["ev_trips"] == 0 and empty["ev_s_per_km_p50"] is None
    assert empty["ev_stopped_share"] is None


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for seed in (1, 2):
        rows.append({"mode": "baseline", "seed": seed, "ev_behaviour": None,
                     "mean_delay_s": 100.0, "trips": []})  # fmt: skip
        for k, mode in enumerate(MODES):
            s_per_km = 200.0 - 30.0 * k + seed  # none 201/202, center 141/142
            trips = [_trip(s_per_km - 5.0), _trip(s_per_km + 5.0)]
            rows.append({
                "mode": mode, "seed": seed, "ev_behaviour": "obey_red",
                "mean_delay_s": 101.0, "ev_s_per_km": s_per_km,
                "ev_time_to_hospital_s": 5.0 * s_per_km, "ev_stops": 3, "ev_stopped_s": 50.0,
                "ev_preempted_signals": k, "ev_arrived": 2, "cross_street_max_queue_veh": 1.0,
                "recovery_mean_s": None, "ev_red_passes": None, "collisions": 0,
                "ev_collisions": None, "ev_conflicts": k, "trips": trips,
                "cross_holds": [{"growth_pct": 50.0 * k + seed, "growth_veh": float(k)}],
                "cross_holds_none": [{"growth_pct": float(seed), "growth_veh": 0.0}] * (k > 0),
            })  # fmt: skip
    return rows


def test_summarise_adds_the_distribution_to_the_block_and_keeps_the_top_level() -> None:
    out = summarise(_rows())
    for mode in MODES:
        assert set(out[mode]) == TOP_KEYS  # what other tools read, unchanged
    center = out["ev_behaviour"]["obey_red"]["center"]
    assert set(DISTRIBUTION_KEYS) <= set(center)
    assert center["ev_trips"] == 4 and center["ev_dispatched"] == 4
    # the trips of both seeds, in run order: 141 ± 5, 142 ± 5
    assert center["ev_s_per_km_trips"] == [136.0, 146.0, 137.0, 147.0]
    assert center["ev_s_per_km_p50"] == pytest.approx(141.5)
    assert center["ev_conflicts"] == 4  # 2 per run, 2 seeds
    assert out["center"]["ev_s_per_km"] == 141.5
    # one hold per run: center (k = 2) grew its cross street by 101 % and 102 %
    growth = center["cross_street_queue_growth"]
    assert growth["holds"] == 2 and growth["growth_pct_mean"] == 101.5
    assert growth["growth_pct_max"] == 102.0 and growth["growth_veh_mean"] == 2.0
    # the none runs over the same holds: +1 % and +2 % (none itself has no holds)
    assert center["cross_street_queue_growth_none"]["growth_pct_mean"] == 1.5
    assert out["ev_behaviour"]["obey_red"]["none"]["cross_street_queue_growth_none"]["holds"] == 0
    assert out["center"]["reduction_pct"] == pytest.approx(round(100 * 60 / 201.5, 2))


def test_the_table_shows_the_quantiles_and_the_trips() -> None:
    text = table(summarise(_rows()))
    header = text.splitlines()[0]
    assert "p10 / p50 / p90" in header and "EV trips" in header
    center = next(ln for ln in text.splitlines() if ln.startswith("| twin: center |"))
    cells = [c.strip() for c in center.strip("|").split("|")]
    assert cells[1] == "142"  # mean s/km (141.5, rounded half to even)
    assert cells[2] == "136 / 142 / 147" and cells[3] == "4"
    assert cells[7] == "50 s (7 %)"  # stopped per trip (share of the trip)
    assert "cross-street queue growth" in header
    # p50 / p90 / max over the holds, and the none runs over the same holds
    assert cells[9] == "+102 % / +102 % / +102 % (none: +2 % / +2 % / +2 %)"


def _queues(rows: list[tuple[float, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["t_s", "tls_id", "edge_id", "queue_max_veh"])


def test_the_table_leaves_the_change_blank_without_none_runs() -> None:
    out = summarise([r for r in _rows() if r["mode"] != "none"])
    assert math.isnan(out["center"]["reduction_pct"])
    line = next(ln for ln in table(out).splitlines() if ln.startswith("| twin: center |"))
    assert "nan" not in line and line.split(" | ")[4] == ""


def test_cross_queue_growth_compares_the_held_approaches_in_the_hold_window() -> None:
    holds = pd.DataFrame(
        [("amb1", "A", 100.0, 130.0, "e1,e2"), ("amb1", "B", 300.0, 310.0, "f1"),
         ("amb2", "A", 500.0, 520.0, "")],
        columns=["ev", "tls_id", "start_s", "end_s", "cross_edges"],
    )  # fmt: skip
    run = _queues([
        (60.0, "A", "e1", 50.0),  # before the hold: not read
        (120.0, "A", "e1", 6.0), (180.0, "A", "e2", 9.0),  # inside (100, 130 + 60]
        (120.0, "A", "e3", 40.0),  # the EV's own approach: not a cross edge
        (240.0, "A", "e1", 30.0),  # after the window
        (360.0, "B", "f1", 3.0),
    ])  # fmt: skip
    base = _queues([
        (120.0, "A", "e1", 4.0), (180.0, "A", "e2", 6.0), (240.0, "A", "e1", 1.0),
        (360.0, "B", "f1", 0.0),
    ])  # fmt: skip
    out = cross_queue_growth(holds, run, base)
    assert [(h["tls_id"], h["held_s"]) for h in out] == [("A", 30.0), ("B", 10.0)]
    a, b = out
    assert (a["cross_queue_veh"], a["base_queue_veh"], a["growth_veh"]) == (9.0, 6.0, 3.0)
    assert a["growth_pct"] == 50.0
    assert b["growth_veh"] == 3.0 and b["growth_pct"] is None  # no base queue to compare
    summary = growth_summary(out)
    assert summary["holds"] == 2 and summary["holds_with_base_queue"] == 1
    assert summary["growth_pct_max"] == 50.0 and summary["growth_veh_mean"] == 3.0
    empty = growth_summary([])
    assert empty["holds"] == 0 and empty["growth_pct_p50"] is None


def test_add_cross_holds_reads_the_runs_series_from_the_store(settings: Settings) -> None:
    store = RunStore.from_settings(settings)
    ids: dict[str, str] = {}
    queue_of = {"baseline": 4.0, "none": 5.0, "center": 8.0}
    for mode, q in queue_of.items():
        rid = store.create_run(scenario_name=mode, scenario_kind="ev_priority", spec={},
                               city_name="c", city_hash="h", seed=1, versions={},
                               run_dir=settings.data_dir / mode)  # fmt: skip
        store.write_series(rid, "approach_queues", _queues([(120.0, "A", "e1", q)]))
        if mode != "baseline":
            holds = [("amb1", "A", 100.0, 110.0, "e1")] if mode == "center" else []
            frame = pd.DataFrame(holds, columns=["ev", "tls_id", "start_s", "end_s",
                                                 "cross_edges"])  # fmt: skip
            store.write_series(rid, "ev_holds", frame)
        store.mark_done(rid, metrics={})
        ids[mode] = rid
    failed = store.create_run(scenario_name="f", scenario_kind="ev_priority", spec={},
                              city_name="c", city_hash="h", seed=2, versions={})  # fmt: skip
    rows = [{"mode": m, "seed": 1, "ev_behaviour": None if m == "baseline" else "obey_red",
             "run_id": ids[m]} for m in queue_of]  # fmt: skip
    rows.append({"mode": "center", "seed": 2, "ev_behaviour": "obey_red", "run_id": failed})
    records = [store.get(r["run_id"]) for r in rows]
    store.close()
    add_cross_holds(settings, rows, records)
    base, none, center, no_series = rows
    assert "cross_holds" not in base and "cross_holds" not in no_series  # a run without series
    assert none["cross_holds"] == [] and "cross_holds_none" not in none
    (hold,) = center["cross_holds"]
    assert (hold["base_queue_veh"], hold["cross_queue_veh"], hold["growth_pct"]) == (
        4.0,
        8.0,
        100.0,
    )
    assert center["cross_holds_none"][0]["growth_pct"] == 25.0  # the none run: 5 against 4


def _events(rows: list[tuple[float, str, str | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["t_s", "kind", "tls", "tls_id"])


CAP_EVENTS = [  # as a run stores them: the scenario's in time order, then the guards'
    (10.0, "priority_request", "A", None),
    (20.0, "priority_request", "B", None),
    (80.0, "priority_renewed", "A", None),  # A, capped at 70 s, renewed
    (95.0, "priority_release", "A", None),
    (99.0, "priority_release", "B", None),  # B, capped at 80 s, never renewed
    (120.0, "priority_request", "D", None),  # D, capped at 180 s; the run ends held
    (70.0, "guard_priority_expired", None, "A"),
    (80.0, "guard_priority_expired", None, "B"),
    (100.0, "guard_priority_expired", None, "C"),  # C was not held: not a hold's cap
    (180.0, "guard_priority_expired", None, "D"),
]


def test_hold_caps_count_caps_while_held_and_those_never_renewed() -> None:
    assert hold_caps(_events(CAP_EVENTS)) == {"holds_capped": 3, "holds_capped_unrenewed": 2}
    assert hold_caps(_events([])) == {"holds_capped": 0, "holds_capped_unrenewed": 0}


def test_add_hold_caps_reads_each_priority_runs_event_log(settings: Settings) -> None:
    store = RunStore.from_settings(settings)
    rows, records = [], []
    for mode, events in (("none", CAP_EVENTS), ("center", CAP_EVENTS), ("center", None)):
        rid = store.create_run(scenario_name=mode, scenario_kind="ev_priority", spec={},
                               city_name="c", city_hash="h", seed=1, versions={},
                               run_dir=settings.data_dir / f"{mode}-{len(rows)}")  # fmt: skip
        if events is not None:  # the last stands for a run recorded without its events
            store.write_series(rid, "events", _events(events).drop(columns=["tls_id"])
                               if mode == "none" else _events(events))  # fmt: skip
        store.mark_done(rid, metrics={})
        rows.append({"mode": mode, "seed": 1, "ev_behaviour": "obey_red", "run_id": rid})
        records.append(store.get(rid))
    store.close()
    add_hold_caps(settings, rows, records)
    none, center, no_events = rows
    assert "holds_capped" not in none  # nothing is held without priority
    assert (center["holds_capped"], center["holds_capped_unrenewed"]) == (3, 2)
    assert "holds_capped" not in no_events
    # summed over a mode's runs, in the behaviour block only (top-level keys unchanged)
    runs = [r | {"holds_capped": 3, "holds_capped_unrenewed": 2} if r["mode"] == "center"
            else r for r in _rows()]  # fmt: skip
    out = summarise(runs)
    block = out["ev_behaviour"]["obey_red"]["center"]
    assert (block["holds_capped"], block["holds_capped_unrenewed"]) == (6, 4)  # 2 seeds
    assert out["ev_behaviour"]["obey_red"]["none"]["holds_capped"] is None
    assert set(out["center"]) == TOP_KEYS
