"""Emergency-vehicle priority: none, the field method, or the center method (Suwon).

What the EV may do at a red signal is the spec's ``ev_behaviour``:

- ``obey_red`` (the default, :data:`DEFAULT_EV_BEHAVIOUR`): **stop, like everyone
  else.** EVs are SUMO vehicles of vClass ``emergency`` without the bluelight device,
  so they never run a red light and drivers do not form rescue lanes.
- ``siren``: lights and siren, as Korean law allows (Road Traffic Act art. 29: an EV
  on an urgent call need not stop where the law says stop, but must pass with special
  care; other drivers must yield). The EV gets SUMO's bluelight device
  (:func:`siren_vtypes_xml`): it may pass a red signal, and drivers near it (within
  :data:`BLUELIGHT_REACTION_DIST_M`) keep out of its way and brake for it at the
  junction. Its driver (:meth:`EvPriority._drive_with_siren`) slows down towards a red
  stop line and crosses the junction at no more than :data:`EV_RED_SPEED_KMH`; the
  drivers it crosses stop for it if they can, and it waits for those who cannot
  (art. 29(4), :meth:`EvPriority._make_way`). SUMO checks collisions on junctions too
  in these runs (:func:`siren_sumo_args`).

Either way EVs may drive 20 % (ambulance) or 10 % (fire truck) above the speed limit,
and the signals help them:

- ``none``: no priority. The EV waits at red lights and in queues.
- ``field``: only intersections with a roadside unit (a seeded share of the signals, or
  a named list) react, and only when the EV's transmitter comes within
  ``field_range_m`` of the stop line. There is no route, no ETA and no lead time.
- ``center``: the center follows the EV by GPS (emulated phone reports with noise,
  latency and drops, map-matched to the route the center proposed; it never reads the
  EV's future from SUMO). It estimates the ETA to every signal ahead and asks each
  for green early enough to flush the queue in front of the EV. The lead time is the
  transition (rest of the minimum green, yellow, all-red) plus queue discharge, from
  lane data; see ``signal_control.preemption``. It holds the green until GPS shows the
  EV past the stop line, then recovers (``immediate`` or ``smooth``). If GPS goes
  stale (3 s without a fix), priority is released at once.

Routes (the dispatch's, and route guidance every ``reroute_every_s`` after the scene)
are the fastest on the center's travel-time estimate: each edge's measured speed
averaged over the last ``route_time_window_s``
(:class:`twin.center.travel_times.EdgeTravelTimes`), not SUMO's last-step estimate,
which one car stopped at a red light blows up.

Every request goes through the safety guard: minimum greens (pedestrian clearance
included), yellow and all-red are never cut. Two EVs asking one signal for different
stages: earliest ETA wins, then severity (logged).
"""

from __future__ import annotations

import functools
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from city_models.build import City
from city_models.demand import VTYPES_XML
from city_models.graph import edge_graph, fastest_route, nearest_poi_by_time, route_time
from scenarios.base import Context, PreparedInputs, Scenario
from scenarios.gps import GpsEmulator, GpsModel
from scenarios.registry import ScenarioKind, register
from scenarios.spec import ControlSpec, ScenarioSpec, _Spec
from signal_control.priority import PriorityManager
from twin.center.ev_center import EvCenter
from twin.center.preemption import PreemptionPlanner, RenewalCrossGreen, TrackedEv
from twin.center.travel_times import DEFAULT_WINDOW_S, EdgeTravelTimes
from twin.engine.world import World
from twin.errors import CityError, ScenarioError
from twin.streams import seed_sequence, stream

log = logging.getLogger(__name__)

STALE_AFTER_S = 3.0

EvKind = Literal["ambulance", "fire_truck"]
EV_KINDS: tuple[str, ...] = get_args(EvKind)

EvBehaviour = Literal["obey_red", "siren"]
"""What an EV does at a red signal (see the module doc): ``obey_red`` stops like
everyone else; ``siren`` drives with lights and siren and may pass it slowly."""
EV_BEHAVIOURS: tuple[str, ...] = get_args(EvBehaviour)

DEFAULT_EV_BEHAVIOUR: EvBehaviour = "obey_red"
"""The behaviour of a scenario that does not say. The one place to flip it once the
benchmark (``python -m experiments.ev_priority``, block ``ev_behaviour``) has measured
both; everything else (scenario specs, the benchmark's ``--ev-behaviour``) follows."""

EV_RED_SPEED_KMH = 20.0
"""The most an EV with siren drives across a junction it enters against a red signal.
The law asks for special care and names no speed. At 20 km/h (5.56 m/s) the EV stops
within about 9 m (1 s to react, then its ``decel`` of 4-4.5 m/s²), before the middle
of a district junction, should a crossing driver not yield; it is also the speed SUMO's
own bluelight device slows an EV to when it enters a rescue lane. Two things hold it:
SUMO's ``jmDriveRedSpeed`` (but SUMO 1.28 applies that only once the red has lasted
2 s, and only up to the stop line) and the EV's driver in :meth:`EvPriority.on_step`
(:func:`red_approach_speed_mps` before the line, this cap across the junction)."""
EV_RED_SPEED_MPS = EV_RED_SPEED_KMH / 3.6

EV_RED_APPROACH_DECEL_MPS2 = 3.0
"""How hard an EV with siren brakes to reach :data:`EV_RED_SPEED_KMH` at a red stop
line: the deceleration ITE's yellow-interval formula takes as acceptable to every
driver (10 ft/s², 3.05 m/s²), below the EVs' ``decel`` (4-4.5 m/s²)."""

