"""Coordination of adaptive signals: one cycle, offsets for a progression, and the main
street's green ending at its yield point (coordinated-actuated control).

With ``control.adaptive.coordination = "arterial"`` the adaptive signals stop floating
each on its own cycle:

- **One cycle** for all of them: the longest of their smoothed estimates, as the
  critical intersection sets a coordinated group's cycle (changed only when the
  estimate moves by more than :data:`CYCLE_HYSTERESIS_S`, so the offsets stay put).
- **Offsets** for a progression along the arterials at ``progression_kph``: a signal's
  coordinated green starts ``(x - x_min) / v`` (mod the cycle) after the first one's,
  the same eastward progression as the cities' fixed-time plans
  (:mod:`city_models.signals`).
- **The coordinated stage** of a signal is its main street's through stage: the green
  with the longest planned duration in the city's own plan. It never gaps out; its green
  ends at its **yield point**, the planned start nearest to when it began plus its
  planned green, within the minimum and maximum green. The other stages get the
  estimate's split of the common cycle as their maximum and gap out as before; the time
  they leave unused returns to the main street (early return to green).

A cycle's length changes without its phase jumping: :class:`CycleClock` counts the
cycle's phase continuously, so a longer cycle slows the clock from the change on (the
yield points ahead move by what the slower clock takes, not by a jump of the whole
pattern). The main stage is chosen per junction by its planned green alone and the
offsets run eastward: where a junction's longest green serves its north-south street,
that green gets the eastward offset (the district's plans do not say which street is
the arterial one). Nothing here talks to SUMO or the port: :class:`Coordinator` answers when a
coordinated green should end, and the manager asks the guard for it (a hold, which
never cuts a minimum green and is capped at the maximum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signal_control.interfaces import SignalLike

FloatArray = npt.NDArray[np.float64]

# the common cycle follows the longest estimate only when it moved by more than this:
# every change of cycle moves the offsets (mod the cycle) and costs a transition
CYCLE_HYSTERESIS_S = 5.0


def coordinated_stage(signal: SignalLike) -> int:
    """The stage of the main street's through movement: the green with the longest
    planned duration in the signal's own plan (the first of equals)."""
    greens = [p for p in signal.phases if p.kind == "green"]
    if not greens:
        raise ValueError(f"signal {signal.id} has no green phase to coordinate")
    best = max(p.duration_s for p in greens)
    return next(k for k, p in enumerate(greens) if p.duration_s == best)


def progression_offsets_s(x_m: Sequence[float], speed_mps: float, cycle_s: float) -> FloatArray:
    """Each signal's offset for a progression in the direction of growing ``x`` at
    ``speed_mps``: ``(x - min x) / v`` mod ``cycle_s``."""
    if not (speed_mps > 0 and math.isfinite(speed_mps)):
        raise ValueError(f"progression speed must be a positive number (got {speed_mps} m/s)")
    if not (cycle_s > 0 and math.isfinite(cycle_s)):
        raise ValueError(f"cycle must be a positive number of seconds (got {cycle_s})")
    x = np.asarray(x_m, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0)
    return np.asarray(np.mod((x - x.min()) / speed_mps, cycle_s), dtype=np.float64)


@dataclass
class CycleClock:
    """A cycle whose length can change while its phase runs on without a jump.

    ``phase(t) = phase_ref + (t - t_ref_s) / cycle_s`` in cycles; :meth:`set_cycle`
    rebases at ``t_s`` so that the phase is continuous there.
    """

    cycle_s: float
    t_ref_s: float = 0.0
    phase_ref: float = 0.0

    def __post_init__(self) -> None:
        if not (self.cycle_s > 0 and math.isfinite(self.cycle_s)):
            raise ValueError(f"cycle must be a positive number of seconds (got {self.cycle_s})")

    def phase(self, t_s: float) -> float:
        """Cycles counted at ``t_s`` (its fraction is the position in the cycle)."""
        return self.phase_ref + (t_s - self.t_ref_s) / self.cycle_s

    def set_cycle(self, t_s: float, cycle_s: float) -> None:
        """Run on at ``cycle_s`` from ``t_s`` (the phase at ``t_s`` is kept)."""
        if not (cycle_s > 0 and math.isfinite(cycle_s)):
            raise ValueError(f"cycle must be a positive number of seconds (got {cycle_s})")
        self.phase_ref = self.phase(t_s)
        self.t_ref_s = t_s
        self.cycle_s = cycle_s

    def nearest_s(self, t_s: float, pos_s: float) -> float:
        """The time nearest to ``t_s`` (before or after) at which the cycle stands at
        ``pos_s`` seconds into a cycle (the current cycle length; ties go later)."""
        frac = (pos_s / self.cycle_s) % 1.0
        k = math.floor(self.phase(t_s) - frac + 0.5)
        return self.t_ref_s + (k + frac - self.phase_ref) * self.cycle_s


