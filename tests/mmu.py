"""An independent conflict monitor (MMU) over what the signals actually showed.

A real signal cabinet carries a malfunction management unit that watches the lamps,
apart from the controller, and trips when they show something unsafe. This module is
that watcher for the twin's tests: it reads SUMO's own record of every signal state
(a ``SaveTLSStates`` output, one ``<tlsState>`` per signal and step) and the network,
and reports every

- ``conflict``: two links that cross or merge both showing ``G`` (priority green);
- ``no_yellow``: a link going from green straight to red;
- ``short_yellow``: a yellow shorter than :data:`YELLOW_MIN_S`; ``yellow_to_green``: a
  yellow that does not end in red;
- ``clearance``: a link getting green while a conflicting link is yellow, or sooner
  than the city's all-red promise after that link's yellow ended;
- ``short_green``: a green stage shown for less than its minimum (the larger of the
  vehicle and the pedestrian minimum);
- ``state``/``record_gap``: a state that does not fit the signal, a step missing.

It is written apart from the guard on purpose (it does not import
:mod:`signal_control.guard` or the port) and knows nothing of how the states were
produced, so it checks the guard, SUMO's own programs and a hand-back alike. Live
mode's controller emulator can reuse it: :func:`check_timeline` takes any timeline of
``(t_s, state)`` at a fixed step, and :class:`SignalRules` can be built from any net.

The first interval of a record started before the record did. When the record's first
state is the one the signal's own program shows at that time (SUMO starts each program
at its offset, as if it had run before), that interval is credited with the time the
program had already spent in it (:func:`program_credits`); otherwise the signal is taken
as starting fresh at the record's first step. Intervals still running at the end are
counted as ``censored`` and not judged.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from city_models.manifest import SignalSpec
from city_models.net import NetInfo

YELLOW_MIN_S = 3.0
ALL_RED_PROMISE_S = 2.0  # when a city does not say
GREEN = frozenset("Gg")
RED = frozenset("rs")
KNOWN = frozenset("Ggyrs")
TOL_S = 1e-6
MAX_VIOLATIONS_LISTED = 40


@dataclass(frozen=True)
class SignalRules:
    """What the monitor checks at one signal.

    Attributes
    ----------
    conflicts
        ``conflicts[i]``: the links that may never show ``G`` together with link ``i``
        and that need a clearance after link ``i``'s yellow (they cross it, or enter the
        same exit edge from another approach).
    min_green_s
        Green stage state -> its minimum green (vehicle and pedestrian, the larger).
    """

    tls_id: str
    n_links: int
    conflicts: tuple[frozenset[int], ...]
    min_green_s: Mapping[str, float]
    yellow_min_s: float = YELLOW_MIN_S
    clearance_min_s: float = ALL_RED_PROMISE_S


@dataclass(frozen=True)
class Violation:
    tls_id: str
    t_s: float
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.tls_id} t={self.t_s:g}: {self.rule}: {self.detail}"


@dataclass
class Counts:
    """What was checked (a clean report with nothing checked proves nothing)."""

    signals: int = 0
    signal_steps: int = 0
    greens: int = 0  # green stages ended and judged against their minimum
    yellows: int = 0  # link yellows ended and judged
    all_reds: int = 0  # green onsets that followed a conflicting link's yellow (clearances)
    censored: int = 0  # intervals still running at the end of the record
    credited: int = 0  # signals whose first interval got the program's elapsed time

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)

    def add(self, other: Report) -> None:
        self.violations += other.violations
        self.counts.add(other.counts)

    def by_rule(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.violations:
            out[v.rule] = out.get(v.rule, 0) + 1
        return out

    def summary(self) -> str:
        c = self.counts
        head = (
            f"{len(self.violations)} violation(s) {self.by_rule()} in {c.signals} signals, "
            f"{c.signal_steps} signal-steps: {c.greens} greens, {c.yellows} yellows, "
            f"{c.all_reds} all-reds (clearances) checked, {c.censored} censored, "
            f"{c.credited} first intervals credited"
        )
        listed = [f"  {v}" for v in self.violations[:MAX_VIOLATIONS_LISTED]]
        if len(self.violations) > MAX_VIOLATIONS_LISTED:
            listed.append(f"  ... and {len(self.violations) - MAX_VIOLATIONS_LISTED} more")
        return "\n".join([head, *listed])

    def assert_clean(self, *, min_greens: int = 1, min_yellows: int = 1) -> None:
        """No violation, and enough was checked to mean something."""
        assert not self.violations, self.summary()
        assert self.counts.greens >= min_greens, self.summary()
        assert self.counts.yellows >= min_yellows, self.summary()


# --------------------------------------------------------------------------- rules


def rules_from_net(
    net: NetInfo, signals: Iterable[SignalSpec], *, clearance_min_s: float = ALL_RED_PROMISE_S
) -> dict[str, SignalRules]:
    """The monitor's rules for each signal: conflicts from the net (its ``<request>``
    foes plus turns into one exit edge from different approaches), minimum greens from
    the signal's plan (the larger of the vehicle and pedestrian minimums)."""
    out: dict[str, SignalRules] = {}
    for sig in signals:
        tls = net.tls[sig.id]
        links = tls.links
        n = len(links)
        conflicts = []
        for i in range(n):
            row = {
                j
                for j in range(n)
                if j != i
                and (
                    tls.foes[i][j]
                    or tls.foes[j][i]
                    or (
                        links[i].to_edge == links[j].to_edge
                        and links[i].from_edge != links[j].from_edge
                    )
                )
            }
            conflicts.append(frozenset(row))
        mins: dict[str, float] = {}
        for p in sig.phases:
            if p.kind == "green":
                m = max(p.min_green_s, p.ped_min_green_s)
                mins[p.state] = max(mins.get(p.state, 0.0), m)
        out[sig.id] = SignalRules(
            tls_id=sig.id,
            n_links=n,
            conflicts=tuple(conflicts),
            min_green_s=mins,
            clearance_min_s=clearance_min_s,
        )
    return out


