"""The center's EV priority loop: one class for the simulated world and for live mode.

:class:`EvCenter` holds the center's record of every emergency vehicle
(:class:`~twin.center.preemption.TrackedEv`) and, for each EV it is asked to look at,
does what Suwon's center does between two GPS fixes:

- a stale track (no accepted fix for the tracker's ``stale_after_s``) releases every
  hold of that EV at once, and nothing is planned until a fresh fix;
- otherwise the planner (:class:`~twin.center.preemption.PreemptionPlanner`) decides, from
  the track, the port's status and the queues ahead, which signals to ask, which the EV
  has passed and which another EV wins; the priority manager
  (:class:`~signal_control.priority.PriorityManager`) carries the requests and releases
  out through the guarded port;
- a hold the guard ended at its cap (``max_hold_s``) while the EV was still coming is
  asked for again (``priority_renewed``) once the cross street has had a green, at most
  ``max_renewals`` times per EV and signal; past that the signal runs its plan until
  the EV passes (``priority_renewals_spent``, recorded once).

The scenario (:mod:`scenarios.ev_priority`) calls :meth:`EvCenter.step` after every SUMO
step with the emulated phone's reports already fed to the tracker; the live service
(:mod:`twin.app.live.service`) calls it for every accepted GPS report and on its clock's
tick. What happened is told to ``record(kind, **data)``: the run's event log in a
simulation, the audit log in the field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from city_models.net import NetInfo
from signal_control.priority import PriorityManager
from twin.center.preemption import Competitor, PortView, PreemptionPlanner, QueueReader, TrackedEv

log = logging.getLogger(__name__)


Recorder = Callable[..., object]
"""Where the center tells what it did: ``record(kind, t_s=..., **data)``."""


class EvCenter:
    """Center-based EV priority over one port: tracks, planner, priority manager.

    Parameters
    ----------
    planner
        The preemption planner (ETA, lead time, conflicts).
    manager
        The priority manager (holds, releases, recovery) over the guarded port.
    port
        The port's read side (status, plan), for the planner.
    net
        The network (link speeds along routes).
    queue_veh
        Vehicles queued on given lanes now (SUMO's halting counts in a simulation; the
        live service's estimate in the field).
    record
        Told every decision: ``ev_gps_stale``, ``ev_conflict_lost``, ``priority_request``,
        ``priority_renewed``, ``priority_renewals_spent``, ``priority_release``, each with
        ``t_s`` and ``ev``.
    max_renewals
        How often one EV may renew one signal's hold after the guard's cap ended it
        (0: never; each renewal holds for up to ``max_hold_s`` again).
    """

    def __init__(
        self,
        *,
        planner: PreemptionPlanner,
        manager: PriorityManager,
        port: PortView,
        net: NetInfo,
        queue_veh: QueueReader,
        record: Recorder,
        max_renewals: int = 2,
    ) -> None:
        if max_renewals < 0:
            raise ValueError(f"max_renewals must be >= 0 (got {max_renewals})")
        self.planner = planner
        self.manager = manager
        self.port = port
        self.net = net
        self.queue_veh = queue_veh
        self.record = record
        self.tracks: dict[str, TrackedEv] = {}
        """Every EV the center knows, in the order it learned of them."""
        self.preempted: dict[str, set[str]] = {}
        """Per EV, every signal it was granted priority at."""
        self.conflicts = 0
        """Requests lost to another EV's hold (earlier ETA or higher severity)."""
        self.refused: dict[tuple[str, str], float] = {}
        """(EV, signal) -> when the port refused or the signal ran locally; not asked
        again until the signal takes commands."""
        self.max_renewals = max_renewals
        self.renewals: dict[tuple[str, str], int] = {}
        """(EV, signal) -> holds renewed after the guard's cap ended them."""
        self._renewals_spent: set[tuple[str, str]] = set()

    def add(self, track: TrackedEv) -> None:
        """Know one more EV (its route may come later, with :meth:`TrackedEv.follow`)."""
        if track.id in self.tracks:
            raise ValueError(f"the center already tracks an EV with id {track.id!r}")
        self.tracks[track.id] = track
        self.preempted.setdefault(track.id, set())

    # ------------------------------------------------------------------ the loop
    def step(self, track: TrackedEv, t_s: float) -> None:
        """One look at one EV at ``t_s`` (its tracker already holds the fixes received)."""
        tracker = track.tracker
        if tracker is None or tracker.last_received_s is None:
            return  # no fix yet: nothing to plan from (and nothing held)
        if tracker.is_stale(t_s):
            if not track.stale:
                self.record("ev_gps_stale", t_s=t_s, ev=track.id)
                self.release_all(track.id, t_s, reason="gps_stale")
            track.stale = True
            return
        track.stale = False
        actions = self.planner.plan(
            track, t_s=t_s, net=self.net, port=self.port, queue_veh=self.queue_veh,
            holding=self.manager.holding(track.id), competitors=self._competitors(track),
        )  # fmt: skip
        for action in actions:
            if action.kind == "release":
                self.release(track.id, action.tls, t_s, reason="passed")
            elif action.kind == "lost":
                self.conflicts += 1
                self.record("ev_conflict_lost", t_s=t_s, ev=track.id, tls=action.tls)
            elif action.kind == "renew":
                self.renew(track.id, action.tls, action.stage, t_s, eta_s=action.eta_s)
            else:
                self.request(track.id, action.tls, action.stage, t_s, eta_s=action.eta_s)

    def _competitors(self, track: TrackedEv) -> Callable[[Mapping[str, int]], list[Competitor]]:
        def competitors(index: Mapping[str, int]) -> list[Competitor]:
            return [
                Competitor(sig.tls, sig.stage, other.severity)
                for other in self.tracks.values()
                if other is not track and self.manager.holding(other.id)
                for sig in other.signals
                if self.manager.holds(other.id, sig.tls) and sig.tls in index
            ]

        return competitors

    # ------------------------------------------------------------------ requests
    def request(self, ev_id: str, tls: str, stage: int, t_s: float, *, eta_s: float) -> bool:
        """Ask ``tls`` for ``stage`` for ``ev_id`` (through the manager and the guard).

        A signal that runs locally (handed back, or its controller is down) is not asked,
        and a request the port refuses is not sent again: either is recorded once
        (``priority_refused``) and tried again only once the signal takes commands again
        (never retried blindly). Returns whether the request went out.
        """
        key = (ev_id, tls)
        if key in self.refused:
            if not self.manager.commandable(tls):
                return False  # still refused: asked again only once the signal takes commands
            del self.refused[key]
        if not self._ask(ev_id, tls, t_s, "priority", lambda: self.manager.request(
                ev_id, tls, stage=stage, t_s=t_s)):  # fmt: skip
            return False  # handed back to local control: the center leaves it alone
        self.preempted.setdefault(ev_id, set()).add(tls)
        self.record("priority_request", t_s=t_s, ev=ev_id, tls=tls, stage=stage, eta_s=eta_s)
        return True

    def renew(self, ev_id: str, tls: str, stage: int, t_s: float, *, eta_s: float) -> bool:
        """Ask ``tls`` again for ``ev_id``, whose hold the guard's cap ended before the EV
        came (the planner asks only while the cross street shows green). At most
        :attr:`max_renewals` times per EV and signal; returns whether it was asked."""
        key = (ev_id, tls)
        done = self.renewals.get(key, 0)
        if key in self.refused:
            return False  # refused before: left to the EV's passing (never retried blindly)
        if done >= self.max_renewals:
            if key not in self._renewals_spent:  # said once; the plan runs until it passes
                self._renewals_spent.add(key)
                self.record("priority_renewals_spent", t_s=t_s, ev=ev_id, tls=tls,
                            renewals=done)  # fmt: skip
            return False
        if not self._ask(ev_id, tls, t_s, "renewal", lambda: self.manager.renew(ev_id, tls)):
            return False
        self.renewals[key] = done + 1
        self.record("priority_renewed", t_s=t_s, ev=ev_id, tls=tls, stage=stage,
                    eta_s=eta_s, renewal=done + 1)  # fmt: skip
        return True

    def _ask(self, ev_id: str, tls: str, t_s: float, what: str, call: Callable[[], bool]) -> bool:
        """Carry out a request or renewal (``call``); one the port refuses, or a signal
        that runs locally, is recorded once (``priority_refused``) in :attr:`refused`."""
        try:
            asked = call()
            reason = "runs_locally"
        except ValueError as exc:  # the port refused it (a released signal, a bad stage)
            asked, reason = False, str(exc)
            log.warning("%s for %s at %s refused by the port: %s", what, ev_id, tls, exc)
        if not asked:
            self.refused[(ev_id, tls)] = t_s
            self.record("priority_refused", t_s=t_s, ev=ev_id, tls=tls, reason=reason)
        return asked

    @property
    def renewals_done(self) -> int:
        """Holds renewed after a cap, over all EVs and signals."""
        return sum(self.renewals.values())

    def release(self, ev_id: str, tls: str, t_s: float, *, reason: str) -> bool:
        """``ev_id`` lets go of ``tls``; returns whether the signal itself was released."""
        if self.manager.release(ev_id, tls, t_s=t_s):
            self.record("priority_release", t_s=t_s, ev=ev_id, tls=tls, reason=reason)
            return True
        return False

    def release_all(self, ev_id: str, t_s: float, *, reason: str) -> None:
        """Every hold of ``ev_id`` let go (GPS stale, arrived, rerouted, left the center)."""
        for tls in self.manager.holding(ev_id):
            self.release(ev_id, tls, t_s, reason=reason)
