"""Signal timings from detector data, whole city per call: Webster + HCM, smoothing, max-pressure.

The static structure of the city's signals (phases, the lanes each phase serves, lost
times, intergreens, min and max greens) is a :class:`TimingNetwork`, checked once when
it is built; the scalars of the method are a :class:`TimingParams`. Each call then only
checks the shape of the new readings and hands plain arrays to a Numba kernel in
:mod:`signal_control._timing_kernels`, so a call for a city of ~900 signals costs
microseconds; a caller that re-times the same city again and again passes a
:class:`TimingWorkspace` (``out=``), made once, and the call allocates nothing.

Layout (CSR, ``int64`` offsets, ``float64`` values): the green phases of intersection
``i`` are ``phase_ptr[i]:phase_ptr[i + 1]`` (``P`` phases in all, green stages only; the
intergreen after each phase is a number of that phase); the lanes served by phase ``p``
are ``phase_lanes[phase_lane_ptr[p]:phase_lane_ptr[p + 1]]``, indices into the per-lane
arrays (``L`` lanes). A lane may serve several phases; a phase may serve no lane.

Timing rules of :func:`estimate_timings`, per intersection
----------------------------------------------------------
1. ``flow_vph = count_veh * 3600 / window_s`` per lane; the critical flow ratio of a phase
   is ``y = max(flow_vph / sat_flow_vph)`` over its lanes with a count (computed as
   ``count_veh * (1 / sat_flow_vph) * (3600 / window_s)``, equal to a few ulps). A phase
   with no lane or only NaN counts is *unobserved*: ``y`` is NaN, it gets exactly its min
   green and is left out of ``Y = sum(y)``. ``L = sum(lost_s)`` over all phases.
2. Webster: ``C0 = (1.5 L + 5) / (1 - Y)`` clamped to ``[c_min_s, c_max_s]``; ``Y >=
   y_max`` gives ``c_max_s`` (flag :attr:`TimingFlag.OVERSATURATED`); ``Y == 0`` gives
   ``c_min_s``.
3. Effective greens ``g = (C0 - L) y / Y`` (``Y == 0``: equal shares), displayed greens
   ``G = g + lost_s - intergreen_s``, clipped to ``[min_green_s, max_green_s]``. The cycle is
   ``sum(G + intergreen_s)``: raising a green to its minimum lengthens the cycle, capping
   one at its maximum shortens it (the time is *not* handed to the other phases).
4. If that cycle is above ``c_max_s``, the observed greens above their minimum give back
   the excess in proportion to ``y`` (equally when their ``y`` are all 0), none below its
   minimum; only when ``sum(min_green_s + intergreen_s) > c_max_s`` does the cycle stay
   above ``c_max_s`` (flag :attr:`TimingFlag.MIN_GREENS_EXCEED_C_MAX`). Symmetrically, a
   cycle below ``c_min_s`` (max greens capped it) is filled back up to ``c_min_s`` by the
   observed greens below their maximum; where they cannot fill it, the flag is
   :attr:`TimingFlag.MAX_GREENS_BELOW_C_MIN`.
5. Degree of saturation ``x = y C / g`` with the effective green ``g = G + intergreen_s -
   lost_s`` actually given (NaN for unobserved phases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntFlag
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from signal_control import _timing_kernels as _k
from signal_control._checks import (
    check_length,
    check_offsets,
    check_range,
    float_array,
    index_array,
    readings,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.uint32]  # unsigned: no negative-index wraparound; 32 bits: less to read
_MAX_INDEX = 2**32 - 1  # the padded layout indexes up to L lanes and SLOTS * n slots in uint32
_F8 = np.dtype(np.float64)


class TimingFlag(IntFlag):
    """Bits of :attr:`TimingEstimate.flags`, one integer per intersection."""

    OVERSATURATED = _k.OVERSATURATED
    """``Y >= y_max``: Webster's formula breaks down; the cycle aims at ``c_max_s``."""
    MIN_GREENS_EXCEED_C_MAX = _k.MIN_GREENS_EXCEED_C_MAX
    """``sum(min_green_s + intergreen_s) > c_max_s``: the cycle is above ``c_max_s``."""
    UNOBSERVED_PHASE = _k.UNOBSERVED_PHASE
    """Some phase has no lane with a count: it was given exactly its min green."""
    MAX_GREENS_BELOW_C_MIN = _k.MAX_GREENS_BELOW_C_MIN
    """The greens cannot fill ``c_min_s`` (all observed greens at their max, or no
    observed phase at all): the cycle is below ``c_min_s``."""


