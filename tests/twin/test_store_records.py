"""What a run record keeps beyond its results (revision 0003), on a real SQLite store:
the city and code a run used, who runs it, stale ``running`` records failed when a
store opens, removal of ended runs with their folders, short ids, and SIGTERM sent to a
real worker process from outside (a cluster job ending) or by its executor."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from city_models.build import hash_files
from twin.config import Settings
from twin.engine.executors import (
    CANCELLED,
    STOP_FILE,
    TERMINATED,
    LocalProcess,
    Pool,
    RunRequest,
    city_files_hash,
    code_commit,
)
from twin.engine.store import DEAD_PID_GRACE_S, STALE, RunStore, head_revision
from twin.errors import RunError, RunNotFoundError

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0


def _create(store: RunStore, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "scenario_name": "s", "scenario_kind": "baseline", "spec": {}, "city_name": "c",
        "city_hash": "h", "seed": 1, "versions": {},
    }  # fmt: skip
    args.update(overrides)
    return store.create_run(**args)


def _until(what: str, condition: Any, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _record(settings: Settings, run_id: str) -> Any:
    store = RunStore(settings.db_url, migrate=False)
    try:
        return store.get(run_id)
    finally:
        store.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- provenance
def _city_folder(tmp_path: Path) -> Path:
    """A city folder as the builder leaves it: manifest, gzipped net, detectors, plans,
    each XML with the tools' header comment."""
    city = tmp_path / "city"
    city.mkdir()
    head = b"<?xml version='1.0'?>\n<!-- generated on 2026-11-30 by netconvert -->\n"
    (city / "city.net.xml.gz").write_bytes(gzip.compress(head + b"<net><edge id='a'/></net>"))
    (city / "detectors.add.xml").write_bytes(head + b"<additional/>")
    (city / "plans.add.xml").write_bytes(head + b"<additional><tlLogic id='t'/></additional>")
    (city / "city.json").write_text(
        '{"files": {"net": "city.net.xml.gz", "detectors": "detectors.add.xml", '
        '"signal_plans": "plans.add.xml", "sumocfg": "city.sumocfg"}}', encoding="utf-8",
    )  # fmt: skip
    return city


def test_city_files_hash_is_the_builders_hash_and_sees_an_edited_net(tmp_path: Path) -> None:
    city = _city_folder(tmp_path)
    built = hash_files(city, ["city.net.xml.gz", "detectors.add.xml", "plans.add.xml"])
    assert city_files_hash(city) == built
    # only the header comment (a timestamp) changes: the same city
    other = b"<?xml version='1.0'?>\n<!-- generated on 2027-01-01 by netconvert -->\n"
    (city / "detectors.add.xml").write_bytes(other + b"<additional/>")
    assert city_files_hash(city) == built
    # a net edited by hand (netedit) is another city
    (city / "city.net.xml.gz").write_bytes(gzip.compress(b"<net><edge id='b'/></net>"))
    assert city_files_hash(city) not in (None, built)
    assert city_files_hash(tmp_path / "nowhere") is None


def test_a_record_keeps_the_city_it_used_and_the_code_commit(
    settings: Settings, tmp_path: Path
) -> None:
    from tests.twin.test_executors import work

    city = _city_folder(tmp_path)
    request = RunRequest(
        spec={"action": "ok"}, scenario_name="t", scenario_kind="test", city_path=str(city),
        city_name="c", city_hash="from-the-manifest", seed=1,
    )  # fmt: skip
    with LocalProcess(settings, work) as local:
        record = local.run(request)
    assert record.status == "done", record.error
    assert record.city_path == city.resolve()
    assert record.city_files_hash == city_files_hash(city)
    assert record.city_hash == "from-the-manifest"  # kept as well: the two can differ
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT / "twin",
                          capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    assert record.code_commit == (head or None) == code_commit()
    # the worker named itself and beat at least once
    assert record.worker_pid not in (None, os.getpid())
    assert record.worker_host == socket.gethostname()
    assert record.heartbeat_at is not None and record.heartbeat_at >= record.created_at
    assert {"city_path", "city_files_hash", "code_commit"} <= set(record.to_dict())


def test_schema_is_at_revision_0003(settings: Settings) -> None:
    RunStore(settings.db_url).close()
    engine = create_engine(settings.db_url)
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            columns = {row[1] for row in connection.execute(text("PRAGMA table_info(runs)"))}
    finally:
        engine.dispose()
    assert version == head_revision() == "0003"
    assert {"city_path", "city_files_hash", "code_commit", "worker_host", "worker_pid",
            "heartbeat_at"} <= columns  # fmt: skip


