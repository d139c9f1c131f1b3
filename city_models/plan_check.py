"""Signal plans checked against the network whenever a city loads.

Every city (generated, imported, a network variant) passes this check before anything
runs on it: :func:`city_models.build.load_city`, :func:`city_models.build.build_city`
and :func:`city_models.variants.contraflow_city` call :func:`check_city_plans`, and
the composition of a run calls it again for cities made some other way. A failing city
is refused with one :class:`~twin.errors.CityError` that lists one line per signal,
stage (or phase) and rule, so a bad plan fails fast, before SUMO starts.

The rules (:data:`RULES`), on each signal's manifest phases and the net's own program:

- ``signal``: every signal of the manifest is a traffic light of the net;
- ``phases``: the phases repeat green, yellow, all-red (the guard's model of a change);
- ``program``: the manifest's phases are the net's program ``"0"`` (states, durations),
  so the plan the guard enforces is the plan SUMO (or a field controller) runs alone;
- ``state``: one character per link of the signal, from ``G g y r s``;
- ``conflict``: no two links that cross (SUMO's ``<request foes>``) or merge into one
  exit edge from different approaches both show ``G`` in any phase (:func:`conflict_matrix`);
- ``yellow``: every yellow lasts at least :data:`~signal_control.guard.YELLOW_MIN_S`;
- ``yellow_after_green``: a link that loses green shows yellow first, and a yellow ends
  in red;
- ``all_red``: every all-red lasts at least the city's promise
  (:func:`all_red_promise_s`, the preset's ``all_red_s``: 2 s for the shipped presets);
- ``clearance``: after a link's yellow, none of its conflicting links gets green sooner
  than the promise;
- ``min_green``: ``0 < min green <= max green`` and the planned green is no shorter than
  the minimum (the local program runs the planned green as it is);
- ``ped_min_green``: the minimum green holds the pedestrian minimum where the stage
  serves a crossing.

The guard (:class:`signal_control.guard.GuardPlan`) enforces the same conflict,
interval and minimum rules again at run time, whatever the caller; ``docs/SAFETY.md``
lists where each rule is enforced and the test that proves it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from city_models.manifest import Manifest, PhaseSpec, SignalSpec
from city_models.net import NetInfo, TlsInfo
from signal_control.guard import ALL_RED_FLOOR_S, ALL_RED_PROMISE_S, YELLOW_MIN_S
from twin.errors import CityError

log = logging.getLogger(__name__)

RULES: dict[str, str] = {
    "signal": "every signal of the manifest is a traffic light of the net",
    "phases": "the phases repeat green, yellow, all-red",
    "program": "the manifest's phases are the net's program '0' (states and durations)",
    "state": "one character per link of the signal, from G g y r s",
    "conflict": "no two links that cross or merge into one exit edge both show G",
    "yellow": f"every yellow lasts >= {YELLOW_MIN_S:g} s",
    "yellow_after_green": "a link that loses green shows yellow first; a yellow ends in red",
    "all_red": "every all-red lasts >= the city's promise",
    "clearance": "a link's conflicting links get green no sooner than the promise after its yellow",
    "min_green": "0 < min green <= max green, and the planned green >= min green",
    "ped_min_green": "min green >= the pedestrian minimum where the stage serves a crossing",
}
STATE_CHARS = frozenset("Ggyrs")
GREEN = frozenset("Gg")
RED = frozenset("rs")
KIND_CYCLE = ("green", "yellow", "all_red")
LOCAL_PROGRAM_ID = "0"
MAX_LISTED = 60
TOL_S = 1e-6


@dataclass(frozen=True)
class PlanProblem:
    """One broken rule of one signal's plan, at one stage or phase."""

    signal: str
    where: str  # "stage 1 'NS left' (phase 3)", "phase 4 'NS left yellow'", "plan"
    rule: str  # a key of RULES
    detail: str

    def __str__(self) -> str:
        return f"signal {self.signal}, {self.where}: {self.detail} [rule {self.rule}]"


