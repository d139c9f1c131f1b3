"""Benchmark: the sandbox API under load, against the same runs from the CLI.

    python -m experiments.api_load --json OUT.json [--runs 24] [--tenants 8]

1. The CLI: the runs one after another (``twin run FILE --seed S --json``, one process
   each, as a user types them): ``runs_per_min_cli``.
2. The API: a real ``twin serve`` (uvicorn) on this machine with a run pool of
   ``--workers`` (default: the cores); ``--tenants`` tenants submit the same runs at
   once, while a reader polls run status (``status_p50_ms``, ``status_p99_ms``) and one
   interactive session steps (advance 5 s + observation: ``session_step_p99_ms``) and
   streams (``stream_lag_p99_ms``: server push to client receipt).

The runs: the shipped ``baseline`` (district, AM peak), 300 s simulated, seeds 1..N.
``api_overhead_ratio`` compares per-worker throughput: ``runs_per_min_cli * workers /
runs_per_min_api`` (1.0: the API adds nothing over running the same runs from the
shell on as many cores; goal <= 1.05). The session keys need ``twin.client`` and the
sessions router; without them they are null with a note.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from city_models.build import build_city
from experiments._output import emit_json
from scenarios.loader import library_scenarios
from twin.app.api.db import ApiDatabase
from twin.app.api.keys import Quotas, create_key, create_tenant
from twin.app.api.settings import load_api_settings
from twin.config import load_settings

log = logging.getLogger(__name__)
SIM_S = 300.0
RATIO_NOTE = (
    "api_overhead_ratio = runs_per_min_cli * workers / runs_per_min_api (per-worker "
    "throughput; the CLI runs one at a time, the API `workers` at once)."
)
ROOT = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def _scenario_file(folder: Path) -> Path:
    spec = tomllib.loads(library_scenarios()["baseline"].read_text(encoding="utf-8"))
    spec["sim"]["duration_s"] = SIM_S
    path = folder / "baseline_300.toml"
    path.write_text(tomli_w.dumps(spec), encoding="utf-8")
    return path


def cli_runs(data: Path, scenario: Path, seeds: list[int]) -> tuple[float, list[dict[str, Any]]]:
    """Wall seconds for the runs one after another through the CLI, and their metrics."""
    env = {**os.environ, "CITYTWIN_DATA": str(data), "CITYTWIN_DB": ""}
    out = []
    t0 = time.perf_counter()
    for seed in seeds:
        proc = subprocess.run(
            [sys.executable, "-m", "twin.app.cli", "run", str(scenario), "--seed", str(seed),
             "--json", "--no-report"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=900,
        )  # fmt: skip
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return time.perf_counter() - t0, out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real ``twin serve`` in its own process."""

    def __init__(self, data: Path, *, workers: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CITYTWIN_DATA": str(data), "CITYTWIN_DB": "",
               "CITYTWIN_RUN_WORKERS": str(workers)}  # fmt: skip
        self.log = (data / "serve.log").open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twin.app.cli", "serve", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"twin serve did not start; see {data / 'serve.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _keys(data: Path, tenants: int, runs_each: int) -> tuple[list[str], str]:
    settings = load_api_settings(data=data)
    db = ApiDatabase(settings.engine_settings().db_url)
    try:
        keys = []
        for k in range(tenants):
            create_tenant(db, f"t{k}", Quotas(concurrent_runs=runs_each, requests_per_min=100_000))
            keys.append(create_key(db, settings.secret, tenant=f"t{k}", role="researcher")[1])
        create_tenant(db, "lab", Quotas(requests_per_min=100_000))
        session_key = create_key(db, settings.secret, tenant="lab", role="researcher")[1]
    finally:
        db.close()
    return keys, session_key


def _reader(url: str, key: str, ids: list[str], stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        rng = random.Random(1)
        while not stop.is_set():
            if not ids:
                time.sleep(0.01)
                continue
            t0 = time.perf_counter()
            http.get(f"/v1/runs/{rng.choice(ids)}").raise_for_status()
            out.append((time.perf_counter() - t0) * 1000.0)
            time.sleep(0.02)


def _session(url: str, key: str, stop: threading.Event, result: dict[str, Any]) -> None:
    """Step one session while the runs go, then stream from it (needs twin.client)."""
    try:
        from twin.client import TwinClient  # noqa: PLC0415 - the lead's client, optional
    except ImportError as exc:
        result["note"] = f"no twin.client ({exc}); session keys not measured"
        return
    steps: list[float] = []
    lags: list[float] = []
    try:
        with TwinClient(url, key=key) as client:
            session = client.open_session("baseline")
            while not stop.is_set() and len(steps) < 400:
                t0 = time.perf_counter()
                session.advance(5.0)
                steps.append((time.perf_counter() - t0) * 1000.0)
            for message in session.stream(seconds=120.0, every_s=5.0):
                if "server_wall_s" in message:
                    lags.append((message["received_wall_s"] - message["server_wall_s"]) * 1000.0)
            session.close()
    except Exception as exc:  # a benchmark reports what it could not measure
        result["note"] = f"session failed: {type(exc).__name__}: {exc}"
    result["steps"] = steps
    result["lags"] = lags


def api_runs(data: Path, seeds: list[int], *, tenants: int, workers: int) -> dict[str, Any]:
    runs_each = -(-len(seeds) // tenants)
    keys, session_key = _keys(data, tenants, runs_each)
    server = Server(data, workers=workers)
    stop = threading.Event()
    ids: list[str] = []
    status_ms: list[float] = []
    session: dict[str, Any] = {}
    reader = threading.Thread(target=_reader, args=(server.url, keys[0], ids, stop, status_ms))
    stepper = threading.Thread(target=_session, args=(server.url, session_key, stop, session))
    try:
        reader.start()
        stepper.start()
        t0 = time.perf_counter()
        owners: dict[str, str] = {}
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for k, seed in enumerate(seeds):
                key = keys[k % tenants]
                body = {"scenario": "baseline", "seed": seed,
                        "overrides": {"sim.duration_s": SIM_S}}  # fmt: skip
                response = http.post("/v1/runs", json=body,
                                     headers={"Authorization": f"Bearer {key}"})  # fmt: skip
                response.raise_for_status()
                owners[response.json()["id"]] = key
                if k % tenants == 0:
                    ids.append(response.json()["id"])  # the reader's tenant
            records: dict[str, dict[str, Any]] = {}
            while len(records) < len(owners):
                for run_id, key in owners.items():
                    if run_id in records:
                        continue
                    got = http.get(f"/v1/runs/{run_id}",
                                   headers={"Authorization": f"Bearer {key}"}).json()  # fmt: skip
                    if got["status"] in ("done", "failed"):
                        records[run_id] = got
                time.sleep(0.5)
        wall_s = time.perf_counter() - t0
    finally:
        stop.set()
        reader.join()
        stepper.join(timeout=600)
        server.stop()
    return {"wall_s": wall_s, "records": list(records.values()), "status_ms": status_ms,
            "session": session}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    seeds = list(range(1, args.runs + 1))
    with tempfile.TemporaryDirectory(prefix="api_load-") as tmp:
        data = Path(tmp) / "data"
        build_city("district", seed=1, cities_dir=load_settings(data_dir=data).cities_dir)
        scenario = _scenario_file(Path(tmp))
        cli_wall_s, cli_records = cli_runs(data, scenario, seeds)
        api = api_runs(data, seeds, tenants=args.tenants, workers=args.workers)
    done = [r for r in api["records"] if r["status"] == "done"]
    by_seed_api = {r["seed"]: r["metrics"] for r in done}
    by_seed_cli = {r["seed"]: r["metrics"] for r in cli_records}
    per_min_api = len(api["records"]) / api["wall_s"] * 60.0
    per_min_cli = len(cli_records) / cli_wall_s * 60.0
    session = api["session"]
    notes = [session["note"]] if session.get("note") else []
    result = {
        "runs": len(seeds), "tenants": args.tenants, "workers": args.workers,
        "sim_s_per_run": SIM_S, "cores": os.cpu_count(),
        "runs_per_min_api": round(per_min_api, 2),
        "runs_per_min_cli": round(per_min_cli, 2),
        "api_overhead_ratio": round(per_min_cli * args.workers / per_min_api, 3),
        "status_p50_ms": _percentile(api["status_ms"], 50),
        "status_p99_ms": _percentile(api["status_ms"], 99),
        "status_polls": len(api["status_ms"]),
        "session_step_p99_ms": _percentile(session.get("steps", []), 99),
        "session_steps": len(session.get("steps", [])),
        "stream_lag_p99_ms": _percentile(session.get("lags", []), 99),
        "stream_messages": len(session.get("lags", [])),
        "api_failed_runs": len(api["records"]) - len(done),
        "same_metrics_as_cli": all(by_seed_api.get(s) == m for s, m in by_seed_cli.items()),
        "api_wall_s": round(api["wall_s"], 1), "cli_wall_s": round(cli_wall_s, 1),
        "notes": [*notes, RATIO_NOTE],
    }  # fmt: skip
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
