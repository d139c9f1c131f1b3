"""Variable message signs: the center's sign logic, the same in simulation and live.

For each sign the center works out the message it wants (:meth:`SignLogic.desired`,
from the incidents it knows, the measured travel times and approaching emergency
vehicles), and :func:`may_change` decides whether the sign may switch now:

- a message of higher priority replaces a lower one at once (an incident warning
  replaces a travel-time message; an emergency-vehicle message replaces anything);
- the emergency-vehicle message ends as soon as the vehicle has passed;
- otherwise a message stays up at least ``min_display_s`` (no flicker: drivers must be
  able to read it and trust it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import networkx as nx

from city_models.graph import fastest_route, route_time
from city_models.manifest import PoiSpec, VmsSpec
from city_models.net import NetInfo
from twin.center.preemption import TrackedEv
from twin.center.tracking import ev_speed_mps
from twin.errors import CityError

log = logging.getLogger(__name__)

UPSTREAM_QUEUE_M = 600.0
"""The queue "upstream of the incident": its street and this far back along it."""
MAX_CIRCUITY = 1.4
"""Driving / straight-line distance for an incident to count as "ahead" of a sign."""

MessageKind = Literal[
    "blank", "travel_time", "incident_warning", "incident_detour", "operator", "ev_clear"
]
MESSAGE_KINDS: tuple[MessageKind, ...] = (
    "blank",
    "travel_time",
    "incident_warning",
    "incident_detour",
    "operator",
    "ev_clear",
)
PRIORITY: dict[MessageKind, int] = {
    "blank": 0,
    "travel_time": 1,
    "incident_warning": 2,
    "incident_detour": 2,
    "operator": 2,  # an operator's own text (police, the center): like an incident
    "ev_clear": 3,
}
MAX_TEXT_CHARS = 120


@dataclass(frozen=True)
class Message:
    """What one sign shows. ``avoid_edges``: the streets a detour message steers off."""

    kind: MessageKind
    text: str = ""
    incident: str | None = None
    avoid_edges: tuple[str, ...] = ()


BLANK = Message("blank")


@dataclass
class SignState:
    """One sign's current message and since when it shows."""

    sign_id: str
    edge: str
    message: Message = BLANK
    since_s: float = -1e9
    episode: int = 0  # counts message changes; drivers react once per episode


def may_change(state: SignState, desired: Message, t_s: float, *, min_display_s: float) -> bool:
    """May the sign switch from its message to ``desired`` at ``t_s``? (module doc)."""
    current = state.message
    if desired == current:
        return False
    if desired.kind == "ev_clear" or current.kind == "ev_clear":
        return True
    if PRIORITY[desired.kind] > PRIORITY[current.kind]:
        return True
    return t_s - state.since_s >= min_display_s


def show(state: SignState, message: Message, t_s: float) -> None:
    """Switch the sign (the caller checked :func:`may_change`)."""
    if message.kind != state.message.kind or message.incident != state.message.incident:
        state.episode += 1  # a new message: drivers passing now read it afresh
    state.message = message
    state.since_s = t_s


def detour_text(street: str, detour_street: str, lanes_closed: int, full: bool) -> str:
    what = "closed" if full else f"{lanes_closed} lane(s) closed"
    return f"Crash ahead on {street}: {what}. Detour via {detour_street}."


def warning_text(street: str, lanes_closed: int, full: bool, delay_min: float) -> str:
    what = "closed" if full else f"{lanes_closed} lane(s) closed"
    return f"Crash ahead on {street}: {what}. Expect {delay_min:.0f} min delay."


def travel_time_text(landmark: str, minutes: float) -> str:
    return f"To {landmark}: {minutes:.0f} min"


def ev_text(kind: str) -> str:
    what = "Fire truck" if kind == "fire_truck" else "Ambulance"
    return f"{what} approaching: keep the left lane clear."


# --------------------------------------------------------------------------- the logic


@dataclass(frozen=True)
class KnownIncident:
    """An incident as the center knows it (from detection, the police, an operator)."""

    id: str
    edge: str
    lanes_closed: int
    full: bool  # every lane closed


@dataclass(frozen=True)
class IncidentSite:
    """Where an incident is, as the sign logic sees the map.

    Attributes
    ----------
    street
        The street's name (or the edge id).
    queue_edges
        The incident's edge and up to ``UPSTREAM_QUEUE_M`` back along the same street.
    beyond
        The street(s) right after the incident: where a detour rejoins.
    """

    edge: str
    street: str
    queue_edges: tuple[str, ...]
    beyond: tuple[str, ...]


