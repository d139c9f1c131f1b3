"""Tests of the signal safety guard (signal_control.guard).

Property tests drive :class:`SignalGuard` with random plans and random command sequences
(set_timing, hold, force_off, skip, request_priority, cancel_priority at monotone times,
each preceded by ``advance(t)`` as the port does), rebuild the shown timeline (the state
at ``start_s``, then every ``(t, state)`` that ``advance`` returns) and check the safety
invariants on it: minimum greens, exact yellow and all-red, no green→red without yellow,
no conflicting ``G`` links, no invented states, maximum greens and priority caps, and a
fixed-time cycle when nobody sends commands. Unit tests pin the individual rules.

Plans and times are multiples of 0.25 s (exact in binary floating point), so durations
are compared to 1e-6 s.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from city_models.build import City
from city_models.plan_check import conflict_matrix
from signal_control.guard import GuardPlan, SignalGuard, UnsafePlanError

TOL = 1e-6
Q = 0.25
GREEN = frozenset("Gg")
RED = frozenset("rs")

Foes = Sequence[Sequence[bool]]
Command = tuple[Any, ...]


# --------------------------------------------------------------------------- strategies


def quarters(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Multiples of 0.25 in [lo, hi]."""
    return st.integers(math.ceil(lo / Q), math.floor(hi / Q)).map(lambda k: k * Q)


