"""Numba kernels of emergency-vehicle (EV) preemption. Private: call the wrappers.

The public wrappers in :mod:`signal_control.preemption` validate and convert the inputs,
then call these kernels with plain arrays and scalars only. Every kernel has a
plain-Python twin in ``signal_control/_reference/preemption.py`` that the tests compare
it with. ``cache=True`` so a second process pays no compile time.

Layout: flat arrays of length ``K``, one entry per (EV, signal ahead) pair.

Kernels take their arrays positionally (Numba has no keyword-only arguments) and use
``error_model="numpy"``: a division by zero gives ``inf``/NaN instead of raising (every
divisor here is > 0 by construction).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def _preemption_plan(  # noqa: PLR0917  (numba: positional arrays only)
    ev_s_m: np.ndarray,
    stop_s_m: np.ndarray,
    speed_mps: np.ndarray,
    ev_stage_green: np.ndarray,
    in_intergreen: np.ndarray,
    elapsed_green_s: np.ndarray,
    min_green_s: np.ndarray,
    yellow_s: np.ndarray,
    all_red_s: np.ndarray,
    intergreen_left_s: np.ndarray,
    queue_veh: np.ndarray,
    lanes: np.ndarray,
    startup_loss_s: float,
    headway_s: float,
    margin_s: float,
    min_speed_mps: float,
    clear_m: float,
    passed_m: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ETA, lead time, request and release of every (EV, signal) pair.

    Rules (see :func:`signal_control.preemption.preemption_plan`): ``eta = max(stop - ev,
    0) / max(speed, min_speed)`` (NaN position or speed: ``inf``); ``transition = 0`` if
    the EV's stage is green, ``intergreen_left`` in an intergreen, else ``max(min_green -
    elapsed, 0) + yellow + all_red``; ``discharge = startup_loss + queue / max(lanes, 1) *
    headway`` (NaN queue: 0); ``lead = transition + discharge + margin``; ``request = eta
    <= lead and stop >= ev - passed_m``; ``passed = ev > stop + clear_m``.

    Returns ``eta_s, transition_s, discharge_s, lead_s, request, passed``.
    """
    n = ev_s_m.shape[0]
    eta_s = np.empty(n)
    transition_s = np.empty(n)
    discharge_s = np.empty(n)
    lead_s = np.empty(n)
    request = np.empty(n, np.bool_)
    passed = np.empty(n, np.bool_)
    for k in range(n):
        ev = ev_s_m[k]
        stop = stop_s_m[k]
        speed = speed_mps[k]
        if np.isnan(ev) or np.isnan(speed):
            eta = np.inf
        else:
            eta = max(stop - ev, 0.0) / max(speed, min_speed_mps)
        if ev_stage_green[k]:
            transition = 0.0
        elif in_intergreen[k]:
            transition = intergreen_left_s[k]
        else:
            transition = max(min_green_s[k] - elapsed_green_s[k], 0.0) + yellow_s[k] + all_red_s[k]
        queue = queue_veh[k]
        queue = 0.0 if np.isnan(queue) else queue
        discharge = startup_loss_s + queue / max(lanes[k], 1) * headway_s
        lead = transition + discharge + margin_s
        eta_s[k] = eta
        transition_s[k] = transition
        discharge_s[k] = discharge
        lead_s[k] = lead
        request[k] = eta <= lead and stop >= ev - passed_m  # NaN ev: False
        passed[k] = ev > stop + clear_m  # NaN ev: False
    return eta_s, transition_s, discharge_s, lead_s, request, passed


@njit(cache=True, error_model="numpy")
def _resolve_conflicts(  # noqa: PLR0917  (numba: positional arrays only)
    group: np.ndarray,
    n_groups: int,
    stage: np.ndarray,
    eta_s: np.ndarray,
    severity: np.ndarray,
    request: np.ndarray,
) -> np.ndarray:
    """Grant, per signal, the stage of the requesting pair with the earliest ETA.

    ``group[k]`` is the signal of pair ``k`` as a dense index ``0 <= group < n_groups``.
    The winner of a signal is the requesting pair with the smallest ``eta_s`` (NaN reads
    as ``inf``), ties to the higher ``severity`` (no NaN), then to the lower index; every
    requesting pair at that signal asking for the winner's stage is granted.
    """
    n = group.shape[0]
    best = np.full(n_groups, -1, np.int64)
    best_eta = np.empty(n_groups)
    best_sev = np.empty(n_groups)
    for k in range(n):
        if not request[k]:
            continue
        g = group[k]
        eta = eta_s[k]
        eta = np.inf if np.isnan(eta) else eta
        sev = severity[k]
        # Strictly better only: among equals, the first (lowest index) stays.
        if best[g] < 0 or eta < best_eta[g] or (eta == best_eta[g] and sev > best_sev[g]):
            best[g] = k
            best_eta[g] = eta
            best_sev[g] = sev
    granted = np.empty(n, np.bool_)
    for k in range(n):
        granted[k] = request[k] and stage[k] == stage[best[group[k]]]
    return granted