def incident_site(net: NetInfo, graph: nx.DiGraph, edge_id: str) -> IncidentSite:
    """The incident's street, the queue stretch behind it and the streets beyond it."""
    edge = net.edges[edge_id]
    street = edge.name or edge.id
    queue_edges, frontier, back_m = [edge.id], [edge.id], 0.0
    while frontier and back_m < UPSTREAM_QUEUE_M:  # back along the same street
        prev = [p for p in graph.predecessors(frontier[0])
                if net.edges[p].name == edge.name and p not in queue_edges]  # fmt: skip
        if not prev:
            break
        queue_edges.append(prev[0])
        back_m += net.edges[prev[0]].length_m
        frontier = prev[:1]
    beyond: list[str] = []
    for nxt in graph.successors(edge.id):  # past the junction, not into a pocket
        beyond += list(graph.successors(nxt)) if nxt.endswith("_pocket") else [nxt]
    straight = [b for b in beyond if net.edges[b].name == edge.name]
    return IncidentSite(edge.id, street, tuple(queue_edges), tuple(straight or beyond))


@dataclass(frozen=True)
class SignChange:
    """A message a sign switched to (for the operator's log and the drivers)."""

    t_s: float
    sign: str
    message: Message
    changed_kind: bool


@dataclass
class SignLogic:
    """The center's sign logic over a set of signs.

    Parameters
    ----------
    net, graph
        The map and its edge graph (:func:`city_models.graph.edge_graph`).
    signs
        The signs the center drives.
    landmark
        Where travel-time messages point to (``None``: blank when nothing is wrong).
    range_m
        A sign warns of incidents within this driving distance.
    min_display_s
        A message stays up at least this long (unless a higher priority replaces it).
    detour_min_delay_s
        Advise a detour once the measured delay through the incident reaches this.
    ev_warn_s
        The EV-only message shows while an EV will pass the sign within this.
    """

    net: NetInfo
    graph: nx.DiGraph
    signs: Mapping[str, VmsSpec]
    landmark: PoiSpec | None
    range_m: float
    min_display_s: float
    detour_min_delay_s: float
    ev_warn_s: float
    state: dict[str, SignState] = field(init=False)
    resume: dict[str, Message] = field(init=False)  # shown again after an EV message
    _sites: dict[str, IncidentSite] = field(init=False)
    _reach_m: dict[tuple[str, str], float | None] = field(init=False)
    _length_m: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.state = {sid: SignState(sign_id=sid, edge=v.edge) for sid, v in self.signs.items()}
        self.resume = {}
        self._sites = {}
        self._reach_m = {}
        self._length_m = nx.get_node_attributes(self.graph, "length_m")

    # ------------------------------------------------------------------ geometry
    def site(self, edge_id: str) -> IncidentSite:
        if edge_id not in self._sites:
            self._sites[edge_id] = incident_site(self.net, self.graph, edge_id)
        return self._sites[edge_id]

    def reach_m(self, sid: str, edge_id: str) -> float | None:
        """Driving distance from the sign to the end of the incident's street, when the
        incident is *ahead* of the sign: within ``range_m`` and no loop needed to get
        there (a sign just past the incident reaches it only by going round the block)."""
        key = (sid, edge_id)
        if key not in self._reach_m:
            sign = self.signs[sid]
            dist = nx.single_source_dijkstra_path_length(
                self.graph, sign.edge, cutoff=self.range_m,
                weight=lambda _u, v, _d: self._length_m[v],
            )  # fmt: skip
            reach: float | None = None
            if edge_id in dist:
                sign_to_end_m = self.net.edges[sign.edge].length_m - sign.pos_m
                drive_m = dist[edge_id] + sign_to_end_m
                crow_m = max(math.dist((sign.x, sign.y), self.net.edges[edge_id].shape_xy[-1]),
                             100.0)  # fmt: skip
                if drive_m <= min(self.range_m, MAX_CIRCUITY * crow_m):
                    reach = drive_m
            self._reach_m[key] = reach
        return self._reach_m[key]

    # ------------------------------------------------------------------ messages
    def desired(
        self, sid: str, known: Sequence[KnownIncident], times: Mapping[str, float]
    ) -> Message:
        """The message the sign should show now (before the display rules)."""
        start = self.signs[sid].edge
        ahead = [(inc, self.reach_m(sid, inc.edge)) for inc in known]
        reachable = [(inc, r) for inc, r in ahead if r is not None]
        if reachable:
            inc = min(reachable, key=lambda ir: ir[1])[0]
            site = self.site(inc.edge)
            # measured delay through the incident: its street and the queue behind it
            free = sum(self.graph.nodes[e]["free_flow_s"] for e in site.queue_edges)
            delay_s = max(sum(times.get(e, 0.0) for e in site.queue_edges) - free, 0.0)
            if inc.full or delay_s >= self.detour_min_delay_s:
                detour = self.detour(start, site, times)
                if detour is not None:
                    street = self._detour_street(detour, start)
                    return Message("incident_detour",
                                   detour_text(site.street, street, inc.lanes_closed, inc.full),
                                   incident=inc.id, avoid_edges=(inc.edge,))  # fmt: skip
            return Message("incident_warning",
                           warning_text(site.street, inc.lanes_closed, inc.full, delay_s / 60.0),
                           incident=inc.id, avoid_edges=(inc.edge,))  # fmt: skip
        if self.landmark is None:
            return BLANK
        try:
            route = fastest_route(self.graph, start, self.landmark.edge, edge_time_s=times)
        except CityError:  # the landmark cannot be reached from this sign
            return BLANK
        minutes = route_time(self.graph, route, edge_time_s=times) / 60.0
        return Message("travel_time", travel_time_text(self.landmark.name, minutes))

    def detour(
        self, start: str, site: IncidentSite, times: Mapping[str, float]
    ) -> list[str] | None:
        """The fastest route (current travel times) from the sign to the street beyond
        the incident that does not use the incident's street; None if there is none."""
        blocked = nx.restricted_view(self.graph, [site.edge], [])
        best: tuple[float, list[str]] | None = None
        for target in site.beyond:
            try:
                route = fastest_route(blocked, start, target, edge_time_s=times)
            except CityError:  # no way round to this street
                continue
            cost = route_time(self.graph, route, edge_time_s=times)
            if best is None or cost < best[0]:
                best = (cost, route)
        return None if best is None else best[1]

    def _detour_street(self, route: list[str], start: str) -> str:
        first = self.net.edges[start].name
        for e in route:
            name = self.net.edges[e].name
            if name and name != first:
                return str(name)
        return str(first or route[-1])

    def update(
        self, t_s: float, known: Sequence[KnownIncident], times: Mapping[str, float]
    ) -> list[SignChange]:
        """Re-decide every sign; returns the messages shown (in sign order)."""
        out = []
        for sid, sign in self.state.items():
            desired = self.desired(sid, known, times)
            if sign.message.kind == "ev_clear":
                self.resume[sid] = desired  # shown once the emergency vehicle has passed
            elif may_change(sign, desired, t_s, min_display_s=self.min_display_s):
                out.append(self._show(sid, desired, t_s))
        return out

    def operator(self, sid: str, text: str, t_s: float) -> SignChange | None:
        """An operator's own message on one sign, shown now (an EV message keeps
        priority: the operator's text then shows once the EV has passed)."""
        if sid not in self.state:
            raise ValueError(f"no sign {sid!r}; signs: {', '.join(sorted(self.state))}")
        text = " ".join(text.split())
        if not 0 < len(text) <= MAX_TEXT_CHARS:
            raise ValueError(f"a sign's text has 1..{MAX_TEXT_CHARS} characters; got {len(text)}")
        message = Message("operator", text)
        if self.state[sid].message.kind == "ev_clear":
            self.resume[sid] = message  # shown once the EV has passed
            return None
        return self._show(sid, message, t_s)

    def _show(self, sid: str, message: Message, t_s: float) -> SignChange:
        sign = self.state[sid]
        changed_kind = message.kind != sign.message.kind
        show(sign, message, t_s)
        return SignChange(t_s, sid, message, changed_kind)

    # ------------------------------------------------------------------ EV-only message
    def ev_approaching(self, sid: str, tracks: Iterable[TrackedEv], t_s: float) -> str | None:
        """The kind of the first EV (center's GPS track) that will pass the sign within
        ``ev_warn_s``, or None."""
        sign = self.signs[sid]
        for ev in tracks:
            tracker, matcher = ev.tracker, ev.matcher
            if tracker is None or matcher is None or ev.done:
                continue
            if sign.edge not in ev.route or tracker.is_stale(t_s):
                continue
            s_ev = tracker.position_s_m(t_s)
            if s_ev is None:
                continue
            edge_len = self.net.edges[sign.edge].length_m
            s_sign = matcher.stop_line_s_m(ev.route.index(sign.edge)) - (edge_len - sign.pos_m)
            gap_m = s_sign - s_ev
            speed = ev_speed_mps(tracker.speed_mps, ev.link_speed_mps(self.net, s_ev))
            if speed is not None and 0.0 <= gap_m <= speed * self.ev_warn_s:
                return ev.kind
        return None

    def update_ev(
        self, t_s: float, signs: Iterable[str], tracks: Sequence[TrackedEv]
    ) -> list[SignChange]:
        """The EV-only message: on while an emergency vehicle under priority will pass
        the sign within ``ev_warn_s`` (from the center's GPS track), off once it passed;
        the sign then shows what it would have shown."""
        out = []
        for sid in sorted(signs):
            sign = self.state[sid]
            approaching = self.ev_approaching(sid, tracks, t_s)
            if approaching is not None and sign.message.kind != "ev_clear":
                self.resume[sid] = sign.message
                out.append(self._show(sid, Message("ev_clear", ev_text(approaching)), t_s))
            elif approaching is None and sign.message.kind == "ev_clear":
                out.append(self._show(sid, self.resume.pop(sid, BLANK), t_s))
        return out