@st.composite
def plans_and_foes(
    draw: st.DrawFn, *, min_stages: int = 2, max_stages: int = 5, whole_seconds: bool = True
) -> tuple[GuardPlan, list[list[bool]]]:
    """A random plan whose stages give ``G`` only to pairwise non-foe links.

    Every stage has at least one green link, green states are distinct, and a link that
    is not green shows ``s`` if it turns right on red, else ``r`` (as in the city plans).
    Greens are whole seconds, as in real plans (the guard counts whole seconds);
    ``whole_seconds=False`` draws minimum and maximum greens in quarter seconds.
    """
    n = draw(st.integers(min_stages, max_stages))
    n_links = draw(st.integers(max(2, n), 8))
    foes = [[False] * n_links for _ in range(n_links)]
    for i in range(n_links):
        for j in range(i + 1, n_links):
            foes[i][j] = foes[j][i] = draw(st.booleans())
    ror = frozenset(draw(st.sets(st.integers(0, n_links - 1))))
    states = []
    for _ in range(n):
        chars = ["s" if i in ror else "r" for i in range(n_links)]
        hi: list[int] = []
        for i in draw(st.permutations(range(n_links))):
            ch = draw(st.sampled_from("GGg-"))
            if ch == "G" and any(foes[i][j] for j in hi):
                ch = "g"  # a foe of a G link may only go permissive
            if ch == "G":
                hi.append(i)
            if ch in GREEN:
                chars[i] = ch
        if not any(c in GREEN for c in chars):
            chars[draw(st.integers(0, n_links - 1))] = "G"
        states.append("".join(chars))
    assume(len(set(states)) == n)
    all_red = draw(quarters(1.0, 3.0))
    mins, maxs, greens = [], [], []
    for _ in range(n):
        step = 1.0 if whole_seconds else Q
        lo = draw(quarters(1.0, 30.0)) // step * step
        hi_s = max(lo + draw(quarters(0.0, 60.0)) // step * step, float(math.ceil(lo)))
        mins.append(lo)
        maxs.append(hi_s)
        # planned greens in whole seconds, as real plans (and controllers) count them
        greens.append(float(draw(st.integers(math.ceil(lo), math.floor(hi_s)))))
    plan = GuardPlan(
        tls_id="J",
        green_states=tuple(states),
        min_green_s=tuple(mins),
        max_green_s=tuple(maxs),
        green_s=tuple(greens),
        yellow_s=draw(quarters(3.0, 6.0)),
        all_red_s=all_red,
        right_on_red=ror,
        max_priority_hold_s=draw(quarters(5.0, 150.0)),
        min_all_red_s=draw(quarters(1.0, all_red)),  # the promise the all-red keeps
    )
    return plan, foes


def one_command(n_stages: int, *, value: st.SearchStrategy[float] | None = None) -> Any:
    """One random command; ``value`` overrides the numbers of set_timing and hold."""
    greens = value if value is not None else quarters(0.0, 200.0)  # below min, above max
    until = value if value is not None else quarters(-10.0, 200.0)  # relative to now
    return st.one_of(
        st.tuples(st.just("advance")),
        st.tuples(st.just("set_timing"), st.lists(greens, min_size=n_stages, max_size=n_stages)),
        st.tuples(st.just("hold"), until),
        st.tuples(st.just("force_off")),
        st.tuples(st.just("skip"), st.integers(0, n_stages - 1)),
        st.tuples(
            st.just("priority"), st.integers(0, n_stages - 1), st.none() | quarters(0.0, 150.0)
        ),
        st.tuples(st.just("cancel")),
    )


def command_lists(
    n_stages: int,
    *,
    max_dt: float = 40.0,
    max_size: int = 40,
    value: st.SearchStrategy[float] | None = None,
) -> Any:
    """(time step, command) pairs; steps of 0 issue several commands at one time."""
    return st.lists(
        st.tuples(quarters(0.0, max_dt), one_command(n_stages, value=value)), max_size=max_size
    )


# --------------------------------------------------------------------------- the runner


@dataclass
class Priority:
    """One priority request as the test saw it: active from ``t_from`` to ``t_to``."""

    stage: int
    t_from: float
    cap_s: float  # absolute hold-until cap
    t_to: float = math.inf  # cancelled or replaced


@dataclass
class Run:
    plan: GuardPlan
    guard: SignalGuard
    start_s: float
    stage0: int
    timeline: list[tuple[float, str]]
    t_end: float
    priorities: list[Priority] = field(default_factory=list)
    steering: list[float] = field(default_factory=list)  # times of skip/priority/cancel


def run_guard(
    plan: GuardPlan,
    foes: Foes | None,
    commands: Sequence[tuple[float, Command]],
    *,
    start_s: float = 0.0,
    stage0: int = 0,
    final_cancel: bool = True,
    refusals: bool = False,
) -> Run:
    """Drive a guard the way the port does (advance to now, then the command), record the
    timeline, and check the per-step contracts of every call on the way.

    ``refusals``: a set_timing with non-finite values may be refused with ValueError.
    """
    guard = SignalGuard(plan, start_s=start_s, stage=stage0, foes=foes)
    assert guard.state == plan.green_states[stage0]
    run = Run(plan, guard, start_s, stage0, [(start_s, guard.state)], start_s)
    t = start_s
    predicted = guard.next_change_s()

    def advance(to_s: float) -> None:
        nonlocal predicted
        shown = guard.advance(to_s)
        if shown:
            # next_change_s() told the truth about the next change
            assert shown[0][0] == pytest.approx(predicted, abs=TOL)
            assert guard.state == shown[-1][1]
        for at, _state in shown:
            assert run.timeline[-1][0] < at <= to_s + TOL
            run.timeline.append((at, _state))
        assert guard.next_change_s() > to_s  # nothing due is left behind
        predicted = guard.next_change_s()

    def close_priority(at: float) -> None:
        if run.priorities and run.priorities[-1].t_to == math.inf:
            run.priorities[-1].t_to = at

    for dt, cmd in commands:
        t += dt
        advance(t)
        name = cmd[0]
        n_events = len(guard.events)
        if name == "set_timing":
            asked = cmd[1]
            before = list(guard.green_s)
            try:
                given_s = guard.set_timing(t, asked)
            except ValueError:  # refusing a value it cannot use is fine, changing nothing
                assert refusals and not all(map(math.isfinite, asked))
                assert guard.green_s == before and len(guard.events) == n_events
                continue
            assert guard.green_s == given_s
            for k, (a, g) in enumerate(zip(asked, given_s, strict=True)):
                lo, hi = plan.min_green_s[k], plan.max_green_s[k]
                assert lo - TOL <= g <= hi + TOL
                # clamped to [min, max] (the guard may count whole seconds)
                assert abs(g - min(max(a, lo), hi)) <= 0.5 + TOL
            clamped = any(abs(a - g) > TOL for a, g in zip(asked, given_s, strict=True))
            assert clamped == any(e.what == "timing_clamped" for e in guard.events[n_events:])
        elif name == "hold":
            held = guard.priority is not None and guard.priority[0] == guard.stage
            before_end = guard.next_change_s()
            try:
                end = guard.hold(t, t + cmd[1])
            except ValueError:  # NaN: refused, nothing changed
                assert refusals and math.isnan(cmd[1])
                assert guard.next_change_s() == before_end
                continue
            if guard.interval == "green" and held:  # a priority green: cancel ends it
                assert guard.events[-1].what == "hold_ignored"
                assert end == guard.next_change_s()
            elif guard.interval == "green":
                assert end == guard.next_change_s()
                assert end >= guard.min_end_s() - TOL
            else:  # no green to hold during an intergreen: ignored, logged
                assert guard.events[-1].what == "hold_ignored"
                assert end == guard.next_change_s()
        elif name == "force_off":
            held = guard.priority is not None and guard.priority[0] == guard.stage
            end = guard.force_off(t)
            if guard.interval == "green" and held:
                assert guard.events[-1].what == "force_off_ignored"
                assert end == guard.next_change_s()
            elif guard.interval == "green":
                assert end == pytest.approx(max(t, guard.min_end_s()))
                assert end == guard.next_change_s()
                if end > t + TOL:
                    assert guard.events[-1].what == "force_off_deferred"
                    assert guard.events[-1].detail["until"] == end
            else:
                assert end == math.inf
        elif name == "skip":
            guard.skip(t, cmd[1])
            run.steering.append(t)
        elif name == "priority":
            stage, max_hold = cmd[1], cmd[2]
            guard.request_priority(t, stage, max_hold_s=max_hold)
            close_priority(t)
            cap = plan.max_priority_hold_s if max_hold is None else max_hold
            run.priorities.append(Priority(stage, t, t + cap))
            run.steering.append(t)
        elif name == "cancel":
            guard.cancel_priority(t)
            close_priority(t)
            run.steering.append(t)
        # a request never schedules a change in the past
        assert guard.next_change_s() >= t - TOL
        predicted = guard.next_change_s()
    if final_cancel:
        guard.cancel_priority(t)
        close_priority(t)
        run.steering.append(t)
        predicted = guard.next_change_s()
    # long enough for any green to end and the plan to run a few fixed-time cycles
    longest = max(plan.max_green_s) + plan.yellow_s + plan.all_red_s
    run.t_end = t + (2 * plan.n_stages + 4) * longest
    advance(run.t_end)
    times = [e.t_s for e in guard.events]
    assert times == sorted(times)
    return run


# --------------------------------------------------------------------------- the checks


@dataclass(frozen=True)
class Green:
    stage: int
    start_s: float
    end_s: float | None  # None: still showing at t_end


def allowed_states(plan: GuardPlan) -> set[str]:
    n = plan.n_stages
    out = set(plan.green_states)
    for a in range(n):
        for b in range(n):
            out.add(plan.show("yellow", a, b))
            out.add(plan.show("all_red", a, b))
    return out


def check_structure(run: Run) -> list[Green]:
    """Invariants 2 and 4 on the timeline, read as green, yellow, all-red, green, ...

    Returns the green intervals. Each yellow lasts exactly yellow_s, each all-red exactly
    all_red_s, both are the intergreen of the change between the greens around them, and
    every green is a green state of the plan.
    """
    plan, tl = run.plan, run.timeline
    index = {s: k for k, s in enumerate(plan.green_states)}
    allowed = allowed_states(plan)
    assert tl[0] == (run.start_s, plan.green_states[run.stage0])
    for _t, state in tl:
        assert state in allowed, f"invented state {state!r}"
    greens = []
    for i in range(0, len(tl), 3):
        t_g, state = tl[i]
        assert state in index, f"{state!r} shown as a green is no green of the plan"
        a = index[state]
        greens.append(Green(a, t_g, tl[i + 1][0] if i + 1 < len(tl) else None))
        if i + 1 >= len(tl):
            break
        t_y, yellow = tl[i + 1]
        t_ar, all_red = tl[i + 2] if i + 2 < len(tl) else (None, None)
        nxt = tl[i + 3] if i + 3 < len(tl) else None
        targets = [index[nxt[1]]] if nxt is not None and nxt[1] in index else range(plan.n_stages)
        assert any(
            yellow == plan.show("yellow", a, b)
            and (all_red is None or all_red == plan.show("all_red", a, b))
            for b in targets
        ), (a, yellow, all_red, nxt)
        if t_ar is None:
            assert run.t_end - t_y < plan.yellow_s + TOL
            continue
        assert t_ar - t_y == pytest.approx(plan.yellow_s, abs=TOL)
        if nxt is None:
            assert run.t_end - t_ar < plan.all_red_s + TOL
        else:
            assert nxt[0] - t_ar == pytest.approx(plan.all_red_s, abs=TOL)
    return greens


def check_links(run: Run) -> None:
    """Invariant 2 per link: green→red never without a yellow of exactly yellow_s, and
    a yellow is followed by red for at least all_red_s."""
    plan, tl = run.plan, run.timeline
    times = [t for t, _ in tl] + [run.t_end]

    def kind(ch: str) -> str:
        return "green" if ch in GREEN else "yellow" if ch == "y" else "red"

    for link in range(len(tl[0][1])):
        runs: list[list[Any]] = []  # [kind, start, end]
        for i, (_t, state) in enumerate(tl):
            k = kind(state[link])
            if runs and runs[-1][0] == k:
                runs[-1][2] = times[i + 1]
            else:
                runs.append([k, times[i], times[i + 1]])
        for j, (k, t0, t1) in enumerate(runs):
            last = j == len(runs) - 1
            prev = runs[j - 1][0] if j else None
            if k == "yellow":
                assert prev in (None, "green"), f"link {link}: {prev} -> yellow at {t0}"
                if last:
                    assert t1 - t0 <= plan.yellow_s + TOL
                else:
                    assert t1 - t0 == pytest.approx(plan.yellow_s, abs=TOL), (link, t0)
                    assert runs[j + 1][0] == "red", f"link {link}: yellow -> green at {t1}"
            if k == "red" and prev == "green":
                raise AssertionError(f"link {link}: green -> red without yellow at {t0}")
            if k == "red" and prev == "yellow" and not last:
                assert t1 - t0 >= plan.all_red_s - TOL, (link, t0)


def check_foes(run: Run, foes: Foes) -> None:
    """Invariant 3: no two foe links both ``G``."""
    for t, state in run.timeline:
        hi = [i for i, ch in enumerate(state) if ch == "G"]
        for a in hi:
            for b in hi:
                assert not foes[a][b], f"t={t}: links {a} and {b} are foes and both G"


def check_min_green(run: Run, greens: list[Green]) -> None:
    """Invariant 1 against the timeline and against ``served``."""
    plan = run.plan
    for g in greens:
        if g.end_s is not None:
            assert g.end_s - g.start_s >= plan.min_green_s[g.stage] - TOL, g
    by_start = {g.start_s: g for g in greens}
    for stage, start, dur in run.guard.served:
        assert dur >= plan.min_green_s[stage] - TOL
        g = by_start.get(start)
        assert g is not None and g.stage == stage, (stage, start, dur)
        # a green kept on (nothing else to serve) is served in parts from its start
        end = g.end_s if g.end_s is not None else run.t_end
        assert start + dur <= end + TOL
    for g in greens:
        if g.end_s is not None:
            assert (g.stage, g.start_s, pytest.approx(g.end_s - g.start_s)) in run.guard.served


def max_end(run: Run, g: Green, *, strict: bool) -> float:
    """Latest end allowed for green ``g`` (invariant 5): its max green, or the cap of a
    priority for its stage active during it. ``strict=False`` also allows the hold to
    last until the priority's cap (cancel ends it sooner)."""
    end = g.start_s + run.plan.max_green_s[g.stage]
    g_end = g.end_s if g.end_s is not None else run.t_end
    for p in run.priorities:
        if p.stage == g.stage and p.t_from <= g_end + TOL and p.t_to >= g.start_s - TOL:
            end = max(end, p.cap_s)  # a priority ends at its cap at the latest
    return end


def check_max_green(run: Run, greens: list[Green], *, strict: bool) -> None:
    for g in greens:
        end = g.end_s if g.end_s is not None else run.t_end  # at least this long
        assert end <= max_end(run, g, strict=strict) + TOL, (g, run.priorities)


def check_priority_goes_straight(run: Run, greens: list[Green]) -> None:
    """A green that ends while priority for another stage is active is followed by the
    priority stage (unless the controller steered again during the intergreen)."""
    for g, nxt in itertools.pairwise(greens):
        assert g.end_s is not None
        # active when the green ended: requested before, not cancelled, cap not reached
        active = [
            p
            for p in run.priorities
            if p.t_from < g.end_s - TOL and min(p.t_to, p.cap_s) > g.end_s + TOL
        ]
        steered = any(g.end_s - TOL <= t <= nxt.start_s + TOL for t in run.steering)
        if active and not steered and active[-1].stage != g.stage:
            assert nxt.stage == active[-1].stage, (g, nxt, active[-1])


def check_back_to_fixed_time(run: Run, greens: list[Green]) -> None:
    """Invariant 6 after the last command: the plan cycles with the greens in force."""
    plan = run.plan
    done = [g for g in greens if g.end_s is not None]
    n = plan.n_stages
    assert len(done) >= n
    last = done[-n:]
    for g, h in itertools.pairwise(last):
        assert h.stage == (g.stage + 1) % n
    for g in last:
        assert g.end_s is not None
        assert g.end_s - g.start_s == pytest.approx(run.guard.green_s[g.stage], abs=TOL)


def check_all(run: Run, foes: Foes, *, strict_priority: bool = False) -> None:
    greens = check_structure(run)
    check_links(run)
    check_foes(run, foes)
    check_min_green(run, greens)
    check_max_green(run, greens, strict=strict_priority)
    check_priority_goes_straight(run, greens)


# --------------------------------------------------------------------------- properties

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])  # examples: the profile's
# the documented-bug tests: deterministic, stop at the first counterexample (no shrinking)
EDGE_SETTINGS = settings(
    derandomize=True,
    phases=[Phase.generate],
    report_multiple_bugs=False,
)


