"""The controller emulator's own conflict monitor (MMU), checked before every change.

A cabinet's malfunction management unit watches the lamps apart from the controller.
The emulator's monitor is written apart from the center's guard
(:mod:`signal_control.guard` and the port are not imported) and from the test suite's
record checker (``tests/mmu.py``): its rules come from the network itself (the
junction's foes, and turns from different approaches into one exit edge) and the
city's plan (minimum greens with the pedestrian minimum, the yellow, the all-red
promise). Unlike a cabinet MMU, which can only trip to flash after the fact, this one
is asked *before* a change is shown (:meth:`SignalMonitor.check`) and the emulated
controller does not show a change it refuses: it keeps the interval it is in (a longer
green, yellow or all-red is always safe) and asks again.

Refused:

- ``conflict``: two conflicting links both ``G``;
- ``no_yellow``: a link going from green straight to red; ``yellow_to_green``;
- ``short_yellow``: a yellow ending before the plan's yellow (at least 3 s);
- ``clearance``: a link getting green while a conflicting link is yellow, or sooner
  than the all-red promise after that link's yellow ended;
- ``short_green``: a green stage ending before its minimum (vehicle or pedestrian,
  the larger);
- ``state``: a state that does not fit the signal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from city_models.manifest import SignalSpec
from city_models.net import NetInfo

log = logging.getLogger(__name__)

YELLOW_FLOOR_S = 3.0
TOL_S = 1e-6
GREENS = frozenset("Gg")
REDS = frozenset("rs")
CHARS = frozenset("Ggyrs")


@dataclass(frozen=True)
class MonitorRules:
    """What the monitor knows of one signal (from the net and the city's plan)."""

    tls_id: str
    conflicts: tuple[frozenset[int], ...]
    stage_min_green_s: Mapping[str, float]
    """Green stage state -> its minimum green (vehicle or pedestrian, the larger)."""
    yellow_min_s: float
    clearance_min_s: float

    @property
    def n_links(self) -> int:
        return len(self.conflicts)


def monitor_rules(
    net: NetInfo, signals: Iterable[SignalSpec], *, all_red_promise_s: float
) -> dict[str, MonitorRules]:
    """The rules of every signal: conflicts from the net, minimums from the plan."""
    out: dict[str, MonitorRules] = {}
    for sig in signals:
        links = net.tls[sig.id].links
        foes = net.tls[sig.id].foes
        n = len(links)
        conflicts = tuple(
            frozenset(
                j
                for j in range(n)
                if j != i
                and (
                    foes[i][j]
                    or foes[j][i]
                    or (
                        links[i].to_edge == links[j].to_edge
                        and links[i].from_edge != links[j].from_edge
                    )
                )
            )
            for i in range(n)
        )
        mins: dict[str, float] = {}
        for p in sig.phases:
            if p.kind == "green":
                mins[p.state] = max(mins.get(p.state, 0.0), p.min_green_s, p.ped_min_green_s)
        yellows = [p.duration_s for p in sig.phases if p.kind == "yellow"]
        out[sig.id] = MonitorRules(
            tls_id=sig.id,
            conflicts=conflicts,
            stage_min_green_s=mins,
            yellow_min_s=max(YELLOW_FLOOR_S, min(yellows, default=YELLOW_FLOOR_S)),
            clearance_min_s=all_red_promise_s,
        )
    return out


@dataclass(frozen=True)
class Refusal:
    """A change the monitor refused."""

    tls_id: str
    t_s: float
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.tls_id} t={self.t_s:.2f}: {self.rule}: {self.detail}"


