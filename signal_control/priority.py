"""The emergency-vehicle priority overlay: holds, release and recovery, through the port.

:class:`PriorityManager` carries out what the center decided
(:mod:`twin.center.preemption`): it asks a signal for an EV's stage
(``request_priority``; the guard skips to it as soon as minimum greens allow and holds
it), releases the hold when the last EV holding it lets go (``cancel_priority``), and
then brings the signal back into step with its fixed-time schedule:

- ``immediate``: skip straight to the stage the schedule shows now (the held green
  still keeps its minimum);
- ``smooth``: keep the stage sequence and spread the offset error over
  ``recovery_cycles`` cycles by shortening or lengthening greens within their minimum
  and maximum (:func:`signal_control.preemption.recovery_greens`).

It works through the port's public interface only (commands, ``status``, ``plan``), so
the same manager drives the simulation port and a field port. Timed work (the next
recovery cycle) is handed to a ``schedule(t_s, action, name)`` callback: the run's event
bus in a simulation, the live service's clock in the field.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from signal_control.guard import GuardPlan
from signal_control.port import SignalStatus, plan_position
from signal_control.preemption import recovery_greens

log = logging.getLogger(__name__)

Recovery = Literal["immediate", "smooth"]
Schedule = Callable[[float, Callable[[], None], str], object]
IN_SYNC_TOLERANCE_S = 2.0
"""A recovering signal is back in step when its green started within this of schedule."""
RECOVERY_GIVE_UP_S = 900.0
"""A recovery not back in step after this long is counted as not recovered (NaN)."""


class PriorityPort(Protocol):
    """The port commands and reads the manager uses."""

    def request_priority(
        self, tls_id: str, *, stage: int, max_hold_s: float | None = None
    ) -> None: ...

    def cancel_priority(self, tls_id: str) -> None: ...

    def skip(self, tls_id: str, *, stage: int) -> None: ...

    def apply_timing(self, tls_id: str, *, green_s: Sequence[float]) -> list[float]: ...

    def status(self, tls_id: str) -> SignalStatus: ...

    def plan(self, tls_id: str) -> GuardPlan: ...


@dataclass(frozen=True)
class Hold:
    """One requester's hold of one signal."""

    requester: str
    tls: str
    stage: int
    requested_s: float


def cycle_s(plan: GuardPlan) -> float:
    """The fixed-time plan's cycle: greens plus one yellow and all-red per stage."""
    return sum(plan.green_s) + plan.n_stages * (plan.yellow_s + plan.all_red_s)