class CityLike(Protocol):
    """What the check needs of a city (a :class:`city_models.build.City`)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def net_path(self) -> Path: ...

    @property
    def net(self) -> NetInfo: ...


def all_red_promise_s(manifest: Manifest) -> float:
    """The all-red the city promises: its preset's ``all_red_s`` (the shipped presets
    promise 2 s), or :data:`~signal_control.guard.ALL_RED_PROMISE_S` when the manifest
    does not say."""
    value = manifest.params.get("all_red_s", ALL_RED_PROMISE_S)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CityError(
            f"City {manifest.name}: field 'params.all_red_s' must be a number of seconds "
            f"(got {value!r})."
        ) from None


def conflict_matrix(tls: TlsInfo) -> tuple[tuple[bool, ...], ...]:
    """Which links of the signal may never both show ``G``: foes in SUMO's junction
    ``<request>`` (they cross or merge into one lane), and turns from different
    approaches that enter the same exit edge (SUMO does not count two turns into
    different lanes of one edge as foes; in the junction their paths still meet)."""
    links = tls.links
    n = len(links)
    out = [[bool(tls.foes[i][j]) for j in range(n)] for i in range(n)]
    for i, a in enumerate(links):
        for j in range(i + 1, n):
            b = links[j]
            if a.to_edge == b.to_edge and a.from_edge != b.from_edge:
                out[i][j] = out[j][i] = True
    return tuple(tuple(row) for row in out)


def _where(sig: SignalSpec, i: int) -> str:
    phase = sig.phases[i]
    if phase.kind == "green":
        stage = sum(1 for p in sig.phases[:i] if p.kind == "green")
        return f"stage {stage} '{phase.name}' (phase {i})"
    return f"phase {i} '{phase.name}'"


def _problems_of_structure(sig: SignalSpec, n_links: int | None) -> list[PlanProblem]:
    out: list[PlanProblem] = []
    add = out.append
    if not sig.phases:
        add(PlanProblem(sig.id, "plan", "phases", "the plan has no phases"))
        return out
    kinds = [p.kind for p in sig.phases]
    if len(kinds) % 3 or any(k != KIND_CYCLE[i % 3] for i, k in enumerate(kinds)):
        add(
            PlanProblem(
                sig.id,
                "plan",
                "phases",
                f"phase kinds are {', '.join(kinds)}; they must repeat green, yellow, all-red",
            )
        )
    width = n_links if n_links is not None else len(sig.phases[0].state)
    for i, p in enumerate(sig.phases):
        if len(p.state) != width:
            whose = "the signal has" if n_links is not None else "phase 0 has"
            add(
                PlanProblem(
                    sig.id,
                    _where(sig, i),
                    "state",
                    f"state {p.state!r} has {len(p.state)} characters; {whose} "
                    f"{width} {'links' if n_links is not None else 'characters'}",
                )
            )
        odd = sorted(set(p.state) - STATE_CHARS)
        if odd:
            add(
                PlanProblem(
                    sig.id,
                    _where(sig, i),
                    "state",
                    f"state {p.state!r} shows {''.join(odd)!r}; allowed: G g y r s",
                )
            )
    return out


def _problems_of_intervals(sig: SignalSpec, promise_s: float) -> list[PlanProblem]:
    out: list[PlanProblem] = []
    add = out.append
    for i, p in enumerate(sig.phases):
        where = _where(sig, i)
        if p.kind == "yellow" and not p.duration_s >= YELLOW_MIN_S:
            add(
                PlanProblem(
                    sig.id,
                    where,
                    "yellow",
                    f"yellow of {p.duration_s:g} s; allowed: >= {YELLOW_MIN_S:g} s",
                )
            )
        if p.kind == "all_red" and not p.duration_s >= promise_s - TOL_S:
            add(
                PlanProblem(
                    sig.id,
                    where,
                    "all_red",
                    f"all-red of {p.duration_s:g} s; the city promises >= {promise_s:g} s",
                )
            )
        if p.kind != "green":
            continue
        if not 0 < p.min_green_s <= p.max_green_s:
            add(
                PlanProblem(
                    sig.id,
                    where,
                    "min_green",
                    f"min green {p.min_green_s:g} s, max green {p.max_green_s:g} s; "
                    "allowed: 0 < min <= max",
                )
            )
        elif not p.duration_s >= p.min_green_s - TOL_S:
            add(
                PlanProblem(
                    sig.id,
                    where,
                    "min_green",
                    f"planned green {p.duration_s:g} s is shorter than its min green "
                    f"{p.min_green_s:g} s (the local program would cut it)",
                )
            )
        if not p.min_green_s >= p.ped_min_green_s - TOL_S:
            add(
                PlanProblem(
                    sig.id,
                    where,
                    "ped_min_green",
                    f"min green {p.min_green_s:g} s is below the pedestrian minimum "
                    f"{p.ped_min_green_s:g} s of the crossing it serves",
                )
            )
    return out


def _problems_against_program(sig: SignalSpec, tls: TlsInfo) -> list[PlanProblem]:
    out: list[PlanProblem] = []
    prog = tls.phases
    if tls.program_id != LOCAL_PROGRAM_ID:
        out.append(
            PlanProblem(
                sig.id,
                "plan",
                "program",
                f"the net's first program is {tls.program_id!r}; the local plan "
                f"must be program {LOCAL_PROGRAM_ID!r}",
            )
        )
    if len(prog) != len(sig.phases):
        out.append(
            PlanProblem(
                sig.id,
                "plan",
                "program",
                f"the manifest has {len(sig.phases)} phases, the net's program "
                f"{tls.program_id!r} has {len(prog)}",
            )
        )
        return out
    for i, (p, q) in enumerate(zip(sig.phases, prog, strict=True)):
        if p.state != q.state or abs(p.duration_s - q.duration_s) > TOL_S:
            out.append(
                PlanProblem(
                    sig.id,
                    _where(sig, i),
                    "program",
                    f"the manifest says {p.state!r} for {p.duration_s:g} s, the "
                    f"net's program {tls.program_id!r} says {q.state!r} for "
                    f"{q.duration_s:g} s",
                )
            )
    return out


def _problems_of_conflicts(
    sig: SignalSpec, conflicts: Sequence[Sequence[bool]]
) -> list[PlanProblem]:
    out: list[PlanProblem] = []
    n = len(conflicts)
    for i, p in enumerate(sig.phases):
        if len(p.state) != n:
            continue
        hi = [k for k, ch in enumerate(p.state) if ch == "G"]
        pairs = [(a, b) for x, a in enumerate(hi) for b in hi[x + 1 :] if conflicts[a][b]]
        if pairs:
            shown = ", ".join(f"{a}+{b}" for a, b in pairs[:6])
            more = f" (and {len(pairs) - 6} more)" if len(pairs) > 6 else ""
            out.append(
                PlanProblem(
                    sig.id, _where(sig, i), "conflict", f"conflicting links both G: {shown}{more}"
                )
            )
    return out


def _problems_of_changes(
    sig: SignalSpec, conflicts: Sequence[Sequence[bool]] | None, promise_s: float
) -> list[PlanProblem]:
    """Yellow after every green, and the clearance before a conflicting green, over the
    program's cycle (phases in order, wrapping round)."""
    phases = sig.phases
    width = len(phases[0].state) if phases else 0
    if not phases or any(len(p.state) != width for p in phases):
        return []  # reported by the structure rules
    out: list[PlanProblem] = []
    for j, p in enumerate(phases):
        prev = phases[j - 1].state
        cur = p.state
        no_yellow = [k for k in range(width) if prev[k] in GREEN and cur[k] in RED]
        yellow_to_green = [k for k in range(width) if prev[k] == "y" and cur[k] in GREEN]
        if no_yellow or yellow_to_green:
            parts = []
            if no_yellow:
                parts.append(f"links {no_yellow} go from green to red without yellow")
            if yellow_to_green:
                parts.append(f"links {yellow_to_green} go from yellow back to green")
            out.append(PlanProblem(sig.id, _where(sig, j), "yellow_after_green", "; ".join(parts)))
        if conflicts is None or len(conflicts) != width:
            continue
        short: list[str] = []
        for b in range(width):
            onset = (cur[b] in GREEN and prev[b] not in GREEN) or (cur[b] == "G" and prev[b] == "g")
            if not onset:
                continue
            for a in range(width):
                if a == b or not conflicts[a][b]:
                    continue
                gap = _clearance_s(phases, j, a)
                if gap is not None and gap < promise_s - TOL_S:
                    short.append(f"link {b} after link {a}'s yellow: {gap:g} s")
        if short:
            out.append(
                PlanProblem(
                    sig.id,
                    _where(sig, j),
                    "clearance",
                    f"green comes too soon ({'; '.join(short[:4])}"
                    f"{'; ...' if len(short) > 4 else ''}); the city promises "
                    f">= {promise_s:g} s",
                )
            )
    return out


