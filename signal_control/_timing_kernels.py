"""Numba kernels of signal-timing estimation, whole city per call. Private: call the wrappers.

The public wrappers in :mod:`signal_control.timing` validate and convert the inputs, then
call these kernels with plain arrays and scalars only. Every kernel has a plain-Python
twin in ``signal_control/_reference/timing.py`` that the tests compare it with. ``cache=True`` so a
second process pays no compile time.

Layout (CSR): the green phases of intersection ``i`` are ``phase_ptr[i]:phase_ptr[i + 1]``;
the lanes served by phase ``p`` are ``phase_lanes[phase_lane_ptr[p]:phase_lane_ptr[p + 1]]``;
the movements of phase ``p`` are ``mov_ptr[p]:mov_ptr[p + 1]``.

Kernels take their arrays positionally (Numba has no keyword-only arguments) and use
``error_model="numpy"``: no zero-division checks in the loops (every division here has a
non-zero divisor by construction, or its result is discarded).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Bits of the per-intersection flags (mirrored by ``signal_control.timing.TimingFlag``).
OVERSATURATED = 1  # Y >= y_max: Webster breaks down, the cycle is c_max
MIN_GREENS_EXCEED_C_MAX = 2  # sum of (min green + intergreen) > c_max: the cycle is that sum
UNOBSERVED_PHASE = 4  # some phase has no count: it was given exactly its min green
MAX_GREENS_BELOW_C_MIN = 8  # the greens cannot fill c_min (max greens, or no observed phase)

SLOTS = 4  # width of the padded layout: lanes per phase, phases per intersection


@njit(cache=True, error_model="numpy")
def _first_bad_reading(values: np.ndarray) -> int:
    """Index of the first negative or infinite value (NaN is allowed), or -1 if none."""
    for k in range(values.shape[0]):
        v = values[k]
        if v < 0.0 or v == np.inf:
            return k
    return -1


@njit(cache=True, error_model="numpy")
def _shrink_to(  # noqa: PLR0917  (numba: positional arrays only)
    a: int,
    b: int,
    excess_s: float,
    green_s: np.ndarray,
    floor_s: np.ndarray,
    weight: np.ndarray,
    free: np.ndarray,
) -> None:
    """Take ``excess_s`` off the free greens of phases ``a:b``, none below its floor.

    Water filling: each pass removes the remaining excess in proportion to ``weight``
    (equally when the free weights sum to 0); a green that would go below its floor is
    set to the floor and leaves the free set. Stops when a pass fixes no green or no
    free green is left.
    """
    while excess_s > 0.0:
        w_sum = 0.0
        n_free = 0
        for p in range(a, b):
            if free[p - a]:
                w_sum += weight[p]
                n_free += 1
        if n_free == 0:
            return
        fixed_any = False
        removed_s = 0.0
        for p in range(a, b):
            if not free[p - a]:
                continue
            share_s = excess_s * weight[p] / w_sum if w_sum > 0.0 else excess_s / n_free
            if green_s[p] - share_s <= floor_s[p]:
                removed_s += green_s[p] - floor_s[p]
                green_s[p] = floor_s[p]
                free[p - a] = False
                fixed_any = True
            else:
                removed_s += share_s
                green_s[p] -= share_s
        if not fixed_any:
            return
        excess_s -= removed_s


@njit(cache=True, error_model="numpy")
def _grow_to(  # noqa: PLR0917  (numba: positional arrays only)
    a: int,
    b: int,
    deficit_s: float,
    green_s: np.ndarray,
    ceiling_s: np.ndarray,
    weight: np.ndarray,
    free: np.ndarray,
) -> None:
    """Add ``deficit_s`` to the free greens of phases ``a:b``, none above its ceiling.

    The mirror image of :func:`_shrink_to`.
    """
    while deficit_s > 0.0:
        w_sum = 0.0
        n_free = 0
        for p in range(a, b):
            if free[p - a]:
                w_sum += weight[p]
                n_free += 1
        if n_free == 0:
            return
        fixed_any = False
        added_s = 0.0
        for p in range(a, b):
            if not free[p - a]:
                continue
            share_s = deficit_s * weight[p] / w_sum if w_sum > 0.0 else deficit_s / n_free
            if green_s[p] + share_s >= ceiling_s[p]:
                added_s += ceiling_s[p] - green_s[p]
                green_s[p] = ceiling_s[p]
                free[p - a] = False
                fixed_any = True
            else:
                added_s += share_s
                green_s[p] += share_s
        if not fixed_any:
            return
        deficit_s -= added_s


@njit(cache=True, error_model="numpy")
def _fit_cycle(  # noqa: PLR0917  (numba: positional arrays only)
    a: int,
    b: int,
    y: np.ndarray,
    green_s: np.ndarray,
    intergreen_s: np.ndarray,
    min_green_s: np.ndarray,
    max_green_s: np.ndarray,
    c_min_s: float,
    c_max_s: float,
) -> tuple[float, int]:
    """Bring the cycle of phases ``a:b`` back into ``[c_min_s, c_max_s]`` where it can be.

    Observed phases (``y`` not NaN) give back time above their min green in proportion
    to ``y`` when the cycle is too long, or take time up to their max green when it is
    too short; unobserved phases keep exactly their min green. Returns the new cycle and
    the flag bits saying the bounds could not be met.
    """
    free = np.empty(b - a, np.bool_)  # phases whose green may still move
    floor_s = 0.0
    ceiling_s = 0.0
    total_s = 0.0
    for p in range(a, b):
        floor_s += min_green_s[p] + intergreen_s[p]
        if not np.isnan(y[p]):
            ceiling_s += max_green_s[p] + intergreen_s[p]
        else:
            ceiling_s += min_green_s[p] + intergreen_s[p]
        total_s += green_s[p] + intergreen_s[p]
    if total_s > c_max_s:
        for p in range(a, b):
            free[p - a] = not np.isnan(y[p]) and green_s[p] > min_green_s[p]
        _shrink_to(a, b, total_s - c_max_s, green_s, min_green_s, y, free)
    elif total_s < c_min_s:
        for p in range(a, b):
            free[p - a] = not np.isnan(y[p]) and green_s[p] < max_green_s[p]
        _grow_to(a, b, c_min_s - total_s, green_s, max_green_s, y, free)
    flag = 0
    if floor_s > c_max_s:
        flag |= MIN_GREENS_EXCEED_C_MAX
    if ceiling_s < c_min_s:
        flag |= MAX_GREENS_BELOW_C_MIN
    cycle_s = 0.0
    for p in range(a, b):
        cycle_s += green_s[p] + intergreen_s[p]
    return cycle_s, flag


@njit(cache=True, error_model="numpy")
def _estimate_timings(  # noqa: PLR0917  (numba: positional arrays only)
    phase_ptr: np.ndarray,
    phase_owner: np.ndarray,
    phase_slots: np.ndarray,
    phase_lane_ptr: np.ndarray,
    phase_lanes: np.ndarray,
    lane_slots: np.ndarray,
    sat_headway_h: np.ndarray,
    lost_sum_s: np.ndarray,
    lost_s: np.ndarray,
    intergreen_s: np.ndarray,
    min_green_s: np.ndarray,
    max_green_s: np.ndarray,
    count_veh: np.ndarray,
    window_s: float,
    c_min_s: float,
    c_max_s: float,
    y_max: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Webster cycle and splits with HCM effective greens, for every intersection.

    Besides the CSR arrays it takes a padded layout built once per network:
    ``lane_slots[j, p]`` is the ``j``-th lane of phase ``p`` (``j < SLOTS``; ``L`` where
    there is none) and ``phase_slots[j, i]`` the ``j``-th phase of intersection ``i``
    (``P`` where there is none); members past ``SLOTS`` are read from the CSR arrays.
    ``phase_owner[p]`` is the intersection of phase ``p``, ``sat_headway_h`` is
    ``1 / sat_flow_vph`` and ``lost_sum_s[i]`` the sum of ``lost_s`` over intersection
    ``i`` in phase order. Flat loops, and fixed-width loops over slots, keep the hot path
    free of short CSR loops, whose exits mispredict once per group and cost more than
    the work here; padding reads an extra slot that holds NaN (no reading) or 0.

    Returns ``cycle_s[n], green_s[P], y[P], y_sum[n], x[P], flags[n], bad_lane``;
    ``bad_lane`` is the first lane with a negative or infinite count (-1 if none), in
    which case the other outputs are empty and must not be used.
    """
    n = phase_ptr.shape[0] - 1
    n_phases = lost_s.shape[0]
    n_lanes = count_veh.shape[0]
    # Per lane: count / saturation flow, and the check of the counts. Slot L: no lane.
    ratio = np.empty(n_lanes + 1)
    bad = False
    for lane in range(n_lanes):
        c = count_veh[lane]
        ratio[lane] = c * sat_headway_h[lane]
        bad |= (c < 0.0) | (c == np.inf)
    ratio[n_lanes] = np.nan
    if bad:
        empty = np.empty(0)
        lane = _first_bad_reading(count_veh)
        return empty, empty, empty, empty, empty, np.empty(0, np.int64), lane
    # Per phase: critical flow ratio y = max over lanes (NaN: no lane with a count).
    flow_scale = 3600.0 / window_s  # count over the window -> veh/h
    y = np.empty(n_phases + 1)  # slot P: no phase
    for p in range(n_phases):
        m = -1.0  # below any real ratio; NaN never wins a comparison
        for j in range(SLOTS):
            v = ratio[lane_slots[j, p]]
            m = v if v > m else m
        for k in range(phase_lane_ptr[p] + SLOTS, phase_lane_ptr[p + 1]):
            v = ratio[phase_lanes[k]]
            m = v if v > m else m
        y[p] = m * flow_scale if m >= 0.0 else np.nan
    y[n_phases] = np.nan
    # Per intersection: Y, Webster's cycle; effective green = green_time * share / shares.
    y_sum = np.empty(n)
    green_time_s = np.empty(n)  # C - L, shared by the observed phases
    shares = np.empty(n)  # Y, or the number of observed phases when Y == 0 (equal split)
    flags = np.zeros(n, np.int64)
    for i in range(n):
        big_y = 0.0
        n_obs = 0
        for j in range(SLOTS):
            y_p = y[phase_slots[j, i]]
            big_y += 0.0 if np.isnan(y_p) else y_p
            n_obs += 0 if np.isnan(y_p) else 1
        a = phase_ptr[i]
        b = phase_ptr[i + 1]
        for p in range(a + SLOTS, b):
            big_y += 0.0 if np.isnan(y[p]) else y[p]
            n_obs += 0 if np.isnan(y[p]) else 1
        big_l = lost_sum_s[i]
        flag = UNOBSERVED_PHASE if n_obs < b - a else 0
        y_sum[i] = big_y if n_obs > 0 else np.nan
        if big_y >= y_max:
            target_s = c_max_s
            flag |= OVERSATURATED
        elif big_y == 0.0:
            target_s = c_min_s
        else:
            target_s = min(max((1.5 * big_l + 5.0) / (1.0 - big_y), c_min_s), c_max_s)
        green_time_s[i] = target_s - big_l
        shares[i] = big_y if big_y > 0.0 else max(n_obs, 1)
        flags[i] = flag
    # Per phase: displayed green = effective green + lost time - intergreen, in bounds.
    # (C - L) * y / Y rather than y * ((C - L) / Y): y <= Y, so it cannot overflow.
    green_s = np.empty(n_phases)
    span_s = np.empty(n_phases + 1)  # green + intergreen; slot P: no phase
    for p in range(n_phases):
        i = phase_owner[p]
        y_p = y[p]
        share = y_p if y_sum[i] > 0.0 else 1.0
        green = green_time_s[i] * share / shares[i] + lost_s[p] - intergreen_s[p]
        green = min(max(green, min_green_s[p]), max_green_s[p])
        green = min_green_s[p] if np.isnan(y_p) else green
        green_s[p] = green
        span_s[p] = green + intergreen_s[p]
    span_s[n_phases] = 0.0
    # Per intersection: the cycle; out of bounds (min greens raised it, max greens cut
    # it; rare) the greens are fitted again with the CSR loops.
    cycle_s = np.empty(n)
    for i in range(n):
        a = phase_ptr[i]
        b = phase_ptr[i + 1]
        cycle = 0.0
        for j in range(SLOTS):
            cycle += span_s[phase_slots[j, i]]
        for p in range(a + SLOTS, b):
            cycle += span_s[p]
        if a == b:  # not a signal: nothing to time
            cycle = np.nan
        elif cycle > c_max_s or cycle < c_min_s:
            cycle, flag = _fit_cycle(
                a, b, y, green_s, intergreen_s, min_green_s, max_green_s, c_min_s, c_max_s
            )
            flags[i] |= flag
        cycle_s[i] = cycle
    # Per phase: degree of saturation with the effective green given (> 0, validated).
    x = np.empty(n_phases)
    for p in range(n_phases):
        x[p] = y[p] * cycle_s[phase_owner[p]] / (green_s[p] + intergreen_s[p] - lost_s[p])
    return cycle_s, green_s, y[:n_phases], y_sum, x, flags, -1


