"""The center's EV priority decisions: which signals to ask for green, and when.

The same code runs in a simulated run (``scenarios.ev_priority``) and in live mode:

- :class:`TrackedEv` is the center's record of one emergency vehicle: its proposed
  route, the GPS tracker on it (:mod:`twin.center.tracking`) and the signals on it,
  each with the stage that serves the EV (:func:`signals_on_route`).
- :class:`PreemptionPlanner` turns a track, the signals ahead, what the controller port
  says of them and the queues in front of the EV into ordered actions: *request*
  priority (early enough to flush the queue: the lead time of
  :func:`signal_control.preemption.preemption_plan`), *release* a signal the EV has
  passed, note a *lost* conflict (another EV with an earlier ETA holds the signal
  for another stage, :func:`signal_control.preemption.resolve_conflicts`), or *renew*
  a hold the guard ended at its cap (``max_hold_s``) before the EV came (see
  :meth:`PreemptionPlanner.plan`; the center counts renewals and limits them).

Holding and releasing signals, and recovering coordination afterwards, is the priority
manager's job (:class:`signal_control.priority.PriorityManager`): the planner only
decides. It reads the port through its public status only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

import numpy as np

from city_models.manifest import SignalSpec
from city_models.net import NetInfo
from signal_control.guard import EPS, GuardPlan
from signal_control.port import SignalStatus
from signal_control.preemption import PreemptionPlan, preemption_plan, resolve_conflicts
from twin.center.tracking import MIN_SPEED_MPS, GpsTracker, RouteMatcher, ev_speed_mps

log = logging.getLogger(__name__)

BEHIND_M = 50.0
"""A signal up to this far behind the EV's estimated position is still "ahead" (GPS
noise, latency): it must not be dropped before the EV is seen past it."""
QUEUE_SIGNALS = 3
"""Queues are read only at the next few signals ahead (where they can matter)."""


@dataclass(frozen=True)
class SignalOnRoute:
    """A signal on an EV's route and the stage that serves the EV's movement.

    Attributes
    ----------
    tls
        Signal id.
    stage
        Green stage (index among the plan's greens) that gives the EV's link green.
    stop_s_m
        Distance along the route of the stop line.
    approach_lanes
        Lanes of the route edge that enters the junction (queues in front of the EV).
    index
        Index of that edge in the route.
    """

    tls: str
    stage: int
    stop_s_m: float
    approach_lanes: tuple[str, ...]
    index: int


def signals_on_route(
    net: NetInfo,
    signals: Mapping[str, SignalSpec],
    route: Sequence[str],
    matcher: RouteMatcher,
) -> list[SignalOnRoute]:
    """Every signal the route passes, with the stage serving the route's move through it
    (a stage with priority green ``G`` for that move, else one with ``g``); signals with
    no stage for the move are left out."""
    out = []
    for i in range(len(route) - 1):
        a, b = route[i], route[i + 1]
        node = net.edges[a].to_node
        tls = net.tls.get(node)
        if tls is None or node not in signals:
            continue
        links = [k.index for k in tls.links if k.from_edge == a and k.to_edge == b]
        greens = [p for p in signals[node].phases if p.kind == "green"]
        stage = next(
            (s for s, p in enumerate(greens) if any(p.state[j] == "G" for j in links)), None
        )
        if stage is None:
            stage = next(
                (s for s, p in enumerate(greens) if any(p.state[j] == "g" for j in links)), None
            )
        if stage is None:
            continue
        lanes = tuple(f"{a}_{j}" for j in range(net.edges[a].lanes))
        out.append(SignalOnRoute(node, stage, matcher.stop_line_s_m(i), lanes, i))
    return out


@dataclass
class TrackedEv:
    """The center's record of one emergency vehicle on the route it proposed.

    Attributes
    ----------
    id, kind, severity
        The vehicle, ``ambulance`` or ``fire_truck``, and the call's severity (1-5).
    route
        The proposed route (edge ids).
    matcher, tracker
        Map matching on that route and the GPS track.
    signals
        Signals on the route (:func:`signals_on_route`).
    stale
        The track went stale and every hold was released (until a fresh fix).
    done
        The EV reached its destination (or left the center's care).
    """

    id: str
    kind: str
    severity: int
    route: list[str] = field(default_factory=list)
    matcher: RouteMatcher | None = None
    tracker: GpsTracker | None = None
    signals: list[SignalOnRoute] = field(default_factory=list)
    stale: bool = False
    done: bool = False

    def follow(
        self,
        route: Sequence[str],
        net: NetInfo,
        signals: Mapping[str, SignalSpec],
        *,
        stale_after_s: float,
    ) -> None:
        """Track the EV on a (new) route: a fresh matcher, tracker and signal list."""
        self.route = list(route)
        self.matcher = RouteMatcher([net.edges[e] for e in self.route])
        self.tracker = GpsTracker(self.matcher, stale_after_s=stale_after_s)
        self.signals = signals_on_route(net, signals, self.route, self.matcher)

    def link_speed_mps(self, net: NetInfo, s_m: float) -> float:
        """Speed limit of the route edge at ``s_m`` along the route."""
        if self.matcher is None:
            raise ValueError(f"EV {self.id} has no route to follow")
        i = self.matcher.edge_index_at(s_m)
        edge = self.route[min(i, len(self.route) - 1)]
        return float(net.edges[edge].speed_mps)


class PortView(Protocol):
    """What the planner reads of the controller port."""

    def status(self, tls_id: str) -> SignalStatus: ...

    def plan(self, tls_id: str) -> GuardPlan: ...


QueueReader = Callable[[Sequence[str]], float]
"""Vehicles queued (halting) on the given lanes now."""


@dataclass(frozen=True)
class Action:
    """One decision of the planner, to be carried out in order.

    ``kind``: ``request`` (ask ``tls`` for ``stage``; ``eta_s`` is the EV's ETA),
    ``release`` (the EV has passed ``tls``), ``lost`` (another EV's hold wins ``tls``),
    ``renew`` (ask again for a hold of this EV that the guard's cap ended).
    """

    kind: Literal["request", "release", "lost", "renew"]
    tls: str
    stage: int
    eta_s: float = float("nan")


@dataclass(frozen=True)
class Competitor:
    """Another EV's active hold at a signal (it competes by ETA, then severity)."""

    tls: str
    stage: int
    severity: int


RenewalCrossGreen = Literal["minimum", "planned"]
"""What the cross street gets between a capped hold and its renewal: a green of at least
its minimum (``minimum``: the guard's, pedestrian clearance included; the renewal is
asked as soon as that green shows) or the green it was given (``planned``: the renewal
is asked in that green's last :data:`RENEW_LAST_S`, so it only turns the next change
to the EV's stage and cuts at most that much of the cross street's green)."""
RENEWAL_CROSS_GREENS: tuple[RenewalCrossGreen, ...] = get_args(RenewalCrossGreen)
RENEW_LAST_S = 1.0
"""With ``planned``: a renewal is asked within this long of the cross green's end (at
least one control tick: the scenario looks every simulated second)."""


def _renewable(
    st: SignalStatus,
    sig: SignalOnRoute,
    *,
    t_s: float = math.nan,
    cross_green: RenewalCrossGreen = "minimum",
) -> bool:
    """A held signal whose priority the guard dropped at its cap, now showing another
    stage's green (the cross street's turn after the cap has come); with ``planned``,
    only in that green's last :data:`RENEW_LAST_S` (``t_s`` needed)."""
    if st.priority_stage is not None or st.local or st.handing_back:
        return False  # still held (or another EV's priority), or no longer ours to command
    if st.interval != "green" or st.stage == sig.stage:
        return False
    if cross_green == "minimum":
        return True  # asked now; the guard ends that green no sooner than its minimum
    if not math.isfinite(t_s):
        raise ValueError("a renewal after the cross street's green needs the time t_s")
    return st.next_change_s - t_s <= RENEW_LAST_S + EPS


class PreemptionPlanner:
    """Center-based priority: ETA to every signal ahead, lead time, conflicts.

    Parameters
    ----------
    horizon_m
        Signals up to this far ahead are planned for.
    lead_margin_s
        Added to every lead time (see :func:`signal_control.preemption.preemption_plan`).
    renewal_cross_green
        What the cross street gets before a capped hold is renewed (:data:`RenewalCrossGreen`).
    """

    def __init__(
        self,
        *,
        horizon_m: float,
        lead_margin_s: float,
        renewal_cross_green: RenewalCrossGreen = "minimum",
    ) -> None:
        if renewal_cross_green not in RENEWAL_CROSS_GREENS:
            raise ValueError(
                f"renewal_cross_green {renewal_cross_green!r}; allowed: "
                + ", ".join(RENEWAL_CROSS_GREENS)
            )
        self.horizon_m = horizon_m
        self.lead_margin_s = lead_margin_s
        self.renewal_cross_green = renewal_cross_green

    def ahead(self, ev: TrackedEv, s_now: float) -> list[SignalOnRoute]:
        """Signals from just behind the EV to the horizon, in route order."""
        return [
            sig for sig in ev.signals if s_now - BEHIND_M <= sig.stop_s_m <= s_now + self.horizon_m
        ]

    def plan(
        self,
        ev: TrackedEv,
        *,
        t_s: float,
        net: NetInfo,
        port: PortView,
        queue_veh: QueueReader,
        holding: Collection[str],
        competitors: Callable[[Mapping[str, int]], Sequence[Competitor]],
    ) -> list[Action]:
        """The actions for one EV now, in the order to carry them out.

        A signal this EV holds whose guard has dropped the priority (the hold reached
        its cap, ``max_hold_s``, before the EV passed) is asked again (``renew``) once
        the EV is within its lead time again, but only while the signal shows another
        stage's green: the cross street is served first after a cap, and the guard
        keeps that green for at least its minimum (pedestrian clearance included) before
        the renewal can end it; with ``renewal_cross_green = "planned"`` the renewal
        waits for that green's last second (the cross street keeps the green it got).

        Parameters
        ----------
        holding
            Signals this EV holds now (as the center counts them: a capped hold is
            still held until the EV passes or lets go).
        competitors
            Given the signals ahead (``tls -> position``), the other EVs' holds there.
        """
        tracker = ev.tracker
        if tracker is None:
            return []
        s_now = tracker.position_s_m(t_s)
        if s_now is None:
            return []
        ahead = self.ahead(ev, s_now)
        if not ahead:
            return []
        v_est = ev_speed_mps(tracker.speed_mps, ev.link_speed_mps(net, s_now))
        if v_est is None:  # cannot happen: the link speed is always known
            return []
        plan = self._plan_kernel(
            ahead, s_now=s_now, v_est=v_est, t_s=t_s, port=port, queue_veh=queue_veh
        )
        index = {sig.tls: j for j, sig in enumerate(ahead)}
        others = competitors(index)
        granted = resolve_conflicts(
            signal_index=np.concatenate(
                [np.arange(len(ahead)), np.array([index[c.tls] for c in others], np.int64)]
            ),
            stage=np.concatenate(
                [np.array([s.stage for s in ahead]), np.array([c.stage for c in others], np.int64)]
            ),
            eta_s=np.concatenate([plan.eta_s, np.zeros(len(others))]),
            severity=np.concatenate(
                [np.full(len(ahead), ev.severity), np.array([c.severity for c in others], np.int64)]
            ),
            request=np.concatenate([plan.request, np.ones(len(others), dtype=np.bool_)]),
        )[: len(ahead)]
        active = set(holding)
        actions: list[Action] = []
        for j, sig in enumerate(ahead):
            if plan.passed[j]:
                if sig.tls in active:
                    actions.append(Action("release", sig.tls, sig.stage))
                    active.discard(sig.tls)
                continue
            if plan.request[j] and not granted[j] and sig.tls not in active:
                actions.append(Action("lost", sig.tls, sig.stage))
            if plan.request[j] and granted[j] and sig.tls not in active:
                actions.append(Action("request", sig.tls, sig.stage, float(plan.eta_s[j])))
                active.add(sig.tls)
            elif (
                plan.request[j]
                and granted[j]
                and _renewable(
                    port.status(sig.tls), sig, t_s=t_s, cross_green=self.renewal_cross_green
                )
            ):
                actions.append(Action("renew", sig.tls, sig.stage, float(plan.eta_s[j])))
        return actions

    def _plan_kernel(
        self,
        ahead: list[SignalOnRoute],
        *,
        s_now: float,
        v_est: float,
        t_s: float,
        port: PortView,
        queue_veh: QueueReader,
    ) -> PreemptionPlan:
        """The preemption kernel over every signal ahead, fed from the port's status."""
        n = len(ahead)
        queue = np.zeros(n)
        green = np.zeros(n, dtype=np.bool_)
        elapsed = np.zeros(n)
        min_green = np.zeros(n)
        intergreen = np.zeros(n, dtype=np.bool_)
        yellow = np.zeros(n)
        all_red = np.zeros(n)
        left = np.zeros(n)
        lanes = np.zeros(n, dtype=np.int64)
        for j, sig in enumerate(ahead[:QUEUE_SIGNALS]):  # queues matter only for the next few
            queue[j] = queue_veh(sig.approach_lanes)
        for j, sig in enumerate(ahead):
            st = port.status(sig.tls)
            plan = port.plan(sig.tls)
            in_green = st.interval == "green"
            green[j] = in_green and st.stage == sig.stage
            elapsed[j] = t_s - st.entered_s if in_green else 0.0
            min_green[j] = plan.min_green_s[st.stage] if in_green else 0.0
            yellow[j], all_red[j] = plan.yellow_s, plan.all_red_s
            left[j] = 0.0 if in_green else max(st.next_change_s - t_s, 0.0)
            lanes[j] = len(sig.approach_lanes)
            intergreen[j] = not in_green
        return preemption_plan(
            ev_s_m=np.full(n, s_now),
            stop_s_m=np.array([sig.stop_s_m for sig in ahead]),
            speed_mps=np.full(n, v_est),
            ev_stage_green=green,
            elapsed_green_s=elapsed,
            min_green_s=min_green,
            yellow_s=yellow,
            all_red_s=all_red,
            in_intergreen=intergreen,
            intergreen_left_s=left,
            queue_veh=queue,
            lanes=lanes,
            margin_s=self.lead_margin_s,
            min_speed_mps=MIN_SPEED_MPS,
        )
