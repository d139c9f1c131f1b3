"""Interactive sessions: an outside program drives the twin step by step, safely.

The way sumo-rl lets a researcher drive SUMO locally, but remotely and through the
safety guard: a session is one run of a scenario in its own worker process (libsumo
allows one simulation per process; a crash ends only that session) that stops after
every ``advance``. In between, the client reads an observation (per signal: interval,
stage, time in it; per approach: loop counts and occupancy; queues) and sends commands
with the verbs of the controller port (``apply_timing``, ``hold``, ``force_off``,
``skip``, ``request_priority``, ``cancel_priority``). Every command goes to the same
:class:`~signal_control.port.GuardedPort` the twin's own controllers use; the answer
says what the guard did and why (clamped, deferred, ignored, refused). Events can be
injected: an incident, an EV dispatch (scenarios with EV priority), a VMS message
(VMS scenarios).

- :class:`InteractiveSession` is the session itself (in the worker process).
- :class:`SessionManager` owns the worker processes: create, call, close, an idle
  timeout and a length cap, and vehicle-seconds used (the quota's cost measure).

The signals a client controls run their fixed-time plans through the guard until
commanded; the scenario's own controllers keep every other signal.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from city_models.build import City, load_city
from scenarios.ev_priority import EvPriority, EvSpec
from scenarios.incidents import Incidents, IncidentSpec, check_against_city
from scenarios.loader import parse_scenario
from scenarios.spec import ScenarioSpec
from scenarios.vms_diversion import VmsDiversion
from signal_control.guard import GuardEvent
from signal_control.port import GuardedPort, SignalReleasedError
from twin.app.compose import build_run
from twin.config import Settings
from twin.engine.run import Run
from twin.errors import ConfigError, RunError, TwinError

log = logging.getLogger(__name__)

Verb = Literal["apply_timing", "hold", "force_off", "skip", "request_priority", "cancel_priority"]
VERBS: tuple[str, ...] = get_args(Verb)
EVENT_KINDS = ("incident", "ev_dispatch", "vms_message")
MAX_BATCH = 2000
"""The most commands in one batch."""
MAX_ADVANCE_S = 3600.0
"""The most one ``advance`` may run (a client steps; a long run is a batch run)."""
CALL_TIMEOUT_S = 600.0


class SessionError(TwinError, ValueError):
    """A session request that cannot be done (unknown session, bad command, closed)."""


class SessionGoneError(TwinError, RuntimeError):
    """The session's worker process ended (SUMO crashed, or it was closed)."""


# --------------------------------------------------------------------------- the session


def session_spec(
    raw: Mapping[str, Any], controlled: Sequence[str] | Literal["all"]
) -> dict[str, Any]:
    """The scenario dict a session runs: the client's signals become guarded fixed-time
    signals (``control.by_signal = fixed``, ``guard_fixed = true``) that the client
    commands; the scenario's own controllers keep the others."""
    spec = dict(raw)
    control = dict(spec.get("control") or {})
    control["guard_fixed"] = True
    if controlled == "all":
        control["default"] = "fixed"
        control["by_signal"] = {}
    else:
        by_signal = dict(control.get("by_signal") or {})
        by_signal.update(dict.fromkeys(controlled, "fixed"))
        control["by_signal"] = by_signal
    spec["control"] = control
    return spec


@dataclass
class _Usage:
    vehicle_s: float = 0.0