@SETTINGS
@given(data=st.data())
def test_random_commands_keep_all_safety_invariants(data: st.DataObject) -> None:
    plan, foes = data.draw(plans_and_foes())
    commands = data.draw(command_lists(plan.n_stages))
    start_s = data.draw(quarters(0.0, 1000.0))
    stage0 = data.draw(st.integers(0, plan.n_stages - 1))
    run = run_guard(plan, foes, commands, start_s=start_s, stage0=stage0)
    check_all(run, foes)
    check_back_to_fixed_time(run, check_structure(run))


@given(data=st.data())
def test_without_commands_the_plan_runs_fixed_time(data: st.DataObject) -> None:
    plan, foes = data.draw(plans_and_foes(min_stages=2))
    stage0 = data.draw(st.integers(0, plan.n_stages - 1))
    start_s = data.draw(quarters(0.0, 500.0))
    cycle = sum(plan.green_s) + plan.n_stages * (plan.yellow_s + plan.all_red_s)
    horizon = start_s + 3 * cycle + 1.0
    # the timeline does not depend on how often the guard is stepped
    steps = data.draw(st.lists(quarters(0.25, 60.0), max_size=30))
    steps.append(max(horizon - start_s - sum(steps), 0.0))
    run = run_guard(
        plan,
        foes,
        [(dt, ("advance",)) for dt in steps],
        start_s=start_s,
        stage0=stage0,
        final_cancel=False,
    )
    guard = SignalGuard(plan, start_s=start_s, stage=stage0, foes=foes)
    one_step = [(start_s, guard.state), *guard.advance(horizon)]
    assert [x for x in run.timeline if x[0] <= horizon] == one_step
    greens = check_structure(run)
    check_links(run)
    check_foes(run, foes)
    check_min_green(run, greens)
    n = plan.n_stages
    done = [g for g in greens if g.end_s is not None]
    assert len(done) >= 3 * n
    for j, g in enumerate(done):
        assert g.stage == (stage0 + j) % n
        assert g.end_s is not None
        assert g.end_s - g.start_s == pytest.approx(plan.green_s[g.stage], abs=TOL)
        assert g.start_s == pytest.approx(start_s + (j // n) * cycle + _offset(plan, stage0, j))
        if j >= n:
            assert g.start_s - done[j - n].start_s == pytest.approx(cycle, abs=TOL)
    # each intergreen is the one between consecutive stages
    for i in range(1, len(run.timeline) - 2, 3):
        a = (stage0 + i // 3) % n
        assert run.timeline[i][1] == plan.show("yellow", a, (a + 1) % n)
        assert run.timeline[i + 1][1] == plan.show("all_red", a, (a + 1) % n)
    assert not run.guard.events


def _offset(plan: GuardPlan, stage0: int, j: int) -> float:
    """Start of the j-th green after the start, within its cycle."""
    n = plan.n_stages
    return sum(
        plan.green_s[(stage0 + i) % n] + plan.yellow_s + plan.all_red_s for i in range(j % n)
    )


@EDGE_SETTINGS
@given(data=st.data())
def test_priority_hold_never_exceeds_its_cap(data: st.DataObject) -> None:
    plan, foes = data.draw(plans_and_foes())
    commands = data.draw(command_lists(plan.n_stages))
    run = run_guard(plan, foes, commands, final_cancel=False)
    check_all(run, foes, strict_priority=True)


DAY_S = 86_400.0


def _apply(guard: SignalGuard, t: float, cmd: Command) -> None:
    """One random command of :func:`one_command` (refusals of bad values are fine)."""
    name = cmd[0]
    with contextlib.suppress(ValueError):
        if name == "set_timing":
            guard.set_timing(t, cmd[1])
        elif name == "hold":
            guard.hold(t, t + cmd[1])
        elif name == "force_off":
            guard.force_off(t)
        elif name == "skip":
            guard.skip(t, cmd[1])
        elif name == "priority":
            guard.request_priority(t, cmd[1], max_hold_s=cmd[2])
        elif name == "cancel":
            guard.cancel_priority(t)


@SETTINGS
@given(data=st.data())
def test_a_take_over_finishes_the_interval_in_progress(data: st.DataObject) -> None:
    """Finding 4 of issue 10: a take-over mid-cycle (any time of a day, any time already
    spent in the interval) is asked at once to end the green, skip or prioritize. The
    green in progress still lasts its minimum from its real start and ends in its yellow;
    a yellow or all-red in progress is finished at its full length; nothing is skipped."""
    plan, foes = data.draw(plans_and_foes())
    start = data.draw(quarters(0.0, DAY_S))
    stage = data.draw(st.integers(0, plan.n_stages - 1))
    interval = data.draw(st.sampled_from(["green", "yellow", "all_red"]))
    length = {"green": math.inf, "yellow": plan.yellow_s, "all_red": plan.all_red_s}[interval]
    elapsed = data.draw(quarters(0.0, min(2 * DAY_S, length - Q)))
    guard = SignalGuard(plan, start_s=start, foes=foes, stage=stage, elapsed_s=elapsed,
                        interval=interval)  # type: ignore[arg-type]  # fmt: skip
    began = start - elapsed
    timeline = [(began, guard.state)]  # the interval in progress began before the take-over
    t = start
    for dt, cmd in data.draw(command_lists(plan.n_stages, max_dt=5.0, max_size=8)):
        t += dt
        timeline += guard.advance(t)
        _apply(guard, t, cmd)
        assert guard.next_change_s() >= t - TOL
    guard.cancel_priority(t)
    t_end = t + (2 * plan.n_stages + 4) * (max(plan.max_green_s) + plan.yellow_s + plan.all_red_s)
    timeline += guard.advance(t_end)
    first_change, first_shown = timeline[1]
    nxt = (stage + 1) % plan.n_stages
    # the green after an intergreen in progress: the plan's next stage, or the one a skip
    # re-aimed the change to, which is allowed only where its lamps are the same
    k_green = 2 if interval == "yellow" else 1
    target = nxt
    if interval != "green" and timeline[k_green][1] != plan.green_states[nxt]:
        target = next(
            k for k, g in enumerate(plan.green_states)
            if g == timeline[k_green][1] and plan.show(interval, stage, k) == timeline[0][1]
        )  # fmt: skip
    if interval == "green":
        assert timeline[0][1] == plan.green_states[stage]
        assert first_change >= max(began + plan.min_green_s[stage], start) - TOL
        assert first_shown in {plan.show("yellow", stage, b) for b in range(plan.n_stages)}
    elif interval == "yellow":
        assert (
            timeline[0][1] == plan.show("yellow", stage, nxt) == plan.show("yellow", stage, target)
        )
        assert first_change == pytest.approx(began + plan.yellow_s, abs=TOL)
        assert first_shown == plan.show("all_red", stage, target)
    else:
        assert (
            timeline[0][1]
            == plan.show("all_red", stage, nxt)
            == plan.show("all_red", stage, target)
        )
        assert first_change == pytest.approx(began + plan.all_red_s, abs=TOL)
        assert first_shown == plan.green_states[target]
    run = Run(plan, guard, began, stage, timeline, t_end)
    check_links(run)  # no green -> red without yellow, yellows exact, all-reds in full
    check_foes(run, foes)
    if interval == "green":
        check_min_green(run, check_structure(run))  # the first green from its real start
    else:
        rest = Run(plan, guard, timeline[k_green][0], target, timeline[k_green:], t_end)
        check_min_green(rest, check_structure(rest))


def test_a_skip_in_a_taken_over_yellow_re_aims_it_only_where_the_lamps_agree() -> None:
    """Found by the property above (CI): taken over in the yellow of stage 3 -> 0, a skip
    to stage 2, whose change from 3 shows the same yellow, re-aims it: the yellow and
    all-red run in full, then stage 2's green."""
    greens = ("GgrGgG", "GgGGGg", "gGrGgG", "ggGGGg")
    plan = GuardPlan(tls_id="J", green_states=greens, min_green_s=(1.0,) * 4,
                     max_green_s=(1.0,) * 4, green_s=(1.0,) * 4, yellow_s=3.0, all_red_s=1.0,
                     max_priority_hold_s=5.0, min_all_red_s=1.0)  # fmt: skip
    rows = ("010000", "101000", "010000", "000000", "000001", "000010")
    foes = [[c == "1" for c in row] for row in rows]
    assert plan.show("yellow", 3, 0) == plan.show("yellow", 3, 2)
    guard = SignalGuard(plan, start_s=0.0, foes=foes, stage=3, elapsed_s=0.0,
                        interval="yellow")  # fmt: skip
    _apply(guard, 0.0, ("skip", 2))
    timeline = [(0.0, guard.state), *guard.advance(10.0)]
    assert timeline[:3] == [(0.0, plan.show("yellow", 3, 0)), (3.0, plan.show("all_red", 3, 2)),
                            (4.0, greens[2])]  # fmt: skip


@pytest.mark.parametrize(("interval", "elapsed"), [("yellow", 3.0), ("all_red", 2.5), ("x", 0)])
def test_a_take_over_of_a_finished_or_unknown_interval_is_refused(
    interval: str, elapsed: float
) -> None:
    with pytest.raises(ValueError, match=r"cannot be taken over|allowed: green, yellow"):
        make_guard(make_plan(), start_s=0.0, interval=interval, elapsed_s=elapsed)


@EDGE_SETTINGS
@given(data=st.data())
def test_accepted_greens_are_served_as_accepted(data: st.DataObject) -> None:
    plan, foes = data.draw(plans_and_foes(whole_seconds=False))
    asked = data.draw(
        st.lists(quarters(0.0, 100.0), min_size=plan.n_stages, max_size=plan.n_stages)
    )
    guard = SignalGuard(plan, start_s=0.0, foes=foes)
    accepted = guard.set_timing(0.0, asked)
    assert guard.set_timing(0.0, accepted) == accepted  # accepting is idempotent
    guard.advance(2 * sum(plan.max_green_s) + 20.0)
    for stage, start, dur in guard.served:
        if start > 0.0:  # greens entered after the new timing
            assert dur == pytest.approx(accepted[stage], abs=TOL), (stage, start)


@EDGE_SETTINGS
@given(data=st.data())
def test_non_finite_requests_are_clamped_or_refused(data: st.DataObject) -> None:
    plan, foes = data.draw(plans_and_foes())
    value = st.sampled_from([math.nan, math.inf, -math.inf]) | quarters(-10.0, 200.0)
    commands = data.draw(command_lists(plan.n_stages, value=value))
    run = run_guard(plan, foes, commands, refusals=True)
    check_all(run, foes)


# --------------------------------------------------------------------------- real city


def plans_of_city(city: City) -> list[tuple[GuardPlan, Foes]]:
    """A GuardPlan per signal of the city, from its manifest phases, with the conflict
    matrix the run gives the guard (the net's foes plus turns into one exit edge)."""
    out = []
    for sig in city.manifest.signals:
        greens = [p for p in sig.phases if p.kind == "green"]
        yellows = {p.duration_s for p in sig.phases if p.kind == "yellow"}
        all_reds = {p.duration_s for p in sig.phases if p.kind == "all_red"}
        assert len(yellows) == len(all_reds) == 1, sig.id
        plan = GuardPlan(
            tls_id=sig.id,
            green_states=tuple(p.state for p in greens),
            min_green_s=tuple(p.min_green_s for p in greens),
            max_green_s=tuple(p.max_green_s for p in greens),
            green_s=tuple(p.duration_s for p in greens),
            yellow_s=yellows.pop(),
            all_red_s=all_reds.pop(),
            right_on_red=frozenset(
                i for p in sig.phases for i, ch in enumerate(p.state) if ch == "s"
            ),
            offset_s=sig.offset_s,
            ped_min_green_s=tuple(p.ped_min_green_s for p in greens),
        )
        out.append((plan, conflict_matrix(city.net.tls[sig.id])))
    return out


def test_real_plans_are_safe_and_run_as_designed(district_city: City) -> None:
    """Every real plan passes the foe check, its minimum holds the pedestrian minimum, and
    with no commands the guard shows exactly the designed phases with their durations."""
    signals = {s.id: s for s in district_city.manifest.signals}
    pairs = plans_of_city(district_city)
    assert len(pairs) == len(signals) >= 30
    for plan, foes in pairs:
        sig = signals[plan.tls_id]
        plan.check(foes)
        for p in sig.phases:
            if p.kind == "green":
                assert p.min_green_s >= p.ped_min_green_s
        guard = SignalGuard(plan, start_s=0.0, foes=foes)
        shown = [(0.0, guard.state), *guard.advance(3 * sig.cycle_s)]
        assert len(shown) == 3 * len(sig.phases) + 1
        t = 0.0
        for i, (at, state) in enumerate(shown):
            phase = sig.phases[i % len(sig.phases)]
            assert state == phase.state, (plan.tls_id, i)
            assert at == pytest.approx(t)
            t += phase.duration_s
        cycle = sum(plan.green_s) + plan.n_stages * (plan.yellow_s + plan.all_red_s)
        assert cycle == pytest.approx(sig.cycle_s)


def random_commands(rng: random.Random, n_stages: int, size: int) -> list[tuple[float, Command]]:
    """Like :func:`command_lists`, from a seeded generator (one list per real signal)."""

    def qt(lo: float, hi: float) -> float:
        return rng.randint(math.ceil(lo / Q), math.floor(hi / Q)) * Q

    out: list[tuple[float, Command]] = []
    for _ in range(size):
        name = rng.choice(
            ["advance", "set_timing", "hold", "force_off", "skip", "priority", "cancel"]
        )
        cmd: Command
        if name == "set_timing":
            cmd = (name, [qt(0.0, 200.0) for _ in range(n_stages)])
        elif name == "hold":
            cmd = (name, qt(-10.0, 200.0))
        elif name == "skip":
            cmd = (name, rng.randrange(n_stages))
        elif name == "priority":
            cmd = (name, rng.randrange(n_stages), rng.choice([None, qt(0.0, 150.0)]))
        else:
            cmd = (name,)
        out.append((rng.choice([0.0, qt(0.0, 60.0)]), cmd))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_commands_on_every_real_signal(district_city: City, seed: int) -> None:
    rng = random.Random(seed)
    for plan, foes in plans_of_city(district_city):
        commands = random_commands(rng, plan.n_stages, rng.randint(0, 40))
        stage0 = rng.randrange(plan.n_stages)
        run = run_guard(plan, foes, commands, start_s=100.0, stage0=stage0)
        check_all(run, foes)
        check_back_to_fixed_time(run, check_structure(run))


# --------------------------------------------------------------------------- unit tests


def make_plan(**kw: Any) -> GuardPlan:
    """Four stages over four links; each stage gives G to one link, link 3 turns right on
    red. Greens 20 s (min 10, max 40), yellow 3 s, all-red 2 s."""
    base: dict[str, Any] = {
        "tls_id": "U",
        "green_states": ("Grrs", "rGrs", "rrGs", "rrrG"),
        "min_green_s": (10.0,) * 4,
        "max_green_s": (40.0,) * 4,
        "green_s": (20.0,) * 4,
        "yellow_s": 3.0,
        "all_red_s": 2.0,
        "right_on_red": frozenset({3}),
        "max_priority_hold_s": 120.0,
    }
    base.update(kw)
    return GuardPlan(**base)


ALL_FOES = [[i != j for j in range(4)] for i in range(4)]


def tight_foes(plan: GuardPlan) -> list[list[bool]]:
    """The most conflicting relation the plan allows: two links are foes unless some
    stage gives both of them ``G``."""
    n = len(plan.green_states[0])
    together = {(a, b) for s in plan.green_states for a, ca in enumerate(s) for b, cb in
                enumerate(s) if ca == cb == "G"}  # fmt: skip
    return [[i != j and (i, j) not in together for j in range(n)] for i in range(n)]


def make_guard(plan: GuardPlan, **kw: Any) -> SignalGuard:
    """A guard over ``plan`` with the tightest foes the plan allows."""
    return SignalGuard(plan, foes=tight_foes(plan), **kw)


def greens_of(guard: SignalGuard, shown: list[tuple[float, str]]) -> list[tuple[float, int]]:
    index = {s: k for k, s in enumerate(guard.plan.green_states)}
    return [(t, index[s]) for t, s in shown if s in index]


def test_conflicting_priority_greens_are_always_refused() -> None:
    """Finding 1 of issue 10: a guard without foes accepted any plan. The foes are now
    required, and a plan is judged against them whatever the caller."""
    bad = make_plan(green_states=("GGrs", "rrGs", "rrrG", "Grrs"))
    with pytest.raises(UnsafePlanError, match="conflicting links 0 and 1"):
        bad.check(ALL_FOES)
    with pytest.raises(UnsafePlanError):
        SignalGuard(bad, start_s=0.0, foes=ALL_FOES)
    with pytest.raises(TypeError, match="foes"):
        SignalGuard(bad, start_s=0.0)  # type: ignore[call-arg]
    with pytest.raises(UnsafePlanError, match="no conflict matrix"):
        SignalGuard(bad, start_s=0.0, foes=None)  # type: ignore[arg-type]
    with pytest.raises(UnsafePlanError, match="3 characters; the signal has 4 links"):
        make_plan(green_states=("GGr", "rrG", "rrr", "Grr"), right_on_red=frozenset()).check(
            ALL_FOES
        )
    # links that truly do not conflict may share the G
    no_foes = [[False] * 4 for _ in range(4)]
    SignalGuard(bad, start_s=0.0, foes=no_foes)
    # a permissive g may share the green with a foe: it yields
    SignalGuard(make_plan(green_states=("Ggrs", "rGrs", "rrGs", "rrrG")), start_s=0, foes=ALL_FOES)


@pytest.mark.parametrize(
    ("yellow", "all_red", "needle"),
    [
        (2.9, 2.0, "yellow_s must be >= 3"),
        (0.0, 2.0, "yellow_s must be >= 3"),
        (1.0, 2.0, "yellow_s must be >= 3"),
        (3.0, 1.0, "all_red_s must be >= the promised 2"),  # finding 3 of issue 10
        (3.0, 1.5, "all_red_s must be >= the promised 2"),
        (3.0, 0.5, "all_red_s must be >= the promised 2"),
        (3.0, 0.0, "all_red_s must be >= the promised 2"),
    ],
)
def test_short_intergreens_are_refused(yellow: float, all_red: float, needle: str) -> None:
    with pytest.raises(UnsafePlanError, match=needle):
        make_guard(make_plan(yellow_s=yellow, all_red_s=all_red), start_s=0.0)


def test_an_all_red_promise_below_one_second_is_no_promise() -> None:
    with pytest.raises(UnsafePlanError, match="min_all_red_s must be >= 1"):
        make_plan(all_red_s=0.5, min_all_red_s=0.5).check(ALL_FOES)


def test_shortest_legal_intergreens_are_accepted() -> None:
    guard = SignalGuard(make_plan(yellow_s=3.0, all_red_s=2.0), start_s=0.0, foes=ALL_FOES)
    assert [t for t, _ in guard.advance(26.0)] == [20.0, 23.0, 25.0]
    # a city that promises 1 s may run 1 s
    plan = make_plan(yellow_s=3.0, all_red_s=1.0, min_all_red_s=1.0)
    guard = SignalGuard(plan, start_s=0.0, foes=ALL_FOES)
    assert [t for t, _ in guard.advance(25.0)] == [20.0, 23.0, 24.0]


@pytest.mark.parametrize("ped", [10.5, 30.0])
def test_min_green_below_the_pedestrian_minimum_is_refused(ped: float) -> None:
    """Finding 3 of issue 10: pedestrian minimums were trusted, not checked."""
    plan = make_plan(ped_min_green_s=(0.0, ped, 0.0, 0.0))
    with pytest.raises(UnsafePlanError, match="stage 1 min_green_s 10 s is below its pedestrian"):
        make_guard(plan, start_s=0.0)
    make_guard(make_plan(ped_min_green_s=(0.0, 10.0, 0.0, 0.0)), start_s=0.0)


@pytest.mark.parametrize(
    ("mins", "maxs"),
    [((10.0, 50.0, 10.0, 10.0), (40.0, 40.0, 40.0, 40.0)), ((0.0,) * 4, (40.0,) * 4)],
)
def test_bad_green_bounds_are_refused(mins: tuple[float, ...], maxs: tuple[float, ...]) -> None:
    with pytest.raises(UnsafePlanError, match="min_green_s <= max_green_s"):
        make_guard(make_plan(min_green_s=mins, max_green_s=maxs), start_s=0.0)


def test_malformed_plans_and_requests_are_refused() -> None:
    with pytest.raises(UnsafePlanError, match="at least one green"):
        make_plan(green_states=()).check(ALL_FOES)
    with pytest.raises(UnsafePlanError, match="differ in length"):
        make_plan(green_states=("Grrs", "rGr", "rrGs", "rrrG")).check(ALL_FOES)
    with pytest.raises(UnsafePlanError, match="green_s has 3 values"):
        make_plan(green_s=(20.0,) * 3).check(ALL_FOES)
    with pytest.raises(ValueError, match="out of range"):
        make_guard(make_plan(), start_s=0.0, stage=4)
    guard = make_guard(make_plan(), start_s=0.0)
    with pytest.raises(ValueError, match="3 greens given"):
        guard.set_timing(1.0, [20.0] * 3)
    with pytest.raises(ValueError, match="no stage 4"):
        guard.skip(1.0, 4)


def test_intergreen_yellows_only_links_losing_green() -> None:
    plan = make_plan(green_states=("GGrs", "rGGs", "grrG", "rrGs"))
    foes = [[False, False, True, True], [False, False, False, True],
            [True, False, False, True], [True, True, True, False]]  # fmt: skip
    guard = SignalGuard(plan, start_s=0.0, foes=foes)
    shown = guard.advance(25.0)
    # link 1 stays green through the change 0 -> 1; link 3 shows s (right on red)
    assert shown == [(20.0, "yGrs"), (23.0, "rGrs"), (25.0, "rGGs")]
    shown = guard.advance(49.0)
    assert shown == [(45.0, "ryys"), (48.0, "rrrs")]
    # G in one stage and g in the next is kept green, shown permissive
    assert plan.show("yellow", 2, 0) == "grry" and plan.show("all_red", 2, 0) == "grrs"


def test_force_off_before_min_green_is_deferred_and_logged() -> None:
    guard = make_guard(make_plan(), start_s=100.0)
    assert guard.force_off(104.0) == 110.0
    ev = guard.events[-1]
    assert (ev.t_s, ev.what, ev.detail) == (104.0, "force_off_deferred", {"until": 110.0})
    assert guard.advance(109.9) == []
    assert guard.advance(110.0) == [(110.0, "yrrs")]
    # after its minimum, a force-off ends the green at once, without a log line
    guard.advance(130.0)
    n_events = len(guard.events)
    assert guard.force_off(130.0) == 130.0  # stage 1 entered at 115, min reached at 125
    assert len(guard.events) == n_events
    assert guard.advance(130.0) == [(130.0, "ryrs")]
    # during an intergreen there is nothing to force off
    assert guard.force_off(131.0) == math.inf


def test_hold_is_capped_at_max_green_and_deferred_during_intergreen() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    assert guard.hold(5.0, 500.0) == 40.0
    assert guard.events[-1].what == "hold_capped"
    assert guard.hold(6.0, 1.0) == 10.0  # never below the minimum
    assert guard.hold(8.0, 30.0) == 30.0
    assert guard.advance(31.0) == [(30.0, "yrrs")]
    assert guard.hold(31.0, 60.0) == 33.0  # the yellow's end: nothing to hold
    assert guard.events[-1].what == "hold_ignored"
    assert guard.advance(50.0)[-1] == (35.0, "rGrs")  # the new green: its planned 20 s
    assert guard.next_change_s() == 55.0


def test_set_timing_clamps_and_applies_from_the_next_green() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    assert guard.set_timing(1.0, [5.0, 100.0, 25.0, 10.0]) == [10.0, 40.0, 25.0, 10.0]
    assert guard.events[-1].what == "timing_clamped"
    assert guard.next_change_s() == 20.0  # the green now showing keeps its end
    shown = guard.advance(200.0)
    assert greens_of(guard, shown)[:4] == [(25.0, 1), (70.0, 2), (100.0, 3), (115.0, 0)]


def test_skip_during_green_goes_straight_to_the_stage() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    guard.skip(5.0, 2)
    shown = guard.advance(100.0)
    assert shown[:3] == [(20.0, "yrrs"), (23.0, "rrrs"), (25.0, "rrGs")]
    assert [k for _t, k in greens_of(guard, shown)][:3] == [2, 3, 0]


def test_skip_during_all_red_keeps_the_stage_being_entered_and_is_served_after() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    assert guard.advance(23.5)[-1] == (23.0, "rrrs")  # all-red 0 -> 1
    guard.skip(23.5, 3)
    assert guard.events[-1].what == "skip_after_next_green"
    shown = guard.advance(200.0)
    # stage 1 is entered as announced, then stage 3 (stage 2 skipped), then the cycle
    assert [k for _t, k in greens_of(guard, shown)][:4] == [1, 3, 0, 1]
    assert greens_of(guard, shown)[0] == (25.0, 1)
    assert greens_of(guard, shown)[1] == (50.0, 3)


def test_skip_during_yellow_retargets_only_if_the_yellow_is_the_same() -> None:
    # stages 1 and 2 both keep link 0 off and take link 1's green: same yellow from 0
    plan = make_plan(green_states=("GGrs", "rGGs", "rGrG", "rrGs"))
    guard = make_guard(plan, start_s=0.0)
    guard.advance(21.0)
    assert guard.state == "yGrs"
    guard.skip(21.0, 2)  # yellow 0 -> 2 is 'yGrs' as well: retarget
    assert guard.advance(30.0) == [(23.0, "rGrs"), (25.0, "rGrG")]
    guard.advance(46.0)
    assert guard.state == plan.show("yellow", 2, 3) == "ryry"
    guard.skip(46.0, 0)  # yellow 2 -> 0 differs: 0 is served after the next green
    shown = guard.advance(200.0)
    assert [k for _t, k in greens_of(guard, shown)][:2] == [3, 0]


def test_priority_skips_to_the_stage_holds_it_and_cancel_resumes() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    guard.request_priority(2.0, 2, max_hold_s=100.0)
    # the current green ends at its minimum, then straight to stage 2 (1 skipped)
    assert guard.advance(15.0) == [(10.0, "yrrs"), (13.0, "rrrs"), (15.0, "rrGs")]
    assert guard.events[-1].what == "force_off_deferred"
    # held: force-off, hold and the stage's max green do not end it
    guard.force_off(30.0)
    assert guard.advance(90.0) == []
    assert guard.next_change_s() == 102.0  # the cap: 2 + 100
    guard.cancel_priority(90.0)
    assert guard.events[-1].what == "priority_cancelled"
    shown = guard.advance(200.0)
    # the held green ends at the cancel, and the sequence resumes after stage 2
    assert shown[0] == (90.0, "rrys")
    assert [k for _t, k in greens_of(guard, shown)][:3] == [3, 0, 1]
    served = {(s, start): dur for s, start, dur in guard.served}
    assert served[(0, 0.0)] == 10.0 and served[(2, 15.0)] == 75.0


def test_priority_for_the_current_stage_extends_it() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    guard.request_priority(5.0, 0, max_hold_s=60.0)
    assert guard.next_change_s() == 65.0
    guard.cancel_priority(30.0)
    assert guard.next_change_s() == 30.0
    assert guard.advance(30.0) == [(30.0, "yrrs")]


def test_priority_requested_during_intergreen_passes_the_next_green_at_its_minimum() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    guard.advance(24.0)  # all-red 0 -> 1
    guard.request_priority(24.0, 3, max_hold_s=50.0)
    shown = guard.advance(60.0)
    assert greens_of(guard, shown) == [(25.0, 1), (40.0, 3)]  # stage 1 for 10 s only


def test_single_stage_plan_stays_green() -> None:
    plan = make_plan(
        green_states=("GG",),
        min_green_s=(5.0,),
        max_green_s=(10.0,),
        green_s=(8.0,),
        right_on_red=frozenset(),
    )
    guard = SignalGuard(plan, start_s=0.0, foes=[[False, False], [False, False]])
    assert guard.advance(1000.0) == []
    assert guard.state == "GG"


def test_priority_hold_ends_at_its_cap_without_cancel() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    guard.request_priority(2.0, 2, max_hold_s=30.0)  # cap at t = 32
    shown = guard.advance(200.0)
    assert shown[:3] == [(10.0, "yrrs"), (13.0, "rrrs"), (15.0, "rrGs")]
    assert shown[3] == (32.0, "rrys")  # actually: stage 2 stays green for ever
    assert [k for _t, k in greens_of(guard, shown)][:3] == [2, 3, 0]


@pytest.mark.parametrize("stage", [4, -1])
def test_rejected_priority_request_leaves_the_guard_unchanged(stage: int) -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    with pytest.raises(ValueError, match="no stage"):
        guard.request_priority(5.0, stage)
    assert guard.priority is None
    shown = guard.advance(100.0)
    assert [k for _t, k in greens_of(guard, shown)][:3] == [1, 2, 3]


def test_nan_hold_does_not_freeze_the_green() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    with contextlib.suppress(ValueError):
        guard.hold(5.0, math.nan)
    assert math.isfinite(guard.next_change_s())
    assert guard.advance(200.0)  # the signal keeps cycling


def test_nan_timing_is_refused_or_never_freezes_the_green() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    try:
        guard.set_timing(5.0, [math.nan] * 4)
    except ValueError:
        assert guard.green_s == [20.0] * 4
    guard.advance(25.0)  # stage 1 starts with whatever green was accepted
    assert math.isfinite(guard.next_change_s())
    assert len(guard.advance(200.0)) >= 3 * 4


def test_infinite_timing_is_clamped() -> None:
    guard = make_guard(make_plan(), start_s=0.0)
    assert guard.set_timing(5.0, [math.inf, -math.inf, 20.0, 20.0]) == [40.0, 10.0, 20.0, 20.0]