def _derived_layout(network: TimingNetwork) -> dict[str, npt.NDArray[np.generic]]:
    """The arrays of a checked network that ``_estimate_timings`` reads, packed.

    See the kernel's docstring: ``lane_slots`` pads the lanes of each phase to ``SLOTS``;
    the slot-major copy puts the ``j``-th phase of intersection ``i`` (``j < SLOTS``) in
    slot ``(j, i)``, flat ``j * (n + 1) + i``; column ``n`` is a sink. Returns read-only
    views of the three packed arrays (the CSR arrays and per-phase times among them),
    and the packed arrays themselves.
    """
    ptr = network.phase_ptr
    n = ptr.size - 1
    n_phases = network.n_phases
    sizes = np.diff(ptr)
    owner = np.repeat(np.arange(n, dtype=np.int64), sizes)
    rank = np.arange(n_phases, dtype=np.int64) - ptr[:-1][owner]  # j: place in its group
    slotted = rank < _k.SLOTS
    phase_slot = np.full(n_phases, n, dtype=np.uint32)  # past SLOTS: the sink (0, n)
    phase_slot[slotted] = rank[slotted] * (n + 1) + owner[slotted]
    lane_ptr = network.phase_lane_ptr
    lane_sizes = np.diff(lane_ptr)
    lane_slots = np.full((_k.SLOTS, n_phases), network.n_lanes, dtype=np.uint32)
    for k in range(_k.SLOTS):
        has = lane_sizes > k
        lane_slots[k, has] = network.phase_lanes[lane_ptr[:-1][has] + k]
    phase_params = np.stack(
        [network.lost_s, network.intergreen_s, network.min_green_s, network.max_green_s]
    )
    slot_params = np.zeros((4, _k.SLOTS, n + 1))  # padding: no lost time, intergreen, green
    slot_params.reshape(4, -1)[:, phase_slot[slotted]] = phase_params[:, slotted]
    # Sum lost times in phase order, as a loop over the phases would.
    lost_sum_s = np.zeros(n)
    for j in range(_k.SLOTS):
        has = sizes > j
        lost_sum_s[has] += network.lost_s[ptr[:-1][has] + j]
    wide_intersections = np.flatnonzero(sizes > _k.SLOTS)
    for i in wide_intersections:
        for p in range(ptr[i] + _k.SLOTS, ptr[i + 1]):
            lost_sum_s[i] += network.lost_s[p]
    wide_phases = np.flatnonzero(lane_sizes > _k.SLOTS)
    # Packed into three arrays (see _estimate_timings_packed); every array of the network
    # the kernel reads becomes a view of them.
    sizes_header = [n, n_phases, network.n_lanes, network.phase_lanes.size]
    sizes_header += [wide_phases.size, wide_intersections.size]  # _k.HEADER entries
    net_index = np.concatenate(
        [
            sizes_header,
            ptr,
            lane_ptr,
            network.phase_lanes,
            wide_phases,
            wide_intersections,
        ]
    ).astype(np.int64)
    net_slots = np.vstack([lane_slots, phase_slot[np.newaxis]])
    net_floats = np.concatenate(
        [1.0 / network.sat_flow_vph, lost_sum_s, phase_params.ravel(), slot_params.ravel()]
    )
    for blob in (net_index, net_slots, net_floats):
        blob.flags.writeable = False
    views = [n + 1, n_phases + 1, network.phase_lanes.size, wide_phases.size]
    cuts = np.cumsum([_k.HEADER, *views])
    n_lanes = network.n_lanes
    phase_params_view = net_floats[n_lanes + n : n_lanes + n + 4 * n_phases].reshape(4, -1)
    return {
        "phase_ptr": net_index[cuts[0] : cuts[1]],
        "phase_lane_ptr": net_index[cuts[1] : cuts[2]],
        "phase_lanes": net_index[cuts[2] : cuts[3]],
        "wide_phases": net_index[cuts[3] : cuts[4]],
        "wide_intersections": net_index[cuts[4] :],
        "lane_slots": net_slots[: _k.SLOTS],
        "phase_slot": net_slots[_k.SLOTS],
        "sat_headway_h": net_floats[:n_lanes],
        "lost_sum_s": net_floats[n_lanes : n_lanes + n],
        "phase_params": phase_params_view,
        "lost_s": phase_params_view[0],
        "intergreen_s": phase_params_view[1],
        "min_green_s": phase_params_view[2],
        "max_green_s": phase_params_view[3],
        "slot_params": net_floats[n_lanes + n + 4 * n_phases :].reshape(4, _k.SLOTS, n + 1),
        "_net_index": net_index,
        "_net_slots": net_slots,
        "_net_floats": net_floats,
    }


