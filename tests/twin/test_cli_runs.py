"""``twin runs list`` / ``twin runs show`` on a store filled here (no SUMO needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twin.app.cli import app
from twin.config import load_settings
from twin.engine.store import RunStore


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, list[str]]:
    """A data dir whose store holds five runs (oldest first): done, failed, running,
    and two queued ones of owner 'api'."""
    data = tmp_path / "data"
    store = RunStore(f"sqlite:///{data / 'runs.sqlite'}")
    ids = []
    try:
        for k, (status, owner) in enumerate([("queued", None), ("queued", None),
                                             ("running", None), ("queued", "api"),
                                             ("queued", "api")]):  # fmt: skip
            ids.append(store.create_run(
                scenario_name=f"s{k}", scenario_kind="baseline", spec={}, city_name="c",
                city_hash="h", seed=k, versions={}, status=status, owner=owner,
            ))  # fmt: skip
            time.sleep(0.002)
        store.mark_running(ids[0])
        store.mark_done(ids[0], metrics={"mean_delay_s": 12.25})
        store.mark_failed(ids[1], error="boom")
    finally:
        store.close()
    return data, ids


def _runs(*args: str) -> str:
    result = CliRunner().invoke(app, ["runs", *args], env={"CITYTWIN_DB": ""})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_list_pages_newest_first_with_queued_runs(filled: tuple[Path, list[str]]) -> None:
    data, ids = filled
    newest = ids[::-1]
    listed = json.loads(_runs("list", "--data-dir", str(data), "--json"))
    assert [r["id"] for r in listed] == newest
    assert [r["status"] for r in listed] == ["queued", "queued", "running", "failed", "done"]
    page = json.loads(_runs("list", "--data-dir", str(data), "--json", "--offset", "1",
                            "--limit", "2"))  # fmt: skip
    assert [r["id"] for r in page] == newest[1:3]
    queued = json.loads(_runs("list", "--data-dir", str(data), "--json", "--status", "queued"))
    assert [r["id"] for r in queued] == newest[:2]
    mine = json.loads(_runs("list", "--data-dir", str(data), "--json", "--owner", "api"))
    assert {r["owner"] for r in mine} == {"api"} and len(mine) == 2


def test_list_table_says_which_runs_of_how_many(filled: tuple[Path, list[str]]) -> None:
    data, ids = filled
    text = _runs("list", "--data-dir", str(data), "--offset", "1", "--limit", "2")
    assert "runs 2-3 of 5" in text
    short = RunStore(load_settings(data_dir=data).db_url).short_ids(ids)
    assert short[ids[3]] in text and short[ids[2]] in text and short[ids[4]] not in text
    assert "queued" in text and "api" in text
    assert "none of 5" in _runs("list", "--data-dir", str(data), "--offset", "9")


def test_show_is_unchanged(filled: tuple[Path, list[str]]) -> None:
    data, ids = filled
    shown = json.loads(_runs("show", ids[0][:-2], "--data-dir", str(data), "--json"))
    assert shown["run_id"] == ids[0] and shown["metrics"] == {"mean_delay_s": 12.25}
    assert shown["status"] == "done"
