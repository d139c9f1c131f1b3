"""Emergency-vehicle (EV) preemption: when to ask for green, who gets it, how to recover.

All (EV, signal ahead) pairs of the city are handled in one call: flat arrays of length
``K``, one entry per pair (an EV lists its signals ahead in route order). Positions are
distances along the EV's route, m; the wrappers here check the inputs and hand plain
arrays to Numba kernels in :mod:`signal_control._preemption_kernels`.

Rules of :func:`preemption_plan`, per pair ``k``
-----------------------------------------------
1. ETA: ``eta_s = max(stop_s_m - ev_s_m, 0) / max(speed_mps, min_speed_mps)``; an EV with
   an unknown (NaN) position or speed has ``eta_s = inf`` (it never requests); an EV past
   the stop line has ``eta_s = 0``.
2. Transition time to the EV's green: 0 when the signal already shows the EV's stage in
   green; in an intergreen, the time left of it (``intergreen_left_s``: the change is
   aimed at the EV's stage); otherwise the rest of the current green's minimum,
   ``max(min_green_s - elapsed_green_s, 0)``, plus ``yellow_s + all_red_s``.
3. Queue discharge of the EV's approach: ``startup_loss_s + queue_veh / max(lanes, 1) *
   headway_s`` (a NaN queue reads as 0; the start-up loss counts even with no queue).
4. Lead time ``lead_s = transition_s + discharge_s + margin_s``; the pair *requests*
   green once ``eta_s <= lead_s`` while the EV has not passed the stop line
   (``stop_s_m >= ev_s_m - passed_m``); it is *passed* (release the signal) once
   ``ev_s_m > stop_s_m + clear_m``. With ``passed_m <= clear_m`` the two never overlap.

:func:`resolve_conflicts` then grants, per signal, one stage: that of the requesting pair
with the earliest ETA, then the highest severity. :func:`recovery_greens` spreads the
offset error that preemption left over a few cycles ("smooth" recovery; "immediate"
recovery simply returns to the schedule).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from signal_control import _preemption_kernels as _k
from signal_control._checks import bool_array, check_values, first, float_array, index_array, scalar

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class PreemptionPlan(NamedTuple):
    """Output of :func:`preemption_plan`: ``[K]`` arrays, one entry per pair."""

    eta_s: FloatArray
    """Time for the EV to reach the stop line, s (``inf``: position or speed unknown)."""
    transition_s: FloatArray
    """Time for the signal to reach the EV's green, s."""
    discharge_s: FloatArray
    """Time to discharge the queue of the EV's approach, s."""
    lead_s: FloatArray
    """``transition_s + discharge_s + margin_s``, s."""
    request: BoolArray
    """Ask for green now: ``eta_s <= lead_s`` and the EV has not passed the stop line."""
    passed: BoolArray
    """The EV cleared the junction (more than ``clear_m`` past the stop line): release."""


class Recovery(NamedTuple):
    """Output of :func:`recovery_greens`."""

    green_s: list[FloatArray]
    """Greens of each recovery cycle, one ``[stages]`` array per cycle, s."""
    residual_s: float
    """Offset error left after the recovery cycles (same sign convention), s."""


