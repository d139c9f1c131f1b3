"""Runs end to end with real SUMO on the district city: CLI contract, records, failures."""

from __future__ import annotations

import gzip
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City, load_city
from scenarios.loader import load_scenario
from twin.app.compose import execute_request, run_request
from twin.config import Settings
from twin.engine.executors import LocalProcess, Progress
from twin.engine.store import RunRecord, RunStore

pytestmark = pytest.mark.sumo

SHORT = """
name = "short"
kind = "baseline"
seed = {seed}
[demand]
period = "am_peak"
[sim]
duration_s = {duration}
control_interval_s = 5
series_interval_s = 60
"""


def _scenario(tmp_path: Path, *, seed: int = 7, duration: int = 600) -> Path:
    path = tmp_path / f"short-{seed}-{duration}.toml"
    path.write_text(SHORT.format(seed=seed, duration=duration), encoding="utf-8")
    return path


def _execute(spec: Any, city: City, *, seed: int, settings: Settings,
             progress: Progress | None = None) -> RunRecord:  # fmt: skip
    executor = LocalProcess(settings, execute_request)
    try:
        return executor.run(run_request(spec, city, seed=seed), progress=progress)
    finally:
        executor.close()


def _twin(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CITYTWIN_DATA": str(data)}
    env.pop("CITYTWIN_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "twin.app.cli", *args], capture_output=True, text=True, env=env,
        timeout=300, check=False,
    )  # fmt: skip


def test_cli_run_json_contract_and_records(tmp_path: Path, district_city: City) -> None:
    data = tmp_path / "data"
    proc = _twin("run", str(_scenario(tmp_path)), "--city", str(district_city.path), "--json",
                 data=data)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    assert payload["status"] == "done"
    metrics = payload["metrics"]
    assert metrics["throughput_veh"] > 100
    assert 0 < metrics["mean_delay_s"] < metrics["mean_travel_time_s"]
    assert metrics["teleports"] >= 0 and metrics["max_queue_veh"] > 0
    assert len(metrics["max_queue_by_tls_veh"]) == len(district_city.manifest.signals)
    assert Path(payload["summary_html"]).exists() and Path(payload["summary_png"]).exists()

    listed = _twin("runs", "list", "--json", data=data)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout.strip().splitlines()[-1])
    assert [r["id"] for r in runs] == [payload["run_id"]]
    shown = _twin("runs", "show", payload["run_id"][:-3], "--json", data=data)
    record = json.loads(shown.stdout.strip().splitlines()[-1])
    assert record["metrics"] == metrics
    assert record["city_hash"] == district_city.manifest.content_hash
    assert record["versions"]["sumo"].startswith("1.28")
    assert record["spec"]["sim"]["duration_s"] == 600


def test_same_seed_same_metrics_other_seed_differs(settings: Settings, district_city: City,
                                                   tmp_path: Path) -> None:  # fmt: skip
    spec = load_scenario(_scenario(tmp_path))
    first = _execute(spec, district_city, seed=11, settings=settings)
    second = _execute(spec, district_city, seed=11, settings=settings)
    other = _execute(spec, district_city, seed=12, settings=settings)
    assert first.status == second.status == other.status == "done"
    assert first.id != second.id
    assert first.metrics == second.metrics
    assert first.metrics != other.metrics
    store = RunStore.from_settings(settings)
    a, b = store.read_series(first.id, "queues"), store.read_series(second.id, "queues")
    assert a.equals(b)


def _copy_city(city: City, dest: Path) -> Path:
    shutil.copytree(city.path, dest)
    return dest


BAD_NETS = {
    # truncated, not even gzip: SUMO segfaults on it; the post-mortem names the file
    "truncated": (b"<net><edge id='x' from='nowhere'/>", "is not well-formed XML"),
    # well-formed but wrong: SUMO's own message comes through
    "unknown-node": (
        b'<net version="1.20"><edge id="x" from="a" to="b"><lane id="x_0" index="0" '
        b'speed="10" length="5" shape="0,0 5,0"/></edge></net>',
        "Unknown from-node 'a'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_NETS))
def test_network_sumo_rejects_is_recorded_as_failed(settings: Settings, district_city: City,
                                                    tmp_path: Path, case: str) -> None:  # fmt: skip
    broken = _copy_city(district_city, tmp_path / "broken-city")
    content, expected = BAD_NETS[case]
    net = broken / district_city.manifest.files.net
    net.write_bytes(content if case == "truncated" else gzip.compress(content))
    spec = load_scenario(_scenario(tmp_path))
    record = _execute(spec, load_city(broken), seed=1, settings=settings)
    assert record.status == "failed"
    assert expected in (record.error or "")
    assert record.finished_at is not None


def test_worker_killed_mid_run_is_recorded(settings: Settings, district_city: City,
                                           tmp_path: Path) -> None:  # fmt: skip
    spec = load_scenario(_scenario(tmp_path, duration=1800))
    killed: list[int] = []

    def kill_on_first_progress(done_s: float, total_s: float) -> None:
        if not killed and done_s > 0:
            for child in mp.active_children():
                os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
                killed.append(child.pid)  # type: ignore[arg-type]

    record = _execute(spec, district_city, seed=1, settings=settings,
                            progress=kill_on_first_progress)  # fmt: skip
    assert killed
    assert record.status == "failed"
    assert "SIGKILL" in (record.error or "") and "died" in (record.error or "")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["city", "build", "--preset", "atlantis"], "allowed: district, suwon-scale"),
        (["run", "no-such-scenario.toml"], "does not exist"),
        (["run", "baseline", "--city", "/nonexistent/city"], "does not exist"),
        (["runs", "show", "zzzz-nope"], "zzzz-nope"),
    ],
)
def test_cli_bad_input_gets_one_clear_error(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = _twin(*args, data=tmp_path / "data")
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nkind = "baseline"\n[sim\nduration_s = 5\n', encoding="utf-8")
    proc = _twin("run", str(bad), data=tmp_path / "data")
    assert proc.returncode == 2
    assert str(bad) in proc.stderr.replace("\n", "") and "line 3" in proc.stderr
