"""A restarted center resumes from its audit log visit by visit: a route that passes a
signal twice, served at the first pass before the crash, is asked again at the second;
a new mission of the same vehicle starts afresh; an ended one is not resumed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from city_models.build import City
from city_models.graph import edge_graph, fastest_route
from tests.twin.live.harness import KEY
from twin.app.live.audit import AuditLog
from twin.app.live.service import replay_audit, unserved_visits
from twin.center.preemption import TrackedEv


def _there_and_back(city: City) -> list[str]:
    pois = {p.id: p for p in city.manifest.pois}
    g = edge_graph(city.net)
    out = fastest_route(g, pois["fire_station_2"].edge, pois["hospital_1"].edge)
    back = fastest_route(g, out[-1], pois["fire_station_2"].edge)
    return [*out, *back[1:]]


def test_a_signal_passed_twice_is_asked_again_on_the_second_pass(
    district_city: City, tmp_path: Path
) -> None:
    route = _there_and_back(district_city)
    track = TrackedEv(id="amb1", kind="ambulance", severity=3)
    specs = {s.id: s for s in district_city.manifest.signals}
    track.follow(route, district_city.net, specs, stale_after_s=3.0)
    visits = [s.tls for s in track.signals]
    twice = [t for t, n in Counter(visits).items() if n == 2]
    assert twice, visits  # the way back passes some signals again
    k = visits.index(twice[0])  # served up to the first pass of that signal

    # the audit a center killed there leaves behind (written by the real AuditLog)
    with AuditLog(tmp_path / "audit.jsonl", key=KEY).open() as audit:
        audit.append("mission", ev="amb9", agency="fire", mission={"vehicle": "amb9"})
        audit.append("priority_release", ev="amb9", tls=visits[0], reason="passed")
        audit.append("mission_end", ev="amb9", reason="arrived")  # ended: not resumed
        audit.append("mission", ev="amb1", agency="fire", mission={"vehicle": "amb1"})
        for tls in visits[: k + 1]:
            audit.append("priority_request", ev="amb1", tls=tls, stage=0)
            audit.append("priority_release", ev="amb1", tls=tls, reason="passed")
        audit.append("priority_request", ev="amb1", tls=visits[k + 1], stage=0)  # held at the crash
        records = list(audit.records())

    missions, served, ended = replay_audit(records)
    assert set(missions) == {"amb1"} and ended == {"amb9"}
    kept = [s.tls for s in unserved_visits(track.signals, served["amb1"])]
    assert kept == visits[k + 1 :]
    assert twice[0] in kept  # its second pass is still to be asked for
    assert visits[k + 1] in kept  # the one held at the crash is asked again

    # a released-for-another-reason signal is not served; a new mission starts afresh
    more = [*records, {"kind": "priority_release", "ev": "amb1", "tls": visits[k + 1],
                       "reason": "gps_stale"}]  # fmt: skip
    assert replay_audit(more)[1]["amb1"] == served["amb1"]
    again = [*records, {"kind": "mission", "ev": "amb1", "mission": {"vehicle": "amb1"}}]
    assert "amb1" not in replay_audit(again)[1]
