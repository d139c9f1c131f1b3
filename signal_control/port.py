"""The controller interface: the commands a center sends to signal controllers.

:class:`ControllerPort` is what controllers talk to. :class:`GuardedPort` implements it
over one :class:`~signal_control.guard.SignalGuard` per intersection, so every command
passes the safety guard; a concrete port only says how to *show* a state
(:meth:`GuardedPort._display`) and how to switch a controller to its own local mode.
The simulation port (:class:`SimulationPort`) is handed a SUMO session object and
calls its ``set_signal_state``/``set_program``; a field adapter (NTCIP or a
vendor protocol) would implement the same two methods towards real controllers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from signal_control.guard import GuardEvent, GuardPlan, Interval, SignalGuard

log = logging.getLogger(__name__)

LocalMode = Literal["plan", "actuated"]


class ControllerPort(Protocol):
    """Commands to one city's signal controllers (all times in seconds of one clock)."""

    def apply_timing(self, tls_id: str, *, green_s: Sequence[float]) -> list[float]:
        """New green per stage from the next green on; returns the greens accepted."""
        ...

    def hold(self, tls_id: str, *, until_s: float) -> float: ...

    def force_off(self, tls_id: str) -> float: ...

    def skip(self, tls_id: str, *, stage: int) -> None: ...

    def request_priority(
        self, tls_id: str, *, stage: int, max_hold_s: float | None = None
    ) -> None: ...

    def cancel_priority(self, tls_id: str) -> None: ...

    def local_mode(self, tls_id: str, mode: LocalMode) -> None:
        """Hand the intersection back to the controller's own plan or actuation."""
        ...


class SignalDisplay(Protocol):
    """What a port needs from the thing that shows the signals (SUMO or the field)."""

    def set_signal_state(self, tls_id: str, state: str) -> None: ...

    def set_program(self, tls_id: str, program_id: str) -> None: ...


@dataclass(frozen=True)
class SignalStatus:
    """What a port says about one signal now (read-only; for planners and operators).

    Attributes
    ----------
    interval
        ``green``, ``yellow`` or ``all_red``.
    stage
        The green stage shown, or the one being left during an intergreen.
    target
        The next green stage (during an intergreen: the one coming).
    entered_s
        When the current interval began.
    next_change_s
        When the shown state changes next if nothing else is asked.
    min_end_s
        Earliest end of the current green (``inf`` during an intergreen).
    priority_stage
        The stage a priority request holds or is heading for, if any.
    priority_until_s
        The cap of that priority hold (``nan`` without one).
    local
        The signal was handed back to its local program (no more commands).
    """

    tls_id: str
    interval: Interval
    stage: int
    target: int
    entered_s: float
    next_change_s: float
    min_end_s: float
    priority_stage: int | None
    priority_until_s: float
    local: bool = False

    @property
    def in_green(self) -> bool:
        return self.interval == "green"


def plan_from_phases(tls_id: str, phases: Sequence[Any], *, offset_s: float = 0.0) -> GuardPlan:
    """A :class:`GuardPlan` from a city's phase list (objects with ``kind``, ``state``,
    ``duration_s``, ``min_green_s``, ``max_green_s``), e.g. the manifest's phases."""
    greens = [p for p in phases if p.kind == "green"]
    yellows = [p.duration_s for p in phases if p.kind == "yellow"]
    all_reds = [p.duration_s for p in phases if p.kind == "all_red"]
    right_on_red = frozenset(i for p in phases for i, ch in enumerate(p.state) if ch == "s")
    return GuardPlan(
        tls_id=tls_id,
        green_states=tuple(p.state for p in greens),
        min_green_s=tuple(float(p.min_green_s) for p in greens),
        max_green_s=tuple(float(p.max_green_s) for p in greens),
        green_s=tuple(float(p.duration_s) for p in greens),
        yellow_s=min(yellows) if yellows else 0.0,
        all_red_s=min(all_reds) if all_reds else 0.0,
        right_on_red=right_on_red,
        offset_s=offset_s,
    )


