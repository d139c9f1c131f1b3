"""Runs through the API with the stand-in work (real worker processes, real store):
submit, read, list, cancel, progress stream, a worker killed mid-run, and the other
tenant who sees none of it."""

from __future__ import annotations

import os
import signal
import time

from tests.twin.api.conftest import Api, quick


def test_submit_is_accepted_with_a_queue_position_and_ends_done(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "researcher")
    response = api.client.post("/v1/runs", json=quick(), headers=headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"id", "status", "queue_position"}
    assert body["status"] == "queued"
    assert body["queue_position"] in (0, None)  # None: the dispatcher took it already
    run = api.wait(body["id"], headers)
    assert run["status"] == "done", run["error"]
    assert run["metrics"]["mean_delay_s"] == 12.5
    assert run["progress"] == {"done_s": 300.0, "total_s": 300.0}
    assert run["spec"]["sim"]["duration_s"] == 300
    assert run["city_name"] == "district-s1"
    metrics = api.client.get(f"/v1/runs/{body['id']}/metrics", headers=headers)
    assert metrics.status_code == 200 and metrics.json()["metrics"]["seed"] == 42


def test_queue_positions_count_the_runs_ahead(api_settings: object, make_api: object) -> None:
    settings = api_settings.model_copy(update={"run_workers": 0})  # type: ignore[attr-defined]
    api = make_api(settings)  # type: ignore[operator]
    headers = api.key(api.tenant("lab", concurrent_runs=5), "operator")
    positions = [api.client.post("/v1/runs", json=quick(), headers=headers).json()["queue_position"]
                 for _ in range(3)]  # fmt: skip
    assert positions == [0, 1, 2]
    listed = api.client.get("/v1/runs", params={"limit": 2, "offset": 1}, headers=headers).json()
    assert listed["count"] == 3 and len(listed["data"]) == 2
    assert [r["queue_position"] for r in listed["data"]] == [1, 0]  # newest first
    first = api.client.get("/v1/runs", params={"limit": 1, "offset": 2}, headers=headers).json()
    cancelled = api.client.post(f"/v1/runs/{first['data'][0]['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "failed"
    assert cancelled.json()["error"].startswith("Cancelled")
    queued = api.client.get("/v1/runs", params={"status": "queued"}, headers=headers).json()
    assert sorted(r["queue_position"] for r in queued["data"]) == [0, 1]
    again = api.client.post(f"/v1/runs/{first['data'][0]['id']}/cancel", headers=headers)
    assert again.status_code == 409


def test_cancelling_a_running_run_ends_only_its_worker(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "operator")
    slow = api.client.post("/v1/runs", json=quick(description="sleep:60"), headers=headers).json()
    other = api.client.post("/v1/runs", json=quick(description="sleep:2"), headers=headers).json()
    api.wait(slow["id"], headers, until=("running",))
    response = api.client.post(f"/v1/runs/{slow['id']}/cancel", headers=headers)
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    ended = api.wait(slow["id"], headers)
    assert ended["status"] == "failed" and ended["error"].startswith("Cancelled")
    assert api.wait(other["id"], headers)["status"] == "done"


def test_a_worker_killed_mid_run_fails_its_run_and_the_api_keeps_serving(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "operator")
    run = api.client.post("/v1/runs", json=quick(description="sleep:60"), headers=headers).json()
    api.wait(run["id"], headers, until=("running",))
    deadline = time.monotonic() + 60
    while (pid := api.door.dispatcher.worker_pid(run["id"])) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    ended = api.wait(run["id"], headers)
    assert ended["status"] == "failed"
    assert "worker process died (signal SIGKILL)" in ended["error"]
    assert "SUMO says:" in ended["error"]
    assert api.client.get("/health").status_code == 200
    after = api.client.post("/v1/runs", json=quick(), headers=headers).json()
    assert api.wait(after["id"], headers)["status"] == "done"


def test_a_crashing_worker_is_recorded_with_what_sumo_left(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "operator")
    run = api.client.post("/v1/runs", json=quick(description="crash"), headers=headers).json()
    ended = api.wait(run["id"], headers)
    assert ended["status"] == "failed" and "died" in ended["error"]


def test_progress_streams_as_server_sent_events_until_the_end(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "operator")
    run = api.client.post("/v1/runs", json=quick(description="sleep:2"), headers=headers).json()
    with api.client.stream("GET", f"/v1/runs/{run['id']}/events", headers=headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events[-1].startswith("event: end") and '"status": "done"' in events[-1]
    progress = [e for e in events if e.startswith("event: progress")]
    assert len(progress) >= 2  # at least queued/running, then done
    assert '"done_s": 300.0' in progress[-1]
