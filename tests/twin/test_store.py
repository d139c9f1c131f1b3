"""Tests of the run store (twin.engine.store) on a SQLite file and on PostgreSQL.

``store`` and ``db_url`` run each test on both backends (tests/twin/conftest.py: a
real server, a fresh schema per test). Migrations: the schema of revision 0001 equals
the store's first model (the b6fad66 code, copied below), the head equals the model,
an old database is stamped and upgraded with its rows kept, and downgrades round-trip.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    MetaData,
    String,
    Text,
    create_engine,
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from twin.config import Settings
from twin.engine.store import (
    MIGRATIONS_DIR,
    RUNS_METADATA,
    STATUSES,
    RunRecord,
    RunStore,
    alembic_config,
    current_revision,
    head_revision,
    jsonable,
    new_run_id,
)
from twin.errors import ConfigError, RunError, RunNotFoundError, TwinError

ROOT = Path(__file__).resolve().parents[2]


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'runs.sqlite'}"


@pytest.fixture
def store(db_url: str) -> Iterator[RunStore]:
    s = RunStore(db_url)
    yield s
    s.close()


def _create(store: RunStore, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "scenario_name": "ev-corridor",
        "scenario_kind": "ev_priority",
        "spec": {"name": "ev-corridor", "duration_s": 600, "weights": (1, 2)},
        "city_name": "grid3",
        "city_hash": "abc123",
        "seed": 7,
        "versions": {"sumo": "1.28.0", "twin": "0.1.0"},
    }
    args.update(overrides)
    run_id = store.create_run(**args)
    time.sleep(0.002)  # distinct created_at for ordering tests
    return run_id


def test_new_run_id_format_and_order() -> None:
    early = new_run_id(datetime(2026, 11, 23, 5, 12, 0, tzinfo=UTC))
    assert re.fullmatch(r"20261123T051200-[0-9a-f]{6}", early)
    later = new_run_id(datetime(2026, 11, 23, 5, 12, 1, tzinfo=UTC))
    assert later > early


def test_creates_sqlite_parent_dir(tmp_path: Path) -> None:
    s = RunStore(_url(tmp_path))
    try:
        assert (tmp_path / "nested" / "runs.sqlite").is_file()
    finally:
        s.close()


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'db' / 'r.sqlite'}")
    s = RunStore.from_settings(settings)
    try:
        run_id = _create(s)
        assert s.get(run_id).id == run_id
    finally:
        s.close()


def test_create_get_mark_done_round_trip(store: RunStore, tmp_path: Path) -> None:
    run_id = _create(store, run_dir=tmp_path / "runs" / "x")
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}", run_id)
    rec = store.get(run_id)
    assert rec.status == "running"
    assert rec.finished_at is None
    assert rec.metrics is None
    assert rec.spec["weights"] == [1, 2]
    assert rec.versions == {"sumo": "1.28.0", "twin": "0.1.0"}
    assert rec.run_dir == tmp_path / "runs" / "x"
    assert rec.series_files == ()
    assert rec.created_at.tzinfo is not None

    metrics = {
        "delay_s": np.float64(12.5),
        "vehicles": np.int64(42),
        "bad": float("nan"),
        "inf": np.float32("inf"),
        "nested": {"per_lane": [np.float32(1.5), np.nan, 3], "ok": np.bool_(True)},
        "array": np.array([1, 2]),
    }
    store.mark_done(run_id, metrics=metrics, series_files=["tt.parquet"])
    rec = store.get(run_id)
    assert rec.status == "done"
    assert rec.finished_at is not None
    assert rec.finished_at >= rec.created_at
    assert rec.metrics == {
        "delay_s": 12.5,
        "vehicles": 42,
        "bad": None,
        "inf": None,
        "nested": {"per_lane": [1.5, None, 3], "ok": True},
        "array": [1, 2],
    }
    assert type(rec.metrics["vehicles"]) is int
    assert type(rec.metrics["delay_s"]) is float
    assert rec.series_files == ("tt.parquet",)

    as_dict = rec.to_dict()
    text = json.dumps(as_dict, allow_nan=False)  # strict JSON: no NaN, no numpy
    assert json.loads(text)["created_at"] == rec.created_at.isoformat()
    assert as_dict["run_dir"] == str(tmp_path / "runs" / "x")
    assert as_dict["series_files"] == ["tt.parquet"]


def test_jsonable_converts_recursively() -> None:
    out = jsonable({1: (np.int32(3), {"x": np.float64("-inf")}), "p": Path("a/b")})
    assert out == {"1": [3, {"x": None}], "p": str(Path("a/b"))}
    assert not any(isinstance(v, float) and math.isnan(v) for v in out["1"])


def test_create_with_explicit_and_duplicate_id(store: RunStore) -> None:
    run_id = _create(store, run_id="custom-0001")
    assert run_id == "custom-0001"
    with pytest.raises(ConfigError, match="custom-0001"):
        _create(store, run_id="custom-0001")
    with pytest.raises(ConfigError, match="32"):
        _create(store, run_id="x" * 33)


def test_list_newest_first_and_filters(store: RunStore) -> None:
    a = _create(store, scenario_kind="ev_priority")
    b = _create(store, scenario_kind="vms")
    c = _create(store, scenario_kind="vms")
    d = _create(store, scenario_kind="evacuation")
    store.mark_done(b, metrics={})
    store.mark_failed(c, error="boom")

    assert [r.id for r in store.list()] == [d, c, b, a]
    assert [r.id for r in store.list(limit=2)] == [d, c]
    assert [r.id for r in store.list(status="running")] == [d, a]
    assert [r.id for r in store.list(status="done")] == [b]
    assert [r.id for r in store.list(kind="vms")] == [c, b]
    assert [r.id for r in store.list(kind="vms", status="failed")] == [c]
    assert store.list(kind="nothing") == []
    assert all(isinstance(r, RunRecord) for r in store.list())


@pytest.mark.parametrize("status", ["finished", "DONE", ""])
def test_list_rejects_bad_status(store: RunStore, status: str) -> None:
    with pytest.raises(ConfigError) as info:
        store.list(status=status)
    for allowed in STATUSES:
        assert allowed in str(info.value)


@pytest.mark.parametrize("limit", [0, -3])
def test_list_rejects_bad_limit(store: RunStore, limit: int) -> None:
    with pytest.raises(ConfigError, match="limit"):
        store.list(limit=limit)


def test_mark_failed_keeps_error(store: RunStore) -> None:
    run_id = _create(store)
    store.mark_failed(run_id, error="SUMO died: exit 1")
    rec = store.get(run_id)
    assert rec.status == "failed"
    assert rec.error == "SUMO died: exit 1"
    assert rec.finished_at is not None

    store.mark_failed(run_id, error="cleanup failed too")
    rec = store.get(run_id)
    assert rec.status == "failed"
    assert rec.error is not None
    assert "SUMO died: exit 1" in rec.error
    assert "cleanup failed too" in rec.error


def test_mark_failed_after_done_keeps_done(
    store: RunStore, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = _create(store)
    store.mark_done(run_id, metrics={"delay_s": 1.0})
    with caplog.at_level(logging.WARNING, logger="twin.engine.store"):
        store.mark_failed(run_id, error="late error")
    rec = store.get(run_id)
    assert rec.status == "done"
    assert rec.error is None
    assert rec.metrics == {"delay_s": 1.0}
    assert any(run_id in r.getMessage() for r in caplog.records)


def test_unknown_run_for_updates(store: RunStore, tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError, match="nope-123"):
        store.mark_done("nope-123", metrics={})
    with pytest.raises(RunNotFoundError, match="nope-123"):
        store.mark_failed("nope-123", error="x")
    with pytest.raises(RunNotFoundError, match="nope-123"):
        store.set_run_dir("nope-123", tmp_path)


def test_prefix_lookup(store: RunStore) -> None:
    a = _create(store, run_id="20260101T000000-aaaaaa")
    b = _create(store, run_id="20260101T000000-aabbbb")
    c = _create(store, run_id="20260202T000000-cccccc")
    assert store.get(a).id == a
    assert store.get("20260202").id == c
    assert store.get("20260101T000000-aab").id == b

    with pytest.raises(RunNotFoundError) as info:
        store.get("20260101")
    message = str(info.value)
    assert a in message
    assert b in message
    assert c not in message
    assert isinstance(info.value, TwinError)
    assert isinstance(info.value, KeyError)

    with pytest.raises(RunNotFoundError, match="2099"):
        store.get("2099")
    with pytest.raises(RunNotFoundError, match="at least 4"):
        store.get("202")  # too short for a prefix, even though it would match


def test_ambiguous_prefix_lists_at_most_five(store: RunStore) -> None:
    ids = [_create(store, run_id=f"20260101T000000-{i:06x}") for i in range(8)]
    with pytest.raises(RunNotFoundError) as info:
        store.get("20260101T")
    listed = [i for i in ids if i in str(info.value)]
    assert len(listed) == 5


def test_prefix_wildcards_are_literal(store: RunStore) -> None:
    _create(store, run_id="20260101T000000-aaaaaa")
    with pytest.raises(RunNotFoundError):
        store.get("2026%")
    with pytest.raises(RunNotFoundError):
        store.get("20260101T000000_")


def test_series_round_trip(store: RunStore, tmp_path: Path) -> None:
    run_id = _create(store)
    frame = pd.DataFrame(
        {"time_s": [0.0, 1.0, 2.0], "queue_veh": [0, 3, 5], "edge": ["a", "b", "c"]}
    )
    with pytest.raises(RunError, match="run folder"):
        store.write_series(run_id, "queues", frame)

    run_dir = tmp_path / "runs" / run_id
    store.set_run_dir(run_id, run_dir)
    path = store.write_series(run_id, "queues", frame)
    assert path == run_dir / "queues.parquet"
    assert path.is_file()
    store.write_series(run_id, "queues", frame)  # rewrite: listed once
    store.write_series(run_id, "speeds", frame.head(1))
    assert store.get(run_id).series_files == ("queues.parquet", "speeds.parquet")
    assert [p.name for p in run_dir.iterdir()] != []
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp files left

    back = store.read_series(run_id, "queues")
    pd.testing.assert_frame_equal(back, frame)
    assert len(store.read_series(run_id, "speeds")) == 1

    with pytest.raises(RunError) as info:
        store.read_series(run_id, "missing")
    assert "queues" in str(info.value)
    assert "speeds" in str(info.value)

    store.mark_done(run_id, metrics={}, series_files=["queues.parquet"])
    assert store.get(run_id).series_files == ("queues.parquet", "speeds.parquet")


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", ""])
def test_series_rejects_bad_names(store: RunStore, tmp_path: Path, name: str) -> None:
    run_id = _create(store, run_dir=tmp_path / "r")
    with pytest.raises(ConfigError):
        store.write_series(run_id, name, pd.DataFrame({"x": [1]}))


def test_two_stores_share_one_database(db_url: str) -> None:
    first = RunStore(db_url)
    second = RunStore(db_url)
    try:
        a = _create(first)
        b = _create(second)
        assert {r.id for r in first.list()} == {a, b}
        second.mark_done(a, metrics={"x": 1})
        assert first.get(a).status == "done"
        assert first.get(a).metrics == {"x": 1}
        first.mark_failed(b, error="oops")
        assert second.get(b).error == "oops"
    finally:
        first.close()
        second.close()


def test_another_process_sees_runs(db_url: str) -> None:
    url = db_url
    store = RunStore(url)
    try:
        mine = _create(store)
        code = (
            "import sys\n"
            "from twin.engine.store import RunStore\n"
            "s = RunStore(sys.argv[1])\n"
            "assert s.get(sys.argv[2]).status == 'running'\n"
            "rid = s.create_run(scenario_name='n', scenario_kind='k', spec={}, city_name='c',\n"
            "    city_hash='h', seed=1, versions={})\n"
            "s.mark_done(sys.argv[2], metrics={'from_child': 1})\n"
            "print(rid)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, url, mine],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        theirs = out.stdout.strip()
        assert store.get(theirs).scenario_kind == "k"
        assert store.get(mine).metrics == {"from_child": 1}
    finally:
        store.close()


def test_processes_create_one_store_at_once(db_url: str) -> None:
    """Four processes open (and so migrate) one new database at the same moment."""
    url = db_url
    code = (
        "import sys\n"
        "from twin.engine.store import RunStore\n"
        "s = RunStore(sys.argv[1])\n"
        "s.create_run(scenario_name='n', scenario_kind='k', spec={}, city_name='c',\n"
        "    city_hash='h', seed=1, versions={})\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [child.communicate(timeout=120)[1] for child in children]
    assert [child.returncode for child in children] == [0] * 4, errors
    store = RunStore(url)
    try:
        assert len(store.list()) == 4
    finally:
        store.close()


# ----------------------------------------------------------------------------- queue
def test_queued_run_starts_then_ends(store: RunStore) -> None:
    run_id = _create(store, status="queued", owner="tenant-a")
    rec = store.get(run_id)
    assert (rec.status, rec.started_at, rec.finished_at) == ("queued", None, None)
    assert rec.owner == "tenant-a"
    store.mark_running(run_id)
    rec = store.get(run_id)
    assert rec.status == "running"
    assert rec.started_at is not None and rec.started_at >= rec.created_at
    with pytest.raises(RunError, match="only a queued run can start"):
        store.mark_running(run_id)
    store.mark_done(run_id, metrics={"x": 1})
    rec = store.get(run_id)
    assert rec.status == "done"
    assert rec.finished_at is not None and rec.finished_at >= rec.started_at


def test_a_new_run_is_queued_or_running(store: RunStore) -> None:
    running = store.get(_create(store))
    assert running.started_at == running.created_at
    assert running.owner is None
    with pytest.raises(ConfigError, match="queued"):
        _create(store, status="done")


def test_list_pages_with_offset_and_count(store: RunStore) -> None:
    ids = [_create(store, owner="a" if k % 2 else "b", status="queued") for k in range(7)]
    newest_first = ids[::-1]
    assert [r.id for r in store.list(limit=3)] == newest_first[:3]
    assert [r.id for r in store.list(offset=3, limit=3)] == newest_first[3:6]
    assert [r.id for r in store.list(offset=6, limit=3)] == newest_first[6:]
    assert store.list(offset=7) == []
    assert store.count() == 7
    assert store.count(owner="a") == 3
    assert [r.id for r in store.list(owner="a")] == [i for i in newest_first if ids.index(i) % 2]
    store.mark_running(ids[0])
    store.mark_failed(ids[0], error="x")
    assert store.count(status="queued") == 6
    assert store.count(status="failed", owner="b") == 1
    assert store.count(status="failed", owner="a") == 0
    assert store.count(kind="ev_priority", status="queued", owner="b") == 3
    assert store.count(kind="nothing") == 0
    with pytest.raises(ConfigError, match="offset"):
        store.list(offset=-1)
    with pytest.raises(ConfigError, match="queued"):
        store.count(status="waiting")


def test_in_memory_sqlite_store() -> None:
    s = RunStore("sqlite://")
    try:
        run_id = _create(s)
        assert s.get(run_id).status == "running"
        assert s.count() == 1
    finally:
        s.close()


# ----------------------------------------------------------------------------- migrations
class _OldBase(DeclarativeBase):
    pass


class _OldRun(_OldBase):
    """The runs table exactly as the store defined it at b6fad66 (before migrations)."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)
    scenario_name: Mapped[str] = mapped_column(String(200))
    scenario_kind: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    city_name: Mapped[str] = mapped_column(String(200))
    city_hash: Mapped[str] = mapped_column(String(128))
    seed: Mapped[int] = mapped_column(Integer)
    versions: Mapped[dict[str, str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    run_dir: Mapped[str | None] = mapped_column(String(1024))
    series_files: Mapped[list[str] | None] = mapped_column(JSON)


def _schema(url: str) -> dict[str, Any]:
    """The runs table as the database describes it (columns, key, indexes)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            insp = inspect(connection)
            columns = {
                c["name"]: (type(c["type"]).__name__, c["nullable"])
                for c in insp.get_columns("runs")
            }
            indexes = {
                i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes("runs")
            }
            key = tuple(insp.get_pk_constraint("runs")["constrained_columns"])
            return {"columns": columns, "indexes": indexes, "key": key}
    finally:
        engine.dispose()


def _alembic(url: str, action: str, revision: str) -> None:
    """Run an Alembic command (upgrade, downgrade, stamp) on the store's migrations."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            getattr(command, action)(alembic_config(connection), revision)
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return current_revision(connection)
    finally:
        engine.dispose()


def _old_store(url: str, *, metadata: MetaData = _OldBase.metadata) -> datetime:
    """A database as an old store left it: the table from ``create_all``, one run in it
    (recorded running, then done); returns the run's creation time."""
    created = datetime(2026, 11, 20, 8, 30, 0, tzinfo=UTC)
    engine = create_engine(url)
    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(
                metadata.tables["runs"].insert().values(
                    id="20261120T083000-abcdef", created_at=created, finished_at=created,
                    status="done", scenario_name="old", scenario_kind="baseline",
                    spec={"seed": 3}, city_name="district", city_hash="h", seed=3,
                    versions={}, metrics={"mean_delay_s": 41.5}, series_files=[],
                )
            )  # fmt: skip
    finally:
        engine.dispose()
    return created


def test_new_database_is_at_head_and_matches_the_model(db_url: str) -> None:
    RunStore(db_url).close()
    assert _revision(db_url) == head_revision() == "0003"
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection), RUNS_METADATA)
    finally:
        engine.dispose()
    assert diffs == []


