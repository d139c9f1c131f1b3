"""The live service: the center loop in real time against field controllers.

One asyncio loop does all of the center's work (paho's thread only hands messages over):

```
MQTT / API ──> Ingest (validate, dedupe, bound skew, rate-limit) ──> audit
                 └─ accepted fix ─> GpsTracker (map-match) ─> EvCenter.step
                      PreemptionPlanner -> PriorityManager -> FieldPort (GuardedPort)
                      -> SignalGuard -> FieldDisplay -> ControllerLink (SNMP SET) ─> audit
ticker (every tick_wall_s): every EV's step (stale GPS -> release), recovery, the
        adaptive controller on live detector counts, the guard's due changes
pacer: the port's next change, on time
SPaT: on every change and every spat_every_wall_s -> MQTT citytwin/spat/{signal}, WebSocket
```

The EV logic is :class:`~twin.center.ev_center.EvCenter`, the manager
:class:`~signal_control.priority.PriorityManager`, the port a
:class:`~signal_control.port.GuardedPort` (:class:`~.adapter.FieldPort`), the adaptive
controller :class:`~signal_control.control.ControlManager`: the same objects a
simulated run uses.

A restarted service resumes from its audit log: the missions still open, and every
signal an EV was already served at (released after it passed) is not asked again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import logging
import math
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from city_models.build import City
from city_models.graph import edge_graph, fastest_route, nearest_poi_by_time
from city_models.plan_check import all_red_promise_s, conflict_matrix
from scenarios.spec import ControlSpec
from signal_control.control import ControlManager
from signal_control.guard import GuardPlan
from signal_control.port import plan_from_phases
from signal_control.priority import PriorityManager
from signal_control.warmup import warm_up_kernels
from twin.app.live.adapter import Field as FieldControllers
from twin.app.live.adapter import FieldPort
from twin.app.live.aio import cancel_and_wait
from twin.app.live.audit import AuditLog
from twin.app.live.clock import LiveClock
from twin.app.live.field import FieldConfig
from twin.app.live.follow import CountWindow
from twin.app.live.ingest import Count, GpsFix, Ingest, IngestLimits, Verdict
from twin.app.live.mqtt import MqttLink, Received, parse_gps_topic
from twin.app.live.shadow import ShadowTwin, shadow_scenario
from twin.app.live.spat import spat_message
from twin.center.ev_center import EvCenter
from twin.center.preemption import PreemptionPlanner, RenewalCrossGreen, TrackedEv
from twin.center.tracking import GpsReport
from twin.config import Settings
from twin.errors import CityError, ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

ARRIVED_M = 30.0
"""An EV this close to the end of its route has arrived (its mission ends)."""
SPAT_HISTORY = 600


class SpatSink(Protocol):
    """Where SPaT messages go (a WebSocket's queue)."""

    def put_nowait(self, msg: dict[str, Any]) -> None: ...


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class LiveOptions:
    """How the live service runs (the priority parameters are the scenario's defaults)."""

    mqtt_host: str | None = "127.0.0.1"
    mqtt_port: int = 1883
    client_id: str = "citytwin-center"
    control: Literal["fixed", "adaptive"] = "fixed"
    recovery: Literal["immediate", "smooth"] = "smooth"
    recovery_cycles: int = 2
    max_hold_s: float = 60.0
    hold_renewals: int = 2
    renewal_cross_green: RenewalCrossGreen = "minimum"
    horizon_m: float = 2000.0
    lead_margin_s: float = 15.0
    stale_after_s: float = 3.0
    fresh_lag_s: float = 1.0
    """A fix keeps its EV's track fresh from its arrival, but from no later than its own
    (GNSS) time plus this: fixes delivered late (buffered by the phone) age the track."""
    tick_wall_s: float = 0.1
    spat_every_wall_s: float = 1.0
    control_interval_s: float = 5.0
    tenant: str = "city"
    limits: IngestLimits = field(default_factory=IngestLimits)
    publish_spat: bool = True
    shadow: bool = False
    """Run the shadow twin (SUMO at the clock's pace, in its own process)."""
    workdir: Path | None = None
    """Where the shadow twin's SUMO writes (a temporary folder if not given)."""
    shadow_demand: str | None = None
    """The shadow's demand: a demand variant of the city (a calibrated one); default the
    OD model's AM peak."""
    runs: Settings | None = None
    """The run store live forks are recorded in (default: the environment's)."""
    fork_workers: int = 1
    """Worker processes a live fork runs its futures in: each takes a core, and the
    center's own loop must keep its heartbeats (one by default)."""


class Mission(BaseModel):
    """An EV the center is to help: its vehicle, agency, and the route (given, or from
    ``origin_edge`` to ``destination``: a POI id, ``nearest`` hospital, or an edge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vehicle: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")
    agency: str = Field(default="fire", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")
    kind: Literal["ambulance", "fire_truck"] = "ambulance"
    severity: int = Field(default=3, ge=1, le=5)
    route: list[str] | None = Field(default=None, min_length=1, max_length=2000)
    origin_edge: str | None = None
    destination: str | None = None


# --------------------------------------------------------------------------- resume
class _HasTls(Protocol):
    @property
    def tls(self) -> str: ...


S = TypeVar("S", bound=_HasTls)


def replay_audit(
    records: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, Counter[str]], set[str]]:
    """From an audit log: the missions still open (vehicle -> the mission as recorded),
    per vehicle how many times its open mission was served at each signal (released
    ``passed`` or ``arrived``), and the vehicles whose mission ended."""
    missions: dict[str, dict[str, Any]] = {}
    served: dict[str, Counter[str]] = {}
    ended: set[str] = set()
    for rec in records:
        kind, ev = rec.get("kind"), rec.get("ev")
        if not ev:
            continue
        if kind == "mission":
            missions[ev] = rec["mission"]
            served.pop(ev, None)  # a new mission starts afresh
            ended.discard(ev)
        elif kind == "mission_end":
            missions.pop(ev, None)
            served.pop(ev, None)
            ended.add(ev)
        elif kind == "priority_release" and rec.get("reason") in ("passed", "arrived"):
            served.setdefault(ev, Counter())[str(rec.get("tls"))] += 1
    return missions, served, ended


def unserved_visits(signals: Sequence[S], served: Mapping[str, int]) -> list[S]:
    """The route's signal visits (in route order) less, for each signal, its first
    ``served[tls]`` visits: a route may pass a signal twice, and only the passes made
    are done."""
    skip = Counter(served)
    out = []
    for sig in signals:
        if skip[sig.tls] > 0:
            skip[sig.tls] -= 1
        else:
            out.append(sig)
    return out


# --------------------------------------------------------------------------- live world
class LiveDetectors:
    """The loops' last closed interval for the adaptive controller (the
    ``DetectorReadings`` protocol), filled from ingested counts."""

    def __init__(self, loop_ids: Sequence[str], period_s: float) -> None:
        self.det_index: dict[str, int] = {d: k for k, d in enumerate(loop_ids)}
        self.period_s = period_s
        self.det_count_veh: npt.NDArray[np.float64] = np.full(len(loop_ids), np.nan)
        self.det_interval_end_s = -math.inf
        self._open: dict[int, npt.NDArray[np.float64]] = {}
        self.closed_before_s = -math.inf

    def add(self, count: Count) -> bool:
        """Count one report into its interval; False if that interval was closed."""
        k = round(count.t_end_s / self.period_s)
        if k * self.period_s <= self.closed_before_s:
            return False
        row = self._open.setdefault(k, np.full(len(self.det_index), np.nan))
        j = self.det_index[count.loop]
        row[j] = (0.0 if np.isnan(row[j]) else row[j]) + count.count_veh
        return True

    def close(self, now_s: float, *, grace_s: float) -> bool:
        """Close every interval that ended ``grace_s`` ago; True if one was."""
        done = sorted(k for k in self._open if k * self.period_s + grace_s <= now_s)
        for k in done:
            self.det_count_veh = self._open.pop(k)
            self.det_interval_end_s = k * self.period_s
            self.closed_before_s = max(self.closed_before_s, self.det_interval_end_s)
        return bool(done)


class LiveWorld:
    """What the controllers read of the world in the field: the clock, and queues (the
    shadow twin's, when it runs; none otherwise). Signals are shown by the field port."""

    def __init__(self, clock: LiveClock) -> None:
        self.clock = clock
        self.lane_halting: dict[str, float] = {}

    @property
    def time_s(self) -> float:
        return self.clock.now_s()

    def read_lane_halting(self, lane_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None:
        for k, lane in enumerate(lane_ids):
            out[k] = self.lane_halting.get(lane, 0.0)

    def read_edge_halting(self, edge_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None:
        out[:] = 0.0

    def read_loop_gap(self, det_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None:
        # ingested counts are per interval, not per vehicle: the gap is unknown, so an
        # actuated green never gaps out here (it runs its planned length)
        out[:] = np.nan

    def set_signal_state(self, tls_id: str, state: str) -> None:
        raise RuntimeError("in live mode the field port shows the signals")

    def set_program(self, tls_id: str, program_id: str) -> None:
        raise RuntimeError("in live mode the field port shows the signals")

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None:
        raise RuntimeError("in live mode the field port shows the signals")


# --------------------------------------------------------------------------- service
@dataclass
class SignalLog:
    """What happened at one signal, for the operator (and the demo's table)."""

    requested: list[dict[str, Any]] = field(default_factory=list)
    granted: list[dict[str, Any]] = field(default_factory=list)
    released: list[dict[str, Any]] = field(default_factory=list)


class LiveService:
    """The live center (see the module doc).

    Parameters
    ----------
    city
        The city (signals, net, loops).
    field_cfg
        FIELD.toml.
    clock
        The live clock.
    audit
        The (opened) audit log; an existing log is resumed from.
    options
        How to run.
    """

    def __init__(
        self,
        city: City,
        field_cfg: FieldConfig,
        *,
        clock: LiveClock,
        audit: AuditLog,
        options: LiveOptions | None = None,
    ) -> None:
        self.city = city
        self.cfg = field_cfg
        self.clock = clock
        self.audit = audit
        self.opt = options or LiveOptions()
        self.net = city.net
        self.signal_specs = {s.id: s for s in city.manifest.signals}
        self.ingest = Ingest(city, clock=clock, limits=self.opt.limits)
        self.world = LiveWorld(clock)
        self.detectors = LiveDetectors(
            [d.id for d in city.manifest.detectors], city.manifest.detector_period_s
        )
        self.agency: dict[str, str] = {}
        self.missions: dict[str, Mission] = {}
        self.served: dict[str, Counter[str]] = {}
        """Per vehicle, how many times its current mission was served (released
        ``passed``/``arrived``) at each signal: a restarted center skips that many of the
        signal's visits on the route (a route may pass a signal twice)."""
        self.ended: set[str] = set()
        self.signal_log: dict[str, SignalLog] = {}
        self.e2e: list[tuple[str, str, float]] = []
        """(report id, signal, seconds from the report's publication to the controller's
        acknowledgement of the write it caused)."""
        self.spat_history: dict[str, deque[dict[str, Any]]] = {}
        self.spat_subscribers: list[SpatSink] = []
        self.mqtt: MqttLink | None = None
        self.field: FieldControllers | None = None
        self.port: FieldPort | None = None
        self.control: ControlManager | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pacer: asyncio.TimerHandle | None = None
        self._guard_seen: dict[str, int] = {}
        self._spat_dirty: set[str] = set()
        self._next_control_s = math.inf
        self._graph: Any = None
        self.started_wall = math.nan
        self.stopped = False
        self.shadow: ShadowTwin | None = None
        self._shadow_audit_wall = 0.0
        self.follow_locks: dict[str, asyncio.Lock] = {}
        """One live fork and one live calibration at a time (twin.app.live.follow)."""
        self.counts = CountWindow()
        """Every accepted count of the last hours, for a rolling-window calibration."""

    # ------------------------------------------------------------------ start / stop
    def _plans(self) -> tuple[dict[str, GuardPlan], dict[str, Any]]:
        promise = all_red_promise_s(self.city.manifest)
        plans, foes = {}, {}
        for tls in self.cfg.signals:
            sig = self.signal_specs[tls]
            plans[tls] = plan_from_phases(
                tls, sig.phases, offset_s=sig.offset_s, min_all_red_s=promise
            )
            foes[tls] = conflict_matrix(self.net.tls[tls])
        return plans, foes

    async def start(self) -> None:
        """Take the field over, start the loops and the broker client, resume."""
        self.loop = asyncio.get_running_loop()
        # the kernels compiled now, not with the first ambulance (a fresh install has no
        # cached machine code: seconds of a stalled loop would let its GPS go stale)
        await asyncio.to_thread(warm_up_kernels)
        self.started_wall = time.time()
        plans, foes = self._plans()
        self.field = FieldControllers(
            self.cfg,
            plans,
            foes,
            clock=self.clock,
            audit=self.audit,
            on_ack=self._on_ack,
            on_lost=self._on_lost,
        )
        self.field.display.on_change = self._on_display_change
        self.port = port = await self.field.connect()
        self.manager = PriorityManager(
            port,
            recovery=self.opt.recovery,
            recovery_cycles=self.opt.recovery_cycles,
            max_hold_s=self.opt.max_hold_s,
            schedule=self._schedule,
        )
        self.planner = PreemptionPlanner(
            horizon_m=self.opt.horizon_m,
            lead_margin_s=self.opt.lead_margin_s,
            renewal_cross_green=self.opt.renewal_cross_green,
        )
        self.center = EvCenter(
            planner=self.planner,
            manager=self.manager,
            port=port,
            net=self.net,
            queue_veh=self._queue_veh,
            record=self._record,
            max_renewals=self.opt.hold_renewals,
        )
        if self.opt.control == "adaptive":
            self._start_adaptive(port)
        if self.opt.shadow:
            workdir = self.opt.workdir or Path(tempfile.mkdtemp(prefix="citytwin-shadow-"))
            self.shadow = ShadowTwin(
                self.city.path, clock=self.clock, run_dir=workdir / "shadow",
                scenario=shadow_scenario(self.city, self.opt.shadow_demand),
            )  # fmt: skip
            self.shadow.start()
        self._resume()
        self.audit.append(
            "service_start",
            signals=len(port.ids),
            down=sorted(port.down),
            control=self.opt.control,
            speed=self.clock.speed,
        )
        self._tasks.append(self.loop.create_task(self._ticker(), name="live ticker"))
        self._tasks.append(self.loop.create_task(self._spat_loop(), name="live spat"))
        if self.opt.mqtt_host:
            self.mqtt = MqttLink(
                self.opt.mqtt_host,
                self.opt.mqtt_port,
                client_id=self.opt.client_id,
                deliver=self.on_mqtt,
            )
            self.mqtt.start(self.loop)
        self._kick()
        await self.field.wait_taken_over()
        # everything loaded so far (the city, the net, the routes) lives as long as the
        # service: out of the garbage collector's way, so its pauses stay short
        gc.freeze()

    def _start_adaptive(self, port: FieldPort) -> None:
        ids = list(port.ids)
        signals = [self.signal_specs[t] for t in ids]
        self.control = ControlManager(
            signals=signals,
            links={t: self.net.tls[t].links for t in ids},
            edge_lanes={e.id: e.lanes for e in self.net.edges.values()},
            detectors=[d for d in self.city.manifest.detectors if d.tls in port.index],
            assignment=dict.fromkeys(ids, "adaptive"),
            spec=ControlSpec(default="adaptive", guard_fixed=True),
            detector_period_s=self.city.manifest.detector_period_s,
            control_interval_s=self.opt.control_interval_s,
            foes={t: conflict_matrix(self.net.tls[t]) for t in ids},
            all_red_promise_s=all_red_promise_s(self.city.manifest),
        )
        now = self.clock.now_s()
        self.control.attach(port, t_s=now)
        self._next_control_s = now + self.opt.control_interval_s

    async def stop(self, *, hand_back: bool = True) -> None:
        """Stop: hand every signal back to its own plan (never cutting an interval);
        without ``hand_back``, just stop talking (the controllers' backup timers act)."""
        if self.stopped:
            return
        self.stopped = True
        for task in self._tasks:
            await cancel_and_wait(task)
        if self._pacer is not None:
            self._pacer.cancel()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.field is not None:
            await self.field.close(hand_back=hand_back)
        if self.shadow is not None:
            self.shadow.stop()
        self.audit.append("service_stop", hand_back=hand_back)

    # ------------------------------------------------------------------ resume
    def _resume(self) -> None:
        """Missions still open and signals already served, from the audit log."""
        missions, self.served, ended = replay_audit(self.audit.records())
        self.ended |= ended
        for ev, raw in missions.items():
            try:
                self.dispatch(Mission.model_validate(raw), resumed=True)
            except (ValueError, CityError) as exc:
                log.error("mission of %s not resumed: %s", ev, exc)
        served = sorted([ev, tls] for ev, c in self.served.items() for tls in c.elements())
        if missions or served:
            self.audit.append("resume", missions=sorted(missions), served=served)
            log.info(
                "resumed %d mission(s); %d signal(s) already served are not asked again",
                len(missions),
                len(served),
            )

    # ------------------------------------------------------------------ missions
    def dispatch(self, mission: Mission, *, resumed: bool = False) -> dict[str, Any]:
        """Start helping an EV (its GPS is accepted from now on)."""
        v = mission.vehicle
        if v in self.missions:
            raise ConfigError(f"vehicle {v!r} already has a mission")
        route = self._route(mission)
        track = TrackedEv(id=v, kind=mission.kind, severity=mission.severity)
        track.follow(route, self.net, self.signal_specs, stale_after_s=self.opt.stale_after_s)
        port = self.port
        if not resumed:
            self.served.pop(v, None)
        track.signals = [
            s
            for s in unserved_visits(track.signals, self.served.get(v, Counter()))
            if port is None or s.tls in port.index
        ]
        if track.tracker is not None:
            track.tracker.vehicle_id = v
        mission = mission.model_copy(update={"route": route})
        if v in self.center.tracks:
            del self.center.tracks[v]
        self.center.add(track)
        self.missions[v] = mission
        self.agency[v] = mission.agency
        self.ingest.vehicles[v] = mission.agency
        self.ended.discard(v)
        if not resumed:
            self.audit.append("mission", ev=v, agency=mission.agency, mission=mission.model_dump())
        info = {
            "vehicle": v,
            "route_edges": len(route),
            "signals": [s.tls for s in track.signals],
            "resumed": resumed,
        }
        log.info("mission %s: %d edges, %d signals on its route", v, len(route), len(track.signals))
        return info

    def _route(self, m: Mission) -> list[str]:
        edges = self.net.edges
        if m.route is not None:
            bad = [e for e in m.route if e not in edges]
            if bad:
                raise ConfigError(f"mission {m.vehicle}: route edges {bad[:3]} are not in the city")
            return list(m.route)
        if m.origin_edge is None or m.origin_edge not in edges:
            raise ConfigError(f"mission {m.vehicle}: give a route, or an origin_edge of the city")
        if self._graph is None:
            self._graph = edge_graph(self.net)
        pois = {p.id: p for p in self.city.manifest.pois}
        dest = m.destination or "nearest"
        if dest == "nearest":
            hospitals = [p for p in pois.values() if p.role == "hospital"]
            poi, _t = nearest_poi_by_time(self._graph, m.origin_edge, hospitals)
            target = poi.edge
        elif dest in pois:
            target = pois[dest].edge
        elif dest in edges:
            target = dest
        else:
            raise ConfigError(f"mission {m.vehicle}: destination {dest!r} is no POI or edge")
        return fastest_route(self._graph, m.origin_edge, target)

    def end_mission(self, vehicle: str, *, reason: str) -> None:
        if vehicle not in self.missions:
            return
        now = self.clock.now_s()
        self.center.release_all(vehicle, now, reason=reason)
        track = self.center.tracks.get(vehicle)
        if track is not None:
            track.done = True
        del self.missions[vehicle]
        self.ingest.vehicles.pop(vehicle, None)
        self.ended.add(vehicle)
        self.audit.append("mission_end", ev=vehicle, agency=self.agency.get(vehicle), reason=reason)
        self._after_commands()

    # ------------------------------------------------------------------ ingest
    def on_mqtt(self, item: Received) -> None:
        if item.topic.startswith("citytwin/detector/"):
            self.detector(item.payload, source="mqtt", received_wall=item.received_wall)
            return
        parsed = parse_gps_topic(item.topic)
        if parsed is None:
            self.audit.append(
                "gps", accepted=False, reason="malformed", detail=f"topic {item.topic[:80]}"
            )
            return
        agency, vehicle = parsed
        self.gps(
            item.payload,
            source="mqtt",
            received_wall=item.received_wall,
            topic_agency=agency,
            topic_vehicle=vehicle,
        )

    def gps(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        source: str,
        received_wall: float,
        topic_agency: str | None = None,
        topic_vehicle: str | None = None,
    ) -> Verdict:
        """One GPS message: validated, audited, tracked, acted on (never raises)."""
        verdict = self.ingest.gps(
            raw,
            source=source,
            received_wall=received_wall,
            topic_agency=topic_agency,
            topic_vehicle=topic_vehicle,
        )
        fix = verdict.fix
        if fix is None:
            v = verdict.vehicle
            self.audit.append(
                "gps",
                ev=v,
                agency=self.agency.get(v or ""),
                accepted=False,
                reason=verdict.reason,
                detail=verdict.detail,
                source=source,
            )
            return verdict
        self.audit.append(
            "gps",
            ev=fix.vehicle,
            agency=fix.agency,
            accepted=True,
            source=source,
            t_fix_s=round(fix.t_s, 3),
            x_m=round(fix.x_m, 2),
            y_m=round(fix.y_m, 2),
            speed_mps=fix.speed_mps,
            age_ms=round((fix.received_s - fix.t_s) / self.clock.speed * 1e3, 2),
        )
        self._track(fix)
        return verdict

    def _track(self, fix: GpsFix) -> None:
        track = self.center.tracks.get(fix.vehicle)
        if track is None or track.tracker is None or track.done:
            return
        # a fix is fresh as of its arrival, but no later than its own time plus
        # ``fresh_lag_s``: a phone that sends buffered old fixes does not keep a hold alive
        fresh_s = min(fix.received_s, fix.t_s + self.opt.fresh_lag_s)
        ev = track.tracker.update(GpsReport(fix.vehicle, fix.t_s, fix.x_m, fix.y_m, fresh_s))
        if not ev.accepted:
            self.audit.append(
                "gps_track",
                ev=fix.vehicle,
                agency=fix.agency,
                accepted=False,
                reason=str(ev.reason),
            )
            return
        display = self._display()
        published = fix.sent_wall if fix.sent_wall is not None else fix.received_wall
        display.cause = (f"{fix.vehicle}@{fix.t_s:.3f}", published)
        try:
            now = self.clock.now_s()
            self.center.step(track, now)
            self._after_commands()
        finally:
            display.cause = None
        tracker = track.tracker
        if tracker.s_m is not None and tracker.s_m >= tracker.matcher.length_m - ARRIVED_M:
            self.end_mission(fix.vehicle, reason="arrived")

    def detector(
        self, raw: bytes | str | Mapping[str, Any], *, source: str, received_wall: float
    ) -> Verdict:
        """One detector message: validated, audited, counted into its interval."""
        verdict = self.ingest.detector(
            raw,
            source=source,
            received_wall=received_wall,
            closed_before_s=self.detectors.closed_before_s,
        )
        count = verdict.count
        if count is None:
            self.audit.append(
                "detector", accepted=False, reason=verdict.reason, detail=verdict.detail
            )
            return verdict
        used = self.detectors.add(count)
        self.audit.append(
            "detector",
            accepted=True,
            loop=count.loop,
            t_end_s=round(count.t_end_s, 3),
            count_veh=count.count_veh,
            used_for_control=used,
            late=not used,
        )
        self.counts.add(count, self.clock.now_s())
        if self.shadow is not None:
            self.shadow.feed_count(count.loop, count.t_end_s, count.count_veh)
        return verdict

    # ------------------------------------------------------------------ the center's hooks
    def _display(self) -> Any:
        assert self.field is not None
        return self.field.display

    def _queue_veh(self, lanes: Sequence[str]) -> float:
        return float(sum(self.world.lane_halting.get(ln, 0.0) for ln in lanes))

    def _record(self, kind: str, /, **data: Any) -> None:
        ev = data.get("ev")
        tls = data.get("tls")
        self.audit.append(kind, agency=self.agency.get(ev or ""), **data)
        if tls is not None:
            log_ = self.signal_log.setdefault(str(tls), SignalLog())
            entry = {"ev": ev, "t_s": data.get("t_s"), "stage": data.get("stage")}
            if kind == "priority_request":
                log_.requested.append(entry)
            elif kind == "priority_release":
                log_.released.append({**entry, "reason": data.get("reason")})
                if data.get("reason") in ("passed", "arrived") and ev:
                    self.served.setdefault(str(ev), Counter())[str(tls)] += 1
            self._spat_dirty.add(str(tls))

    def _on_lost(self, tls: str, reason: str) -> None:
        """A signal left the center's control: every EV lets go of it there."""
        now = self.clock.now_s()
        for ev in list(self.center.tracks):
            if self.manager.holds(ev, tls):
                self.center.release(ev, tls, now, reason=reason)
        self._spat_dirty.add(tls)

    def _on_ack(self, tls: str, causes: list[tuple[str, float]], ack_wall: float) -> None:
        for cause, published in causes:
            self.e2e.append((cause, tls, ack_wall - published))

    def _on_display_change(self, tls: str) -> None:
        assert self.field is not None
        self.field._poke(tls)
        self._spat_dirty.add(tls)
        port = self.port
        if port is None or self.field.display.signals[tls].shown is None:
            return
        shown = self.field.display.signals[tls].shown
        if self.shadow is not None and shown is not None:
            self.shadow.feed_state(tls, shown.state)
        st = port.guard(tls)
        if (
            shown is not None
            and shown.interval == "green"
            and st.priority is not None
            and st.priority[0] == shown.stage
        ):
            self.signal_log.setdefault(tls, SignalLog()).granted.append(
                {"t_s": round(shown.since_s, 3), "stage": shown.stage}
            )

    def _schedule(self, t_s: float, action: Callable[[], None], name: str) -> object:
        """The priority manager's timed work (recovery cycles) on the live clock."""
        assert self.loop is not None

        def run() -> None:
            try:
                action()
            except ValueError as exc:  # the signal went local or down meanwhile
                log.info("%s skipped: %s", name, exc)
            self._after_commands()

        return self.loop.call_later(self.clock.delay_s(t_s), run)

    # ------------------------------------------------------------------ time
    def _after_commands(self) -> None:
        """Show what is due now, audit the guard's verdicts, and re-arm the pacer."""
        port = self.port
        if port is None or self.stopped:
            return
        port.advance(self.clock.now_s())
        self._drain_guard_events()
        self._kick(advance=False)

    def _kick(self, *, advance: bool = True) -> None:
        port, loop = self.port, self.loop
        if port is None or loop is None or self.stopped:
            return
        if advance:
            port.advance(self.clock.now_s())
            self._drain_guard_events()
        if self._pacer is not None:
            self._pacer.cancel()
        nxt = port.next_change_s()
        delay = 1.0 if not math.isfinite(nxt) else min(self.clock.delay_s(nxt), 1.0)
        self._pacer = loop.call_later(delay, self._kick)

    def _drain_guard_events(self) -> None:
        port = self.port
        if port is None:
            return
        for tls in port.ids:
            events = port.guard(tls).events
            seen = self._guard_seen.get(tls, 0)
            if seen > len(events):  # retaken with a fresh list
                seen = 0
            for e in events[seen:]:
                self.audit.append(
                    "guard", tls=tls, what=e.what, guard_t_s=round(e.t_s, 3), detail=e.detail
                )
            if len(events) > 2000:  # the audit holds them; keep the guard's list short
                del events[:]
                seen = 0
            else:
                seen = len(events)
            self._guard_seen[tls] = seen

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.opt.tick_wall_s)
            try:
                self.tick()
            except Exception:  # a bug must not stop the loop that releases priority
                log.exception("live tick failed")

    def tick(self) -> None:
        """Every EV looked at (a stale track releases its holds), recovery closed, the
        adaptive controller fed, due changes shown."""
        now = self.clock.now_s()
        for ev, track in list(self.center.tracks.items()):
            if ev in self.missions and not track.done:
                self.center.step(track, now)
        self.manager.check_recovery(now)
        if self.shadow is not None:
            rep = self.shadow.poll()
            self.world.lane_halting = rep.lane_halting
            if time.time() - self._shadow_audit_wall >= 10.0 and math.isfinite(rep.sim_s):
                self._shadow_audit_wall = time.time()
                self.audit.append(
                    "shadow",
                    sim_s=rep.sim_s,
                    lag_s=rep.lag_s,
                    divergence=rep.divergence,
                    geh_ok_share=rep.geh_ok_share,
                    compared=rep.compared,
                )
        if self.control is not None and now >= self._next_control_s:
            self.detectors.close(now, grace_s=5.0)
            self.control.on_tick(now, self.world, self.detectors)
            self._next_control_s = now + self.opt.control_interval_s
        self._after_commands()

    # ------------------------------------------------------------------ SPaT
    def spat(self, tls: str) -> dict[str, Any]:
        port = self.port
        assert port is not None and self.field is not None
        st = port.status(tls)
        held = self.manager.held(tls)
        msg = spat_message(
            tls,
            st,
            port.plan(tls),
            self.field.display.signals[tls].stage_phases,
            now_s=self.clock.now_s(),
            preempt=held,
            priority=held or tls in self.manager.recovering,
            down=tls in port.down,
        )
        return msg

    def spat_all(self) -> list[dict[str, Any]]:
        port = self.port
        return [] if port is None else [self.spat(t) for t in port.ids]

    async def _spat_loop(self) -> None:
        last_all = 0.0
        while True:
            await asyncio.sleep(0.02)
            port = self.port
            if port is None:
                continue
            now_wall = time.time()
            if now_wall - last_all >= self.opt.spat_every_wall_s:
                dirty = set(port.ids)
                last_all = now_wall
            else:
                dirty, self._spat_dirty = self._spat_dirty, set()
            for tls in sorted(dirty):
                if tls not in port.index:
                    continue
                msg = self.spat(tls)
                self.spat_history.setdefault(tls, deque(maxlen=SPAT_HISTORY)).append(msg)
                if self.mqtt is not None and self.opt.publish_spat:
                    self.mqtt.publish(f"citytwin/spat/{tls}", json.dumps(msg).encode())
                for q in list(self.spat_subscribers):
                    with contextlib.suppress(asyncio.QueueFull):
                        q.put_nowait(msg)

    # ------------------------------------------------------------------ other threads
    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the service's loop (the API's handlers may run on another)."""

        async def run() -> T:
            return fn(*args, **kwargs)

        return await self.call_async(run)

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` on the service's loop (from the API's, which may
        be another)."""
        loop = self.loop
        if loop is None:
            raise RuntimeError("the live service is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return await fn(*args, **kwargs)
        coro = cast("Coroutine[Any, Any, T]", fn(*args, **kwargs))
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return await asyncio.wrap_future(fut)

    def run_soon(self, coro: Awaitable[Any]) -> None:
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ reading
    def status(self) -> dict[str, Any]:
        port = self.port
        return {
            "now_s": self.clock.now_s(),
            "signals": {} if self.field is None else self.field.states(),
            "down": [] if port is None else sorted(port.down),
            "missions": {
                v: {
                    "agency": m.agency,
                    "signals": [s.tls for s in self.center.tracks[v].signals],
                    "holding": self.manager.holding(v),
                }
                for v, m in self.missions.items()
            },
            "ingest": {"accepted": self.ingest.accepted, "rejected": dict(self.ingest.rejected)},
            "audit_records": self.audit.written,
            "mqtt": None
            if self.mqtt is None
            else {"connected": self.mqtt.connected, "received": self.mqtt.received},
        }


def latency_summary(values_s: Iterable[float]) -> dict[str, float | int | None]:
    arr = np.array(list(values_s), dtype=float) * 1e3
    if arr.size == 0:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "n": int(arr.size),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "max_ms": round(float(arr.max()), 3),
    }
