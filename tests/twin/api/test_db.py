"""The door's tables: their own migrations and version table beside the run store's,
on SQLite and on a real PostgreSQL; the API over PostgreSQL end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from city_models.build import City
from tests.twin.api.conftest import Api, link_district, quick
from twin.app.api.db import (
    API_METADATA,
    VERSION_TABLE,
    ApiDatabase,
    _alembic_config,
    current_revision,
    head_revision,
)
from twin.app.api.settings import load_api_settings
from twin.engine.store import RunStore
from twin.errors import ConfigError


def test_migrated_tables_match_the_model_beside_the_run_store(db_url: str) -> None:
    RunStore(db_url).close()
    ApiDatabase(db_url).close()
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())

            def ours(name: str | None, kind: str, _parent: object) -> bool:
                return kind != "table" or str(name).startswith("api_")

            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE, "include_name": ours}
            )
            diffs = compare_metadata(context, API_METADATA)
            assert current_revision(connection) == head_revision()
    finally:
        engine.dispose()
    assert diffs == []
    assert {"runs", "alembic_version", VERSION_TABLE, "api_runs", "api_keys"} <= tables


def test_downgrade_and_upgrade_round_trip(db_url: str) -> None:
    ApiDatabase(db_url).close()
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            command.downgrade(_alembic_config(connection), "base")
        with engine.connect() as connection:
            assert not any(t.startswith("api_") for t in inspect(connection).get_table_names())
    finally:
        engine.dispose()
    ApiDatabase(db_url).close()  # upgrades again


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        ApiDatabase("sqlite://")


def test_runs_through_the_api_on_postgresql(
    pg_url: str, tmp_path: Path, district_city: City, make_api: Callable[..., Api]
) -> None:
    link_district(tmp_path / "data", district_city)
    settings = load_api_settings(data=tmp_path / "data", db=pg_url, run_workers=2,
                                 progress_every_s=0.1)  # fmt: skip
    api = make_api(settings)
    headers = api.key(api.tenant("lab", concurrent_runs=3), "researcher")
    ids = [
        api.client.post("/v1/runs", json=quick(), headers=headers).json()["id"] for _ in range(3)
    ]
    assert [api.wait(i, headers)["status"] for i in ids] == ["done"] * 3
    assert api.client.get("/v1/runs", headers=headers).json()["count"] == 3
    other = api.key(api.tenant("city"), "operator")
    assert api.client.get(f"/v1/runs/{ids[0]}", headers=other).status_code == 404