@dataclass(frozen=True, slots=True, eq=False)
class TimingNetwork:
    """The static structure of a city's signals, checked once when built.

    Build it with :meth:`create` (which accepts lists and other dtypes); the arrays are
    copied into read-only ``int64`` / ``float64`` arrays.

    Attributes
    ----------
    phase_ptr
        ``n + 1`` offsets: the green phases of intersection ``i`` are
        ``phase_ptr[i]:phase_ptr[i + 1]``.
    phase_lane_ptr
        ``P + 1`` offsets into ``phase_lanes``, one group per phase.
    phase_lanes
        Lane indices (into ``sat_flow_vph`` and the per-lane readings) served by each phase.
    sat_flow_vph
        Saturation flow of each lane, veh/h (> 0).
    lost_s
        Lost time of each phase (start-up + clearance loss), s.
    intergreen_s
        Yellow + all-red shown after each phase, s.
    min_green_s
        Minimum displayed green of each phase (already the max of the vehicle and the
        pedestrian minimum), s. ``min_green_s + intergreen_s - lost_s`` must be > 0.
    max_green_s
        Maximum displayed green of each phase, s (``inf`` for none).
    lane_slots, phase_slot, wide_phases, wide_intersections, sat_headway_h, lost_sum_s, \
    slot_params, phase_params
        Derived once for the kernel (not arguments): the first ``SLOTS`` lanes of each
        phase, padded; the slot of each phase in a padded, slot-major copy of the first
        ``SLOTS`` phases of each intersection; the phases and intersections past that
        width; the saturation headway ``1 / sat_flow_vph`` of each lane, h; the lost
        time of each intersection, s; the times of each slot and of each phase, s (see
        ``signal_control._timing_kernels._estimate_timings``).
    """

    phase_ptr: IntArray
    phase_lane_ptr: IntArray
    phase_lanes: IntArray
    sat_flow_vph: FloatArray
    lost_s: FloatArray
    intergreen_s: FloatArray
    min_green_s: FloatArray
    max_green_s: FloatArray
    lane_slots: IndexArray = field(init=False, repr=False)
    phase_slot: IndexArray = field(init=False, repr=False)
    wide_phases: IntArray = field(init=False, repr=False)
    wide_intersections: IntArray = field(init=False, repr=False)
    sat_headway_h: FloatArray = field(init=False, repr=False)
    lost_sum_s: FloatArray = field(init=False, repr=False)
    slot_params: FloatArray = field(init=False, repr=False)
    phase_params: FloatArray = field(init=False, repr=False)
    _net_index: IntArray = field(init=False, repr=False)
    _net_slots: IndexArray = field(init=False, repr=False)
    _net_floats: FloatArray = field(init=False, repr=False)
    _shared_scratch: _TimingScratch | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("phase_ptr", "phase_lane_ptr", "phase_lanes"):
            set_(self, name, index_array(name, getattr(self, name), copy=True))
        for name in ("sat_flow_vph", "lost_s", "intergreen_s", "min_green_s", "max_green_s"):
            set_(self, name, float_array(name, getattr(self, name), copy=True))
        n_phases = self.lost_s.size
        n_lanes = self.sat_flow_vph.size
        n_slots = _k.SLOTS * self.phase_ptr.size  # the slot-major copy: SLOTS x (n + 1)
        if max(n_phases, n_lanes, n_slots) >= _MAX_INDEX:
            raise ValueError(
                f"at most {_MAX_INDEX - 1} phases and lanes and {(_MAX_INDEX - 1) // _k.SLOTS} "
                f"intersections; got len(lost_s)={n_phases}, len(sat_flow_vph)={n_lanes}, "
                f"len(phase_ptr)={self.phase_ptr.size}"
            )
        check_offsets("phase_ptr", self.phase_ptr, n_phases, "len(lost_s)")
        for name in ("intergreen_s", "min_green_s", "max_green_s"):
            check_length(name, getattr(self, name), n_phases, "phase")
        check_length("phase_lane_ptr", self.phase_lane_ptr, n_phases + 1, "phase, plus one")
        check_offsets(
            "phase_lane_ptr", self.phase_lane_ptr, self.phase_lanes.size, "len(phase_lanes)"
        )
        out = (self.phase_lanes < 0) | (self.phase_lanes >= n_lanes)
        if np.any(out):
            k = int(np.flatnonzero(out)[0])
            raise ValueError(
                f"phase_lanes must index the {n_lanes} lanes of sat_flow_vph; "
                f"phase_lanes[{k}]={self.phase_lanes[k]}"
            )
        check_range("sat_flow_vph", self.sat_flow_vph, low=0.0, strict=True)
        check_range("lost_s", self.lost_s, low=0.0)
        check_range("intergreen_s", self.intergreen_s, low=0.0)
        check_range("min_green_s", self.min_green_s, low=0.0)
        above_min = self.max_green_s - self.min_green_s
        if np.any(np.isnan(above_min) | (above_min < 0)):
            k = int(np.flatnonzero(np.isnan(above_min) | (above_min < 0))[0])
            raise ValueError(
                f"max_green_s must be >= min_green_s; max_green_s[{k}]={self.max_green_s[k]}"
                f" < min_green_s[{k}]={self.min_green_s[k]}"
            )
        eff = self.min_green_s + self.intergreen_s - self.lost_s
        if np.any(eff <= 0):
            k = int(np.flatnonzero(eff <= 0)[0])
            raise ValueError(
                "lost_s must be shorter than min_green_s + intergreen_s (the effective green "
                f"at min green must be > 0); phase {k}: lost_s={self.lost_s[k]}, "
                f"min_green_s={self.min_green_s[k]}, intergreen_s={self.intergreen_s[k]}"
            )
        for name, value in _derived_layout(self).items():  # read-only views, same values
            set_(self, name, value)
        set_(self, "_shared_scratch", None)

    def _scratch(self) -> _TimingScratch:
        """The scratch of :func:`estimate_timings` calls without ``out``, made at the first."""
        scratch = self._shared_scratch
        if scratch is None:
            scratch = _TimingScratch(self)
            object.__setattr__(self, "_shared_scratch", scratch)
        return scratch

    @classmethod
    def create(
        cls,
        *,
        phase_ptr: npt.ArrayLike,
        phase_lane_ptr: npt.ArrayLike,
        phase_lanes: npt.ArrayLike,
        sat_flow_vph: npt.ArrayLike,
        lost_s: npt.ArrayLike,
        intergreen_s: npt.ArrayLike,
        min_green_s: npt.ArrayLike,
        max_green_s: npt.ArrayLike | None = None,
    ) -> TimingNetwork:
        """Check and copy the arrays of a city's signals (see the class attributes).

        Parameters
        ----------
        phase_ptr, phase_lane_ptr, phase_lanes, sat_flow_vph, lost_s, intergreen_s, min_green_s
            As the attributes of the same name.
        max_green_s
            Maximum greens; ``None`` for no maximum (``inf``).

        Returns
        -------
        TimingNetwork
            With read-only ``int64`` offsets and indices and ``float64`` values.

        Raises
        ------
        ValueError
            Naming the argument: wrong dimension or length, offsets that do not rise from
            0 to the length they index, a lane index out of range, a non-positive or
            non-finite saturation flow, negative times, ``max_green_s < min_green_s``, or
            ``lost_s >= min_green_s + intergreen_s``.
        """
        if max_green_s is None:
            max_green_s = np.full(np.shape(lost_s), np.inf)
        return cls(
            phase_ptr=phase_ptr,  # type: ignore[arg-type]  # converted in __post_init__
            phase_lane_ptr=phase_lane_ptr,  # type: ignore[arg-type]
            phase_lanes=phase_lanes,  # type: ignore[arg-type]
            sat_flow_vph=sat_flow_vph,  # type: ignore[arg-type]
            lost_s=lost_s,  # type: ignore[arg-type]
            intergreen_s=intergreen_s,  # type: ignore[arg-type]
            min_green_s=min_green_s,  # type: ignore[arg-type]
            max_green_s=max_green_s,  # type: ignore[arg-type]
        )

    @property
    def n_intersections(self) -> int:
        """Number of intersections ``n``."""
        return self.phase_ptr.size - 1

    @property
    def n_phases(self) -> int:
        """Number of green phases ``P`` over all intersections."""
        return self.lost_s.size

    @property
    def n_lanes(self) -> int:
        """Number of lanes ``L`` (length of the per-lane arrays)."""
        return self.sat_flow_vph.size