@dataclass
class SignalMonitor:
    """The monitor of one signal: ``check`` a change before it is shown, ``commit`` it
    once shown. ``start`` is what the lamps show at power-up and since when."""

    rules: MonitorRules
    start_state: str
    start_s: float
    state: str = ""
    since_s: float = 0.0
    _link_since: list[float] = field(default_factory=list)
    _yellow_end: list[float] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    changes: int = 0
    greens_judged: int = 0
    yellows_judged: int = 0

    def __post_init__(self) -> None:
        n = self.rules.n_links
        if len(self.start_state) != n or not set(self.start_state) <= CHARS:
            raise ValueError(f"{self.rules.tls_id}: start state {self.start_state!r} does not fit")
        self.state = self.start_state
        self.since_s = self.start_s
        self._link_since = [self.start_s] * n
        self._yellow_end = [-math.inf] * n

    def check(self, t_s: float, new: str) -> list[Refusal]:
        """Every rule the change to ``new`` at ``t_s`` would break (empty: safe)."""
        r, cur, tid = self.rules, self.state, self.rules.tls_id
        out: list[Refusal] = []
        if len(new) != r.n_links or not set(new) <= CHARS:
            return [Refusal(tid, t_s, "state", f"{new!r} does not fit {r.n_links} links")]
        if new == cur:
            return out
        hi = [i for i, ch in enumerate(new) if ch == "G"]
        pairs = [(a, b) for x, a in enumerate(hi) for b in hi[x + 1 :] if b in r.conflicts[a]]
        if pairs:
            out.append(Refusal(tid, t_s, "conflict", f"links {pairs[:4]} both G in {new!r}"))
        minimum = r.stage_min_green_s.get(cur)
        if minimum is not None and t_s - self.since_s < minimum - TOL_S:
            out.append(
                Refusal(
                    tid,
                    t_s,
                    "short_green",
                    f"{cur!r} would end after {t_s - self.since_s:.2f} s < {minimum:g} s",
                )
            )
        for i, (a, b) in enumerate(zip(cur, new, strict=True)):
            if a == b:
                continue
            if a in GREENS and b in REDS:
                out.append(Refusal(tid, t_s, "no_yellow", f"link {i}: {a} -> {b}"))
            elif a == "y":
                shown = t_s - self._link_since[i]
                if shown < r.yellow_min_s - TOL_S:
                    out.append(Refusal(tid, t_s, "short_yellow", f"link {i}: yellow {shown:.2f} s"))
                if b in GREENS:
                    out.append(Refusal(tid, t_s, "yellow_to_green", f"link {i}: y -> {b}"))
            if (a in REDS and b in GREENS) or (a == "g" and b == "G"):
                for j in sorted(r.conflicts[i]):
                    if new[j] == "y" or cur[j] == "y":
                        out.append(
                            Refusal(
                                tid, t_s, "clearance", f"link {i} gets {b} while link {j} is yellow"
                            )
                        )
                        break
                    gap = t_s - self._yellow_end[j]
                    if gap < r.clearance_min_s - TOL_S:
                        out.append(
                            Refusal(
                                tid,
                                t_s,
                                "clearance",
                                f"link {i} gets {b} {gap:.2f} s after link {j}'s yellow",
                            )
                        )
                        break
        return out

    def commit(self, t_s: float, new: str) -> None:
        """``new`` is shown from ``t_s`` on (after :meth:`check` found nothing)."""
        cur = self.state
        if new == cur:
            return
        if cur in self.rules.stage_min_green_s:
            self.greens_judged += 1
        for i, (a, b) in enumerate(zip(cur, new, strict=True)):
            if a == b:
                continue
            if a == "y":
                self.yellows_judged += 1
                self._yellow_end[i] = t_s
            if (a in GREENS) != (b in GREENS) or a == "y" or b == "y":
                self._link_since[i] = t_s
        self.state, self.since_s = new, t_s
        self.changes += 1

    def propose(self, t_s: float, new: str) -> list[Refusal]:
        """Check and, when safe, commit; a refusal is kept and logged."""
        found = self.check(t_s, new)
        if found:
            self.refusals += found
            for r in found:
                log.error("MMU refused: %s", r)
            return found
        self.commit(t_s, new)
        return found


def judge_timeline(rules: MonitorRules, timeline: Sequence[tuple[float, str]]) -> list[Refusal]:
    """Judge a whole timeline of ``(t_s, state)`` changes (e.g. what an emulator showed):
    every change that the monitor would have refused."""
    if not timeline:
        return []
    mon = SignalMonitor(rules, timeline[0][1], timeline[0][0])
    out: list[Refusal] = []
    for t, state in timeline[1:]:
        found = mon.check(t, state)
        out += found
        mon.commit(t, state)  # go on from what was shown, to judge the next change too
    return out
