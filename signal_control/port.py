"""The controller interface: the commands a center sends to signal controllers.

:class:`ControllerPort` is what controllers talk to. :class:`GuardedPort` implements it
over one :class:`~signal_control.guard.SignalGuard` per intersection, so every command
passes the safety guard; a concrete port only says how to *show* a state
(:meth:`GuardedPort._display`) and how to switch a controller to its own local mode.
The simulation port is a :class:`GuardedPort` handed the SUMO session, which shows
states (``set_signal_state``) and resumes a local program (``set_program``,
``set_phase``); a field adapter (NTCIP or a vendor protocol) would implement the same
three methods towards real controllers.

Safety at the edges of guarded control:

- *take-over*: with ``align_offsets`` each guard starts where the fixed-time plan
  stands; ``takeover="running"`` (a controller already running its plan) finishes the
  interval in progress, a yellow or all-red included;
- *late display*: a change shown after it was due keeps every interval at full length
  (the change is dated when shown, counted in ``late_changes`` and logged);
- *hand-back* (:meth:`GuardedPort.local_mode`): the local program takes over inside a
  green, at the phase the guard shows and with the green's remaining time, so no
  interval is cut; for the fixed-time plan the guard first steers its greens (within
  their minimum and maximum) until that green ends where the plan's schedule ends it.
  Commands to a signal handed back (or being handed back) raise
  :class:`SignalReleasedError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from signal_control.guard import (
    ALL_RED_PROMISE_S,
    EPS,
    INTERVENTION_KINDS,
    Foes,
    GuardEvent,
    GuardPlan,
    Interval,
    SignalGuard,
    UnsafePlanError,
)
from signal_control.interfaces import PhaseLike, SignalDisplay

log = logging.getLogger(__name__)

LocalMode = Literal["plan", "actuated"]
Takeover = Literal["fresh", "running"]
LOCAL_PROGRAMS: dict[str, str] = {"plan": "0", "actuated": "actuated"}
MIN_REMAINING_S = 1.0  # a hand-back leaves the local program at least this much green
MAX_ALIGN_GREENS = 12  # greens steered towards the plan's schedule before handing back as is


class SignalReleasedError(ValueError):
    """A command to a signal that was handed back (or is being handed back) to its local
    program: the port refuses it and changes nothing."""


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
    handing_back
        A hand-back was asked and waits for its moment (no more commands either).
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
    handing_back: bool = False

    @property
    def in_green(self) -> bool:
        return self.interval == "green"


def plan_from_phases(
    tls_id: str,
    phases: Sequence[PhaseLike],
    *,
    offset_s: float = 0.0,
    min_all_red_s: float = ALL_RED_PROMISE_S,
) -> GuardPlan:
    """A :class:`GuardPlan` from a city's phase list (objects with ``kind``, ``state``,
    ``duration_s``, ``min_green_s``, ``ped_min_green_s``, ``max_green_s``), e.g. the
    manifest's phases, which are the local program's phases in the same order.

    ``min_all_red_s`` is the all-red the city promises (its preset's ``all_red_s``).
    """
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
        ped_min_green_s=tuple(float(p.ped_min_green_s) for p in greens),
        min_all_red_s=min_all_red_s,
        phase_index=tuple(i for i, p in enumerate(phases) if p.kind == "green"),
    )


def _cycle_pos(plan: GuardPlan, t_s: float) -> float:
    """The plan's cycle position at ``t_s``, in whole seconds: ``(t_s - offset_s) mod
    cycle``, floored, so that every later change falls on the simulation's step grid."""
    return float(math.floor((t_s - plan.offset_s) % plan.cycle_s))


def plan_position(plan: GuardPlan, t_s: float) -> tuple[int, float]:
    """Where the fixed-time plan stands at ``t_s``: (stage, seconds into its green).

    The plan's cycle position is ``(t_s - offset_s) mod cycle``, in whole seconds so
    that every later change falls on the simulation's step grid. A time inside an
    intergreen maps to the start of the next green (see :func:`plan_interval` for the
    exact interval).
    """
    interval, stage, _into = plan_interval(plan, t_s)
    if interval == "green":
        return stage, _into
    return (stage + 1) % plan.n_stages, 0.0


def plan_interval(plan: GuardPlan, t_s: float) -> tuple[Interval, int, float]:
    """Exactly where the fixed-time plan stands at ``t_s``: (interval, stage, seconds
    into that interval); during a yellow or all-red ``stage`` is the stage being left.
    Whole seconds, as :func:`plan_position`."""
    pos = _cycle_pos(plan, t_s)
    for k, green in enumerate(plan.green_s):
        if pos < green:
            return "green", k, pos
        pos -= green
        if pos < plan.yellow_s:
            return "yellow", k, pos
        pos -= plan.yellow_s
        if pos < plan.all_red_s:
            return "all_red", k, pos
        pos -= plan.all_red_s
    return "green", 0, 0.0


def schedule_green_end_s(plan: GuardPlan, stage: int, not_before_s: float) -> float:
    """The first time at or after ``not_before_s`` at which the fixed-time plan ends the
    green of ``stage`` (whole seconds, as :func:`plan_position` counts them)."""
    intergreen = plan.yellow_s + plan.all_red_s
    end_in_cycle = sum(plan.green_s[:stage]) + stage * intergreen + plan.green_s[stage]
    base = plan.offset_s + end_in_cycle
    cycle = plan.cycle_s
    m = math.ceil((not_before_s - base) / cycle - EPS)
    t = float(math.ceil(base + m * cycle - EPS))
    while t < not_before_s - EPS:  # rounding up may only move it later; never earlier
        m += 1
        t = float(math.ceil(base + m * cycle - EPS))
    return t


@dataclass
class _Handback:
    """A hand-back asked and not done yet."""

    mode: LocalMode
    program: str
    asked_s: float
    steered: int = 0  # greens steered towards the plan's schedule so far


class GuardedPort:
    """A port whose every command goes through the intersection's guard.

    Parameters
    ----------
    display
        Shows states (the SUMO session, or a field connection).
    plans
        Plan per intersection taken under guarded control.
    start_s
        Time the guards take over; each starts in its first green stage unless
        ``align_offsets``.
    foes
        The conflict matrix of every signal's links (required: each plan is verified
        against it, and a plan with conflicting greens is refused).
    align_offsets
        Start each fixed-time plan where its offset puts it at ``start_s``.
    takeover
        With ``align_offsets``: ``"fresh"`` when the display has shown nothing yet (a
        simulation's first step): a start inside an intergreen begins the next green,
        as nobody saw that yellow. ``"running"`` when the controller is already running
        its plan (the field, or a simulation mid-run): the interval in progress is
        finished, a yellow or all-red included, so nothing is cut.
    clock
        The current time (e.g. SUMO's); commands are dated with it.
    initial
        Per signal, the interval it is known to show at ``start_s`` (read back from a
        field controller): ``(interval, stage, elapsed_s)``, ``stage`` the green shown or
        the one being left. It overrides ``align_offsets`` for that signal and is
        finished, never cut (an unknown elapsed time is 0: the green keeps its full
        minimum from now, a yellow or all-red runs in full).
    """

    def __init__(
        self,
        display: SignalDisplay,
        plans: Mapping[str, GuardPlan],
        *,
        start_s: float,
        foes: Mapping[str, Foes],
        align_offsets: bool = False,
        takeover: Takeover = "fresh",
        clock: Callable[[], float] | None = None,
        initial: Mapping[str, tuple[Interval, int, float]] | None = None,
    ) -> None:
        if takeover not in ("fresh", "running"):
            raise ValueError(f"takeover {takeover!r}; allowed: fresh, running")
        missing = [t for t in plans if t not in foes]
        if missing:
            raise UnsafePlanError(
                f"no conflict matrix for signals {', '.join(missing[:5])}: the guard "
                "verifies every plan against its signal's foes"
            )
        self.display = display
        self.clock = clock
        self.start_s = start_s  # when the guards took over
        self.now_s = start_s
        self.ids = list(plans)
        self.index = {tls: k for k, tls in enumerate(self.ids)}
        self._foes = {t: foes[t] for t in self.ids}
        self.guards = []
        for t in self.ids:
            plan = plans[t]
            interval: Interval = "green"
            stage, elapsed = 0, 0.0
            if initial is not None and t in initial:
                interval, stage, elapsed = initial[t]
            elif align_offsets:
                # the plan's cycle needs valid intervals: check before dividing by it
                plan.check(foes[t])
                if takeover == "running":
                    interval, stage, elapsed = plan_interval(plan, start_s)
                else:
                    stage, elapsed = plan_position(plan, start_s)
            self.guards.append(
                SignalGuard(
                    plan,
                    start_s=start_s,
                    foes=foes[t],
                    stage=stage,
                    elapsed_s=elapsed,
                    interval=interval,
                )
            )
        self.next_s = np.array([g.next_change_s() for g in self.guards], dtype=np.float64)
        self._handback: dict[int, _Handback] = {}  # guard index -> hand-back asked
        self.released: set[str] = set()
        self.commands = 0
        self.late_changes = 0  # changes shown after they were due (must stay 0)
        for tls, guard in zip(self.ids, self.guards, strict=True):
            self.display.set_signal_state(tls, guard.state)

    def retake(self, tls_id: str, *, interval: Interval, stage: int, elapsed_s: float) -> None:
        """Take ``tls_id`` over again from what its controller shows now (after it ran on
        its own: a field controller that was down, or restarted). The interval in
        progress is finished, never cut; the signal's priority and timing start afresh
        (the plan's), and it takes commands again."""
        k = self.index[tls_id]
        old = self.guards[k]
        now = self._now()
        guard = SignalGuard(
            old.plan,
            start_s=now,
            foes=self._foes[tls_id],
            stage=stage,
            elapsed_s=elapsed_s,
            interval=interval,
        )
        guard.events = old.events
        guard.served = old.served
        guard.roundings = old.roundings
        guard._log(now, "retaken", interval=interval, stage=stage, elapsed_s=elapsed_s)
        self.guards[k] = guard
        self._handback.pop(k, None)
        self.released.discard(tls_id)
        self._reschedule(k)
        self.display.set_signal_state(tls_id, guard.state)

    def guard(self, tls_id: str) -> SignalGuard:
        try:
            return self.guards[self.index[tls_id]]
        except KeyError:
            raise KeyError(f"signal {tls_id!r} is not under guarded control") from None

    def is_local(self, tls_id: str) -> bool:
        """The signal was handed back to its local program, or is being handed back:
        it takes no more commands."""
        k = self.index.get(tls_id)
        return k is not None and (tls_id in self.released or k in self._handback)

    def _commandable(self, tls_id: str, what: str) -> SignalGuard:
        """The signal's guard, if it takes commands; else :class:`SignalReleasedError`."""
        guard = self.guard(tls_id)
        k = self.index[tls_id]
        if tls_id in self.released:
            raise SignalReleasedError(
                f"Signal {tls_id} was handed back to its local program; {what} refused "
                "(a controller that hands a signal back stops commanding it)."
            )
        if k in self._handback:
            h = self._handback[k]
            raise SignalReleasedError(
                f"Signal {tls_id} is being handed back to its local program (mode "
                f"{h.mode!r}, asked at t={h.asked_s:g} s); {what} refused."
            )
        return guard

    def _touched(self, tls_id: str) -> None:
        self._reschedule(self.index[tls_id])
        self.commands += 1

    # ------------------------------------------------------------------ commands
    def apply_timing(self, tls_id: str, *, green_s: Sequence[float]) -> list[float]:
        out = self._commandable(tls_id, "apply_timing").set_timing(self._now(), green_s)
        self._touched(tls_id)
        return out

    def hold(self, tls_id: str, *, until_s: float) -> float:
        out = self._commandable(tls_id, "hold").hold(self._now(), until_s)
        self._touched(tls_id)
        return out

    def force_off(self, tls_id: str) -> float:
        out = self._commandable(tls_id, "force_off").force_off(self._now())
        self._touched(tls_id)
        return out

    def skip(self, tls_id: str, *, stage: int) -> None:
        self._commandable(tls_id, "skip").skip(self._now(), stage)
        self._touched(tls_id)

    def request_priority(self, tls_id: str, *, stage: int, max_hold_s: float | None = None) -> None:
        guard = self._commandable(tls_id, "request_priority")
        guard.request_priority(self._now(), stage, max_hold_s=max_hold_s)
        self._touched(tls_id)

    def cancel_priority(self, tls_id: str) -> None:
        self._commandable(tls_id, "cancel_priority").cancel_priority(self._now())
        self._touched(tls_id)

    def local_mode(self, tls_id: str, mode: LocalMode) -> None:
        """Hand the signal back to its controller's own program (``plan``: the fixed-time
        plan, program ``"0"``; ``actuated``: program ``"actuated"``, which must be loaded).

        Safe by construction: the local program takes over inside a green of the guard,
        in the same phase, for the rest of that green (never less than its minimum, and
        at least :data:`MIN_REMAINING_S`), so its own yellow and all-red follow in full.
        A priority hold is released first. For ``plan`` the guard first runs the plan's
        greens and steers each (within its minimum and maximum) towards the plan's
        schedule; it hands back in the green that ends where the schedule ends it, so the
        local program also resumes in coordination (after :data:`MAX_ALIGN_GREENS`
        greens it hands back as it stands). Until then the signal takes no commands; asking
        again is a no-op.
        """
        program = LOCAL_PROGRAMS.get(mode)
        if program is None:
            raise ValueError(f"local mode {mode!r}; allowed: {', '.join(LOCAL_PROGRAMS)}")
        guard = self.guard(tls_id)
        k = self.index[tls_id]
        if tls_id in self.released or k in self._handback:
            return
        if not guard.plan.phase_index:
            raise ValueError(
                f"Signal {tls_id}: its plan does not say which local phase each stage is "
                "(GuardPlan.phase_index); it cannot be handed back safely."
            )
        now = self._now()
        guard.prepare_handback(now)
        guard._log(now, "handback_asked", mode=mode)
        self._handback[k] = _Handback(mode=mode, program=program, asked_s=now)
        self.commands += 1
        self._try_handback(k, now)

    def _try_handback(self, k: int, now: float) -> None:
        """Hand guard ``k`` back now if it shows a green that can end where the local
        program would end it; else steer that green and try again at the next one."""
        h = self._handback[k]
        guard = self.guards[k]
        if guard.interval != "green":
            self._reschedule(k)  # the next green comes at the guard's next changes
            return
        plan, stage = guard.plan, guard.stage
        lo = max(now + MIN_REMAINING_S, guard.min_end_s())
        hi = max(guard.entered_s + plan.max_green_s[stage], lo)
        if h.mode == "plan" and h.steered < MAX_ALIGN_GREENS:
            end = schedule_green_end_s(plan, stage, lo)
            if end > hi + EPS:
                # not reachable in this green: steer towards the schedule (later if the
                # plan's end is less than half a cycle away, else as early as allowed)
                steer = hi if end - hi <= plan.cycle_s / 2 else lo
                guard.hold(now, until_s=steer)
                h.steered += 1
                self._reschedule(k)
                return
        else:
            end = min(max(guard.green_end_s, lo), hi)
        tls = self.ids[k]
        self.display.set_program(tls, h.program)
        self.display.set_phase(tls, plan.phase_index[stage], remaining_s=end - now)
        guard._log(now, "handed_back", mode=h.mode, stage=stage, green_end_s=end,
                   steered=h.steered)  # fmt: skip
        del self._handback[k]
        self.released.add(tls)
        self.next_s[k] = math.inf

    def _reschedule(self, k: int) -> None:
        """Next visit of guard ``k``: its next change."""
        self.next_s[k] = self.guards[k].next_change_s()

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
        """Show every state change due by ``t_s``; returns how many signals changed.

        Each change is shown; one that is already late (the display was not called when
        it fell due) is shown now and the intervals after it keep their full length, so
        a late call never skips or shortens a yellow or an all-red on the display.
        """
        self.now_s = t_s
        due = np.flatnonzero(self.next_s <= t_s + 1e-9)
        for k in map(int, due):
            guard = self.guards[k]
            while guard.next_change_s() <= t_s + EPS:
                if guard.next_change_s() < t_s - 1e-6:
                    self.late_changes += 1
                    guard.defer_change(t_s)
                for _at, state in guard.advance(t_s):
                    self.display.set_signal_state(self.ids[k], state)
            if k in self._handback:
                self._try_handback(k, t_s)
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
            handing_back=self.index[tls_id] in self._handback,
        )

    def plan(self, tls_id: str) -> GuardPlan:
        """The signal's plan (the one its guard enforces)."""
        return self.guard(tls_id).plan

    def stage_of(self, tls_id: str) -> tuple[str, int]:
        g = self.guard(tls_id)
        return g.interval, g.stage

    def events(self) -> list[GuardEvent]:
        return [e for g in self.guards for e in g.events]

    def interventions(self) -> dict[str, int]:
        """What the guards changed about the commands (and their own caps), per kind of
        change (every kind of :data:`~signal_control.guard.INTERVENTION_KINDS`, 0 when
        none). A command changed in two ways counts once per kind; roundings to whole
        seconds count in :meth:`roundings` instead."""
        out = dict.fromkeys(INTERVENTION_KINDS, 0)
        for e in self.events():
            for kind in e.interventions:
                out[kind] = out.get(kind, 0) + 1
        return out

    def roundings(self) -> int:
        """Timings the guards changed only by counting greens in whole seconds."""
        return sum(g.roundings for g in self.guards)

    def served(self) -> list[tuple[str, int, float, float]]:
        """Every green served: (signal, stage, start_s, green_s)."""
        return [(t, *s) for t, g in zip(self.ids, self.guards, strict=True) for s in g.served]
