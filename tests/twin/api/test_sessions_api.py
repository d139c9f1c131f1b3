"""Interactive sessions over HTTP: roles, tenants, quotas, commands through the guard,
the WebSocket stream, and a remote max-pressure controller that reproduces the twin's own.

Real SUMO in session worker processes; the API in-process (FastAPI's TestClient).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.twin.api.conftest import Api
from twin.app.api.settings import ApiSettings
from twin.app.compose import execute_request
from twin.client import TwinClient, max_pressure_commands, policy_from_layout

pytestmark = pytest.mark.sumo


def _session(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"scenario": "baseline", "seed": 4,
                            "overrides": {"sim.duration_s": 600, "demand.scale": 1.2}}  # fmt: skip
    body.update(over)
    return body


def test_a_researcher_drives_a_session_through_the_guard(api: Api) -> None:
    lab = api.key(api.tenant("lab"), "researcher")
    other = api.key(api.tenant("other"), "researcher")
    fire = api.key("lab", "fire")
    c = api.client
    assert c.post("/v1/sessions", json=_session(), headers=fire).status_code == 403
    assert c.post("/v1/sessions", json=_session()).status_code == 401
    bad = c.post("/v1/sessions", json=_session(controlled=["nope"]), headers=lab)
    assert bad.status_code == 422 and "nope" in bad.text
    r = c.post("/v1/sessions", json=_session(), headers=lab)
    assert r.status_code == 201, r.text
    sid, layout = r.json()["id"], r.json()["layout"]
    assert len(layout["signals"]) == 49
    obs = c.post(f"/v1/sessions/{sid}/advance", json={"seconds": 20}, headers=lab).json()
    assert obs["t_s"] == 20.0 and obs["vehicle_s"] > 0
    tls = layout["signals"][0]["id"]
    n = sum(1 for p in layout["signals"][0]["phases"] if p["kind"] == "green")
    res = c.post(f"/v1/sessions/{sid}/commands", headers=lab, json={"commands": [
        {"verb": "apply_timing", "signal": tls, "args": {"green_s": [1.0] * n}},
        {"verb": "skip", "signal": tls, "args": {"stage": 42}},
    ]}).json()["results"]  # fmt: skip
    assert res[0]["accepted"] and res[0]["guard"][0]["what"] == "timing_clamped"
    assert not res[1]["accepted"] and "no stage 42" in res[1]["reason"]
    assert c.post(f"/v1/sessions/{sid}/commands", headers=lab, json={"commands": [
        {"verb": "explode", "signal": tls}]}).status_code == 422  # fmt: skip
    ev = c.post(f"/v1/sessions/{sid}/events", headers=lab,
                json={"kind": "incident", "edge": layout["signals"][0]["links"][0]["to_edge"],
                      "closed_lanes": 1, "duration_s": 60})  # fmt: skip
    assert ev.status_code == 200 and ev.json()["accepted"]
    # another tenant sees nothing of it
    routes = [("get", ""), ("get", "/layout"), ("get", "/observation"), ("post", "/advance"),
              ("post", "/commands"), ("post", "/events"), ("delete", "")]  # fmt: skip
    for method, tail in routes:
        path = f"/v1/sessions/{sid}{tail}"
        body = {
            "/advance": {"json": {"seconds": 5}},
            "/commands": {"json": {"commands": []}},
            "/events": {"json": {"kind": "incident", "edge": "x"}},
        }.get(tail, {})
        assert getattr(c, method)(path, headers=other, **body).status_code == 404
    assert c.get("/v1/sessions", headers=other).json()["count"] == 0
    assert c.get("/v1/sessions", headers=lab).json()["count"] == 1
    # the WebSocket stream: an observation every 5 s of simulated time
    with c.websocket_connect(f"/v1/sessions/{sid}/stream?every_s=5", headers=lab) as ws:
        ws.send_text(json.dumps({"advance": 15}))
        got = [json.loads(ws.receive_text()) for _ in range(4)]
    assert [g.get("t_s") for g in got[:3]] == [25.0, 30.0, 35.0] and got[3]["end"] is True
    closed = c.delete(f"/v1/sessions/{sid}", headers=lab)
    assert closed.status_code == 200 and closed.json()["metrics"]["vehicles_inserted"] > 0
    assert c.get(f"/v1/sessions/{sid}", headers=lab).status_code == 404


def test_session_quotas(api: Api) -> None:
    lab = api.key(api.tenant("lab", concurrent_sessions=1, max_session_s=60.0), "operator")
    c = api.client
    too_long = c.post("/v1/sessions", json=_session(), headers=lab)
    assert too_long.status_code == 429 and "max_session_s" in too_long.text
    ok = c.post("/v1/sessions", json=_session(overrides={"sim.duration_s": 60}), headers=lab)
    assert ok.status_code == 201, ok.text  # (60 s fits the 60 s cap; 600 s did not)
    second = c.post("/v1/sessions", json=_session(overrides={"sim.duration_s": 60}), headers=lab)
    assert second.status_code == 429 and "concurrent_sessions" in second.text
    assert "Retry-After" in second.headers
    sid = ok.json()["id"]
    assert (
        c.post(f"/v1/sessions/{sid}/advance", json={"seconds": 25}, headers=lab).status_code == 200
    )
    assert c.delete(f"/v1/sessions/{sid}", headers=lab).status_code == 200


@pytest.mark.slow
def test_remote_max_pressure_through_the_api_reproduces_the_in_process_controller(
    api_settings: ApiSettings, make_api: Callable[..., Api]
) -> None:
    """The issue's example: max pressure from outside through the API gives the
    in-process max-pressure delay on the same seed (+/- 1 %)."""
    api = make_api(api_settings, work=execute_request)
    headers = api.key(api.tenant("lab", requests_per_min=100_000), "researcher")
    key = headers["Authorization"].split()[1]
    client = TwinClient("http://testserver", key=key, http=api.client)
    raw = {"name": "mp", "kind": "baseline", "seed": 4, "demand": {"scale": 1.2},
           "sim": {"duration_s": 600.0}}  # fmt: skip
    reference = client.submit_run({**raw, "control": {"default": "max_pressure"}}, seed=4)
    with client.open_session(raw, seed=4) as session:
        policy = policy_from_layout(session.layout)
        obs = session.observe()
        while not obs["done"]:
            obs = session.advance(session.layout["control_interval_s"])
            assert all(a["accepted"] for a in session.commands(max_pressure_commands(policy, obs)))
        outside = session.close()["metrics"]
    inside = client.wait_run(reference["id"], poll_s=0.2)["metrics"]
    assert outside["mean_delay_s"] == pytest.approx(inside["mean_delay_s"], rel=0.01)
    assert outside["throughput_veh"] == inside["throughput_veh"]