@dataclass(frozen=True, slots=True)
class TimingParams:
    """Scalars of :func:`estimate_timings`, checked when built.

    Attributes
    ----------
    window_s
        Length of the window over which ``count_veh`` was counted, s (> 0).
    c_min_s, c_max_s
        Shortest and longest cycle Webster's cycle is clamped to, s
        (``0 < c_min_s <= c_max_s``).
    y_max
        Webster's formula is not used when ``Y >= y_max`` (the cycle is then ``c_max_s``
        and the intersection flagged oversaturated); ``0 < y_max <= 1``.
    """

    window_s: float
    c_min_s: float = 40.0
    c_max_s: float = 180.0
    y_max: float = 0.95

    def __post_init__(self) -> None:
        for name in ("window_s", "c_min_s", "c_max_s", "y_max"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite; got {value}")
            object.__setattr__(self, name, value)
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0; got {self.window_s}")
        if self.c_min_s <= 0:
            raise ValueError(f"c_min_s must be > 0; got {self.c_min_s}")
        if self.c_min_s > self.c_max_s:
            raise ValueError(
                f"c_min_s must be <= c_max_s; got c_min_s={self.c_min_s} > c_max_s={self.c_max_s}"
            )
        if not 0 < self.y_max <= 1:
            raise ValueError(f"y_max must be in (0, 1]; got {self.y_max}")


class TimingEstimate(NamedTuple):
    """Output of :func:`estimate_timings`."""

    cycle_s: FloatArray
    """``[n]`` cycle = sum of displayed greens + intergreens, s (NaN: no phase)."""
    green_s: FloatArray
    """``[P]`` displayed green of each phase, s."""
    flow_ratio: FloatArray
    """``[P]`` critical flow ratio ``y`` of each phase (NaN: unobserved)."""
    flow_ratio_sum: FloatArray
    """``[n]`` ``Y``, the sum of ``y`` over observed phases (NaN: no observed phase)."""
    degree_of_saturation: FloatArray
    """``[P]`` ``x = y C / g`` with the effective green ``g`` given (NaN: unobserved)."""
    flags: IntArray
    """``[n]`` :class:`TimingFlag` bits."""


class TimingPlan(NamedTuple):
    """A cycle and greens per intersection: output of :func:`smooth_timings`."""

    cycle_s: FloatArray
    """``[n]`` cycle = sum of displayed greens + intergreens, s (NaN: none)."""
    green_s: FloatArray
    """``[P]`` displayed green of each phase, s."""


class _TimingScratch:
    """Scratch of the timing kernel for one network (no result is kept here).

    One array: ``ratio`` (L + 1), ``y``, green and ``x`` per slot (3 x SLOTS x (n + 1);
    the padding slots of ``y`` stay NaN: no phase, no flow), the copy of an intersection
    whose cycle is fitted (6 x SLOTS), ``free`` (P + 1).
    """

    __slots__ = ("values",)

    def __init__(self, network: TimingNetwork) -> None:
        n_values = network.n_lanes + 1 + 3 * _k.SLOTS * (network.n_intersections + 1)
        n_values += 6 * _k.SLOTS + network.n_phases + 1
        self.values = np.full(n_values, np.nan)


class TimingWorkspace:
    """The arrays :func:`estimate_timings` writes, allocated once for one network.

    Made once per network by the caller (e.g. a controller that re-times the city every
    few minutes) and passed as ``out=``: the call then allocates nothing and returns
    :attr:`result`, whose arrays are views of this workspace that the **next call
    overwrites**; copy what must outlive it. The views are read-only (the kernel writes
    through the workspace's own arrays). One workspace per concurrent caller.

    Attributes
    ----------
    network
        The network the arrays are sized for; a call with another network is refused.
    result
        The :class:`TimingEstimate` every call with this workspace returns (the same
        object each time, its arrays rewritten in place).
    """

    __slots__ = ("_flags", "_out", "_scratch", "network", "result")

    def __init__(
        self,
        network: TimingNetwork,
        *,
        _writeable: bool = False,
        _scratch: _TimingScratch | None = None,
    ) -> None:
        if not isinstance(network, TimingNetwork):
            raise TypeError(f"network must be a TimingNetwork; got {type(network).__name__}")
        n, n_phases = network.n_intersections, network.n_phases
        self.network = network
        self._scratch = _TimingScratch(network) if _scratch is None else _scratch
        # y, green_s, x per phase; cycle_s, Y and (scratch) C - L, shares per intersection
        self._out = np.empty(3 * n_phases + 4 * n)
        self._flags = np.empty(n, dtype=np.int64)
        phase_out = self._out[: 3 * n_phases].reshape(3, n_phases)
        int_out = self._out[3 * n_phases :].reshape(4, n)
        views = (int_out[0], phase_out[1], phase_out[0], int_out[1], phase_out[2], self._flags[:])
        if not _writeable:
            for view in views:
                view.flags.writeable = False
        self.result = TimingEstimate(*views)


def _lane_counts(count_veh: npt.ArrayLike, n_lanes: int) -> FloatArray:
    """``count_veh`` as the kernel takes it; a contiguous ``float64`` array passes as is."""
    if (
        type(count_veh) is np.ndarray
        and count_veh.dtype is _F8
        and count_veh.shape == (n_lanes,)
        and count_veh.strides == (8,)
    ):
        return count_veh
    return readings("count_veh", count_veh, n_lanes, "lane")


def estimate_timings(
    network: TimingNetwork,
    count_veh: npt.ArrayLike,
    params: TimingParams,
    *,
    out: TimingWorkspace | None = None,
) -> TimingEstimate:
    """Webster cycles and HCM greens for every intersection, from per-lane counts.

    The rules are in the module docstring; in short: Webster's cycle from the critical
    flow ratios, clamped to ``[c_min_s, c_max_s]``, greens in proportion to ``y`` within
    their min and max, unobserved phases at exactly their min green.

    Parameters
    ----------
    network
        The city's signals.
    count_veh
        ``[L]`` vehicles counted on each lane over ``params.window_s``; NaN for no data.
    params
        Window length, cycle bounds and the oversaturation threshold ``y_max``.
    out
        A :class:`TimingWorkspace` of ``network`` to write into (no allocation per call):
        the result is then its read-only views, overwritten by the next call with it.
        ``None``: new arrays, the caller's to keep.

    Returns
    -------
    TimingEstimate
        Cycle, displayed greens, ``y``, ``Y``, ``x`` and :class:`TimingFlag` bits.

    Raises
    ------
    ValueError
        When ``count_veh`` is not one value per lane, or holds a negative or infinite
        count (``out`` keeps its previous result), or ``out`` was made for another network.
    """
    counts = _lane_counts(count_veh, network.n_lanes)
    if out is None:  # new result arrays; the scratch is the network's (the kernel holds the GIL)
        out = TimingWorkspace(network, _writeable=True, _scratch=network._scratch())
    elif out.network is not network:
        raise ValueError(
            "out must be a TimingWorkspace made for this network (TimingWorkspace(network))"
        )
    bad = _k._estimate_timings_packed(
        network._net_index,
        network._net_slots,
        network._net_floats,
        counts,
        params.window_s,
        params.c_min_s,
        params.c_max_s,
        params.y_max,
        out._scratch.values,
        out._out,
        out._flags,
    )
    if bad >= 0:
        raise ValueError(
            f"count_veh must be >= 0 and finite (or NaN for no data); "
            f"count_veh[{bad}]={counts[bad]}"
        )
    return out.result


def smooth_timings(
    network: TimingNetwork,
    prev_cycle_s: npt.ArrayLike,
    prev_green_s: npt.ArrayLike,
    target_cycle_s: npt.ArrayLike,
    target_green_s: npt.ArrayLike,
    *,
    alpha: float,
    max_step_s: float = math.inf,
) -> TimingPlan:
    """Move each intersection's timing part of the way from the previous to the target.

    Per intersection the cycle moves by ``alpha`` of the gap, at most ``max_step_s``; each
    green is the same blend of its previous and target value, and the greens are scaled
    so that ``sum(green_s) + sum(intergreen_s)`` equals the new cycle. The min-green rule
    wins over smoothing: greens below their minimum are raised to it, the time taken from
    the greens above their minimum in proportion to their surplus; when the minimums do
    not fit, the cycle grows to ``sum(min_green_s + intergreen_s)`` (beyond ``max_step_s``).

    A previous timing with a NaN (first update) takes the target as is (rescaled to fill
    its cycle, which is a no-op for the output of :func:`estimate_timings`); a target with
    a NaN keeps the previous timing; an intersection with no phase gives NaN.

    Parameters
    ----------
    network
        The city's signals (phases, intergreens, min greens).
    prev_cycle_s, prev_green_s
        ``[n]`` and ``[P]`` timing in force, s.
    target_cycle_s, target_green_s
        ``[n]`` and ``[P]`` new target, e.g. from :func:`estimate_timings`, s.
    alpha
        Share of the gap covered per update, ``0 < alpha <= 1``.
    max_step_s
        Largest change of the cycle per update, s (> 0; ``inf`` for no limit).

    Returns
    -------
    TimingPlan
        New ``cycle_s[n]`` and ``green_s[P]``.

    Raises
    ------
    ValueError
        When an array has the wrong length, ``alpha`` is outside ``(0, 1]`` or
        ``max_step_s`` is not > 0.
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1]; got {alpha}")
    if not max_step_s > 0:
        raise ValueError(f"max_step_s must be > 0; got {max_step_s}")
    n, n_phases = network.n_intersections, network.n_phases
    cycle_s, green_s = _k._smooth_timings(
        network.phase_ptr,
        network.intergreen_s,
        network.min_green_s,
        readings("prev_cycle_s", prev_cycle_s, n, "intersection"),
        readings("prev_green_s", prev_green_s, n_phases, "phase"),
        readings("target_cycle_s", target_cycle_s, n, "intersection"),
        readings("target_green_s", target_green_s, n_phases, "phase"),
        float(alpha),
        float(max_step_s),
    )
    return TimingPlan(cycle_s, green_s)


@dataclass(frozen=True, slots=True, eq=False)
class PhaseMovements:
    """The movements (in-lane -> out-lane) each green phase serves, checked when built.

    Build it with :meth:`create`; the arrays are copied into read-only arrays.

    Attributes
    ----------
    mov_ptr
        ``P + 1`` offsets: the movements of phase ``p`` are ``mov_ptr[p]:mov_ptr[p + 1]``.
    mov_in_lane
        Upstream lane of each movement (index into the per-lane arrays).
    mov_out_lane
        Downstream lane of each movement; -1 when it is outside the model (empty queue).
    mov_sat_flow_vph
        Saturation flow of each movement, veh/h (>= 0).
    n_lanes
        Number of lanes ``L`` the lane indices refer to.
    """

    mov_ptr: IntArray
    mov_in_lane: IntArray
    mov_out_lane: IntArray
    mov_sat_flow_vph: FloatArray
    n_lanes: int

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("mov_ptr", "mov_in_lane", "mov_out_lane"):
            set_(self, name, index_array(name, getattr(self, name), copy=True))
        set_(
            self,
            "mov_sat_flow_vph",
            float_array("mov_sat_flow_vph", self.mov_sat_flow_vph, copy=True),
        )
        if isinstance(self.n_lanes, bool) or int(self.n_lanes) != self.n_lanes or self.n_lanes < 0:
            raise ValueError(f"n_lanes must be a whole number >= 0; got {self.n_lanes}")
        set_(self, "n_lanes", int(self.n_lanes))
        n_mov = self.mov_sat_flow_vph.size
        check_offsets("mov_ptr", self.mov_ptr, n_mov, "len(mov_sat_flow_vph)")
        check_length("mov_in_lane", self.mov_in_lane, n_mov, "movement")
        check_length("mov_out_lane", self.mov_out_lane, n_mov, "movement")
        for name, low in (("mov_in_lane", 0), ("mov_out_lane", -1)):
            lanes = getattr(self, name)
            out = (lanes < low) | (lanes >= self.n_lanes)
            if np.any(out):
                k = int(np.flatnonzero(out)[0])
                raise ValueError(
                    f"{name} must be in [{low}, n_lanes={self.n_lanes}); {name}[{k}]={lanes[k]}"
                )
        check_range("mov_sat_flow_vph", self.mov_sat_flow_vph, low=0.0)

    @classmethod
    def create(
        cls,
        *,
        mov_ptr: npt.ArrayLike,
        mov_in_lane: npt.ArrayLike,
        mov_out_lane: npt.ArrayLike,
        mov_sat_flow_vph: npt.ArrayLike,
        n_lanes: int,
    ) -> PhaseMovements:
        """Check and copy the movement arrays (see the class attributes).

        Raises
        ------
        ValueError
            Naming the argument: wrong dimension or length, offsets that do not rise from
            0 to the number of movements, a lane index out of range, or a negative or
            non-finite saturation flow.
        """
        return cls(
            mov_ptr=mov_ptr,  # type: ignore[arg-type]  # converted in __post_init__
            mov_in_lane=mov_in_lane,  # type: ignore[arg-type]
            mov_out_lane=mov_out_lane,  # type: ignore[arg-type]
            mov_sat_flow_vph=mov_sat_flow_vph,  # type: ignore[arg-type]
            n_lanes=n_lanes,
        )

    @property
    def n_phases(self) -> int:
        """Number of green phases ``P`` the movements are grouped by."""
        return self.mov_ptr.size - 1


class MaxPressure(NamedTuple):
    """Output of :func:`max_pressure`."""

    pressure: FloatArray
    """``[P]`` pressure of each phase, veh²/h: sum of sat flow x (queue in - queue out)."""
    best_phase: IntArray
    """``[n]`` local index (within the intersection) of the phase with the highest
    pressure; ties go to the lowest index; -1 for an intersection with no phase."""


def max_pressure(
    network: TimingNetwork, movements: PhaseMovements, queue_veh: npt.ArrayLike
) -> MaxPressure:
    """Max-pressure (Varaiya 2013) pressures and phase choice for every intersection.

    ``pressure[p] = sum(mov_sat_flow_vph * (queue_veh[in] - queue_veh[out]))`` over the
    movements of phase ``p``; upstream and downstream queues both come from ``queue_veh``,
    NaN reads as 0 and a downstream lane of -1 as an empty queue.

    Parameters
    ----------
    network
        The city's signals (only the phases per intersection are used).
    movements
        The movements of each phase.
    queue_veh
        ``[L]`` queue on each lane, vehicles; NaN for no data.

    Returns
    -------
    MaxPressure
        ``pressure[P]`` and ``best_phase[n]``.

    Raises
    ------
    ValueError
        When ``movements`` does not match ``network``, or ``queue_veh`` is not one value per
        lane or holds a negative or infinite queue.
    """
    if movements.n_phases != network.n_phases or movements.n_lanes != network.n_lanes:
        raise ValueError(
            f"movements must have the network's {network.n_phases} phases and "
            f"{network.n_lanes} lanes; got {movements.n_phases} and {movements.n_lanes}"
        )
    queues = readings("queue_veh", queue_veh, network.n_lanes, "lane")
    pressure, best, bad = _k._max_pressure(
        network.phase_ptr,
        movements.mov_ptr,
        movements.mov_in_lane,
        movements.mov_out_lane,
        movements.mov_sat_flow_vph,
        queues,
    )
    if bad >= 0:
        raise ValueError(
            "queue_veh must be >= 0 and finite (or NaN for no data); "
            f"queue_veh[{bad}]={queues[bad]}"
        )
    return MaxPressure(pressure, best)