def plan_position(plan: GuardPlan, t_s: float) -> tuple[int, float]:
    """Where the fixed-time plan stands at ``t_s``: (stage, seconds into its green).

    The plan's cycle position is ``(t_s - offset_s) mod cycle``, in whole seconds so
    that every later change falls on the simulation's step grid. A time inside an
    intergreen maps to the start of the next green, so the guard never starts mid-change.
    """
    intergreen = plan.yellow_s + plan.all_red_s
    cycle = sum(plan.green_s) + intergreen * plan.n_stages
    pos = float(math.floor((t_s - plan.offset_s) % cycle))
    for k, green in enumerate(plan.green_s):
        if pos < green:
            return k, pos
        pos -= green
        if pos < intergreen:
            return (k + 1) % plan.n_stages, 0.0
        pos -= intergreen
    return 0, 0.0


class GuardedPort:
    """A port whose every command goes through the intersection's guard.

    Parameters
    ----------
    display
        Shows states (the SUMO session, or a field connection).
    plans
        Plan per intersection taken under guarded control.
    start_s
        Time the guards take over; each starts in its first green stage.
    foes
        Optional conflict matrices per intersection, to verify the plans.
    align_offsets
        Start each fixed-time plan where its offset puts it at ``start_s``.
    clock
        The current time (e.g. SUMO's); commands are dated with it.
    """

    def __init__(
        self,
        display: SignalDisplay,
        plans: Mapping[str, GuardPlan],
        *,
        start_s: float,
        foes: Mapping[str, Sequence[Sequence[bool]]] | None = None,
        align_offsets: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.display = display
        self.clock = clock
        self.now_s = start_s
        self.ids = list(plans)
        self.index = {tls: k for k, tls in enumerate(self.ids)}
        self.guards = []
        for t in self.ids:
            stage, elapsed = plan_position(plans[t], start_s) if align_offsets else (0, 0.0)
            self.guards.append(
                SignalGuard(
                    plans[t],
                    start_s=start_s,
                    stage=stage,
                    elapsed_s=elapsed,
                    foes=(foes or {}).get(t),
                )
            )
        self.next_s = np.array([g.next_change_s() for g in self.guards], dtype=np.float64)
        self._handover: dict[int, str] = {}  # guard index -> program to hand back to
        self.released: set[str] = set()
        self.commands = 0
        self.late_changes = 0  # changes shown after they were due (must stay 0)
        for tls, guard in zip(self.ids, self.guards, strict=True):
            self.display.set_signal_state(tls, guard.state)

    def guard(self, tls_id: str) -> SignalGuard:
        try:
            return self.guards[self.index[tls_id]]
        except KeyError:
            raise KeyError(f"signal {tls_id!r} is not under guarded control") from None

    def _touched(self, tls_id: str) -> None:
        k = self.index[tls_id]
        if self.ids[k] in self.released:
            raise ValueError(f"{tls_id} was handed back to its local program")
        self._reschedule(k)
        self.commands += 1

    # ------------------------------------------------------------------ commands
    def apply_timing(self, tls_id: str, *, green_s: Sequence[float]) -> list[float]:
        out = self.guard(tls_id).set_timing(self._now(), green_s)
        self._touched(tls_id)
        return out

    def hold(self, tls_id: str, *, until_s: float) -> float:
        out = self.guard(tls_id).hold(self._now(), until_s)
        self._touched(tls_id)
        return out

    def force_off(self, tls_id: str) -> float:
        out = self.guard(tls_id).force_off(self._now())
        self._touched(tls_id)
        return out

    def skip(self, tls_id: str, *, stage: int) -> None:
        self.guard(tls_id).skip(self._now(), stage)
        self._touched(tls_id)

    def request_priority(self, tls_id: str, *, stage: int, max_hold_s: float | None = None) -> None:
        self.guard(tls_id).request_priority(self._now(), stage, max_hold_s=max_hold_s)
        self._touched(tls_id)

    def cancel_priority(self, tls_id: str) -> None:
        self.guard(tls_id).cancel_priority(self._now())
        self._touched(tls_id)

    def local_mode(self, tls_id: str, mode: LocalMode) -> None:
        """Hand the signal back to its controller's own program (``plan``: the fixed-time
        plan, program ``"0"``; ``actuated``: program ``"actuated"``, which must be loaded).

        The guard stops driving it once its current green has had its minimum and the
        change (yellow, all-red) is done: only then is the signal switched, so the
        hand-over itself never cuts an interval.
        """
        program = {"plan": "0", "actuated": "actuated"}.get(mode)
        if program is None:
            raise ValueError(f"local mode {mode!r}; allowed: plan, actuated")
        k = self.index[tls_id]
        self._handover[k] = program
        self.commands += 1
        self._reschedule(k)

    def _reschedule(self, k: int) -> None:
        """Next visit of guard ``k``: its next change, or sooner for a pending hand-over
        (the moment its green has had its minimum)."""
        guard = self.guards[k]
        when = guard.next_change_s()
        if k in self._handover and guard.interval == "green":
            when = min(when, max(guard.min_end_s(), self._now()))
        self.next_s[k] = when

    # ------------------------------------------------------------------ time
    now_s: float = 0.0  # the time of the last advance()

    def _now(self) -> float:
        """The time a command takes effect: the display's clock when it has one (a
        command given between two advance() calls must not be dated in the past)."""
        return self.clock() if self.clock is not None else self.now_s

    def next_change_s(self) -> float:
        """The earliest time any guarded signal changes state."""
        return float(self.next_s.min()) if self.next_s.size else math.inf

    def advance(self, t_s: float) -> int:
        """Show every state change due by ``t_s``; returns how many signals changed."""
        self.now_s = t_s
        due = np.flatnonzero(self.next_s <= t_s + 1e-9)
        self.late_changes += int(np.count_nonzero(self.next_s[due] < t_s - 1e-6))
        for k in map(int, due):
            guard = self.guards[k]
            shown = guard.advance(t_s)
            if shown:
                self.display.set_signal_state(self.ids[k], shown[-1][1])
            if k in self._handover and guard.interval == "green" and guard.min_end_s() <= t_s:
                # a green that has had its minimum: the local program takes over from here
                self.display.set_program(self.ids[k], self._handover.pop(k))
                self.released.add(self.ids[k])
                self.next_s[k] = math.inf
            else:
                self._reschedule(k)
        return int(due.size)

    def status(self, tls_id: str) -> SignalStatus:
        """The signal's interval, stage, timing and priority now."""
        g = self.guard(tls_id)
        prio = g.priority
        return SignalStatus(
            tls_id=tls_id,
            interval=g.interval,
            stage=g.stage,
            target=g.target,
            entered_s=g.entered_s,
            next_change_s=g.next_change_s(),
            min_end_s=g.min_end_s(),
            priority_stage=None if prio is None else prio[0],
            priority_until_s=math.nan if prio is None else prio[1],
            local=tls_id in self.released,
        )

    def plan(self, tls_id: str) -> GuardPlan:
        """The signal's plan (the one its guard enforces)."""
        return self.guard(tls_id).plan

    def stage_of(self, tls_id: str) -> tuple[str, int]:
        g = self.guard(tls_id)
        return g.interval, g.stage

    def events(self) -> list[GuardEvent]:
        return [e for g in self.guards for e in g.events]

    def served(self) -> list[tuple[str, int, float, float]]:
        """Every green served: (signal, stage, start_s, green_s)."""
        return [(t, *s) for t, g in zip(self.ids, self.guards, strict=True) for s in g.served]
