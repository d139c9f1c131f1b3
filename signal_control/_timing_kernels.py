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
non-zero divisor by construction, or its result is discarded). The timing estimate writes
into arrays its caller allocated once (``signal_control.timing.TimingWorkspace``) and
returns only an int: boxing result arrays for Python costs microseconds a call. The
kernels hold the GIL (no ``nogil``): ``estimate_timings`` calls without a workspace share
one scratch array per network on that basis.
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
    free: np.ndarray,
) -> tuple[float, int]:
    """Bring the cycle of phases ``a:b`` back into ``[c_min_s, c_max_s]`` where it can be.

    Observed phases (``y`` not NaN) give back time above their min green in proportion
    to ``y`` when the cycle is too long, or take time up to their max green when it is
    too short; unobserved phases keep exactly their min green. Returns the new cycle and
    the flag bits saying the bounds could not be met. ``free`` is scratch (at least
    ``b - a`` entries): the phases whose green may still move.
    """
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
def _time_intersection(  # noqa: PLR0917  (numba: positional arrays only)
    i: int,
    phase_ptr: np.ndarray,
    lost_sum_s: np.ndarray,
    phase_params: np.ndarray,
    c_min_s: float,
    c_max_s: float,
    y_max: float,
    phase_out: np.ndarray,
    int_out: np.ndarray,
    flags: np.ndarray,
    free: np.ndarray,
) -> None:
    """Every output of intersection ``i`` from its ``y``, one phase at a time (CSR).

    The path for an intersection with more than ``SLOTS`` phases: the arithmetic of the
    padded passes of :func:`_estimate_timings`, in the same order.
    """
    lost_s = phase_params[0]
    intergreen_s = phase_params[1]
    min_green_s = phase_params[2]
    max_green_s = phase_params[3]
    y = phase_out[0]
    green_s = phase_out[1]
    x = phase_out[2]
    a = phase_ptr[i]
    b = phase_ptr[i + 1]
    big_y = 0.0
    n_obs = 0
    for p in range(a, b):
        big_y += 0.0 if np.isnan(y[p]) else y[p]
        n_obs += 0 if np.isnan(y[p]) else 1
    big_l = lost_sum_s[i]
    flag = UNOBSERVED_PHASE if n_obs < b - a else 0
    int_out[1, i] = big_y if n_obs > 0 else np.nan
    if big_y >= y_max:
        target_s = c_max_s
        flag |= OVERSATURATED
    elif big_y == 0.0:
        target_s = c_min_s
    else:
        target_s = min(max((1.5 * big_l + 5.0) / (1.0 - big_y), c_min_s), c_max_s)
    green_time_s = target_s - big_l
    shares = big_y if big_y > 0.0 else float(max(n_obs, 1))
    cycle = 0.0
    for p in range(a, b):
        y_p = y[p]
        share = y_p if big_y > 0.0 else 1.0
        green = green_time_s * share / shares + lost_s[p] - intergreen_s[p]
        green = min(max(green, min_green_s[p]), max_green_s[p])
        green = min_green_s[p] if np.isnan(y_p) else green
        green_s[p] = green
        cycle += green + intergreen_s[p]
    if cycle > c_max_s or cycle < c_min_s:
        cycle, extra = _fit_cycle(
            a, b, y, green_s, intergreen_s, min_green_s, max_green_s, c_min_s, c_max_s, free
        )
        flag |= extra
    int_out[0, i] = cycle
    flags[i] = flag
    for p in range(a, b):
        x[p] = y[p] * cycle / (green_s[p] + intergreen_s[p] - lost_s[p])