def preemption_plan(
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
    """ETA, lead time, green request and release of every (EV, signal ahead) pair.

    The rules are in the module docstring. Every argument is keyword-only: the arrays
    are many, all of length ``K``. Signal timings are read only where the rule uses them: none when
    ``ev_stage_green``; only ``intergreen_left_s`` when ``in_intergreen``; otherwise
    ``elapsed_green_s``, ``min_green_s``, ``yellow_s`` and ``all_red_s`` (entries not read
    may be NaN).

    Parameters
    ----------
    ev_s_m
        Position of the EV along its route, m (NaN: unknown).
    stop_s_m
        Position of the signal's stop line along the same route, m.
    speed_mps
        Speed estimate of the EV, m/s (>= 0; NaN: unknown).
    ev_stage_green
        The signal shows the EV's stage in green now.
    in_intergreen
        The signal is in a yellow or all-red (not both with ``ev_stage_green``).
    elapsed_green_s
        Time since the current green began, s.
    min_green_s
        Minimum green of the current stage, s.
    yellow_s, all_red_s
        Yellow and all-red after the current green, s.
    intergreen_left_s
        Time left of the intergreen under way, s.
    queue_veh
        Vehicles queued on the EV's approach (NaN: unknown, read as 0).
    lanes
        Lanes of the EV's approach (0 reads as 1).
    startup_loss_s
        Start-up lost time of the queue, s.
    headway_s
        Saturation headway per lane, s/veh.
    margin_s
        Safety margin added to the lead time, s.
    min_speed_mps
        Floor of the speed estimate, m/s (> 0): a stopped EV still gets an ETA.
    clear_m
        Distance past the stop line after which the EV has cleared the junction, m.
    passed_m
        Distance past the stop line that still counts as not yet passed, m
        (``<= clear_m``): the green request holds while the EV is in the junction.

    Returns
    -------
    PreemptionPlan
        ``eta_s, transition_s, discharge_s, lead_s`` (``float64``) and ``request,
        passed`` (``bool``), each ``[K]``.

    Raises
    ------
    ValueError
        Naming the argument: an array not 1-D or not of length ``K = len(ev_s_m)``;
        an infinite position, a NaN or infinite stop line; a negative or infinite
        speed or queue; a negative lane count; a negative, NaN or infinite time where it
        is read; ``ev_stage_green`` and ``in_intergreen`` both true; a scalar out of
        range (negative times or distances, ``min_speed_mps <= 0``,
        ``passed_m > clear_m``).
    """
    startup = scalar("startup_loss_s", startup_loss_s, low=0.0)
    headway = scalar("headway_s", headway_s, low=0.0)
    margin = scalar("margin_s", margin_s, low=0.0)
    min_speed = scalar("min_speed_mps", min_speed_mps, low=0.0, strict=True)
    clear = scalar("clear_m", clear_m, low=0.0)
    passed_dist = scalar("passed_m", passed_m, low=0.0)
    if passed_dist > clear:
        raise ValueError(f"passed_m must be <= clear_m ({clear}); got {passed_dist}")

    ev = float_array("ev_s_m", ev_s_m)
    size = ev.size
    stop = float_array("stop_s_m", stop_s_m, size=size, what="pair")
    speed = float_array("speed_mps", speed_mps, size=size, what="pair")
    green = bool_array("ev_stage_green", ev_stage_green, size, "pair")
    inter = bool_array("in_intergreen", in_intergreen, size, "pair")
    times = {
        name: float_array(name, value, size=size, what="pair")
        for name, value in (
            ("elapsed_green_s", elapsed_green_s),
            ("min_green_s", min_green_s),
            ("yellow_s", yellow_s),
            ("all_red_s", all_red_s),
            ("intergreen_left_s", intergreen_left_s),
        )
    }
    queue = float_array("queue_veh", queue_veh, size=size, what="pair")
    n_lanes = index_array("lanes", lanes, size=size, what="pair")

    check_values("ev_s_m", ev, np.isinf(ev), "finite or NaN")
    check_values("stop_s_m", stop, ~np.isfinite(stop), "finite")
    check_values("speed_mps", speed, (speed < 0) | np.isinf(speed), ">= 0 and finite, or NaN")
    check_values("queue_veh", queue, (queue < 0) | np.isinf(queue), ">= 0 and finite, or NaN")
    check_values("lanes", n_lanes, n_lanes < 0, ">= 0")
    both = green & inter
    if np.any(both):
        k = first(both)
        raise ValueError(f"ev_stage_green and in_intergreen cannot both be true; pair {k} has both")
    in_green = ~green & ~inter
    read_where = {
        "elapsed_green_s": in_green,
        "min_green_s": in_green,
        "yellow_s": in_green,
        "all_red_s": in_green,
        "intergreen_left_s": ~green & inter,
    }
    for name, arr in times.items():
        bad = read_where[name] & ~(np.isfinite(arr) & (arr >= 0))
        check_values(name, arr, bad, ">= 0 and finite where it is read")

    return PreemptionPlan(
        *_k._preemption_plan(
            ev,
            stop,
            speed,
            green,
            inter,
            times["elapsed_green_s"],
            times["min_green_s"],
            times["yellow_s"],
            times["all_red_s"],
            times["intergreen_left_s"],
            queue,
            n_lanes,
            startup,
            headway,
            margin,
            min_speed,
            clear,
            passed_dist,
        )
    )


def resolve_conflicts(
    signal_index: npt.ArrayLike,
    stage: npt.ArrayLike,
    eta_s: npt.ArrayLike,
    severity: npt.ArrayLike,
    request: npt.ArrayLike,
) -> BoolArray:
    """Which green requests to grant when EVs at one signal ask for different stages.

    Rule, per signal: among the requesting pairs, the one with the **earliest ETA, then
    the highest severity**, then the lowest index wins; its stage is granted, to it and
    to every other requesting pair at that signal asking for the same stage. Requests
    for other stages at that signal are not granted (yet); signals are independent. A
    NaN ETA ranks as ``inf`` (last).

    Parameters
    ----------
    signal_index
        ``[K]`` identifier of the signal of each pair (any integers).
    stage
        ``[K]`` stage each pair asks for at its signal (integers >= 0).
    eta_s
        ``[K]`` ETA of each pair, s, e.g. :attr:`PreemptionPlan.eta_s`.
    severity
        ``[K]`` priority of the EV of each pair (higher wins ties; no NaN).
    request
        ``[K]`` the pair asks for green, e.g. :attr:`PreemptionPlan.request`.

    Returns
    -------
    numpy.ndarray
        ``[K]`` ``bool``: the request is granted. ``granted`` implies ``request``, and
        at most one stage is granted per signal.

    Raises
    ------
    ValueError
        Naming the argument: not 1-D, not of length ``K = len(signal_index)``,
        non-integer signals or stages, a negative stage, a NaN severity, or a
        non-boolean request.
    """
    raw = np.asarray(signal_index)
    if raw.ndim != 1:
        raise ValueError(f"signal_index must be 1-D; got shape {raw.shape}")
    size = raw.size
    signals = index_array("signal_index", raw, size=size, what="pair")
    stages = index_array("stage", stage, size=size, what="pair")
    eta = float_array("eta_s", eta_s, size=size, what="pair")
    sev = float_array("severity", severity, size=size, what="pair")
    asks = bool_array("request", request, size, "pair")
    check_values("stage", stages, stages < 0, ">= 0")
    check_values("severity", sev, np.isnan(sev), "a number (not NaN)")
    uniq, group = np.unique(signals, return_inverse=True)
    granted: BoolArray = _k._resolve_conflicts(
        np.ascontiguousarray(group.reshape(-1), dtype=np.int64),
        int(uniq.size),
        stages,
        eta,
        sev,
        asks,
    )
    return granted


def recovery_greens(
    planned_green_s: npt.ArrayLike,
    min_green_s: npt.ArrayLike,
    max_green_s: npt.ArrayLike,
    offset_error_s: float,
    cycles: int,
) -> Recovery:
    """Greens of a "smooth" return to coordination after a preemption, for one signal.

    The offset error (seconds the signal is *late*, > 0, or *early*, < 0, versus its
    fixed-time schedule) is spread evenly over ``cycles`` cycles: each cycle is shortened
    (late) or lengthened (early) by ``offset_error_s / cycles``, shared among the stages
    in proportion to their slack above ``min_green_s`` (shortening) or below
    ``max_green_s`` (lengthening). Stages with no maximum (``inf``) share a lengthening
    equally and the others keep their green (the limit of the proportional rule). No
    green goes below its minimum or above its maximum: when the error exceeds ``cycles``
    times the slack, every green sits at its bound and the rest is returned as the
    residual. Choosing the short way round (wrapping the error into
    half a cycle either side) is up to the caller.

    Parameters
    ----------
    planned_green_s
        ``[stages]`` greens of the fixed-time plan, s, within ``[min_green_s,
        max_green_s]``.
    min_green_s, max_green_s
        ``[stages]`` bounds of each green, s (``max_green_s`` may be ``inf``).
    offset_error_s
        Late (> 0) or early (< 0) versus the schedule, s.
    cycles
        Number of recovery cycles (>= 2).

    Returns
    -------
    Recovery
        ``green_s``: the greens of each of the ``cycles`` cycles; ``residual_s``: the error
        left after them (0 when the slack allows it all), same sign as ``offset_error_s``.

    Raises
    ------
    ValueError
        Naming the argument: arrays not 1-D or of different lengths, NaN or negative
        bounds, ``max_green_s < min_green_s``, a planned green outside its bounds, a
        non-finite ``offset_error_s`` or ``cycles`` not an integer >= 2.
    """
    if isinstance(cycles, bool) or not isinstance(cycles, int | np.integer) or cycles < 2:
        raise ValueError(f"cycles must be an integer >= 2; got {cycles!r}")
    error_s = float(offset_error_s)
    if not math.isfinite(error_s):
        raise ValueError(f"offset_error_s must be finite; got {offset_error_s}")
    planned = float_array("planned_green_s", planned_green_s)
    size = planned.size
    lo = float_array("min_green_s", min_green_s, size=size, what="stage")
    hi = float_array("max_green_s", max_green_s, size=size, what="stage")
    check_values("min_green_s", lo, ~np.isfinite(lo) | (lo < 0), ">= 0 and finite")
    check_values("max_green_s", hi, np.isnan(hi) | (hi < lo), ">= min_green_s")
    check_values(
        "planned_green_s",
        planned,
        ~np.isfinite(planned) | (planned < lo) | (planned > hi),
        "finite and within [min_green_s, max_green_s]",
    )

    step_s = abs(error_s) / cycles  # change of the cycle length, per cycle
    if error_s >= 0:  # late: shorten, toward the minimums
        bound, slack = lo, planned - lo
        weight = slack
    else:  # early: lengthen, toward the maximums
        bound, slack = hi, hi - planned
        unbounded = np.isinf(slack)
        # no maximum: the limit of the proportional rule, equal shares among those stages
        weight = unbounded.astype(np.float64) if np.any(unbounded) else slack
    room_s = float(slack.sum())
    if abs(error_s) > cycles * room_s:  # not enough slack: every green at its bound
        green = bound.copy()
        residual_s = error_s - math.copysign(cycles * room_s, error_s)
    else:
        w_sum = float(weight.sum())
        change = weight * (step_s / w_sum) if w_sum > 0 else np.zeros_like(planned)
        green = np.clip(planned - change if error_s >= 0 else planned + change, lo, hi)
        residual_s = 0.0
    return Recovery([green.copy() for _ in range(cycles)], residual_s)
