"""The phone in the emergency vehicle: emulated GPS reports (the simulated world's side).

Suwon's center-based emergency-vehicle (EV) priority works from the ambulance crew's
phone: it sends GPS fixes (about 1 Hz, 5–10 m noise) to the traffic control center,
which map-matches them to the route it proposed, estimates the EV's speed and its
arrival time at each stop line, and turns signals green ahead of it. This module holds
that chain, free of SUMO and of the simulation:

* :class:`GpsModel` and :class:`GpsEmulator` turn the true position of the simulated
  EV into the reports a phone would send: periodic, noisy, late, sometimes lost.
The center's side (map matching and tracking) is :mod:`twin.center.tracking`, the same
code in simulation and in live mode.

Positions are in the network's planar coordinates (metres), times in simulation
seconds.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from twin.center.tracking import GpsReport

log = logging.getLogger(__name__)

_TIME_EPS_S = 1e-6
"""Tolerance when comparing simulation times (steps accumulate rounding error)."""


# --------------------------------------------------------------------------- model


class GpsModel(BaseModel):
    """How a phone's GPS reports reach the control center (the scenario's ``[gps]``).

    Attributes
    ----------
    period_s
        Time between two fixes (s), in (0, 10]. Phones typically report at 1 Hz.
    noise_m
        Standard deviation of the position error on each axis (m), in [0, 50].
        Phones: 5-10 m.
    latency_s
        Delay from the fix to its arrival at the center (s), in [0, 10].
    drop_rate
        Probability that a report is lost, in [0, 1).

    Raises
    ------
    pydantic.ValidationError
        (a ``ValueError``) when a field is out of range or not a finite number; the
        message names the field (a scenario file's loader names the file too).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    period_s: float = Field(default=1.0, gt=0.0, le=10.0)
    noise_m: float = Field(default=5.0, ge=0.0, le=50.0)
    latency_s: float = Field(default=1.0, ge=0.0, le=10.0)
    drop_rate: float = Field(default=0.05, ge=0.0, lt=1.0)


class GpsEmulator:
    """The phone of one EV: periodic, noisy, delayed and sometimes lost GPS reports.

    Call :meth:`observe` with the vehicle's true position at every simulation step and
    :meth:`poll` to collect what has reached the center.

    Parameters
    ----------
    model
        Period, noise, latency and drop rate.
    seed
        Seed of the emulator's own random generator; the same seed and the same calls
        give the same reports.
    vehicle_id
        Written into every report.
    """

    def __init__(
        self, model: GpsModel, *, seed: int | np.random.SeedSequence, vehicle_id: str = "ev"
    ) -> None:
        self.model = model
        self.vehicle_id = vehicle_id
        self._rng = np.random.default_rng(seed)
        self._first_fix_s: float | None = None
        self._next_fix_s: float | None = None
        self._last_observed_s: float | None = None
        self._in_flight: deque[GpsReport] = deque()
        self.n_fixes = 0
        """Fixes taken so far (sent or lost)."""
        self.n_dropped = 0
        """Reports lost so far."""

    def observe(self, t_s: float, x_m: float, y_m: float) -> None:
        """Give the vehicle's true position at time ``t_s``; takes a fix when one is due.

        The first call takes a fix; later fixes fall on ``t0 + k · period_s``. When the
        simulation step is longer than the period, one fix is taken per call.

        Parameters
        ----------
        t_s
            Simulation time (s); must not go backwards between calls.
        x_m, y_m
            True position (m).

        Raises
        ------
        ValueError
            When ``t_s`` is not finite or earlier than the previous call's.
        """
        if not math.isfinite(t_s):
            raise ValueError(f"GpsEmulator.observe: t_s must be finite; got {t_s!r}.")
        if self._last_observed_s is not None and t_s < self._last_observed_s:
            raise ValueError(
                f"GpsEmulator.observe: time went backwards from {self._last_observed_s} s "
                f"to {t_s} s."
            )
        self._last_observed_s = t_s
        if self._first_fix_s is None:
            self._first_fix_s = t_s
        elif self._next_fix_s is not None and t_s < self._next_fix_s - _TIME_EPS_S:
            return
        self._take_fix(t_s, x_m, y_m)
        period = self.model.period_s
        k = math.floor((t_s - self._first_fix_s) / period + _TIME_EPS_S) + 1
        self._next_fix_s = self._first_fix_s + k * period

    def _take_fix(self, t_s: float, x_m: float, y_m: float) -> None:
        # Draw the drop decision and the noise for every fix, so that the random stream
        # (and so the noise of later fixes) does not depend on the drop rate.
        dropped = bool(self._rng.random() < self.model.drop_rate)
        dx_m, dy_m = self._rng.normal(0.0, self.model.noise_m, size=2)
        self.n_fixes += 1
        if dropped:
            self.n_dropped += 1
            return
        self._in_flight.append(
            GpsReport(
                vehicle_id=self.vehicle_id,
                t_s=float(t_s),
                x_m=float(x_m + dx_m),
                y_m=float(y_m + dy_m),
                received_s=float(t_s + self.model.latency_s),
            )
        )

    def poll(self, now_s: float) -> list[GpsReport]:
        """Reports that have reached the center by ``now_s``, in arrival order.

        Returned reports are removed: each report is returned once.
        """
        out: list[GpsReport] = []
        # The latency is constant, so arrival order is the order the fixes were taken.
        while self._in_flight and self._in_flight[0].received_s <= now_s + _TIME_EPS_S:
            out.append(self._in_flight.popleft())
        return out

    @property
    def n_in_flight(self) -> int:
        """Reports sent but not yet arrived."""
        return len(self._in_flight)
