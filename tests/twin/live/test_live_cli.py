"""``twin live`` as an operator starts it: a process of its own against the emulated
controllers, its API on a free port; a fire key dispatches an ambulance and posts its
GPS over HTTP; SIGTERM hands every signal back (never cutting an interval) and ends it
cleanly, with the audit chain intact and the controllers' monitor clean."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import tomli_w

from city_models.build import City
from tests.twin.live.harness import field_raw, route
from twin.app.live.audit import read_records
from twin.app.live.clock import LiveClock
from twin.app.live.procs import EmulatorProcess
from twin.app.live.trace import gps_message

pytestmark = pytest.mark.slow
SIGNALS = ["n9_11", "n7_11"]


def _twin() -> list[str]:
    script = shutil.which("twin", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "twin.app.cli"]


def _ready_line(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, object]:
    """The service's ready line (stdout), or fail with what it said on stderr."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=0.2):
            line = proc.stdout.readline()
            if line.startswith("{"):
                return dict(json.loads(line))
    proc.kill()
    _out, err = proc.communicate()
    raise AssertionError(f"twin live was not ready in {timeout_s} s: {err[-3000:]}")


def test_twin_live_serves_the_api_and_hands_back_on_sigterm(
    district_city: City, emulator: EmulatorProcess, fast_clock: LiveClock, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    field_file = tmp_path / "FIELD.toml"
    field_file.write_text(tomli_w.dumps(field_raw(emulator, SIGNALS)))
    env = {**os.environ, "CITYTWIN_SECRET_KEY": "live-cli-test-secret-0123456789abcdef"}

    def twin(*args: str) -> str:
        done = subprocess.run([*_twin(), *args, "--data-dir", str(data)], env=env,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    twin("admin", "tenant", "create", "city")
    fire = twin("admin", "key", "create", "--tenant", "city", "--role", "fire").splitlines()[-1]
    audit_path = tmp_path / "audit.jsonl"
    cmd = [*_twin(), "live", "--city", str(district_city.path), "--field", str(field_file),
           "--no-mqtt", "--api-port", "0", "--audit", str(audit_path), "--data-dir", str(data),
           *fast_clock.as_args()]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = _ready_line(proc, timeout_s=90.0)
        assert ready["signals"] == len(SIGNALS) and ready["down"] == [] and ready["refused"] == []
        base = f"http://127.0.0.1:{ready['api_port']}/v1/live"
        headers = {"Authorization": f"Bearer {fire}"}
        path = route(district_city, "fire_station_1", "hospital_1")
        with httpx.Client(base_url=base, headers=headers, timeout=10.0) as client:
            made = client.post("/missions", json={"vehicle": "amb1", "route": path})
            assert made.status_code == 201, made.text
            assert set(made.json()["signals"]) <= set(SIGNALS)
            edge = district_city.net.edges[path[0]]
            x, y = district_city.net.nodes_xy[edge.from_node]
            fix = gps_message(district_city, "amb1", t_wall=time.time(), x_m=x, y_m=y,
                              speed_mps=10.0)  # fmt: skip
            answer = client.post("/gps", content=json.dumps(fix))
            assert answer.status_code == 202 and answer.json()["accepted"], answer.text
            far = {**fix, "t": time.time(), "lat": 40.0}
            refused = client.post("/gps", content=json.dumps(far))
            assert refused.status_code == 422 and refused.json()["reason"] == "outside_city"
            mine = client.get("/audit").json()
            kinds = {r["kind"] for r in mine["data"]}
            assert {"mission", "gps"} <= kinds, kinds
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "audit records written" in err
    records = list(read_records(audit_path))
    assert records[-1]["kind"] == "service_stop"
    released = {r["tls"] for r in records if r["kind"] == "controller_state"
                and r.get("state") == "released"}  # fmt: skip
    assert released == set(SIGNALS)  # every signal handed back, acknowledged
    verdict = emulator.admin({"cmd": "verdict"})
    assert verdict["violations"] == 0, verdict
