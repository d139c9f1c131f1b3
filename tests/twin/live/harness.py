"""A live center for tests: the real service, in this process, against the emulator."""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from city_models.build import City
from city_models.graph import edge_graph, fastest_route
from twin.app.live.audit import AuditLog, read_records
from twin.app.live.clock import LiveClock
from twin.app.live.field import parse_field
from twin.app.live.procs import EmulatorProcess
from twin.app.live.service import LiveOptions, LiveService, Mission
from twin.app.live.trace import Trace, gps_message, synthetic_trace

KEY = b"live-test-key-0123456789abcdef-00"


def route(city: City, origin: str, destination: str) -> list[str]:
    pois = {p.id: p for p in city.manifest.pois}
    return fastest_route(edge_graph(city.net), pois[origin].edge, pois[destination].edge)


def field_raw(emulator: EmulatorProcess, signals: Iterable[str] | None = None) -> dict[str, Any]:
    raw = tomllib.loads(emulator.field_path.read_text())
    if signals is not None:
        keep = set(signals)
        raw["signals"] = {t: v for t, v in raw["signals"].items() if t in keep}
    return raw


@dataclass
class Center:
    """A running service and its audit."""

    svc: LiveService
    audit_path: Path
    clock: LiveClock

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r for r in read_records(self.audit_path) if kind is None or r.get("kind") == kind]

    async def drive(
        self, city: City, trace: Trace, *, until_s: float | None = None, agency: str = "fire"
    ) -> float:
        """Send the trace's fixes on the clock (1 Hz of the trace's time) up to ``until_s``
        of it; returns the clock time of the last fix sent."""
        t_first = self.clock.now_s()
        last = t_first
        for t_rel, x, y, v in trace.points:
            if until_s is not None and t_rel > until_s:
                break
            due = t_first + t_rel
            await asyncio.sleep(self.clock.delay_s(due))
            now = time.time()
            msg = gps_message(
                city, trace.vehicle, t_wall=now, x_m=x, y_m=y, speed_mps=v, agency=agency
            )
            self.svc.gps(json.dumps(msg), source="test", received_wall=now)
            last = self.clock.now_s()
        return last

    async def sleep_clock(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.clock.speed)


async def start_center(
    city: City,
    emulator: EmulatorProcess,
    clock: LiveClock,
    tmp: Path,
    *,
    signals: Iterable[str] | None = None,
    raw: dict[str, Any] | None = None,
    **options: Any,
) -> Center:
    cfg = parse_field(raw if raw is not None else field_raw(emulator, signals), city)
    audit_path = tmp / "audit.jsonl"
    audit = AuditLog(audit_path, key=KEY, clock=clock.now_s).open()
    opts = LiveOptions(**{"mqtt_host": None, "tick_wall_s": 0.02, **options})
    svc = LiveService(city, cfg, clock=clock, audit=audit, options=opts)
    await svc.start()
    return Center(svc, audit_path, clock)


def ev(city: City, name: str, origin: str, destination: str, *, speed_mps: float = 12.0) -> Trace:
    return synthetic_trace(
        city, route(city, origin, destination), vehicle=name, speed_mps=speed_mps
    )


def mission(trace: Trace) -> Mission:
    return Mission(vehicle=trace.vehicle, agency="fire", route=trace.route)
