"""Quotas, persisted per tenant: concurrent runs, vehicle-seconds per day (booked as an
upper bound, charged as used), city size, request rate; and the limits on bodies."""

from __future__ import annotations

import time

from tests.twin.api.conftest import Api, quick
from twin.app.api import quotas
from twin.app.api.deps import Principal
from twin.app.api.keys import set_quotas


def test_concurrent_runs_over_quota_is_429_with_the_reason(api_settings: object,
                                                           make_api: object) -> None:  # fmt: skip
    api = make_api(api_settings.model_copy(update={"run_workers": 0}))  # type: ignore[attr-defined,operator]
    headers = api.key(api.tenant("lab", concurrent_runs=2), "researcher")
    for _ in range(2):
        assert api.client.post("/v1/runs", json=quick(), headers=headers).status_code == 202
    refused = api.client.post("/v1/runs", json=quick(), headers=headers)
    assert refused.status_code == 429
    assert refused.json()["quota"] == "concurrent_runs"
    assert "concurrent_runs" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    # another tenant is not affected
    other = api.key(api.tenant("city"), "operator")
    assert api.client.post("/v1/runs", json=quick(), headers=other).status_code == 202


def test_vehicle_seconds_are_booked_then_charged_as_used(api: Api) -> None:
    headers = api.key(api.tenant("lab", vehicle_s_per_day=200_000.0), "researcher")
    # a 1 h peak run's bound (about 3600 trips x 1800 s) is far over the day's quota
    big = api.client.post("/v1/runs", json={"scenario": "baseline"}, headers=headers)
    assert big.status_code == 429 and big.json()["quota"] == "vehicle_s_per_day"
    run = api.client.post("/v1/runs", json=quick(), headers=headers)
    assert run.status_code == 202, run.text
    booked = api.client.get("/v1/tenant", headers=headers).json()["vehicle_s_used"]
    assert 10_000 < booked <= 200_000  # the 5-min run's upper bound
    api.wait(run.json()["id"], headers)
    # charged once the dispatcher has seen the worker end (a moment after "done")
    deadline = time.monotonic() + 30
    while (
        used := api.client.get("/v1/tenant", headers=headers).json()["vehicle_s_used"]
    ) == booked:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert used == 12 * 100 + 195  # the stand-in's trips: charged what they took


def test_a_city_over_the_size_quota_is_refused_before_it_is_built(api: Api) -> None:
    headers = api.key(api.tenant("lab", max_city_signals=40), "researcher")
    refused = api.client.post("/v1/runs", json={**quick(), "city": "suwon-scale"}, headers=headers)
    assert refused.status_code == 429 and refused.json()["quota"] == "max_city_signals"
    district = api.client.post("/v1/runs", json=quick(), headers=headers)
    assert district.status_code == 429 and "49 signals" in district.json()["detail"]


def test_request_rate_per_key(api: Api) -> None:
    headers = api.key(api.tenant("lab", requests_per_min=5), "researcher")
    codes = [api.client.get("/v1/runs", headers=headers).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    last = api.client.get("/v1/runs", headers=headers)
    assert last.json()["quota"] == "requests_per_min" and int(last.headers["Retry-After"]) >= 1
    assert api.client.get("/v1/runs", headers=api.key("lab", "operator")).status_code == 200


def test_session_quotas_for_the_sessions_router(api: Api) -> None:
    api.tenant("lab", concurrent_sessions=0, max_session_s=900.0, vehicle_s_per_day=1000.0)
    principal = Principal(tenant="lab", role="researcher", key_id="k", door=api.door)
    assert quotas.max_session_s(principal) == 900.0
    refused = _raises(lambda: quotas.check_session_start(principal))
    assert refused.quota == "concurrent_sessions"
    set_quotas(api.door.db, "lab", concurrent_sessions=1)
    quotas.check_session_start(principal)  # allowed now
    quotas.record_session_usage(principal, 600.0)
    quotas.record_session_usage(principal, 400.0)
    assert _raises(lambda: quotas.check_session_start(principal)).quota == "vehicle_s_per_day"
    assert _raises(lambda: quotas.check_session_usage(principal)).quota == "vehicle_s_per_day"
    headers = api.key("lab", "researcher")
    assert api.client.get("/v1/tenant", headers=headers).json()["vehicle_s_used"] == 1000.0


def _raises(call: object) -> quotas.QuotaError:
    try:
        call()  # type: ignore[operator]
    except quotas.QuotaError as exc:
        return exc
    raise AssertionError("no QuotaError")


def test_oversized_body_is_413(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "researcher")
    body = {"scenario": {"kind": "baseline", "name": "x", "description": "y" * 2_000_000}}
    response = api.client.post("/v1/runs", json=body, headers=headers)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]


def test_malformed_json_is_422_naming_the_problem(api: Api) -> None:
    headers = {**api.key(api.tenant("lab"), "researcher"), "content-type": "application/json"}
    response = api.client.post("/v1/runs", content=b'{"scenario": "baseline",', headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