STOPLINE_MARGIN_M = 0.1
"""Distance kept from a red stop line by an EV still above :data:`EV_RED_SPEED_KMH`."""

SIREN_SLOW_STATES = frozenset("rys")
"""Link states an EV with siren approaches slowly: red; yellow (red before it gets
there, or a late crossing); ``s``, a right turn on red that others may take only
after a full stop."""

SIREN_YIELD_DIST_M = 70.0
"""Drivers make way for an EV with siren about to pass a red signal (Road Traffic Act
art. 29(4): near a junction an EV approaches, drivers keep out of the junction and
stop) once it is this close to the stop line, and those this close to their own stop
line on a movement that crosses or merges with the EV's stop before it. At 60 km/h a
driver needs 46 m to stop at :data:`YIELD_DECEL_MPS2`, and drives 17 m more in a step."""

YIELD_DECEL_MPS2 = EV_RED_APPROACH_DECEL_MPS2
"""How hard a driver brakes to make way: one who needs more passes first (the EV waits)."""

BLUELIGHT_REACTION_DIST_M = 25.0
"""How near other drivers must be to react to lights and siren (SUMO's default of
``device.bluelight.reactiondist``): vehicles ahead on the EV's way stop changing lanes
into it, and drivers approaching a junction the EV is about to enter brake for it."""

SIREN_SUFFIX = "_siren"
"""The vehicle type of an EV with siren: its kind + this (``ambulance_siren``)."""
SIREN_VTYPES_FILE = "ev_siren_types.add.xml"
COLLISIONS_FILE = "collisions.xml"


def ev_vtype(kind: str, behaviour: EvBehaviour) -> str:
    """The SUMO vehicle type an EV of ``kind`` drives as under ``behaviour``."""
    return kind + SIREN_SUFFIX if behaviour == "siren" else kind


def siren_vtypes_xml(
    *,
    red_speed_mps: float = EV_RED_SPEED_MPS,
    reaction_dist_m: float = BLUELIGHT_REACTION_DIST_M,
) -> str:
    """The EV types with lights and siren, as a SUMO additional file.

    Copies of the ``ambulance`` and ``fire_truck`` types of
    :data:`city_models.demand.VTYPES_XML` (one source for size, speed factor and
    dynamics), named ``<kind>_siren``, with

    - ``<param key="has.bluelight.device" value="true"/>``: SUMO's bluelight device.
      It sets the EV's speed mode to 7 (no braking for red lights, no yielding to
      approaching foes), makes drivers within ``device.bluelight.reactiondist`` ahead
      of it stop changing lanes (and, with the sublane model, form a rescue lane) and
      makes those approaching its next junction brake for it (SUMO docs,
      *Simulation/Emergency*, "Blue Light Device"; ``MSDevice_Bluelight.cpp``);
    - ``jmDriveRedSpeed``: the speed not exceeded when entering a junction against red
      (SUMO docs, *Definition of Vehicles, Vehicle Types, and Routes*, "Junction Model
      Parameters").
    """
    root = ET.fromstring(f"<routes>{VTYPES_XML}</routes>")
    out = ET.Element("additional")
    for kind in EV_KINDS:
        base = root.find(f"vType[@id='{kind}']")
        if base is None:  # VTYPES_XML lost a type the EV spec allows
            raise ScenarioError(f"city_models.demand.VTYPES_XML has no vType {kind!r}")
        vtype = ET.SubElement(out, "vType", dict(base.attrib))
        vtype.set("id", ev_vtype(kind, "siren"))
        vtype.set("jmDriveRedSpeed", f"{red_speed_mps:.2f}")
        params = {
            "has.bluelight.device": "true",
            "device.bluelight.reactiondist": f"{reaction_dist_m:g}",
        }
        for key, value in params.items():
            ET.SubElement(vtype, "param", {"key": key, "value": value})
    ET.indent(out, space="  ")
    return ET.tostring(out, encoding="unicode") + "\n"


def red_approach_speed_mps(
    distance_m: float,
    step_s: float,
    *,
    red_speed_mps: float = EV_RED_SPEED_MPS,
    decel_mps2: float = EV_RED_APPROACH_DECEL_MPS2,
) -> float:
    """The most an EV with siren may drive ``distance_m`` before a stop line it will
    pass against red: braking by ``decel_mps2`` each step of ``step_s`` down to
    ``red_speed_mps``, the speed of the step that takes it across the line.

    SUMO moves a vehicle by its new speed times the step (Euler), so the distance an
    EV needs from speed ``v`` until it crosses at ``c`` is
    ``D(v) = c·dt + (v² − c²)/(2b) + (v − c)·dt/2``, the sum of ``v, v − b·dt, ..., c``
    times ``dt``; this is its inverse. Following it brakes by exactly ``b·dt`` a step,
    and above ``c`` the next step never reaches the line (``D(v) − v·dt > 0``)."""
    c, b, dt = red_speed_mps, decel_mps2, step_s
    d = max(distance_m, 0.0)
    v = (-b * dt + math.sqrt(b * b * dt * dt + 4.0 * (c * c + 2.0 * b * (d - c * dt / 2.0)))) / 2.0
    return max(c, min(v, (d - STOPLINE_MARGIN_M) / dt))


