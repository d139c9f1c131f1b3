"""Compile the Numba kernels a real-time loop calls, before that loop starts.

The kernels are compiled on their first call (``cache=True`` keeps the machine code on
disk, but a fresh install, a new Numba or a cleared cache has none). About a second per
kernel family on a 2-core machine, several with coverage tracing: inside live mode's
loop that first call would come with the first ambulance, and a center that stalls for
seconds there lets the EV's GPS go stale and releases its priority. The live service
calls :func:`warm_up_kernels` before it takes the field over.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from signal_control.preemption import preemption_plan, recovery_greens, resolve_conflicts
from signal_control.timing import (
    TimingNetwork,
    TimingParams,
    TimingWorkspace,
    estimate_timings,
    smooth_timings,
)

log = logging.getLogger(__name__)


def warm_up_kernels() -> float:
    """Call every kernel of EV priority and of the adaptive estimate once on a tiny
    input (compiling it, or loading it from Numba's cache); returns the seconds taken."""
    t0 = time.perf_counter()

    def one(v: float) -> np.ndarray:
        return np.array([v], dtype=np.float64)

    no = np.zeros(1, dtype=np.bool_)
    preemption_plan(ev_s_m=one(0.0), stop_s_m=one(100.0), speed_mps=one(10.0),
                    ev_stage_green=no, in_intergreen=no, elapsed_green_s=one(5.0),
                    min_green_s=one(10.0), yellow_s=one(3.0), all_red_s=one(2.0),
                    intergreen_left_s=one(0.0), queue_veh=one(0.0), lanes=one(1.0))  # fmt: skip
    resolve_conflicts(np.zeros(1, np.int64), np.zeros(1, np.int64), one(10.0), one(1.0), ~no)
    recovery_greens(np.array([30.0, 20.0]), np.array([10.0, 10.0]), np.array([60.0, 60.0]),
                    5.0, 2)  # fmt: skip
    network = TimingNetwork.create(
        phase_ptr=np.array([0, 2]), phase_lane_ptr=np.array([0, 1, 2]),
        phase_lanes=np.array([0, 1]), sat_flow_vph=np.array([1800.0, 1800.0]),
        lost_s=np.array([4.0, 4.0]), intergreen_s=np.array([5.0, 5.0]),
        min_green_s=np.array([10.0, 10.0]), max_green_s=np.array([60.0, 60.0]),
    )  # fmt: skip
    params = TimingParams(window_s=300.0)
    counts = np.array([20.0, 10.0])
    estimate_timings(network, counts, params)
    target = estimate_timings(network, counts, params, out=TimingWorkspace(network))
    smooth_timings(network, np.full(1, np.nan), np.full(2, np.nan), target.cycle_s,
                   target.green_s, alpha=0.5, max_step_s=15.0)  # fmt: skip
    took_s = time.perf_counter() - t0
    log.info("signal-control kernels ready in %.2f s", took_s)
    return took_s
