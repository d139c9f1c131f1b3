"""Benchmark: live mode's latency and a soak with faults, on loopback.

    python -m experiments.live_latency --json OUT.json [--quick]

Latency: GPS report *published* (MQTT, by a separate publisher process, its wall time in
the message) -> the guarded SNMP SET it caused *acknowledged* by the controller
emulator (another process), at 10, 100 and 1,000 reports/s (as many EVs, each at 1 Hz,
on routes to the nearest hospital, spread along them). Decisions are driven by the
reports here (the ticker, which would also act on them, runs only every 30 s of wall
time in these runs, and no GPS goes stale), and only reports whose processing changed
what a controller is told produce a sample; ``n`` says how many. ``dropped``: reports
published that the center did not accept (lost, or rejected: ``rejected`` by reason).

Soak: one simulated hour at 10x with random faults: controller restarts (the
emulator's admin), a broker restart (our own Mosquitto), GPS gaps (an EV falls silent
for 5-15 s: its holds must be released). ``soak_stuck_holds_s``: the most any green the
center held outlived its cap (the stage's maximum green plus the priority hold's cap).

``mmu_violations``: the emulator's own monitor's refusals over the latency runs;
``audit_records_lost``: reports, commands and answers the center counted that its audit
log does not hold, plus every break of the hash chain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing as mp
import random
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from city_models.build import City, build_city, load_city
from city_models.geo import projection_of
from city_models.graph import edge_graph, fastest_route, nearest_poi_by_time
from experiments._output import emit_json
from experiments._phone import publish
from twin.app.live.audit import AuditLog, read_records, verify
from twin.app.live.clock import LiveClock
from twin.app.live.field import load_field
from twin.app.live.mqtt import gps_topic, new_client
from twin.app.live.procs import Broker, EmulatorProcess, free_port, start_emulator
from twin.app.live.service import LiveOptions, LiveService, Mission, latency_summary
from twin.app.live.trace import Trace, gps_message, synthetic_trace
from twin.config import load_settings

log = logging.getLogger("experiments.live_latency")
KEY = b"live-latency-benchmark-key-000000"
RATES = (10, 100, 1000)


# --------------------------------------------------------------------------- EVs
def ev_traces(city: City, n: int, *, seed: int, prefix: str) -> list[Trace]:
    """``n`` EVs on routes from random streets to the nearest hospital (each with at least
    two signals on it), at 10-14 m/s, 1 Hz fixes."""
    rng = random.Random(seed)
    graph = edge_graph(city.net)
    hospitals = [p for p in city.manifest.pois if p.role == "hospital"]
    edges = sorted(e for e in graph.nodes if not e.endswith("_pocket"))
    signals = set(city.net.tls)
    out: list[Trace] = []
    while len(out) < n:
        origin = rng.choice(edges)
        try:
            poi, _t = nearest_poi_by_time(graph, origin, hospitals)
            route = fastest_route(graph, origin, poi.edge)
        except ValueError:
            continue
        junctions = {city.net.edges[e].to_node for e in route[:-1]}
        if len(junctions & signals) < 2:
            continue
        out.append(
            synthetic_trace(
                city, route, vehicle=f"{prefix}{len(out)}", speed_mps=rng.uniform(10.0, 14.0)
            )
        )
    return out


# --------------------------------------------------------------------------- helpers
def _lat_lon(
    city: City, points: Sequence[tuple[float, float, float, float]]
) -> list[tuple[float, float, float]]:
    proj = projection_of(city.manifest)
    out = []
    for _t, x, y, v in points:
        lon, lat = proj.xy_to_lonlat(x, y)
        out.append((round(lat, 7), round(lon, 7), round(v, 2)))
    return out


def audit_lost(svc: LiveService, path: Path) -> int:
    """Records the center counted that its audit log does not hold, plus chain breaks."""
    kinds: dict[str, int] = {}
    for rec in read_records(path):
        kinds[str(rec.get("kind"))] = kinds.get(str(rec.get("kind")), 0) + 1
    rep = verify(path, KEY)
    assert svc.field is not None
    answers = sum(link.writes + link.write_errors for link in svc.field.links.values())
    lost = max(0, svc.ingest.seen["gps"] - kinds.get("gps", 0))
    lost += max(0, answers - kinds.get("answer", 0))
    return lost + len(rep.problems)


def held_overrun_s(city: City, emulator: EmulatorProcess, max_hold_s: float) -> float:
    """The most any green the center held outlived its cap (0 when none did)."""
    worst = 0.0
    for sig in city.manifest.signals:
        greens = [p for p in sig.phases if p.kind == "green"]
        got = emulator.admin({"cmd": "held", "signal": sig.id})
        held = [*got.get("held", [])] + ([got["current"]] if got.get("current") else [])
        for stage, dur in held:
            cap = greens[int(stage)].max_green_s + max_hold_s
            worst = max(worst, float(dur) - cap)
    return round(max(worst, 0.0), 3)


async def _wait_up(svc: LiveService, limit_s: float = 400.0) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        assert svc.field is not None
        if all(s["state"] != "connecting" for s in svc.field.states().values()):
            return
        await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- latency
async def latency_runs(
    city: City, work: Path, *, duration_s: float, rates: Sequence[int]
) -> dict[str, Any]:
    all_traces = {rate: ev_traces(city, rate, seed=rate, prefix=f"r{rate}_") for rate in rates}
    clock = LiveClock.time_of_day(1.0)
    emulator = start_emulator(city.path, clock=clock, workdir=work / "emulator")
    broker = Broker(free_port()).start()
    audit_path = work / "latency_audit.jsonl"
    audit = AuditLog(audit_path, key=KEY, clock=clock.now_s).open()
    cfg = load_field(emulator.field_path, city)
    opts = LiveOptions(
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        tick_wall_s=30.0,  # decisions on reports (no GPS goes stale here)
        publish_spat=True,
        client_id=f"bench-center-{uuid.uuid4().hex[:6]}",
    )
    svc = LiveService(city, cfg, clock=clock, audit=audit, options=opts)
    out: dict[str, Any] = {"rates": {}}
    ctx = mp.get_context("spawn")
    try:
        t0 = time.monotonic()
        await svc.start()
        await _wait_up(svc)
        out["takeover_s"] = round(time.monotonic() - t0, 1)
        assert svc.port is not None
        out["controllers_up"] = len(svc.port.ids) - len(svc.port.down)
        for rate in rates:
            traces = all_traces[rate]
            rng = random.Random(rate + 1)
            plans = []
            for k, tr in enumerate(traces):
                svc.dispatch(Mission(vehicle=tr.vehicle, agency="fire", route=tr.route))
                if k % 20 == 19:
                    await asyncio.sleep(0)  # let the links write their heartbeats
                start = rng.randrange(0, max(1, len(tr.points) // 3))
                plans.append((tr.vehicle, _lat_lon(city, tr.points[start:])))
            e2e0 = len(svc.e2e)
            acc0, rej0 = svc.ingest.accepted, dict(svc.ingest.rejected)
            q = ctx.Queue()
            start_wall = time.time() + 4.0  # the phone process starts first
            proc = ctx.Process(
                target=publish,
                args=(broker.port, plans, start_wall, duration_s, 1.0, q),
            )
            proc.start()
            await asyncio.sleep(start_wall - time.time() + duration_s + 3.0)
            published = int(await asyncio.get_running_loop().run_in_executor(None, q.get))
            proc.join(timeout=10)
            lat = latency_summary(x[2] for x in svc.e2e[e2e0:])
            accepted = svc.ingest.accepted - acc0
            rejected = {
                k: v - rej0.get(k, 0) for k, v in svc.ingest.rejected.items() if v - rej0.get(k, 0)
            }
            out["rates"][str(rate)] = {
                "p50_ms": lat["p50_ms"],
                "p99_ms": lat["p99_ms"],
                "max_ms": lat["max_ms"],
                "n": lat["n"],
                "published": published,
                "accepted": accepted,
                "dropped": published - accepted,
                "rejected": rejected,
            }
            log.info("rate %d/s: %s", rate, out["rates"][str(rate)])
            for k, tr in enumerate(traces):
                svc.end_mission(tr.vehicle, reason="benchmark_done")
                if k % 20 == 19:
                    await asyncio.sleep(0)
            await asyncio.sleep(1.0)
        assert svc.field is not None
        out["snmp_set_ms"] = latency_summary(
            x for link in svc.field.links.values() for x in link.latencies_s
        )
    finally:
        await svc.stop(hand_back=True)
        audit.close()
        verdict = emulator.stop()
        broker.stop()
    out["mmu_violations"] = verdict.get("violations")
    out["mmu_changes_checked"] = verdict.get("changes_checked")
    out["audit_records_lost"] = audit_lost(svc, audit_path)
    out["audit_records"] = verify(audit_path, KEY).records
    return out


# --------------------------------------------------------------------------- soak
async def soak(
    city: City, work: Path, *, sim_s: float, speed: float, evs: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    clock = LiveClock.time_of_day(speed)
    heartbeat = max(1.0, speed / 2.0)
    backup = max(5, math.ceil(3 * heartbeat))
    emulator = start_emulator(
        city.path,
        clock=clock,
        workdir=work / "soak_emulator",
        backup_time_s=max(10, backup),
        field_backup_time_s=backup,
        field_heartbeat_s=heartbeat,
    )
    broker = Broker(free_port()).start()
    audit_path = work / "soak_audit.jsonl"
    audit = AuditLog(audit_path, key=KEY, clock=clock.now_s).open()
    cfg = load_field(emulator.field_path, city)
    opts = LiveOptions(
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        client_id=f"soak-center-{uuid.uuid4().hex[:6]}",
    )
    svc = LiveService(city, cfg, clock=clock, audit=audit, options=opts)
    phone = new_client(f"soak-phone-{uuid.uuid4().hex[:6]}")
    faults = {"controller_restarts": 0, "broker_restarts": 0, "gps_gaps": 0}
    stale_releases = 0
    published = 0
    try:
        await svc.start()
        await _wait_up(svc)
        phone.reconnect_delay_set(min_delay=1, max_delay=2)
        phone.connect_async("127.0.0.1", broker.port)
        phone.loop_start()
        pool = ev_traces(city, evs * 6, seed=seed, prefix="soak")
        active: dict[str, tuple[Trace, float]] = {}
        silent_until: dict[str, float] = {}
        next_ev = 0
        t_start = clock.now_s()
        t_end = t_start + sim_s
        next_restart = t_start + rng.uniform(60, 180)
        broker_at = [t_start + sim_s / 3, t_start + 2 * sim_s / 3]
        next_gap = t_start + rng.uniform(30, 90)
        next_fix = t_start
        while clock.now_s() < t_end:
            now = clock.now_s()
            while len(active) < evs and next_ev < len(pool):
                tr = pool[next_ev]
                next_ev += 1
                name = f"{tr.vehicle}_{next_ev}"
                tr = Trace(vehicle=name, route=tr.route, points=tr.points, distance_m=tr.distance_m)
                svc.dispatch(Mission(vehicle=name, agency="fire", route=tr.route))
                active[name] = (tr, now)
            if now >= next_restart:
                tls = rng.choice(sorted(emulator.ports))
                emulator.admin({"cmd": "restart", "signal": tls})
                faults["controller_restarts"] += 1
                next_restart = now + rng.uniform(60, 180)
            if broker_at and now >= broker_at[0]:
                broker_at.pop(0)
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: broker.restart(down_s=2.0)
                )
                faults["broker_restarts"] += 1
            if now >= next_gap and active:
                v = rng.choice(sorted(active))
                silent_until[v] = now + rng.uniform(5, 15)
                faults["gps_gaps"] += 1
                next_gap = now + rng.uniform(30, 90)
            if now >= next_fix:
                wall = time.time()
                for name, (tr, t0) in list(active.items()):
                    k = int(now - t0)
                    if k >= len(tr.points) or name not in svc.missions:
                        active.pop(name)
                        if name in svc.missions:
                            svc.end_mission(name, reason="trace_ended")
                        continue
                    if silent_until.get(name, -math.inf) > now:
                        continue
                    _t, x, y, speed = tr.points[k]
                    msg = gps_message(city, name, t_wall=wall, x_m=x, y_m=y, speed_mps=speed)
                    phone.publish(gps_topic("fire", name), json.dumps(msg).encode(), qos=0)
                    published += 1
                next_fix += 1.0
            await asyncio.sleep(min(0.05, clock.delay_s(next_fix)))
        stale_releases = sum(
            1
            for r in read_records(audit_path)
            if r.get("kind") == "priority_release" and r.get("reason") == "gps_stale"
        )
    finally:
        phone.loop_stop()
        phone.disconnect()
        await svc.stop(hand_back=True)
        audit.close()
        stuck = held_overrun_s(city, emulator, opts.max_hold_s)
        verdict = emulator.stop()
        broker.stop()
    return {
        "soak_mmu_violations": verdict.get("violations"),
        "soak_stuck_holds_s": stuck,
        "soak_lost_audit": audit_lost(svc, audit_path),
        "soak_detail": {
            "sim_s": sim_s,
            "speed": speed,
            "evs_at_once": evs,
            "missions": next_ev,
            "gps_published": published,
            "gps_accepted": svc.ingest.accepted,
            "gps_rejected": dict(svc.ingest.rejected),
            "stale_releases": stale_releases,
            "faults": faults,
            "mmu_changes_checked": verdict.get("changes_checked"),
            "controller_backups": verdict.get("backups"),
            "report_to_ack_ms": latency_summary(x[2] for x in svc.e2e),
            "audit_records": verify(audit_path, KEY).records,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--city", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per rate")
    parser.add_argument("--soak-s", type=float, default=None, help="simulated soak seconds")
    parser.add_argument("--no-soak", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(logging.INFO)
    city = (
        load_city(args.city)
        if args.city
        else build_city("district", seed=1, cities_dir=load_settings().cities_dir)
    )
    duration = args.duration or (10.0 if args.quick else 30.0)
    soak_s = args.soak_s or (300.0 if args.quick else 3600.0)
    with tempfile.TemporaryDirectory(prefix="live-latency-") as tmp:
        work = Path(tmp)
        result = asyncio.run(latency_runs(city, work, duration_s=duration, rates=RATES))
        if not args.no_soak:
            result.update(asyncio.run(soak(city, work, sim_s=soak_s, speed=10.0, evs=20, seed=7)))
    result["config"] = {
        "duration_s_per_rate": duration,
        "soak_sim_s": soak_s,
        "city": city.name,
        "cores": mp.cpu_count(),
        "numpy": np.__version__,
    }
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