def _clearance_s(phases: Sequence[PhaseSpec], j: int, a: int) -> float | None:
    """Seconds from the end of link ``a``'s last yellow to the start of phase ``j``;
    ``None`` when ``a`` had no yellow since it was last green (nothing to clear)."""
    gap = 0.0
    n = len(phases)
    if phases[j].state[a] == "y":
        return 0.0
    for back in range(1, n + 1):
        p = phases[(j - back) % n]
        ch = p.state[a]
        if ch == "y":
            return gap
        if ch in GREEN:
            return None
        gap += p.duration_s
    return None


def signal_problems(
    sig: SignalSpec, tls: TlsInfo | None, *, promise_s: float, net_known: bool = True
) -> list[PlanProblem]:
    """Every rule one signal's plan breaks (``tls``: the signal in the net, ``None`` when
    the net has no such traffic light or could not be read)."""
    if tls is None and net_known:
        return [PlanProblem(sig.id, "plan", "signal", "the net has no traffic light of this id")]
    out = _problems_of_structure(sig, len(tls.links) if tls is not None else None)
    out += _problems_of_intervals(sig, promise_s)
    conflicts = conflict_matrix(tls) if tls is not None else None
    if tls is not None:
        out += _problems_against_program(sig, tls)
        assert conflicts is not None
        out += _problems_of_conflicts(sig, conflicts)
    out += _problems_of_changes(sig, conflicts, promise_s)
    return out


