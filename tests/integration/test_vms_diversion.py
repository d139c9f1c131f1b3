"""VMS diversion end to end in real SUMO: lanes close, signs show it after the detection
delay, compliant drivers reroute, a closure that cuts off destinations is survived,
the EV-only message follows an emergency vehicle, same seed gives the same metrics."""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from scenarios.loader import library_scenarios
from tests import mmu, spawned

pytestmark = pytest.mark.sumo

START_S, END_S, DETECT_S = 200.0, 800.0, 60.0


def _spec(**patch: Any) -> dict[str, Any]:
    raw = tomllib.loads(library_scenarios()["vms_diversion"].read_text(encoding="utf-8"))
    raw["sim"] = {"duration_s": 1000.0}
    raw["incidents"][0].update(start_s=START_S, end_s=END_S, detection_delay_s=DETECT_S)
    for key, value in patch.items():
        raw[key] = value
    return raw


def _run(city_path: str, run_dir: str, raw: dict[str, Any], monitor: bool) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.loader import parse_scenario
    from scenarios.registry import get_kind
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    spec = parse_scenario(raw)
    extra: tuple[Path, ...] = ()
    record = None
    if monitor:  # SUMO's own record of every signal, for the independent monitor
        recorder, record = mmu.recorder_for(city, Path(run_dir))
        extra = (recorder,)
    result = simulate(
        spec, city, get_kind(spec.kind).make(spec), seed=spec.seed, run_dir=Path(run_dir),
        extra_additional=extra,
    )  # fmt: skip
    return {"metrics": result.metrics, "events": result.events, "series": result.series,
            "record": str(record) if record else None}  # fmt: skip


def _in_process(
    city: City, run_dir: Path, raw: dict[str, Any], *, monitor: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = spawned.in_process(_run, str(city.path), str(run_dir), raw, monitor)
    return out


@pytest.fixture(scope="module")
def runs(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("vms")
    full = {"incident_detour": 1.0, "incident_warning": 1.0, "travel_time": 0.0}
    return {
        "none": _in_process(district_city, tmp / "none", _spec(vms=False)),
        "all": _in_process(district_city, tmp / "all", _spec(compliance=full)),
    }


def test_incident_and_signs_follow_the_timeline(runs: dict[str, Any]) -> None:
    events = runs["all"]["events"]
    kinds = [e["kind"] for e in events]
    for kind in ("incident_start", "incident_detected", "incident_end"):
        assert kinds.count(kind) == 1
    start = next(e["t_s"] for e in events if e["kind"] == "incident_start")
    assert start == START_S
    incident_msgs = [e for e in events if e["kind"] == "vms_message" and e.get("incident")]
    assert incident_msgs
    # no sign knows of the crash before the center detects it
    assert min(e["t_s"] for e in incident_msgs) >= START_S + DETECT_S
    assert not [e for e in runs["none"]["events"] if e["kind"] == "vms_message"]


def test_compliant_drivers_divert_and_relieve_the_incident(runs: dict[str, Any]) -> None:
    m, n = runs["all"]["metrics"], runs["none"]["metrics"]
    assert n["affected_veh"] == 0 and n["diverted_share"] == 0.0
    assert m["affected_veh"] >= 10
    assert m["diverted_share"] >= 0.8  # SUMO found a way round for nearly everyone told
    assert m["detour_trip_s"] > 0
    # fewer vehicles squeeze past the crash when the signs send them round it
    assert m["incident_throughput_veh"] < n["incident_throughput_veh"]
    # the closed lanes really are closed: the crash makes a queue behind it
    assert n["incident_queue_max_veh"] >= 5
    series = runs["all"]["series"]["incident"]
    assert {"t_s", "queue_veh", "passed_veh"} <= set(series.columns)


def test_closure_that_cuts_off_destinations_is_survived(
    district_city: City, tmp_path: Path
) -> None:
    """Close, for the whole run, the street most trips end on: those trips cannot arrive;
    the run completes and counts them."""
    from city_models.demand import sample_trips

    raw = _spec(vms=False, sim={"duration_s": 600.0})
    raw["demand"]["scale"] = 1.0
    trips = sample_trips(district_city.manifest.demand, period="pm_peak", duration_s=600.0,
                         seed=raw["seed"], scale=1.0)  # fmt: skip
    target, _count = Counter(t.to_edge for t in trips).most_common(1)[0]
    raw["incidents"] = [{"id": "closed", "edge": target, "closed_lanes": "all",
                         "start_s": 0.0, "end_s": 600.0, "detection_delay_s": 0.0}]  # fmt: skip
    out = _in_process(district_city, tmp_path / "closed", raw)
    m = out["metrics"]
    assert m["unreachable_veh"] >= 1
    assert any(e["kind"] == "vehicle_unreachable" for e in out["events"])
    assert m["throughput_veh"] > 100  # everyone else still gets home


def test_ev_only_message_follows_the_emergency_vehicle(district_city: City, tmp_path: Path) -> None:
    from city_models.graph import edge_graph, fastest_route

    graph = edge_graph(district_city.net)
    station = next(p for p in district_city.manifest.pois if p.id == "fire_station_1")
    call = sign = None
    for vms in district_city.manifest.vms:  # a call just past a sign the EV drives by
        for beyond in sorted(graph.successors(f"{vms.edge}_pocket")):
            if vms.edge in fastest_route(graph, station.edge, beyond):
                call, sign = beyond, vms.id
                break
        if call:
            break
    assert call is not None, "no sign on any fastest route from fire_station_1"
    raw = {"name": "ev-vms", "kind": "vms_diversion", "seed": 3,
           "sim": {"duration_s": 900.0}, "demand": {"period": "pm_peak"},
           "ev_signs": [sign], "compliance": {"ev_clear": 1.0},
           "evs": [{"id": "amb1", "dispatch_s": 60.0, "station": "fire_station_1",
                    "call_edge": call, "on_scene_s": 30.0}]}  # fmt: skip
    out = _in_process(district_city, tmp_path / "ev", raw, monitor=True)
    # the EV's priority drives the (guarded) signals: SUMO's record must be clean
    mmu.check_city_record(Path(out["record"]), district_city).assert_clean(
        min_greens=100, min_yellows=500
    )
    assert out["metrics"]["ev_preempted_signals"] >= 1
    ev_msgs = [e for e in out["events"] if e["kind"] == "vms_message" and e["sign"] == sign]
    on = [e["t_s"] for e in ev_msgs if e["message"] == "ev_clear"]
    off = [e["t_s"] for e in ev_msgs if e["message"] != "ev_clear" and on and e["t_s"] > on[0]]
    assert on and off  # shown as the ambulance approached, taken down once it passed
    assert out["metrics"]["ev_arrived"] == 1
    assert off[0] - on[0] <= 120.0


def test_same_seed_same_vms_metrics(
    runs: dict[str, Any], district_city: City, tmp_path: Path
) -> None:
    full = {"incident_detour": 1.0, "incident_warning": 1.0, "travel_time": 0.0}
    again = _in_process(district_city, tmp_path / "again", _spec(compliance=full))
    # (compared as JSON: NaN, e.g. a recovery after the run's end, equals itself there)
    same = json.dumps(again["metrics"], sort_keys=True) == json.dumps(
        runs["all"]["metrics"], sort_keys=True
    )
    assert same
