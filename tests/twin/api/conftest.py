"""Fixtures of the API tests: settings over a private data dir (SQLite or a real
PostgreSQL schema), the session's district city linked into it (no rebuild per test),
apps with the stand-in work or the real one, tenants and keys."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from city_models.build import City, cache_key
from city_models.manifest import MANIFEST_NAME
from city_models.presets import get_preset
from tests.twin.api.work import work as stand_in
from twin.app.api import create_app, load_api_settings
from twin.app.api.app import door_of
from twin.app.api.keys import Quotas, create_key, create_tenant
from twin.app.api.settings import ApiSettings
from twin.engine.executors import Work

WAIT_S = 120.0


def link_district(data_dir: Path, city: City) -> None:
    """Make ``build_city('district', seed=1)`` in ``data_dir`` find the session's city:
    a copy of it (the suite's light district, tests/conftest.py) filed under the
    default preset's cache key, so the API runs the suite's demand."""
    cities = data_dir / "cities"
    cities.mkdir(parents=True, exist_ok=True)
    key = cache_key(get_preset("district"), 1)
    target = cities / f"district-s1-{key}"
    if not target.exists():
        shutil.copytree(city.path, target, symlinks=True)
        manifest = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))
        manifest["cache_key"] = key
        (target / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture
def api_settings(tmp_path: Path, district_city: City) -> ApiSettings:
    data = tmp_path / "data"
    link_district(data, district_city)
    return load_api_settings(data=data, run_workers=2, progress_every_s=0.1, stream_poll_s=0.05)


@dataclass
class Api:
    """A running app (its lifespan entered) and helpers to make keys."""

    client: TestClient
    settings: ApiSettings

    @property
    def door(self) -> Any:
        return door_of(self.client.app)  # type: ignore[arg-type]

    def tenant(self, name: str, **quotas: Any) -> str:
        create_tenant(self.door.db, name, Quotas(**quotas))
        return name

    def key(self, tenant: str, role: str) -> dict[str, str]:
        _info, key = create_key(self.door.db, self.settings.secret, tenant=tenant, role=role)
        return {"Authorization": f"Bearer {key}"}

    def wait(
        self, run_id: str, headers: dict[str, str], *,
        until: tuple[str, ...] = ("done", "failed"), timeout_s: float = WAIT_S,
    ) -> dict[str, Any]:  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            body: dict[str, Any] = self.client.get(f"/v1/runs/{run_id}", headers=headers).json()
            if body["status"] in until:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {body['status']} after {timeout_s} s")
            time.sleep(0.05)


@pytest.fixture
def make_api() -> Iterator[Callable[..., Api]]:
    """Start apps (closed at the end): ``make_api(settings, work=...)``."""
    clients: list[TestClient] = []

    def make(settings: ApiSettings, *, work: Work = stand_in) -> Api:
        client = TestClient(create_app(settings, work=work))
        client.__enter__()
        clients.append(client)
        return Api(client, settings)

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_settings: ApiSettings, make_api: Callable[..., Api]) -> Api:
    return make_api(api_settings)


def quick(**overrides: Any) -> dict[str, Any]:
    """A run request of the shipped baseline, five minutes (the stand-in ignores it)."""
    return {"scenario": "baseline", "overrides": {"sim.duration_s": 300, **overrides}}
