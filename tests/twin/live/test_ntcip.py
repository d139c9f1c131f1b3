"""The NTCIP 1202 objects the field adapter uses, checked against the documented OIDs.

The table below is typed from the documents, not from the code: the issue's and
``TRAFFIC_NOTES.md``'s objects (phaseControlGroup ``1.3.6.1.4.1.1206.4.2.1.1.5.1.{2,4,5,6}``,
phaseStatusGroup ``...1.4.1.{2,3,4}``, unitBackupTime ``...3.3.0``, phase timing
``...1.2.1.{col}``) and NTCIP 1202's phaseTable column of phaseMaximum1 (6).
"""

from __future__ import annotations

import pytest

from twin.app.live import ntcip

DOCUMENTED = {
    # name: (dotted OID of group/phase/instance 1, or the scalar)
    "phaseControlGroupPhaseOmit.1": "1.3.6.1.4.1.1206.4.2.1.1.5.1.2.1",
    "phaseControlGroupHold.1": "1.3.6.1.4.1.1206.4.2.1.1.5.1.4.1",
    "phaseControlGroupForceOff.1": "1.3.6.1.4.1.1206.4.2.1.1.5.1.5.1",
    "phaseControlGroupVehCall.1": "1.3.6.1.4.1.1206.4.2.1.1.5.1.6.1",
    "phaseStatusGroupReds.1": "1.3.6.1.4.1.1206.4.2.1.1.4.1.2.1",
    "phaseStatusGroupYellows.1": "1.3.6.1.4.1.1206.4.2.1.1.4.1.3.1",
    "phaseStatusGroupGreens.1": "1.3.6.1.4.1.1206.4.2.1.1.4.1.4.1",
    "unitBackupTime.0": "1.3.6.1.4.1.1206.4.2.1.3.3.0",
    "phaseWalk.1": "1.3.6.1.4.1.1206.4.2.1.1.2.1.2.1",
    "phasePedestrianClear.1": "1.3.6.1.4.1.1206.4.2.1.1.2.1.3.1",
    "phaseMinimumGreen.1": "1.3.6.1.4.1.1206.4.2.1.1.2.1.4.1",
    "phaseMaximum1.1": "1.3.6.1.4.1.1206.4.2.1.1.2.1.6.1",
    "phaseYellowChange.1": "1.3.6.1.4.1.1206.4.2.1.1.2.1.8.1",
    "phaseRedClear.1": "1.3.6.1.4.1.1206.4.2.1.1.2.1.9.1",
}


def test_every_object_is_the_documented_oid() -> None:
    built = {
        "phaseControlGroupPhaseOmit.1": ntcip.control_oid("omit", 1),
        "phaseControlGroupHold.1": ntcip.control_oid("hold", 1),
        "phaseControlGroupForceOff.1": ntcip.control_oid("force_off", 1),
        "phaseControlGroupVehCall.1": ntcip.control_oid("veh_call", 1),
        "phaseStatusGroupReds.1": ntcip.status_oid("reds", 1),
        "phaseStatusGroupYellows.1": ntcip.status_oid("yellows", 1),
        "phaseStatusGroupGreens.1": ntcip.status_oid("greens", 1),
        "unitBackupTime.0": ntcip.UNIT_BACKUP_TIME,
        **{f"{name}.1": ntcip.phase_timing_oid(name, 1) for name in ntcip.PHASE_TIMING},
    }
    assert set(built) == set(DOCUMENTED)
    for name, oid in built.items():
        assert ntcip.oid_str(oid) == DOCUMENTED[name], name
        assert ntcip.describe(oid) == name  # and the code names it back the same way


def test_groups_and_bits_follow_the_phase_numbers() -> None:
    assert ntcip.group_bit(1) == (1, 0)
    assert ntcip.group_bit(8) == (1, 7)
    assert ntcip.group_bit(9) == (2, 0)
    assert ntcip.masks([1, 3, 9]) == {1: 0b101, 2: 0b1}
    assert ntcip.phases_of(2, 0b11) == [9, 10]
    for bad in (0, 33, -1, True, 2.0):
        with pytest.raises(ValueError, match="NTCIP phase number"):
            ntcip.check_phase(bad)  # type: ignore[arg-type]


def test_tenth_second_intervals_are_scaled_and_bounded() -> None:
    yellow = ntcip.PHASE_TIMING["phaseYellowChange"]
    assert yellow.scale_s == 0.1 and yellow.lo == 30  # a yellow below 3 s cannot even be written
    assert ntcip.BACKUP_TIME.lo >= 1  # 0 would switch the fail-safe off
