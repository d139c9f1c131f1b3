"""Incidents: lane closures, full closures and capacity drops on a street, in time.

An incident is a SimPy process on the run's event bus: it starts (lanes close in SUMO,
or the speed limit drops), the center *detects* it ``detection_delay_s`` later (until
then no sign and no operator knows), it ends (lanes reopen, speed restored) and the
center learns it is cleared ``clear_delay_s`` later. Vehicles in SUMO feel the incident
from its start; the center's knowledge lags, as in a real control center.

SUMO lane indices count from the right (0 = the kerb lane); crashes usually block the
inner lanes, so ``closed_lanes = 2`` closes the two leftmost lanes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

import simpy
from pydantic import Field, model_validator

from scenarios.base import Context
from scenarios.spec import _Spec
from twin.errors import ScenarioError

log = logging.getLogger(__name__)


class IncidentSpec(_Spec):
    """One incident on one street (a SUMO edge)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=40)
    kind: Literal["crash", "roadworks", "hazard"] = "crash"
    # where: a SUMO edge id, or a street by its name (``street = "Jungbu-daero"``, with
    # ``heading`` to choose the carriageway); the street resolves to its longest edge
    # with the most lanes when the run is prepared on the city
    edge: str = ""
    street: str | None = Field(default=None, min_length=1, max_length=120)
    heading: Literal["north", "south", "east", "west"] | None = None
    # how many lanes close, counted from the left (inner) lane; "all": full closure
    closed_lanes: int | Literal["all"] = 2
    # speed past the scene on the lanes left open (rubbernecking, police letting traffic
    # by); a lane-level limit, so SUMO's router sees it only through measured speeds
    speed_kph: float | None = Field(default=None, gt=0.0, le=130.0)
    start_s: float = Field(ge=0.0)
    end_s: float
    detection_delay_s: float = Field(default=120.0, ge=0.0, le=3600.0)
    clear_delay_s: float = Field(default=0.0, ge=0.0, le=3600.0)

    @model_validator(mode="after")
    def _check(self) -> IncidentSpec:
        if bool(self.edge) == (self.street is not None):
            raise ValueError("give the incident's place as edge (a SUMO edge id) or street "
                             "(a street name), one of the two")  # fmt: skip
        if self.heading is not None and self.street is None:
            raise ValueError("heading chooses the carriageway of a street: give street too")
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s:g}) must be after start_s ({self.start_s:g})")
        if self.closed_lanes != "all" and self.closed_lanes < 0:
            raise ValueError(f"closed_lanes must be >= 0 or 'all' (got {self.closed_lanes})")
        if self.closed_lanes == 0 and self.speed_kph is None:
            raise ValueError("an incident closes lanes (closed_lanes) or drops the speed_kph")
        return self

    @property
    def full(self) -> bool:
        return self.closed_lanes == "all"


def check_incidents(incidents: list[IncidentSpec], *, begin_s: float, end_s: float) -> None:
    """Ids unique, every incident starts inside the run (pydantic model validator use)."""
    ids = [inc.id for inc in incidents]
    if len(set(ids)) != len(ids):
        raise ValueError(f"incidents ids must be unique (got {ids})")
    for i, a in enumerate(incidents):  # one street, one incident at a time
        for j, b in enumerate(incidents[:i]):
            if (
                (a.edge or a.street) == (b.edge or b.street)
                and a.start_s < b.end_s
                and b.start_s < a.end_s
            ):
                raise ValueError(
                    f"incidents[{j}] and incidents[{i}] overlap in time on street "
                    f"{a.edge or a.street}; "
                    "describe them as one incident"
                )
    for k, inc in enumerate(incidents):
        if not begin_s <= inc.start_s < end_s:
            raise ValueError(
                f"incidents[{k}].start_s = {inc.start_s:g} is outside the run "
                f"[{begin_s:g}, {end_s:g})"
            )
        if inc.end_s > end_s:
            raise ValueError(
                f"incidents[{k}].end_s = {inc.end_s:g} is after the run ends ({end_s:g})"
            )


_HEADINGS = {"east": 0.0, "north": 90.0, "west": 180.0, "south": 270.0}


def resolve_street(inc: IncidentSpec, net: Any, *, k: int, scenario: str) -> IncidentSpec:
    """The incident with its ``street`` (a name) resolved to one SUMO edge: of the edges
    with that name (any case), those going ``heading`` (within 45 degrees) when given,
    the one with the most lanes, then the longest."""
    if inc.street is None:
        return inc
    want = inc.street.casefold()
    named = [e for e in net.edges.values() if (e.name or "").casefold() == want]
    if not named:
        names = sorted({e.name for e in net.edges.values() if e.name})
        near = [n for n in names if want in n.casefold()][:5] or names[:5]
        raise ScenarioError(
            f"Scenario {scenario!r}: field 'incidents[{k}].street' = {inc.street!r} is not a "
            f"street name of the city; names such as {', '.join(map(repr, near))} "
            "(or give edge, a SUMO edge id)."
        )
    if inc.heading is not None:
        target = _HEADINGS[inc.heading]

        def off(e: Any) -> float:
            (x0, y0), (x1, y1) = e.shape_xy[0], e.shape_xy[-1]
            d = abs(math.degrees(math.atan2(y1 - y0, x1 - x0)) % 360.0 - target) % 360.0
            return min(d, 360.0 - d)

        named = [e for e in named if off(e) <= 45.0]
        if not named:
            raise ScenarioError(
                f"Scenario {scenario!r}: street {inc.street!r} has no carriageway heading "
                f"{inc.heading} (field 'incidents[{k}].heading'); allowed: north, south, "
                "east, west, or leave it out."
            )
    best = max(named, key=lambda e: (e.lanes, e.length_m, e.id))
    return inc.model_copy(update={"edge": best.id})


