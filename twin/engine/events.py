"""The event bus: a SimPy environment advanced in lockstep with SUMO time.

Things that are not vehicles (emergency calls, dispatch, incidents, warnings, operator
actions) are SimPy processes. The run loop calls :meth:`EventBus.advance_to` with
SUMO's clock after each slice, so a process that waits ``timeout(30)`` wakes at the
first control tick at or after 30 s of simulation time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BusEvent:
    """One entry of the run's event log."""

    t_s: float
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


class EventBus:
    """SimPy environment + an append-only event log."""

    def __init__(self, *, start_s: float = 0.0) -> None:
        self.env = simpy.Environment(initial_time=start_s)
        self.events: list[BusEvent] = []

    @property
    def now_s(self) -> float:
        return float(self.env.now)

    def process(self, generator: Generator[simpy.Event, Any, Any]) -> simpy.Process:
        """Start a SimPy process (a generator yielding SimPy events)."""
        return self.env.process(generator)

    def at(
        self, t_s: float, action: Callable[[], None], *, name: str, **data: Any
    ) -> simpy.Process:
        """Run ``action`` at simulation time ``t_s``, logged as an event of kind ``name``
        with ``data`` (the kind is a constant, e.g. ``"dispatch"``; ids go in ``data``,
        e.g. ``ev="amb1"``, so that events group by kind)."""
        if t_s < self.now_s:
            raise ValueError(f"cannot schedule {name!r} at {t_s} s: the bus is at {self.now_s} s")

        def _proc() -> Generator[simpy.Event, Any, None]:
            yield self.env.timeout(t_s - self.now_s)
            self.record(name, **data)
            action()

        return self.env.process(_proc())

    def record(self, kind: str, *, t_s: float | None = None, **data: Any) -> BusEvent:
        """Log an event at ``t_s`` (default: the bus clock, which moves at control ticks;
        step hooks pass SUMO's time). ``kind`` is a constant string; the ids it is about
        (a vehicle, a signal, an edge) go in ``data``."""
        event = BusEvent(self.now_s if t_s is None else t_s, kind, data)
        self.events.append(event)
        log.debug("t=%.1f %s %s", event.t_s, kind, data)
        return event

    def advance_to(self, t_s: float) -> None:
        """Run every SimPy event due up to and including ``t_s``."""
        if t_s > self.env.now:
            self.env.run(until=t_s)
        # events scheduled exactly at t_s have run: simpy stops *before* `until`,
        # so step through what is due now as well
        while self.env.peek() <= t_s:
            self.env.step()