@njit(cache=True, error_model="numpy")
def _smooth_timings(  # noqa: PLR0917  (numba: positional arrays only)
    phase_ptr: np.ndarray,
    intergreen_s: np.ndarray,
    min_green_s: np.ndarray,
    prev_cycle_s: np.ndarray,
    prev_green_s: np.ndarray,
    target_cycle_s: np.ndarray,
    target_green_s: np.ndarray,
    alpha: float,
    max_step_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Move every intersection's timing a step from ``prev`` toward ``target``.

    The cycle moves by ``alpha`` of the gap, at most ``max_step_s``; the greens are the
    same blend of previous and target greens, scaled to fill the new cycle, then raised
    to their minimums (time taken from the greens above their minimum, in proportion to
    their surplus; when the minimums do not fit, the cycle grows to hold them).
    A previous timing with a NaN (or infinity) takes the target as is; a target with a NaN
    keeps the previous timing; both: NaN.
    """
    n = phase_ptr.shape[0] - 1
    cycle_s = np.empty(n)
    green_s = np.empty(prev_green_s.shape[0])
    for i in range(n):
        a = phase_ptr[i]
        b = phase_ptr[i + 1]
        if a == b:
            cycle_s[i] = np.nan
            continue
        prev_ok = np.isfinite(prev_cycle_s[i])
        target_ok = np.isfinite(target_cycle_s[i])
        for p in range(a, b):
            prev_ok = prev_ok and np.isfinite(prev_green_s[p])
            target_ok = target_ok and np.isfinite(target_green_s[p])
        if not prev_ok and not target_ok:
            cycle_s[i] = np.nan
            for p in range(a, b):
                green_s[p] = np.nan
            continue
        if prev_ok and target_ok:
            gap_s = target_cycle_s[i] - prev_cycle_s[i]
            step_s = min(max(alpha * gap_s, -max_step_s), max_step_s)
            share = step_s / gap_s if gap_s != 0.0 else alpha
            new_cycle_s = prev_cycle_s[i] + step_s
            for p in range(a, b):
                green_s[p] = prev_green_s[p] + share * (target_green_s[p] - prev_green_s[p])
        elif target_ok:  # first update: take the target
            new_cycle_s = target_cycle_s[i]
            for p in range(a, b):
                green_s[p] = target_green_s[p]
        else:  # no new target: keep the previous timing
            new_cycle_s = prev_cycle_s[i]
            for p in range(a, b):
                green_s[p] = prev_green_s[p]
        # Scale the greens so that greens + intergreens fill the new cycle.
        avail_s = new_cycle_s
        w_sum = 0.0
        for p in range(a, b):
            avail_s -= intergreen_s[p]
            w_sum += green_s[p]
        if w_sum > 0.0:
            scale = avail_s / w_sum
            for p in range(a, b):
                green_s[p] *= scale
        else:
            for p in range(a, b):
                green_s[p] = avail_s / (b - a)
        # The min-green rule wins over smoothing.
        deficit_s = 0.0
        surplus_s = 0.0
        for p in range(a, b):
            gap = green_s[p] - min_green_s[p]
            if gap < 0.0:
                deficit_s -= gap
            else:
                surplus_s += gap
        if deficit_s > 0.0:
            take = min(deficit_s / surplus_s, 1.0) if surplus_s > 0.0 else 1.0
            for p in range(a, b):
                gap = green_s[p] - min_green_s[p]
                if gap <= 0.0:
                    green_s[p] = min_green_s[p]
                else:
                    green_s[p] = min_green_s[p] + gap * (1.0 - take)
        cycle = 0.0
        for p in range(a, b):
            cycle += green_s[p] + intergreen_s[p]
        cycle_s[i] = cycle
    return cycle_s, green_s


@njit(cache=True, error_model="numpy")
def _max_pressure(  # noqa: PLR0917  (numba: positional arrays only)
    phase_ptr: np.ndarray,
    mov_ptr: np.ndarray,
    mov_in_lane: np.ndarray,
    mov_out_lane: np.ndarray,
    mov_sat_flow_vph: np.ndarray,
    queue_veh: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Max-pressure (Varaiya 2013) phase choice for every intersection.

    ``pressure[p] = sum over movements of sat_flow * (queue[in] - queue[out])``, NaN
    queues read as 0 and a downstream lane of -1 (outside the model) as an empty queue.
    Returns ``pressure[P], best[n], bad_lane``; ``best`` is the local index of the phase
    with the highest pressure (ties: the lowest index; no phases: -1); ``bad_lane`` is the
    first lane with a negative or infinite queue (-1 if none), in which case the other
    outputs are empty.
    """
    n = phase_ptr.shape[0] - 1
    n_phases = mov_ptr.shape[0] - 1
    bad_lane = _first_bad_reading(queue_veh)
    if bad_lane >= 0:
        return np.empty(0), np.empty(0, np.int64), bad_lane
    pressure = np.empty(n_phases)
    best = np.empty(n, np.int64)
    for i in range(n):
        a = phase_ptr[i]
        b = phase_ptr[i + 1]
        best_p = -1
        best_pressure = -np.inf
        for p in range(a, b):
            total = 0.0
            for m in range(mov_ptr[p], mov_ptr[p + 1]):
                q_in = queue_veh[mov_in_lane[m]]
                if np.isnan(q_in):
                    q_in = 0.0
                out = mov_out_lane[m]
                q_out = queue_veh[out] if out >= 0 else 0.0
                if np.isnan(q_out):
                    q_out = 0.0
                total += mov_sat_flow_vph[m] * (q_in - q_out)
            pressure[p] = total
            if total > best_pressure:
                best_pressure = total
                best_p = p - a
        best[i] = best_p
    return pressure, best, -1
