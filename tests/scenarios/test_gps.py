"""Tests of the GPS chain of center-based EV priority; no SUMO needed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from city_models.net import EdgeInfo
from scenarios.gps import GpsEmulator, GpsModel
from twin.center.tracking import (
    MIN_SPEED_MPS,
    GpsReport,
    GpsTracker,
    Match,
    RejectReason,
    RouteMatcher,
    ev_speed_mps,
)


@dataclass(frozen=True)
class Edge:
    id: str
    shape_xy: tuple[tuple[float, float], ...]
    length_m: float


def l_route() -> list[Edge]:
    """Two 200 m edges: east along y = 0, then north along x = 200."""
    return [
        Edge("a", ((0.0, 0.0), (200.0, 0.0)), 200.0),
        Edge("b", ((200.0, 0.0), (200.0, 200.0)), 200.0),
    ]


def hairpin_route() -> list[Edge]:
    """Out 500 m along y = 0, a 20 m turn, back 500 m along y = 20: passes near itself."""
    return [
        Edge("out", ((0.0, 0.0), (500.0, 0.0)), 500.0),
        Edge("turn", ((500.0, 0.0), (500.0, 20.0)), 20.0),
        Edge("back", ((500.0, 20.0), (0.0, 20.0)), 500.0),
    ]


def straight_route(length_m: float = 1000.0) -> list[Edge]:
    return [Edge("s", ((0.0, 0.0), (length_m, 0.0)), length_m)]


def rep(t_s: float, x_m: float, y_m: float, *, latency_s: float = 1.0) -> GpsReport:
    return GpsReport(vehicle_id="ev", t_s=t_s, x_m=x_m, y_m=y_m, received_s=t_s + latency_s)


# ------------------------------------------------------------------------- model


def test_model_defaults() -> None:
    m = GpsModel()
    assert (m.period_s, m.noise_m, m.latency_s, m.drop_rate) == (1.0, 5.0, 1.0, 0.05)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("period_s", 0.0, "greater than 0"),
        ("period_s", -1.0, "greater than 0"),
        ("period_s", math.nan, "finite number"),
        ("period_s", 11.0, "less than or equal to 10"),
        ("noise_m", -0.1, "greater than or equal to 0"),
        ("noise_m", math.inf, "finite number"),
        ("latency_s", -1.0, "greater than or equal to 0"),
        ("drop_rate", 1.0, "less than 1"),
        ("drop_rate", -0.01, "greater than or equal to 0"),
        ("drop_rate", "0.1", "valid number"),
        ("drop_rate", True, "valid number"),
    ],
)
def test_model_rejects_out_of_range(field: str, value: object, allowed: str) -> None:
    """One model for the scenario's [gps] table and the emulator (no second set of
    bounds): a bad value is a ValueError naming the field and what is allowed."""
    with pytest.raises(ValueError, match=field) as info:
        GpsModel(**{field: value})  # type: ignore[arg-type]
    assert allowed in str(info.value)


def test_model_is_frozen() -> None:
    m = GpsModel()
    with pytest.raises(ValidationError):
        m.noise_m = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------- emulator


def _drive(emu: GpsEmulator, duration_s: float, step_s: float, *, xy=(0.0, 0.0)) -> list[GpsReport]:
    """Observe a fixed position every step; collect everything that arrives."""
    out: list[GpsReport] = []
    n = round(duration_s / step_s)
    t = 0.0
    for _ in range(n + 1):
        emu.observe(t, *xy)
        out += emu.poll(t)
        t += step_s  # accumulates rounding error on purpose
    out += emu.poll(math.inf)
    return out


def test_emulator_period_with_sub_period_steps() -> None:
    emu = GpsEmulator(GpsModel(period_s=1.0, noise_m=0.0, latency_s=0.0, drop_rate=0.0), seed=1)
    reports = _drive(emu, 100.0, 0.1)
    t = np.array([r.t_s for r in reports])
    assert len(t) == 101
    np.testing.assert_allclose(np.diff(t), 1.0, atol=1e-6)
    assert emu.n_fixes == 101


def test_emulator_period_longer_than_step() -> None:
    emu = GpsEmulator(GpsModel(period_s=2.5, noise_m=0.0, latency_s=0.0, drop_rate=0.0), seed=1)
    reports = _drive(emu, 20.0, 0.5)
    assert [r.t_s for r in reports] == pytest.approx(
        [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0]
    )


def test_emulator_latency_and_poll() -> None:
    emu = GpsEmulator(GpsModel(noise_m=0.0, latency_s=1.5, drop_rate=0.0), seed=3, vehicle_id="amb")
    for t in range(5):
        emu.observe(float(t), 10.0 * t, 0.0)
    assert emu.n_in_flight == 5
    assert emu.poll(1.4) == []
    got = emu.poll(2.5)  # fixes of t=0 and t=1 arrived at 1.5 and 2.5
    assert [(r.t_s, r.received_s) for r in got] == [(0.0, 1.5), (1.0, 2.5)]
    assert all(r.vehicle_id == "amb" for r in got)
    assert emu.poll(2.5) == []  # removed once returned
    rest = emu.poll(100.0)
    assert [r.t_s for r in rest] == [2.0, 3.0, 4.0]
    assert [r.x_m for r in rest] == [20.0, 30.0, 40.0]  # noise 0: the true position
    assert all(r.received_s == r.t_s + 1.5 for r in rest)


def test_emulator_drop_share() -> None:
    p, n = 0.05, 20_000
    emu = GpsEmulator(GpsModel(noise_m=1.0, drop_rate=p), seed=11)
    reports = _drive(emu, n - 1, 1.0)
    assert emu.n_fixes == n
    assert emu.n_dropped + len(reports) == n
    share = emu.n_dropped / n
    assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_emulator_no_drops_at_zero_rate() -> None:
    emu = GpsEmulator(GpsModel(drop_rate=0.0), seed=2)
    assert len(_drive(emu, 999, 1.0)) == 1000


def test_emulator_noise_std() -> None:
    noise, n = 7.0, 5_000
    emu = GpsEmulator(GpsModel(noise_m=noise, drop_rate=0.0), seed=5)
    reports = _drive(emu, n - 1, 1.0, xy=(100.0, -50.0))
    x = np.array([r.x_m for r in reports]) - 100.0
    y = np.array([r.y_m for r in reports]) + 50.0
    for err in (x, y):
        assert abs(err.mean()) < 5 * noise / math.sqrt(n)
        assert err.std() == pytest.approx(noise, rel=0.05)


def test_emulator_deterministic_per_seed() -> None:
    model = GpsModel(noise_m=8.0, drop_rate=0.2)
    a = _drive(GpsEmulator(model, seed=42), 200, 1.0)
    b = _drive(GpsEmulator(model, seed=42), 200, 1.0)
    c = _drive(GpsEmulator(model, seed=43), 200, 1.0)
    assert a == b
    assert a != c


def test_emulator_rejects_time_going_backwards() -> None:
    emu = GpsEmulator(GpsModel(), seed=0)
    emu.observe(5.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="backwards"):
        emu.observe(4.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        emu.observe(math.nan, 0.0, 0.0)


# ----------------------------------------------------------------------- matcher


def test_matcher_exact_points_on_l_route() -> None:
    m = RouteMatcher(l_route())
    assert m.length_m == 400.0
    for (x, y), s, edge in [
        ((0.0, 0.0), 0.0, 0),
        ((50.0, 0.0), 50.0, 0),
        ((199.0, 0.0), 199.0, 0),
        ((200.0, 50.0), 250.0, 1),
        ((200.0, 200.0), 400.0, 1),
    ]:
        match = m.match(x, y)
        assert match is not None
        assert match.s_m == pytest.approx(s)
        assert match.edge_index == edge
        assert match.edge_id == "ab"[edge]
        assert match.offset_m == pytest.approx(0.0, abs=1e-9)


def test_matcher_perpendicular_offset() -> None:
    m = RouteMatcher(l_route())
    match = m.match(50.0, 10.0)
    assert match == Match(s_m=pytest.approx(50.0), edge_index=0, edge_id="a", offset_m=10.0)
    match = m.match(170.0, 100.0)  # 30 m west of edge b, 100 m up it
    assert match is not None
    assert (match.s_m, match.edge_id, match.offset_m) == pytest.approx((300.0, "b", 30.0))
    match = m.match(210.0, -10.0)  # beyond the corner: nearest is the corner itself
    assert match is not None
    assert match.s_m == pytest.approx(200.0)
    assert match.offset_m == pytest.approx(math.hypot(10.0, 10.0))


def test_matcher_before_start_and_after_end_clamp_to_the_ends() -> None:
    m = RouteMatcher(l_route())
    start = m.match(-20.0, 0.0)
    end = m.match(200.0, 230.0)
    assert start is not None and end is not None
    assert (start.s_m, start.offset_m) == pytest.approx((0.0, 20.0))
    assert (end.s_m, end.offset_m) == pytest.approx((400.0, 30.0))


def test_matcher_scales_shape_length_to_edge_length() -> None:
    edges = [
        Edge("a", ((0.0, 0.0), (100.0, 0.0)), 200.0),  # shape 100 m, length 200 m
        Edge("b", ((100.0, 0.0), (100.0, 100.0)), 50.0),  # shape 100 m, length 50 m
        Edge("c", ((100.0, 100.0), (130.0, 100.0), (130.0, 140.0)), 140.0),  # shape 70 m
    ]
    m = RouteMatcher(edges)
    assert m.edge_start_s_m(1) == 200.0
    assert m.stop_line_s_m(0) == 200.0
    assert m.stop_line_s_m(1) == 250.0
    assert m.stop_line_s_m(2) == m.length_m == 390.0
    assert m.stop_line_s_m(-1) == 390.0
    with pytest.raises(IndexError):
        m.stop_line_s_m(3)
    cases = [((50.0, 0.0), 100.0), ((100.0, 50.0), 225.0), ((130.0, 120.0), 250.0 + 100.0)]
    for (x, y), s in cases:
        match = m.match(x, y)
        assert match is not None
        assert match.s_m == pytest.approx(s)
    for s in (0.0, 37.0, 200.0, 212.5, 260.0, 389.0):
        match = m.match(*m.point_at(s))
        assert match is not None
        assert match.s_m == pytest.approx(s)


def test_matcher_edge_index_at() -> None:
    m = RouteMatcher(l_route())
    got = [m.edge_index_at(s) for s in (-5.0, 0.0, 199.9, 200.0, 399.0, 400.0, 1e9)]
    assert got == [0, 0, 0, 1, 1, 1, 1]


def test_matcher_accepts_sumo_edge_info() -> None:
    edges = [
        EdgeInfo("e1", "n1", "n2", 105.0, 13.9, 2, "Jungbu-daero", ((0.0, 0.0), (100.0, 0.0))),
        EdgeInfo("e2", "n2", "n3", 80.0, 13.9, 2, "", ((100.0, 0.0), (100.0, 80.0))),
    ]
    m = RouteMatcher(edges)
    match = m.match(100.0, 40.0)
    assert match is not None
    assert (match.edge_id, match.s_m) == ("e2", pytest.approx(145.0))


def test_matcher_none_when_far_off() -> None:
    m = RouteMatcher(l_route())
    assert m.match(100.0, 39.0) is not None
    assert m.match(100.0, 41.0) is None  # default max_offset_m = 40
    assert m.match(1000.0, 1000.0) is None
    assert m.match(math.nan, 0.0) is None
    assert m.match(0.0, math.inf) is None
    assert RouteMatcher(l_route(), max_offset_m=5.0).match(100.0, 6.0) is None


def test_matcher_window_prevents_a_jump_on_a_route_that_doubles_back() -> None:
    m = RouteMatcher(hairpin_route())
    # Nearer the way back (8 m) than the way out (12 m):
    free = m.match(100.0, 12.0)
    assert free is not None
    assert (free.edge_id, free.s_m) == ("back", pytest.approx(920.0))
    # Coming from s = 90 m on the way out, the way back is outside the window:
    near = m.match(100.0, 12.0, near_s_m=90.0)
    assert near is not None
    assert (near.edge_id, near.s_m, near.offset_m) == ("out", pytest.approx(100.0), 12.0)
    # Coming back from s = 910 m, the way out is outside the window:
    back = m.match(100.0, 8.0, near_s_m=910.0)
    assert back is not None
    assert (back.edge_id, back.s_m) == ("back", pytest.approx(920.0))


def test_matcher_window_clips_within_a_segment() -> None:
    m = RouteMatcher(straight_route(1000.0))
    match = m.match(600.0, 0.0, near_s_m=100.0, window_m=300.0)
    # only [50, 400] is considered: the nearest point of it is s = 400 m, 200 m away
    assert match is None
    match = m.match(420.0, 0.0, near_s_m=100.0, window_m=300.0)
    assert match is not None
    assert (match.s_m, match.offset_m) == pytest.approx((400.0, 20.0))
    assert m.match(10.0, 0.0, near_s_m=100.0) is not None  # 50 m behind still looked at
    assert m.match(5000.0, 0.0, near_s_m=5000.0) is None  # window past the route's end


@pytest.mark.parametrize(
    "edges",
    [
        [],
        [Edge("a", ((0.0, 0.0), (0.0, 0.0)), 10.0)],
        [Edge("a", ((0.0, 0.0), (1.0, 0.0)), -1.0)],
        [Edge("a", ((0.0, 0.0), (math.nan, 0.0)), 1.0)],
    ],
)
def test_matcher_rejects_bad_routes(edges: list[Edge]) -> None:
    with pytest.raises(ValueError, match="RouteMatcher"):
        RouteMatcher(edges)


def test_matcher_many_segments() -> None:
    # a zig-zag of 400 segments, each edge 4 segments of 10 m
    pts = [(10.0 * i, 5.0 * (i % 2)) for i in range(401)]
    seg = math.hypot(10.0, 5.0)
    edges = [Edge(f"e{k}", tuple(pts[4 * k : 4 * k + 5]), 4 * seg) for k in range(100)]
    m = RouteMatcher(edges)
    assert m.n_segments == 400
    match = m.match(*pts[123])
    assert match is not None
    assert match.s_m == pytest.approx(123 * seg)
    assert match.edge_index == 30


# ----------------------------------------------------------------------- tracker


def test_tracker_follows_a_clean_trajectory() -> None:
    m = RouteMatcher(l_route())
    tracker = GpsTracker(m)
    events = [tracker.update(rep(float(t), *m.point_at(10.0 * t))) for t in range(40)]
    assert all(e.accepted for e in events)
    assert tracker.s_m == pytest.approx(390.0)
    assert tracker.speed_mps == pytest.approx(10.0)
    assert tracker.edge_index == 1
    assert (tracker.last_fix_s, tracker.last_received_s) == (39.0, 40.0)
    assert tracker.n_accepted == 40


def test_tracker_with_noisy_emulated_phone() -> None:
    m = RouteMatcher(l_route())
    emu = GpsEmulator(GpsModel(noise_m=5.0, latency_s=1.0, drop_rate=0.05), seed=7)
    tracker = GpsTracker(m)
    events = []
    for t in range(40):
        emu.observe(float(t), *m.point_at(10.0 * t))
        events += [tracker.update(r) for r in emu.poll(float(t))]
    assert len(events) >= 30
    assert all(e.accepted for e in events)
    assert tracker.speed_mps == pytest.approx(10.0, abs=2.0)
    assert tracker.s_m == pytest.approx(380.0, abs=15.0)  # fix of t = 38 s arrived at 39 s
    assert not tracker.is_stale(39.0)


def test_tracker_speed_needs_two_fixes_and_uses_the_window() -> None:
    tracker = GpsTracker(RouteMatcher(straight_route()), speed_window_s=10.0)
    assert tracker.speed_mps is None
    tracker.update(rep(0.0, 0.0, 0.0))
    assert tracker.speed_mps is None
    for t in range(1, 11):  # 5 m/s for 10 s
        tracker.update(rep(float(t), 5.0 * t, 0.0))
    for t in range(11, 21):  # then 15 m/s: the window forgets the slow part
        tracker.update(rep(float(t), 50.0 + 15.0 * (t - 10), 0.0))
    assert tracker.speed_mps == pytest.approx(15.0)
    tracker.update(rep(60.0, 200.0 + 400.0, 0.0))  # after a 40 s gap: the last two fixes
    assert tracker.speed_mps == pytest.approx(400.0 / 40.0)


def _tracker_at(s_m: float = 100.0, t_s: float = 10.0) -> GpsTracker:
    tracker = GpsTracker(RouteMatcher(straight_route()))
    assert tracker.update(rep(t_s - 1.0, s_m - 10.0, 0.0)).accepted
    assert tracker.update(rep(t_s, s_m, 0.0)).accepted
    return tracker


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        (rep(11.0, math.nan, 0.0), RejectReason.NON_FINITE),
        (rep(11.0, 110.0, math.inf), RejectReason.NON_FINITE),
        (rep(math.nan, 110.0, 0.0), RejectReason.NON_FINITE),
        (GpsReport("ev", 11.0, 110.0, 0.0, math.nan), RejectReason.NON_FINITE),
        (GpsReport("ev", 11.0, "110", None, 12.0), RejectReason.NON_FINITE),  # type: ignore[arg-type]
        (rep(10.0, 110.0, 0.0), RejectReason.DUPLICATE_TIME),
        (rep(9.5, 110.0, 0.0), RejectReason.TIME_BACKWARDS),
        (rep(11.0, 110.0, 500.0), RejectReason.OFF_ROUTE),
        (rep(11.0, 1e6, 1e6), RejectReason.OFF_ROUTE),
        (rep(11.0, 300.0, 0.0), RejectReason.SPEED_JUMP),  # 200 m in 1 s
        (rep(11.0, 70.0, 0.0), RejectReason.BACKWARDS_ON_ROUTE),  # 30 m behind
    ],
)
def test_tracker_rejects_with_reason(report: GpsReport, reason: RejectReason) -> None:
    tracker = _tracker_at(100.0, 10.0)
    event = tracker.update(report)
    assert not event.accepted
    assert event.reason is reason
    assert event.s_m == tracker.s_m == 100.0  # the track is unchanged
    assert (tracker.last_fix_s, tracker.last_received_s) == (10.0, 11.0)
    assert tracker.speed_mps == pytest.approx(10.0)
    assert tracker.n_rejected == 1


def test_tracker_rejections_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    tracker = _tracker_at()
    with caplog.at_level("INFO", logger="twin.center.tracking"):
        tracker.update(rep(11.0, math.nan, 0.0))
    assert "non_finite" in caplog.text


def test_tracker_jump_allows_for_a_longer_gap() -> None:
    tracker = _tracker_at(100.0, 10.0)
    assert tracker.update(rep(15.0, 300.0, 0.0)).accepted  # 200 m in 5 s = 40 m/s


def test_tracker_jump_ignores_gps_noise() -> None:
    tracker = _tracker_at(100.0, 10.0)
    assert tracker.update(rep(11.0, 170.0, 0.0)).accepted  # 70 m in 1 s, 30 m of noise


def test_tracker_clamps_small_backward_moves() -> None:
    tracker = _tracker_at(100.0, 10.0)
    event = tracker.update(rep(11.0, 90.0, 3.0))  # 10 m behind: noise
    assert event.accepted and event.clamped
    assert event.match is not None and event.match.s_m == pytest.approx(90.0)
    assert tracker.s_m == 100.0
    assert tracker.last_fix_s == 11.0
    assert tracker.update(rep(12.0, 120.0, 0.0)).accepted


def test_tracker_first_fix_off_route_then_on() -> None:
    tracker = GpsTracker(RouteMatcher(l_route()))
    assert tracker.update(rep(0.0, 500.0, 500.0)).reason is RejectReason.OFF_ROUTE
    assert tracker.s_m is None and tracker.is_stale(0.0)
    assert tracker.update(rep(1.0, 20.0, 4.0)).accepted
    assert tracker.s_m == pytest.approx(20.0)


def test_tracker_stays_on_the_way_out_of_a_hairpin() -> None:
    tracker = GpsTracker(RouteMatcher(hairpin_route()))
    # first fix is clearly on the way out; then the phone drifts 12 m north, nearer the
    # way back (8 m); the window keeps the match on the way out
    assert tracker.update(rep(0.0, 0.0, 0.0)).accepted
    for t in range(1, 30):
        event = tracker.update(rep(float(t), 10.0 * t, 12.0))
        assert event.accepted
        assert event.match is not None and event.match.edge_id == "out"
    assert tracker.s_m == pytest.approx(290.0)


def test_tracker_rejects_other_vehicles_when_told_its_own() -> None:
    tracker = GpsTracker(RouteMatcher(l_route()), vehicle_id="ev")
    other = GpsReport("bus", 0.0, 10.0, 0.0, 1.0)
    assert tracker.update(other).reason is RejectReason.WRONG_VEHICLE
    assert tracker.update(rep(0.0, 10.0, 0.0)).accepted


def test_tracker_staleness() -> None:
    tracker = GpsTracker(RouteMatcher(straight_route()), stale_after_s=3.0)
    assert tracker.is_stale(0.0)  # nothing received yet
    tracker.update(rep(9.0, 0.0, 0.0))  # received at 10 s
    assert not tracker.is_stale(10.0)
    assert not tracker.is_stale(12.9)
    assert tracker.is_stale(13.0)
    # a rejected report does not keep the track alive
    tracker.update(GpsReport("ev", 11.0, math.nan, 0.0, 12.0))
    assert tracker.is_stale(13.0)
    tracker.update(rep(12.0, 30.0, 0.0))  # received at 13 s
    assert not tracker.is_stale(15.5)
    assert tracker.is_stale(16.0)


def test_tracker_position_advances_with_fix_age() -> None:
    tracker = GpsTracker(RouteMatcher(straight_route(1000.0)))
    assert tracker.position_s_m(0.0) is None
    tracker.update(rep(0.0, 100.0, 0.0))
    assert tracker.position_s_m(5.0) == pytest.approx(100.0)  # no speed yet
    tracker.update(rep(1.0, 110.0, 0.0))
    assert tracker.position_s_m(1.0) == pytest.approx(110.0)
    assert tracker.position_s_m(3.0) == pytest.approx(130.0)
    assert tracker.position_s_m(0.5) == pytest.approx(110.0)  # never before the fix
    assert tracker.position_s_m(500.0) == pytest.approx(1000.0)  # not past the route's end


def test_tracker_rejects_bad_parameters() -> None:
    m = RouteMatcher(l_route())
    with pytest.raises(ValueError, match="speed_window_s"):
        GpsTracker(m, speed_window_s=0.0)
    with pytest.raises(ValueError, match="max_speed_mps"):
        GpsTracker(m, max_speed_mps=math.nan)


# --------------------------------------------------------------------------- ETA


def _moving_at_10(fix_s: float = 1.0) -> GpsTracker:
    """Fixes at s = 0 (t = 0) and s = 10 m (t = 1 s): 10 m/s at s = 10 m."""
    tracker = GpsTracker(RouteMatcher(straight_route(2000.0)))
    tracker.update(rep(fix_s - 1.0, 0.0, 0.0))
    tracker.update(rep(fix_s, 10.0, 0.0))
    return tracker


def test_eta_gps_speed_alone() -> None:
    tracker = _moving_at_10()
    assert tracker.eta_s(510.0, now_s=1.0, link_speed_mps=None) == pytest.approx(50.0)


def test_eta_blends_with_link_speed() -> None:
    tracker = _moving_at_10()
    assert tracker.eta_s(510.0, now_s=1.0, link_speed_mps=20.0) == pytest.approx(500.0 / 15.0)
    assert tracker.eta_s(510.0, now_s=1.0, link_speed_mps=20.0, blend=1.0) == pytest.approx(50.0)
    assert tracker.eta_s(510.0, now_s=1.0, link_speed_mps=20.0, blend=0.0) == pytest.approx(25.0)
    assert tracker.eta_s(510.0, now_s=1.0, link_speed_mps=math.nan) == pytest.approx(50.0)


def test_eta_advances_the_position_by_the_fix_age() -> None:
    tracker = _moving_at_10()
    # the fix is 2 s old: the EV is now about 20 m further, 480 m from the target
    assert tracker.eta_s(510.0, now_s=3.0, link_speed_mps=None) == pytest.approx(48.0)
    # blended 15 m/s: 30 m further, 470 m left
    assert tracker.eta_s(510.0, now_s=3.0, link_speed_mps=20.0) == pytest.approx(470.0 / 15.0)


def test_eta_edge_cases() -> None:
    tracker = GpsTracker(RouteMatcher(straight_route()))
    assert tracker.eta_s(500.0, now_s=0.0, link_speed_mps=10.0) == math.inf  # no position
    tracker.update(rep(0.0, 0.0, 0.0))
    assert tracker.eta_s(500.0, now_s=0.0, link_speed_mps=None) == math.inf  # no speed
    assert tracker.eta_s(500.0, now_s=0.0, link_speed_mps=10.0) == pytest.approx(50.0)
    assert tracker.eta_s(500.0, now_s=0.0, link_speed_mps=0.0) == pytest.approx(250.0)  # floor
    tracker.update(rep(1.0, 0.0, 0.0))  # standing still
    assert tracker.speed_mps == 0.0
    assert tracker.eta_s(100.0, now_s=1.0, link_speed_mps=None) == pytest.approx(50.0)  # 2 m/s
    assert tracker.eta_s(-5.0, now_s=1.0, link_speed_mps=None) == 0.0  # already passed
    with pytest.raises(ValueError, match="blend"):
        tracker.eta_s(100.0, now_s=1.0, link_speed_mps=None, blend=1.5)
    with pytest.raises(ValueError, match="link_speed_mps"):
        tracker.eta_s(100.0, now_s=1.0, link_speed_mps=-1.0)


def test_eta_to_a_stop_line() -> None:
    m = RouteMatcher(l_route())
    tracker = GpsTracker(m)
    tracker.update(rep(0.0, 0.0, 0.0))
    tracker.update(rep(1.0, 10.0, 0.0))
    eta = tracker.eta_s(m.stop_line_s_m(0), now_s=1.0, link_speed_mps=None)
    assert eta == pytest.approx(19.0)


# ---------------------------------------------------------------------- property

_garbage_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-100.0, 600.0),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
)
_near_route = st.tuples(st.floats(-60.0, 560.0), st.floats(-60.0, 80.0))


@st.composite
def _report(draw: st.DrawFn) -> GpsReport:
    if draw(st.booleans()):
        x, y = draw(_near_route)
    else:
        x, y = draw(_garbage_float), draw(_garbage_float)
    t = draw(st.one_of(st.floats(0.0, 200.0), _garbage_float))
    received = draw(st.one_of(st.just(t + 1.0), _garbage_float))
    vehicle = draw(st.sampled_from(["ev", "other", ""]))
    return GpsReport(vehicle, t, x, y, received)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_report(), max_size=60), st.sampled_from(["l", "hairpin"]))
def test_tracker_never_raises_and_never_moves_back(reports: list[GpsReport], route: str) -> None:
    edges = l_route() if route == "l" else hairpin_route()
    tracker = GpsTracker(RouteMatcher(edges))
    previous = None
    for report in reports:
        event = tracker.update(report)
        assert event.accepted == (event.reason is None)
        if tracker.s_m is not None:
            assert math.isfinite(tracker.s_m)
            if previous is not None:
                assert tracker.s_m >= previous - 15.0
            previous = tracker.s_m
        tracker.is_stale(report.t_s if isinstance(report.t_s, float) else 0.0)
        eta = tracker.eta_s(300.0, now_s=100.0, link_speed_mps=10.0)
        assert eta >= 0.0
    assert tracker.n_accepted + tracker.n_rejected == len(reports)


# ------------------------------------------------------------------ the one speed formula


@pytest.mark.parametrize(
    ("gps", "link", "expected"),
    [
        (10.0, 20.0, 15.0),  # both: the blend
        (10.0, None, 10.0),  # GPS alone
        (None, 20.0, 20.0),  # link alone
        (0.0, 20.0, 20.0),  # standing at a red light: it moves on at the street's speed
        (-0.5, 20.0, 20.0),  # fixes a little backwards (noise): same
        (0.0, None, MIN_SPEED_MPS),  # standing, nothing else known: the floor
        (1.0, 1.0, MIN_SPEED_MPS),  # the floor
        (math.nan, 12.0, 12.0),
        (None, None, None),
    ],
)
def test_ev_speed_is_one_formula(gps: float | None, link: float | None,
                                 expected: float | None) -> None:  # fmt: skip
    assert ev_speed_mps(gps, link) == (pytest.approx(expected) if expected is not None else None)


def test_tracker_and_planner_use_the_one_formula() -> None:
    """The tracker's ETA speed is ev_speed_mps of its GPS speed (a stopped EV with a
    known link speed is expected to move on at the link speed, not at half of it)."""
    m = RouteMatcher([Edge("a", ((0.0, 0.0), (1000.0, 0.0)), 1000.0)])
    tracker = GpsTracker(m)
    for t in (0.0, 1.0, 2.0):
        tracker.update(GpsReport("ev", t, 100.0, 0.0, t))  # standing still
    assert tracker.speed_mps == pytest.approx(0.0)
    assert tracker.blended_speed_mps(link_speed_mps=10.0) == pytest.approx(10.0)
    assert tracker.eta_s(600.0, now_s=2.0, link_speed_mps=10.0) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="blend"):
        ev_speed_mps(1.0, 1.0, blend=2.0)
