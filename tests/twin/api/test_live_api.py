"""The live router through the API: real HTTP and WebSocket requests (the TestClient)
into an app with a running live service attached, as ``twin live`` attaches one.

The service runs on the TestClient's own event loop (its portal), the loop the app's
handlers run on, as in ``twin live`` where the service and the API share one loop; it
commands one emulated controller (a real SNMP agent in another process) at 10x. One
app and one service serve the whole module; each test makes its own keys.
"""

from __future__ import annotations

import functools
import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from city_models.build import City
from tests.twin.api.conftest import Api, link_district
from tests.twin.api.work import work as stand_in
from tests.twin.live.harness import Center, ev, start_center
from twin.app.api import create_app, load_api_settings
from twin.app.live.clock import LiveClock
from twin.app.live.procs import EmulatorProcess, start_emulator
from twin.app.live.service import LiveService
from twin.app.live.trace import Trace, gps_message

SIGNAL = "n9_11"
LIVE_TENANT = "city"
"""The tenant that owns live mode (``LiveOptions.tenant``'s default)."""


@dataclass
class LiveApi:
    api: Api
    center: Center
    emulator: EmulatorProcess
    city: City
    trace: Trace
    clock: LiveClock

    @property
    def svc(self) -> LiveService:
        return self.center.svc

    @property
    def client(self) -> TestClient:
        return self.api.client

    def key(self, role: str, tenant: str = LIVE_TENANT) -> dict[str, str]:
        return self.api.key(tenant, role)

    def fix(self, vehicle: str, k: int = 0) -> dict[str, Any]:
        _t, x, y, v = self.trace.points[k]
        return gps_message(self.city, vehicle, t_wall=time.time(), x_m=x, y_m=y, speed_mps=v)

    def mission(self, vehicle: str, *, agency: str = "fire", role: str = "fire") -> None:
        body = {"vehicle": vehicle, "agency": agency, "route": self.trace.route}
        r = self.client.post("/v1/live/missions", json=body, headers=self.key(role))
        assert r.status_code == 201, r.text
        assert r.json()["vehicle"] == vehicle and r.json()["signals"] == [SIGNAL]


