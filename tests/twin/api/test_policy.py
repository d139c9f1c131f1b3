"""The role matrix: one test per cell (role x action), through the real route that
needs the action (sessions: a probe route, the sessions router being the lead's), and
docs/API.md's table equal to the policy table the code enforces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends

from tests.twin.api.conftest import Api
from twin.app.api.deps import Principal, require
from twin.app.api.policy import POLICY, ROLES, allowed

ROOT = Path(__file__).resolve().parents[3]
GHOST = "20990101T000000-000000"

# action -> a request that needs it (answers are 2xx/404/409/422 when allowed)
ROUTES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "cities:read": ("GET", "/v1/cities", {}),
    "scenarios:read": ("GET", "/v1/scenarios/baseline", {}),
    "scenarios:validate": (
        "POST",
        "/v1/scenarios/validate",
        {"json": {"kind": "baseline", "name": "x"}},
    ),
    "scenarios:upload": ("POST", "/v1/scenarios", {"json": {"kind": "baseline", "name": "mine"}}),
    "cities:upload": ("POST", "/v1/cities?name=mine", {"content": b"not an archive"}),
    "runs:create": ("POST", "/v1/runs", {"json": {"scenario": "no-such-scenario"}}),
    "runs:read": ("GET", "/v1/runs", {}),
    "runs:cancel": ("POST", f"/v1/runs/{GHOST}/cancel", {}),
    "exports:read": ("GET", f"/v1/runs/{GHOST}/series", {}),
    "sessions:create": ("POST", "/probe/sessions:create", {}),
    "sessions:use": ("POST", "/probe/sessions:use", {}),
    "tenant:read": ("GET", "/v1/tenant", {}),
    "tenant:keys": ("GET", "/v1/tenant/keys", {}),
    "tenant:audit": ("GET", "/v1/tenant/audit", {}),
    "admin:tenants": ("GET", "/v1/admin/tenants", {}),
    "admin:keys": ("POST", "/v1/admin/keys/key_nope/revoke", {}),
    "admin:audit": ("GET", "/v1/admin/audit", {}),
    # live mode: no live service runs in this server, so an allowed request answers 503
    "live:dispatch": ("POST", "/v1/live/missions", {"json": {"vehicle": "amb1"}}),
    "live:gps": ("POST", "/v1/live/gps", {"content": b"{}"}),
    "live:detectors": ("POST", "/v1/live/detectors", {"content": b"{}"}),
    "live:audit": ("GET", "/v1/live/audit", {}),
    "live:spat": ("GET", "/v1/live/spat", {}),
    "live:status": ("GET", "/v1/live/status", {}),
    "live:fork": ("POST", "/v1/live/forks", {"json": {"variant": {"a": {"seed": 1}}}}),
    "live:calibrate": ("POST", "/v1/live/calibrations", {"json": {}}),
}


@pytest.fixture
def policy_api(api: Api) -> Api:
    for action in ("sessions:create", "sessions:use"):
        # a default, not Annotated: the annotation of a function made in a loop is a
        # string (postponed annotations) that cannot see the loop's variable
        def probe(p: Principal = Depends(require(action))) -> dict[str, str]:  # noqa: B008
            return {"tenant": p.tenant}

        api.client.app.post(f"/probe/{action}")(probe)  # type: ignore[attr-defined]
    api.tenant("city")
    return api


def test_every_action_has_a_route_here() -> None:
    assert set(ROUTES) == set(POLICY)


@pytest.mark.parametrize("action", sorted(POLICY))
@pytest.mark.parametrize("role", ROLES)
def test_cell(policy_api: Api, role: str, action: str) -> None:
    headers = policy_api.key("city", role)
    method, path, kwargs = ROUTES[action]
    response = policy_api.client.request(method, path, headers=headers, **kwargs)
    if allowed(role, action):
        assert response.status_code not in (401, 403), (response.status_code, response.text)
        if action.startswith("live:"):  # past the role check: no live service here
            assert response.status_code in (422, 503), (response.status_code, response.text)
            return
        assert response.status_code < 500
    else:
        assert response.status_code == 403, (response.status_code, response.text)
        assert action in response.json()["detail"]


def _docs_matrix() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    section = text.split("## Roles", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| `")]
    header = next(ln for ln in section.splitlines() if ln.startswith("| action"))
    roles = [c.strip() for c in header.strip("|").split("|")][1:]
    out: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        action = re.sub(r"[`]", "", cells[0])
        out[action] = {r for r, mark in zip(roles, cells[1:], strict=True) if mark == "✓"}
    return out


def test_docs_matrix_is_the_policy_table() -> None:
    assert _docs_matrix() == {action: set(roles) for action, roles in POLICY.items()}


def test_unknown_actions_are_refused_when_routes_are_made() -> None:
    with pytest.raises(KeyError, match="sessions:fly"):
        require("sessions:fly")