def city_rules(city: Any) -> dict[str, SignalRules]:
    """:func:`rules_from_net` for a :class:`city_models.build.City` (promise: its
    preset's ``all_red_s``)."""
    promise = float(city.manifest.params.get("all_red_s", ALL_RED_PROMISE_S))
    return rules_from_net(city.net, city.manifest.signals, clearance_min_s=promise)


# --------------------------------------------------------------------------- SUMO's record


def recorder_xml(tls_ids: Iterable[str], dest: Path) -> str:
    """A SUMO additional that writes every listed signal's state every step to ``dest``."""
    events = "".join(
        f'    <timedEvent type="SaveTLSStates" source="{t}" dest="{dest}"/>\n' for t in tls_ids
    )
    return f"<additional>\n{events}</additional>\n"


def write_recorder(path: Path, tls_ids: Iterable[str], dest: Path) -> Path:
    """Write :func:`recorder_xml` to ``path`` (pass it as an extra additional file)."""
    path.write_text(recorder_xml(tls_ids, dest), encoding="utf-8")
    return path


RECORDER_FILE = "tls_states.add.xml"
RECORD_FILE = "tls_states.xml"


def recorder_for(city: Any, run_dir: Path) -> tuple[Path, Path]:
    """A recorder of every signal of ``city`` for a run in ``run_dir``: the additional
    file to pass as ``extra_additional`` and the record SUMO will write."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = run_dir / RECORD_FILE
    ids = [s.id for s in city.manifest.signals]
    return write_recorder(run_dir / RECORDER_FILE, ids, record), record


def read_tls_states(path: Path) -> dict[str, list[tuple[float, str]]]:
    """SUMO's ``SaveTLSStates`` output: per signal, ``(t_s, state)`` for every step."""
    out: dict[str, list[tuple[float, str]]] = {}
    for _event, el in ET.iterparse(path, events=("end",)):
        if el.tag == "tlsState":
            out.setdefault(el.attrib["id"], []).append(
                (float(el.attrib["time"]), el.attrib["state"])
            )
            el.clear()
    return out


