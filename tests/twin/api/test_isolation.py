"""Tenant isolation: a second tenant's keys read, list, cancel and export nothing of
the first tenant's runs; every route that takes a run id answers exactly as for a run
that does not exist (404, never 403)."""

from __future__ import annotations

import pytest

from tests.twin.api.conftest import Api, quick

ID_ROUTES = [
    ("GET", "/v1/runs/{id}"),
    ("POST", "/v1/runs/{id}/cancel"),
    ("GET", "/v1/runs/{id}/metrics"),
    ("GET", "/v1/runs/{id}/events"),
    ("GET", "/v1/runs/{id}/series"),
    ("GET", "/v1/runs/{id}/series/queues"),
    ("GET", "/v1/runs/{id}/series/trips?format=csv"),
    ("GET", "/v1/runs/{id}/report"),
]


def _paths_with_run_ids(api: Api) -> set[str]:
    return {path for path in api.client.app.openapi()["paths"]  # type: ignore[attr-defined]
            if "{run_id}" in path}  # fmt: skip


def test_every_route_with_a_run_id_is_covered(api: Api) -> None:
    covered = {p.split("?")[0].replace("{id}", "{run_id}").replace("/queues", "/{name}")
               .replace("/trips", "/{name}") for _m, p in ID_ROUTES}  # fmt: skip
    assert _paths_with_run_ids(api) == covered


@pytest.mark.parametrize("role", ["operator", "researcher", "fire", "police"])
def test_another_tenants_runs_do_not_exist_for_you(api: Api, role: str) -> None:
    mine = api.key(api.tenant("city"), "operator")
    theirs = api.key(api.tenant("lab"), role)
    run = api.client.post("/v1/runs", json=quick(), headers=mine).json()
    assert api.wait(run["id"], mine)["status"] == "done"
    assert api.client.get(f"/v1/runs/{run['id']}/series", headers=mine).json()["count"] > 0
    for method, template in ID_ROUTES:
        real = api.client.request(method, template.format(id=run["id"]), headers=theirs)
        ghost = api.client.request(method, template.format(id="20990101T000000-000000"),
                                   headers=theirs)  # fmt: skip
        if real.status_code == 403:  # the role may not use this route at all: same for both
            assert ghost.status_code == 403, (method, template)
            continue
        assert real.status_code == 404, (method, template, real.status_code, real.text)
        assert real.json()["detail"].replace(run["id"], "X") == ghost.json()["detail"].replace(
            "20990101T000000-000000", "X"
        )
    listed = api.client.get("/v1/runs", headers=theirs).json()
    assert listed == {"data": [], "count": 0}
    # and the first tenant's run is untouched: not cancelled, nothing exported
    assert api.client.get(f"/v1/runs/{run['id']}", headers=mine).json()["status"] == "done"
    audit = api.client.get("/v1/tenant/audit", headers=mine).json()
    assert audit["count"] == 0