def yield_point_s(
    clock: CycleClock,
    *,
    entered_s: float,
    offset_s: float,
    green_s: float,
    min_end_s: float,
    max_end_s: float,
) -> float:
    """When a coordinated green that began at ``entered_s`` should end: the planned start
    (``offset_s`` into the cycle) nearest to ``entered_s``, plus the planned ``green_s``,
    kept within ``[min_end_s, max_end_s]``. A green that began early runs on to its yield
    point (the time the other stages left unused); one that began late ends early, at
    least at its minimum, and the next cycle is back in step. In whole seconds (the
    simulation's step grid, as the guard counts greens) where one fits the bounds."""
    start = clock.nearest_s(entered_s, offset_s)
    return whole_s(start + green_s, min_end_s, max_end_s)


def whole_s(t_s: float, lo_s: float, hi_s: float) -> float:
    """``t_s`` rounded to a whole second within ``[lo_s, hi_s]`` (only clamped where no
    whole second fits)."""
    lo, hi = math.ceil(lo_s - 1e-9), math.floor(hi_s + 1e-9)
    if lo > hi:
        return min(max(t_s, lo_s), hi_s)
    return float(min(max(round(t_s), lo), hi))


class Coordinator:
    """The common cycle, offsets and coordinated stages of a group of signals.

    Parameters
    ----------
    signals
        The signals to coordinate (the adaptive ones, in the manager's order).
    x_m
        Each signal's x coordinate (metres, the city's projected frame).
    progression_kph
        The progression speed along the arterials.
    cycle_s
        The cycle until the first :meth:`update` (the longest of the signals' plans).
    """

    def __init__(
        self,
        signals: Sequence[SignalLike],
        x_m: Sequence[float],
        *,
        progression_kph: float,
        cycle_s: float,
    ) -> None:
        if len(x_m) != len(signals):
            raise ValueError(f"{len(x_m)} positions given for {len(signals)} signals")
        self.tls_ids = [s.id for s in signals]
        self.stage = [coordinated_stage(s) for s in signals]
        self.x_m = [float(x) for x in x_m]
        self.speed_mps = progression_kph / 3.6
        self.clock = CycleClock(cycle_s)
        self.offset_s = progression_offsets_s(self.x_m, self.speed_mps, cycle_s)
        self.cycle_changes = 0

    @property
    def cycle_s(self) -> float:
        return self.clock.cycle_s

    def update(self, t_s: float, cycles_s: FloatArray) -> bool:
        """Follow the longest of the signals' cycle estimates (NaN ignored) if it moved by
        more than :data:`CYCLE_HYSTERESIS_S`; returns whether the cycle changed."""
        finite = cycles_s[np.isfinite(cycles_s)]
        if not finite.size:
            return False
        target = float(finite.max())
        if abs(target - self.clock.cycle_s) <= CYCLE_HYSTERESIS_S:
            return False
        self.clock.set_cycle(t_s, target)
        self.offset_s = progression_offsets_s(self.x_m, self.speed_mps, target)
        self.cycle_changes += 1
        return True

    def split_greens(
        self, green_s: FloatArray, own_cycle_s: float, intergreen_s: float
    ) -> FloatArray:
        """One signal's greens stretched from its own cycle to the common one (the
        estimate's split of the longer cycle)."""
        own = own_cycle_s - intergreen_s
        common = self.clock.cycle_s - intergreen_s
        if not (own > 0 and common > 0):
            return green_s.copy()
        return np.asarray(green_s * (common / own), dtype=np.float64)

    def green_end_s(
        self, i: int, *, entered_s: float, green_s: float, min_end_s: float, max_end_s: float
    ) -> float:
        """When signal ``i``'s coordinated green, begun at ``entered_s``, ends."""
        return yield_point_s(
            self.clock,
            entered_s=entered_s,
            offset_s=float(self.offset_s[i]),
            green_s=green_s,
            min_end_s=min_end_s,
            max_end_s=max_end_s,
        )
