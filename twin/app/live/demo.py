"""``twin live demo``: the whole live chain on one machine, with an ambulance replayed.

1. An ambulance trace is taken from a simulated ``ev_priority`` run (SUMO, once; cached
   in the data directory).
2. The controller emulator starts (every city signal an NTCIP 1202 agent on loopback).
3. The live service takes the controllers over; the broker client connects (the
   machine's Mosquitto at 127.0.0.1:1883, or one of our own when none answers).
4. The trace is published as the phone's GPS messages on
   ``citytwin/ev/fire/{vehicle}/gps``, in real time or ``--speed`` times faster.
5. Per signal on the route: when priority was requested, when the guard granted it
   (showed the ambulance's stage green under the hold), when the controller showed it,
   and when the ambulance passed; then the ambulance's s/km and the emulator's MMU
   verdict.

The ambulance's drive is the simulated one, replayed: the live center cannot change it
(no closed loop), so its s/km is the trace's. What the demo shows is the live chain and
its safety: the same center, guard and priority logic commanding real SNMP agents.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from city_models.build import City
from twin.app.live.audit import AuditLog, verify
from twin.app.live.clock import LiveClock
from twin.app.live.field import load_field
from twin.app.live.mqtt import gps_topic, new_client
from twin.app.live.procs import Broker, free_port, port_open, start_emulator
from twin.app.live.service import LiveOptions, LiveService, Mission, latency_summary
from twin.app.live.trace import Trace, gps_message, record_trace

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class DemoResult:
    """What the demo found."""

    signals: list[dict[str, Any]] = field(default_factory=list)
    ev_s_per_km: float = math.nan
    sim_s_per_km: float = math.nan
    mmu: dict[str, Any] = field(default_factory=dict)
    audit_ok: bool = False
    audit_records: int = 0
    gps_published: int = 0
    gps_accepted: int = 0
    gps_skipped_late: int = 0
    """Fixes not sent because the next one was already due (the replay fell behind)."""
    e2e: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "signals": self.signals,
            "ev_s_per_km": self.ev_s_per_km,
            "sim_s_per_km": self.sim_s_per_km,
            "mmu": self.mmu,
            "audit_ok": self.audit_ok,
            "audit_records": self.audit_records,
            "gps_published": self.gps_published,
            "gps_accepted": self.gps_accepted,
            "gps_skipped_late": self.gps_skipped_late,
            "e2e": self.e2e,
        }


def demo_trace(city: City, data_dir: Path, say: Say) -> Trace:
    """The ambulance trace of the shipped ``ev_priority`` scenario on ``city`` (cached)."""
    cache = data_dir / "live" / f"ev_trace-{city.manifest.content_hash[:12]}.json"
    if cache.exists():
        try:
            return Trace.load(cache)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("trace cache %s unreadable (%s): recording again", cache, exc)
    say("recording the ambulance's drive in a simulated ev_priority run (SUMO, once)...")
    cache.parent.mkdir(parents=True, exist_ok=True)
    trace = record_trace(city, run_dir=cache.parent / "trace_run")
    trace.save(cache)
    return trace


def _first_green(history: list[dict[str, Any]], stage: int, after_s: float) -> float | None:
    for h in history:
        if h["t_s"] >= after_s - 1e-6 and h["interval"] == "green" and h["stage"] == stage:
            return float(h["t_s"])
    # already green at the request: the last change before it
    before = [h for h in history if h["t_s"] < after_s]
    if before and before[-1]["interval"] == "green" and before[-1]["stage"] == stage:
        return float(before[-1]["t_s"])
    return None


async def run_demo(
    city: City,
    *,
    data_dir: Path,
    workdir: Path,
    speed: float = 1.0,
    mqtt_host: str = "127.0.0.1",
    mqtt_port: int = 1883,
    say: Say = print,
) -> DemoResult:
    """Run the demo (see the module doc); ``say`` prints progress and the results."""
    trace = demo_trace(city, data_dir, say)
    clock = LiveClock.time_of_day(speed)
    heartbeat = max(1.0, speed / 2.0)
    backup = max(5, math.ceil(3 * heartbeat))
    say(f"starting the controller emulator ({len(city.manifest.signals)} NTCIP agents)...")
    emulator = start_emulator(
        city.path,
        clock=clock,
        workdir=workdir,
        backup_time_s=max(10, backup),
        field_backup_time_s=backup,
        field_heartbeat_s=heartbeat,
    )
    broker: Broker | None = None
    if not port_open(mqtt_host, mqtt_port):
        broker = Broker(free_port()).start()
        mqtt_host, mqtt_port = "127.0.0.1", broker.port
        say(f"no broker at the given address: started our own Mosquitto on port {mqtt_port}")
    audit_path = workdir / "audit.jsonl"
    audit_path.unlink(missing_ok=True)
    key = uuid.uuid4().bytes
    audit = AuditLog(audit_path, key=key, clock=clock.now_s).open()
    result = DemoResult(sim_s_per_km=trace.sim_s_per_km, ev_s_per_km=trace.s_per_km())
    svc: LiveService | None = None
    publisher = new_client(f"citytwin-demo-phone-{uuid.uuid4().hex[:6]}")
    try:
        cfg = load_field(emulator.field_path, city)
        svc = LiveService(
            city,
            cfg,
            clock=clock,
            audit=audit,
            options=LiveOptions(
                mqtt_host=mqtt_host,
                mqtt_port=mqtt_port,
                client_id=f"citytwin-demo-center-{uuid.uuid4().hex[:6]}",
            ),
        )
        say("the live service takes the controllers over (each in a green)...")
        await svc.start()
        assert svc.port is not None
        info = svc.dispatch(Mission(vehicle=trace.vehicle, agency="fire", route=trace.route))
        signals = ", ".join(info["signals"])
        say(f"mission {trace.vehicle}: {len(trace.route)} edges, signals {signals}")
        publisher.connect(mqtt_host, mqtt_port)
        publisher.loop_start()
        for _ in range(100):
            if svc.mqtt is not None and svc.mqtt.connected:
                break
            await asyncio.sleep(0.05)
        start_wall = time.time() + 0.5
        say(
            f"replaying {trace.duration_s:.0f} s of GPS at {speed:g}x "
            f"({trace.duration_s / speed:.0f} s)..."
        )
        t_first = svc.clock.now_s()
        topic = gps_topic("fire", trace.vehicle)
        points = trace.points
        for k, (t_rel, x, y, v) in enumerate(points):
            due = start_wall + t_rel / speed
            await asyncio.sleep(max(0.0, due - time.time()))
            now = time.time()
            if k + 1 < len(points) and now >= start_wall + points[k + 1][0] / speed:
                # fallen behind (a busy machine): a phone sends where it is now, not a
                # backlog of fixes in a burst (which the ingest's rate limit would refuse)
                result.gps_skipped_late += 1
                continue
            msg = gps_message(
                city, trace.vehicle, t_wall=now, x_m=x, y_m=y, speed_mps=v, sent_wall=now
            )
            publisher.publish(topic, json.dumps(msg).encode(), qos=0)
            result.gps_published += 1
        await asyncio.sleep(max(1.0, 3.0 / speed))
        if trace.vehicle in svc.missions:
            svc.end_mission(trace.vehicle, reason="trace_ended")
        result.gps_accepted = sum(
            1 for r in audit.records() if r.get("kind") == "gps" and r.get("accepted")
        )
        result.e2e = latency_summary(x[2] for x in svc.e2e)
        visits: dict[str, int] = {}
        for tls in info["signals"]:  # in route order; a signal passed twice is two visits
            k = visits[tls] = visits.get(tls, -1) + 1
            result.signals.append(_visit(svc, emulator.admin, tls, k, t_first))
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        if svc is not None:
            await svc.stop(hand_back=True)
        audit.close()
        result.mmu = emulator.stop()
        if broker is not None:
            broker.stop()
    rep = verify(audit_path, key)
    result.audit_ok, result.audit_records = rep.ok, rep.records
    _report(result, trace, say)
    return result


def _visit(
    svc: LiveService,
    admin: Callable[[dict[str, Any]], dict[str, Any]],
    tls: str,
    k: int,
    t_first: float,
) -> dict[str, Any]:
    """The ``k``-th visit of the ambulance to ``tls``: requested, granted, shown, passed."""
    row: dict[str, Any] = {
        "signal": tls,
        "visit": k + 1,
        "stage": None,
        "requested_s": None,
        "granted_s": None,
        "shown_s": None,
        "passed_s": None,
    }
    slog = svc.signal_log.get(tls)
    if slog is None or len(slog.requested) <= k:
        return row
    req = slog.requested[k]
    t_req = float(req["t_s"])
    passed = [r for r in slog.released if r.get("reason") == "passed" and r["t_s"] >= t_req]
    t_pass = float(passed[0]["t_s"]) if passed else math.inf
    row.update(stage=req["stage"], requested_s=t_req - t_first)
    if math.isfinite(t_pass):
        row["passed_s"] = t_pass - t_first
    granted = [g for g in slog.granted if t_req - 1e-6 <= g["t_s"] <= t_pass]
    if granted:
        row["granted_s"] = granted[0]["t_s"] - t_first
    history = admin({"cmd": "history", "signal": tls, "since_s": t_first})["history"]
    shown = _first_green(history, int(req["stage"]), t_req)
    if shown is not None and shown <= t_pass:
        row["shown_s"] = max(shown, t_req) - t_first
    return row


def _fmt(t: float | None) -> str:
    return "-" if t is None else f"{t:7.1f}"


def _report(res: DemoResult, trace: Trace, say: Say) -> None:
    say("")
    say("signal      stage  requested  granted   shown    passed   (s after the first fix)")
    for r in res.signals:
        stage = "-" if r["stage"] is None else str(r["stage"])
        say(
            f"{r['signal']:<10} {stage:>5}   {_fmt(r['requested_s'])}  {_fmt(r['granted_s'])}  "
            f"{_fmt(r['shown_s'])}  {_fmt(r['passed_s'])}"
        )
    say("")
    say(
        f"GPS: {res.gps_published} published ({res.gps_skipped_late} skipped, late), "
        f"{res.gps_accepted} accepted; report -> SNMP ack: "
        f"p50 {res.e2e.get('p50_ms')} ms, p99 {res.e2e.get('p99_ms')} ms (n={res.e2e.get('n')})"
    )
    say(f"audit: {res.audit_records} records, hash chain {'intact' if res.audit_ok else 'BROKEN'}")
    say(
        f"ambulance: {res.ev_s_per_km:.1f} s/km (the replayed drive: {trace.source}; "
        f"simulated {res.sim_s_per_km:.1f} s/km)"
    )
    v = res.mmu.get("violations")
    say(
        f"emulator MMU: {v} violation(s) in {res.mmu.get('changes_checked')} changes checked "
        f"({res.mmu.get('greens_judged')} greens, {res.mmu.get('yellows_judged')} yellows)"
    )