@njit(cache=True, error_model="numpy")
def _estimate_timings(  # noqa: PLR0917  (numba: positional arrays only)
    phase_ptr: np.ndarray,
    phase_lane_ptr: np.ndarray,
    phase_lanes: np.ndarray,
    lane_slots: np.ndarray,
    phase_slot: np.ndarray,
    wide_phases: np.ndarray,
    wide_intersections: np.ndarray,
    sat_headway_h: np.ndarray,
    lost_sum_s: np.ndarray,
    slot_params: np.ndarray,
    phase_params: np.ndarray,
    count_veh: np.ndarray,
    window_s: float,
    c_min_s: float,
    c_max_s: float,
    y_max: float,
    ratio: np.ndarray,
    slot_out: np.ndarray,
    phase_out: np.ndarray,
    int_out: np.ndarray,
    flags: np.ndarray,
    free: np.ndarray,
    fit: np.ndarray,
) -> int:
    """Webster cycle and splits with HCM effective greens, for every intersection.

    Writes every result into the caller's arrays and returns -1, or the first lane with
    a negative or infinite count (and then writes no result).

    Network (built once by ``signal_control.timing._derived_layout``), besides the CSR
    arrays: ``lane_slots[k, p]`` is the ``k``-th lane of phase ``p`` (``k < SLOTS``;
    ``L`` where there is none), ``wide_phases`` the phases with more lanes (read from
    the CSR arrays). A padded *slot-major* copy: slot ``(j, i)`` holds the ``j``-th phase
    of intersection ``i`` (``j < SLOTS``), flat index ``j * (n + 1) + i``, column ``n``
    being a sink no loop reads; ``phase_slot[p]`` is the slot of phase ``p`` (the sink
    for the phases past ``SLOTS`` of the ``wide_intersections``);
    ``slot_params[r, j, i]`` is the lost time (r = 0), intergreen (1), min (2) and
    max green (3) of the phase in a slot (0 for padding), ``phase_params[r, p]`` the same
    per phase; ``sat_headway_h`` is ``1 / sat_flow_vph`` and ``lost_sum_s[i]`` the sum of
    ``lost_s`` over intersection ``i`` in phase order.

    Caller's arrays (allocated once, rewritten by every call): ``phase_out[3, P]``:
    ``y``, ``green_s`` and ``x`` of each phase; ``int_out[4, n]``: the cycle, ``Y``, and
    as scratch ``C - L`` and the shares the greens are split by; ``flags[n]``. Scratch:
    ``ratio[L + 1]``, ``slot_out[3, SLOTS, n + 1]`` (``y``, green and ``x`` per slot;
    its padding slots of ``y`` must hold NaN: written once, never here), ``free`` (at
    least as many entries as the most phases of an intersection) and ``fit[6, SLOTS]``.

    Why this shape: the intersection-level work runs as loops over the rows of the
    slot-major copy, which LLVM vectorizes (the divisions too, four at a time); only the
    loops over lanes (gathers from ``ratio``) and the copy back to phase order go
    through indices. A cycle outside ``[c_min_s, c_max_s]`` (rare) is fitted on a copy
    of the intersection's slots, between the passes that have them in cache; a phase
    with more than ``SLOTS`` lanes and an intersection with more than ``SLOTS`` phases
    (rarer) are redone on the CSR arrays. A single fused loop is slower: its chain of
    dependent divisions per intersection does not overlap across iterations and stays
    scalar.
    Every value is computed with the same operations in the same order on every path.
    """
    n = phase_ptr.shape[0] - 1
    n_phases = phase_lane_ptr.shape[0] - 1
    n_lanes = count_veh.shape[0]
    n_flat = SLOTS * (n + 1)
    # Per lane: count / saturation flow, and the check of the counts. Slot L: no lane.
    n_bad = 0
    for lane in range(n_lanes):
        c = count_veh[lane]
        ratio[lane] = c * sat_headway_h[lane]
        n_bad += int(c < 0.0) + int(c == np.inf)  # (an int sum vectorizes, a bool "or" not)
    ratio[n_lanes] = np.nan
    if n_bad > 0:
        return _first_bad_reading(count_veh)
    # Per phase: critical flow ratio y = max over lanes (NaN: no lane with a count),
    # written in phase order and into the phase's slot.
    flow_scale = 3600.0 / window_s  # count over the window -> veh/h
    y = phase_out[0]
    green_s = phase_out[1]
    x = phase_out[2]
    y4 = slot_out[0]  # [SLOTS, n + 1]
    green4 = slot_out[1]
    x4 = slot_out[2]
    y_flat = y4.reshape(n_flat)
    for p in range(n_phases):
        m = -1.0  # below any real ratio; NaN never wins a comparison
        for k in range(SLOTS):
            v = ratio[lane_slots[k, p]]
            m = v if v > m else m
        y_p = m * flow_scale if m >= 0.0 else np.nan
        y[p] = y_p
        y_flat[phase_slot[p]] = y_p
    for p in wide_phases:
        m = -1.0
        for k in range(phase_lane_ptr[p], phase_lane_ptr[p + 1]):
            v = ratio[phase_lanes[k]]
            m = v if v > m else m
        y_p = m * flow_scale if m >= 0.0 else np.nan
        y[p] = y_p
        y_flat[phase_slot[p]] = y_p
    # Per intersection: Y, Webster's cycle; effective green = (C - L) * share / shares.
    cycle_s = int_out[0]
    y_sum = int_out[1]
    green_time_s = int_out[2]  # C - L, shared by the observed phases
    shares = int_out[3]  # Y, or the number of observed phases when Y == 0 (equal split)
    for i in range(n):
        big_y = 0.0
        n_obs = 0
        for j in range(SLOTS):
            y_p = y4[j, i]
            big_y += 0.0 if np.isnan(y_p) else y_p
            n_obs += int(not np.isnan(y_p))
        big_l = lost_sum_s[i]
        over = big_y >= y_max
        unobserved = n_obs < phase_ptr[i + 1] - phase_ptr[i]
        flags[i] = (UNOBSERVED_PHASE if unobserved else 0) | (OVERSATURATED if over else 0)
        y_sum[i] = big_y if n_obs > 0 else np.nan
        below_max = 0.0 if over else big_y  # (Webster's is not used then: no 1 / 0)
        webster_s = min(max((1.5 * big_l + 5.0) / (1.0 - below_max), c_min_s), c_max_s)
        target_s = c_min_s if big_y == 0.0 else webster_s
        target_s = c_max_s if over else target_s
        green_time_s[i] = target_s - big_l
        shares[i] = big_y if big_y > 0.0 else float(max(n_obs, 1))
    # Per slot: displayed green = effective green + lost time - intergreen, in bounds.
    # (C - L) * y / Y rather than y * ((C - L) / Y): y <= Y, so it cannot overflow.
    lost4 = slot_params[0]
    intergreen4 = slot_params[1]
    min_green4 = slot_params[2]
    max_green4 = slot_params[3]
    for j in range(SLOTS):
        for i in range(n):
            y_p = y4[j, i]
            share = y_p if y_sum[i] > 0.0 else 1.0
            green = green_time_s[i] * share / shares[i] + lost4[j, i] - intergreen4[j, i]
            green = min(max(green, min_green4[j, i]), max_green4[j, i])
            green4[j, i] = min_green4[j, i] if np.isnan(y_p) else green
    # Per intersection: the cycle (padding adds 0 + 0); no phase: nothing to time.
    for i in range(n):
        cycle = 0.0
        for j in range(SLOTS):
            cycle += green4[j, i] + intergreen4[j, i]
        cycle_s[i] = cycle if phase_ptr[i + 1] > phase_ptr[i] else np.nan
    # Out of bounds (min greens raised the cycle, max greens cut it; rare): the greens are
    # fitted again, on a copy of the intersection's slots (rows of ``fit``: y, green,
    # intergreen, min and max green, scratch).
    for i in range(n):
        cycle = cycle_s[i]
        if cycle > c_max_s or cycle < c_min_s:  # False for NaN (no phase)
            n_own = phase_ptr[i + 1] - phase_ptr[i]
            if n_own > SLOTS:
                continue  # redone in full at the end
            for j in range(n_own):
                fit[0, j] = y4[j, i]
                fit[1, j] = green4[j, i]
                fit[2, j] = intergreen4[j, i]
                fit[3, j] = min_green4[j, i]
                fit[4, j] = max_green4[j, i]
            cycle, extra = _fit_cycle(
                0, n_own, fit[0], fit[1], fit[2], fit[3], fit[4], c_min_s, c_max_s, fit[5]
            )
            for j in range(n_own):
                green4[j, i] = fit[1, j]
            flags[i] |= extra
            cycle_s[i] = cycle
    # Per slot: degree of saturation with the effective green given (> 0, validated).
    for j in range(SLOTS):
        for i in range(n):
            x4[j, i] = y4[j, i] * cycle_s[i] / (green4[j, i] + intergreen4[j, i] - lost4[j, i])
    # Back to phase order.
    green_flat = green4.reshape(n_flat)
    x_flat = x4.reshape(n_flat)
    for p in range(n_phases):
        s = phase_slot[p]
        green_s[p] = green_flat[s]
        x[p] = x_flat[s]
    for i in wide_intersections:
        _time_intersection(
            i,
            phase_ptr,
            lost_sum_s,
            phase_params,
            c_min_s,
            c_max_s,
            y_max,
            phase_out,
            int_out,
            flags,
            free,
        )
    return -1


