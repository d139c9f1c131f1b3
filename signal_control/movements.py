"""What each lane does in each stage: served movements and saturation flows.

Shared by the adaptive controller (Webster/HCM per lane) and max pressure (movements
from an in-lane to an out-edge), in-process and in a remote client alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from signal_control.interfaces import LinkLike, SignalLike

# saturation flow per lane by what the lane does in a stage (pcu/h ~ veh/h, 5 % trucks)
SAT_FLOW_THROUGH_VPH = 1900.0
SAT_FLOW_PROTECTED_LEFT_VPH = 1800.0  # ≈ 0.95 of through
SAT_FLOW_SHARED_RIGHT_VPH = 1700.0
SAT_FLOW_PERMISSIVE_LEFT_VPH = 1200.0
HEAVY_VEHICLE_FACTOR = 0.95


def lane_sat_flow_vph(directions: set[str], *, protected_left: bool) -> float:
    """Saturation flow of a lane from the movements it serves in a stage."""
    if directions <= {"l", "L", "t"}:
        base = SAT_FLOW_PROTECTED_LEFT_VPH if protected_left else SAT_FLOW_PERMISSIVE_LEFT_VPH
    elif directions & {"l", "L"}:
        base = SAT_FLOW_PERMISSIVE_LEFT_VPH
    elif directions & {"r", "R"}:
        base = SAT_FLOW_SHARED_RIGHT_VPH
    else:
        base = SAT_FLOW_THROUGH_VPH
    return base * HEAVY_VEHICLE_FACTOR


def stage_lanes(signal: SignalLike, links: Sequence[LinkLike]) -> list[dict[str, set[str]]]:
    """Per green stage of ``signal``: in-lane -> the directions it is served green in."""
    out = []
    for phase in (p for p in signal.phases if p.kind == "green"):
        lanes: dict[str, set[str]] = {}
        for link in links:
            if phase.state[link.index] in "Gg":
                lanes.setdefault(link.from_lane, set()).add(link.direction)
        out.append(lanes)
    return out


def share_of_count(lane: str, directions: set[str], stages: Sequence[dict[str, set[str]]]) -> float:
    """The share of ``lane``'s count that a stage serving it in ``directions`` gets: its
    movements there over all the movements the lane has in any stage (a loop counts the
    lane, not the movement, so its count is split evenly between movements). 1 where the
    stage serves every movement of the lane (no split: a lane green in two stages for the
    same movements counts fully in both)."""
    every: set[str] = set()
    for served in stages:
        every |= served.get(lane, set())
    if not every or directions >= every:
        return 1.0
    return len(directions & every) / len(every)