class InteractiveSession:
    """One scenario run, stepped from outside, commanded through the guard.

    Parameters
    ----------
    spec
        The scenario (already passed through :func:`session_spec`).
    city
        The city to run on.
    seed, run_dir
        As for any run.
    controlled
        The signals the client commands (``"all"``: every signal).
    """

    def __init__(
        self,
        spec: ScenarioSpec,
        city: City,
        *,
        seed: int,
        run_dir: Path,
        controlled: Sequence[str] | Literal["all"] = "all",
        extra_additional: tuple[Path, ...] = (),
    ) -> None:
        ids = [s.id for s in city.manifest.signals]
        if controlled != "all":
            unknown = sorted(set(controlled) - set(ids))
            if unknown:
                raise SessionError(
                    f"field 'controlled' names signals that are not in city {city.name}: "
                    f"{', '.join(unknown[:5])}; signals are e.g. {', '.join(ids[:5])}."
                )
        self.spec = spec
        self.city = city
        self.controlled = ids if controlled == "all" else list(controlled)
        self.usage = _Usage()
        self.run: Run[City, ScenarioSpec] = build_run(
            spec, city, seed=seed, run_dir=run_dir, progress=self._tick,
            extra_additional=extra_additional,
        )  # fmt: skip
        self.run.start()
        control = self.run.control
        if control is None or control.port is None:
            raise SessionError("the session's signals are not under guarded control")
        self.port: GuardedPort = control.port
        missing = [t for t in self.controlled if t not in self.port.index]
        if missing:
            raise SessionError(f"signals {missing[:5]} are not under the guard in this scenario")
        net = city.net
        self._out_edges = sorted({k.to_edge for t in self.controlled for k in net.tls[t].links})
        self._edge_buf = np.zeros(len(self._out_edges))
        by_tls = {s.id: s for s in city.manifest.signals}
        self._approach: dict[str, dict[str, list[int]]] = {}
        state = self.run.session.state
        for d in city.manifest.detectors:
            if d.kind == "stopline" and d.tls in by_tls and d.id in state.det_index:
                edge = d.lane.rsplit("_", 1)[0]
                self._approach.setdefault(d.tls, {}).setdefault(edge, []).append(
                    state.det_index[d.id]
                )

    def _tick(self, done_s: float, total_s: float) -> None:
        """After every control tick: vehicle-seconds used (running vehicles x tick)."""
        running = self.run.session.counts()["running"]
        self.usage.vehicle_s += running * self.run.sim.control_interval_s

    # ------------------------------------------------------------------ reads
    @property
    def t_s(self) -> float:
        return self.run.t_s

    def layout(self) -> dict[str, Any]:
        """What a client needs to control the signals: per controlled signal its plan
        (phases with states and greens), links (in-lane -> out-edge, direction) and
        loops; the lanes of every out-edge."""
        net = self.city.net
        by_tls = {s.id: s for s in self.city.manifest.signals}
        signals = []
        for tls in self.controlled:
            sig = by_tls[tls]
            signals.append({
                "id": tls,
                "offset_s": sig.offset_s,
                "incoming_lanes": list(sig.incoming_lanes),
                "phases": [p.model_dump() for p in sig.phases],
                "links": [
                    {"index": k.index, "from_lane": k.from_lane, "to_edge": k.to_edge,
                     "direction": k.direction}
                    for k in net.tls[tls].links
                ],
                "approaches": sorted(self._approach.get(tls, {})),
            })  # fmt: skip
        return {
            "city": self.city.name,
            "t_s": self.t_s,
            "begin_s": self.run.sim.begin_s,
            "end_s": self.run.sim.end_s,
            "control_interval_s": self.run.sim.control_interval_s,
            "signals": signals,
            "edge_lanes": {e: net.edges[e].lanes for e in self._out_edges},
        }

    def signal_status(self, tls: str) -> dict[str, Any]:
        """One controlled signal now: interval, stage, timing, priority, local control,
        the state the guard shows (no SUMO reads: cheap after every command)."""
        s = self.port.status(tls)
        plan = self.port.plan(tls)
        return {
            "interval": s.interval,
            "stage": s.stage,
            "target": s.target,
            "time_in_interval_s": self.run.session.time_s - s.entered_s,
            "next_change_s": s.next_change_s if math.isfinite(s.next_change_s) else None,
            "min_end_s": s.min_end_s if math.isfinite(s.min_end_s) else None,
            "priority_stage": s.priority_stage,
            "local": s.local,
            "handing_back": s.handing_back,
            "state": plan.show(s.interval, s.stage, s.target),
        }

    def observe(self) -> dict[str, Any]:
        """The state now: per controlled signal its interval, stage and timing, the phase
        SUMO shows, loop counts/occupancy per approach (the last closed interval), and
        halting vehicles per incoming lane and per out-edge."""
        session = self.run.session
        session.read_signals()
        session.read_queues()
        session.read_edge_halting(self._out_edges, self._edge_buf)
        st = session.state
        lanes = st.lane_tls
        signals = {}
        for tls in self.controlled:
            k = st.tls_index[tls]
            approaches = {
                edge: {
                    "count_veh": float(np.nansum(st.det_count_veh[idx])),
                    "occupancy_pct": float(np.nanmean(st.det_occupancy_pct[idx])),
                }
                for edge, idx in self._approach.get(tls, {}).items()
            }
            signals[tls] = {
                **self.signal_status(tls),
                "phase_index": int(st.tls_phase[k]),
                "queue_veh": float(st.lane_halting_veh[lanes[k] : lanes[k + 1]].sum()),
                "approaches": _jsonable(approaches),
            }
        return {
            "t_s": self.t_s,
            "done": self.run.done,
            "detector_interval_end_s": st.det_interval_end_s,
            "signals": signals,
            "lane_halting_veh": dict(zip(st.lane_ids, st.lane_halting_veh.tolist(), strict=True)),
            "edge_halting_veh": dict(zip(self._out_edges, self._edge_buf.tolist(), strict=True)),
            "vehicle_s": self.usage.vehicle_s,
        }

    # ------------------------------------------------------------------ time
    def advance(self, seconds: float) -> dict[str, Any]:
        """Run ``seconds`` more (whole control ticks); returns the observation."""
        if not (math.isfinite(seconds) and 0 < seconds <= MAX_ADVANCE_S):
            raise SessionError(f"advance: seconds must be in (0, {MAX_ADVANCE_S:g}]; got {seconds}")
        if self.run.done:
            raise SessionError(f"the session's run has ended at {self.t_s:g} s; close it")
        self.run.advance_to(self.t_s + seconds)
        return self.observe()

    # ------------------------------------------------------------------ commands
    def command(self, verb: str, tls: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """A port command through the guard; the answer says what the guard did."""
        if verb not in VERBS:
            raise SessionError(f"unknown command {verb!r}; allowed: {', '.join(VERBS)}")
        if tls not in self.controlled:
            raise SessionError(
                f"signal {tls!r} is not one this session controls; controlled: "
                f"{', '.join(self.controlled[:8])}{' ...' if len(self.controlled) > 8 else ''}"
            )
        before = len(self._events(tls))
        port, now = self.port, self.run.session.time_s
        try:
            result: Any
            if verb == "apply_timing":
                result = port.apply_timing(tls, green_s=_floats(args, "green_s"))
            elif verb == "hold":
                result = port.hold(tls, until_s=_float(args, "until_s"))
            elif verb == "force_off":
                result = port.force_off(tls)
            elif verb == "skip":
                port.skip(tls, stage=_int(args, "stage"))
                result = None
            elif verb == "request_priority":
                hold = args.get("max_hold_s")
                port.request_priority(
                    tls, stage=_int(args, "stage"),
                    max_hold_s=None if hold is None else _float(args, "max_hold_s"),
                )  # fmt: skip
                result = None
            else:
                port.cancel_priority(tls)
                result = None
        except SignalReleasedError as exc:
            return {"accepted": False, "verb": verb, "signal": tls, "t_s": now,
                    "reason": str(exc), "guard": []}  # fmt: skip
        except ValueError as exc:  # a stage that does not exist, NaN, wrong count ...
            return {"accepted": False, "verb": verb, "signal": tls, "t_s": now,
                    "reason": str(exc), "guard": []}  # fmt: skip
        self.run.control.advance(now)  # type: ignore[union-attr]  # (due now: shown now)
        events = self._events(tls)[before:]
        return {
            "accepted": True,
            "verb": verb,
            "signal": tls,
            "t_s": now,
            "result": _jsonable(result),
            "guard": [{"t_s": e.t_s, "what": e.what, **_jsonable(e.detail)} for e in events],
            "status": self.signal_status(tls),
        }

    def commands(self, batch: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Several commands, carried out in order (one answer each)."""
        if len(batch) > MAX_BATCH:
            raise SessionError(f"at most {MAX_BATCH} commands in one batch; got {len(batch)}")
        out = []
        for k, c in enumerate(batch):
            if not isinstance(c, Mapping) or "verb" not in c or "signal" not in c:
                raise SessionError(f"commands[{k}] needs 'verb' and 'signal'; got {c!r}")
            out.append(self.command(str(c["verb"]), str(c["signal"]), c.get("args") or {}))
        return out

    def _events(self, tls: str) -> list[GuardEvent]:
        return [e for e in self.port.events() if e.tls_id == tls]

    # ------------------------------------------------------------------ events
    def inject(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """An incident (any scenario), an EV dispatch (scenarios with EV priority) or a
        VMS message (VMS scenarios), from now on."""
        kind = event.get("kind")
        now = self.run.session.time_s
        ctx = self.run.ctx
        hooks = self.run.hooks
        if kind == "incident":
            n = sum(1 for e in ctx.bus.events if e.kind == "injected_incident")
            try:
                spec = IncidentSpec(
                    id=str(event.get("id") or f"injected{n + 1}"),
                    edge=str(event.get("edge")),
                    closed_lanes=event.get("closed_lanes", 1),
                    speed_kph=event.get("speed_kph"),
                    start_s=now,
                    end_s=min(now + float(event.get("duration_s", 600.0)), self.run.sim.end_s),
                    detection_delay_s=float(event.get("detection_delay_s", 0.0)),
                )
            except (ValueError, TypeError) as exc:
                raise SessionError(f"incident: {exc}") from exc
            check_against_city([spec], ctx.city.net, scenario=self.spec.name)
            Incidents([spec], ctx.city.net).start(ctx)
            ctx.bus.record("injected_incident", t_s=now, id=spec.id, edge=spec.edge)
            return {"accepted": True, "kind": kind, "id": spec.id, "t_s": now}
        if kind == "ev_dispatch":
            ev_world = _ev_world(hooks)
            if ev_world is None:
                raise SessionError(
                    "ev_dispatch needs a scenario with EV priority (kind ev_priority, or "
                    "vms_diversion with evs)"
                )
            try:
                ev = EvSpec(**{k: v for k, v in event.items() if k != "kind"}, dispatch_s=now)
            except (ValueError, TypeError) as exc:
                raise SessionError(f"ev_dispatch: {exc}") from exc
            ev_world.add_ev(ctx, ev)
            return {"accepted": True, "kind": kind, "id": ev.id, "t_s": now}
        if kind == "vms_message":
            if not isinstance(hooks, VmsDiversion):
                raise SessionError("vms_message needs a vms_diversion scenario")
            sign, text = str(event.get("sign")), str(event.get("text", ""))
            shown = hooks.operator_message(ctx, sign, text, now)
            return {"accepted": True, "kind": kind, "sign": sign, "t_s": now, "text": shown}
        raise SessionError(f"unknown event kind {kind!r}; allowed: {', '.join(EVENT_KINDS)}")

    # ------------------------------------------------------------------ map
    def map_state(self, after: int = 0) -> dict[str, Any]:
        """For the web map: every vehicle (id, edge, metres along it), the scenario's EVs,
        and the event log after ``after`` (incidents, VMS, EV events); the API decides
        what each role sees (a researcher never gets the vehicles)."""
        s = self.run.session
        ids = s.vehicle_ids()
        vehicles = [
            [vid, edge, round(s.lane_position_m(vid), 1)]
            for vid, (edge, _) in zip(ids, s.vehicles_on_route(ids), strict=True)
        ]
        ev = _ev_world(self.run.hooks)
        log_ = self.run.ctx.bus.events
        events = [
            {"kind": e.kind, "t_s": e.t_s, **_jsonable(e.data)}
            for e in log_[after:]
            if e.kind.startswith(("incident", "injected_incident", "vms", "ev_"))
        ]
        return {"t_s": self.t_s, "vehicles": vehicles,
                "evs": sorted(ev.evs) if ev is not None else [],
                "events": events, "events_next": len(log_)}  # fmt: skip

    # ------------------------------------------------------------------ end
    def save_state(self) -> dict[str, Any]:
        """Save the run's state now (SUMO's state, its sidecar, the controllers) in the
        session's folder ``states/``: ``twin fork STATE_FILE`` forks from it."""
        path = self.run.save_state()
        return {"t_s": self.t_s, "state": str(path)}

    def close(self) -> dict[str, Any]:
        """Finish the run where it stands; its metrics (trips not finished included)."""
        result = self.run.finish()
        return {"t_s": self.t_s, "vehicle_s": self.usage.vehicle_s,
                "metrics": _jsonable(result.metrics)}  # fmt: skip


def _ev_world(hooks: Any) -> EvPriority | None:
    if isinstance(hooks, EvPriority):
        return hooks
    if isinstance(hooks, VmsDiversion) and hooks.ev is not None:
        return hooks.ev
    return None


def _float(args: Mapping[str, Any], key: str) -> float:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SessionError(f"field {key!r} must be a number; got {value!r}")
    return float(value)


def _int(args: Mapping[str, Any], key: str) -> int:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SessionError(f"field {key!r} must be an integer; got {value!r}")
    return value


def _floats(args: Mapping[str, Any], key: str) -> list[float]:
    value = args.get(key)
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise SessionError(f"field {key!r} must be a list of numbers; got {value!r}")
    return [float(v) for v in value]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class SessionRequest:
    """What a session's worker needs (plain data: it pickles into a spawned process)."""

    spec: dict[str, Any]
    city_path: str
    seed: int
    run_dir: str
    controlled: tuple[str, ...] | Literal["all"] = "all"
    extra_additional: tuple[str, ...] = ()


def _session_main(conn: Any, request: SessionRequest) -> None:
    """Entry point of a session's worker process: build, then serve calls until close."""
    logging.basicConfig(level=logging.WARNING)
    try:
        spec = parse_scenario(session_spec(request.spec, request.controlled), source="session")
        city = load_city(Path(request.city_path))
        session = InteractiveSession(
            spec, city, seed=request.seed, run_dir=Path(request.run_dir),
            controlled=request.controlled,
            extra_additional=tuple(Path(p) for p in request.extra_additional),
        )  # fmt: skip
        conn.send({"ok": True, "value": session.layout()})
    except TwinError as exc:
        conn.send({"ok": False, "error": str(exc), "type": type(exc).__name__})
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent went away: end the run
            with contextlib.suppress(TwinError, RuntimeError):
                session.close()
            return
        op = msg.get("op")
        try:
            if op == "advance":
                value: Any = session.advance(float(msg["seconds"]))
            elif op == "observe":
                value = session.observe()
            elif op == "layout":
                value = session.layout()
            elif op == "command":
                value = session.command(str(msg["verb"]), str(msg["signal"]), msg.get("args", {}))
            elif op == "commands":
                value = session.commands(msg["commands"])
            elif op == "inject":
                value = session.inject(msg["event"])
            elif op == "map_state":
                value = session.map_state(int(msg.get("after", 0)))
            elif op == "save_state":
                value = session.save_state()
            elif op == "close":
                conn.send({"ok": True, "value": session.close()})
                return
            else:
                raise SessionError(f"unknown session operation {op!r}")
            conn.send({"ok": True, "value": value})
        except TwinError as exc:
            conn.send({"ok": False, "error": str(exc), "type": type(exc).__name__})


@dataclass
class _Handle:
    id: str
    owner: str | None
    proc: Any
    conn: Any
    created_wall_s: float
    last_used_wall_s: float
    t_s: float
    layout: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)
    vehicle_s: float = 0.0
    closed: bool = False