def program_position(
    phases: Sequence[tuple[str, float]], offset_s: float, t_s: float
) -> tuple[str, float]:
    """Where a fixed-time program stands at ``t_s`` by SUMO's rule (cycle position
    ``(t_s - offset) mod cycle``): the state shown and the seconds already spent in it."""
    cycle = sum(d for _s, d in phases)
    pos = (t_s - offset_s) % cycle
    for state, duration in phases:
        if pos < duration:
            return state, pos
        pos -= duration
    return phases[0][0], 0.0


def program_credits(
    net: NetInfo, signals: Iterable[SignalSpec], t0_s: float
) -> dict[str, tuple[str, float]]:
    """Per signal: the state its own program (the net's) shows at ``t0_s`` and the time
    already spent in that phase, rounded up to whole seconds (SUMO switches on whole
    steps, so a phase begun at a fractional offset is seen from the step before)."""
    out = {}
    for sig in signals:
        phases = [(p.state, p.duration_s) for p in net.tls[sig.id].phases]
        state, spent = program_position(phases, sig.offset_s, t0_s)
        out[sig.id] = (state, float(math.ceil(spent - TOL_S)))
    return out


# --------------------------------------------------------------------------- the check


def _kind(ch: str) -> str:
    return "green" if ch in GREEN else "yellow" if ch == "y" else "red"


