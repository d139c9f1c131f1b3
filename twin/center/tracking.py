"""The control center's view of an emergency vehicle: GPS reports, map matching, tracking.

Suwon's center-based EV priority works from the ambulance crew's phone: it sends GPS
fixes (about 1 Hz, 5-10 m noise) to the traffic control center, which map-matches them
to the route it proposed, estimates the EV's speed and its arrival time at each stop
line, and turns signals green ahead of it. This module is the center's side of that
chain, free of SUMO: the same code runs in simulation and in live mode.

* :class:`GpsReport` is one report as the center receives it.
* :class:`RouteMatcher` maps a GPS point to the distance along the proposed route.
* :class:`GpsTracker` is the center's view of one EV: it validates and ingests reports
  (never raising on bad data), tracks the position along the route and the speed,
  says when the track has gone stale and estimates arrival times.

Positions are in the network's planar coordinates (metres), times in seconds of the
center's clock (simulation time in a simulated run).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

_TIME_EPS_S = 1e-6
"""Tolerance when comparing times (simulation steps accumulate rounding error)."""
MIN_SPEED_MPS = 2.0
"""Floor of every speed used for an EV's arrival times (m/s); the preemption kernel's
``min_speed_mps`` is given the same value."""
GPS_SPEED_WEIGHT = 0.5
"""Weight of the GPS speed against the link speed in :func:`ev_speed_mps`."""


def ev_speed_mps(
    gps_speed_mps: float | None,
    link_speed_mps: float | None,
    *,
    blend: float = GPS_SPEED_WEIGHT,
) -> float | None:
    """The one speed estimate behind every arrival time of an EV (m/s).

    ``blend * GPS speed + (1 - blend) * link speed`` when both are known; either alone
    when the other is not. A GPS speed that is not positive (the EV stands at a red
    light, or the fixes went backwards within noise) counts as unknown when a link
    speed is known: the EV will move on at about the speed of its street. The result
    is floored at :data:`MIN_SPEED_MPS`; ``None`` when nothing is known. The planner
    (:mod:`twin.center.preemption`), the tracker's :meth:`GpsTracker.eta_s` and the
    EV-only sign message (:mod:`twin.center.signs`) all use it.

    Raises
    ------
    ValueError
        When ``blend`` is outside [0, 1] or ``link_speed_mps`` is negative.
    """
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1]; got {blend!r}.")
    if link_speed_mps is not None and math.isnan(link_speed_mps):
        link_speed_mps = None
    if gps_speed_mps is not None and math.isnan(gps_speed_mps):
        gps_speed_mps = None
    if link_speed_mps is not None and link_speed_mps < 0:
        raise ValueError(f"link_speed_mps must be >= 0; got {link_speed_mps!r}.")
    gps = gps_speed_mps
    if gps is not None and gps <= 0 and link_speed_mps is not None:
        gps = None
    if gps is not None and link_speed_mps is not None:
        speed = blend * gps + (1.0 - blend) * link_speed_mps
    elif gps is not None:
        speed = gps
    elif link_speed_mps is not None:
        speed = link_speed_mps
    else:
        return None
    return max(speed, MIN_SPEED_MPS)


@dataclass(frozen=True)
class GpsReport:
    """One GPS report as the control center receives it.

    Attributes
    ----------
    vehicle_id
        The vehicle that sent it.
    t_s
        Time of the fix (s).
    x_m, y_m
        Measured position (m, network coordinates).
    received_s
        Time the report reached the center (s).
    """

    vehicle_id: str
    t_s: float
    x_m: float
    y_m: float
    received_s: float


# ------------------------------------------------------------------------ matching


class EdgeLike(Protocol):
    """What :class:`RouteMatcher` needs of an edge (:class:`city_models.net.EdgeInfo` fits)."""

    @property
    def id(self) -> str: ...

    @property
    def shape_xy(self) -> Sequence[tuple[float, float]]: ...

    @property
    def length_m(self) -> float: ...


@dataclass(frozen=True)
class Match:
    """A GPS point matched to the route.

    Attributes
    ----------
    s_m
        Distance along the route (m, in edge lengths) of the matched point.
    edge_index
        Index of the matched edge in the route.
    edge_id
        Its id.
    offset_m
        Perpendicular distance from the GPS point to the route (m).
    """

    s_m: float
    edge_index: int
    edge_id: str
    offset_m: float


class RouteMatcher:
    """Map-match GPS points to a route (a sequence of edges).

    The route's polyline is the concatenation of the edges' shapes. A point is
    projected onto every segment; the nearest projection wins (the earliest one on a
    tie). Distances along the route are measured in edge lengths: the lengths of the
    earlier edges plus the projected distance along the current edge's shape, scaled by
    ``length_m / shape length`` (SUMO's ``length`` differs from the geometry's length
    wherever lengths were set or shapes were simplified).

    Parameters
    ----------
    edges
        The route, in driving order; each has ``id``, ``shape_xy`` and ``length_m``.
    max_offset_m
        A point farther than this from the route (m) does not match.

    Raises
    ------
    ValueError
        When the route is empty, an edge length is negative or not finite, a shape point
        is not finite, or no edge has a shape with a positive length.
    """

    def __init__(self, edges: Sequence[EdgeLike], *, max_offset_m: float = 40.0) -> None:
        if not edges:
            raise ValueError("RouteMatcher: the route has no edges.")
        if not (math.isfinite(max_offset_m) and max_offset_m >= 0):
            raise ValueError(
                f"RouteMatcher: max_offset_m must be finite and >= 0; got {max_offset_m!r}."
            )
        self.max_offset_m = float(max_offset_m)
        self.edge_ids: tuple[str, ...] = tuple(str(e.id) for e in edges)
        lengths = np.array([float(e.length_m) for e in edges], dtype=float)
        bad = np.flatnonzero(~np.isfinite(lengths) | (lengths < 0))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"RouteMatcher: edge {self.edge_ids[i]!r} has length_m {lengths[i]!r}; "
                "allowed: finite and >= 0."
            )
        self._edge_end_s_m = np.cumsum(lengths)
        self._edge_start_s_m = self._edge_end_s_m - lengths

        ax: list[float] = []
        ay: list[float] = []
        bx: list[float] = []
        by: list[float] = []
        s0: list[float] = []
        s_len: list[float] = []
        edge_of: list[int] = []
        for i, edge in enumerate(edges):
            pts = np.asarray(edge.shape_xy, dtype=float).reshape(-1, 2)
            if not np.isfinite(pts).all():
                raise ValueError(
                    f"RouteMatcher: edge {self.edge_ids[i]!r} has a non-finite shape point."
                )
            if len(pts) < 2:
                continue
            seg_len = np.hypot(*(pts[1:] - pts[:-1]).T)
            shape_len = float(seg_len.sum())
            if shape_len <= 0:
                continue
            scale = lengths[i] / shape_len
            seg_start_s = self._edge_start_s_m[i] + scale * (np.cumsum(seg_len) - seg_len)
            keep = seg_len > 0
            ax += pts[:-1, 0][keep].tolist()
            ay += pts[:-1, 1][keep].tolist()
            bx += pts[1:, 0][keep].tolist()
            by += pts[1:, 1][keep].tolist()
            s0 += seg_start_s[keep].tolist()
            s_len += (scale * seg_len[keep]).tolist()
            edge_of += [i] * int(keep.sum())
        if not ax:
            raise ValueError("RouteMatcher: no edge of the route has a shape of positive length.")
        self._ax = np.array(ax)
        self._ay = np.array(ay)
        self._dx = np.array(bx) - self._ax
        self._dy = np.array(by) - self._ay
        self._len2 = self._dx**2 + self._dy**2
        self._s0 = np.array(s0)
        self._s_len = np.array(s_len)
        self._edge_of = np.array(edge_of, dtype=np.intp)

    @property
    def n_edges(self) -> int:
        """Number of edges in the route."""
        return len(self.edge_ids)

    @property
    def n_segments(self) -> int:
        """Number of polyline segments (of positive length) in the route."""
        return len(self._ax)

    @property
    def length_m(self) -> float:
        """Length of the whole route (m)."""
        return float(self._edge_end_s_m[-1])

    def stop_line_s_m(self, edge_index: int) -> float:
        """Distance along the route of the end of edge ``edge_index`` (its stop line)."""
        return float(self._edge_end_s_m[self._check_index(edge_index)])

    def edge_start_s_m(self, edge_index: int) -> float:
        """Distance along the route of the start of edge ``edge_index``."""
        return float(self._edge_start_s_m[self._check_index(edge_index)])

    def edge_index_at(self, s_m: float) -> int:
        """Index of the route edge at distance ``s_m`` along the route.

        An edge's end belongs to the next edge; distances outside the route give the first
        or the last edge.
        """
        i = int(np.searchsorted(self._edge_end_s_m, float(s_m), side="right"))
        return min(max(i, 0), self.n_edges - 1)

    def _check_index(self, edge_index: int) -> int:
        if not -self.n_edges <= edge_index < self.n_edges:
            raise IndexError(
                f"edge_index {edge_index} is out of range for a route of {self.n_edges} edges."
            )
        return edge_index % self.n_edges

    def point_at(self, s_m: float) -> tuple[float, float]:
        """The point of the route polyline at distance ``s_m`` along it (clamped to the route).

        The inverse of :meth:`match` for points on the route; useful to drive an emulator
        along the route.
        """
        s = min(max(float(s_m), float(self._s0[0])), float(self._s0[-1] + self._s_len[-1]))
        i = int(np.searchsorted(self._s0, s, side="right")) - 1
        i = max(i, 0)
        t = (s - self._s0[i]) / self._s_len[i] if self._s_len[i] > 0 else 0.0
        t = min(max(t, 0.0), 1.0)
        return float(self._ax[i] + t * self._dx[i]), float(self._ay[i] + t * self._dy[i])

    def match(
        self,
        x_m: float,
        y_m: float,
        *,
        near_s_m: float | None = None,
        window_m: float = 300.0,
    ) -> Match | None:
        """Match a GPS point to the route.

        Parameters
        ----------
        x_m, y_m
            The GPS point (m).
        near_s_m
            The last matched distance along the route, if any. The match is then
            restricted to the part of the route within
            ``[near_s_m − 50 m, near_s_m + window_m]``, so that a route passing near
            itself does not make the match jump to another part of it.
        window_m
            How far ahead of ``near_s_m`` to look (m).

        Returns
        -------
        Match or None
            The nearest point of the (windowed) route, or None when the point is not
            finite, nothing of the route lies in the window, or the nearest point is
            more than ``max_offset_m`` away.
        """
        if not (math.isfinite(x_m) and math.isfinite(y_m)):
            return None
        t_lo = np.zeros_like(self._ax)
        t_hi = np.ones_like(self._ax)
        valid = np.ones(self._ax.shape, dtype=bool)
        if near_s_m is not None:
            if not math.isfinite(near_s_m):
                return None
            lo_s = near_s_m - 50.0
            hi_s = near_s_m + max(float(window_m), 0.0)
            seg_end = self._s0 + self._s_len
            valid = (seg_end >= lo_s) & (self._s0 <= hi_s)
            with np.errstate(divide="ignore", invalid="ignore"):
                pos = self._s_len > 0
                t_lo = np.where(pos, np.clip((lo_s - self._s0) / self._s_len, 0.0, 1.0), 0.0)
                t_hi = np.where(pos, np.clip((hi_s - self._s0) / self._s_len, 0.0, 1.0), 1.0)
            if not valid.any():
                return None
        with np.errstate(all="ignore"):
            t = ((x_m - self._ax) * self._dx + (y_m - self._ay) * self._dy) / self._len2
            t = np.minimum(np.maximum(t, t_lo), t_hi)
            dist = np.hypot(x_m - (self._ax + t * self._dx), y_m - (self._ay + t * self._dy))
        dist = np.where(valid & np.isfinite(dist), dist, np.inf)
        k = int(np.argmin(dist))
        offset = float(dist[k])
        if not offset <= self.max_offset_m:
            return None
        edge_index = int(self._edge_of[k])
        return Match(
            s_m=float(self._s0[k] + t[k] * self._s_len[k]),
            edge_index=edge_index,
            edge_id=self.edge_ids[edge_index],
            offset_m=offset,
        )


# ------------------------------------------------------------------------ tracking


class RejectReason(StrEnum):
    """Why :meth:`GpsTracker.update` rejected a report."""

    NON_FINITE = "non_finite"
    """A coordinate or a time is NaN, infinite or not a number."""
    WRONG_VEHICLE = "wrong_vehicle"
    """The report is from another vehicle than the tracked one."""
    DUPLICATE_TIME = "duplicate_time"
    """The fix time equals the last accepted fix's."""
    TIME_BACKWARDS = "time_backwards"
    """The fix time is before the last accepted fix's."""
    OFF_ROUTE = "off_route"
    """The point matches no part of the route (near the last position)."""
    SPEED_JUMP = "speed_jump"
    """The implied speed from the last accepted fix exceeds ``max_speed_mps``."""
    BACKWARDS_ON_ROUTE = "backwards_on_route"
    """The point lies farther behind the tracked position than GPS noise explains."""


