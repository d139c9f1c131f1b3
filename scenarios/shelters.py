"""Shelter intake as SimPy: vehicles arrive, take a place if one is left, occupancy
is recorded over time, and listeners hear when a shelter becomes full."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping
from typing import Any

import pandas as pd
import simpy

log = logging.getLogger(__name__)


class ShelterIntake:
    """One :class:`simpy.Container` of places per shelter, on the run's SimPy clock.

    Parameters
    ----------
    env
        The run's SimPy environment (``EventBus.env``).
    capacity_veh
        Places per shelter id (> 0).
    on_full
        Called with the shelter id when its last place is taken.
    """

    def __init__(
        self,
        env: simpy.Environment,
        capacity_veh: Mapping[str, int],
        *,
        on_full: Callable[[str], None] | None = None,
    ) -> None:
        bad = {k: v for k, v in capacity_veh.items() if v <= 0}
        if bad:
            raise ValueError(f"shelter capacities must be > 0 (got {bad})")
        self.env = env
        self.places = {
            sid: simpy.Container(env, capacity=cap, init=0) for sid, cap in capacity_veh.items()
        }
        self.on_full = on_full
        self.admitted: dict[str, float] = {}  # vehicle -> time admitted
        self.turned_away: dict[str, str] = {}  # vehicle -> shelter that was full
        self.rows: list[tuple[float, str, int]] = [(float(env.now), s, 0) for s in self.places]

    def room_veh(self, shelter: str) -> int:
        c = self.places[shelter]
        return int(c.capacity - c.level)

    def arrive(self, vehicle: str, shelter: str) -> simpy.Process:
        """A vehicle reaches ``shelter`` now (a SimPy process: it is admitted at once or
        turned away when the shelter is full)."""
        return self.env.process(self._intake(vehicle, shelter))

    def _intake(self, vehicle: str, shelter: str) -> Generator[simpy.Event, Any, None]:
        places = self.places[shelter]
        if places.level >= places.capacity:
            self.turned_away[vehicle] = shelter
            return
        yield places.put(1)
        self.admitted[vehicle] = float(self.env.now)
        self.rows.append((float(self.env.now), shelter, int(places.level)))
        if places.level >= places.capacity and self.on_full is not None:
            log.info("shelter %s is full at t=%.0f s", shelter, self.env.now)
            self.on_full(shelter)

    def occupancy(self) -> pd.DataFrame:
        """Occupancy over time: ``t_s, shelter, occupancy_veh`` (one row per change)."""
        return pd.DataFrame(self.rows, columns=["t_s", "shelter", "occupancy_veh"])

    def level_veh(self) -> dict[str, int]:
        return {s: int(c.level) for s, c in self.places.items()}
