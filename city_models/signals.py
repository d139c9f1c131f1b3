"""Fixed-time signal plans for the synthetic city, in Korean practice.

Per axis (E-W, N-S): a *through* phase (through + right turns green) and, where the
approaches have an exclusive left-turn pocket, a protected *left* phase after it
("through first, then left"). Left turns from a shared lane are permissive (``g``:
they yield to the opposing through). Right turns on red proceed after a stop (``s``).
Every change of green is followed by yellow (3 s) and all-red (2 s).

Minimum greens: vehicle minimum, and for a through phase the pedestrian minimum
``walk_s + crossing_m / ped_speed_mps`` for the crosswalk that runs beside it (across
the other road). Splits share the cycle in proportion to lanes served, never below
those minimums; offsets make a simple green wave along E-W at the design speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from city_models.net import LinkInfo, NetInfo, TlsInfo
from city_models.presets import CityPreset

LANE_WIDTH_M = 3.2
PROGRESSION_SPEED_MPS = 50 / 3.6
LEFT_WEIGHT = 0.35  # share of a through phase's lanes a protected left phase needs


@dataclass(frozen=True)
class Phase:
    """One phase of a plan; ``kind`` is green, yellow or all_red."""

    name: str
    kind: str
    state: str
    duration_s: float
    min_green_s: float
    ped_min_green_s: float
    max_green_s: float


@dataclass(frozen=True)
class SignalPlan:
    tls_id: str
    cycle_s: float
    offset_s: float
    phases: tuple[Phase, ...]


def axis_of(net: NetInfo, edge_id: str) -> str:
    """``'EW'`` or ``'NS'``: the axis of an edge's last segment (its approach heading)."""
    shape = net.edges[edge_id].shape_xy
    (x0, y0), (x1, y1) = shape[-2], shape[-1]
    return "EW" if abs(x1 - x0) >= abs(y1 - y0) else "NS"


def _exclusive_left_lanes(links: tuple[LinkInfo, ...]) -> set[str]:
    dirs: dict[str, set[str]] = {}
    for link in links:
        dirs.setdefault(link.from_lane, set()).add(link.direction)
    return {lane for lane, d in dirs.items() if d <= {"l", "L", "t"}}


def design_plan(net: NetInfo, tls: TlsInfo, *, preset: CityPreset) -> SignalPlan:
    """The fixed-time plan of one signal (see the module doc for the rules)."""
    left_lanes = _exclusive_left_lanes(tls.links)
    axes: dict[str, list[LinkInfo]] = {}
    for link in tls.links:
        axes.setdefault(axis_of(net, link.from_edge), []).append(link)
    # the busier axis (more lanes in) goes first
    order = sorted(axes, key=lambda a: -sum(net.edges[k.from_edge].lanes for k in axes[a]))
    greens: list[tuple[str, set[int], set[int], float, float]] = []  # name, G, g, weight, ped
    for axis in order:
        links = axes[axis]
        lefts = {k.index for k in links if k.direction in {"l", "L", "t"}}
        protected = {k.index for k in links if k.from_lane in left_lanes}
        through = {k.index for k in links} - lefts
        lanes_in = max(net.edges[k.from_edge].lanes for k in links)
        other = [k for a, ks in axes.items() if a != axis for k in ks]
        # the crosswalk beside this phase crosses one leg of the other road: in + out lanes
        # (the other road's exits are the targets of its straight links)
        exits = [net.edges[k.to_edge].lanes for k in other if k.direction == "s"]
        crossing_lanes = max((net.edges[k.from_edge].lanes for k in other), default=0) + max(
            exits, default=0
        )
        ped_min = preset.walk_s + crossing_lanes * LANE_WIDTH_M / preset.ped_speed_mps
        greens.append((f"{axis} through", through, lefts - protected, float(lanes_in), ped_min))
        if protected:
            greens.append((f"{axis} left", protected, set(), LEFT_WEIGHT * lanes_in, 0.0))
    rights = {k.index for k in tls.links if k.direction in {"r", "R"}}
    return _plan_from_stages(net, tls, preset, greens, rights)


def _splits(green_s: float, weights: list[float], mins: list[float]) -> list[float]:
    """Share ``green_s`` by weight, never below the minimums (whole seconds)."""
    fixed = [False] * len(weights)
    out = list(mins)
    while True:
        free = green_s - sum(m for m, f in zip(mins, fixed, strict=True) if f)
        w_free = sum(w for w, f in zip(weights, fixed, strict=True) if not f)
        changed = False
        for i, (w, m) in enumerate(zip(weights, mins, strict=True)):
            if not fixed[i]:
                out[i] = free * w / w_free
                if out[i] < m:
                    fixed[i], out[i], changed = True, m, True
        if not changed:
            break
    rounded = [max(float(math.floor(v)), m) for v, m in zip(out, mins, strict=True)]
    rounded[int(np.argmax(weights))] += max(round(green_s - sum(rounded)), 0)
    return rounded


