"""VMS diversion around incidents: incidents, the center's sign logic, driver response.

A run has incidents (:mod:`scenarios.incidents`: lanes close, or the speed drops, for a
time window; the center learns of each after a detection delay) and the city's
variable message signs. Every ``logic.update_s`` the center decides each sign's
message (the center's sign logic, :mod:`twin.center.signs`):

- ``incident_detour``: a known incident lies ahead of the sign (within ``range_m`` of
  driving, on a path no more than 1.4 times the straight-line distance) and the delay
  measured through it (travel times of its street and the 600 m behind it, against
  free flow) has reached ``detour_min_delay_s``, or the street is closed; the sign
  names the fastest detour to the street beyond the incident on current travel times.
- ``incident_warning``: an incident lies ahead but the delay is still small, or no
  detour exists; the sign warns and gives the measured delay.
- ``travel_time``: no incident: the travel time to a landmark (``logic.landmark``).
- ``ev_clear``: an emergency vehicle under priority will pass the sign within
  ``ev_warn_s`` (the EV-only sign near the hospital in Suwon): keep the lane clear.

Driver response: a vehicle that passes a sign showing an incident message, and whose
route crosses the incident, diverts with the probability of that message kind
(``compliance``; ~25 % for detour advice is the literature's default, 5-80 % seen in
the field). A diverting driver avoids the incident's street and SUMO reroutes the
vehicle on *current* travel times (``rerouteTraveltime``): no hand-written router. A
travel-time message makes a share of drivers re-plan on current travel times. Each
driver decides once per incident; the random draw is a hash of (seed, vehicle,
incident), so a sweep over compliance uses common random numbers: who diverts at
25 % also diverts at 50 %.

A full closure also diverts everyone at the closure point (police), and a vehicle that
then has no route to its destination is taken out of the network and counted as
``unreachable_veh`` rather than waiting for ever.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from city_models.build import City
from city_models.graph import edge_graph
from scenarios.base import Context, PreparedInputs, Scenario
from scenarios.ev_priority import (
    DEFAULT_EV_BEHAVIOUR,
    EvBehaviour,
    EvPriority,
    EvPrioritySpec,
    EvSpec,
)
from scenarios.gps import GpsModel
from scenarios.incidents import (
    Incidents,
    IncidentSpec,
    IncidentState,
    check_against_city,
    check_incidents,
    resolve_street,
)
from scenarios.registry import ScenarioKind, register
from scenarios.spec import DemandSpec, ScenarioSpec, _Spec
from twin.center.signs import KnownIncident, MessageKind, SignChange, SignLogic
from twin.errors import ScenarioError

log = logging.getLogger(__name__)

AVOID_PENALTY_S = 1e6  # what a diverting driver believes the incident street costs
MAX_EDGE_TIME_S = 600.0  # cap of one street's measured travel time


class ComplianceSpec(_Spec):
    """Share of drivers who act on a message, by message kind (0..1)."""

    incident_detour: float = Field(default=0.25, ge=0.0, le=1.0)
    incident_warning: float = Field(default=0.10, ge=0.0, le=1.0)
    travel_time: float = Field(default=0.05, ge=0.0, le=1.0)
    ev_clear: float = Field(default=0.6, ge=0.0, le=1.0)


class SignLogicSpec(_Spec):
    update_s: float = Field(default=30.0, ge=5.0, le=600.0)
    min_display_s: float = Field(default=60.0, ge=0.0, le=1800.0)
    range_m: float = Field(default=2000.0, gt=0.0, le=20_000.0)
    # advise a detour once the measured delay through the incident reaches this
    detour_min_delay_s: float = Field(default=60.0, ge=0.0, le=3600.0)
    landmark: str | None = "hospital_1"  # a POI id for travel-time messages; None: blank


class VmsDiversionSpec(ScenarioSpec):
    kind: Literal["vms_diversion"] = "vms_diversion"
    incidents: list[IncidentSpec] = Field(default_factory=list, max_length=20)
    vms: bool = True  # false: no sign shows anything (the "no VMS" case)
    signs: list[str] | Literal["all"] = "all"
    compliance: ComplianceSpec = ComplianceSpec()
    logic: SignLogicSpec = SignLogicSpec()
    demand: DemandSpec = DemandSpec(period="pm_peak")
    # emergency vehicles under priority (scenarios.ev_priority) and the EV-only message
    evs: list[EvSpec] = Field(default_factory=list, max_length=20)
    ev_mode: Literal["none", "field", "center"] = "center"
    ev_behaviour: EvBehaviour = DEFAULT_EV_BEHAVIOUR  # at red: stop, or pass slowly with siren
    ev_signs: list[str] | Literal["all"] = "all"  # which signs show the EV message
    ev_warn_s: float = Field(default=60.0, gt=0.0, le=600.0)  # EV this close (ETA): show
    ev_gps: GpsModel = GpsModel()

    @model_validator(mode="before")
    @classmethod
    def _guard_for_evs(cls, raw: Any) -> Any:
        """With emergency vehicles the signals run through the guard (priority needs it)."""
        if isinstance(raw, dict) and raw.get("evs"):
            control = dict(raw.get("control") or {})
            control.setdefault("guard_fixed", True)
            return {**raw, "control": control}
        return raw

    @model_validator(mode="after")
    def _check(self) -> VmsDiversionSpec:
        if self.evs and not self.control.guard_fixed and self.control.default == "fixed":
            raise ValueError("control.guard_fixed must be true: EV priority needs guarded signals")
        if not self.incidents and not self.evs:
            raise ValueError("a vms_diversion scenario needs incidents, evs, or both")
        check_incidents(self.incidents, begin_s=self.sim.begin_s, end_s=self.sim.end_s)
        return self

    def ev_spec(self) -> EvPrioritySpec:
        """The EV-priority part of this run, as an ``ev_priority`` spec."""
        keep = ("name", "seed", "city", "demand", "sim")
        control = self.control.model_copy(update={"guard_fixed": True})
        return EvPrioritySpec(**{k: getattr(self, k) for k in keep}, evs=self.evs,
                              mode=self.ev_mode, ev_behaviour=self.ev_behaviour,
                              gps=self.ev_gps, control=control)  # fmt: skip


@dataclass
class _Driver:
    """A driver who passed a sign about an incident on the route."""

    vehicle: str
    incident: str
    sign: str
    kind: MessageKind
    seen_s: float
    diverted: bool
    arrived_s: float = math.nan


@dataclass
class _IncidentSite:
    """An incident in the world and what is measured around it."""

    state: IncidentState
    queue_edges: list[str]
    loops: list[str]
    passed: list[tuple[float, int]] = field(default_factory=list)
    queue: list[tuple[float, float]] = field(default_factory=list)


def _draw(seed: int, *parts: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, parts): common random numbers. A
    cryptographic hash, so neighbouring ids and seeds give independent draws (a CRC
    would not: it is linear)."""
    key = ":".join((str(seed), *parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64


class VmsDiversion(Scenario[VmsDiversionSpec]):
    """The behaviour of a ``vms_diversion`` run (see the module doc)."""

    def __init__(self, spec: VmsDiversionSpec) -> None:
        super().__init__(spec)
        self.ev = EvPriority(spec.ev_spec()) if spec.evs else None
        self.needs_step_hook = self.ev is not None  # following an EV needs every step
        self.special_vehicles = set(self.ev.special_vehicles) if self.ev else set()
        self.ev_signs: set[str] = set()
        self.cleared: set[tuple[str, int, str]] = set()
        self.drivers: dict[tuple[str, str], _Driver] = {}  # (vehicle, incident)
        self.replanned: set[str] = set()
        self.seen: set[tuple[str, int, str]] = set()  # (sign, episode, vehicle)
        self.unreachable: set[str] = set()
        self.forced: set[str] = set()
        self.sign_log: list[dict[str, Any]] = []
        self.next_update_s = -math.inf

    # ------------------------------------------------------------------ before SUMO
    def check(self, city: City) -> None:
        """Incident streets (by id or name) and the EVs' stations, before a run exists."""
        resolved = [
            resolve_street(inc, city.net, k=k, scenario=self.spec.name)
            for k, inc in enumerate(self.spec.incidents)
        ]
        check_against_city(resolved, city.net, scenario=self.spec.name)
        if self.ev is not None:
            self.ev.check(city)

    def prepare(self, city: City, *, seed: int, run_dir: Path) -> PreparedInputs:
        """Loops across every lane at the end of each incident street (throughput)."""
        net = city.net
        resolved = [
            resolve_street(inc, net, k=k, scenario=self.spec.name)
            for k, inc in enumerate(self.spec.incidents)
        ]
        if resolved != self.spec.incidents:
            self.spec = self.spec.model_copy(update={"incidents": resolved})
        check_against_city(self.spec.incidents, net, scenario=self.spec.name)
        period = self.spec.sim.control_interval_s
        lines = ["<additional>"]
        for inc in self.spec.incidents:
            edge = net.edges[inc.edge]
            pos = max(edge.length_m - 1.0, 0.5)
            for k in range(edge.lanes):
                lines.append(
                    f'  <inductionLoop id="{_loop_id(inc.id, k)}" lane="{inc.edge}_{k}" '
                    f'pos="{pos:.2f}" period="{period:g}" file="NUL"/>'
                )
        lines.append("</additional>")
        path = run_dir / "incident_loops.add.xml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if self.ev is None:
            return PreparedInputs(city=city, additional=(path,))
        ev = self.ev.prepare(city, seed=seed, run_dir=run_dir)  # EV types with siren
        return PreparedInputs(city=city, additional=(path, *ev.additional),
                              sumo_args=ev.sumo_args)  # fmt: skip

    # ------------------------------------------------------------------ setup
    def setup(self, ctx: Context[VmsDiversionSpec]) -> None:
        spec, city = self.spec, ctx.city
        self.net = city.net
        self.graph = edge_graph(self.net)
        by_id = {v.id: v for v in city.manifest.vms}
        if spec.signs == "all":
            chosen = list(by_id)
        else:
            unknown = [s for s in spec.signs if s not in by_id]
            if unknown:
                raise ScenarioError(
                    f"Scenario {spec.name!r}: field 'signs' names {', '.join(unknown)}, not a "
                    f"sign of city {city.name}; allowed: 'all' or {', '.join(sorted(by_id))}."
                )
            chosen = list(spec.signs)
        pois = {p.id: p for p in city.manifest.pois}
        if spec.logic.landmark is not None and spec.logic.landmark not in pois:
            raise ScenarioError(
                f"Scenario {spec.name!r}: field 'logic.landmark' = {spec.logic.landmark!r} is "
                f"not a place of city {city.name}; allowed: {', '.join(sorted(pois))} or omit."
            )
        by_sign = {sid: by_id[sid] for sid in (chosen if spec.vms else [])}
        self.logic = SignLogic(
            net=self.net,
            graph=self.graph,
            signs=by_sign,
            landmark=pois.get(spec.logic.landmark or ""),
            range_m=spec.logic.range_m,
            min_display_s=spec.logic.min_display_s,
            detour_min_delay_s=spec.logic.detour_min_delay_s,
            ev_warn_s=spec.ev_warn_s,
        )
        self.signs = self.logic.state
        self.incidents = Incidents(spec.incidents, self.net)
        self.sites = [self._site(st) for st in self.incidents.states]
        ev_signs = chosen if spec.ev_signs == "all" else spec.ev_signs
        unknown = [s for s in ev_signs if s not in chosen]
        if unknown:
            raise ScenarioError(
                f"Scenario {spec.name!r}: field 'ev_signs' names {', '.join(unknown)}, not "
                f"one of the run's signs; allowed: 'all' or {', '.join(sorted(chosen))}."
            )
        self.incidents.start(ctx)
        if self.ev is not None:
            self.ev_signs = {s for s in ev_signs if s in self.signs}
            self.ev.setup(ctx)
        ctx.bus.record("vms_setup", signs=len(self.signs), incidents=len(self.sites))

    def _site(self, st: IncidentState) -> _IncidentSite:
        edge = self.net.edges[st.spec.edge]
        site = self.logic.site(edge.id)
        loops = [_loop_id(st.spec.id, k) for k in range(edge.lanes)]
        return _IncidentSite(st, list(site.queue_edges), loops)

    def _known(self) -> list[KnownIncident]:
        """What the center knows of the incidents now (after their detection delay)."""
        return [
            KnownIncident(
                s.state.spec.id, s.state.spec.edge, len(s.state.lanes), s.state.closes_street
            )
            for s in self.sites
            if s.state.known
        ]

    # ------------------------------------------------------------------ each tick
    def on_step(self, ctx: Context[VmsDiversionSpec]) -> None:
        if self.ev is not None:
            self.ev.on_step(ctx)

    def on_interval(self, ctx: Context[VmsDiversionSpec]) -> None:
        t = ctx.session.time_s
        if self.ev is not None:
            self.ev.on_interval(ctx)
        self._police_diversion(ctx)
        if self.signs and t >= self.next_update_s:
            self.next_update_s = t + self.spec.logic.update_s
            self._update_signs(ctx, t)
        if self.ev_signs:
            self._update_ev_signs(ctx, t)
        if self.signs:
            self._drivers_read_signs(ctx, t)
        self._measure(ctx, t)

    def _police_diversion(self, ctx: Context[VmsDiversionSpec]) -> None:
        """At a full closure everybody about to enter it is sent round it."""
        for st in self.incidents.active_closures():
            closed = st.spec.edge
            for up in self.graph.predecessors(closed):
                for vid in ctx.session.edge_vehicle_ids(up):
                    if vid in self.forced or vid in self.special_vehicles:
                        continue  # (an EV under priority keeps the center's route)
                    route, i = ctx.session.vehicle_route(vid)
                    if i + 1 >= len(route) or route[i + 1] != closed:
                        continue
                    self.forced.add(vid)
                    ctx.session.avoid_edges(vid, [closed], penalty_s=AVOID_PENALTY_S)
                    if closed in ctx.session.reroute(vid)[1:]:
                        self.unreachable.add(vid)
                        ctx.session.remove_vehicle(vid)
                        ctx.bus.record("vehicle_unreachable", vehicle=vid, closed_edge=closed)

    # ------------------------------------------------------------------ sign logic
    def _update_signs(self, ctx: Context[VmsDiversionSpec], t: float) -> None:
        # SUMO's estimate is length / mean speed: a stopped car makes it explode; cap it
        measured = ctx.session.edge_travel_times(list(self.net.edges))
        times = {e: min(tt, MAX_EDGE_TIME_S) for e, tt in measured.items()}
        self._log(ctx, self.logic.update(t, self._known(), times))

    def _log(self, ctx: Context[Any], changes: list[SignChange]) -> None:
        for c in changes:
            m = c.message
            row = {"t_s": c.t_s, "sign": c.sign, "kind": m.kind, "text": m.text}
            self.sign_log.append({**row, "incident": m.incident or ""})
            if c.changed_kind:
                ctx.bus.record("vms_message", sign=c.sign, message=m.kind, text=m.text,
                               incident=m.incident)  # fmt: skip

    def operator_message(self, ctx: Context[Any], sign: str, text: str, t: float) -> str:
        """An operator's message on a sign, from now on (an API session's event)."""
        try:
            change = self.logic.operator(sign, text, t)
        except ValueError as exc:
            raise ScenarioError(f"vms_message: {exc}") from exc
        if change is not None:
            self._log(ctx, [change])
        return " ".join(text.split())

    def _update_ev_signs(self, ctx: Context[VmsDiversionSpec], t: float) -> None:
        """The EV-only message (the center's sign logic, on its GPS tracks of the EVs)."""
        if self.ev is None:
            return
        self._log(ctx, self.logic.update_ev(t, self.ev_signs, self.ev.tracks()))

    # ------------------------------------------------------------------ drivers
    def _drivers_read_signs(self, ctx: Context[VmsDiversionSpec], t: float) -> None:
        session, p = ctx.session, self.spec.compliance
        for sid, sign in self.signs.items():
            msg = sign.message
            if msg.kind == "blank":
                continue
            for vid in session.edge_vehicle_ids(sign.edge):
                key = (sid, sign.episode, vid)
                if key in self.seen or vid in self.special_vehicles:
                    continue
                self.seen.add(key)
                if msg.kind == "ev_clear":
                    self._clear_lane(ctx, vid, sid)
                    continue
                if msg.kind == "travel_time":
                    if vid not in self.replanned and _draw(ctx.seed, vid, "tt") < p.travel_time:
                        self.replanned.add(vid)
                        session.reroute(vid)
                    continue
                if msg.incident is None or (vid, msg.incident) in self.drivers:
                    continue
                route, i = session.vehicle_route(vid)
                if not set(route[i:]) & set(msg.avoid_edges):
                    continue  # not heading through the incident
                share = getattr(p, msg.kind)
                diverted = False
                if _draw(ctx.seed, vid, msg.incident) < share:
                    session.avoid_edges(vid, msg.avoid_edges, penalty_s=AVOID_PENALTY_S)
                    diverted = not set(session.reroute(vid)) & set(msg.avoid_edges)
                self.drivers[(vid, msg.incident)] = _Driver(
                    vid, msg.incident, sid, msg.kind, t, diverted
                )

    def _clear_lane(self, ctx: Context[VmsDiversionSpec], vid: str, sid: str) -> None:
        """A compliant driver in the inner lane of a multi-lane street moves one lane
        right for as long as the message lasts, leaving the inner lane to the EV."""
        if vid in self.special_vehicles:
            return
        if _draw(ctx.seed, vid, "ev") >= self.spec.compliance.ev_clear:
            return
        lanes = self.net.edges[self.signs[sid].edge].lanes
        lane = ctx.session.lane_index(vid)
        if lanes > 1 and lane == lanes - 1:
            ctx.session.keep_lane(vid, lane - 1, duration_s=self.spec.ev_warn_s)
            self.cleared.add((sid, self.signs[sid].episode, vid))

    # ------------------------------------------------------------------ measures
    def _measure(self, ctx: Context[VmsDiversionSpec], t: float) -> None:
        session = ctx.session
        for site in self.sites:
            buf = np.zeros(len(site.queue_edges))
            session.read_edge_halting(site.queue_edges, buf)
            site.queue.append((t, float(buf.sum())))
            site.passed.append((t, sum(session.read_loop_counts(site.loops))))
        waiting = [d for d in self.drivers.values() if math.isnan(d.arrived_s)]
        if waiting:
            present = set(session.vehicle_ids())
            for d in waiting:
                if d.vehicle not in present:
                    d.arrived_s = t  # to the control interval

    def finish(self, ctx: Context[VmsDiversionSpec]) -> dict[str, Any]:
        affected = list(self.drivers.values())
        diverted = [d for d in affected if d.diverted]
        stayed = [d for d in affected if not d.diverted]

        def arrived(ds: list[_Driver]) -> list[_Driver]:
            # taken out as unreachable is not an arrival
            gone = self.unreachable
            return [d for d in ds if not math.isnan(d.arrived_s) and d.vehicle not in gone]

        def trip(ds: list[_Driver]) -> float:
            vals = [d.arrived_s - d.seen_s for d in arrived(ds)]
            return round(float(np.mean(vals)), 2) if vals else math.nan

        per_incident = {s.state.spec.id: self._incident_metrics(s) for s in self.sites}
        kinds = pd.Series([r["kind"] for r in self.sign_log], dtype=object)
        keys = ("throughput_veh", "queue_max_veh", "queue_mean_veh", "recovery_s")
        nan: dict[str, Any] = dict.fromkeys(keys, math.nan)
        first = next(iter(per_incident.values()), nan)
        ev = self.ev.finish(ctx) if self.ev is not None else {}
        return {
            **ev,
            **({"ev_lane_clear_asked_veh": len(self.cleared)} if self.ev is not None else {}),
            "vms_enabled": bool(self.signs),
            "vms_signs": len(self.signs),
            "vms_messages": {str(k): int(v) for k, v in kinds.value_counts().items()},
            "affected_veh": len(affected),
            "diverted_veh": len(diverted),
            "diverted_share": round(len(diverted) / len(affected), 4) if affected else 0.0,
            "replanned_on_travel_time_veh": len(self.replanned),
            # from reading the sign to arrival, over those who arrived (n, and how many
            # were still driving at the end, so a reader sees what the mean leaves out)
            "detour_trip_s": trip(diverted),
            "closed_route_trip_s": trip(stayed),
            "detour_arrived_veh": len(arrived(diverted)),
            "closed_route_arrived_veh": len(arrived(stayed)),
            "unreachable_veh": len(self.unreachable),
            "police_diverted_veh": len(self.forced) - len(self.unreachable),
            "incident_throughput_veh": first["throughput_veh"],
            "incident_queue_max_veh": first["queue_max_veh"],
            "incident_queue_mean_veh": first["queue_mean_veh"],
            "recovery_s": first["recovery_s"],
            "incidents": per_incident,
        }

    def _incident_metrics(self, site: _IncidentSite) -> dict[str, Any]:
        inc = site.state.spec
        q = pd.DataFrame(site.queue, columns=["t_s", "queue_veh"])
        passed = pd.DataFrame(site.passed, columns=["t_s", "passed_veh"])
        during = q[(q.t_s > inc.start_s) & (q.t_s <= inc.end_s)]
        flow = passed[(passed.t_s > inc.start_s) & (passed.t_s <= inc.end_s)]
        hours = (inc.end_s - inc.start_s) / 3600.0
        return {
            "edge": inc.edge,
            "throughput_veh": int(flow.passed_veh.sum()),
            "throughput_vph": round(float(flow.passed_veh.sum()) / hours, 1),
            "queue_max_veh": float(during.queue_veh.max()) if len(during) else 0.0,
            "queue_mean_veh": round(float(during.queue_veh.mean()), 2) if len(during) else 0.0,
            "recovery_s": recovery_time_s(q, start_s=inc.start_s, end_s=inc.end_s),
            "detected_s": site.state.detected_s,
        }

    def series(self) -> dict[str, pd.DataFrame]:
        rows = []
        for site in self.sites:
            for (t, qv), (_t, n) in zip(site.queue, site.passed, strict=True):
                rows.append({"t_s": t, "incident": site.state.spec.id, "queue_veh": qv,
                             "passed_veh": n})  # fmt: skip
        return {"incident": pd.DataFrame(rows), "vms": pd.DataFrame(self.sign_log)}


def _loop_id(incident: str, lane: int) -> str:
    return f"incident_{incident}_{lane}"


def recovery_time_s(
    queue: pd.DataFrame, *, start_s: float, end_s: float, window_s: float = 120.0
) -> float:
    """Seconds after the incident ends until the queue upstream of it is back to its
    level before the incident: its mean over a rolling ``window_s`` (about a signal
    cycle, so red-light queues even out) falls to the mean of the 5 minutes before the
    incident + max(2 veh, 20 %). NaN if it does not within the run.
    """
    q = queue.set_index(pd.to_timedelta(queue.t_s, unit="s")).queue_veh
    before = queue[(queue.t_s > start_s - 300.0) & (queue.t_s <= start_s)].queue_veh
    ref = float(before.mean()) if len(before) else 0.0
    limit = ref + max(2.0, 0.2 * ref)
    rolling = q.rolling(pd.Timedelta(seconds=window_s)).mean()
    t = rolling.index.total_seconds()
    ok = (t >= end_s + window_s) & (rolling.to_numpy() <= limit)
    if not ok.any():
        return math.nan
    return float(t[ok.argmax()] - window_s - end_s)


register(ScenarioKind(name="vms_diversion", spec=VmsDiversionSpec, scenario=VmsDiversion))
