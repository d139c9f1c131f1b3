"""``twin runs list | compare | export | rm | prune`` on a real SQLite store filled here
(no SUMO runs): short ids at 80 columns, each kind's headline metric, differences
against the first run, exports that carry the run id, removal with the run folders."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from twin.app.cli import app
from twin.config import Settings
from twin.engine.store import RunStore


def _invoke(settings: Settings, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["runs", *args, "--data-dir", str(settings.data_dir)],
                                env={"CITYTWIN_DB": "", "COLUMNS": "80"})  # fmt: skip
    assert result.exit_code == code, result.output
    return result.stdout


def _run(store: RunStore, settings: Settings, kind: str, metrics: dict[str, Any] | None,
         *, seed: int = 1, city_path: Path | None = None, **more: Any) -> str:  # fmt: skip
    run_id = store.create_run(
        scenario_name=f"{kind}-scenario-with-a-long-name", scenario_kind=kind, spec={},
        city_name="district-s1", city_hash="h", seed=seed, versions={}, city_path=city_path,
        **more,
    )  # fmt: skip
    store.set_run_dir(run_id, settings.run_dir(run_id))
    settings.run_dir(run_id).mkdir(parents=True)
    if metrics is not None:
        store.mark_done(run_id, metrics=metrics)
    time.sleep(0.002)
    return run_id


@pytest.fixture
def runs(settings: Settings) -> dict[str, str]:
    """Runs of every kind, done, plus a failed and a running one."""
    store = RunStore(settings.db_url)
    try:
        ids = {
            "baseline": _run(store, settings, "baseline", {"mean_delay_s": 40.0,
                             "throughput_veh": 900, "mean_queue_veh": 3.5}),
            "baseline2": _run(store, settings, "baseline", {"mean_delay_s": 45.5,
                              "throughput_veh": 880, "mean_queue_veh": 3.0}, seed=2),
            "ev": _run(store, settings, "ev_priority", {"ev_s_per_km": 61.25,
                       "mean_delay_s": 50.0}),
            "vms": _run(store, settings, "vms_diversion", {"incident_queue_max_veh": 17.0}),
            "vms_share": _run(store, settings, "vms_diversion", {"diverted_share": 0.25}),
            "evac": _run(store, settings, "evacuation", {"zone_clearance_s": 1234.5}),
        }  # fmt: skip
        ids["failed"] = _run(store, settings, "baseline", None)
        store.mark_failed(ids["failed"], error="boom")
        ids["running"] = _run(store, settings, "baseline", None)
        store.write_series(ids["baseline"], "network", pd.DataFrame({"t_s": [0.0, 60.0],
                           "vehicles_running": [10.0, 12.0]}))  # fmt: skip
    finally:
        store.close()
    return ids


def test_list_fits_80_columns_with_short_ids_and_headline_metrics(
    settings: Settings, runs: dict[str, str]
) -> None:
    listed = _invoke(settings, "list")
    lines = listed.splitlines()
    assert max(len(line) for line in lines) <= 80, listed
    store = RunStore(settings.db_url)
    try:
        short = store.short_ids(list(runs.values()))
        for run_id, prefix in short.items():
            assert store.get(prefix).id == run_id  # the shown id works everywhere
    finally:
        store.close()
    for name, run_id in runs.items():
        assert short[run_id] in listed, name
        assert len(short[run_id]) < len(run_id)
    headlines = {"baseline": "delay 40.0 s", "ev": "EV 61.2 s/km",
                 "vms": "inc. queue 17 veh", "vms_share": "diverted 25%",
                 "evac": "clearance 1234 s", "failed": " - "}  # fmt: skip
    for name, headline in headlines.items():  # each kind's own headline, on its run's row
        row = next(line for line in lines if short[runs[name]] in line)
        assert headline in row, (name, row)


def test_compare_shows_shared_metrics_and_differences(
    settings: Settings, runs: dict[str, str]
) -> None:
    data = json.loads(_invoke(settings, "compare", runs["baseline"], runs["baseline2"],
                              runs["ev"], "--json"))  # fmt: skip
    assert data["runs"] == [runs["baseline"], runs["baseline2"], runs["ev"]]
    assert data["seed"] == [1, 2, 1]
    assert list(data["metrics"]) == ["mean_delay_s"]  # the only metric all three have
    assert data["metrics"]["mean_delay_s"] == {"values": [40.0, 45.5, 50.0],
                                               "diff": [0.0, 5.5, 10.0]}  # fmt: skip
    table = _invoke(settings, "compare", runs["baseline"][:-2], runs["baseline2"])
    for words in ("scenario", "city", "seed", "throughput_veh", "880 (-20)", "45.50 (+5.50)",
                  "3.00 (-0.50)"):  # fmt: skip
        assert words in table, words
    _invoke(settings, "compare", runs["baseline"], code=2)


def test_export_csv_and_parquet_carry_the_run_id(
    settings: Settings, runs: dict[str, str], tmp_path: Path
) -> None:
    run_id = runs["baseline"]
    files = json.loads(_invoke(settings, "export", run_id, "--format", "csv", "--out",
                               str(tmp_path / "csv"), "--json"))["files"]  # fmt: skip
    assert sorted(Path(f).name for f in files) == [f"{run_id}_metrics.csv",
                                                   f"{run_id}_network.csv"]  # fmt: skip
    metrics = pd.read_csv(tmp_path / "csv" / f"{run_id}_metrics.csv")
    assert set(metrics["run_id"]) == {run_id}
    assert dict(zip(metrics["metric"], metrics["value"], strict=True))["mean_delay_s"] == 40.0
    network = pd.read_csv(tmp_path / "csv" / f"{run_id}_network.csv")
    assert list(network["run_id"]) == [run_id, run_id]
    assert list(network["vehicles_running"]) == [10.0, 12.0]
    target = tmp_path / "pq" / "mine.parquet"
    _invoke(settings, "export", run_id, "--format", "parquet", "--out", str(target))
    assert set(pd.read_parquet(target)["run_id"]) == {run_id}
    assert set(pd.read_parquet(target.with_name("mine.network.parquet"))["run_id"]) == {run_id}
    _invoke(settings, "export", run_id, "--format", "xlsx", "--out", str(tmp_path), code=2)


def test_export_geojson_puts_per_signal_metrics_at_the_citys_signals(
    settings: Settings, district_city: Any, tmp_path: Path
) -> None:
    from city_models.geo import projection_of

    signals = district_city.manifest.signals
    by_tls = {s.id: float(k) for k, s in enumerate(signals)}
    store = RunStore(settings.db_url)
    try:
        run_id = _run(store, settings, "baseline",
                      {"mean_delay_s": 1.0, "max_queue_by_tls_veh": by_tls},
                      city_path=district_city.path)  # fmt: skip
        queues = {"t_s": [0.0, 60.0], "tls_id": [signals[0].id] * 2, "queue_veh": [2.0, 4.0]}
        store.write_series(run_id, "queues", pd.DataFrame(queues))
        no_city = _run(store, settings, "baseline", {"mean_delay_s": 1.0})
    finally:
        store.close()
    out = tmp_path / "signals.geojson"
    _invoke(settings, "export", run_id[:-2], "--format", "geojson", "--out", str(out))
    collection = json.loads(out.read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection" and collection["run_id"] == run_id
    assert len(collection["features"]) == len(signals)
    projection = projection_of(district_city.manifest)
    first = collection["features"][0]
    lon, lat = projection.xy_to_lonlat(signals[0].x, signals[0].y)
    assert first["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-6)
    assert 120 < lon < 135 and 30 < lat < 40  # the district sits at Suwon
    assert first["properties"] == {"run_id": run_id, "signal": signals[0].id,
                                   "max_queue_by_tls_veh": 0.0, "queue_max_veh": 4.0,
                                   "queue_mean_veh": 3.0}  # fmt: skip
    last = collection["features"][-1]["properties"]
    assert last["max_queue_by_tls_veh"] == float(len(signals) - 1)
    CliRunner().invoke(app, ["runs", "export", no_city, "--format", "geojson", "--out",
                             str(tmp_path / "x.geojson"), "--data-dir", str(settings.data_dir)],
                       env={"CITYTWIN_DB": ""})  # fmt: skip
    assert not (tmp_path / "x.geojson").exists()  # no city recorded: nothing written


def test_rm_removes_records_and_folders_and_keeps_running_runs(
    settings: Settings, runs: dict[str, str]
) -> None:
    gone, running = runs["failed"], runs["running"]
    text_out = _invoke(settings, "rm", gone, running, "nosuchrun", code=1)
    assert f"removed {gone}" in text_out and "1 run(s) removed" in text_out
    assert not settings.run_dir(gone).exists()
    assert settings.run_dir(running).exists()
    listed = json.loads(_invoke(settings, "list", "--json", "--limit", "100"))
    assert gone not in {r["id"] for r in listed} and running in {r["id"] for r in listed}


def test_prune_removes_old_ended_runs_of_a_status(settings: Settings, runs: dict[str, str]) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    engine = create_engine(settings.db_url)
    try:
        with engine.begin() as connection:
            for name in ("baseline", "failed", "running"):
                connection.execute(text("UPDATE runs SET created_at = :t WHERE id = :i"),
                                   {"t": old, "i": runs[name]})  # fmt: skip
    finally:
        engine.dispose()
    only_failed = json.loads(_invoke(settings, "prune", "--older-than", "30", "--status",
                                     "failed", "--json"))  # fmt: skip
    assert only_failed == {"removed": [runs["failed"]], "kept": {}}
    text_out = _invoke(settings, "prune", "--older-than", "30")
    assert f"removed {runs['baseline']}" in text_out and "1 run(s) removed" in text_out
    assert not settings.run_dir(runs["baseline"]).exists()
    assert settings.run_dir(runs["running"]).exists()  # running: never pruned
    assert settings.run_dir(runs["baseline2"]).exists()  # recent
    _invoke(settings, "prune", "--older-than", "30", "--status", "running", code=1)
