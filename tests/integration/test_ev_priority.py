"""EV priority end to end in real SUMO: safety, effect, determinism, GPS failure, bad input."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from experiments.ev_priority import cross_queue_growth, growth_summary
from tests import mmu
from tests.integration.test_controllers import monitored

pytestmark = pytest.mark.sumo


def _spec(mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"ev-{mode}", "kind": "ev_priority", "seed": 5, "mode": mode,
        "sim": {"duration_s": 1200.0},
        "evs": [{"id": "amb1", "dispatch_s": 60.0, "station": "fire_station_1",
                 "call_edge": None, "on_scene_s": 30.0}],
        **extra,
    }  # fmt: skip


def _run(city_path: str, run_dir: str, raw: dict[str, Any], record: bool) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.ev_priority import EvPriority
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    spec = parse_scenario(raw)
    extra: tuple[Path, ...] = ()
    record_path = None
    if record:  # SUMO records every signal's state every step, for the monitor
        recorder, record_path = mmu.recorder_for(city, Path(run_dir))
        extra = (recorder,)
    result = simulate(spec, city, EvPriority(spec), seed=spec.seed, run_dir=Path(run_dir),
                      extra_additional=extra)  # fmt: skip
    series = {k: result.series[k] for k in ("ev_holds", "approach_queues") if k in result.series}
    return {"metrics": result.metrics, "events": result.events, "series": series,
            "record": str(record_path) if record_path else None}  # fmt: skip


def _in_process(city: City, tmp_path: Path, name: str, raw: dict[str, Any],
                record: bool = False) -> dict[str, Any]:  # fmt: skip
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_run, (str(city.path), str(tmp_path / name), raw, record))


@pytest.fixture(scope="module")
def center(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The center method's run, SUMO recording every signal (the recorder changes no
    traffic: the determinism test below runs the same spec without it)."""
    tmp = tmp_path_factory.mktemp("ev-center")
    return _in_process(district_city, tmp, "center", _spec("center"), record=True)


def test_center_priority_is_safe_and_helps(
    district_city: City, tmp_path: Path, center: dict[str, Any]
) -> None:
    none = _in_process(district_city, tmp_path, "none", _spec("none"))
    m, n = center["metrics"], none["metrics"]
    assert m["ev_arrived"] == 1 and n["ev_arrived"] == 1
    assert m["ev_preempted_signals"] >= 3 and n["ev_preempted_signals"] == 0
    assert m["guard_late_changes"] == 0  # every change shown when due
    assert m["ev_time_to_hospital_s"] < n["ev_time_to_hospital_s"]
    assert m["ev_stopped_s"] < n["ev_stopped_s"]
    # every hold is released (passed, arrived, or GPS stale) before the run ends
    requests = [e for e in center["events"] if e["kind"] == "priority_request"]
    releases = [e for e in center["events"] if e["kind"] == "priority_release"]
    assert {e["tls"] for e in requests} == {e["tls"] for e in releases}
    # what SUMO showed, every step, obeys the safety rules (min greens incl. pedestrian
    # minimums from each signal's first green, 3 s yellow ending in red, the all-red
    # promise before a conflicting green, no conflicting greens): the independent monitor
    monitored(district_city, center["record"]).assert_clean(min_greens=100, min_yellows=100)
    # each hold, with the approaches it held red: a signal the center asked for, while
    # it was asked for, and the cross street's queue then, against the run without
    # priority (experiments.ev_priority's cross-street queue growth)
    holds = center["series"]["ev_holds"]
    assert set(holds["tls_id"]) == {e["tls"] for e in requests}
    first_ask = {}
    for e in requests:
        first_ask.setdefault(e["tls"], e["t_s"])
    last_release = {e["tls"]: e["t_s"] for e in releases}
    queues = center["series"]["approach_queues"]
    for h in holds.itertuples():
        assert first_ask[h.tls_id] <= h.start_s <= h.end_s <= last_release[h.tls_id]
        cross = set(h.cross_edges.split(","))
        approaches = set(queues.loc[queues["tls_id"] == h.tls_id, "edge_id"])
        assert cross and cross < approaches  # some approaches, not the EV's own
    growth = cross_queue_growth(holds, queues, none["series"]["approach_queues"])
    assert len(growth) == len(holds)
    assert all(g["cross_queue_veh"] >= 0 and g["base_queue_veh"] >= 0 for g in growth)
    assert growth_summary(growth)["holds"] == len(holds)


