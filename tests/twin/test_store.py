"""Tests of the run store (twin.engine.store) on a SQLite file."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from twin.config import Settings
from twin.engine.store import STATUSES, RunRecord, RunStore, jsonable, new_run_id
from twin.errors import ConfigError, RunError, RunNotFoundError, TwinError

ROOT = Path(__file__).resolve().parents[2]


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'runs.sqlite'}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = RunStore(_url(tmp_path))
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


def test_two_stores_share_one_sqlite_file(tmp_path: Path) -> None:
    first = RunStore(_url(tmp_path))
    second = RunStore(_url(tmp_path))
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


def test_another_process_sees_runs(tmp_path: Path) -> None:
    url = _url(tmp_path)
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


def test_processes_create_one_store_at_once(tmp_path: Path) -> None:
    url = _url(tmp_path)
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
