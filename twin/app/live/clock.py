"""The live clock: seconds of one time line shared by the center and the controllers.

``now_s() = origin_s + speed * (time.time() - epoch_wall_s)``. At ``speed`` 1 with the
default epoch (today's midnight, UTC) it is the time of day in seconds, which is what
the controllers' plans and their offsets count in. A demo or a soak test runs faster
(``speed`` 10): every process of it is given the same epoch and speed, so they agree on
the time without talking about it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


def midnight_utc_s(now_wall_s: float | None = None) -> float:
    """The wall-clock time of the last midnight, UTC."""
    now = time.time() if now_wall_s is None else now_wall_s
    return math.floor(now / 86_400.0) * 86_400.0


@dataclass(frozen=True)
class LiveClock:
    """A time line at ``speed`` times the wall clock.

    Parameters
    ----------
    epoch_wall_s
        The wall-clock time (``time.time()``) at which the time line reads ``origin_s``.
    speed
        Seconds of the time line per wall-clock second (> 0).
    origin_s
        The time line's reading at ``epoch_wall_s``.
    """

    epoch_wall_s: float
    speed: float = 1.0
    origin_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and 0.0 < self.speed <= 1000.0):
            raise ValueError(f"clock speed {self.speed!r}; allowed: (0, 1000]")
        if not math.isfinite(self.epoch_wall_s) or not math.isfinite(self.origin_s):
            raise ValueError("clock epoch and origin must be finite")

    @classmethod
    def time_of_day(cls, speed: float = 1.0) -> LiveClock:
        """Seconds since midnight UTC at ``speed`` 1; faster clocks start at the same
        reading now and run ``speed`` times as fast."""
        now = time.time()
        return cls(epoch_wall_s=now, speed=speed, origin_s=now - midnight_utc_s(now))

    def now_s(self) -> float:
        return self.origin_s + self.speed * (time.time() - self.epoch_wall_s)

    def wall_of(self, t_s: float) -> float:
        """The wall-clock time at which the time line reads ``t_s``."""
        return self.epoch_wall_s + (t_s - self.origin_s) / self.speed

    def delay_s(self, t_s: float) -> float:
        """Wall-clock seconds from now until the time line reads ``t_s`` (>= 0)."""
        return max((t_s - self.now_s()) / self.speed, 0.0)

    def as_args(self) -> list[str]:
        """Command-line options that give another process this clock."""
        return [
            "--epoch",
            repr(self.epoch_wall_s),
            "--speed",
            repr(self.speed),
            "--origin",
            repr(self.origin_s),
        ]