@dataclass(frozen=True)
class TrackerEvent:
    """What :meth:`GpsTracker.update` did with a report.

    Attributes
    ----------
    accepted
        Whether the report updated the track.
    reason
        Why it was rejected (None when accepted).
    report
        The report.
    match
        Its match to the route, when it got that far (None otherwise).
    s_m
        The tracked distance along the route after the update (None before any fix).
    clamped
        Accepted, but the point lay slightly behind the tracked position, which was kept.
    """

    accepted: bool
    reason: RejectReason | None
    report: GpsReport
    match: Match | None = None
    s_m: float | None = None
    clamped: bool = False


def _as_float(value: object) -> float:
    """``float(value)``, or NaN when it is not a real number."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan


class GpsTracker:
    """The control center's view of one EV on its proposed route.

    Feed it every report received (:meth:`update`); it rejects bad ones — logging why,
    never raising — and keeps the distance along the route (which never decreases),
    a speed estimate, and the times of the last accepted fix.

    Parameters
    ----------
    matcher
        The EV's route.
    speed_window_s
        The speed is estimated over the accepted fixes of the last ``speed_window_s``
        seconds (s, by fix time).
    stale_after_s
        The track is stale when no accepted report has been received for this long (s);
        the center must then release priority.
    max_speed_mps
        A fix implying a faster move since the last accepted one is a jump (m/s).
    backward_tolerance_m
        A point up to this far behind the tracked position is GPS noise: accepted, the
        position kept. Farther behind is rejected (m).
    jump_tolerance_m
        GPS noise allowed for in the jump test: the move minus this is divided by the
        time since the last accepted fix (m). Two fixes of a phone with 5–10 m noise
        easily differ by 20 m more than the vehicle moved.
    window_m
        How far ahead of the tracked position to match (m); widened to what
        ``max_speed_mps`` allows after a long gap between fixes.
    vehicle_id
        When given, reports from other vehicles are rejected.
    """

    def __init__(
        self,
        matcher: RouteMatcher,
        *,
        speed_window_s: float = 10.0,
        stale_after_s: float = 3.0,
        max_speed_mps: float = 45.0,
        backward_tolerance_m: float = 15.0,
        jump_tolerance_m: float = 30.0,
        window_m: float = 300.0,
        vehicle_id: str | None = None,
    ) -> None:
        for name, value in (
            ("speed_window_s", speed_window_s),
            ("stale_after_s", stale_after_s),
            ("max_speed_mps", max_speed_mps),
            ("window_m", window_m),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"GpsTracker: {name} must be finite and > 0; got {value!r}.")
        for name, value in (
            ("backward_tolerance_m", backward_tolerance_m),
            ("jump_tolerance_m", jump_tolerance_m),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"GpsTracker: {name} must be finite and >= 0; got {value!r}.")
        self.matcher = matcher
        self.speed_window_s = float(speed_window_s)
        self.stale_after_s = float(stale_after_s)
        self.max_speed_mps = float(max_speed_mps)
        self.backward_tolerance_m = float(backward_tolerance_m)
        self.jump_tolerance_m = float(jump_tolerance_m)
        self.window_m = float(window_m)
        self.vehicle_id = vehicle_id
        self.s_m: float | None = None
        """Tracked distance along the route (m); None before the first accepted fix."""
        self.edge_index: int | None = None
        """Route edge of the last accepted match."""
        self.last_fix_s: float | None = None
        """Fix time of the last accepted report (s)."""
        self.last_received_s: float | None = None
        """Arrival time of the last accepted report (s)."""
        self.n_accepted = 0
        self.n_rejected = 0
        self._last_xy: tuple[float, float] | None = None
        self._history: deque[tuple[float, float]] = deque()  # (fix time s, s_m)

    # -- ingest

    def update(self, report: GpsReport) -> TrackerEvent:
        """Validate a received report and, when it is good, update the track.

        Never raises: a bad report is logged and rejected with a :class:`RejectReason`.
        """
        t_s = _as_float(getattr(report, "t_s", None))
        x_m = _as_float(getattr(report, "x_m", None))
        y_m = _as_float(getattr(report, "y_m", None))
        received_s = _as_float(getattr(report, "received_s", None))
        reason = self._screen(report, (t_s, x_m, y_m, received_s))
        if reason is not None:
            return self._reject(report, reason)
        reason, match, new_s, clamped = self._locate(t_s, x_m, y_m)
        if reason is not None or match is None:
            return self._reject(report, reason or RejectReason.OFF_ROUTE, match)

        self.s_m = new_s
        self.edge_index = match.edge_index
        self.last_fix_s = t_s
        self.last_received_s = received_s
        self._last_xy = (x_m, y_m)
        self._history.append((t_s, new_s))
        while len(self._history) > 2 and self._history[0][0] < t_s - self.speed_window_s:
            self._history.popleft()
        self.n_accepted += 1
        return TrackerEvent(
            accepted=True, reason=None, report=report, match=match, s_m=new_s, clamped=clamped
        )

    def _screen(self, report: GpsReport, values: tuple[float, ...]) -> RejectReason | None:
        """Checks that need no map: numbers, vehicle, time order."""
        if not all(math.isfinite(v) for v in values):
            return RejectReason.NON_FINITE
        if self.vehicle_id is not None and getattr(report, "vehicle_id", None) != self.vehicle_id:
            return RejectReason.WRONG_VEHICLE
        if self.last_fix_s is not None:
            if values[0] == self.last_fix_s:
                return RejectReason.DUPLICATE_TIME
            if values[0] < self.last_fix_s:
                return RejectReason.TIME_BACKWARDS
        return None

    def _locate(
        self, t_s: float, x_m: float, y_m: float
    ) -> tuple[RejectReason | None, Match | None, float, bool]:
        """Match the point and check the move: (reason, match, new s, clamped)."""
        s_prev, t_prev, xy_prev = self.s_m, self.last_fix_s, self._last_xy
        if s_prev is None or t_prev is None or xy_prev is None:  # first fix: whole route
            match = self.matcher.match(x_m, y_m)
            if match is None:
                return RejectReason.OFF_ROUTE, None, math.nan, False
            return None, match, match.s_m, False
        dt_s = t_s - t_prev  # > 0, screened
        window = max(self.window_m, self.max_speed_mps * dt_s + self.jump_tolerance_m)
        match = self.matcher.match(x_m, y_m, near_s_m=s_prev, window_m=window)
        if match is None:
            return RejectReason.OFF_ROUTE, None, math.nan, False
        moved_m = max(abs(match.s_m - s_prev), math.hypot(x_m - xy_prev[0], y_m - xy_prev[1]))
        if moved_m - self.jump_tolerance_m > self.max_speed_mps * dt_s:
            return RejectReason.SPEED_JUMP, match, math.nan, False
        back_m = s_prev - match.s_m
        if back_m > self.backward_tolerance_m:
            return RejectReason.BACKWARDS_ON_ROUTE, match, math.nan, False
        # A point slightly behind is GPS noise: keep the position (clamped).
        return None, match, max(s_prev, match.s_m), back_m > 0

    def _reject(
        self, report: GpsReport, reason: RejectReason, match: Match | None = None
    ) -> TrackerEvent:
        self.n_rejected += 1
        log.info(
            "GPS report of %s at t=%s rejected (%s): x=%s y=%s, tracked s=%s",
            getattr(report, "vehicle_id", "?"),
            getattr(report, "t_s", "?"),
            reason.value,
            getattr(report, "x_m", "?"),
            getattr(report, "y_m", "?"),
            self.s_m,
        )
        return TrackerEvent(accepted=False, reason=reason, report=report, match=match, s_m=self.s_m)

    # -- state

    @property
    def speed_mps(self) -> float | None:
        """Speed along the route (m/s) over the accepted fixes of the last ``speed_window_s``.

        ``(s_last − s_first) / (t_last − t_first)``; after a gap longer than the window,
        the last two accepted fixes. None before two accepted fixes.
        """
        if len(self._history) < 2:
            return None
        t_last, s_last = self._history[-1]
        first = next(
            (h for h in self._history if h[0] >= t_last - self.speed_window_s - _TIME_EPS_S),
            self._history[-2],
        )
        if first is self._history[-1]:
            first = self._history[-2]
        t_first, s_first = first
        return (s_last - s_first) / (t_last - t_first)

    def position_s_m(self, now_s: float) -> float | None:
        """Estimated distance along the route at ``now_s`` (m); None before the first fix.

        The last accepted position advanced by the GPS speed (0 while unknown) times the
        age of the fix, at most to the end of the route. Use it, not :attr:`s_m`, to decide
        which signals are still ahead: a fix is already a latency old when it arrives.
        """
        if self.s_m is None or self.last_fix_s is None:
            return None
        age_s = max(now_s - self.last_fix_s, 0.0)
        speed = self.speed_mps or 0.0
        return min(self.s_m + speed * age_s, max(self.s_m, self.matcher.length_m))

    def is_stale(self, now_s: float) -> bool:
        """Whether no accepted report has been received for ``stale_after_s`` by ``now_s``.

        True before the first accepted report. Poll the reports due at ``now_s`` first.
        """
        if self.last_received_s is None:
            return True
        return now_s - self.last_received_s >= self.stale_after_s - _TIME_EPS_S

    def eta_s(
        self,
        target_s_m: float,
        *,
        now_s: float,
        link_speed_mps: float | None,
        blend: float = 0.5,
    ) -> float:
        """Estimated time (s) from ``now_s`` until the EV reaches ``target_s_m`` on the route.

        The speed is ``blend · GPS speed + (1 − blend) · link speed``; either alone when
        the other is unknown; at least 2 m/s. The position is the last accepted one
        advanced by ``speed × (now_s − last fix time)``, since the fix is already old when
        it arrives.

        Parameters
        ----------
        target_s_m
            Distance along the route of the target, e.g. ``matcher.stop_line_s_m(i)``.
        now_s
            Current time (s).
        link_speed_mps
            Current speed of traffic on the EV's links (m/s), or None (NaN counts as None).
        blend
            Weight of the GPS speed, in [0, 1].

        Returns
        -------
        float
            Seconds to the target; 0 when it is already passed; ``inf`` when there is
            no position or no speed at all.

        Raises
        ------
        ValueError
            When ``blend`` is outside [0, 1] or ``link_speed_mps`` is negative.
        """
        speed = self.blended_speed_mps(link_speed_mps=link_speed_mps, blend=blend)
        if self.s_m is None or self.last_fix_s is None or speed is None:
            return math.inf
        age_s = max(now_s - self.last_fix_s, 0.0)
        remaining_m = target_s_m - (self.s_m + speed * age_s)
        return max(remaining_m, 0.0) / speed

    MIN_SPEED_MPS = MIN_SPEED_MPS

    def blended_speed_mps(
        self, *, link_speed_mps: float | None, blend: float = 0.5
    ) -> float | None:
        """The speed :meth:`eta_s` uses (m/s): :func:`ev_speed_mps` of the GPS speed and
        the link speed; None when neither is known.

        Raises
        ------
        ValueError
            When ``blend`` is outside [0, 1] or ``link_speed_mps`` is negative.
        """
        return ev_speed_mps(self.speed_mps, link_speed_mps, blend=blend)
