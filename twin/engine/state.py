"""The twin's view of the simulation: preallocated numpy arrays indexed by stable ids.

Kernels and controllers read these arrays; only :mod:`twin.engine.sumo_session` fills them.
Index ``k`` of an array always refers to the same object for the whole run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _index(ids: Sequence[str]) -> dict[str, int]:
    index = {name: k for k, name in enumerate(ids)}
    if len(index) != len(ids):
        raise ValueError("ids must be unique")
    return index


@dataclass
class TwinState:
    """Arrays the session refreshes at each control interval.

    Attributes
    ----------
    tls_phase
        Current phase index per signal (``tls_ids`` order).
    det_count_veh, det_occupancy_pct, det_speed_mps
        Each detector's last aggregation interval (SUMO aggregates every
        ``detector_period_s``; ``det_interval_end_s`` says which interval).
    lane_halting_veh
        Halting vehicles per signalized incoming lane, at the last read.
    lane_veh_length_m
        Mean length of the vehicles on each of those lanes, at the last read (0 when the
        lane is empty); with the halting count it gives the queue in metres.
    lane_tls
        CSR offsets: lanes of signal ``k`` are ``lane_tls[k]:lane_tls[k+1]``.
    tracked_*
        Tracked vehicles (e.g. emergency vehicles), one slot each; ``nan`` when absent.
    """

    tls_ids: tuple[str, ...]
    det_ids: tuple[str, ...]
    lane_ids: tuple[str, ...]
    lane_tls: IntArray
    t_s: float = 0.0
    tls_phase: IntArray = field(init=False)
    det_count_veh: FloatArray = field(init=False)
    det_occupancy_pct: FloatArray = field(init=False)
    det_speed_mps: FloatArray = field(init=False)
    det_interval_end_s: float = -1.0
    lane_halting_veh: FloatArray = field(init=False)
    lane_veh_length_m: FloatArray = field(init=False)
    tracked_ids: list[str] = field(default_factory=list)
    tracked_x_m: FloatArray = field(default_factory=lambda: np.zeros(0))
    tracked_y_m: FloatArray = field(default_factory=lambda: np.zeros(0))
    tracked_speed_mps: FloatArray = field(default_factory=lambda: np.zeros(0))
    tracked_lane_pos_m: FloatArray = field(default_factory=lambda: np.zeros(0))
    tracked_distance_m: FloatArray = field(default_factory=lambda: np.zeros(0))
    tracked_edge: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tls_index = _index(self.tls_ids)
        self.det_index = _index(self.det_ids)
        self.lane_index = _index(self.lane_ids)
        if self.lane_tls.shape != (len(self.tls_ids) + 1,):
            raise ValueError("lane_tls must hold len(tls_ids) + 1 CSR offsets")
        self.tls_phase = np.zeros(len(self.tls_ids), dtype=np.int64)
        self.det_count_veh = np.full(len(self.det_ids), np.nan)
        self.det_occupancy_pct = np.full(len(self.det_ids), np.nan)
        self.det_speed_mps = np.full(len(self.det_ids), np.nan)
        self.lane_halting_veh = np.zeros(len(self.lane_ids))
        self.lane_veh_length_m = np.zeros(len(self.lane_ids))

    def set_tracked(self, vehicle_ids: Sequence[str]) -> None:
        """(Re)allocate the tracked-vehicle slots."""
        n = len(vehicle_ids)
        self.tracked_ids = list(vehicle_ids)
        self.tracked_x_m = np.full(n, np.nan)
        self.tracked_y_m = np.full(n, np.nan)
        self.tracked_speed_mps = np.full(n, np.nan)
        self.tracked_lane_pos_m = np.full(n, np.nan)
        self.tracked_distance_m = np.full(n, np.nan)
        self.tracked_edge = [""] * n