def plans_to_xml(plans: list[SignalPlan]) -> str:
    """The plans as a SUMO ``<additional>`` with one static ``<tlLogic>`` each."""
    lines = ["<additional>"]
    for plan in plans:
        lines.append(
            f'  <tlLogic id="{plan.tls_id}" type="static" programID="0" offset="{plan.offset_s}">'
        )
        for ph in plan.phases:
            lines.append(
                f'    <phase duration="{ph.duration_s:g}" state="{ph.state}" '
                f'minDur="{ph.min_green_s:g}" maxDur="{ph.max_green_s:g}" name="{ph.name}"/>'
            )
        lines.append("  </tlLogic>")
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- imported networks
AXIS_TOLERANCE_DEG = 35.0  # approaches within this of one line (either way) share a stage


def approach_heading_deg(net: NetInfo, edge_id: str) -> float:
    """Heading (degrees, 0 = east, counter-clockwise) of an edge's last segment."""
    shape = net.edges[edge_id].shape_xy
    (x0, y0), (x1, y1) = shape[-2], shape[-1]
    return math.degrees(math.atan2(y1 - y0, x1 - x0)) % 360.0


def _axis_label(heading_deg: float) -> str:
    """Compass axis of a heading: E-W, NE-SW, N-S or NW-SE."""
    k = int(((heading_deg % 180.0) + 22.5) // 45.0) % 4
    return ("E-W", "NE-SW", "N-S", "NW-SE")[k]


def _same_line(a_deg: float, b_deg: float) -> bool:
    d = abs(a_deg - b_deg) % 180.0
    return min(d, 180.0 - d) <= AXIS_TOLERANCE_DEG


def _split_conflicting(
    approaches: list[str], links_of: dict[str, set[int]], conflict: tuple[tuple[bool, ...], ...]
) -> list[list[str]]:
    """Approaches in stages so that no two ``G`` links of one stage conflict (greedy)."""
    stages: list[list[str]] = []
    for a in approaches:
        for stage in stages:
            if not any(conflict[i][j] for b in stage for i in links_of[a] for j in links_of[b]):
                stage.append(a)
                break
        else:
            stages.append([a])
    return stages


def design_plan_general(
    net: NetInfo,
    tls: TlsInfo,
    *,
    preset: CityPreset,
    conflict: tuple[tuple[bool, ...], ...],
) -> SignalPlan | None:
    """A Korean-practice fixed-time plan for a signal of any geometry (imported cities).

    The generator's rules (:func:`design_plan`) without its compass: approaches are
    grouped by heading (opposite approaches share a stage), the group with more lanes
    in goes first; each group gets a *through* stage (through and right ``G``, lefts from
    shared lanes permissive ``g``) and, where it has exclusive left lanes, a protected
    *left* stage after it. ``conflict`` (:func:`city_models.plan_check.conflict_matrix`)
    decides what may be green together: a right turn that conflicts with a ``G`` of its
    stage becomes permissive ``g``; approaches whose ``G`` links still conflict get
    stages of their own (split phasing). Yellow, all-red, minimum greens (pedestrian
    clearance at ``ped_speed_mps`` over the legs the stage's crosswalk crosses) and
    splits as in :func:`design_plan`.

    Returns ``None`` when the signal has only one stage (a signal with nothing to
    separate: the importer leaves the junction unsignalized and reports it).
    """
    n = len(tls.links)
    if n == 0:
        return None
    left_lanes = _exclusive_left_lanes(tls.links)
    by_approach: dict[str, list[LinkInfo]] = {}
    for link in tls.links:
        by_approach.setdefault(link.from_edge, []).append(link)

    def lanes_in(edge: str) -> int:
        return net.edges[edge].lanes

    approaches = sorted(by_approach, key=lambda e: (-lanes_in(e), e))
    groups: list[list[str]] = []
    for a in approaches:
        heading = approach_heading_deg(net, a)
        for g in groups:
            if _same_line(approach_heading_deg(net, g[0]), heading):
                g.append(a)
                break
        else:
            groups.append([a])
    groups.sort(key=lambda g: (-sum(lanes_in(a) for a in g), g[0]))
    lefts_all = {k.index for k in tls.links if k.direction in {"l", "L", "t"}}
    rights_all = {k.index for k in tls.links if k.direction in {"r", "R"}}
    protected_all = {k.index for k in tls.links if k.from_lane in left_lanes}
    # stages: (name, G links, g links, weight, approaches served)
    stages: list[tuple[str, set[int], set[int], float, set[str]]] = []
    for group in groups:
        label = _axis_label(approach_heading_deg(net, group[0]))
        through_of = {a: {k.index for k in by_approach[a]} - lefts_all - rights_all for a in group}
        for part in _split_conflicting(group, through_of, conflict):
            hi = set().union(*(through_of[a] for a in part))
            lo = set().union(*({k.index for k in by_approach[a]} for a in part)) & (
                lefts_all - protected_all
            )
            for a in part:  # rights: G unless they conflict with a G of the stage
                for k in by_approach[a]:
                    if k.index in rights_all:
                        (lo if any(conflict[k.index][j] for j in hi) else hi).add(k.index)
            name = label if len(part) == len(group) else f"{label} ({', '.join(part)})"
            stages.append((f"{name} through", hi, lo, float(max(map(lanes_in, part))), set(part)))
        left_of = {a: {k.index for k in by_approach[a]} & protected_all for a in group}
        with_left = [a for a in group if left_of[a]]
        for part in _split_conflicting(with_left, left_of, conflict):
            hi = set().union(*(left_of[a] for a in part))
            weight = LEFT_WEIGHT * max(map(lanes_in, part))
            stages.append((f"{label} left", hi, set(), weight, set()))
    if len(stages) < 2:
        return None
    never = set(range(n)) - set().union(*(s[1] | s[2] for s in stages))
    for i in sorted(never):  # a link no stage serves: permissive where its approach goes
        approach = tls.links[i].from_edge
        home = next((s for s in stages if approach in s[4]), stages[0])
        home[2].add(i)

    def crossing_m(served: set[str]) -> float:
        others = [a for a in by_approach if a not in served]
        if not served or not others:
            return 0.0
        widest = 0
        for a in others:
            back = [
                e.lanes
                for e in net.edges.values()
                if e.from_node == net.edges[a].to_node and e.to_node == net.edges[a].from_node
            ]
            widest = max(widest, lanes_in(a) + max(back, default=0))
        return widest * LANE_WIDTH_M

    greens = [
        (
            name,
            hi,
            lo,
            w,
            (preset.walk_s + crossing_m(served) / preset.ped_speed_mps) if served else 0.0,
        )
        for name, hi, lo, w, served in stages
    ]
    return _plan_from_stages(net, tls, preset, greens, rights_all)


def _plan_from_stages(
    net: NetInfo,
    tls: TlsInfo,
    preset: CityPreset,
    greens: list[tuple[str, set[int], set[int], float, float]],
    rights: set[int],
) -> SignalPlan:
    """Stages (name, G, g, weight, pedestrian minimum) -> a plan with yellow and all-red."""
    n = len(tls.links)
    lost_s = len(greens) * (preset.yellow_s + preset.all_red_s)
    mins = [
        float(
            math.ceil(
                max(preset.left_min_green_s if "left" in g[0] else preset.vehicle_min_green_s, g[4])
            )
        )
        for g in greens
    ]
    cycle_s = max(preset.cycle_s, lost_s + sum(mins))
    splits = _splits(cycle_s - lost_s, [g[3] for g in greens], mins)

    def state(hi: set[int], lo: set[int], yellow: set[int] | None = None) -> str:
        yellow = yellow or set()
        chars = []
        for i in range(n):
            if i in hi:
                chars.append("G")
            elif i in lo:
                chars.append("g")
            elif i in yellow:
                chars.append("y")
            elif i in rights:
                chars.append("s")
            else:
                chars.append("r")
        return "".join(chars)

    phases: list[Phase] = []
    for k, (name, hi, lo, _w, ped) in enumerate(greens):
        nxt_hi, nxt_lo = greens[(k + 1) % len(greens)][1:3]
        keep_hi, keep_lo = hi & nxt_hi, lo & (nxt_hi | nxt_lo)
        ending = (hi | lo) - keep_hi - keep_lo
        phases.append(
            Phase(name, "green", state(hi, lo), splits[k], mins[k], ped, max(2 * splits[k], 60.0))
        )
        y = preset.yellow_s
        phases.append(
            Phase(f"{name} yellow", "yellow", state(keep_hi, keep_lo, ending), y, y, 0, y)
        )
        ar = preset.all_red_s
        phases.append(Phase(f"{name} all-red", "all_red", state(keep_hi, keep_lo), ar, ar, 0, ar))
    x, _y = net.nodes_xy.get(tls.node, (tls.x, tls.y))
    offset_s = math.fmod(x / PROGRESSION_SPEED_MPS, cycle_s) % cycle_s
    return SignalPlan(tls.id, cycle_s, round(offset_s, 1), tuple(phases))