@dataclass(frozen=True)
class SessionInfo:
    """A session as the manager sees it (for listings and quotas)."""

    id: str
    owner: str | None
    t_s: float
    vehicle_s: float
    idle_s: float
    age_s: float


class SessionManager:
    """Interactive sessions, each in its own worker process.

    Parameters
    ----------
    settings
        Where session run folders go (``<data>/sessions/<id>``).
    idle_timeout_s
        A session not called for this long is closed (its worker ends).
    max_sim_s
        Default cap on how far a session may run (simulated seconds from its start).
    on_usage
        Called ``(owner, vehicle_seconds)`` with the vehicle-seconds each call used.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        idle_timeout_s: float = 600.0,
        max_sim_s: float = 86_400.0,
        on_usage: Callable[[str | None, float], None] | None = None,
    ) -> None:
        if not idle_timeout_s > 0:
            raise ConfigError(f"idle_timeout_s must be > 0 (got {idle_timeout_s})")
        self.settings = settings
        self.idle_timeout_s = idle_timeout_s
        self.max_sim_s = max_sim_s
        self.on_usage = on_usage
        self._mp = mp.get_context("spawn")
        self._sessions: dict[str, _Handle] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="session-reaper", daemon=True)
        self._reaper.start()

    # ------------------------------------------------------------------ life cycle
    def create(
        self,
        spec: Mapping[str, Any],
        city: City,
        *,
        seed: int,
        owner: str | None = None,
        controlled: Sequence[str] | Literal["all"] = "all",
        timeout_s: float = CALL_TIMEOUT_S,
        extra_additional: Sequence[Path] = (),
    ) -> tuple[str, dict[str, Any]]:
        """Start a session; returns its id and layout (a failure to build it is a
        :class:`SessionError` with the scenario's words)."""
        sid = f"s{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        run_dir = self.settings.data_dir / "sessions" / sid
        run_dir.mkdir(parents=True, exist_ok=True)
        request = SessionRequest(
            spec=dict(spec), city_path=str(city.path), seed=seed, run_dir=str(run_dir),
            controlled="all" if controlled == "all" else tuple(controlled),
            extra_additional=tuple(str(p) for p in extra_additional),
        )  # fmt: skip
        parent, child = self._mp.Pipe()
        proc = self._mp.Process(target=_session_main, args=(child, request), name=f"session-{sid}")
        proc.start()
        child.close()
        reply = self._receive(parent, proc, timeout_s, what="starting the session")
        if not reply["ok"]:
            proc.join(5)
            raise SessionError(reply["error"])
        now = time.monotonic()
        layout = reply["value"]
        handle = _Handle(sid, owner, proc, parent, now, now, float(layout["t_s"]), layout)
        with self._lock:
            self._sessions[sid] = handle
        log.info("session %s started for %s", sid, owner)
        return sid, layout

    def call(self, sid: str, op: str, *, owner: str | None = None, **payload: Any) -> Any:
        """Send one operation to a session and wait for the answer."""
        handle = self._get(sid, owner)
        with handle.lock:
            if handle.closed:
                raise SessionGoneError(f"session {sid} is closed")
            if op == "advance":
                seconds = float(payload.get("seconds", 0.0))
                start = float(handle.layout["begin_s"])
                if handle.t_s + seconds - start > self.max_sim_s + 1e-9:
                    raise SessionError(
                        f"session {sid} may run {self.max_sim_s:g} s in all; it is at "
                        f"{handle.t_s - start:g} s (advance at most "
                        f"{max(self.max_sim_s - (handle.t_s - start), 0.0):g} s more)"
                    )
            handle.last_used_wall_s = time.monotonic()
            try:
                handle.conn.send({"op": op, **payload})
            except (OSError, BrokenPipeError) as exc:
                self._gone(handle)
                raise SessionGoneError(f"session {sid} ended: {exc}") from exc
            reply = self._receive(handle.conn, handle.proc, CALL_TIMEOUT_S, what=op, handle=handle)
            handle.last_used_wall_s = time.monotonic()
            if op == "close":
                handle.closed = True
                handle.proc.join(10)
                with self._lock:
                    self._sessions.pop(sid, None)
        if not reply["ok"]:
            raise SessionError(reply["error"])
        value = reply["value"]
        if isinstance(value, dict):
            if "t_s" in value and isinstance(value["t_s"], int | float):
                handle.t_s = float(value["t_s"])
            used = value.get("vehicle_s")
            if isinstance(used, int | float):
                delta, handle.vehicle_s = float(used) - handle.vehicle_s, float(used)
                if delta > 0 and self.on_usage is not None:
                    self.on_usage(handle.owner, delta)
        return value

    def close(self, sid: str, *, owner: str | None = None) -> dict[str, Any]:
        """Finish the session's run and end its worker; its metrics."""
        value = self.call(sid, "close", owner=owner)
        return dict(value) if isinstance(value, dict) else {"value": value}

    def info(self, sid: str, *, owner: str | None = None) -> SessionInfo:
        h = self._get(sid, owner)
        now = time.monotonic()
        return SessionInfo(h.id, h.owner, h.t_s, h.vehicle_s, now - h.last_used_wall_s,
                           now - h.created_wall_s)  # fmt: skip

    def list(self, *, owner: str | None = None) -> list[SessionInfo]:
        with self._lock:
            ids = [s for s, h in self._sessions.items() if owner is None or h.owner == owner]
        out = []
        for sid in ids:
            with contextlib.suppress(SessionError):
                out.append(self.info(sid))
        return out

    def count(self, *, owner: str | None = None) -> int:
        with self._lock:
            return sum(1 for h in self._sessions.values() if owner is None or h.owner == owner)

    def shutdown(self) -> None:
        """Close every session (their workers end) and stop the reaper."""
        self._stop.set()
        with self._lock:
            handles = list(self._sessions.values())
        for h in handles:
            self._kill(h)
        self._reaper.join(5)

    # ------------------------------------------------------------------ internals
    def _get(self, sid: str, owner: str | None) -> _Handle:
        with self._lock:
            handle = self._sessions.get(sid)
        # another tenant's session does not exist for the caller (404, never 403)
        if handle is None or (owner is not None and handle.owner != owner):
            raise SessionError(f"no session {sid!r}")
        return handle

    def _receive(
        self, conn: Any, proc: Any, timeout_s: float, *, what: str, handle: _Handle | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not self._ready(conn):
            if not proc.is_alive():
                if handle is not None:
                    self._gone(handle)
                code = proc.exitcode
                raise SessionGoneError(
                    f"the session's worker process died (exit code {code}) while {what}; "
                    "SUMO may have crashed (see the session's folder for sumo_errors.log)"
                )
            if time.monotonic() > deadline:
                proc.terminate()
                if handle is not None:
                    self._gone(handle)
                raise SessionGoneError(
                    f"the session did not answer within {timeout_s:g} s ({what})"
                )
        try:
            reply: dict[str, Any] = conn.recv()
        except (EOFError, OSError) as exc:
            if handle is not None:
                self._gone(handle)
            proc.join(1)
            raise SessionGoneError(
                f"the session's worker process died (exit code {proc.exitcode}) while {what}"
            ) from exc
        return reply

    @staticmethod
    def _ready(conn: Any) -> bool:
        """An answer is waiting, or the pipe broke (then ``recv`` says how)."""
        try:
            return bool(conn.poll(0.1))
        except (EOFError, OSError):
            return True

    def _gone(self, handle: _Handle) -> None:
        handle.closed = True
        with self._lock:
            self._sessions.pop(handle.id, None)

    def _kill(self, handle: _Handle) -> None:
        handle.closed = True
        with contextlib.suppress(OSError, ValueError):
            handle.conn.close()
        handle.proc.join(5)  # the worker sees EOF, closes its run and ends
        if handle.proc.is_alive():
            handle.proc.kill()
            handle.proc.join(5)
        with self._lock:
            self._sessions.pop(handle.id, None)

    def _reap(self) -> None:
        while not self._stop.wait(min(5.0, self.idle_timeout_s / 4)):
            now = time.monotonic()
            with self._lock:
                idle = [h for h in self._sessions.values()
                        if now - h.last_used_wall_s > self.idle_timeout_s
                        and not h.lock.locked()]  # fmt: skip
            for h in idle:
                log.info("session %s idle for %.0f s: closed", h.id, now - h.last_used_wall_s)
                with h.lock:
                    self._kill(h)


def require_open(manager: SessionManager | None) -> SessionManager:
    """The manager, or a :class:`RunError` saying sessions are off on this server."""
    if manager is None:
        raise RunError("interactive sessions are not enabled on this server")
    return manager