HEADER = 6  # entries before the arrays in ``net_index``: n, P, L, len(phase_lanes), wide counts


@njit(cache=True, error_model="numpy")
def _estimate_timings_packed(  # noqa: PLR0917  (numba: positional arrays only)
    net_index: np.ndarray,
    net_slots: np.ndarray,
    net_floats: np.ndarray,
    count_veh: np.ndarray,
    window_s: float,
    c_min_s: float,
    c_max_s: float,
    y_max: float,
    scratch: np.ndarray,
    out: np.ndarray,
    flags: np.ndarray,
) -> int:
    """:func:`_estimate_timings` with its arrays packed into a few, as the wrapper calls it.

    Each array argument costs the call some 60-100 ns to check and unpack, about 1.3 µs
    for the 18 of the kernel, so the network travels as three arrays and the caller's
    as two (plus ``flags``); the views are cut here, where they cost nothing. Layout
    (``signal_control.timing`` builds it): ``net_index`` = ``[n, P, L, K, W1, W2]`` then
    ``phase_ptr``, ``phase_lane_ptr``, ``phase_lanes`` (K), ``wide_phases`` (W1),
    ``wide_intersections`` (W2); ``net_slots`` = ``lane_slots`` (rows ``:SLOTS``) and
    ``phase_slot`` (row ``SLOTS``); ``net_floats`` = ``sat_headway_h``, ``lost_sum_s``,
    ``phase_params`` (4 x P), ``slot_params`` (4 x SLOTS x (n + 1)); ``scratch`` =
    ``ratio`` (L + 1), ``slot_out`` (3 x SLOTS x (n + 1)), ``fit`` (6 x SLOTS), ``free``
    (P + 1); ``out`` = ``phase_out`` (3 x P), ``int_out`` (4 x n).
    """
    n = net_index[0]
    n_phases = net_index[1]
    n_lanes = net_index[2]
    o = HEADER
    phase_ptr = net_index[o : o + n + 1]
    o += n + 1
    phase_lane_ptr = net_index[o : o + n_phases + 1]
    o += n_phases + 1
    phase_lanes = net_index[o : o + net_index[3]]
    o += net_index[3]
    wide_phases = net_index[o : o + net_index[4]]
    o += net_index[4]
    wide_intersections = net_index[o : o + net_index[5]]
    n_slot_values = SLOTS * (n + 1)
    sat_headway_h = net_floats[:n_lanes]
    lost_sum_s = net_floats[n_lanes : n_lanes + n]
    o = n_lanes + n
    phase_params = net_floats[o : o + 4 * n_phases].reshape(4, n_phases)
    o += 4 * n_phases
    slot_params = net_floats[o : o + 4 * n_slot_values].reshape(4, SLOTS, n + 1)
    ratio = scratch[: n_lanes + 1]
    o = n_lanes + 1
    slot_out = scratch[o : o + 3 * n_slot_values].reshape(3, SLOTS, n + 1)
    o += 3 * n_slot_values
    fit = scratch[o : o + 6 * SLOTS].reshape(6, SLOTS)
    free = scratch[o + 6 * SLOTS :]
    phase_out = out[: 3 * n_phases].reshape(3, n_phases)
    int_out = out[3 * n_phases :].reshape(4, n)
    return _estimate_timings(
        phase_ptr,
        phase_lane_ptr,
        phase_lanes,
        net_slots,
        net_slots[SLOTS],
        wide_phases,
        wide_intersections,
        sat_headway_h,
        lost_sum_s,
        slot_params,
        phase_params,
        count_veh,
        window_s,
        c_min_s,
        c_max_s,
        y_max,
        ratio,
        slot_out,
        phase_out,
        int_out,
        flags,
        free,
        fit,
    )


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