def city_plan_problems(manifest: Manifest, net: NetInfo | None) -> list[PlanProblem]:
    """Every rule the city's signal plans break (``net=None``: the rules that need only
    the manifest)."""
    promise = all_red_promise_s(manifest)
    out: list[PlanProblem] = []
    if promise < ALL_RED_FLOOR_S:
        out.append(
            PlanProblem(
                "*",
                "params.all_red_s",
                "all_red",
                f"the city promises an all-red of {promise:g} s; allowed: >= {ALL_RED_FLOOR_S:g} s",
            )
        )
    for sig in manifest.signals:
        tls = net.tls.get(sig.id) if net is not None else None
        out += signal_problems(sig, tls, promise_s=promise, net_known=net is not None)
    return out


def check_city_plans(city: CityLike, *, net_required: bool = False) -> None:
    """Refuse a city whose signal plans break a rule (:class:`CityError`, one line per
    signal, stage and rule).

    When the net cannot be read the plans are checked on the manifest alone and a
    warning says so (SUMO will refuse the net with its own message), unless
    ``net_required``.
    """
    net: NetInfo | None
    try:
        net = city.net
    except Exception as exc:  # sumolib fails in many ways on a broken file
        if net_required:
            raise CityError(
                f"City {city.name}: the network {city.net_path} could not be read, so its "
                f"signal plans cannot be checked: {exc}"
            ) from exc
        log.warning(
            "city %s: network %s could not be read (%s); signal plans checked on the "
            "manifest alone",
            city.name,
            city.net_path,
            exc,
        )
        net = None
    problems = city_plan_problems(city.manifest, net)
    if not problems:
        return
    lines = [f"  - {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
    signals = len({p.signal for p in problems})
    raise CityError(
        f"City {city.name} ({city.path}) is refused: {len(problems)} problem(s) in the "
        f"signal plans of {signals} signal(s), checked against {city.net_path.name}:\n"
        + "\n".join(lines)
        + "\nA plan that breaks these rules would show unsafe signals. Fix the phases in "
        "city.json and the network's program, or rebuild the city ('twin city build')."
    )