def siren_sumo_args(run_dir: Path) -> tuple[str, ...]:
    """SUMO options of a run with sirens: collisions are checked on junctions too (by
    default SUMO checks lanes only, where a red runner cannot hit anyone) and written
    to ``collisions.xml``; ``warn`` keeps both vehicles driving, so a collision is
    reported (statistics' ``<safety collisions>``) without changing the run."""
    dest = (run_dir / COLLISIONS_FILE).resolve()
    return ("--collision.check-junctions", "true", "--collision.action", "warn",
            "--collision-output", str(dest))  # fmt: skip


ADD_POI_HINT = (
    " A station or hospital the city lacks can be added when the city is imported: "
    "twin city import ... --pois POIS.toml ([[pois]] id, kind, lat, lon, name)."
)


def _event_of(name: str) -> dict[str, Any]:
    """The priority manager's scheduled actions as events of a constant kind: its names
    ``"recovery <tls> cycle <n>"`` and ``"recovery <tls> done"`` become the kinds
    ``recovery_cycle`` (fields ``tls``, ``cycle``) and ``recovery_done`` (``tls``)."""
    words = name.split()
    if len(words) == 4 and words[0] == "recovery" and words[2] == "cycle":
        return {"name": "recovery_cycle", "tls": words[1], "cycle": int(words[3])}
    if len(words) == 3 and words[0] == "recovery" and words[2] == "done":
        return {"name": "recovery_done", "tls": words[1]}
    return {"name": name}


class EvSpec(_Spec):
    """One emergency vehicle: from a fire station to a call, then to a hospital."""

    id: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=40)
    kind: EvKind = "ambulance"
    dispatch_s: float = Field(ge=0.0)
    station: str
    call_edge: str | None = None  # None: a seeded random street 1-3 km from the station
    destination: str = "nearest"  # "nearest" hospital by current travel time, or its id
    severity: int = Field(default=3, ge=1, le=5)
    on_scene_s: float = Field(default=60.0, ge=0.0, le=3600.0)


class EvPrioritySpec(ScenarioSpec):
    kind: Literal["ev_priority"] = "ev_priority"
    evs: list[EvSpec] = Field(min_length=1, max_length=20)
    mode: Literal["none", "field", "center"] = "center"
    # what the EVs do at a red signal: stop ("obey_red") or pass it slowly with lights
    # and siren ("siren"); see the module doc
    ev_behaviour: EvBehaviour = DEFAULT_EV_BEHAVIOUR
    field_coverage: float = Field(default=0.3, ge=0.0, le=1.0)
    field_signals: list[str] = Field(default_factory=list)
    field_range_m: float = Field(default=150.0, gt=0.0, le=1000.0)
    recovery: Literal["immediate", "smooth"] = "smooth"
    recovery_cycles: int = Field(default=2, ge=2, le=5)
    gps: GpsModel = GpsModel()
    horizon_m: float = Field(default=2000.0, gt=0.0, le=10_000.0)
    max_hold_s: float = Field(default=60.0, gt=0.0, le=300.0)
    # a hold the guard ended at max_hold_s while the EV was still coming is asked again
    # (after the cross street's green) at most this often per EV and signal; 0: never
    hold_renewals: int = Field(default=2, ge=0, le=10)
    # what the cross street gets before a renewal: its minimum green (the guard's,
    # pedestrian clearance included) or the whole green it was given ("planned")
    renewal_cross_green: RenewalCrossGreen = "minimum"
    # added to the lead time; 15 s from a sweep (3/10/15/20 s) on seeds 1-3 (the
    # benchmark evaluates on other seeds): the center asks early enough that the
    # conflicting minimum green (pedestrian clearance) has run out when the EV arrives
    lead_margin_s: float = Field(default=15.0, ge=0.0, le=60.0)
    reroute_every_s: float = Field(default=60.0, ge=10.0, le=600.0)
    # the routes' travel times: each edge's speed averaged over this window (SUMO's
    # rerouting device's default, 180 s); one control interval: the speeds of that tick
    route_time_window_s: float = Field(default=DEFAULT_WINDOW_S, gt=0.0, le=1800.0)
    control: ControlSpec = ControlSpec(guard_fixed=True)

    @model_validator(mode="after")
    def _check(self) -> EvPrioritySpec:
        ids = [ev.id for ev in self.evs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"evs ids must be unique (got {ids})")
        for k, ev in enumerate(self.evs):
            if not self.sim.begin_s <= ev.dispatch_s < self.sim.end_s:
                raise ValueError(
                    f"evs[{k}].dispatch_s = {ev.dispatch_s:g} is outside the run "
                    f"[{self.sim.begin_s:g}, {self.sim.end_s:g})"
                )
        if not self.control.guard_fixed and self.control.default == "fixed":
            raise ValueError("control.guard_fixed must be true: priority needs guarded signals")
        return self


@dataclass
class _Ev:
    """The simulated EV (the world's side): its dispatch, its phone, what it did."""

    spec: EvSpec
    track: TrackedEv
    call_edge: str = ""
    hospital: str = ""
    gps: GpsEmulator | None = None
    inserted_s: float = math.nan
    arrived_s: float = math.nan
    distance_m: float = 0.0
    stops: int = 0
    stopped_s: float = 0.0
    moving: bool = True
    last_reroute_s: float = 0.0
    # with siren (the EV's driver at signals, see EvPriority._drive_with_siren)
    speed_cap_mps: float | None = None
    crossing: tuple[str, ...] | None = None  # crossing slowly: the lanes held for it
    crossing_state: str = ""  # ... and what its link showed just before
    scene_behind: bool = False
    in_junction: bool = False
    red_passes: int = 0
    held: set[str] = field(default_factory=set)  # drivers stopped to make way for it
    made_way: int = 0  # drivers who stopped for it (each time, each junction)