# ----------------------------------------------------------------------------- stale runs
def test_a_store_that_opens_fails_runs_whose_worker_is_gone(settings: Settings) -> None:
    store = RunStore(settings.db_url)
    long_ago = datetime.now(UTC) - timedelta(seconds=DEAD_PID_GRACE_S + 60)
    try:
        dead = _create(store)
        store.set_worker(dead, pid=_dead_pid())
        store.heartbeat(dead, at=long_ago)
        alive = _create(store)  # this test's own process: alive, however old its beat
        store.set_worker(alive, pid=os.getpid())
        store.heartbeat(alive, at=long_ago)
        fresh_dead = _create(store)  # gone, but it beat a moment ago: wait for the grace
        store.set_worker(fresh_dead, pid=_dead_pid())
        elsewhere = _create(store)  # another host: only the heartbeat's age counts
        store.set_worker(elsewhere, pid=_dead_pid(), host="another-host")
        store.heartbeat(elsewhere, at=long_ago)
        done = _create(store)
        store.mark_done(done, metrics={})
    finally:
        store.close()
    RunStore(settings.db_url).close()  # opening it is the check
    rec = _record(settings, dead)
    assert rec.status == "failed" and rec.finished_at is not None
    assert (rec.error or "").startswith(STALE) and "is gone" in (rec.error or "")
    assert str(rec.worker_pid) in (rec.error or "")
    for run_id in (alive, fresh_dead, elsewhere):
        assert _record(settings, run_id).status == "running"
    assert _record(settings, done).status == "done"


def test_runs_silent_too_long_are_failed_wherever_they_ran(settings: Settings) -> None:
    store = RunStore(settings.db_url, stale_after_s=None)
    try:
        silent = _create(store)
        store.set_worker(silent, pid=os.getpid(), host="another-host")
        store.heartbeat(silent, at=datetime.now(UTC) - timedelta(minutes=11))
        beating = _create(store)
        store.set_worker(beating, pid=os.getpid(), host="another-host")
        never_started = _create(store, status="queued")  # queued: not a worker's business
        assert store.fail_stale(stale_after_s=600) == [silent]
        assert store.fail_stale(stale_after_s=600) == []  # once
    finally:
        store.close()
    error = _record(settings, silent).error or ""
    assert error.startswith(f"{STALE}:") and "no sign of life" in error and "10 min" in error
    assert _record(settings, beating).status == "running"
    assert _record(settings, never_started).status == "queued"


def test_an_executor_that_starts_fails_stale_runs(settings: Settings) -> None:
    from tests.twin.test_executors import work

    store = RunStore(settings.db_url)
    try:
        stuck = _create(store)
        store.set_worker(stuck, pid=_dead_pid())
        store.heartbeat(stuck, at=datetime.now(UTC) - timedelta(hours=1))
    finally:
        store.close()
    LocalProcess(settings, work).close()
    assert _record(settings, stuck).status == "failed"


# ----------------------------------------------------------------------------- SIGTERM
def test_a_worker_ended_by_sigterm_from_outside_records_its_run_failed(
    settings: Settings,
) -> None:
    from tests.twin.test_executors import _pid, _request, work

    with Pool(settings, work, workers=1) as pool:
        run_id = pool.submit(_request("child", sleep_s=120.0, steps=240))
        worker, child = _pid(settings, run_id), _pid(settings, run_id, "child.pid")
        _until("the run to run", lambda: _record(settings, run_id).status == "running")
        os.kill(worker, signal.SIGTERM)  # the cluster's scheduler, not the executor
        record = pool.wait(run_id, timeout_s=WAIT_S)
    assert record.status == "failed"
    assert record.error == TERMINATED
    assert "terminated by signal 15" in (record.error or "").lower()
    assert not (settings.run_dir(run_id) / STOP_FILE).exists()
    _until("the worker's child to end", lambda: not _alive(child), timeout_s=30)


def test_a_run_cancelled_by_its_executor_keeps_the_executors_reason(settings: Settings) -> None:
    from tests.twin.test_executors import _pid, _request, work

    with Pool(settings, work, workers=1) as pool:
        run_id = pool.submit(_request(sleep_s=120.0, steps=240))
        _pid(settings, run_id)
        _until("the run to run", lambda: _record(settings, run_id).status == "running")
        assert pool.cancel(run_id)
        record = pool.wait(run_id, timeout_s=WAIT_S)
    assert record.status == "failed"
    assert record.error == f"{CANCELLED}: the run was stopped before it finished."


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ----------------------------------------------------------------------------- removal
def test_delete_removes_ended_runs_and_their_folders_only(
    settings: Settings, tmp_path: Path
) -> None:
    store = RunStore(settings.db_url)
    try:
        done = _create(store)
        store.set_run_dir(done, settings.run_dir(done))
        settings.run_dir(done).mkdir(parents=True)
        (settings.run_dir(done) / "tripinfo.xml").write_text("x", encoding="utf-8")
        store.mark_done(done, metrics={})
        foreign = tmp_path / "keep-me"
        foreign.mkdir()
        odd = _create(store, run_dir=foreign)
        store.mark_failed(odd, error="x")
        running = _create(store)
        removed = store.delete(done[:-3])  # a unique prefix works
        assert removed.id == done and not settings.run_dir(done).exists()
        store.delete(odd)
        assert foreign.is_dir()  # not named after the run: not the store's to remove
        with pytest.raises(RunError, match="running"):
            store.delete(running)
        with pytest.raises(RunNotFoundError):
            store.get(done)
        assert [r.id for r in store.list()] == [running]
    finally:
        store.close()


