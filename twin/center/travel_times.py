"""The center's current travel time per edge: a moving mean of measured speeds.

SUMO's own per-edge estimate (``edge.getTraveltime``) is the edge's length over the
mean speed of the vehicles on it *in the last step*: one car stopped at a red light
makes a 200 m edge cost hours, and the next step, with the light green and the car
gone, it costs its free-flow time again. Route guidance on that estimate chases the
signal cycle: it once sent an EV 1.8 km round a queue that had cleared before it got
there (docs/ARCHITECTURE.md, "Two EVs an hour").

This estimate is the one SUMO's rerouting device keeps for its vehicles
(``--device.rerouting.adaptation-steps``): the mean of each edge's measured speed over
the last ``window_s`` (an empty edge counts with its speed limit, as SUMO reports it),
and the travel time is the length over that mean. Over three minutes a signalized
approach averages over its cycles: its time then includes what its signals cost on
average, not what they cost at the one instant the route was chosen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

DEFAULT_WINDOW_S = 180.0  # SUMO's default: 180 samples of 1 s (adaptation-steps)
MIN_SPEED_MPS = 0.1  # an edge stopped for the whole window: 2,000 s per 200 m, not inf


class EdgeTravelTimes:
    """Travel time per edge [s] from the mean of its speeds over the last ``window_s``.

    Parameters
    ----------
    length_m
        Each edge's length [m], by SUMO edge id (the order of the speeds passed to
        :meth:`observe`).
    interval_s
        Seconds between two samples (the scenario's control interval).
    window_s
        How far back the mean reaches [s]; ``ceil(window_s / interval_s)`` samples.

    Before the first sample every edge takes its free-flow time (``times_s`` returns an
    empty mapping, which :func:`city_models.graph.fastest_route` reads that way); until
    the window has filled, the mean is over the samples so far.
    """

    def __init__(
        self,
        length_m: Mapping[str, float],
        *,
        interval_s: float,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        if interval_s <= 0.0 or window_s <= 0.0:
            raise ValueError(
                f"interval_s = {interval_s:g} and window_s = {window_s:g}: both must be > 0"
            )
        self.edge_ids: list[str] = list(length_m)
        self._length_m = np.array([length_m[e] for e in self.edge_ids], dtype=np.float64)
        self.n_samples = max(1, math.ceil(window_s / interval_s - 1e-9))
        self._speeds = np.zeros((self.n_samples, len(self.edge_ids)), dtype=np.float64)
        self._count = 0  # samples taken so far (the ring's next row: count % n_samples)
        self.buffer = np.zeros(len(self.edge_ids), dtype=np.float64)  # read into, then observe

    @property
    def samples(self) -> int:
        """Samples in the mean now (at most ``n_samples``)."""
        return min(self._count, self.n_samples)

    def observe(self, speeds_mps: Sequence[float] | npt.NDArray[np.float64] | None = None) -> None:
        """One sample: each edge's mean speed now [m/s], in ``edge_ids`` order
        (default: :attr:`buffer`, which a session's ``read_edge_speeds`` fills)."""
        row = self.buffer if speeds_mps is None else np.asarray(speeds_mps, dtype=np.float64)
        if row.shape != (len(self.edge_ids),):
            raise ValueError(f"{row.shape[0]} speeds for {len(self.edge_ids)} edges")
        self._speeds[self._count % self.n_samples] = row
        self._count += 1

    def times_s(self) -> dict[str, float]:
        """Each edge's travel time [s]: its length over its mean speed in the window."""
        n = self.samples
        if n == 0:
            return {}
        mean = self._speeds[:n].mean(axis=0)
        t = self._length_m / np.maximum(mean, MIN_SPEED_MPS)
        return dict(zip(self.edge_ids, t.tolist(), strict=True))
