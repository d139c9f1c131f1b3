"""The other processes live mode talks to: the controller emulator and an MQTT broker.

Used by the demo, the benchmark and the tests: each is a real process (the emulator
serves real SNMP, the broker is Mosquitto), started here and stopped by its own id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.app.live.clock import LiveClock
from twin.app.live.emulator import admin_call_sync
from twin.errors import ConfigError

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, *, timeout_s: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


@dataclass
class EmulatorProcess:
    """A running ``python -m twin.app.live.emulator``."""

    proc: subprocess.Popen[str]
    admin_port: int
    ports: dict[str, int]
    field_path: Path
    log_path: Path
    verdict: dict[str, Any] = field(default_factory=dict)

    def admin(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return admin_call_sync("127.0.0.1", self.admin_port, cmd)

    def stop(self, *, timeout_s: float = 15.0) -> dict[str, Any]:
        """Stop it (SIGTERM) and return its final MMU verdict."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.verdict = self.admin({"cmd": "verdict"})
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            for line in (out or "").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    data = json.loads(line)
                    if isinstance(data, dict) and "verdict" in data:
                        self.verdict = data["verdict"]
        return self.verdict


def start_emulator(
    city_path: Path,
    *,
    clock: LiveClock,
    workdir: Path,
    backup_time_s: int = 10,
    field_backup_time_s: int = 5,
    field_heartbeat_s: float = 1.0,
    timeout_s: float = 60.0,
) -> EmulatorProcess:
    """Start the emulator on ``city_path`` (every signal on its own loopback port) and
    wait until it answers; it writes ``FIELD.toml`` into ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    field_path = workdir / "FIELD.toml"
    log_path = workdir / "emulator.log"
    cmd = [
        sys.executable,
        "-m",
        "twin.app.live.emulator",
        "--city",
        str(city_path),
        "--write-field",
        str(field_path),
        "--backup-time",
        str(backup_time_s),
        "--field-backup-time",
        str(field_backup_time_s),
        "--field-heartbeat",
        str(field_heartbeat_s),
        *clock.as_args(),
    ]
    with log_path.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    try:
        ready = json.loads(line)
    except json.JSONDecodeError:
        proc.kill()
        raise ConfigError(
            f"the controller emulator did not start: {log_path.read_text()[-2000:]}"
        ) from None
    return EmulatorProcess(
        proc, int(ready["admin_port"]), dict(ready["ports"]), field_path, log_path
    )


@dataclass
class Broker:
    """A Mosquitto of our own (so that it can be restarted)."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise ConfigError("mosquitto is not installed (apt-get install mosquitto)")
        self.proc = subprocess.Popen(
            [exe, "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not port_open("127.0.0.1", self.port):
            time.sleep(0.05)
        if not port_open("127.0.0.1", self.port):
            self.stop()
            raise ConfigError(f"mosquitto did not listen on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, *, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