def test_revision_0001_is_the_first_stores_table(db_url: str, tmp_path: Path) -> None:
    _alembic(db_url, "upgrade", "0001")
    if db_url.startswith("sqlite"):
        reference = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    else:  # the same server, another fresh schema
        reference = db_url.replace("citytwin_test_", "citytwin_test_ref_")
        _create_schema_like(db_url, reference)
    try:
        _OldBase.metadata.create_all(create_engine(reference))
        assert _schema(db_url) == _schema(reference)
    finally:
        if not reference.startswith("sqlite"):
            _drop_schema_of(reference)


def _schema_name(url: str) -> str:
    return make_url(url).query["options"].split("search_path=")[1]  # type: ignore[union-attr]


def _create_schema_like(url: str, other: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{_schema_name(other)}"'))
    finally:
        engine.dispose()


def _drop_schema_of(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{_schema_name(url)}" CASCADE'))
    finally:
        engine.dispose()


def test_old_database_is_stamped_then_upgraded_keeping_its_runs(db_url: str) -> None:
    created = _old_store(db_url)
    store = RunStore(db_url)
    try:
        assert _revision(db_url) == head_revision()
        rec = store.get("20261120T083000")
        assert rec.status == "done"
        assert rec.metrics == {"mean_delay_s": 41.5}
        assert rec.spec == {"seed": 3}
        assert rec.owner is None
        assert rec.started_at == created  # back-filled: an old run started when created
        queued = _create(store, status="queued", owner="t")  # the new columns work
        assert store.list(status="queued")[0].id == queued
    finally:
        store.close()


def test_database_from_create_all_of_the_new_model_is_stamped_head(db_url: str) -> None:
    # a table made with create_all of the current model is stamped as the newest revision
    _old_store(db_url, metadata=RUNS_METADATA)
    store = RunStore(db_url)
    try:
        assert _revision(db_url) == head_revision()
        assert store.get("20261120T083000-abcdef").status == "done"
    finally:
        store.close()


def test_a_table_matching_no_revision_is_refused(db_url: str) -> None:
    _old_store(db_url)
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE runs ADD COLUMN owner VARCHAR(200)"))
    finally:
        engine.dispose()
    with pytest.raises(ConfigError, match="matches no known revision"):
        RunStore(db_url)


def test_workers_do_not_migrate_and_say_why_they_cannot_open(db_url: str) -> None:
    with pytest.raises(ConfigError, match=r"revision none, this code needs 0003"):
        RunStore(db_url, migrate=False)
    _alembic(db_url, "upgrade", "0001")
    with pytest.raises(ConfigError, match=r"revision 0001, this code needs 0003"):
        RunStore(db_url, migrate=False)
    assert _revision(db_url) == "0001"  # checked, not migrated
    RunStore(db_url).close()
    worker = RunStore(db_url, migrate=False)
    try:
        assert worker.count() == 0
    finally:
        worker.close()


def test_a_newer_database_is_refused_clearly(db_url: str) -> None:
    RunStore(db_url).close()
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()
    with pytest.raises(ConfigError, match="newer CityTwin"):
        RunStore(db_url)
    with pytest.raises(ConfigError, match=r"revision 0099, this code needs 0003; .* newer"):
        RunStore(db_url, migrate=False)


def test_downgrade_and_upgrade_round_trip(db_url: str) -> None:
    store = RunStore(db_url)
    try:
        done = _create(store)
        store.mark_done(done, metrics={"a": 1})
        queued = _create(store, status="queued", owner="t")
    finally:
        store.close()
    _alembic(db_url, "downgrade", "0001")
    assert "owner" not in _schema(db_url)["columns"]
    store = RunStore(db_url)  # upgrades again
    try:
        assert store.get(done).metrics == {"a": 1}
        rec = store.get(queued)
        assert rec.status == "failed"  # the old code knows no queued runs
        assert rec.error is not None and rec.error.startswith("Cancelled")
    finally:
        store.close()
    _alembic(db_url, "downgrade", "base")
    assert _revision(db_url) is None
    RunStore(db_url).close()
    assert _revision(db_url) == head_revision()


def test_migrations_ship_with_the_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["twin"]
    shipped = {p.relative_to(ROOT / "twin") for pat in patterns for p in (ROOT / "twin").glob(pat)}
    # a module of a package (a folder with __init__.py) is shipped anyway
    needed = {
        p.relative_to(ROOT / "twin")
        for p in MIGRATIONS_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
        and not (p.suffix == ".py" and (p.parent / "__init__.py").is_file())
    }  # fmt: skip
    assert Path("engine/migrations/versions/v0001_runs.py") in needed
    assert needed <= shipped