def test_ended_before_and_short_ids(settings: Settings) -> None:
    store = RunStore(settings.db_url)
    try:
        given = ("20260101T000000-aaaaaa", "20260101T000000-aaabbb", "20261201T000000-cccccc")
        ids = [_create(store, run_id=i) for i in given]
        store.mark_done(ids[0], metrics={})
        store.mark_failed(ids[1], error="x")
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert [r.id for r in store.ended_before(later)] == ids[:2]
        assert [r.id for r in store.ended_before(later, status="failed")] == [ids[1]]
        with pytest.raises(ValueError, match="done' or 'failed"):
            store.ended_before(later, status="running")
        short = store.short_ids(ids)
        assert short == {ids[0]: "20260101T000000-aaaa", ids[1]: "20260101T000000-aaab",
                         ids[2]: "20261"}  # fmt: skip
        assert all(store.get(s).id == i for i, s in short.items())
    finally:
        store.close()


# ----------------------------------------------------------------------------- post-mortem
def test_scratch_args_move_every_output_and_nothing_else(tmp_path: Path) -> None:
    from twin.engine.executors import POST_MORTEM_PREFIX, scratch_args

    run = "/data/runs/r1"
    args = [
        "--net-file", f"{run}/net.xml", "--route-files", f"{run}/a.rou.xml",
        "--additional-files", f"{run}/det.add.xml", "--no-step-log", "true",
        "--tripinfo-output", f"{run}/tripinfo.xml", "--tripinfo-output.write-unfinished", "true",
        "--summary-output", f"{run}/summary.xml", f"--statistic-output={run}/stats.xml",
        "--error-log", f"{run}/sumo_errors.log", "--log", f"{run}/sumo.log",
        "--fcd-output", f"{run}/x/tripinfo.xml", "--output-prefix", "old.",
    ]  # fmt: skip
    moved = scratch_args(args, tmp_path)
    assert moved == [
        "--net-file", f"{run}/net.xml", "--route-files", f"{run}/a.rou.xml",
        "--additional-files", f"{run}/det.add.xml", "--no-step-log", "true",
        "--tripinfo-output", f"{tmp_path}/tripinfo.xml",
        "--tripinfo-output.write-unfinished", "true",
        "--summary-output", f"{tmp_path}/summary.xml",
        f"--statistic-output={tmp_path}/stats.xml",
        "--error-log", f"{tmp_path}/sumo_errors.log", "--log", f"{tmp_path}/sumo.log",
        "--fcd-output", f"{tmp_path}/1-tripinfo.xml", "--output-prefix", POST_MORTEM_PREFIX,
    ]  # fmt: skip


@pytest.mark.sumo
def test_the_post_mortem_keeps_what_the_dead_run_wrote(tmp_path: Path) -> None:
    """A plain sumo on the run's own command line would truncate its tripinfo, summary
    and error log; the post-mortem's sumo writes in a scratch folder instead."""
    import json

    from twin.engine.executors import SUMO_ARGS_FILE, post_mortem
    from twin.engine.sumo_tools import run_tool

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "n.nod.xml").write_text(
        '<nodes><node id="a" x="0" y="0"/><node id="b" x="200" y="0"/></nodes>', encoding="utf-8"
    )
    (run_dir / "e.edg.xml").write_text(
        '<edges><edge id="ab" from="a" to="b" numLanes="1" speed="13.9"/></edges>',
        encoding="utf-8",
    )
    run_tool("netconvert", ["-n", "n.nod.xml", "-e", "e.edg.xml", "-o", "net.xml"],
             what="a test net", cwd=run_dir)  # fmt: skip
    evidence = {"tripinfo.xml": "<tripinfos>" + "<tripinfo id='v'/>" * 5000,
                "summary.xml": "<summary><step time='1'/>", "sumo_errors.log": ""}  # fmt: skip
    for name, content in evidence.items():
        (run_dir / name).write_text(content, encoding="utf-8")
    args = ["--net-file", str(run_dir / "net.xml"), "--begin", "0", "--end", "3600",
            "--tripinfo-output", str(run_dir / "tripinfo.xml"),
            "--summary-output", str(run_dir / "summary.xml"),
            "--error-log", str(run_dir / "sumo_errors.log")]  # fmt: skip
    (run_dir / SUMO_ARGS_FILE).write_text(json.dumps(args), encoding="utf-8")
    before = set(run_dir.iterdir())
    words = post_mortem(run_dir)
    assert "loads the inputs without error" in words
    for name, content in evidence.items():
        assert (run_dir / name).read_text(encoding="utf-8") == content, name
    assert set(run_dir.iterdir()) == before  # nothing new beside the evidence either
