"""Plain-Python twins of ``signal_control._timing_kernels``: obvious, slow loops.

Same signatures and outputs as the public wrappers in ``signal_control.timing``; the
rules they implement are spelled out in that module's docstring.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from signal_control.timing import (
    MaxPressure,
    PhaseMovements,
    TimingEstimate,
    TimingFlag,
    TimingNetwork,
    TimingParams,
    TimingPlan,
)


def _water_fill(
    greens: list[float],
    bounds: list[float],
    weights: list[float],
    free: list[bool],
    *,
    amount_s: float,
    direction: float,
) -> None:
    """Move ``amount_s`` in total into (+1) or out of (-1) the free greens, by weight.

    A green that would pass its bound stops at it and leaves the free set; repeat with
    what is left until no green hits its bound or none is free. Zero total weight: equal.
    """
    while amount_s > 0.0:
        idx = [j for j in range(len(greens)) if free[j]]
        if not idx:
            return
        w_sum = 0.0
        for j in idx:
            w_sum += weights[j]
        moved_s = 0.0
        hit = False
        for j in idx:
            share_s = amount_s * weights[j] / w_sum if w_sum > 0.0 else amount_s / len(idx)
            wanted = greens[j] + direction * share_s
            passes = wanted >= bounds[j] if direction > 0 else wanted <= bounds[j]
            if passes:
                moved_s += abs(bounds[j] - greens[j])
                greens[j] = bounds[j]
                free[j] = False
                hit = True
            else:
                moved_s += share_s
                greens[j] = wanted
        if not hit:
            return
        amount_s -= moved_s


def estimate_timings_reference(
    network: TimingNetwork, count_veh: npt.ArrayLike, params: TimingParams
) -> TimingEstimate:
    """Webster + HCM timings, one intersection and one phase at a time."""
    counts = [float(c) for c in np.asarray(count_veh, dtype=float)]
    for lane, c in enumerate(counts):
        if c < 0 or math.isinf(c):
            raise ValueError(f"count_veh[{lane}]={c} is negative or infinite")
    ptr = network.phase_ptr.tolist()
    lane_ptr = network.phase_lane_ptr.tolist()
    lanes = network.phase_lanes.tolist()
    sat = network.sat_flow_vph.tolist()
    lost = network.lost_s.tolist()
    inter = network.intergreen_s.tolist()
    gmin = network.min_green_s.tolist()
    gmax = network.max_green_s.tolist()
    flow = [c * 3600.0 / params.window_s for c in counts]  # NaN stays NaN

    cycles: list[float] = []
    big_ys: list[float] = []
    flags: list[int] = []
    greens_all: list[float] = []
    ys_all: list[float] = []
    xs_all: list[float] = []
    for i in range(len(ptr) - 1):
        phases = range(ptr[i], ptr[i + 1])
        if not phases:
            cycles.append(math.nan)
            big_ys.append(math.nan)
            flags.append(0)
            continue
        flag = 0
        ys: list[float] = []
        for p in phases:
            ratios = [
                flow[lane] / sat[lane]
                for lane in lanes[lane_ptr[p] : lane_ptr[p + 1]]
                if not math.isnan(flow[lane])
            ]
            ys.append(max(ratios) if ratios else math.nan)
        observed = [not math.isnan(y) for y in ys]
        if not all(observed):
            flag |= TimingFlag.UNOBSERVED_PHASE
        big_l = 0.0
        for p in phases:
            big_l += lost[p]
        big_y = 0.0
        for y, obs in zip(ys, observed, strict=True):
            if obs:
                big_y += y
        n_obs = sum(observed)
        if n_obs == 0:
            c0 = params.c_min_s
            big_ys.append(math.nan)
        else:
            big_ys.append(big_y)
            if big_y >= params.y_max:
                c0 = params.c_max_s
                flag |= TimingFlag.OVERSATURATED
            elif big_y == 0.0:
                c0 = params.c_min_s
            else:
                c0 = (1.5 * big_l + 5.0) / (1.0 - big_y)
                c0 = min(max(c0, params.c_min_s), params.c_max_s)
        greens: list[float] = []
        for j, p in enumerate(phases):
            if not observed[j]:
                greens.append(gmin[p])
                continue
            effective = (c0 - big_l) * ys[j] / big_y if big_y > 0 else (c0 - big_l) / n_obs
            displayed = effective + lost[p] - inter[p]
            greens.append(min(max(displayed, gmin[p]), gmax[p]))
        cycle = 0.0
        for j, p in enumerate(phases):
            cycle += greens[j] + inter[p]
        weights = [y if obs else 0.0 for y, obs in zip(ys, observed, strict=True)]
        if cycle > params.c_max_s:
            free = [observed[j] and greens[j] > gmin[p] for j, p in enumerate(phases)]
            floors = [gmin[p] for p in phases]
            _water_fill(
                greens, floors, weights, free, amount_s=cycle - params.c_max_s, direction=-1.0
            )
        elif cycle < params.c_min_s:
            free = [observed[j] and greens[j] < gmax[p] for j, p in enumerate(phases)]
            ceilings = [gmax[p] for p in phases]
            _water_fill(
                greens, ceilings, weights, free, amount_s=params.c_min_s - cycle, direction=+1.0
            )
        floor_s = sum(gmin[p] + inter[p] for p in phases)
        ceiling_s = sum(
            (gmax[p] if observed[j] else gmin[p]) + inter[p] for j, p in enumerate(phases)
        )
        if floor_s > params.c_max_s:
            flag |= TimingFlag.MIN_GREENS_EXCEED_C_MAX
        if ceiling_s < params.c_min_s:
            flag |= TimingFlag.MAX_GREENS_BELOW_C_MIN
        cycle = 0.0
        for j, p in enumerate(phases):
            cycle += greens[j] + inter[p]
        cycles.append(cycle)
        flags.append(int(flag))
        for j, p in enumerate(phases):
            effective = greens[j] + inter[p] - lost[p]
            greens_all.append(greens[j])
            ys_all.append(ys[j])
            xs_all.append(ys[j] * cycle / effective)
    return TimingEstimate(
        np.array(cycles, dtype=float),
        np.array(greens_all, dtype=float),
        np.array(ys_all, dtype=float),
        np.array(big_ys, dtype=float),
        np.array(xs_all, dtype=float),
        np.array(flags, dtype=np.int64),
    )


def smooth_timings_reference(
    network: TimingNetwork,
    prev_cycle_s: npt.ArrayLike,
    prev_green_s: npt.ArrayLike,
    target_cycle_s: npt.ArrayLike,
    target_green_s: npt.ArrayLike,
    *,
    alpha: float,
    max_step_s: float = math.inf,
) -> TimingPlan:
    """Smoothing toward the target, one intersection at a time."""
    ptr = network.phase_ptr.tolist()
    inter = network.intergreen_s.tolist()
    gmin = network.min_green_s.tolist()
    prev_c = [float(v) for v in np.asarray(prev_cycle_s, dtype=float)]
    prev_g = [float(v) for v in np.asarray(prev_green_s, dtype=float)]
    tgt_c = [float(v) for v in np.asarray(target_cycle_s, dtype=float)]
    tgt_g = [float(v) for v in np.asarray(target_green_s, dtype=float)]
    cycles: list[float] = []
    greens_all: list[float] = []
    for i in range(len(ptr) - 1):
        phases = list(range(ptr[i], ptr[i + 1]))
        if not phases:
            cycles.append(math.nan)
            continue
        prev_ok = math.isfinite(prev_c[i]) and all(math.isfinite(prev_g[p]) for p in phases)
        tgt_ok = math.isfinite(tgt_c[i]) and all(math.isfinite(tgt_g[p]) for p in phases)
        if not prev_ok and not tgt_ok:
            cycles.append(math.nan)
            greens_all.extend(math.nan for _ in phases)
            continue
        if prev_ok and tgt_ok:
            gap = tgt_c[i] - prev_c[i]
            step = min(max(alpha * gap, -max_step_s), max_step_s)
            share = step / gap if gap != 0.0 else alpha
            new_cycle = prev_c[i] + step
            greens = [prev_g[p] + share * (tgt_g[p] - prev_g[p]) for p in phases]
        elif tgt_ok:
            new_cycle = tgt_c[i]
            greens = [tgt_g[p] for p in phases]
        else:
            new_cycle = prev_c[i]
            greens = [prev_g[p] for p in phases]
        available = new_cycle
        total = 0.0
        for j, p in enumerate(phases):
            available -= inter[p]
            total += greens[j]
        if total > 0.0:
            scale = available / total
            greens = [g * scale for g in greens]
        else:
            greens = [available / len(phases) for _ in phases]
        deficit = 0.0
        surplus = 0.0
        for j, p in enumerate(phases):
            if greens[j] < gmin[p]:
                deficit += gmin[p] - greens[j]
            else:
                surplus += greens[j] - gmin[p]
        if deficit > 0.0:
            take = min(deficit / surplus, 1.0) if surplus > 0.0 else 1.0
            for j, p in enumerate(phases):
                above = greens[j] - gmin[p]
                greens[j] = gmin[p] if above <= 0.0 else gmin[p] + above * (1.0 - take)
        cycle = 0.0
        for j, p in enumerate(phases):
            cycle += greens[j] + inter[p]
        cycles.append(cycle)
        greens_all.extend(greens)
    return TimingPlan(np.array(cycles, dtype=float), np.array(greens_all, dtype=float))


def max_pressure_reference(
    network: TimingNetwork, movements: PhaseMovements, queue_veh: npt.ArrayLike
) -> MaxPressure:
    """Max-pressure phase choice, one movement at a time."""
    queues = [0.0 if math.isnan(q) else float(q) for q in np.asarray(queue_veh, dtype=float)]
    ptr = network.phase_ptr.tolist()
    mov_ptr = movements.mov_ptr.tolist()
    pressures: list[float] = []
    best: list[int] = []
    for i in range(len(ptr) - 1):
        local: list[float] = []
        for p in range(ptr[i], ptr[i + 1]):
            total = 0.0
            for m in range(mov_ptr[p], mov_ptr[p + 1]):
                lane_in = int(movements.mov_in_lane[m])
                lane_out = int(movements.mov_out_lane[m])
                q_out = queues[lane_out] if lane_out >= 0 else 0.0
                total += float(movements.mov_sat_flow_vph[m]) * (queues[lane_in] - q_out)
            local.append(total)
        pressures.extend(local)
        best.append(local.index(max(local)) if local else -1)  # index() finds the first
    return MaxPressure(np.array(pressures, dtype=float), np.array(best, dtype=np.int64))
