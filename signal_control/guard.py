"""The signal safety guard: the only thing that decides what a signal shows.

Controllers send *requests* (timings, hold, force-off, skip, priority); the guard
turns them into a sequence of signal states that is safe by construction:

- a green shows one of the plan's green states, verified on construction against the
  signal's conflict matrix (always given): no two ``G`` links that are foes (they cross,
  or merge into one exit edge); ``g`` links yield;
- a green never ends before its minimum green, which is at least the pedestrian
  minimum (walk + clearance) where the stage serves a crossing; it ends at the latest at
  its maximum green, except under an explicit priority hold, which has its own cap;
- every change of green passes through yellow (exactly ``yellow_s``, at least
  :data:`YELLOW_MIN_S`) for the links that lose green, then all-red (exactly
  ``all_red_s``, at least the city's promise ``min_all_red_s``); links green in both
  stages keep green; right-turn-on-red links show ``s`` when not green;
- a guard may take over a plan that is already running (``elapsed_s`` into a green, a
  yellow or an all-red): the interval in progress is finished, never cut.

A request the guard cannot honour now is deferred or clamped and logged, never
executed unsafely. The guard is pure Python and port-agnostic: the simulation port
and a field port drive it alike (:mod:`signal_control.port`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

Interval = Literal["green", "yellow", "all_red"]
GREEN_CHARS = frozenset("Gg")
GREEN_STATE_CHARS = frozenset("Ggrs")  # what a green stage may show: green, red, stop-then-go
EPS = 1e-9
YELLOW_MIN_S = 3.0  # no yellow is ever shorter
ALL_RED_FLOOR_S = 1.0  # no all-red promise is ever shorter
ALL_RED_PROMISE_S = 2.0  # the all-red the shipped cities promise (their preset's all_red_s)
ROUNDING_TOL_S = 0.5  # what counting greens in whole seconds may move: not an intervention
INTERVENTION_KINDS = (
    "min_green_raised",  # a planned green below its minimum was raised to it
    "max_green_capped",  # a planned green, or a hold, past its maximum was cut to it
    "min_green_extended",  # a green asked to end before its minimum was kept to it
    "yellow_kept",  # a hold asked during a yellow: the yellow runs in full
    "all_red_kept",  # a hold asked during an all-red: the all-red runs in full
    "priority_kept",  # a hold or force-off refused because a priority holds the green
    "skip_deferred",  # a skip that can only be served after the next green
    "priority_capped",  # a priority hold ended by its cap, not cancelled
)
"""What the guard can change about a request, one name per kind (see :class:`GuardEvent`).
Roundings to whole seconds (at most :data:`ROUNDING_TOL_S`) are none of these."""

Foes = Sequence[Sequence[bool]]


class UnsafePlanError(ValueError):
    """A signal plan that the guard refuses to run (conflicting greens, bad intervals)."""


@dataclass(frozen=True)
class GuardPlan:
    """Safety-relevant facts of one intersection's plan.

    Attributes
    ----------
    green_states
        State string of each green stage, in the plan's cyclic order.
    min_green_s
        Minimum green per stage (vehicle and pedestrian minimums, the larger).
    max_green_s
        Maximum green per stage (outside priority holds).
    green_s
        Planned green per stage (the fixed-time plan); controllers may change it.
    yellow_s, all_red_s
        Intergreen intervals; never cut.
    right_on_red
        Link indices that show ``s`` (stop, then go) when not green.
    ped_min_green_s
        Pedestrian minimum per stage (0 where the stage serves no crossing); empty when
        not known. ``min_green_s`` must hold it.
    min_all_red_s
        The all-red the city promises; ``all_red_s`` must keep it.
    phase_index
        Index of each green stage in the local program's phase list (the controller's
        own plan, e.g. SUMO program ``"0"``): where a hand-back resumes it. Empty when
        not known (then the signal cannot be handed back).
    """

    tls_id: str
    green_states: tuple[str, ...]
    min_green_s: tuple[float, ...]
    max_green_s: tuple[float, ...]
    green_s: tuple[float, ...]
    yellow_s: float
    all_red_s: float
    right_on_red: frozenset[int] = frozenset()
    offset_s: float = 0.0
    max_priority_hold_s: float = 120.0
    ped_min_green_s: tuple[float, ...] = ()
    min_all_red_s: float = ALL_RED_PROMISE_S
    phase_index: tuple[int, ...] = ()

    @property
    def n_stages(self) -> int:
        return len(self.green_states)

    @property
    def cycle_s(self) -> float:
        """The fixed-time cycle: planned greens plus one yellow and all-red per stage."""
        return sum(self.green_s) + self.n_stages * (self.yellow_s + self.all_red_s)

    def problems(self, foes: Foes | None) -> list[str]:
        """Every reason the plan is not safe to run against ``foes`` (empty: safe).

        ``foes[i][j]``: links ``i`` and ``j`` conflict (cross, or merge into one exit
        edge) and may never both show ``G``. Without a conflict matrix nothing can be
        verified, so ``None`` is itself a problem.
        """
        tid, n = self.tls_id, self.n_stages
        if n == 0:
            return [f"{tid}: a plan needs at least one green stage"]
        out: list[str] = []
        n_links = len(foes) if foes is not None else None
        if foes is None:
            out.append(f"{tid}: no conflict matrix given; the guard verifies every plan")
        elif any(len(row) != n_links for row in foes):
            out.append(f"{tid}: the conflict matrix is not square ({n_links} rows)")
            n_links = None
        sizes = {len(s) for s in self.green_states}
        if len(sizes) != 1:
            out.append(f"{tid}: green states differ in length {sorted(sizes)}")
        for k, state in enumerate(self.green_states):
            if n_links is not None and len(state) != n_links:
                out.append(
                    f"{tid}: stage {k} state {state!r} has {len(state)} characters; "
                    f"the signal has {n_links} links"
                )
            odd = sorted(set(state) - GREEN_STATE_CHARS)
            if odd:
                out.append(
                    f"{tid}: stage {k} state {state!r} shows {''.join(odd)!r}; "
                    "a green stage shows only G, g, r, s"
                )
        named: list[tuple[str, tuple[float, ...]]] = [
            ("min_green_s", self.min_green_s),
            ("max_green_s", self.max_green_s),
            ("green_s", self.green_s),
        ]
        if self.ped_min_green_s:
            named.append(("ped_min_green_s", self.ped_min_green_s))
        lengths_ok = True
        for name, values in named:
            if len(values) != n:
                out.append(f"{tid}: {name} has {len(values)} values, not {n}")
                lengths_ok = False
        if lengths_ok:
            for k in range(n):
                lo, hi = self.min_green_s[k], self.max_green_s[k]
                if not 0 < lo <= hi:  # also refuses NaN
                    out.append(
                        f"{tid}: stage {k} needs 0 < min_green_s <= max_green_s (got {lo}, {hi})"
                    )
                if self.ped_min_green_s and not lo >= self.ped_min_green_s[k]:
                    out.append(
                        f"{tid}: stage {k} min_green_s {lo:g} s is below its pedestrian "
                        f"minimum {self.ped_min_green_s[k]:g} s"
                    )
        if not self.yellow_s >= YELLOW_MIN_S:
            out.append(f"{tid}: yellow_s must be >= {YELLOW_MIN_S:g} (got {self.yellow_s})")
        if not self.min_all_red_s >= ALL_RED_FLOOR_S:
            out.append(
                f"{tid}: the all-red promise min_all_red_s must be >= {ALL_RED_FLOOR_S:g} "
                f"(got {self.min_all_red_s})"
            )
        if not self.all_red_s >= self.min_all_red_s:
            out.append(
                f"{tid}: all_red_s must be >= the promised {self.min_all_red_s:g} "
                f"(got {self.all_red_s})"
            )
        width = n_links if n_links is not None else min(sizes)
        bad_ror = sorted(i for i in self.right_on_red if not 0 <= i < width)
        if bad_ror:
            out.append(f"{tid}: right_on_red names links {bad_ror}; links are 0..{width - 1}")
        if self.phase_index and len(self.phase_index) != n:
            out.append(f"{tid}: phase_index has {len(self.phase_index)} values, not {n}")
        if foes is not None and n_links is not None:
            for k, state in enumerate(self.green_states):
                if len(state) != n_links:
                    continue
                hi_links = [i for i, ch in enumerate(state) if ch == "G"]
                for x, a in enumerate(hi_links):
                    for b in hi_links[x + 1 :]:
                        if foes[a][b] or foes[b][a]:
                            out.append(
                                f"{tid}: stage {k} gives conflicting links {a} and {b} "
                                "priority green"
                            )
        return out

    def check(self, foes: Foes | None) -> None:
        """Raise :class:`UnsafePlanError` (every problem, one per line) if the plan is
        not safe to run against the conflict matrix ``foes``."""
        found = self.problems(foes)
        if found:
            raise UnsafePlanError("\n".join(found))

    def show(self, interval: Interval, stage: int, target: int) -> str:
        """The state string of an interval: green of ``stage``, or the yellow/all-red
        of the change from ``stage`` to ``target``."""
        cur = self.green_states[stage]
        if interval == "green":
            return cur
        nxt = self.green_states[target]
        out = []
        for i, (a, b) in enumerate(zip(cur, nxt, strict=True)):
            keeps = a in GREEN_CHARS and b in GREEN_CHARS
            if keeps:
                out.append("G" if a == "G" and b == "G" else "g")
            elif a in GREEN_CHARS and interval == "yellow":
                out.append("y")
            else:
                out.append("s" if i in self.right_on_red else "r")
        return "".join(out)


@dataclass
class GuardEvent:
    """A log line of the guard: what was asked, what was done.

    ``interventions``: what the guard changed about the request (names from
    :data:`INTERVENTION_KINDS`, one per kind of change); empty for a note (a priority
    requested, a hand-back) and for a change of at most :data:`ROUNDING_TOL_S` (greens
    counted in whole seconds).
    """

    t_s: float
    tls_id: str
    what: str
    detail: dict[str, Any] = field(default_factory=dict)
    interventions: tuple[str, ...] = ()


class SignalGuard:
    """The safe state machine of one intersection.

    Parameters
    ----------
    plan
        The intersection's plan (checked on construction against ``foes``).
    start_s
        Simulation (or wall-clock) time the guard takes over.
    foes
        The conflict matrix of the signal's links (``foes[i][j]``: links ``i`` and ``j``
        cross or merge). Required: a plan is only run once its greens were verified.
    stage
        Green stage shown at ``start_s`` (during an intergreen: the stage being left).
    elapsed_s
        How long the interval in progress has already been showing (taking over a
        running plan); it is finished, never cut: a green still gets its minimum
        counted from its real start, a yellow or all-red its full length.
    interval
        The interval in progress at ``start_s``: ``green`` (default), or ``yellow`` /
        ``all_red`` of the change from ``stage`` to the next stage of the plan.
    """

    def __init__(
        self,
        plan: GuardPlan,
        *,
        start_s: float,
        foes: Foes,
        stage: int = 0,
        elapsed_s: float = 0.0,
        interval: Interval = "green",
    ) -> None:
        plan.check(foes)
        if not 0 <= stage < plan.n_stages:
            raise ValueError(f"{plan.tls_id}: stage {stage} out of range 0..{plan.n_stages - 1}")
        if interval not in ("green", "yellow", "all_red"):
            raise ValueError(
                f"{plan.tls_id}: interval {interval!r}; allowed: green, yellow, all_red"
            )
        if math.isnan(elapsed_s):
            raise ValueError(f"{plan.tls_id}: elapsed_s is NaN")
        elapsed_s = max(elapsed_s, 0.0)
        self.plan = plan
        self.green_s = list(plan.green_s)
        self.interval: Interval = interval
        self.stage = stage  # the green shown, or the one being left
        self.target = stage if interval == "green" else (stage + 1) % plan.n_stages
        self._stretch_s = 0.0  # extra length of the current intergreen (shown late)
        self.skip_to: int | None = None
        self.priority: tuple[int, float] | None = None  # (stage, hold-until cap)
        self.events: list[GuardEvent] = []
        self.served: list[tuple[int, float, float]] = []  # (stage, start_s, green_s)
        self.roundings = 0  # timings changed only by counting whole seconds
        if interval == "green":
            # taking over mid-green: the green still gets its minimum from its real start
            self.entered_s = start_s - elapsed_s
            green_end = self.entered_s + self._clamp(stage, self.green_s[stage])
            self.green_end_s = max(green_end, start_s)
        else:
            length = plan.yellow_s if interval == "yellow" else plan.all_red_s
            if elapsed_s >= length:
                raise ValueError(
                    f"{plan.tls_id}: {elapsed_s:g} s into a {interval} of {length:g} s; "
                    "a finished interval cannot be taken over"
                )
            self.entered_s = start_s - elapsed_s
            self.green_end_s = self.entered_s

    # ------------------------------------------------------------------ helpers
    def _clamp(self, stage: int, green_s: float) -> float:
        """Within [min, max] green, in whole seconds (as controllers count) when a whole
        second fits the bounds; idempotent."""
        if math.isnan(green_s):
            raise ValueError(f"{self.plan.tls_id}: a green of NaN seconds")
        lo, hi = self.plan.min_green_s[stage], self.plan.max_green_s[stage]
        x = min(max(green_s, lo), hi)
        r = float(round(x))
        return r if lo <= r <= hi else x

    def _log(
        self, t_s: float, what: str, *, interventions: tuple[str, ...] = (), **detail: Any
    ) -> None:
        self.events.append(GuardEvent(t_s, self.plan.tls_id, what, detail, interventions))
        log.debug("%s t=%.1f %s %s %s", self.plan.tls_id, t_s, what, detail, interventions)

    def _timing_changes(self, asked: Sequence[float], given: Sequence[float]) -> tuple[str, ...]:
        """The kinds of change from ``asked`` to ``given`` greens beyond rounding."""
        kinds: list[str] = []
        for a, g in zip(asked, given, strict=True):
            if abs(g - a) <= ROUNDING_TOL_S + EPS:
                continue
            kind = "min_green_raised" if g > a else "max_green_capped"
            if kind not in kinds:
                kinds.append(kind)
        return tuple(kinds)

    @property
    def state(self) -> str:
        return self.plan.show(self.interval, self.stage, self.target)

    def min_green_s(self) -> float:
        return self.plan.min_green_s[self.stage]

    def min_end_s(self) -> float:
        """Earliest time the current green may end (inf during an intergreen)."""
        if self.interval != "green":
            return math.inf
        return self.entered_s + self.plan.min_green_s[self.stage]

    def next_change_s(self) -> float:
        """When the shown state changes next if nothing else is requested."""
        if self.interval == "yellow":
            return self.entered_s + self.plan.yellow_s + self._stretch_s
        if self.interval == "all_red":
            return self.entered_s + self.plan.all_red_s + self._stretch_s
        return self.green_end_s

    # ------------------------------------------------------------------ requests
    def set_timing(self, t_s: float, green_s: Sequence[float]) -> list[float]:
        """New planned greens for the stages to come; each clamped to [min, max].

        The green now showing keeps its planned end (use :meth:`hold` or
        :meth:`force_off` to move it).
        """
        if len(green_s) != self.plan.n_stages:
            raise ValueError(
                f"{self.plan.tls_id}: {len(green_s)} greens given, plan has {self.plan.n_stages}"
            )
        clamped = [self._clamp(k, float(g)) for k, g in enumerate(green_s)]
        if any(abs(c - float(g)) > EPS for c, g in zip(clamped, green_s, strict=True)):
            asked = list(map(float, green_s))
            changes = self._timing_changes(asked, clamped)
            if not changes:
                self.roundings += 1
            self._log(t_s, "timing_clamped", interventions=changes, asked=asked, given=clamped)
        self.green_s = clamped
        return clamped

    def hold(self, t_s: float, until_s: float) -> float:
        """Keep the current green until ``until_s`` (capped at its max green)."""
        if math.isnan(until_s):  # ±inf clamp to [min end, max end]; NaN means nothing
            raise ValueError(f"{self.plan.tls_id}: hold until NaN")
        if self.interval != "green" or self._priority_green():
            reason = self.interval if self.interval != "green" else "priority"
            # a hold cannot bring back a green that is ending: the intergreen runs in full
            self._log(t_s, "hold_ignored", interventions=(f"{reason}_kept",), reason=reason)
            return self.next_change_s()
        cap = self.entered_s + self.plan.max_green_s[self.stage]
        if self.priority is not None and self.priority[0] == self.stage:
            cap = max(cap, self.priority[1])
        end = min(max(until_s, self.min_end_s()), cap)
        if until_s > cap + EPS:
            capped = ("max_green_capped",) if until_s - end > ROUNDING_TOL_S + EPS else ()
            self._log(t_s, "hold_capped", interventions=capped, asked=until_s, given=end)
        elif end - max(until_s, t_s) > ROUNDING_TOL_S + EPS:
            # asked to end before the green's minimum: it keeps its minimum
            self._log(t_s, "hold_extended", interventions=("min_green_extended",),
                      asked=until_s, given=end)  # fmt: skip
        self.green_end_s = max(end, t_s)
        return self.green_end_s

    def force_off(self, t_s: float) -> float:
        """End the current green as soon as allowed (its minimum green)."""
        if self.interval != "green":  # the green already ends: what was asked happens
            self._log(t_s, "force_off_ignored", reason=self.interval)
            return math.inf
        if self._priority_green():  # priority holds it: cancel_priority ends it
            self._log(t_s, "force_off_ignored", interventions=("priority_kept",),
                      reason="priority")  # fmt: skip
            return self.green_end_s
        end = max(t_s, self.min_end_s())
        if end > t_s + EPS:
            kept = ("min_green_extended",) if end - t_s > ROUNDING_TOL_S + EPS else ()
            self._log(t_s, "force_off_deferred", interventions=kept, until=end)
        self.green_end_s = end
        return end

    def skip(self, t_s: float, stage: int) -> None:
        """Serve ``stage`` next (skipping stages in between), via yellow and all-red."""
        self._check_stage(stage)
        if self.interval == "green" and stage == self.stage:
            self.skip_to = None
            return
        self.skip_to = stage
        if self.interval != "green":  # already changing: aim the change at `stage`
            if self.interval == "yellow" and stage == self.stage:  # back after the next green
                self._log(t_s, "skip_after_next_green", interventions=("skip_deferred",),
                          stage=stage)  # fmt: skip
            elif self.interval == "yellow" and stage != self.target:
                # the yellow shows which links lose green; retarget only if that is the same
                same = self.plan.show("yellow", self.stage, stage) == self.state
                if same:
                    self.target = stage
                    self.skip_to = None
                else:  # the yellow shows other links: the skip waits one green
                    self._log(t_s, "skip_after_next_green", interventions=("skip_deferred",),
                              stage=stage)  # fmt: skip
            elif self.interval == "all_red":
                # links kept green through this all-red belong to (stage -> target); a new
                # target could cut them without yellow, so the skip waits one green
                self._log(t_s, "skip_after_next_green", interventions=("skip_deferred",),
                          stage=stage)  # fmt: skip

    def request_priority(self, t_s: float, stage: int, *, max_hold_s: float | None = None) -> None:
        """Priority for ``stage`` (an EV approach): go there as soon as minimums allow and
        hold it until :meth:`cancel_priority` or the cap."""
        self._check_stage(stage)
        cap_s = self.plan.max_priority_hold_s if max_hold_s is None else max_hold_s
        if not cap_s >= 0 or not math.isfinite(cap_s):
            raise ValueError(f"{self.plan.tls_id}: priority hold of {cap_s} s")
        self.priority = (stage, t_s + cap_s)
        self._log(t_s, "priority_requested", stage=stage)
        if self.interval == "green" and self.stage == stage:
            self.green_end_s = max(self.green_end_s, t_s + cap_s)
            return
        self.skip(t_s, stage)
        self.force_off(t_s)

    def _priority_green(self) -> bool:
        return self.priority is not None and self.priority[0] == self.stage

    def _check_stage(self, stage: int) -> None:
        if not 0 <= stage < self.plan.n_stages:
            raise ValueError(
                f"{self.plan.tls_id}: no stage {stage}; stages are 0..{self.plan.n_stages - 1}"
            )

    def _expire_priority(self, at_s: float) -> None:
        if self.priority is not None and at_s >= self.priority[1] - EPS:
            stage = self.priority[0]
            self.priority = None
            if self.skip_to == stage:
                self.skip_to = None
            self._log(at_s, "priority_expired", interventions=("priority_capped",), stage=stage)

    def cancel_priority(self, t_s: float) -> None:
        if self.priority is None:
            return
        stage, _cap = self.priority
        self.priority = None
        kept: tuple[str, ...] = ()
        if self.interval == "green" and self.stage == stage:
            # resume the plan: the held green ends now (once it has had its minimum)
            self.green_end_s = max(t_s, self.min_end_s())
            if self.green_end_s - t_s > ROUNDING_TOL_S + EPS:
                kept = ("min_green_extended",)
        self._log(t_s, "priority_cancelled", interventions=kept, stage=stage)
        if self.skip_to == stage:
            self.skip_to = None

    def defer_change(self, t_s: float) -> float:
        """The change now due could not be shown in time: it happens at ``t_s`` instead,
        so the interval that follows still gets its full length. A green simply lasts
        longer; a yellow or all-red is stretched. Returns how late the change is."""
        due = self.next_change_s()
        late = t_s - due
        if late <= EPS:
            return 0.0
        if self.interval == "green":
            self.green_end_s = t_s
        else:
            self._stretch_s += late
        self._log(t_s, "change_late", due=due, late_s=late)
        return late

    def prepare_handback(self, t_s: float) -> None:
        """Before a hand-back to the local plan: priority and skips are dropped and the
        stages to come get the plan's own greens (the controller's plan resumes)."""
        if self.priority is not None:
            self.cancel_priority(t_s)
        self.skip_to = None
        self.green_s = [self._clamp(k, g) for k, g in enumerate(self.plan.green_s)]

    # ------------------------------------------------------------------ time
    def advance(self, t_s: float) -> list[tuple[float, str]]:
        """Step the machine to ``t_s``; returns the states shown, with their start times."""
        shown: list[tuple[float, str]] = []
        while self.next_change_s() <= t_s + EPS:
            at = self.next_change_s()
            self._stretch_s = 0.0
            if self.interval == "green":
                self._expire_priority(at)
                self.served.append((self.stage, self.entered_s, at - self.entered_s))
                nxt = (
                    self.skip_to
                    if self.skip_to is not None
                    else (self.stage + 1) % self.plan.n_stages
                )
                if self.priority is not None:
                    nxt = self.priority[0]
                self.skip_to = None
                if nxt == self.stage:  # keep the green
                    if self.priority is not None:  # held for priority: until its cap
                        self.green_end_s = self.priority[1]
                    else:  # a one-stage plan: another planned green
                        self.green_end_s = at + self._clamp(self.stage, self.green_s[self.stage])
                    continue
                self.interval, self.target, self.entered_s = "yellow", nxt, at
            elif self.interval == "yellow":
                self.interval, self.entered_s = "all_red", at
            else:
                self._expire_priority(at)
                self.interval, self.stage, self.entered_s = "green", self.target, at
                if self.skip_to == self.stage:
                    self.skip_to = None
                green = self.green_s[self.stage]
                if self.priority is not None and self.priority[0] == self.stage:
                    # the priority decides this green: until its cap (cancel ends it sooner)
                    self.green_end_s = at + max(self.priority[1] - at, self.min_green_s())
                elif self.priority is not None:  # on the way to the priority stage
                    self.green_end_s = at + self.plan.min_green_s[self.stage]
                else:
                    self.green_end_s = at + self._clamp(self.stage, green)
            shown.append((at, self.state))
        return shown
