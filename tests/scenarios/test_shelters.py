"""Shelter intake in SimPy: places, turning away, the full signal, occupancy over time."""

from __future__ import annotations

import pytest
import simpy

from scenarios.shelters import ShelterIntake


def test_intake_fills_then_turns_away_and_says_full() -> None:
    env = simpy.Environment()
    full: list[tuple[float, str]] = []
    intake = ShelterIntake(env, {"A": 2, "B": 5}, on_full=lambda s: full.append((env.now, s)))

    def arrivals() -> object:
        for k in range(3):
            yield env.timeout(10)
            intake.arrive(f"v{k}", "A")

    env.process(arrivals())
    env.run(until=100)
    assert intake.admitted == {"v0": 10.0, "v1": 20.0}
    assert intake.turned_away == {"v2": "A"}
    assert full == [(20.0, "A")]
    assert intake.room_veh("A") == 0 and intake.room_veh("B") == 5
    occ = intake.occupancy()
    assert list(occ[occ.shelter == "A"].occupancy_veh) == [0, 1, 2]
    assert intake.level_veh() == {"A": 2, "B": 0}


def test_zero_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="> 0"):
        ShelterIntake(simpy.Environment(), {"A": 0})
