"""Sweeps (twin.app.sweep, `twin sweep SWEEP.toml`): the file and its errors, the spec
hash, resuming, the Parquet tables, and one real sweep on a Dask LocalCluster."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from city_models.build import City
from scenarios.loader import load_scenario
from tests.twin import sweep_work
from twin.app.cli import app
from twin.app.sweep import (
    CELLS_FILE,
    SUMMARY_FILE,
    Cell,
    CellsRun,
    SweepPlan,
    cells_table,
    done_records,
    load_sweep,
    plan_sweep,
    run_cells,
    spec_hash,
    summary_table,
    write_tables,
)
from twin.config import Settings
from twin.engine.executors import RunRequest, execute_queued
from twin.engine.store import RunRecord, RunStore
from twin.errors import ConfigError, ScenarioError


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the file
def test_a_sweep_file_reads_into_its_fields(tmp_path: Path) -> None:
    path = _write(tmp_path, """
scenario = "baseline"
city = "cities/d"
seeds = "1-3,7"
metrics = ["mean_travel_time_s"]
[set]
"sim.duration_s" = 600
[set.demand]
period = "pm_peak"
[grid]
"demand.scale" = [1.0, 1.5]
control = { default = ["fixed", "adaptive"] }
""")  # fmt: skip
    sweep = load_sweep(path)
    assert sweep.name == "sweep" and sweep.scenarios == ("baseline",)
    assert sweep.city == tmp_path / "cities" / "d" and sweep.seeds == (1, 2, 3, 7)
    assert sweep.set == (("sim.duration_s", 600), ("demand.period", "pm_peak"))
    assert sweep.grid == (("demand.scale", (1.0, 1.5)), ("control.default", ("fixed", "adaptive")))
    assert sweep.metrics == ("mean_travel_time_s",)
    # seeds as a number or a list; several scenarios
    other = load_sweep(_write(tmp_path, 'name = "x"\nscenario = ["a", "b"]\nseeds = [4, 2]'))
    assert other.name == "x" and other.scenarios == ("a", "b") and other.seeds == (4, 2)
    assert load_sweep(_write(tmp_path, 'scenario = "a"\nseeds = 3')).seeds == (3,)
    assert load_sweep(_write(tmp_path, 'scenario = "a"')).seeds is None  # the scenario's


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('scenario = "a"\nseed = 3', r"field 'seed' is not a known field; allowed: name, scenario"),
        ("seeds = 3", r"field 'scenario' = None; allowed: a scenario file"),
        ("scenario = 5", r"field 'scenario' = 5; allowed"),
        ('scenario = ["a", "a"]', r"names a scenario twice"),
        ('scenario = "a"\nseeds = "5-2"', r"field 'seeds': --seeds '5-2'"),
        ('scenario = "a"\nseeds = [1, true]', r"field 'seeds' = \[1, True\]; allowed"),
        ('scenario = "a"\nseeds = [1, 1]', r"gives a seed twice"),
        ('scenario = "a"\n[grid]\n"demand.scale" = 1.5',
         r"field 'grid.demand.scale' = 1.5; allowed: a non-empty array .* goes in \[set\]"),
        ('scenario = "a"\n[grid]\n"demand.scale" = []', r"'grid.demand.scale' = \[\]"),
        ('scenario = "a"\n[grid]\nmode = ["x", "x"]', r"lists a value twice"),
        ('scenario = "a"\n[set]\nmode = "x"\n[grid]\nmode = ["y"]',
         r"field 'mode' is both in \[set\] and in \[grid\]"),
        ('scenario = "a"\ncity = "c"\n[grid]\n"city.seed" = [1, 2]',
         r"field 'city' and 'city.seed' both choose the city"),
        ('scenario = "a"\nname = "a/b"', r"field 'name' = 'a/b'"),
        ('scenario = "a"\nmetrics = "x"', r"field 'metrics' = 'x'"),
        ("scenario = ", r"is not valid TOML"),
    ],
)  # fmt: skip
def test_sweep_file_errors_name_the_file_field_value_and_what_is_allowed(
    tmp_path: Path, text: str, words: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=words) as caught:
        load_sweep(path)
    assert str(path) in str(caught.value)


def test_values_the_scenario_refuses_are_named_with_the_sweep_file(
    tmp_path: Path, settings: Settings
) -> None:
    def no_city(_spec: Any) -> City:
        raise AssertionError("values are checked before any city is needed")

    bad_grid = _write(tmp_path, 'scenario = "baseline"\n[grid]\n"demand.scale" = [1.0, -2.0]')
    with pytest.raises(ScenarioError, match=r"\[grid\] demand.scale = -2.0: field 'demand.scale'"):
        plan_sweep(load_sweep(bad_grid), settings, city_of=no_city)
    bad_set = _write(tmp_path, 'scenario = "baseline"\n[set]\n"sim.nope" = 1')
    with pytest.raises(
        ScenarioError, match=r"\[set\] sim.nope = 1: field 'sim.nope' is not a known"
    ):
        plan_sweep(load_sweep(bad_set), settings, city_of=no_city)
    missing = _write(tmp_path, 'scenario = "no_such_scenario"')
    with pytest.raises(ConfigError, match=r"'no_such_scenario' is neither a file .* baseline"):
        plan_sweep(load_sweep(missing), settings, city_of=no_city)


def test_the_cli_refuses_a_bad_sweep_file_before_any_run(tmp_path: Path) -> None:
    """A TwinError: `twin` (main) shows it as one paragraph and exits 2."""
    path = _write(tmp_path, 'scenario = "baseline"\n[grid]\n"demand.scale" = [1.0, -2.0]')
    res = CliRunner().invoke(app, ["sweep", str(path), "--data-dir", str(tmp_path), "--json"])
    assert isinstance(res.exception, ScenarioError)
    assert "[grid] demand.scale = -2.0: field 'demand.scale' = -2.0" in str(res.exception)
    assert not (tmp_path / "runs").exists()  # nothing was recorded


# ----------------------------------------------------------------------------- spec hash
def test_spec_hash_is_the_canonical_json_of_spec_and_seed() -> None:
    a = {"name": "x", "sim": {"duration_s": 60.0, "begin_s": 0.0}, "kind": "baseline"}
    b = {"kind": "baseline", "sim": {"begin_s": 0.0, "duration_s": 60.0}, "name": "x"}
    assert spec_hash(a, 1) == spec_hash(b, 1)  # key order does not count
    assert spec_hash(a, 1) != spec_hash(a, 2)  # the seed does
    assert spec_hash(a, 1) != spec_hash({**a, "name": "y"}, 1)
    # pinned: a change of the canonical form would make every done cell run again
    assert spec_hash({"a": 1.5, "b": [1, "é"]}, 3) == (
        "fd11e6ad3e25a3052e9f915d04da71a54d9fa803a5bd7f034007dd52603316af"
    )
    # a validated spec hashes the same after a trip through the store's JSON
    spec = load_scenario("ev_priority").model_dump(mode="json")
    assert spec_hash(json.loads(json.dumps(spec)), 7) == spec_hash(spec, 7)


# ----------------------------------------------------------------------------- resuming
def _nothing_may_run(*_args: Any) -> Any:
    raise AssertionError("a cell that is done (or not queued) was run")


def _req(spec: dict[str, Any], *, seed: int = 1, city_hash: str = "c1",
         owner: str | None = None) -> RunRequest:  # fmt: skip
    return RunRequest(spec=spec, scenario_name="s", scenario_kind="test", city_path="-",
                      city_name="none", city_hash=city_hash, seed=seed, owner=owner)  # fmt: skip


def _record(
    store: RunStore, request: RunRequest, *, status: str = "done", value: float = 1.0
) -> str:
    run_id = store.create_run(
        scenario_name="s", scenario_kind=request.scenario_kind, spec=request.spec,
        city_name="none", city_hash=request.city_hash, seed=request.seed, versions={},
        owner=request.owner,
    )  # fmt: skip
    if status == "done":
        store.mark_done(run_id, metrics={"delay_s": value})
    elif status == "failed":
        store.mark_failed(run_id, error="boom")
    return run_id


def test_resume_finds_the_newest_done_record_of_the_same_cell(settings: Settings) -> None:
    store = RunStore(settings.db_url)
    try:
        spec = {"kind": "test", "x": 1}
        wanted = [
            _req(spec, seed=1),  # done twice: the newer counts
            _req(spec, seed=2),  # only failed: runs again
            _req(spec, seed=3),  # only running: runs again
            _req(spec, seed=1, city_hash="c2"),  # another city
            _req(spec, seed=1, owner="tenant"),  # another owner
            _req({"kind": "test", "x": 2}, seed=1),  # another spec
        ]
        _record(store, wanted[0], value=1.0)
        newest = _record(store, wanted[0], value=2.0)
        _record(store, wanted[1], status="failed")
        _record(store, wanted[2], status="running")
        found = done_records(store, wanted)
        assert set(found) == {0} and found[0].id == newest
        # the same cell twice in one list: both are done
        assert set(done_records(store, [wanted[0], wanted[0]])) == {0, 1}
    finally:
        store.close()


def test_run_cells_skips_what_is_done_and_reports_it(settings: Settings) -> None:
    store = RunStore(settings.db_url)
    requests = [_req({"kind": "test", "x": k}) for k in range(3)]
    ids = [_record(store, r) for r in requests]
    count = store.count()
    store.close()
    seen: list[tuple[str, float, float]] = []

    ran = run_cells(settings, requests, work=_nothing_may_run, progress=lambda *a: seen.append(a))
    assert [r.id for r in ran.records] == ids and ran.resumed == (True, True, True)
    assert sorted(seen) == sorted((i, 1.0, 1.0) for i in ids) and not ran.failed
    store = RunStore(settings.db_url)
    assert store.count() == count  # no new record
    store.close()


def test_execute_queued_starts_only_a_queued_run(settings: Settings) -> None:
    """A Dask task that comes again (its worker died, Dask retried it) finds the run no
    longer queued and leaves it as it is: a run starts once."""
    store = RunStore(settings.db_url)
    request = _req({"kind": "test"})
    run_id = _record(store, request, status="failed")
    store.close()

    record = execute_queued(settings, _nothing_may_run, run_id, request)
    assert record.status == "failed" and record.error == "boom"


# ----------------------------------------------------------------------------- tables
def _plan_and_run(tmp_path: Path) -> tuple[SweepPlan, CellsRun]:
    sweep = load_sweep(_write(tmp_path, 'name = "t"\nscenario = "baseline"\nseeds = "1-2"\n'
                              '[grid]\n"demand.scale" = [1.0, 2]\nmode = ["x", 3]'))  # fmt: skip
    now = datetime.now(UTC)
    cells, records = [], []
    for k, (scale, mode, seed) in enumerate(
        (s, m, seed) for s in (1.0, 2) for m in ("x", 3) for seed in (1, 2)
    ):
        label = f"demand.scale={scale} mode={mode}"
        request = _req({"kind": "baseline", "k": k}, seed=seed)
        cells.append(
            Cell("baseline", label, (("demand.scale", scale), ("mode", mode)), seed, request)
        )
        ok = k != 5
        records.append(RunRecord(
            id=f"run{k}", created_at=now, started_at=now, finished_at=now,
            status="done" if ok else "failed", owner=None, scenario_name="baseline",
            scenario_kind="baseline", spec=request.spec, city_name="none", city_hash="c1",
            seed=seed, versions={}, metrics={"mean_delay_s": 10.0 + k, "teleports": 0,
                                             "flag": True, "nested": {"a": 1}} if ok else None,
            error=None if ok else "boom", run_dir=None, series_files=(),
        ))  # fmt: skip
    plan = SweepPlan(sweep=sweep, cells=tuple(cells), kinds={"baseline": "baseline"})
    return plan, CellsRun(records=tuple(records), resumed=(True,) + (False,) * 7)


def test_the_cells_table_has_one_row_per_cell(tmp_path: Path) -> None:
    plan, run = _plan_and_run(tmp_path)
    frame = cells_table(plan, run)
    assert len(frame) == 8
    assert list(frame.columns) == [
        "sweep", "scenario", "kind", "variant", "seed", "run_id", "status", "resumed", "error",
        "spec_hash", "city_hash", "grid.demand.scale", "grid.mode", "metric.mean_delay_s",
        "metric.teleports",
    ]  # fmt: skip
    assert frame["grid.demand.scale"].tolist() == [1.0] * 4 + [2.0] * 4  # numbers stay numbers
    assert frame["grid.mode"].tolist() == ["x", "x", "3", "3"] * 2  # mixed: JSON text
    assert frame["status"].tolist().count("failed") == 1 and frame["resumed"].sum() == 1
    assert math.isnan(frame.loc[5, "metric.mean_delay_s"]) and frame.loc[5, "error"] == "boom"
    paths = write_tables(plan, run, tmp_path / "out")
    assert paths["cells"].name == CELLS_FILE and paths["summary"].name == SUMMARY_FILE
    back = pd.read_parquet(paths["cells"])
    assert back.shape == frame.shape and back["metric.mean_delay_s"].dtype == "float64"


def test_the_summary_has_mean_ci_and_paired_differences(tmp_path: Path) -> None:
    plan, run = _plan_and_run(tmp_path)
    summary = summary_table(plan, run)
    assert list(summary.columns) == ["sweep", "scenario", "variant", "metric", "n", "mean", "sd",
                                     "ci95", "diff_mean", "diff_ci95"]  # fmt: skip
    delay = summary[summary["metric"] == "mean_delay_s"].set_index("variant")
    assert len(delay) == 4 and delay["n"].tolist() == [2, 2, 1, 2]  # the failed cell is out
    first = delay.loc["demand.scale=1.0 mode=x"]
    assert first["mean"] == 10.5 and first["ci95"] == pytest.approx(
        12.706 * math.sqrt(0.5) / math.sqrt(2)
    )
    assert math.isnan(first["diff_mean"])  # the reference
    assert delay.loc["demand.scale=1.0 mode=3", "diff_mean"] == pytest.approx(2.0)  # paired
    assert set(summary["metric"]) == {"mean_delay_s", "teleports"}


# ----------------------------------------------------------------------------- a real sweep
@pytest.mark.sumo
def test_a_sweep_on_dask_records_every_cell_and_resumes(
    tmp_path: Path, settings: Settings, district_city: City
) -> None:
    """4 cells of 60 s on a LocalCluster (2 workers x 1 thread, sumo=1): two real runs,
    one whose process is killed and one that raises; each a record, only those two
    failed. Started again, the done cells are skipped (the failed ones would run)."""
    text = f"""
