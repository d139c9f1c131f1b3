"""Disaster evacuation of a hazard zone: staged departures, shelters, contraflow,
evacuation signal plans, clearance curves.

A warning at ``warning_s`` tells the households of a zone (the city's flood zone, or a
polygon given in the scenario) to leave. Their vehicles (households per km² x
vehicles per household x evacuating share) start on the zone's streets, weighted by
street length, at times drawn from a departure curve: ``simultaneous``, ``staged``
(sub-zones told in waves, nearest the hazard first), ``rayleigh`` or ``lognormal``
response curves. The warning reaches each sub-zone through a SimPy process. They
drive fixed routes to shelters:

- ``nearest``: the shelter nearest by free-flow time; a full shelter turns them away;
- ``capacity_aware``: the nearest, and when a shelter fills (SimPy intake) everyone
  still heading there is sent on to the next nearest shelter with room;
- ``system_optimal``: a min-cost flow plan (networkx) over the street graph with lane
  capacities and shelter capacities, one fixed route per vehicle.

Measures: ``contraflow`` on the main outbound road (a network variant built by
netconvert, :mod:`city_models.variants`; from the warning on, the one lane left inbound
serves emergency vehicles only), ``evacuation_signals`` (through the guarded controller
port: long greens for the stages that carry evacuees, in proportion to their flow,
minimum greens elsewhere, re-applied every ``signal_update_s``), ``close_inbound``
(entries into the zone closed to all but emergency vehicles). An optional spreading
hazard floods the zone's streets outward from a source point: speed first, then closed.
Background traffic keeps running; its delay is the run's trip metrics (evacuees are
excluded from them).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy

from city_models.build import City
from city_models.features import edge_mid_xy
from scenarios.base import Context, PreparedInputs, Scenario
from scenarios.evacuation_plan import (
    Evacuee,
    check_contraflow_edges,
    evacuation_greens,
    inbound_edges,
    plan_evacuation,
    shelter_capacities,
    stage_flows,
    zone_of,
)
from scenarios.evacuation_spec import DepartureSpec, EvacuationSpec, HazardSpec, MeasuresSpec
from scenarios.registry import ScenarioKind, register
from scenarios.shelters import ShelterIntake
from twin.errors import ScenarioError
from twin.streams import stream

log = logging.getLogger(__name__)

EMERGENCY_CLASSES = ("emergency", "authority")
RESTRICTED_KINDS = {"contraflow": "contraflow_closed", "inbound": "inbound_closed"}
"""The event kind of each access restriction (a constant string per measure)."""
__all__ = ["DepartureSpec", "Evacuation", "EvacuationSpec", "HazardSpec", "MeasuresSpec"]
EVACUEE_VTYPE = '  <vType id="evacuee" vClass="passenger" color="1,0.55,0"/>\n'


class Evacuation(Scenario[EvacuationSpec]):
    """The behaviour of an ``evacuation`` run (see the module doc)."""

    needs_step_hook = False

    def __init__(self, spec: EvacuationSpec) -> None:
        super().__init__(spec)
        self.vehicles: dict[str, Evacuee] = {}
        self.special_vehicles: set[str] = set()
        self.not_scheduled = 0  # departures drawn after the end of the run
        self.contraflow_edges: list[str] = []
        self.reversed_edges: list[str] = []
        self.rows: list[tuple[float, int, int, int, int]] = []
        self.events: list[str] = []
        self.signal_tls: dict[str, np.ndarray] = {}
        self.signals_max = 0  # most signals on evacuation plans at once
        self.closed_edges: set[str] = set()

    # ------------------------------------------------------------------ before SUMO
    def check(self, city: City) -> None:
        """The zone, the shelters and any named contraflow streets, before a run exists."""
        _poly, zone = zone_of(city, self.spec)
        shelter_capacities(city, self.spec)
        if self.spec.measures.contraflow_edges:
            check_contraflow_edges(city, self.spec, list(self.spec.measures.contraflow_edges),
                                   zone)  # fmt: skip

    def prepare(self, city: City, *, seed: int, run_dir: Path) -> PreparedInputs:
        """Plan the evacuation (:func:`scenarios.evacuation_plan.plan_evacuation`) and
        write the evacuees' routes."""
        p = plan_evacuation(city, self.spec, stream(seed, "evacuation/plan"))
        self.plan = p
        self.zone_polygon = p.zone_polygon
        self.zone_area_km2 = p.zone_area_km2
        self.capacity_veh = dict(p.capacity_veh)
        self.shelter_edges = dict(p.shelter_edges)
        self.contraflow_edges = list(p.contraflow_edges)
        self.reversed_edges = list(p.reversed_edges)
        self.zone_edges = set(p.zone_edges)
        self.run_city = p.run_city
        self.net = p.run_city.net
        self.source_xy = p.source_xy
        self.vehicles = {v.id: v for v in p.evacuees}
        self.special_vehicles = set(self.vehicles)
        path = self._write_routes(run_dir / "evacuees.rou.xml")
        log.info("evacuation: %d vehicles from %.2f km², %d edges", len(p.evacuees),
                 self.zone_area_km2, p.home_edges)  # fmt: skip
        return PreparedInputs(city=p.run_city, routes=(path,))

    def _write_routes(self, path: Path) -> Path:
        with path.open("w", encoding="utf-8") as fh:
            fh.write("<routes>\n" + EVACUEE_VTYPE)
            for ev in sorted(self.vehicles.values(), key=lambda v: (v.depart_s, v.id)):
                if ev.depart_s >= self.spec.sim.end_s:
                    self.not_scheduled += 1
                    continue
                fh.write(
                    f'  <vehicle id="{ev.id}" type="evacuee" depart="{ev.depart_s:.2f}" '
                    f'departPos="{ev.pos_m:.2f}" departLane="best" departSpeed="0">\n'
                    f'    <route edges="{" ".join(ev.route)}"/>\n  </vehicle>\n'
                )
            fh.write("</routes>\n")
        return path

    # ------------------------------------------------------------------ during the run
    def setup(self, ctx: Context[EvacuationSpec]) -> None:
        spec = self.spec
        on_full = self._on_full(ctx) if spec.assignment == "capacity_aware" else None
        self.intake = ShelterIntake(ctx.bus.env, self.capacity_veh, on_full=on_full)
        self.pending = sorted(self.vehicles.values(), key=lambda v: (v.depart_s, v.id))
        self.waiting: list[Evacuee] = []  # due, not yet in the network
        self.en_route: dict[str, Evacuee] = {}
        self.port = None
        if spec.measures.evacuation_signals:
            if ctx.control is None or ctx.control.port is None:
                raise ScenarioError(
                    "measures.evacuation_signals needs guarded signals (control.guard_fixed)."
                )
            self.port = ctx.control.port
        ctx.bus.at(spec.warning_s, lambda: self._warn(ctx), name="evacuation_warning")
        ctx.bus.record(
            "evacuation_setup",
            vehicles=len(self.vehicles),
            zone_area_km2=round(self.zone_area_km2, 3),
            assignment=spec.assignment,
            departure=spec.departure.curve,
            contraflow=self.contraflow_edges,
        )

    def _warn(self, ctx: Context[EvacuationSpec]) -> None:
        spec, m = self.spec, self.spec.measures
        ctx.bus.process(self._propagate(ctx))
        if self.reversed_edges:  # the lane left inbound: emergency vehicles only
            self._restrict(ctx, self.reversed_edges, "contraflow")
        if m.close_inbound:
            self._restrict(ctx, inbound_edges(self.net, sorted(self.zone_edges)), "inbound")
        if self.port is not None:
            ctx.bus.process(self._signal_plans(ctx))
        if spec.hazard.spreading:
            ctx.bus.process(self._hazard(ctx))

    def _propagate(self, ctx: Context[EvacuationSpec]) -> Generator[simpy.Event, Any, None]:
        """The warning reaches each sub-zone (one at once, or wave after wave)."""
        d = self.spec.departure
        waves = d.waves if d.curve == "staged" else 1
        gap = d.wave_gap_s if d.curve == "staged" else 0.0
        for k in range(waves):
            if k:
                yield ctx.bus.env.timeout(gap)
            told = sum(1 for v in self.vehicles.values() if waves == 1 or v.wave == k)
            ctx.bus.record("warning_received", sub_zone=k, vehicles=told)

    def _restrict(self, ctx: Context[EvacuationSpec], edges: list[str], why: str) -> None:
        lanes = [f"{e}_{k}" for e in edges for k in range(self.net.edges[e].lanes)]
        ctx.session.set_lane_allowed(lanes, EMERGENCY_CLASSES)
        self.closed_edges |= set(edges)
        rerouted = 0
        for vid in ctx.session.vehicle_ids():
            route, index = ctx.session.vehicle_route(vid)
            if any(e in self.closed_edges for e in route[index + 1 :]):
                ctx.session.reroute(vid)
                rerouted += 1
        kind = RESTRICTED_KINDS[why]  # a constant kind per measure
        ctx.bus.record(kind, edges=len(edges), rerouted=rerouted)

    def _signal_plans(self, ctx: Context[EvacuationSpec]) -> Generator[simpy.Event, Any, None]:
        """Evacuation greens through the guarded port, re-weighted every update by the
        evacuees still to pass each signal; the plan comes back when they are through."""
        m = self.spec.measures
        assert self.port is not None
        signals = {s.id: s for s in ctx.city.manifest.signals}
        while True:
            remaining = [
                v.route[v.index :] for v in self.vehicles.values() if math.isnan(v.arrived_s)
            ]
            flows = stage_flows(self.net, list(signals.values()), remaining)
            # signals handed back to local control are left alone (the port refuses them)
            active = {
                t: f
                for t, f in flows.items()
                if f.sum() >= m.min_signal_flow_veh and not self.port.is_local(t)
            }
            for tls in sorted(set(self.signal_tls) - set(active)):  # evacuees are through
                if self.port.is_local(tls):
                    continue
                self.port.apply_timing(tls, green_s=list(self.port.plan(tls).green_s))
            for tls, f in sorted(active.items()):
                gp = self.port.plan(tls)
                greens = evacuation_greens(gp.green_s, gp.min_green_s, gp.max_green_s, f,
                                           cycle_stretch=m.cycle_stretch)  # fmt: skip
                self.port.apply_timing(tls, green_s=greens)
            self.signal_tls = active
            self.signals_max = max(self.signals_max, len(active))
            ctx.bus.record("evacuation_signals", signals=len(active))
            if not remaining:
                return
            yield ctx.bus.env.timeout(m.signal_update_s)

    def _hazard(self, ctx: Context[EvacuationSpec]) -> Generator[simpy.Event, Any, None]:
        """The flood spreads from the source: each street slows, then closes."""
        h = self.spec.hazard
        dist = sorted(
            (math.dist(edge_mid_xy(self.net.edges[e]), self.source_xy), e) for e in self.zone_edges
        )
        env = ctx.bus.env
        start = env.now
        for d_m, edge in dist:
            due = start + h.onset_s + d_m / h.front_speed_mps
            if due > env.now:
                yield env.timeout(due - env.now)
            ctx.session.set_edge_max_speed(edge, h.flooded_speed_mps)
            ctx.bus.record("street_flooded", edge=edge)
            ctx.bus.at(
                env.now + h.close_after_s,
                functools.partial(self._close, ctx, edge),
                name="street_closed",
                edge=edge,
            )

    def _close(self, ctx: Context[EvacuationSpec], edge: str) -> None:
        lanes = [f"{edge}_{k}" for k in range(self.net.edges[edge].lanes)]
        ctx.session.close_lanes(lanes)
        self.closed_edges.add(edge)
        for ev in self.en_route.values():
            if edge in ev.route[ev.index + 1 :]:
                ctx.session.reroute(ev.id)
                ev.route = ctx.session.vehicle_route(ev.id)[0]

    def _on_full(self, ctx: Context[EvacuationSpec]) -> Any:
        def spill(shelter: str) -> None:
            moved = 0
            # (those not on the road yet are redirected when they enter it)
            for ev in list(self.en_route.values()):
                if ev.shelter == shelter and self._redirect(ctx, ev):
                    moved += 1
            ctx.bus.record("shelter_full", shelter=shelter, redirected=moved)

        return spill

    def _redirect(self, ctx: Context[EvacuationSpec], ev: Evacuee) -> bool:
        """Send ``ev`` on to the nearest shelter (in its order) that still has room."""
        for sid in ev.order:
            if sid != ev.shelter and self.intake.room_veh(sid) > 0:
                if not ctx.session.change_target(ev.id, self.shelter_edges[sid]):
                    continue
                ev.route, ev.index = ctx.session.vehicle_route(ev.id)
                ev.shelter = sid
                return True
        return False

    def _spill_ahead(self, ctx: Context[EvacuationSpec], live: list[Evacuee]) -> None:
        """Cars on the last edges before a shelter with fewer places left than cars
        arriving: those farthest back go on to the next shelter with room (so that no
        car is turned away while another shelter has places)."""
        arriving: dict[str, list[Evacuee]] = {}
        for ev in live:
            if ev.index >= len(ev.route) - 2:
                arriving.setdefault(ev.shelter, []).append(ev)
        for sid, evs in sorted(arriving.items()):
            excess = len(evs) - self.intake.room_veh(sid)
            if excess > 0:
                evs.sort(key=lambda v: (v.index, v.id))
                moved = sum(self._redirect(ctx, ev) for ev in evs[:excess])
                if moved:
                    ctx.bus.record("shelter_spill_ahead", shelter=sid, redirected=moved)

    def on_step(self, ctx: Context[EvacuationSpec]) -> None:
        return None

    def on_interval(self, ctx: Context[EvacuationSpec]) -> None:
        session = ctx.session
        t = session.time_s
        present = set(session.vehicle_ids())
        while self.pending and self.pending[0].depart_s <= t:
            self.waiting.append(self.pending.pop(0))
        still: list[Evacuee] = []
        for ev in self.waiting:
            if ev.id in present:
                ev.departed_s = t
                self.en_route[ev.id] = ev
                if (
                    self.spec.assignment == "capacity_aware"
                    and self.intake.room_veh(ev.shelter) <= 0
                ):
                    self._redirect(ctx, ev)
            else:
                still.append(ev)
        self.waiting = still
        gone = [ev for vid, ev in self.en_route.items() if vid not in present]
        for ev in gone:
            if ev.index >= len(ev.route) - 2:  # seen on (or next to) its last edge
                ev.arrived_s = t
                if math.isnan(ev.left_zone_s):
                    ev.left_zone_s = t
                del self.en_route[ev.id]
                self.intake.arrive(ev.id, ev.shelter)
        live = [ev for ev in self.en_route.values() if ev.id in present]
        for ev, (road, index) in zip(live, session.vehicles_on_route([e.id for e in live]),
                                     strict=True):  # fmt: skip
            ev.index = index
            outside = road and not road.startswith(":") and road not in self.zone_edges
            if outside and math.isnan(ev.left_zone_s):
                ev.left_zone_s = t
        if self.spec.assignment == "capacity_aware":
            self._spill_ahead(ctx, live)
        self.rows.append(
            (
                t,
                sum(1 for v in self.vehicles.values() if not math.isnan(v.departed_s)),
                sum(1 for v in self.vehicles.values() if not math.isnan(v.left_zone_s)),
                sum(1 for v in self.vehicles.values() if not math.isnan(v.arrived_s)),
                len(self.intake.admitted),
            )
        )

    # ------------------------------------------------------------------ results
    def series(self) -> dict[str, pd.DataFrame]:
        n = max(len(self.vehicles), 1)
        curve = pd.DataFrame(
            self.rows, columns=["t_s", "departed_veh", "left_zone_veh", "arrived_veh",
                                "sheltered_veh"]
        )  # fmt: skip
        curve["evacuated_share"] = curve["left_zone_veh"] / n
        curve["sheltered_share"] = curve["sheltered_veh"] / n
        return {"evacuation": curve, "shelter_occupancy": self.intake.occupancy()}

    def finish(self, ctx: Context[EvacuationSpec]) -> dict[str, Any]:
        ctx.bus.advance_to(ctx.bus.now_s)  # intake processes started this tick
        spec = self.spec
        vs = list(self.vehicles.values())
        n = len(vs)
        w = spec.warning_s
        left = np.array([v.left_zone_s for v in vs])
        arrived = np.array([v.arrived_s for v in vs])
        all_left = n > 0 and not np.isnan(left).any()
        all_arrived = n > 0 and not np.isnan(arrived).any()
        done = [v for v in vs if not math.isnan(v.arrived_s)]
        level = self.intake.level_veh()
        curve = self.series()["evacuation"]
        every = curve[curve["t_s"] % 300.0 < 1e-6]  # the full curve is the series
        return {
            "evacuees_veh": n,
            "zone_area_km2": round(self.zone_area_km2, 4),
            "zone_clearance_s": float(np.max(left) - w) if all_left else math.nan,
            "network_clearance_s": float(np.max(arrived) - w) if all_arrived else math.nan,
            "zone_left_share": float(np.sum(~np.isnan(left)) / n) if n else math.nan,
            "shelter_share": len(self.intake.admitted) / n if n else math.nan,
            "reached_shelter_veh": len(done),
            "mean_evacuation_time_s": (
                float(np.mean([v.arrived_s - v.depart_s for v in done])) if done else math.nan
            ),
            "mean_time_to_leave_zone_s": (
                float(np.nanmean(left - np.array([v.depart_s for v in vs])))
                if n and not np.isnan(left).all()
                else math.nan
            ),
            "not_departed_veh": sum(1 for v in vs if math.isnan(v.departed_s)),
            "stuck_veh": len(self.en_route),
            "not_reaching_shelter_veh": n - len(done),
            "left_without_shelter_veh": len(self.intake.turned_away),
            "shelter_capacity_veh": dict(self.capacity_veh),
            "shelter_occupancy_veh": level,
            "contraflow_edges": self.contraflow_edges,
            "network": self.run_city.name,
            "evacuation_signals_max": self.signals_max,
            "evacuated_share_curve": [
                [float(t), round(float(s), 4)]
                for t, s in zip(every["t_s"], every["evacuated_share"], strict=True)
            ],
        }


register(ScenarioKind(name="evacuation", spec=EvacuationSpec, scenario=Evacuation))