class EvPriority(Scenario[EvPrioritySpec]):
    """An ``ev_priority`` run: the simulated EVs and their phones (the world), the
    center's EV loop (:class:`twin.center.ev_center.EvCenter`: the planner and the
    priority manager, the same code live mode runs)."""

    needs_step_hook = True

    def __init__(self, spec: EvPrioritySpec) -> None:
        super().__init__(spec)
        self.evs = {
            ev.id: _Ev(ev, TrackedEv(id=ev.id, kind=ev.kind, severity=ev.severity))
            for ev in spec.evs
        }
        self.special_vehicles = set(self.evs)
        self.field_signals: set[str] = set()
        self.cross_queue_max: dict[str, float] = {}
        # each hold of a signal for an EV, as the ticks saw it: (ev, tls) -> [first tick
        # held, last tick held, the cross street's incoming edges]; closed holds in rows
        self._holds_open: dict[tuple[str, str], list[Any]] = {}
        self.hold_rows: list[dict[str, Any]] = []
        self._lanes: dict[tuple[str, str, int], tuple[str, ...]] = {}
        self.planner = PreemptionPlanner(
            horizon_m=spec.horizon_m,
            lead_margin_s=spec.lead_margin_s,
            renewal_cross_green=spec.renewal_cross_green,
        )

    def tracks(self) -> list[TrackedEv]:
        """The center's record of every EV dispatched so far (for other center logic,
        e.g. the EV-only message of the VMS signs)."""
        return [ev.track for ev in self.evs.values() if ev.track.route]

    # ------------------------------------------------------------------ prepare
    def prepare(self, city: City, *, seed: int, run_dir: Path) -> PreparedInputs:
        """With sirens: the EV types with the bluelight device and SUMO's junction
        collision check (nothing changes for ``obey_red``)."""
        if self.spec.ev_behaviour != "siren":
            return PreparedInputs(city=city)
        path = run_dir / SIREN_VTYPES_FILE
        path.write_text(siren_vtypes_xml(), encoding="utf-8")
        log.info("EVs drive with lights and siren (red passed at <= %g km/h)", EV_RED_SPEED_KMH)
        return PreparedInputs(city=city, additional=(path,), sumo_args=siren_sumo_args(run_dir))

    # ------------------------------------------------------------------ setup
    def setup(self, ctx: Context[Any]) -> None:
        city, spec = ctx.city, self.spec
        if ctx.control is None or ctx.control.port is None:
            raise ScenarioError("ev_priority needs guarded signals (control.guard_fixed = true).")
        self.port = ctx.control.port
        self.manager = PriorityManager(
            self.port,
            recovery=spec.recovery,
            recovery_cycles=spec.recovery_cycles,
            max_hold_s=spec.max_hold_s,
            schedule=lambda t_s, action, name: ctx.bus.at(t_s, action, **_event_of(name)),
        )
        self.net = city.net

        def queue_veh(lanes: Sequence[str]) -> float:
            buf = np.zeros(len(lanes))
            ctx.session.read_lane_halting(lanes, buf)
            return float(buf.sum())

        self.center = EvCenter(
            planner=self.planner,
            manager=self.manager,
            port=self.port,
            net=self.net,
            queue_veh=queue_veh,
            record=ctx.bus.record,
            max_renewals=spec.hold_renewals,
        )
        for ev in self.evs.values():
            self.center.add(ev.track)
        self.graph = edge_graph(self.net)
        self.travel = EdgeTravelTimes(
            {e: edge.length_m for e, edge in self.net.edges.items()},
            interval_s=spec.sim.control_interval_s,
            window_s=spec.route_time_window_s,
        )
        self.pois = {p.id: p for p in city.manifest.pois}
        signals = [s.id for s in city.manifest.signals]
        self.signal_spec = {s.id: s for s in city.manifest.signals}
        for k, ev_spec in enumerate(spec.evs):
            self._check_ev(k, ev_spec, city)
        if spec.field_signals:
            unknown = sorted(set(spec.field_signals) - set(signals))
            if unknown:
                raise ScenarioError(
                    f"Scenario {spec.name!r}: field 'field_signals' names unknown signals "
                    f"{unknown[:5]}; signals are e.g. {signals[:5]}."
                )
            self.field_signals = set(spec.field_signals)
        else:
            n = round(spec.field_coverage * len(signals))
            rng = stream(ctx.seed, "ev_priority/field_signals")
            self.field_signals = set(rng.choice(signals, size=n, replace=False).tolist())
        ctx.session.track(list(self.evs))
        calls = stream(ctx.seed, "ev_priority/call_edges")
        for ev in self.evs.values():
            phone = seed_sequence(ctx.seed, f"ev_priority/gps/{ev.spec.id}")
            ev.gps = GpsEmulator(spec.gps, seed=phone, vehicle_id=ev.spec.id)
            ev.call_edge = ev.spec.call_edge or self._random_call_edge(ev.spec, calls)
            ctx.bus.at(
                ev.spec.dispatch_s,
                functools.partial(self._dispatch, ctx, ev),
                name="dispatch",
                ev=ev.spec.id,
            )
        ctx.bus.record("ev_setup", mode=spec.mode, field_signals=len(self.field_signals))

    def add_ev(self, ctx: Context[Any], ev: EvSpec) -> None:
        """Dispatch one more EV now (an operator's or an API session's event)."""
        if ev.id in self.evs:
            raise ScenarioError(f"an EV with id {ev.id!r} is already in the run")
        self._check_ev(len(self.evs), ev, ctx.city)
        new = _Ev(ev, TrackedEv(id=ev.id, kind=ev.kind, severity=ev.severity))
        self.evs[ev.id] = new
        self.center.add(new.track)
        self.special_vehicles = {*self.special_vehicles, ev.id}
        ctx.session.track(list(self.evs))
        phone = seed_sequence(ctx.seed, f"ev_priority/gps/{ev.id}")
        new.gps = GpsEmulator(self.spec.gps, seed=phone, vehicle_id=ev.id)
        calls = stream(ctx.seed, f"ev_priority/call_edges/{ev.id}")
        new.call_edge = ev.call_edge or self._random_call_edge(ev, calls)
        self._dispatch(ctx, new)

    def check(self, city: City) -> None:
        """Stations, hospitals, call streets and field signals exist in the city."""
        for k, ev_spec in enumerate(self.spec.evs):
            self._check_ev(k, ev_spec, city)
        signals = {s.id for s in city.manifest.signals}
        unknown = sorted(set(self.spec.field_signals) - signals)
        if unknown:
            raise ScenarioError(
                f"Scenario {self.spec.name!r}: field 'field_signals' names unknown signals "
                f"{unknown[:5]}; signals are e.g. {sorted(signals)[:5]}."
            )

    def _check_ev(self, k: int, ev: EvSpec, city: City) -> None:
        stations = sorted(p.id for p in city.manifest.pois if p.role == "fire_station")
        hospitals = sorted(p.id for p in city.manifest.pois if p.role == "hospital")
        if ev.station not in stations:
            raise ScenarioError(
                f"Scenario {self.spec.name!r}: field 'evs[{k}].station' = {ev.station!r} is not "
                f"a fire station of city {city.name}; allowed: {', '.join(stations) or 'none'}."
                f"{ADD_POI_HINT}"
            )
        if not hospitals:
            raise ScenarioError(
                f"Scenario {self.spec.name!r}: city {city.name} has no hospital for "
                f"evs[{k}] to go to.{ADD_POI_HINT}"
            )
        if ev.destination != "nearest" and ev.destination not in hospitals:
            raise ScenarioError(
                f"Scenario {self.spec.name!r}: field 'evs[{k}].destination' = "
                f"{ev.destination!r}; allowed: 'nearest' or {', '.join(hospitals)}."
            )
        if ev.call_edge is not None and ev.call_edge not in city.net.edges:
            raise ScenarioError(
                f"Scenario {self.spec.name!r}: field 'evs[{k}].call_edge' = {ev.call_edge!r} "
                f"is not a street of city {city.name} (the call location is off the network)."
            )

    def _random_call_edge(self, ev: EvSpec, rng: np.random.Generator) -> str:
        sx, sy = self.pois[ev.station].x, self.pois[ev.station].y
        dist: dict[str, float] = {}
        for e in self.net.edges.values():
            if e.id.endswith("_pocket") or e.length_m < 60 or e.id not in self.graph:
                continue
            (x0, y0), (x1, y1) = e.shape_xy[0], e.shape_xy[-1]
            dist[e.id] = math.dist(((x0 + x1) / 2, (y0 + y1) / 2), (sx, sy))
        candidates = sorted(e for e, d in dist.items() if 1000.0 <= d <= 3000.0)
        if not candidates and dist:  # a small city: calls in its farther half
            far = max(dist.values())
            candidates = sorted(e for e, d in dist.items() if d >= far / 2)
        if not candidates:
            raise ScenarioError(
                f"Scenario {self.spec.name!r}: city has no street of 60 m or more to place "
                f"the call of {ev.id!r}; give evs.call_edge."
            )
        return str(candidates[int(rng.integers(len(candidates)))])

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, ctx: Context[Any], ev: _Ev) -> None:
        times = self.travel.times_s()  # free flow before the first sample
        start = self.pois[ev.spec.station].edge
        try:
            leg1 = fastest_route(self.graph, start, ev.call_edge, edge_time_s=times)
            if ev.spec.destination == "nearest":
                hospitals = [p for p in self.pois.values() if p.role == "hospital"]
                hospital, _t = nearest_poi_by_time(
                    self.graph, ev.call_edge, hospitals, edge_time_s=times
                )
            else:
                hospital = self.pois[ev.spec.destination]
            leg2 = fastest_route(self.graph, ev.call_edge, hospital.edge, edge_time_s=times)
        except CityError as exc:  # an unreachable destination must not crash the run
            ctx.bus.record("ev_unroutable", t_s=ctx.session.time_s, ev=ev.spec.id, error=str(exc))
            log.error("EV %s cannot be routed: %s", ev.spec.id, exc)
            return
        ev.hospital = hospital.id
        route = leg1 + leg2[1:]
        vtype = ev_vtype(ev.spec.kind, self.spec.ev_behaviour)
        ctx.session.add_vehicle(ev.spec.id, route, type_id=vtype, depart_s=ctx.session.time_s)
        call_len = self.net.edges[ev.call_edge].length_m
        ctx.session.add_stop(
            ev.spec.id, ev.call_edge, pos_m=call_len / 2, duration_s=ev.spec.on_scene_s
        )
        ev.track.follow(route, self.net, self.signal_spec, stale_after_s=STALE_AFTER_S)
        ev.last_reroute_s = ctx.session.time_s
        ctx.bus.record(
            "ev_dispatched",
            ev=ev.spec.id,
            call_edge=ev.call_edge,
            hospital=ev.hospital,
            route_edges=len(route),
        )

    # ------------------------------------------------------------------ each step
    def on_step(self, ctx: Context[Any]) -> None:
        live = [ev for ev in self.evs.values() if ev.track.route and math.isnan(ev.arrived_s)]
        t = ctx.session.time_s
        if not live:
            self.manager.check_recovery(t)
            return
        session = ctx.session
        session.read_tracked()
        st = session.state
        for ev in live:
            k = st.tracked_ids.index(ev.spec.id)
            x, y, v = st.tracked_x_m[k], st.tracked_y_m[k], st.tracked_speed_mps[k]
            if math.isnan(x):
                if not math.isnan(ev.inserted_s):  # gone: arrived at the hospital
                    ev.arrived_s = t
                    ev.track.done = True
                    ev.distance_m = float(st.tracked_distance_m[k])
                    self._let_go(session, ev)
                    self._release_all(ctx, ev, reason="arrived")
                    ctx.bus.record(
                        "ev_arrived", t_s=ctx.session.time_s, ev=ev.spec.id, hospital=ev.hospital
                    )
                continue
            if math.isnan(ev.inserted_s):
                ev.inserted_s = t
            ev.distance_m = float(st.tracked_distance_m[k])
            self._count_stops(ev, v)
            if self.spec.ev_behaviour == "siren":
                self._drive_with_siren(
                    session, ev, str(st.tracked_edge[k]), float(st.tracked_lane_pos_m[k])
                )
            tracker = ev.track.tracker
            if ev.gps is None or tracker is None:
                raise RuntimeError(f"EV {ev.spec.id} is driving without a phone or a track")
            ev.gps.observe(t, float(x), float(y))
            for report in ev.gps.poll(t):
                tracker.update(report)
            if self.spec.mode == "center":
                self._center(ctx, ev, t)
            elif self.spec.mode == "field":
                self._field(ctx, ev, t, float(x), float(y))
        self.manager.check_recovery(t)

    def _count_stops(self, ev: _Ev, speed_mps: float) -> None:
        dt = self.spec.sim.step_length_s
        if speed_mps < 0.5:
            ev.stopped_s += dt
            if ev.moving:
                ev.stops += 1
            ev.moving = False
        else:
            ev.moving = True

    def _drive_with_siren(self, session: World, ev: _Ev, edge: str, lane_pos_m: float) -> None:
        """An EV with lights and siren at signals. Towards a stop line showing red (or
        yellow, or a right turn on red), or one it reaches from a lane that does not
        lead where it goes, it slows on a braking curve to :data:`EV_RED_SPEED_KMH` at
        the line (:func:`red_approach_speed_mps`); from :data:`SIREN_YIELD_DIST_M` on,
        the drivers it would cut across make way (:meth:`_make_way`), and it waits at
        the line for any who cannot stop in time; it crosses the junction no faster,
        then drives freely again. The bluelight device lets it pass the red and enter
        the junction from the wrong lane; this sets how. Nobody makes way while it is
        still to stop at the scene (it does not cross the line before that)."""
        dt = self.spec.sim.step_length_s
        if edge == ev.call_edge and lane_pos_m > self.net.edges[edge].length_m / 2 + 1.0:
            ev.scene_behind = True  # past its stop at the scene (the middle of the street)
        before_scene = edge == ev.call_edge and not ev.scene_behind
        if edge.startswith(":"):  # inside a junction
            lanes = ev.crossing
            if lanes is not None:  # crossing slowly, and the others keep waiting
                if not ev.in_junction and ev.crossing_state == "r":
                    ev.red_passes += 1
                self._make_way(session, ev, lanes)
            ev.in_junction = True
            want = EV_RED_SPEED_MPS if lanes is not None else None
        else:
            ev.in_junction = False
            ev.crossing = None
            ahead = session.next_signal(ev.spec.id)
            want = None
            near = ahead is not None and ahead.distance_m <= SIREN_YIELD_DIST_M and not before_scene
            if ahead is not None:
                red = ahead.state in SIREN_SLOW_STATES
                own = self._link_lanes(ahead.tls, ahead.link_index)
                wrong = False  # on the street before the line, but not on a lane of its turn
                if near and own and edge == own[0].rsplit("_", 1)[0]:
                    wrong = f"{edge}_{session.lane_index(ev.spec.id)}" not in own
                if red or wrong:
                    want = red_approach_speed_mps(ahead.distance_m, dt)
                if near and (red or wrong):
                    lanes = (
                        self._conflicting_lanes(ahead.tls, ahead.link_index) if red else ()
                    ) + (own if wrong else ())
                    if self._make_way(session, ev, lanes):
                        stop = red_approach_speed_mps(ahead.distance_m, dt, red_speed_mps=0.0)
                        want = stop if want is None else min(want, stop)
                    elif ahead.distance_m <= EV_RED_SPEED_MPS * dt:  # the next step may cross
                        ev.crossing, ev.crossing_state = lanes, ahead.state
            if want is None or not near:
                self._let_go(session, ev)
        if want != ev.speed_cap_mps:
            session.cap_speed(ev.spec.id, want)
            ev.speed_cap_mps = want

    def _make_way(self, session: World, ev: _Ev, lanes: tuple[str, ...]) -> bool:
        """Drivers on these lanes (the movements the EV crosses or merges with, by the
        net's conflict matrix, and the lanes of its own movement when it comes from
        another lane), within :data:`SIREN_YIELD_DIST_M` of their stop line, stop before
        it if they can at :data:`YIELD_DECEL_MPS2`, and wait there until the EV has
        crossed. Returns whether one cannot: it passes first, and the EV waits."""
        dt = self.spec.sim.step_length_s
        committed, near = False, set()
        for car in session.approaching(lanes, within_m=SIREN_YIELD_DIST_M):
            if car.vehicle_id in self.evs:
                continue
            near.add(car.vehicle_id)
            room = car.distance_m - STOPLINE_MARGIN_M
            if car.vehicle_id in ev.held or car.speed_mps**2 / (2 * YIELD_DECEL_MPS2) <= room:
                stop = red_approach_speed_mps(car.distance_m, dt, red_speed_mps=0.0,
                                              decel_mps2=YIELD_DECEL_MPS2)  # fmt: skip
                session.cap_speed(car.vehicle_id, stop)
                if car.vehicle_id not in ev.held:
                    ev.held.add(car.vehicle_id)
                    ev.made_way += 1
            else:
                committed = True
        for vid in ev.held - near:  # over its line after all, or gone: no longer held
            session.cap_speed(vid, None)
            ev.held.discard(vid)
        return committed

    def _let_go(self, session: World, ev: _Ev) -> None:
        """The drivers who made way for the EV drive on."""
        for vid in sorted(ev.held):
            session.cap_speed(vid, None)
        ev.held.clear()

    def _conflicting_lanes(self, tls: str, link: int) -> tuple[str, ...]:
        """The incoming lanes of the links of ``tls`` that cross or merge with ``link``."""
        key = ("foes", tls, link)
        if key not in self._lanes:
            info = self.net.tls.get(tls)
            foes = info.foes[link] if info is not None and 0 <= link < len(info.foes) else ()
            lanes = (
                {info.links[j].from_lane for j, foe in enumerate(foes) if foe} if info else set()
            )
            self._lanes[key] = tuple(sorted(lanes))
        return self._lanes[key]

    def _link_lanes(self, tls: str, link: int) -> tuple[str, ...]:
        """The lanes from which ``link``'s movement (its street to its next street) can
        be driven at ``tls``."""
        key = ("own", tls, link)
        if key not in self._lanes:
            info = self.net.tls.get(tls)
            lanes: set[str] = set()
            if info is not None and 0 <= link < len(info.links):
                it = info.links[link]
                lanes = {ln.from_lane for ln in info.links
                         if ln.from_edge == it.from_edge and ln.to_edge == it.to_edge}  # fmt: skip
            self._lanes[key] = tuple(sorted(lanes))
        return self._lanes[key]

    def _center(self, ctx: Context[Any], ev: _Ev, t: float) -> None:
        self.center.step(ev.track, t)

    def _field(self, ctx: Context[Any], ev: _Ev, t: float, x: float, y: float) -> None:
        """Roadside units: react only to an EV within radio range of their stop line."""
        matcher = ev.track.matcher
        if matcher is None:
            return
        match = matcher.match(x, y)  # the radio senses the vehicle itself, not GPS
        if match is None:
            return
        for sig in ev.track.signals:
            if sig.tls not in self.field_signals:
                continue
            gap = sig.stop_s_m - match.s_m
            held = self.manager.holds(ev.spec.id, sig.tls)
            if held and gap < -10.0:
                self._release(ctx, ev, sig.tls, reason="passed")
            elif not held and 0.0 <= gap <= self.spec.field_range_m:
                self._request(ctx, ev, sig.tls, sig.stage, t, eta_s=math.nan)

    # ------------------------------------------------------------------ requests
    def _request(
        self, ctx: Context[Any], ev: _Ev, tls: str, stage: int, t: float, *, eta_s: float
    ) -> None:
        self.center.request(ev.spec.id, tls, stage, t, eta_s=eta_s)

    def _release(self, ctx: Context[Any], ev: _Ev, tls: str, *, reason: str) -> None:
        self.center.release(ev.spec.id, tls, ctx.session.time_s, reason=reason)

    def _release_all(self, ctx: Context[Any], ev: _Ev, *, reason: str) -> None:
        self.center.release_all(ev.spec.id, ctx.session.time_s, reason=reason)

    # ------------------------------------------------------------------ each tick
    def on_interval(self, ctx: Context[Any]) -> None:
        t = ctx.session.time_s
        ctx.session.read_edge_speeds(self.travel.edge_ids, self.travel.buffer)
        self.travel.observe()
        seen: set[tuple[str, str]] = set()
        for ev in self.evs.values():
            for tls in self.manager.holding(ev.spec.id):
                sig = self.signal_spec[tls]
                own = {ln for s in ev.track.signals if s.tls == tls for ln in s.approach_lanes}
                lanes = [ln for ln in sig.incoming_lanes if ln not in own]
                buf = np.zeros(len(lanes))
                ctx.session.read_lane_halting(lanes, buf)
                self.cross_queue_max[tls] = max(
                    self.cross_queue_max.get(tls, 0.0), float(buf.max(initial=0.0))
                )
                key = (ev.spec.id, tls)
                seen.add(key)
                if key in self._holds_open:
                    self._holds_open[key][1] = t
                else:  # SUMO names a lane <edge>_<index>: the approaches are edges
                    own_edges = {ln.rsplit("_", 1)[0] for ln in own}
                    cross = sorted({ln.rsplit("_", 1)[0] for ln in lanes} - own_edges)
                    self._holds_open[key] = [t, t, cross]
            en_route = ev.track.route and math.isnan(ev.arrived_s) and not math.isnan(ev.inserted_s)
            if en_route and t - ev.last_reroute_s >= self.spec.reroute_every_s:
                self._reroute(ctx, ev)
        for key in [k for k in self._holds_open if k not in seen]:
            self._close_hold(key)

    def _reroute(self, ctx: Context[Any], ev: _Ev) -> None:
        """Route guidance en route: after the scene, switch to a route at least 10 %
        faster on the center's travel times (holds on the old route are released)."""
        ev.last_reroute_s = ctx.session.time_s
        k = ctx.session.state.tracked_ids.index(ev.spec.id)
        here = ctx.session.state.tracked_edge[k]
        route = ev.track.route
        if here not in route or here.startswith(":"):
            return  # inside a junction: try next time
        i = route.index(here)
        if ev.call_edge in route[i + 1 :] or here == ev.call_edge:
            return  # the scene is still ahead: the stop is on this route
        times = self.travel.times_s()  # free flow before the first sample
        rest = route[i:]
        hospital_edge = self.pois[ev.hospital].edge
        try:
            best = fastest_route(self.graph, here, hospital_edge, edge_time_s=times)
        except CityError:  # no way from here to the hospital: keep the route
            return
        old_s, new_s = (
            route_time(self.graph, rest, edge_time_s=times),
            route_time(self.graph, best, edge_time_s=times),
        )
        if best == rest or new_s > 0.9 * old_s:
            return
        self._release_all(ctx, ev, reason="rerouted")
        ctx.session.set_route(ev.spec.id, best)
        ev.track.follow(best, self.net, self.signal_spec, stale_after_s=STALE_AFTER_S)
        ctx.bus.record(
            "ev_rerouted", t_s=ctx.session.time_s, ev=ev.spec.id, saved_s=round(old_s - new_s, 1)
        )

    # ------------------------------------------------------------------ results
    def _close_hold(self, key: tuple[str, str]) -> None:
        start_s, end_s, cross = self._holds_open.pop(key)
        self.hold_rows.append({"ev": key[0], "tls_id": key[1], "start_s": start_s,
                               "end_s": end_s, "cross_edges": ",".join(cross)})  # fmt: skip

    def series(self) -> dict[str, pd.DataFrame]:
        """``ev_holds``: each hold of a signal for an EV (first and last control tick it
        was held) and the cross street's incoming edges, the approaches it held red;
        with the run's ``approach_queues`` it gives the cross street's queue growth
        against a run without EVs (``experiments.ev_priority``)."""
        for key in list(self._holds_open):
            self._close_hold(key)
        columns = ["ev", "tls_id", "start_s", "end_s", "cross_edges"]
        return {"ev_holds": pd.DataFrame(self.hold_rows, columns=columns)}

    def finish(self, ctx: Context[Any]) -> dict[str, Any]:
        per_ev = {}
        for ev in self.evs.values():
            done = not math.isnan(ev.arrived_s)
            trip_s = (ev.arrived_s - ev.inserted_s - ev.spec.on_scene_s) if done else math.nan
            km = ev.distance_m / 1000.0
            per_ev[ev.spec.id] = {
                "arrived": done,
                "time_to_hospital_s": trip_s,
                "distance_km": km,
                "s_per_km": trip_s / km if done and km > 0 else math.nan,
                "stops": ev.stops,
                "stopped_s": max(ev.stopped_s - ev.spec.on_scene_s, 0.0),
                "preempted_signals": len(self.center.preempted.get(ev.spec.id, ())),
                "hospital": ev.hospital,
            }
            if self.spec.ev_behaviour == "siren":  # obey_red runs keep their metrics as they were
                per_ev[ev.spec.id]["red_passes"] = ev.red_passes
                per_ev[ev.spec.id]["drivers_made_way"] = ev.made_way
        arrived = [v for v in per_ev.values() if v["arrived"]]

        def mean(key: str) -> float:
            return float(np.mean([v[key] for v in arrived])) if arrived else math.nan

        recovered = [r for r in self.manager.recovery_s if math.isfinite(r)]
        siren: dict[str, Any] = {}
        if self.spec.ev_behaviour == "siren":  # stop lines passed against red (our count)
            siren["ev_red_passes"] = sum(ev.red_passes for ev in self.evs.values())
            siren["ev_drivers_made_way"] = sum(ev.made_way for ev in self.evs.values())
        return {
            "ev_mode": self.spec.mode,
            "ev_arrived": len(arrived),
            "ev_time_to_hospital_s": mean("time_to_hospital_s"),
            "ev_s_per_km": mean("s_per_km"),
            "ev_stops": mean("stops"),
            "ev_stopped_s": mean("stopped_s"),
            "ev_preempted_signals": sum(v["preempted_signals"] for v in per_ev.values()),
            "ev_conflicts": self.center.conflicts,
            "ev_hold_renewals": self.center.renewals_done,
            "cross_street_max_queue_veh": max(self.cross_queue_max.values(), default=0.0),
            "recovery_mean_s": float(np.mean(recovered)) if recovered else math.nan,
            **siren,
            "ev": per_ev,
        }


register(ScenarioKind(name="ev_priority", spec=EvPrioritySpec, scenario=EvPriority))