def check_against_city(incidents: list[IncidentSpec], net: Any, *, scenario: str) -> None:
    """Every incident is on a street of the city and closes lanes it has (a ``street``
    name resolved first: :func:`resolve_street`)."""
    for k, inc in enumerate(incidents):
        edge = net.edges.get(inc.edge)
        if edge is None:
            streets = sorted(e for e in net.edges if not e.startswith(":"))[:4]
            raise ScenarioError(
                f"Scenario {scenario!r}: field 'incidents[{k}].edge' = {inc.edge!r} is not a "
                f"street of the city; streets are SUMO edge ids such as {', '.join(streets)}."
            )
        if inc.closed_lanes != "all" and inc.closed_lanes > edge.lanes:
            raise ScenarioError(
                f"Scenario {scenario!r}: field 'incidents[{k}].closed_lanes' = "
                f"{inc.closed_lanes}, but street {inc.edge} has {edge.lanes} lane(s); "
                f"allowed: 0..{edge.lanes} or 'all'."
            )


@dataclass
class IncidentState:
    """What happens to one incident during a run, and what the center knows of it."""

    spec: IncidentSpec
    lanes: list[str]
    open_lanes: list[str]
    speed_mps: float  # the street's own limit, restored at the end
    active: bool = False  # in SUMO
    known: bool = False  # to the center
    detected_s: float = math.nan
    cleared_s: float = math.nan
    known_cleared_s: float = math.nan

    @property
    def closes_street(self) -> bool:
        """Every lane closed, by ``"all"`` or by counting them all."""
        return bool(self.lanes) and not self.open_lanes


def closed_lane_ids(spec: IncidentSpec, n_lanes: int) -> list[str]:
    """SUMO lane ids the incident closes: the ``closed_lanes`` leftmost, or all."""
    count = n_lanes if spec.closed_lanes == "all" else int(spec.closed_lanes)
    return [f"{spec.edge}_{k}" for k in range(n_lanes - count, n_lanes)]


class Incidents:
    """The run's incidents as SimPy processes acting on the SUMO session."""

    def __init__(self, specs: list[IncidentSpec], net: Any) -> None:
        self.states = []
        for s in specs:
            edge = net.edges[s.edge]
            closed = closed_lane_ids(s, edge.lanes)
            every = [f"{s.edge}_{k}" for k in range(edge.lanes)]
            open_lanes = [lane for lane in every if lane not in closed]
            self.states.append(
                IncidentState(s, closed, open_lanes, speed_mps=float(edge.speed_mps))
            )

    def start(self, ctx: Context[Any]) -> None:
        for state in self.states:
            ctx.bus.process(self._life(ctx, state))

    def _life(self, ctx: Context[Any], st: IncidentState) -> Generator[simpy.Event, Any, None]:
        env, spec = ctx.bus.env, st.spec
        yield env.timeout(max(spec.start_s - env.now, 0.0))
        ctx.session.close_lanes(st.lanes)
        if spec.speed_kph is not None:
            ctx.session.set_lane_max_speed(st.open_lanes, spec.speed_kph / 3.6)
        st.active = True
        ctx.bus.record("incident_start", id=spec.id, edge=spec.edge, lanes_closed=len(st.lanes),
                       full=st.closes_street)  # fmt: skip
        # the center learns of it after the detection delay (unless it is over by then)
        detect_at = spec.start_s + spec.detection_delay_s
        if detect_at < spec.end_s:
            yield env.timeout(max(detect_at - env.now, 0.0))  # a fork may start after it
            st.known, st.detected_s = True, env.now
            ctx.bus.record("incident_detected", id=spec.id, edge=spec.edge)
        yield env.timeout(max(spec.end_s - env.now, 0.0))
        ctx.session.reopen_lanes(st.lanes)
        if spec.speed_kph is not None:
            ctx.session.set_lane_max_speed(st.open_lanes, st.speed_mps)
        st.active, st.cleared_s = False, env.now
        ctx.bus.record("incident_end", id=spec.id, edge=spec.edge)
        if st.known:
            yield env.timeout(spec.clear_delay_s)
            st.known, st.known_cleared_s = False, env.now
            ctx.bus.record("incident_cleared_known", id=spec.id, edge=spec.edge)

    def known(self) -> list[IncidentState]:
        """Incidents the center knows about now."""
        return [s for s in self.states if s.known]

    def active_closures(self) -> list[IncidentState]:
        """Full closures in force in SUMO now."""
        return [s for s in self.states if s.active and s.closes_street]