def test_same_seed_same_ev_metrics(
    district_city: City, tmp_path: Path, center: dict[str, Any]
) -> None:
    again = _in_process(district_city, tmp_path, "again", _spec("center"))
    assert again["metrics"] == center["metrics"]


def test_a_capped_hold_is_renewed_only_while_the_cross_street_shows_green(
    district_city: City, tmp_path: Path
) -> None:
    """With a 10 s cap most holds end before the EV comes; the center asks again (once
    here) only while SUMO shows another stage's green at that signal, and what SUMO
    showed stays safe (the independent monitor)."""
    raw = _spec("center", max_hold_s=10.0, hold_renewals=1)
    out = _in_process(district_city, tmp_path, "renew", raw, record=True)
    events, m = out["events"], out["metrics"]
    assert m["ev_arrived"] == 1
    renewed = [e for e in events if e["kind"] == "priority_renewed"]
    assert renewed and m["ev_hold_renewals"] == len(renewed)
    assert len({e["tls"] for e in renewed}) == len(renewed)  # at most one per signal
    asked = [(e["tls"], e["t_s"]) for e in events if e["kind"] == "priority_request"]
    capped = {(e["tls_id"], e["t_s"]) for e in events if e["kind"] == "guard_priority_expired"}
    shown = mmu.read_tls_states(Path(out["record"]))
    greens = {sig.id: [p.state for p in sig.phases if p.kind == "green"]
              for sig in district_city.manifest.signals}  # fmt: skip
    for e in renewed:
        tls, t = e["tls"], e["t_s"]
        # the hold it renews (a route may pass a signal twice) was capped since it was asked
        last_ask = max(a_t for a_tls, a_t in asked if a_tls == tls and a_t <= t)
        assert any(c_tls == tls and last_ask < c_t <= t for c_tls, c_t in capped)
        state = [st for at, st in shown[tls] if at <= t][-1]  # what SUMO showed then
        others = [g for k, g in enumerate(greens[tls]) if k != e["stage"]]
        assert state in others, f"{tls} renewed at {t} s while SUMO showed {state}"
    spent = [e for e in events if e["kind"] == "priority_renewals_spent"]
    assert all(e["renewals"] == 1 for e in spent)
    monitored(district_city, out["record"]).assert_clean(min_greens=100, min_yellows=100)


def test_stale_gps_releases_priority_within_a_second(district_city: City, tmp_path: Path) -> None:
    raw = _spec("center", gps={"drop_rate": 0.6, "latency_s": 1.0})
    out = _in_process(district_city, tmp_path, "stale", raw)
    events = out["events"]
    stale = [k for k, e in enumerate(events) if e["kind"] == "ev_gps_stale"]
    assert stale, "with 60 % of fixes dropped the GPS must go stale at some point"
    for k in stale:
        t_stale = events[k]["t_s"]
        held: set[str] = set()
        for e in events[:k]:  # what the EV held when its track went stale
            if e["kind"] == "priority_request":
                held.add(e["tls"])
            elif e["kind"] == "priority_release":
                held.discard(e["tls"])
        released = {
            e["tls"]
            for e in events[k:]
            if e["kind"] == "priority_release" and e["t_s"] <= t_stale + 1.0
        }
        assert held <= released, f"still held 1 s after GPS went stale at {t_stale}: {held}"
        # (a fresh fix a second later may ask again: the center plans from it anew)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"station": "nowhere"}, "evs[0].station"),
        ({"destination": "hospital_99"}, "evs[0].destination"),
        ({"call_edge": "not_an_edge"}, "off the network"),
    ],
)
def test_bad_ev_input_names_the_field(district_city: City, tmp_path: Path,
                                      change: dict[str, Any], needle: str) -> None:  # fmt: skip
    from scenarios.ev_priority import EvPriority
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate
    from twin.errors import ScenarioError

    raw = _spec("center")
    raw["evs"][0].update(change)
    spec = parse_scenario(raw)
    with pytest.raises(ScenarioError) as err:
        simulate(spec, district_city, EvPriority(spec), seed=1, run_dir=tmp_path)
    assert needle in str(err.value)


def test_dispatch_outside_the_run_is_refused() -> None:
    from scenarios.loader import parse_scenario
    from twin.errors import ScenarioError

    raw = _spec("center")
    raw["evs"][0]["dispatch_s"] = 5000.0
    with pytest.raises(ScenarioError, match=r"evs\[0\]\.dispatch_s"):
        parse_scenario(raw, source="ev.toml")
