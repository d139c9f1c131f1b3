"""Ambulance traces for the demo and the benchmark.

:func:`record_trace` runs the shipped ``ev_priority`` scenario in SUMO and keeps the
ambulance's true position every second, with the route the center proposed: what its
phone would have reported. :func:`synthetic_trace` drives a route at a given speed
(no SUMO; the benchmark's many EVs). :func:`gps_message` turns one point into the JSON
the phone sends.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from city_models.build import City
from city_models.geo import projection_of
from city_models.graph import edge_graph, fastest_route
from scenarios.base import Context
from scenarios.ev_priority import EvPriority, EvPrioritySpec
from scenarios.loader import load_scenario
from twin.app.compose import build_run
from twin.center.tracking import RouteMatcher
from twin.engine.run import simulate

log = logging.getLogger(__name__)

TRACE_VERSION = 1


@dataclass
class Trace:
    """An EV's drive: ``points`` are ``(t_s, x_m, y_m, speed_mps)`` from its start (s)."""

    vehicle: str
    route: list[str]
    points: list[tuple[float, float, float, float]]
    stopped_s: float = 0.0
    distance_m: float = 0.0
    sim_s_per_km: float = math.nan
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.points[-1][0] - self.points[0][0] if self.points else 0.0

    def s_per_km(self) -> float:
        """The drive's seconds per km, without the time stood still at the scene."""
        km = self.distance_m / 1000.0
        return (self.duration_s - self.stopped_s) / km if km > 0 else math.nan

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"version": TRACE_VERSION, **asdict(self)}), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Trace:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.pop("version", None) != TRACE_VERSION:
            raise ValueError(f"{path}: not a trace of version {TRACE_VERSION}")
        raw["points"] = [tuple(p) for p in raw["points"]]
        return cls(**raw)


class _Recorder(EvPriority):
    """The ``ev_priority`` scenario, keeping every EV's true position each second."""

    def __init__(self, spec: EvPrioritySpec) -> None:
        super().__init__(spec)
        self.trace: dict[str, list[tuple[float, float, float, float]]] = {}
        self.routes: dict[str, list[str]] = {}

    def on_step(self, ctx: Context[Any]) -> None:
        super().on_step(ctx)
        st = ctx.session.state
        t = ctx.session.time_s
        if abs(t - round(t)) > 1e-6:
            return
        for ev in self.evs.values():
            if ev.spec.id not in st.tracked_ids:
                continue
            k = st.tracked_ids.index(ev.spec.id)
            x, y, v = st.tracked_x_m[k], st.tracked_y_m[k], st.tracked_speed_mps[k]
            if math.isfinite(x) and math.isnan(ev.arrived_s):
                self.trace.setdefault(ev.spec.id, []).append((t, float(x), float(y), float(v)))
                driven = self.routes.setdefault(ev.spec.id, [])
                edge = st.tracked_edge[k]
                if edge and not edge.startswith(":") and (not driven or driven[-1] != edge):
                    driven.append(edge)  # the edges driven (a reroute included)


def record_trace(city: City, *, run_dir: Path, scenario: str = "ev_priority") -> Trace:
    """Run ``scenario`` (an ``ev_priority`` scenario) on ``city`` and return its first
    EV's trace (SUMO runs in this process)."""
    spec = load_scenario(scenario)
    if not isinstance(spec, EvPrioritySpec):
        raise ValueError(f"scenario {scenario!r} is not an ev_priority scenario")
    rec = _Recorder(spec)
    scenario_obj: Any = rec  # an EvPriority runs an EvPrioritySpec (Scenario is invariant)
    result = simulate(build_run(spec, city, scenario_obj, seed=spec.seed, run_dir=run_dir))
    vehicle = spec.evs[0].id
    points = rec.trace.get(vehicle, [])
    if not points:
        raise ValueError(f"the simulated {vehicle} never drove")
    t0 = points[0][0]
    route = _close_gaps(city, rec.routes[vehicle])
    per_ev = result.metrics.get("ev", {}).get(vehicle, {})
    return Trace(
        vehicle=vehicle,
        route=route,
        points=[(t - t0, x, y, v) for t, x, y, v in points],
        stopped_s=float(spec.evs[0].on_scene_s),
        distance_m=float(per_ev.get("distance_km", math.nan)) * 1000.0,
        sim_s_per_km=float(per_ev.get("s_per_km", math.nan)),
        source=f"{scenario} (seed {spec.seed}, mode {spec.mode}) on {city.name}",
    )


def _close_gaps(city: City, edges: list[str]) -> list[str]:
    """The driven edges as a connected route: an edge passed between two samples is put
    back (the fastest way between its neighbours)."""
    graph = edge_graph(city.net)
    out = edges[:1]
    for e in edges[1:]:
        if graph.has_edge(out[-1], e):
            out.append(e)
        else:
            out += fastest_route(graph, out[-1], e)[1:]
    return out


def synthetic_trace(
    city: City, route: list[str], *, vehicle: str, speed_mps: float, period_s: float = 1.0
) -> Trace:
    """A drive along ``route`` at a constant speed (fixes every ``period_s``)."""
    matcher = RouteMatcher([city.net.edges[e] for e in route])
    points, t, s = [], 0.0, 0.0
    while s <= matcher.length_m:
        x, y = matcher.point_at(s)
        points.append((t, x, y, speed_mps))
        t += period_s
        s += speed_mps * period_s
    return Trace(
        vehicle=vehicle,
        route=list(route),
        points=points,
        distance_m=matcher.length_m,
        source="synthetic",
    )


def gps_message(
    city: City,
    vehicle: str,
    *,
    t_wall: float,
    x_m: float,
    y_m: float,
    speed_mps: float,
    **extra: Any,
) -> dict[str, Any]:
    """The phone's JSON for one fix."""
    lon, lat = projection_of(city.manifest).xy_to_lonlat(x_m, y_m)
    return {
        "vehicle": vehicle,
        "t": round(t_wall, 3),
        "lat": round(lat, 7),
        "lon": round(lon, 7),
        "speed_mps": round(speed_mps, 2),
        "accuracy_m": 5.0,
        **extra,
    }
