"""Plain-Python twins of ``signal_control._preemption_kernels``: obvious, slow loops.

Same signatures and outputs as the public wrappers in ``signal_control.preemption``
(without their input checks); the rules are spelled out in that module's docstring.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from signal_control.preemption import PreemptionPlan


def _floats(value: npt.ArrayLike) -> list[float]:
    return [float(v) for v in np.asarray(value, dtype=float)]


def preemption_plan_reference(
    *,
    ev_s_m: npt.ArrayLike,
    stop_s_m: npt.ArrayLike,
    speed_mps: npt.ArrayLike,
    ev_stage_green: npt.ArrayLike,
    in_intergreen: npt.ArrayLike,
    elapsed_green_s: npt.ArrayLike,
    min_green_s: npt.ArrayLike,
    yellow_s: npt.ArrayLike,
    all_red_s: npt.ArrayLike,
    intergreen_left_s: npt.ArrayLike,
    queue_veh: npt.ArrayLike,
    lanes: npt.ArrayLike,
    startup_loss_s: float = 2.0,
    headway_s: float = 2.0,
    margin_s: float = 3.0,
    min_speed_mps: float = 2.0,
    clear_m: float = 10.0,
    passed_m: float = 0.0,
) -> PreemptionPlan:
    """ETA, lead time, request and release, one pair at a time."""
    ev = _floats(ev_s_m)
    stop = _floats(stop_s_m)
    speed = _floats(speed_mps)
    green = [bool(v) for v in np.asarray(ev_stage_green)]
    inter = [bool(v) for v in np.asarray(in_intergreen)]
    elapsed = _floats(elapsed_green_s)
    gmin = _floats(min_green_s)
    yellow = _floats(yellow_s)
    red = _floats(all_red_s)
    left = _floats(intergreen_left_s)
    queue = _floats(queue_veh)
    n_lanes = [int(v) for v in np.asarray(lanes)]
    etas: list[float] = []
    transitions: list[float] = []
    discharges: list[float] = []
    leads: list[float] = []
    requests: list[bool] = []
    passes: list[bool] = []
    for k in range(len(ev)):
        if math.isnan(ev[k]) or math.isnan(speed[k]):
            eta = math.inf
        else:
            distance = stop[k] - ev[k]
            if distance < 0:
                distance = 0.0
            eta = distance / max(speed[k], min_speed_mps)
        if green[k]:
            transition = 0.0
        elif inter[k]:
            transition = left[k]
        else:
            min_green_left = gmin[k] - elapsed[k]
            if min_green_left < 0:
                min_green_left = 0.0
            transition = min_green_left + yellow[k] + red[k]
        q = 0.0 if math.isnan(queue[k]) else queue[k]
        per_lane = q / max(n_lanes[k], 1)
        discharge = startup_loss_s + per_lane * headway_s
        lead = transition + discharge + margin_s
        not_passed = not math.isnan(ev[k]) and stop[k] >= ev[k] - passed_m
        etas.append(eta)
        transitions.append(transition)
        discharges.append(discharge)
        leads.append(lead)
        requests.append(not_passed and eta <= lead)
        passes.append(not math.isnan(ev[k]) and ev[k] > stop[k] + clear_m)
    return PreemptionPlan(
        np.array(etas, dtype=float),
        np.array(transitions, dtype=float),
        np.array(discharges, dtype=float),
        np.array(leads, dtype=float),
        np.array(requests, dtype=bool),
        np.array(passes, dtype=bool),
    )


def resolve_conflicts_reference(
    signal_index: npt.ArrayLike,
    stage: npt.ArrayLike,
    eta_s: npt.ArrayLike,
    severity: npt.ArrayLike,
    request: npt.ArrayLike,
) -> npt.NDArray[np.bool_]:
    """Per signal: the requesting pair with the earliest ETA, then severity, then index."""
    signals = [int(v) for v in np.asarray(signal_index)]
    stages = [int(v) for v in np.asarray(stage)]
    etas = [math.inf if math.isnan(v) else v for v in _floats(eta_s)]
    sev = _floats(severity)
    asks = [bool(v) for v in np.asarray(request)]
    winner_stage: dict[int, int] = {}
    for sig in set(signals):
        candidates = [k for k in range(len(signals)) if signals[k] == sig and asks[k]]
        if candidates:
            best = min(candidates, key=lambda k: (etas[k], -sev[k], k))
            winner_stage[sig] = stages[best]
    granted = [asks[k] and winner_stage.get(signals[k]) == stages[k] for k in range(len(signals))]
    return np.array(granted, dtype=bool)
