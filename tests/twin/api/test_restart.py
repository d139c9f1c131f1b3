"""A server restart over the same database: queued runs survive it, a run a dead server
left running is failed ("Interrupted"), an orderly stop puts running runs back in the
queue; and a real ``twin serve`` process answers /health and /openapi.json."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import update

from tests.twin.api.conftest import Api, quick
from twin.app.api.db import ApiRun
from twin.app.api.settings import ApiSettings
from twin.engine.executors import INTERRUPTED

ROOT = Path(__file__).resolve().parents[3]


def test_queued_runs_survive_a_restart(api_settings: ApiSettings,
                                       make_api: Callable[..., Api]) -> None:  # fmt: skip
    first = make_api(api_settings.model_copy(update={"run_workers": 0}))
    headers = first.key(first.tenant("lab", concurrent_runs=3), "researcher")
    ids = [first.client.post("/v1/runs", json=quick(), headers=headers).json()["id"]
           for _ in range(3)]  # fmt: skip
    first.client.__exit__(None, None, None)  # the server stops with three runs queued
    second = make_api(api_settings)
    assert [second.wait(i, headers)["status"] for i in ids] == ["done"] * 3


def test_a_run_left_running_by_a_dead_server_is_failed_interrupted(
    api_settings: ApiSettings, make_api: Callable[..., Api]
) -> None:
    first = make_api(api_settings.model_copy(update={"run_workers": 0}))
    headers = first.key(first.tenant("lab"), "researcher")
    run_id = first.client.post("/v1/runs", json=quick(), headers=headers).json()["id"]
    # what a server that died mid-run leaves behind: the run claimed, no worker
    assert first.door.store.claim(run_id)
    first.door.queue.started(run_id)
    first.client.__exit__(None, None, None)
    second = make_api(api_settings)
    ended = second.wait(run_id, headers)
    assert ended["status"] == "failed" and ended["error"] == INTERRUPTED
    # its booking is released: the tenant may run again
    with second.door.db.sessions() as session:
        assert session.get(ApiRun, run_id).state == "ended"  # type: ignore[union-attr]


def test_an_orderly_stop_puts_running_runs_back_in_the_queue(
    api_settings: ApiSettings, make_api: Callable[..., Api]
) -> None:
    first = make_api(api_settings)
    headers = first.key(first.tenant("lab"), "researcher")
    run_id = first.client.post("/v1/runs", json=quick(description="sleep:60"),
                               headers=headers).json()["id"]  # fmt: skip
    first.wait(run_id, headers, until=("running",))
    pid = int((first.door.engine.run_dir(run_id) / "worker.pid").read_text() or 0) if (
        first.door.engine.run_dir(run_id) / "worker.pid").exists() else None  # fmt: skip
    first.client.__exit__(None, None, None)
    if pid:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    second = make_api(api_settings.model_copy(update={"run_workers": 0}))
    assert second.client.get(f"/v1/runs/{run_id}", headers=headers).json()["status"] == "queued"
    with second.door.db.sessions.begin() as session:  # make the rerun quick
        row = session.get(ApiRun, run_id)
        assert row is not None
        request = dict(row.request)
        request["spec"] = {**request["spec"], "description": ""}
        session.execute(update(ApiRun).where(ApiRun.run_id == run_id).values(request=request))
    second.client.__exit__(None, None, None)
    third = make_api(api_settings)
    assert third.wait(run_id, headers)["status"] == "done"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_twin_serve_answers_health_and_openapi(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "CITYTWIN_DATA": str(tmp_path / "data"), "CITYTWIN_DB": "",
           "CITYTWIN_RUN_WORKERS": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin.app.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        spec = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
        assert "/v1/runs" in spec["paths"]
        assert httpx.get(f"http://127.0.0.1:{port}/v1/runs", timeout=5).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    # uvicorn shuts down in order (the lifespan closes the door), then re-raises the signal
    assert proc.returncode in (0, -signal.SIGTERM)
    assert b"Application shutdown complete" in output
