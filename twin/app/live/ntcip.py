"""NTCIP 1202 (actuated signal controller) objects used by the field adapter.

The OIDs are built from the standard's tree, one place, and checked against the
documented table in ``tests/twin/live/test_ntcip.py`` (the issue's and
``TRAFFIC_NOTES.md``'s literal OIDs); the MIB itself is not copied into the repository.

Tree (``asc`` = 1.3.6.1.4.1.1206.4.2.1):

- ``asc.1.2.1.{col}.{phase}`` phaseTable: walk (2, s), pedestrian clear (3, s),
  minimum green (4, s), maximum 1 (6, s), yellow change (8, 0.1 s), red clear (9, 0.1 s);
- ``asc.1.4.1.{col}.{group}`` phaseStatusGroupTable: reds (2), yellows (3), greens (4),
  8-phase bitmasks (bit 0 = the group's first phase);
- ``asc.1.5.1.{col}.{group}`` phaseControlGroupTable: omit (2), hold (4), force-off (5),
  vehicle call (6), the same bitmasks, written by the center;
- ``asc.3.3.0`` unitBackupTime (s): when the center has not written for that long, the
  controller drops every hold, force-off, omit and call and runs its own plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Oid = tuple[int, ...]

ASC: Oid = (1, 3, 6, 1, 4, 1, 1206, 4, 2, 1)
"""NTCIP 1202 ``asc`` node (actuated signal controller)."""
PHASE_ENTRY: Oid = (*ASC, 1, 2, 1)
PHASE_STATUS_GROUP_ENTRY: Oid = (*ASC, 1, 4, 1)
PHASE_CONTROL_GROUP_ENTRY: Oid = (*ASC, 1, 5, 1)
UNIT_BACKUP_TIME: Oid = (*ASC, 3, 3, 0)
PHASES_PER_GROUP = 8
MAX_PHASE = 32  # phases 1..32 in groups 1..4

Access = Literal["read-only", "read-write"]


@dataclass(frozen=True)
class Column:
    """One column of an NTCIP 1202 table: its name, number, range and unit."""

    name: str
    column: int
    access: Access
    lo: int
    hi: int
    unit: str
    scale_s: float = 1.0
    """Seconds per unit (0.1 for the tenth-second intervals)."""


PHASE_TIMING: Mapping[str, Column] = {
    c.name: c
    for c in (
        Column("phaseWalk", 2, "read-write", 0, 255, "s"),
        Column("phasePedestrianClear", 3, "read-write", 0, 255, "s"),
        Column("phaseMinimumGreen", 4, "read-write", 1, 255, "s"),
        Column("phaseMaximum1", 6, "read-write", 1, 255, "s"),
        Column("phaseYellowChange", 8, "read-write", 30, 255, "0.1 s", 0.1),
        Column("phaseRedClear", 9, "read-write", 0, 255, "0.1 s", 0.1),
    )
}
PHASE_STATUS: Mapping[str, Column] = {
    c.name: c
    for c in (
        Column("phaseStatusGroupReds", 2, "read-only", 0, 255, "bitmask"),
        Column("phaseStatusGroupYellows", 3, "read-only", 0, 255, "bitmask"),
        Column("phaseStatusGroupGreens", 4, "read-only", 0, 255, "bitmask"),
    )
}
PHASE_CONTROL: Mapping[str, Column] = {
    c.name: c
    for c in (
        Column("phaseControlGroupPhaseOmit", 2, "read-write", 0, 255, "bitmask"),
        Column("phaseControlGroupHold", 4, "read-write", 0, 255, "bitmask"),
        Column("phaseControlGroupForceOff", 5, "read-write", 0, 255, "bitmask"),
        Column("phaseControlGroupVehCall", 6, "read-write", 0, 255, "bitmask"),
    )
}
BACKUP_TIME = Column("unitBackupTime", 0, "read-write", 1, 65535, "s")
"""``unitBackupTime`` (a scalar); 0 would switch the fail-safe off, so it is refused."""

CONTROL_VERBS: Mapping[str, str] = {
    "omit": "phaseControlGroupPhaseOmit",
    "hold": "phaseControlGroupHold",
    "force_off": "phaseControlGroupForceOff",
    "veh_call": "phaseControlGroupVehCall",
}
STATUS_KINDS: Mapping[str, str] = {
    "reds": "phaseStatusGroupReds",
    "yellows": "phaseStatusGroupYellows",
    "greens": "phaseStatusGroupGreens",
}


def check_phase(phase: int) -> int:
    """``phase`` if it is an NTCIP phase number (1..32); else ``ValueError``."""
    if isinstance(phase, bool) or not isinstance(phase, int) or not 1 <= phase <= MAX_PHASE:
        raise ValueError(f"NTCIP phase number {phase!r}; allowed: 1..{MAX_PHASE}")
    return phase


def phase_timing_oid(name: str, phase: int) -> Oid:
    """``phaseTable`` object ``name`` of ``phase``."""
    return (*PHASE_ENTRY, PHASE_TIMING[name].column, check_phase(phase))


def status_oid(kind: str, group: int) -> Oid:
    """``phaseStatusGroup{Reds,Yellows,Greens}`` (``kind``: reds, yellows, greens)."""
    return (*PHASE_STATUS_GROUP_ENTRY, PHASE_STATUS[STATUS_KINDS[kind]].column, group)


def control_oid(verb: str, group: int) -> Oid:
    """``phaseControlGroup{PhaseOmit,Hold,ForceOff,VehCall}`` (``verb``: omit, hold,
    force_off, veh_call)."""
    return (*PHASE_CONTROL_GROUP_ENTRY, PHASE_CONTROL[CONTROL_VERBS[verb]].column, group)


def group_bit(phase: int) -> tuple[int, int]:
    """(group, bit) of ``phase``: phases 1-8 are group 1 bits 0-7, 9-16 group 2, ..."""
    p = check_phase(phase) - 1
    return p // PHASES_PER_GROUP + 1, p % PHASES_PER_GROUP


def masks(phases: Iterable[int]) -> dict[int, int]:
    """Group -> bitmask of ``phases``."""
    out: dict[int, int] = {}
    for phase in phases:
        group, bit = group_bit(phase)
        out[group] = out.get(group, 0) | (1 << bit)
    return out


def phases_of(group: int, mask: int) -> list[int]:
    """The phases set in ``mask`` of ``group``."""
    base = (group - 1) * PHASES_PER_GROUP
    return [base + b + 1 for b in range(PHASES_PER_GROUP) if mask >> b & 1]


def oid_str(oid: Oid) -> str:
    return ".".join(map(str, oid))


def parse_oid(text: str) -> Oid:
    return tuple(int(x) for x in text.strip(".").split("."))


def describe(oid: Oid) -> str:
    """The object's name and index (``phaseControlGroupHold.1``), or the dotted OID."""
    tables = (
        (PHASE_ENTRY, PHASE_TIMING),
        (PHASE_STATUS_GROUP_ENTRY, PHASE_STATUS),
        (PHASE_CONTROL_GROUP_ENTRY, PHASE_CONTROL),
    )
    if oid == UNIT_BACKUP_TIME:
        return "unitBackupTime.0"
    for entry, columns in tables:
        n = len(entry)
        if oid[:n] == entry and len(oid) == n + 2:
            for col in columns.values():
                if col.column == oid[n]:
                    return f"{col.name}.{oid[n + 1]}"
    return oid_str(oid)