@pytest.fixture(scope="module")
def live_api(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    tmp = tmp_path_factory.mktemp("live-api")
    link_district(tmp / "data", district_city)
    settings = load_api_settings(data=tmp / "data", run_workers=0)
    clock = LiveClock.time_of_day(10.0)
    em = start_emulator(
        district_city.path,
        clock=clock,
        workdir=tmp / "emulator",
        field_backup_time_s=6,
        field_heartbeat_s=2.0,
    )
    client = TestClient(create_app(settings, work=stand_in))
    client.__enter__()
    center: Center | None = None
    try:
        api = Api(client, settings)
        api.tenant(LIVE_TENANT)
        api.tenant("lab")
        start = functools.partial(start_center, district_city, em, clock, tmp, signals=[SIGNAL])
        center = client.portal.call(start)  # type: ignore[union-attr]
        client.app.state.live = center.svc  # type: ignore[attr-defined]
        trace = ev(district_city, "x", "fire_station_1", "hospital_1")
        yield LiveApi(api, center, em, district_city, trace, clock)
    finally:
        if center is not None:
            stop = functools.partial(center.svc.stop, hand_back=False)
            client.portal.call(stop)  # type: ignore[union-attr]
        client.__exit__(None, None, None)
        em.stop()


def _records(live: LiveApi, kind: str) -> list[dict[str, Any]]:
    return live.center.records(kind)


# --------------------------------------------------------------------------- no service
def test_live_routes_answer_503_without_a_live_service(api: Api) -> None:
    api.tenant(LIVE_TENANT)
    operator, fire = api.key(LIVE_TENANT, "operator"), api.key(LIVE_TENANT, "fire")
    for method, path, headers in [
        ("GET", "/v1/live/status", operator),
        ("GET", "/v1/live/audit", operator),
        ("POST", "/v1/live/gps", fire),
        ("POST", "/v1/live/detectors", operator),
        ("GET", "/v1/live/spat", fire),
    ]:
        r = api.client.request(method, path, headers=headers, content=b"{}")
        assert r.status_code == 503, (path, r.text)
        assert "twin live" in r.text
    # the role is checked first: a researcher may not send GPS with or without a service
    r = api.client.post("/v1/live/gps", headers=api.key(LIVE_TENANT, "researcher"), content=b"{}")
    assert r.status_code == 403
    # the WebSocket is closed (policy violation) with the same reason
    ws_url = "/v1/live/gps/ws"
    with (
        pytest.raises(WebSocketDisconnect) as exc,
        api.client.websocket_connect(ws_url, headers=fire) as ws,
    ):
        ws.receive_text()
    assert exc.value.code == 1008 and "twin live" in str(exc.value.reason)


# --------------------------------------------------------------------------- GPS
@pytest.mark.slow
def test_fire_posts_gps_and_gets_the_verdict(live_api: LiveApi) -> None:
    live = live_api
    live.mission("amb_http")
    fire = live.key("fire")
    r = live.client.post("/v1/live/gps", content=json.dumps(live.fix("amb_http")), headers=fire)
    assert r.status_code == 202 and r.json() == {"accepted": True}, r.text
    rec = [g for g in _records(live, "gps") if g.get("ev") == "amb_http"][-1]
    assert rec["accepted"] and rec["source"].startswith("http/")
    # a rejected fix: 422 with the reason, and the same reason in the audit
    bad = {**live.fix("amb_http", 1), "lat": 40.0}
    r = live.client.post("/v1/live/gps", content=json.dumps(bad), headers=fire)
    assert r.status_code == 422 and r.json()["reason"] == "outside_city", r.text
    rec = [g for g in _records(live, "gps") if g.get("ev") == "amb_http"][-1]
    assert not rec["accepted"] and rec["reason"] == "outside_city"
    r = live.client.post("/v1/live/gps", content=b"{nope", headers=fire)
    assert r.status_code == 422 and r.json()["reason"] == "malformed"
    # only the fire service sends GPS
    for role in ("researcher", "operator", "police"):
        r = live.client.post(
            "/v1/live/gps", content=json.dumps(live.fix("amb_http", 2)), headers=live.key(role)
        )
        assert r.status_code == 403, (role, r.text)
    # and only to its own tenant's live service
    r = live.client.post(
        "/v1/live/gps", content=json.dumps(live.fix("amb_http", 2)), headers=live.key("fire", "lab")
    )
    assert r.status_code == 404


@pytest.mark.slow
def test_the_gps_websocket_answers_each_fix_with_its_verdict(live_api: LiveApi) -> None:
    live = live_api
    live.mission("amb_ws")
    with live.client.websocket_connect("/v1/live/gps/ws", headers=live.key("fire")) as ws:
        ws.send_text(json.dumps(live.fix("amb_ws")))
        assert json.loads(ws.receive_text()) == {"accepted": True}
        ws.send_text("garbage")
        verdict = json.loads(ws.receive_text())
        assert verdict["accepted"] is False and verdict["reason"] == "malformed"
        ws.send_text(json.dumps(live.fix("stranger")))
        assert json.loads(ws.receive_text())["reason"] == "unknown_vehicle"
    sources = {g["source"] for g in _records(live, "gps") if g.get("ev") == "amb_ws"}
    assert sources and all(s.startswith("ws/") for s in sources)
    researcher = live.key("researcher")
    with (
        pytest.raises(WebSocketDisconnect) as exc,
        live.client.websocket_connect("/v1/live/gps/ws", headers=researcher) as ws,
    ):
        ws.receive_text()
    assert exc.value.code == 1008


# --------------------------------------------------------------------------- detectors
@pytest.mark.slow
def test_the_operator_posts_detector_counts(live_api: LiveApi) -> None:
    live = live_api
    operator = live.key("operator")
    loops = [d.id for d in live.city.manifest.detectors if d.tls == SIGNAL][:2]
    t_end = time.time() - 1.0
    one = {"loop": loops[0], "t_end": t_end, "interval_s": 30, "count_veh": 4}
    r = live.client.post("/v1/live/detectors", json=one, headers=operator)
    assert r.status_code == 202 and r.json() == {"accepted": True}, r.text
    batch = [{**one, "loop": loops[1], "count_veh": 6}, {**one, "loop": "nowhere"}]
    r = live.client.post("/v1/live/detectors", json=batch, headers=operator)
    assert r.status_code == 202
    verdicts = r.json()["verdicts"]
    assert verdicts[0] == {"accepted": True}
    assert verdicts[1]["accepted"] is False and verdicts[1]["reason"] == "unknown_loop"
    counted = {(d["loop"], d["count_veh"]) for d in _records(live, "detector") if d["accepted"]}
    assert {(loops[0], 4), (loops[1], 6)} <= counted
    r = live.client.post("/v1/live/detectors", json={**one, "t_end": t_end - 30}, headers=operator)
    assert r.status_code == 202  # another interval of the same loop
    r = live.client.post("/v1/live/detectors", json=one, headers=operator)
    assert r.status_code == 422 and r.json()["reason"] == "duplicate"
    for role in ("fire", "police", "researcher"):
        r = live.client.post("/v1/live/detectors", json=one, headers=live.key(role))
        assert r.status_code == 403, role


# --------------------------------------------------------------------------- audit
@pytest.mark.slow
def test_the_audit_is_read_by_role(live_api: LiveApi) -> None:
    """operator: every record; fire: its own agency's EVs' records; police: its own
    agency's EVs' and the incidents'; researcher: none (403)."""
    live = live_api
    live.mission("amb_audit")
    live.mission("pol_audit", agency="police", role="operator")
    r = live.client.post(
        "/v1/live/gps", content=json.dumps(live.fix("amb_audit")), headers=live.key("fire")
    )
    assert r.status_code == 202
    note = f"inc-{uuid.uuid4().hex[:6]}"
    live.client.portal.call(  # type: ignore[union-attr]
        functools.partial(live.svc.call, live.svc.audit.append, "incident", incident=note)
    )

    def read(role: str, **params: Any) -> dict[str, Any]:
        r = live.client.get(
            "/v1/live/audit", params={"limit": 5000, **params}, headers=live.key(role)
        )
        assert r.status_code == 200, (role, r.text)
        body: dict[str, Any] = r.json()
        assert body["count"] == len(body["data"])
        return body

    everything = read("operator")["data"]
    kinds = {x["kind"] for x in everything}
    assert {"service_start", "command", "answer", "mission", "gps", "incident"} <= kinds
    fire, police = read("fire")["data"], read("police")["data"]
    # compared up to the operator's read (the service writes on meanwhile)
    last = everything[-1]["seq"]

    def seqs(records: list[dict[str, Any]]) -> set[int]:
        return {x["seq"] for x in records if x["seq"] <= last}

    def agency_evs(agency: str) -> list[dict[str, Any]]:
        return [x for x in everything if x.get("ev") and x.get("agency") == agency]

    assert seqs(fire) == seqs(agency_evs("fire"))
    assert {"mission", "gps"} <= {x["kind"] for x in fire if x["ev"] == "amb_audit"}
    assert not [x for x in fire if x.get("ev") in ("pol_audit", "stranger")]
    incidents = [x for x in everything if x.get("incident")]
    assert [x["incident"] for x in incidents] == [note]
    assert seqs(police) == seqs(agency_evs("police") + incidents)
    assert "mission" in {x["kind"] for x in police if x.get("ev") == "pol_audit"}
    r = live.client.get("/v1/live/audit", headers=live.key("researcher"))
    assert r.status_code == 403
    # paging, and the chain's verdict with ?check=true
    body = read("operator", check=True, after_seq=last - 1)
    assert body["chain"]["ok"] and body["chain"]["records"] >= len(everything)
    assert body["data"][0]["seq"] == last


def test_live_forks_and_calibrations_are_the_operators(live_api: LiveApi) -> None:
    fork = {"variant": {"adaptive": {"control.default": "adaptive"}}, "ahead_s": 120}
    for role in ("fire", "police", "researcher"):
        r = live_api.client.post("/v1/live/forks", json=fork, headers=live_api.key(role))
        assert r.status_code == 403, (role, r.text)
        r = live_api.client.post("/v1/live/calibrations", json={}, headers=live_api.key(role))
        assert r.status_code == 403, (role, r.text)
    operator = live_api.key("operator")
    # this service runs no shadow twin: nothing to fork from
    r = live_api.client.post("/v1/live/forks", json=fork, headers=operator)
    assert r.status_code == 409 and "--shadow" in r.json()["detail"], r.text
    # a variant is checked as in a variants file, before anything else
    bad = {"variant": {"x": {"seed": 3}}}
    r = live_api.client.post("/v1/live/forks", json=bad, headers=operator)
    assert r.status_code == 422 and "keeps the parent's 'seed'" in r.text, r.text
    for body in ({"variant": {}}, {**fork, "ahead_s": 10}, {**fork, "mode": "macro"}):
        r = live_api.client.post("/v1/live/forks", json=body, headers=operator)
        assert r.status_code == 422, (body, r.text)
    # calibration: a window of at least 300 s, and some counts in it
    r = live_api.client.post("/v1/live/calibrations", json={"window_s": 60}, headers=operator)
    assert r.status_code == 422, r.text
    nan = b'{"window_s": 900, "end_s": NaN}'
    r = live_api.client.post("/v1/live/calibrations", content=nan,
                             headers={**operator, "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422, r.text
    # a window that ends before any count this service holds began (intervals are at most
    # 3600 s). Not a fixed time of day: just after midnight UTC the clock reads less.
    begins_s = [d["t_end_s"] - 3600.0 for d in _records(live_api, "detector") if d["accepted"]]
    far = {"window_s": 900, "end_s": math.floor(min([live_api.clock.origin_s, *begins_s])) - 1}
    r = live_api.client.post("/v1/live/calibrations", json=far, headers=operator)
    assert r.status_code == 422 and "no loop count ends in the window" in r.text, r.text