def check_timeline(
    rules: SignalRules,
    timeline: Sequence[tuple[float, str]],
    *,
    step_s: float = 1.0,
    credit: tuple[str, float] | None = None,
) -> Report:
    """Check one signal's timeline: ``(t_s, state)`` for every step, each state shown
    for one step from its time. ``credit``: ``(state, seconds)``, the first interval
    began that long before the record if the record starts in that state."""
    rep = Report()
    c = rep.counts
    tid, n = rules.tls_id, rules.n_links
    if not timeline:
        return rep
    c.signals = 1
    bad = rep.violations.append
    t0, first = timeline[0]
    spent = credit[1] if credit is not None and credit[0] == first else 0.0
    c.credited += int(spent > 0)
    run_start = [t0] * n  # start of each link's current green/yellow/red run
    known = [True] * n  # the run's start is known (not before the record)
    for i, ch in enumerate(first[:n]):
        if spent > 0:
            run_start[i] = t0 - spent
        elif ch == "y":
            known[i] = False  # a yellow already running when the record began
    yellow_end = [-math.inf] * n
    red_since = [t0 if ch in RED else -math.inf for ch in first[:n]]
    stage_start = t0 - spent
    conflict_cache: dict[str, list[tuple[int, int]]] = {}

    def conflicts_of(state: str) -> list[tuple[int, int]]:
        found = conflict_cache.get(state)
        if found is None:
            hi = [i for i, ch in enumerate(state) if ch == "G"]
            found = [
                (a, b) for x, a in enumerate(hi) for b in hi[x + 1 :] if b in rules.conflicts[a]
            ]
            conflict_cache[state] = found
        return found

    def check_state(t: float, state: str) -> bool:
        if len(state) != n or not set(state) <= KNOWN:
            bad(Violation(tid, t, "state", f"{state!r} does not fit {n} links of G g y r s"))
            return False
        pairs = conflicts_of(state)
        if pairs:
            bad(Violation(tid, t, "conflict", f"links {pairs[:4]} both G in {state!r}"))
        return True

    ok = check_state(t0, first)
    prev_t, prev = t0, first
    c.signal_steps += 1
    for t, state in timeline[1:]:
        c.signal_steps += 1
        if abs(t - prev_t - step_s) > TOL_S:
            bad(Violation(tid, t, "record_gap", f"step from {prev_t:g} to {t:g}"))
        prev_t = t
        if state == prev:
            continue
        if not check_state(t, state) or not ok:
            ok = len(state) == n and set(state) <= KNOWN
            prev, stage_start = state, t
            run_start = [t] * n
            continue
        # the stage that ended: its minimum
        if prev in rules.min_green_s:
            length = t - stage_start
            c.greens += 1
            if length < rules.min_green_s[prev] - TOL_S:
                bad(
                    Violation(
                        tid,
                        t,
                        "short_green",
                        f"{prev!r} shown {length:g} s < min {rules.min_green_s[prev]:g} s",
                    )
                )
        stage_start = t
        for i in range(n):
            a, b = prev[i], state[i]
            if a == b:
                continue
            ka, kb = _kind(a), _kind(b)
            onset = False
            if ka == "green" and kb == "green":
                onset = a == "g" and b == "G"  # a permissive green becomes priority
            elif ka == "green" and kb == "red":
                bad(Violation(tid, t, "no_yellow", f"link {i}: {a} -> {b} without yellow"))
                yellow_end[i] = red_since[i] = t  # its clearance counts from here
            elif ka == "yellow":
                if known[i]:
                    c.yellows += 1
                    length = t - run_start[i]
                    if length < rules.yellow_min_s - TOL_S:
                        bad(Violation(tid, t, "short_yellow", f"link {i}: yellow {length:g} s"))
                if kb == "green":
                    bad(Violation(tid, t, "yellow_to_green", f"link {i}: y -> {b}"))
                    onset = True
                else:
                    yellow_end[i] = t
                    red_since[i] = t
            elif ka == "red" and kb == "green":
                onset = True
            if ka != kb:
                run_start[i], known[i] = t, True
            if onset:
                cleared = False
                short: list[str] = []  # one violation per link that gets green too soon
                for j in sorted(rules.conflicts[i]):
                    if state[j] == "y":
                        short.append(f"link {j} still yellow")
                    elif yellow_end[j] > -math.inf:
                        gap = t - yellow_end[j]
                        # j was served (and cleared) while i waited: a clearance to judge
                        cleared = cleared or yellow_end[j] >= red_since[i] - TOL_S
                        if gap < rules.clearance_min_s - TOL_S:
                            short.append(f"{gap:g} s after link {j}'s yellow")
                if short:
                    detail = f"link {i} gets {b}: {'; '.join(short[:3])}"
                    bad(Violation(tid, t, "clearance", detail))
                c.all_reds += int(cleared or bool(short))
        prev = state
    # intervals still running at the end are not judged
    c.censored += int(prev in rules.min_green_s) + sum(1 for ch in prev if ch == "y")
    return rep


def check_record(
    path: Path,
    rules: Mapping[str, SignalRules],
    *,
    step_s: float = 1.0,
    credits: Mapping[str, tuple[str, float]] | None = None,
) -> Report:
    """Check SUMO's record at ``path`` for every signal in ``rules`` (each must appear)."""
    states = read_tls_states(path)
    rep = Report()
    missing = sorted(set(rules) - set(states))
    for tid in missing:
        rep.violations.append(Violation(tid, math.nan, "record_gap", "not in the record"))
    for tid, timeline in sorted(states.items()):
        if tid in rules:
            credit = credits.get(tid) if credits is not None else None
            rep.add(check_timeline(rules[tid], timeline, step_s=step_s, credit=credit))
    return rep


def check_city_record(path: Path, city: Any, *, step_s: float = 1.0) -> Report:
    """:func:`check_record` with the city's rules and its programs' credits at the
    record's first step."""
    rules = city_rules(city)
    states_t0 = _first_time(path)
    credits = program_credits(city.net, city.manifest.signals, states_t0)
    return check_record(path, rules, step_s=step_s, credits=credits)


def _first_time(path: Path) -> float:
    for _event, el in ET.iterparse(path, events=("end",)):
        if el.tag == "tlsState":
            return float(el.attrib["time"])
    return 0.0
