"""Fixtures of the live tests: the district city's monitor rules, emulated controllers
(real SNMP agents in their own process), brokers of our own, a fast clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from city_models.build import City
from city_models.plan_check import all_red_promise_s
from twin.app.live.clock import LiveClock
from twin.app.live.mmu import MonitorRules, monitor_rules
from twin.app.live.procs import Broker, EmulatorProcess, free_port, start_emulator

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None
)
needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None,
    reason="mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)",
)
"""Tests that start a broker of their own skip only where there is no Mosquitto at all
(a laptop); CI installs it."""

SPEED = 10.0
"""Live tests run the clock 10x (a 20 s minimum green takes 2 s)."""


@pytest.fixture(scope="session")
def rules(district_city: City) -> dict[str, MonitorRules]:
    return monitor_rules(
        district_city.net,
        district_city.manifest.signals,
        all_red_promise_s=all_red_promise_s(district_city.manifest),
    )


@pytest.fixture
def fast_clock(request: pytest.FixtureRequest) -> LiveClock:
    """The clock at ``SPEED`` (or the speed a test asks for: a bound of 1 s measured on a
    10x clock is 0.1 s of wall time, tighter than the requirement)."""
    return LiveClock.time_of_day(float(getattr(request, "param", SPEED)))


@pytest.fixture
def emulator(
    district_city: City, fast_clock: LiveClock, tmp_path: Path
) -> Iterator[EmulatorProcess]:
    """Every district signal as an NTCIP agent (speed 10; FIELD.toml: heartbeat 2 s,
    backup 6 s of the clock)."""
    em = start_emulator(
        district_city.path,
        clock=fast_clock,
        workdir=tmp_path / "emulator",
        backup_time_s=10,
        field_backup_time_s=6,
        field_heartbeat_s=2.0,
    )
    try:
        yield em
    finally:
        em.stop()


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A Mosquitto of our own on a free port (restartable)."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = Broker(free_port()).start()
    try:
        yield b
    finally:
        b.stop()