name = "dask-test"
scenario = "baseline"
city = "{district_city.path}"
seeds = "1-2"
[set]
"sim.duration_s" = 60
[grid]
description = ["a", "b"]
"""
    sweep = load_sweep(_write(tmp_path, text))
    plan = plan_sweep(sweep, settings)
    requests = [c.request for c in plan.cells]
    seen: dict[str, float] = {}
    ran = run_cells(settings, requests, work=sweep_work.work, scheduler="local", workers=2,
                    progress=lambda rid, d, t: seen.__setitem__(rid, d / t))  # fmt: skip
    paths = write_tables(plan, ran, tmp_path / "out")
    status = {(c.variant, c.seed): r for c, r in zip(plan.cells, ran.records, strict=True)}
    assert {k: r.status for k, r in status.items()} == {
        ("description=a", 1): "done", ("description=a", 2): "done",
        ("description=b", 1): "failed", ("description=b", 2): "failed",
    }  # fmt: skip
    killed, raised = status["description=b", 1], status["description=b", 2]
    assert "worker process died (signal SIGKILL)" in (killed.error or "")
    assert raised.error == sweep_work.RAISED
    store = RunStore(settings.db_url)
    try:
        for cell, record in zip(plan.cells, ran.records, strict=True):
            stored = store.get(record.id)
            assert stored.status == record.status and stored.seed == cell.seed
            assert stored.city_hash == district_city.manifest.content_hash
            assert spec_hash(stored.spec, stored.seed) == cell.spec_hash
        assert status["description=a", 1].metrics is not None
        assert {"queues.parquet"} <= set(status["description=a", 1].series_files)
        assert set(done_records(store, requests)) == {0, 1}  # the failed cells would run
        count = store.count()
    finally:
        store.close()
    assert seen.get(status["description=a", 1].id, 0.0) > 0.0  # progress came back
    cells = pd.read_parquet(paths["cells"])
    assert len(cells) == 4 and cells["status"].tolist() == ["done", "done", "failed", "failed"]
    assert cells["grid.description"].tolist() == ["a", "a", "b", "b"]
    assert cells["metric.mean_delay_s"].notna().tolist() == [True, True, False, False]
    summary = pd.read_parquet(paths["summary"])
    delay = summary[(summary["metric"] == "mean_delay_s") & (summary["variant"] == "description=a")]
    assert delay["n"].tolist() == [2]
    # started again (the default pool): the done cells are not run again
    nothing = run_cells(settings, requests[:2], work=_nothing_may_run)
    assert nothing.resumed == (True, True) and [r.id for r in nothing.records] == [
        status["description=a", 1].id, status["description=a", 2].id,
    ]  # fmt: skip
    store = RunStore(settings.db_url)
    assert store.count() == count  # no new record
    store.close()