class PriorityManager:
    """Priority holds of several requesters (EVs) over one port, and recovery.

    Parameters
    ----------
    port
        The guarded controller port.
    recovery
        ``immediate`` or ``smooth`` (see the module doc).
    recovery_cycles
        Cycles over which ``smooth`` recovery absorbs the offset error (>= 2).
    max_hold_s
        Cap of every priority hold (the guard enforces it).
    schedule
        ``schedule(t_s, action, name)`` runs ``action`` at time ``t_s``.
    """

    def __init__(
        self,
        port: PriorityPort,
        *,
        recovery: Recovery,
        recovery_cycles: int,
        max_hold_s: float,
        schedule: Schedule,
    ) -> None:
        if recovery not in ("immediate", "smooth"):
            raise ValueError(f"recovery {recovery!r}; allowed: immediate, smooth")
        if recovery_cycles < 2:
            raise ValueError(f"recovery_cycles must be >= 2 (got {recovery_cycles})")
        if not (math.isfinite(max_hold_s) and max_hold_s > 0):
            raise ValueError(f"max_hold_s must be finite and > 0 (got {max_hold_s})")
        self.port = port
        self.recovery = recovery
        self.recovery_cycles = recovery_cycles
        self.max_hold_s = max_hold_s
        self.schedule = schedule
        self._holds: dict[str, dict[str, Hold]] = {}  # requester -> tls -> hold (in order)
        self.recovering: dict[str, float] = {}  # tls -> released at
        self.recovery_s: list[float] = []  # per finished recovery (NaN: gave up)

    # ------------------------------------------------------------------ holds
    def holding(self, requester: str) -> list[str]:
        """Signals ``requester`` holds, in the order it asked for them."""
        return list(self._holds.get(requester, {}))

    def holds(self, requester: str, tls: str) -> bool:
        return tls in self._holds.get(requester, {})

    def held(self, tls: str) -> bool:
        """Whether any requester holds ``tls``."""
        return any(tls in h for h in self._holds.values())

    def commandable(self, tls: str) -> bool:
        """Whether the center may command ``tls`` (not handed back to local control)."""
        st = self.port.status(tls)
        return not (st.local or st.handing_back)

    def request(self, requester: str, tls: str, *, stage: int, t_s: float) -> bool:
        """Ask ``tls`` for ``stage`` on behalf of ``requester`` (through the guard).
        A signal handed back to local control is not asked (returns ``False``)."""
        if not self.commandable(tls):
            log.info("priority for %s at %s not asked: the signal runs locally", requester, tls)
            return False
        self.port.request_priority(tls, stage=stage, max_hold_s=self.max_hold_s)
        self._holds.setdefault(requester, {})[tls] = Hold(requester, tls, stage, t_s)
        self.recovering.pop(tls, None)
        return True

    def renew(self, requester: str, tls: str) -> bool:
        """Ask ``tls`` again for the stage ``requester`` holds it for, after the guard's
        cap (``max_hold_s``) ended that hold: another hold of up to ``max_hold_s``, with
        every minimum of the guard kept. Returns ``False`` (and asks nothing) when
        ``requester`` holds no such signal or the signal runs locally."""
        hold = self._holds.get(requester, {}).get(tls)
        if hold is None or not self.commandable(tls):
            return False
        self.port.request_priority(tls, stage=hold.stage, max_hold_s=self.max_hold_s)
        return True

    def release(self, requester: str, tls: str, *, t_s: float) -> bool:
        """``requester`` lets go of ``tls``; the signal itself is released (and starts
        recovering) only when no other requester holds it. Returns whether it was.
        A signal handed back meanwhile is only forgotten: its local program ended the
        hold (the hand-back never cuts an interval)."""
        self._holds.get(requester, {}).pop(tls, None)
        if self.held(tls):
            return False  # another EV still holds it
        if not self.commandable(tls):
            self.recovering.pop(tls, None)
            return True
        self.port.cancel_priority(tls)
        self._start_recovery(tls, t_s)
        return True

    # ------------------------------------------------------------------ recovery
    def _start_recovery(self, tls: str, t_s: float) -> None:
        plan = self.port.plan(tls)
        self.recovering[tls] = t_s
        stage, _into = plan_position(plan, t_s)
        if self.recovery == "immediate":
            # straight back to the schedule: the held green ends (minimum kept), then the
            # stage the fixed plan shows now
            if stage != self.port.status(tls).stage:
                self.port.skip(tls, stage=stage)
            return
        # smooth: keep the sequence, absorb the offset error over recovery_cycles cycles
        cycle = cycle_s(plan)
        error = self.offset_error_s(tls, t_s)
        greens, _residual = recovery_greens(
            np.array(plan.green_s),
            np.array(plan.min_green_s),
            np.array(plan.max_green_s),
            offset_error_s=error,
            cycles=self.recovery_cycles,
        )
        for c, g in enumerate(greens):
            self.schedule(
                t_s + c * cycle,
                functools.partial(self._apply, tls, [float(x) for x in g]),
                f"recovery {tls} cycle {c + 1}",
            )
        self.schedule(
            t_s + len(greens) * cycle,
            functools.partial(self._apply, tls, None),
            f"recovery {tls} done",
        )

    def _apply(self, tls: str, greens: list[float] | None) -> None:
        st = self.port.status(tls)
        if st.priority_stage is not None or st.local or st.handing_back:
            return  # a new priority took over, or the signal runs locally now
        plan_greens = list(self.port.plan(tls).green_s) if greens is None else greens
        self.port.apply_timing(tls, green_s=plan_greens)

    def offset_error_s(self, tls: str, t_s: float) -> float:
        """Seconds the signal runs late (+) or early (-) against its fixed-time schedule
        (when the stage after the current one starts, against when it should)."""
        st = self.port.status(tls)
        plan = self.port.plan(tls)
        cycle = cycle_s(plan)
        nxt = (st.stage + 1) % plan.n_stages
        actual = st.next_change_s + (
            plan.yellow_s + plan.all_red_s if st.interval == "green" else 0.0
        )
        offsets = np.cumsum([0.0, *[g + plan.yellow_s + plan.all_red_s for g in plan.green_s]])
        due = plan.offset_s + offsets[nxt]
        err = (actual - due) % cycle
        return float(err - cycle if err > cycle / 2 else err)

    def check_recovery(self, t_s: float) -> None:
        """Close the recoveries that are back in step with the schedule (or gave up)."""
        for tls, since in list(self.recovering.items()):
            st = self.port.status(tls)
            if st.local or st.handing_back:  # local control: no recovery to wait for
                del self.recovering[tls]
                continue
            stage, into = plan_position(self.port.plan(tls), t_s)
            in_sync = (
                st.interval == "green"
                and st.stage == stage
                and abs((t_s - st.entered_s) - into) <= IN_SYNC_TOLERANCE_S
            )
            if in_sync or t_s - since > RECOVERY_GIVE_UP_S:
                self.recovery_s.append(t_s - since if in_sync else math.nan)
                del self.recovering[tls]
