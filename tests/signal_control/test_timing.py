"""Tests of signal-timing estimation (signal_control.timing) against its plain twin."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_control._reference.timing import (
    estimate_timings_reference,
    max_pressure_reference,
    smooth_timings_reference,
)
from signal_control.timing import (
    PhaseMovements,
    TimingEstimate,
    TimingFlag,
    TimingNetwork,
    TimingParams,
    TimingWorkspace,
    estimate_timings,
    max_pressure,
    smooth_timings,
)

TOL = {"rtol": 1e-9, "atol": 1e-9}
BOUNDS_FLAGS = TimingFlag.MIN_GREENS_EXCEED_C_MAX | TimingFlag.MAX_GREENS_BELOW_C_MIN


# --------------------------------------------------------------------------- builders


def _csr(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def random_network(
    rng: np.random.Generator,
    n: int,
    *,
    phases: tuple[int, int] = (2, 4),
    lanes: tuple[int, int] = (0, 4),
    shared_share: float = 0.1,
    max_green_share: float = 0.5,
) -> TimingNetwork:
    """A random city: ``phases`` and ``lanes`` are inclusive ranges per group."""
    n_phases = rng.integers(phases[0], phases[1] + 1, size=n)
    n_p = int(n_phases.sum())
    lanes_per_phase = rng.integers(lanes[0], lanes[1] + 1, size=n_p)
    n_entries = int(lanes_per_phase.sum())
    phase_lanes = np.arange(n_entries, dtype=np.int64)
    # some entries reuse an earlier lane (a lane served by several phases)
    shared = rng.random(n_entries) < shared_share
    phase_lanes[shared] = rng.integers(0, max(n_entries, 1), size=int(shared.sum()))
    n_lanes = n_entries + 2  # two lanes served by no phase
    lost_s = rng.uniform(2.0, 6.0, size=n_p)
    intergreen_s = rng.uniform(3.0, 6.0, size=n_p)
    min_green_s = rng.uniform(5.0, 15.0, size=n_p)
    max_green_s = np.where(
        rng.random(n_p) < max_green_share,
        min_green_s + rng.uniform(0.0, 60.0, size=n_p),
        np.inf,
    )
    return TimingNetwork.create(
        phase_ptr=_csr(n_phases),
        phase_lane_ptr=_csr(lanes_per_phase),
        phase_lanes=phase_lanes,
        sat_flow_vph=rng.uniform(1500.0, 1900.0, size=n_lanes),
        lost_s=lost_s,
        intergreen_s=intergreen_s,
        min_green_s=min_green_s,
        max_green_s=max_green_s,
    )


def random_counts(
    rng: np.random.Generator,
    net: TimingNetwork,
    window_s: float,
    *,
    max_flow_vph: float = 600.0,
    nan_share: float = 0.1,
    zero_share: float = 0.1,
) -> np.ndarray:
    flow_vph = rng.uniform(0.0, max_flow_vph, size=net.n_lanes)
    counts = np.round(flow_vph * window_s / 3600.0)
    counts[rng.random(net.n_lanes) < zero_share] = 0.0
    counts[rng.random(net.n_lanes) < nan_share] = np.nan
    return counts


def assert_same_estimate(got: TimingEstimate, want: TimingEstimate) -> None:
    """Bit for bit (NaN where NaN), field by field, dtypes included."""
    for name, a, b in zip(got._fields, got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name, strict=True)


def check_estimate(net: TimingNetwork, counts: Any, params: TimingParams) -> TimingEstimate:
    """Kernel == reference, plus the invariants every estimate must satisfy; a reused
    workspace gives the same bits as new arrays."""
    out = estimate_timings(net, counts, params)
    ref = estimate_timings_reference(net, counts, params)
    ws = TimingWorkspace(net)
    estimate_timings(net, np.zeros(net.n_lanes), params, out=ws)  # something to overwrite
    assert_same_estimate(estimate_timings(net, counts, params, out=ws), out)
    n, n_p = net.n_intersections, net.n_phases
    shapes = (n, n_p, n_p, n, n_p, n)
    for name, got, want, shape in zip(out._fields, out, ref, shapes, strict=True):
        assert got.shape == (shape,), name
        assert got.dtype == (np.int64 if name == "flags" else np.float64), name
        if name == "flags":
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, **TOL, err_msg=name)
    check_invariants(net, out, params)
    return out


def check_invariants(net: TimingNetwork, out: TimingEstimate, params: TimingParams) -> None:
    ptr = net.phase_ptr
    green = out.green_s
    assert np.all(green >= net.min_green_s - 1e-9)
    assert np.all(green <= net.max_green_s + 1e-9)
    unobserved = np.isnan(out.flow_ratio)
    np.testing.assert_array_equal(green[unobserved], net.min_green_s[unobserved])
    np.testing.assert_array_equal(np.isnan(out.degree_of_saturation), unobserved)
    for i in range(net.n_intersections):
        a, b = ptr[i], ptr[i + 1]
        cycle, flag = out.cycle_s[i], int(out.flags[i])
        if a == b:
            assert math.isnan(cycle) and flag == 0 and math.isnan(out.flow_ratio_sum[i])
            continue
        spans = green[a:b] + net.intergreen_s[a:b]
        assert cycle == pytest.approx(spans.sum(), rel=1e-12, abs=1e-9)
        if not flag & BOUNDS_FLAGS:
            assert params.c_min_s - 1e-9 <= cycle <= params.c_max_s + 1e-9
        floor_s = (net.min_green_s[a:b] + net.intergreen_s[a:b]).sum()
        assert bool(flag & TimingFlag.MIN_GREENS_EXCEED_C_MAX) == (floor_s > params.c_max_s)
        if flag & TimingFlag.MIN_GREENS_EXCEED_C_MAX:
            assert cycle == pytest.approx(floor_s)
        assert bool(flag & TimingFlag.UNOBSERVED_PHASE) == bool(unobserved[a:b].any())
        big_y = out.flow_ratio_sum[i]
        if unobserved[a:b].all():
            assert math.isnan(big_y) and not flag & TimingFlag.OVERSATURATED
        else:
            assert big_y == pytest.approx(np.nansum(out.flow_ratio[a:b]), rel=1e-12)
            assert bool(flag & TimingFlag.OVERSATURATED) == (big_y >= params.y_max)


def two_phase(
    counts_y: tuple[float, float], *, lost_s: float = 5.0, min_green_s: float = 1.0
) -> tuple[TimingNetwork, np.ndarray, TimingParams]:
    """One intersection, two phases of one lane each, sat flow 1800, one-hour window."""
    net = TimingNetwork.create(
        phase_ptr=[0, 2],
        phase_lane_ptr=[0, 1, 2],
        phase_lanes=[0, 1],
        sat_flow_vph=[1800.0, 1800.0],
        lost_s=[lost_s, lost_s],
        intergreen_s=[lost_s, lost_s],  # displayed green == effective green
        min_green_s=[min_green_s, min_green_s],
    )
    counts = np.array([counts_y[0] * 1800.0, counts_y[1] * 1800.0])
    return net, counts, TimingParams(window_s=3600.0, c_min_s=30.0, c_max_s=180.0)


# --------------------------------------------------------------------------- kernel vs reference


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("n", "max_flow_vph", "nan_share", "zero_share"),
    [
        (1, 500.0, 0.0, 0.0),
        (60, 400.0, 0.05, 0.05),  # ordinary city
        (60, 1400.0, 0.05, 0.0),  # heavy: oversaturation, cycles at c_max
        (60, 600.0, 0.6, 0.1),  # many lanes without data: unobserved phases
        (60, 600.0, 0.0, 0.9),  # mostly zero flows: Y == 0
        (300, 700.0, 0.1, 0.1),
    ],
    ids=["one", "city", "heavy", "nan", "zero", "large"],
)
def test_estimate_matches_reference_on_random_networks(
    seed: int, n: int, max_flow_vph: float, nan_share: float, zero_share: float
) -> None:
    rng = np.random.default_rng(seed)
    net = random_network(rng, n)
    params = TimingParams(window_s=900.0, c_min_s=40.0, c_max_s=150.0, y_max=0.95)
    counts = random_counts(
        rng, net, 900.0, max_flow_vph=max_flow_vph, nan_share=nan_share, zero_share=zero_share
    )
    check_estimate(net, counts, params)


@pytest.mark.parametrize("seed", range(4))
def test_estimate_beyond_the_padded_width(seed: int) -> None:
    """Intersections with up to 7 phases, phases with up to 8 lanes, empty intersections."""
    rng = np.random.default_rng(100 + seed)
    net = random_network(rng, 80, phases=(0, 7), lanes=(0, 8), shared_share=0.3)
    counts = random_counts(rng, net, 300.0, max_flow_vph=900.0)
    check_estimate(net, counts, TimingParams(window_s=300.0, c_min_s=30.0, c_max_s=200.0))


@pytest.mark.parametrize("seed", range(4))
def test_estimate_with_tight_bounds_exercises_every_flag(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    net = random_network(rng, 200, phases=(1, 6), lanes=(0, 5), max_green_share=0.9)
    counts = random_counts(rng, net, 600.0, max_flow_vph=1200.0, nan_share=0.3)
    # c_max below many minimum cycles, c_min above many maximum cycles
    out = check_estimate(net, counts, TimingParams(window_s=600.0, c_min_s=70.0, c_max_s=75.0))
    seen = np.bitwise_or.reduce(out.flags)
    assert seen == int(TimingFlag(15)), seen


# --------------------------------------------------------------------------- analytical checks


def test_webster_textbook_example() -> None:
    """y = 0.25 and 0.35, L = 10 s: C0 = (1.5*10 + 5) / (1 - 0.6) = 50 s."""
    net, counts, params = two_phase((0.25, 0.35))
    out = check_estimate(net, counts, params)
    np.testing.assert_allclose(out.flow_ratio, [0.25, 0.35], rtol=1e-12)
    np.testing.assert_allclose(out.flow_ratio_sum, [0.6], rtol=1e-12)
    np.testing.assert_allclose(out.cycle_s, [50.0], rtol=1e-12)
    np.testing.assert_allclose(out.green_s, [40 * 0.25 / 0.6, 40 * 0.35 / 0.6], rtol=1e-12)
    np.testing.assert_allclose(out.green_s, [16.666666666666668, 23.333333333333332])
    # x = y C / g is the same for every phase under Webster's split: Y C / (C - L)
    np.testing.assert_allclose(out.degree_of_saturation, [0.75, 0.75], rtol=1e-12)
    assert out.flags.tolist() == [0]


def test_webster_with_lost_time_and_intergreen() -> None:
    """HCM: displayed green = effective green + lost time - intergreen."""
    net = TimingNetwork.create(
        phase_ptr=[0, 2],
        phase_lane_ptr=[0, 1, 2],
        phase_lanes=[0, 1],
        sat_flow_vph=[1800.0, 1800.0],
        lost_s=[4.0, 4.0],
        intergreen_s=[5.0, 5.0],
        min_green_s=[5.0, 5.0],
    )
    out = check_estimate(net, [0.3 * 1800, 0.2 * 1800], TimingParams(window_s=3600.0))
    c0 = (1.5 * 8 + 5) / (1 - 0.5)  # 34 s, below c_min: 40 s
    assert c0 < 40.0
    effective = np.array([(40 - 8) * 0.3 / 0.5, (40 - 8) * 0.2 / 0.5])
    np.testing.assert_allclose(out.green_s, effective + 4.0 - 5.0, rtol=1e-12)
    np.testing.assert_allclose(out.cycle_s, [40.0], rtol=1e-12)


def test_clamped_to_c_max_without_oversaturation() -> None:
    net, counts, _ = two_phase((0.4, 0.5), lost_s=8.0)  # C0 = (1.5*16 + 5) / 0.1 = 290 s
    params = TimingParams(window_s=3600.0, c_min_s=30.0, c_max_s=120.0)
    out = check_estimate(net, counts, params)
    np.testing.assert_allclose(out.cycle_s, [120.0])
    assert out.flags.tolist() == [0]


def test_zero_flow_gives_c_min_split_equally() -> None:
    net, counts, params = two_phase((0.0, 0.0))
    out = check_estimate(net, counts, params)
    np.testing.assert_allclose(out.cycle_s, [params.c_min_s])
    np.testing.assert_allclose(out.green_s, [(30.0 - 10.0) / 2] * 2)
    np.testing.assert_allclose(out.flow_ratio_sum, [0.0])
    np.testing.assert_allclose(out.degree_of_saturation, [0.0, 0.0])
    assert out.flags.tolist() == [0]


@pytest.mark.parametrize("ys", [(0.5, 0.5), (0.6, 0.7), (1.5, 0.2)])
def test_oversaturated_uses_c_max_and_flags(ys: tuple[float, float]) -> None:
    net, counts, params = two_phase(ys)
    out = check_estimate(net, counts, params)
    np.testing.assert_allclose(out.cycle_s, [params.c_max_s])
    assert out.flags.tolist() == [int(TimingFlag.OVERSATURATED)]
    # split still in proportion to y
    assert out.green_s[0] / out.green_s[1] == pytest.approx(ys[0] / ys[1])
    assert np.all(out.degree_of_saturation > 0.9)


def test_y_max_threshold_is_inclusive() -> None:
    # sat flows and a window that are powers of two: every y is exact in binary
    net = TimingNetwork.create(
        phase_ptr=[0, 2],
        phase_lane_ptr=[0, 1, 2],
        phase_lanes=[0, 1],
        sat_flow_vph=[2048.0, 2048.0],
        lost_s=[5.0, 5.0],
        intergreen_s=[5.0, 5.0],
        min_green_s=[1.0, 1.0],
    )
    params = TimingParams(window_s=3600.0, c_min_s=30.0, c_max_s=180.0, y_max=0.5)
    out = check_estimate(net, [512.0, 512.0], params)
    assert out.flow_ratio_sum.tolist() == [0.5]
    assert out.flags.tolist() == [int(TimingFlag.OVERSATURATED)]
    out = check_estimate(net, [512.0, 511.0], params)
    assert out.flags.tolist() == [0]


def test_phase_without_detector_gets_exactly_min_green() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0, 3],
        phase_lane_ptr=[0, 1, 1, 3],  # phase 1 serves no lane
        phase_lanes=[0, 1, 2],
        sat_flow_vph=[1800.0] * 3,
        lost_s=[5.0] * 3,
        intergreen_s=[5.0] * 3,
        min_green_s=[1.0, 12.0, 1.0],
    )
    out = check_estimate(net, [450.0, 630.0, np.nan], TimingParams(window_s=3600.0))
    assert math.isnan(out.flow_ratio[1]) and math.isnan(out.degree_of_saturation[1])
    assert out.green_s[1] == 12.0
    assert out.flags.tolist() == [int(TimingFlag.UNOBSERVED_PHASE)]
    # Webster over the observed phases (L counts all three): C0 = (1.5*15 + 5) / (1 - 0.6)
    # = 68.75 s; their effective greens share C0 - L; the unobserved min green is added
    c0 = (1.5 * 15 + 5) / (1 - 0.6)
    np.testing.assert_allclose(
        out.green_s[[0, 2]], [(c0 - 15) * 0.25 / 0.6, (c0 - 15) * 0.35 / 0.6]
    )
    np.testing.assert_allclose(out.cycle_s, [c0 - 5 + 12 + 5])


def test_all_counts_nan() -> None:
    net, _, params = two_phase((0.1, 0.1), min_green_s=12.0)
    out = check_estimate(net, [np.nan, np.nan], params)
    np.testing.assert_array_equal(out.green_s, [12.0, 12.0])
    np.testing.assert_allclose(out.cycle_s, [34.0])
    assert math.isnan(out.flow_ratio_sum[0])
    assert out.flags.tolist() == [int(TimingFlag.UNOBSERVED_PHASE)]


def test_all_counts_nan_below_c_min_is_flagged() -> None:
    net, _, params = two_phase((0.1, 0.1), min_green_s=5.0)
    out = check_estimate(net, [np.nan, np.nan], params)
    np.testing.assert_allclose(out.cycle_s, [20.0])  # below c_min = 30: nothing may grow
    assert out.flags.tolist() == [
        int(TimingFlag.UNOBSERVED_PHASE | TimingFlag.MAX_GREENS_BELOW_C_MIN)
    ]


def test_nan_lane_is_ignored_within_a_phase() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0, 2],
        phase_lane_ptr=[0, 2, 4],
        phase_lanes=[0, 1, 2, 3],
        sat_flow_vph=[1800.0] * 4,
        lost_s=[5.0, 5.0],
        intergreen_s=[5.0, 5.0],
        min_green_s=[1.0, 1.0],
    )
    out = check_estimate(net, [450.0, np.nan, np.nan, 630.0], TimingParams(window_s=3600.0))
    np.testing.assert_allclose(out.flow_ratio, [0.25, 0.35])
    np.testing.assert_allclose(out.cycle_s, [50.0])


def test_critical_lane_is_the_highest_ratio_not_the_highest_flow() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0, 1],
        phase_lane_ptr=[0, 2],
        phase_lanes=[0, 1],
        sat_flow_vph=[1900.0, 1000.0],  # a shared lane with a low saturation flow
        lost_s=[4.0],
        intergreen_s=[4.0],
        min_green_s=[7.0],
    )
    out = check_estimate(net, [600.0, 400.0], TimingParams(window_s=3600.0))
    np.testing.assert_allclose(out.flow_ratio, [0.4])


def test_min_green_raises_the_cycle() -> None:
    net, counts, params = two_phase((0.05, 0.55), min_green_s=15.0)
    out = check_estimate(net, counts, params)
    c0 = (1.5 * 10 + 5) / (1 - 0.6)  # 50 s; phase 0 would get 3.3 s
    assert out.green_s[0] == 15.0
    np.testing.assert_allclose(out.green_s[1], (c0 - 10) * 0.55 / 0.6)
    np.testing.assert_allclose(out.cycle_s, [15.0 + out.green_s[1] + 10.0])
    assert out.cycle_s[0] > c0 and out.flags.tolist() == [0]


def test_min_green_at_c_max_takes_time_from_the_others() -> None:
    net, counts, _ = two_phase((0.02, 0.90), min_green_s=20.0)
    params = TimingParams(window_s=3600.0, c_min_s=30.0, c_max_s=100.0, y_max=0.95)
    out = check_estimate(net, counts, params)
    np.testing.assert_allclose(out.cycle_s, [100.0])
    np.testing.assert_allclose(out.green_s, [20.0, 100.0 - 10.0 - 20.0])


def test_minimums_above_c_max_are_flagged() -> None:
    net, counts, _ = two_phase((0.3, 0.3), min_green_s=50.0)
    params = TimingParams(window_s=3600.0, c_min_s=30.0, c_max_s=100.0)
    out = check_estimate(net, counts, params)
    np.testing.assert_allclose(out.cycle_s, [110.0])
    np.testing.assert_array_equal(out.green_s, [50.0, 50.0])
    assert out.flags.tolist() == [int(TimingFlag.MIN_GREENS_EXCEED_C_MAX)]


def test_max_green_caps_and_shortens_the_cycle() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0, 2],
        phase_lane_ptr=[0, 1, 2],
        phase_lanes=[0, 1],
        sat_flow_vph=[1800.0, 1800.0],
        lost_s=[5.0, 5.0],
        intergreen_s=[5.0, 5.0],
        min_green_s=[5.0, 5.0],
        max_green_s=[30.0, np.inf],
    )
    params = TimingParams(window_s=3600.0, c_min_s=30.0, c_max_s=120.0)
    out = check_estimate(net, [0.6 * 1800, 0.3 * 1800], params)  # C0 = 20 / 0.1 = 200 -> 120
    np.testing.assert_allclose(out.green_s, [30.0, 110 * 0.3 / 0.9])
    np.testing.assert_allclose(out.cycle_s, [30.0 + 110 * 0.3 / 0.9 + 10.0])


def test_max_greens_below_c_min_fill_up_or_flag() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0, 2, 4],
        phase_lane_ptr=[0, 1, 2, 3, 4],
        phase_lanes=[0, 1, 2, 3],
        sat_flow_vph=[1800.0] * 4,
        lost_s=[2.0] * 4,
        intergreen_s=[2.0] * 4,
        min_green_s=[5.0] * 4,
        max_green_s=[6.0, 60.0, 6.0, 8.0],
    )
    params = TimingParams(window_s=3600.0, c_min_s=40.0, c_max_s=120.0)
    out = check_estimate(net, [0.3 * 1800, 0.1 * 1800, 0.3 * 1800, 0.1 * 1800], params)
    # intersection 0: phase 0 capped at 6 s, phase 1 fills the cycle up to c_min
    np.testing.assert_allclose(out.green_s[:2], [6.0, 40.0 - 4.0 - 6.0])
    np.testing.assert_allclose(out.cycle_s[0], 40.0)
    # intersection 1: both at their max, 18 s < c_min
    np.testing.assert_allclose(out.green_s[2:], [6.0, 8.0])
    assert out.flags.tolist() == [0, int(TimingFlag.MAX_GREENS_BELOW_C_MIN)]


def test_counts_scale_with_the_window() -> None:
    net, counts, _ = two_phase((0.25, 0.35))
    quarter = TimingParams(window_s=900.0, c_min_s=30.0, c_max_s=180.0)
    out = check_estimate(net, counts / 4.0, quarter)
    np.testing.assert_allclose(out.cycle_s, [50.0])


# --------------------------------------------------------------------------- edge cases


def test_one_intersection_and_an_empty_one() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0, 0, 2, 2],
        phase_lane_ptr=[0, 1, 2],
        phase_lanes=[0, 1],
        sat_flow_vph=[1800.0, 1800.0],
        lost_s=[5.0, 5.0],
        intergreen_s=[5.0, 5.0],
        min_green_s=[1.0, 1.0],
    )
    out = check_estimate(net, [450.0, 630.0], TimingParams(window_s=3600.0, c_min_s=30.0))
    assert math.isnan(out.cycle_s[0]) and math.isnan(out.cycle_s[2])
    np.testing.assert_allclose(out.cycle_s[1], 50.0)
    assert out.flags.tolist() == [0, 0, 0]


def test_zero_intersections() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0],
        phase_lane_ptr=[0],
        phase_lanes=[],
        sat_flow_vph=[],
        lost_s=[],
        intergreen_s=[],
        min_green_s=[],
    )
    out = check_estimate(net, [], TimingParams(window_s=900.0))
    assert all(a.shape == (0,) for a in out)
    plan = smooth_timings(net, [], [], [], [], alpha=0.5)
    assert plan.cycle_s.shape == plan.green_s.shape == (0,)
    pressure = max_pressure(
        net,
        PhaseMovements.create(
            mov_ptr=[0], mov_in_lane=[], mov_out_lane=[], mov_sat_flow_vph=[], n_lanes=0
        ),
        [],
    )
    assert pressure.pressure.shape == pressure.best_phase.shape == (0,)


def test_inputs_are_not_modified_and_network_is_read_only() -> None:
    rng = np.random.default_rng(3)
    net = random_network(rng, 20)
    counts = random_counts(rng, net, 900.0)
    before = counts.copy()
    estimate_timings(net, counts, TimingParams(window_s=900.0))
    np.testing.assert_array_equal(counts, before)
    with pytest.raises(ValueError, match="read-only"):
        net.lost_s[0] = 1.0
    raw = np.array([5.0, 5.0])
    _, counts2, params = two_phase((0.25, 0.35))
    net3 = TimingNetwork.create(
        phase_ptr=[0, 2],
        phase_lane_ptr=[0, 1, 2],
        phase_lanes=[0, 1],
        sat_flow_vph=[1800.0, 1800.0],
        lost_s=raw,
        intergreen_s=raw,
        min_green_s=[1.0, 1.0],
    )
    raw[:] = 99.0  # the network holds its own copy
    np.testing.assert_allclose(estimate_timings(net3, counts2, params).cycle_s, [50.0])


def test_accepts_lists_ints_and_float32() -> None:
    net, counts, params = two_phase((0.25, 0.35))
    for c in ([450, 630], np.array([450, 630], dtype=np.int32), counts.astype(np.float32)):
        np.testing.assert_allclose(estimate_timings(net, c, params).cycle_s, [50.0])


def test_results_are_repeatable() -> None:
    rng = np.random.default_rng(9)
    net = random_network(rng, 40)
    counts = random_counts(rng, net, 900.0)
    params = TimingParams(window_s=900.0)
    first = estimate_timings(net, counts, params)
    second = estimate_timings(net, counts, params)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_results_without_workspace_are_the_callers() -> None:
    """Without ``out`` every call returns new, writable arrays: a later call (which shares
    only scratch with it) leaves an earlier result alone."""
    rng = np.random.default_rng(10)
    net = random_network(rng, 30)
    params = TimingParams(window_s=900.0)
    first = estimate_timings(net, random_counts(rng, net, 900.0), params)
    kept = TimingEstimate._make(a.copy() for a in first)
    counts = random_counts(rng, net, 900.0, max_flow_vph=1500.0)
    second = estimate_timings(net, counts, params)
    assert_same_estimate(first, kept)
    for a, b in zip(first, second, strict=True):
        assert a.flags.writeable and not np.shares_memory(a, b)
    first.green_s[:] = -1.0  # the caller's to change: nothing else moves
    assert_same_estimate(estimate_timings(net, counts, params), second)


# --------------------------------------------------------------------------- workspace


@pytest.mark.parametrize("seed", range(3))
def test_workspace_is_reused_in_place(seed: int) -> None:
    """One workspace, many calls: the same result object and arrays each time, rewritten
    with exactly what a call without ``out`` returns."""
    rng = np.random.default_rng(300 + seed)
    net = random_network(rng, 70, phases=(0, 7), lanes=(0, 8), shared_share=0.3)
    params = TimingParams(window_s=300.0, c_min_s=30.0, c_max_s=120.0)
    ws = TimingWorkspace(net)
    assert ws.network is net
    arrays = None
    for flow_vph in (100.0, 1500.0, 0.0, 600.0):
        counts = random_counts(rng, net, 300.0, max_flow_vph=flow_vph)
        got = estimate_timings(net, counts, params, out=ws)
        assert got is ws.result
        if arrays is None:
            arrays = [id(a) for a in got]
        assert [id(a) for a in got] == arrays
        assert_same_estimate(got, estimate_timings(net, counts, params))
        assert_same_estimate(got, check_estimate(net, counts, params))


def test_workspace_result_is_read_only() -> None:
    net, counts, params = two_phase((0.25, 0.35))
    out = estimate_timings(net, counts, params, out=TimingWorkspace(net))
    for name, arr in zip(out._fields, out, strict=True):
        assert not arr.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
    np.testing.assert_allclose(out.cycle_s, [50.0])


def test_workspace_of_another_network_is_refused() -> None:
    net, counts, params = two_phase((0.25, 0.35))
    twin, _, _ = two_phase((0.25, 0.35))  # equal arrays, another network
    with pytest.raises(ValueError, match="out must be a TimingWorkspace made for this network"):
        estimate_timings(net, counts, params, out=TimingWorkspace(twin))
    with pytest.raises(TypeError, match="TimingNetwork"):
        TimingWorkspace("net")  # type: ignore[arg-type]


def test_bad_counts_keep_the_workspace_result() -> None:
    net, counts, params = two_phase((0.25, 0.35))
    ws = TimingWorkspace(net)
    good = TimingEstimate._make(a.copy() for a in estimate_timings(net, counts, params, out=ws))
    with pytest.raises(ValueError, match=r"count_veh\[1\]=-1.0"):
        estimate_timings(net, [450.0, -1.0], params, out=ws)
    assert_same_estimate(ws.result, good)
    assert_same_estimate(estimate_timings(net, counts, params, out=ws), good)


def test_workspace_of_empty_networks() -> None:
    params = TimingParams(window_s=900.0)
    for ptr in ([0], [0, 0, 0]):
        net = TimingNetwork.create(
            phase_ptr=ptr,
            phase_lane_ptr=[0],
            phase_lanes=[],
            sat_flow_vph=[1800.0],
            lost_s=[],
            intergreen_s=[],
            min_green_s=[],
        )
        out = estimate_timings(net, [5.0], params, out=TimingWorkspace(net))
        assert_same_estimate(out, estimate_timings_reference(net, [5.0], params))


# --------------------------------------------------------------------------- validation


def _net_kwargs() -> dict[str, Any]:
    return {
        "phase_ptr": [0, 2],
        "phase_lane_ptr": [0, 1, 2],
        "phase_lanes": [0, 1],
        "sat_flow_vph": [1800.0, 1800.0],
        "lost_s": [4.0, 4.0],
        "intergreen_s": [4.0, 4.0],
        "min_green_s": [7.0, 7.0],
        "max_green_s": [60.0, 60.0],
    }


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("phase_ptr", [0, 1], "phase_ptr"),  # does not end at P
        ("phase_ptr", [1, 2], "phase_ptr"),  # does not start at 0
        ("phase_ptr", [], "phase_ptr"),
        ("phase_ptr", [0, 3, 2], "phase_ptr"),  # decreasing
        ("phase_ptr", [[0, 2]], "phase_ptr"),  # 2-D
        ("phase_ptr", [0.0, 1.5], "phase_ptr"),  # not whole
        ("phase_lane_ptr", [0, 2, 1], "phase_lane_ptr"),
        ("phase_lane_ptr", [0, 2], "phase_lane_ptr"),  # wrong length
        ("phase_lanes", [0, 2], "phase_lanes"),  # lane out of range
        ("phase_lanes", [0, -1], "phase_lanes"),
        ("sat_flow_vph", [1800.0, 0.0], "sat_flow_vph"),
        ("sat_flow_vph", [1800.0, np.nan], "sat_flow_vph"),
        ("sat_flow_vph", [1800.0, np.inf], "sat_flow_vph"),
        ("lost_s", [4.0], "lost_s"),  # phase_ptr no longer ends at len(lost_s)
        ("lost_s", [-1.0, 4.0], "lost_s"),
        ("lost_s", [4.0, 12.0], "lost_s"),  # lost time >= min green + intergreen
        ("intergreen_s", [4.0, np.nan], "intergreen_s"),
        ("min_green_s", [7.0, -1.0], "min_green_s"),
        ("min_green_s", [7.0], "min_green_s"),
        ("max_green_s", [60.0, 6.0], "max_green_s"),  # below min green
        ("max_green_s", [60.0, np.nan], "max_green_s"),
    ],
)
def test_bad_network_raises_value_error_naming_it(field: str, value: Any, match: str) -> None:
    kwargs = _net_kwargs()
    kwargs[field] = value
    with pytest.raises(ValueError, match=match):
        TimingNetwork.create(**kwargs)


def test_network_constructor_validates_too() -> None:
    kwargs = _net_kwargs()
    kwargs["phase_ptr"] = [0, 3]
    with pytest.raises(ValueError, match="phase_ptr"):
        TimingNetwork(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window_s": 0.0}, "window_s"),
        ({"window_s": -900.0}, "window_s"),
        ({"window_s": math.nan}, "window_s"),
        ({"window_s": 900.0, "c_min_s": 100.0, "c_max_s": 90.0}, "c_min_s"),
        ({"window_s": 900.0, "c_min_s": 0.0}, "c_min_s"),
        ({"window_s": 900.0, "c_max_s": math.inf}, "c_max_s"),
        ({"window_s": 900.0, "y_max": 0.0}, "y_max"),
        ({"window_s": 900.0, "y_max": 1.2}, "y_max"),
    ],
)
def test_bad_params_raise_value_error_naming_them(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TimingParams(**kwargs)


@pytest.mark.parametrize(
    "counts",
    [[450.0], [450.0, 630.0, 1.0], [[450.0, 630.0]], [450.0, -1.0], [np.inf, 1.0]],
    ids=["short", "long", "2d", "negative", "inf"],
)
def test_bad_counts_raise_value_error(counts: Any) -> None:
    net, _, params = two_phase((0.25, 0.35))
    with pytest.raises(ValueError, match="count_veh"):
        estimate_timings(net, counts, params)


# --------------------------------------------------------------------------- property tests


@st.composite
def networks(draw: st.DrawFn) -> tuple[TimingNetwork, np.ndarray, TimingParams]:
    n_lanes = draw(st.integers(1, 12))
    n = draw(st.integers(0, 5))
    phase_sizes, lane_lists = [], []
    lost, inter, gmin, gmax = [], [], [], []
    for _ in range(n):
        n_ph = draw(st.integers(0, 6))
        phase_sizes.append(n_ph)
        for _ in range(n_ph):
            lane_lists.append(draw(st.lists(st.integers(0, n_lanes - 1), max_size=6)))
            lost_s = draw(st.floats(0.0, 6.0))
            ig_s = draw(st.floats(0.0, 6.0))
            lo_s = draw(st.floats(max(0.0, lost_s - ig_s) + 0.5, 40.0))
            lost.append(lost_s)
            inter.append(ig_s)
            gmin.append(lo_s)
            gmax.append(draw(st.one_of(st.just(math.inf), st.floats(lo_s, lo_s + 80.0))))
    count = st.one_of(st.just(math.nan), st.just(0.0), st.floats(0.0, 3000.0))
    counts = np.array(draw(st.lists(count, min_size=n_lanes, max_size=n_lanes)))
    net = TimingNetwork.create(
        phase_ptr=_csr(np.array(phase_sizes, dtype=np.int64)),
        phase_lane_ptr=_csr(np.array([len(x) for x in lane_lists], dtype=np.int64)),
        phase_lanes=np.array([v for x in lane_lists for v in x], dtype=np.int64),
        sat_flow_vph=draw(st.lists(st.floats(600.0, 2000.0), min_size=n_lanes, max_size=n_lanes)),
        lost_s=lost,
        intergreen_s=inter,
        min_green_s=gmin,
        max_green_s=gmax,
    )
    c_min_s = draw(st.floats(10.0, 90.0))
    params = TimingParams(
        window_s=draw(st.floats(60.0, 3600.0)),
        c_min_s=c_min_s,
        c_max_s=draw(st.floats(c_min_s, 240.0)),
        y_max=draw(st.floats(0.5, 1.0)),
    )
    return net, counts, params


@given(case=networks())
def test_property_estimate_invariants_and_reference(
    case: tuple[TimingNetwork, np.ndarray, TimingParams],
) -> None:
    net, counts, params = case
    out = estimate_timings(net, counts, params)
    check_invariants(net, out, params)
    ref = estimate_timings_reference(net, counts, params)
    # the kernel's y is count * (1 / s) * (3600 / T), the reference's count * 3600 / T / s:
    # equal to a few ulps, so compare all but flags that sit exactly on a threshold
    np.testing.assert_allclose(out.flow_ratio, ref.flow_ratio, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out.green_s, ref.green_s, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(out.cycle_s, ref.cycle_s, rtol=1e-7, atol=1e-7)


@given(case=networks(), more=st.lists(st.floats(0.0, 3000.0), min_size=12, max_size=12))
def test_property_workspace_reused_gives_the_same_bits(
    case: tuple[TimingNetwork, np.ndarray, TimingParams], more: list[float]
) -> None:
    """A workspace used for two calls in a row gives each the bits of a fresh call."""
    net, counts, params = case
    other = np.array(more[: net.n_lanes])
    other[::3] = np.nan
    ws = TimingWorkspace(net)
    for c in (counts, other, counts):
        assert_same_estimate(
            estimate_timings(net, c, params, out=ws), estimate_timings(net, c, params)
        )


# --------------------------------------------------------------------------- smoothing


def check_smooth(net: TimingNetwork, *arrays: Any, **options: float) -> tuple[np.ndarray, ...]:
    out = smooth_timings(net, *arrays, **options)
    ref = smooth_timings_reference(net, *arrays, **options)
    np.testing.assert_allclose(out.cycle_s, ref.cycle_s, **TOL)
    np.testing.assert_allclose(out.green_s, ref.green_s, **TOL)
    ptr = net.phase_ptr
    for i in range(net.n_intersections):
        a, b = ptr[i], ptr[i + 1]
        if a == b or math.isnan(out.cycle_s[i]):
            continue
        assert np.all(out.green_s[a:b] >= net.min_green_s[a:b] - 1e-9)
        spans = (out.green_s[a:b] + net.intergreen_s[a:b]).sum()
        assert out.cycle_s[i] == pytest.approx(spans, rel=1e-12, abs=1e-9)
    return out


def _two_estimates(seed: int, n: int = 50) -> tuple[TimingNetwork, TimingEstimate, TimingEstimate]:
    rng = np.random.default_rng(seed)
    net = random_network(rng, n)
    params = TimingParams(window_s=900.0)
    before = estimate_timings(net, random_counts(rng, net, 900.0, nan_share=0.0), params)
    after = estimate_timings(net, random_counts(rng, net, 900.0, nan_share=0.0), params)
    return net, before, after


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("alpha", "max_step_s"), [(0.3, math.inf), (0.5, 5.0), (1.0, 2.0)])
def test_smooth_matches_reference(seed: int, alpha: float, max_step_s: float) -> None:
    net, old, new = _two_estimates(seed)
    out = check_smooth(
        net, old.cycle_s, old.green_s, new.cycle_s, new.green_s, alpha=alpha, max_step_s=max_step_s
    )
    gap = new.cycle_s - old.cycle_s
    step = np.clip(alpha * gap, -max_step_s, max_step_s)
    np.testing.assert_allclose(out.cycle_s, old.cycle_s + step, rtol=1e-9)


def test_smooth_alpha_one_reaches_the_target() -> None:
    net, old, new = _two_estimates(11)
    out = check_smooth(net, old.cycle_s, old.green_s, new.cycle_s, new.green_s, alpha=1.0)
    np.testing.assert_allclose(out.cycle_s, new.cycle_s, rtol=1e-12)
    np.testing.assert_allclose(out.green_s, new.green_s, rtol=1e-12)


def test_smooth_first_update_takes_the_target() -> None:
    net, _, new = _two_estimates(12)
    nan_c = np.full(net.n_intersections, np.nan)
    nan_g = np.full(net.n_phases, np.nan)
    out = check_smooth(net, nan_c, nan_g, new.cycle_s, new.green_s, alpha=0.2, max_step_s=1.0)
    np.testing.assert_allclose(out.cycle_s, new.cycle_s, rtol=1e-12)
    np.testing.assert_allclose(out.green_s, new.green_s, rtol=1e-12)


def test_smooth_nan_target_keeps_previous_and_both_nan_give_nan() -> None:
    net, old, new = _two_estimates(13, n=3)
    target_c = new.cycle_s.copy()
    target_c[0] = np.nan
    prev_c = old.cycle_s.copy()
    prev_c[1] = np.nan
    target_c[1] = np.nan
    out = check_smooth(net, prev_c, old.green_s, target_c, new.green_s, alpha=0.5)
    np.testing.assert_allclose(out.cycle_s[0], old.cycle_s[0], rtol=1e-12)
    a, b = net.phase_ptr[0], net.phase_ptr[1]
    np.testing.assert_allclose(out.green_s[a:b], old.green_s[a:b], rtol=1e-12)
    assert math.isnan(out.cycle_s[1])
    assert np.isnan(out.green_s[net.phase_ptr[1] : net.phase_ptr[2]]).all()


def test_smooth_converges_to_the_target() -> None:
    net, old, new = _two_estimates(14)
    cycle_s, green_s = old.cycle_s, old.green_s
    for _ in range(200):
        cycle_s, green_s = smooth_timings(
            net, cycle_s, green_s, new.cycle_s, new.green_s, alpha=0.3, max_step_s=4.0
        )
    np.testing.assert_allclose(cycle_s, new.cycle_s, rtol=1e-6)
    np.testing.assert_allclose(green_s, new.green_s, rtol=1e-6, atol=1e-6)


def test_smooth_min_green_wins() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0, 2],
        phase_lane_ptr=[0, 1, 2],
        phase_lanes=[0, 1],
        sat_flow_vph=[1800.0, 1800.0],
        lost_s=[4.0, 4.0],
        intergreen_s=[5.0, 5.0],
        min_green_s=[10.0, 10.0],
    )
    # previous timing below the minimums (e.g. from another controller): raised to them
    out = check_smooth(net, [30.0], [5.0, 15.0], [60.0], [25.0, 25.0], alpha=0.1, max_step_s=1.0)
    np.testing.assert_allclose(out.cycle_s, [31.0])
    assert out.green_s[0] == pytest.approx(10.0)
    assert out.green_s[1] == pytest.approx(11.0)
    # minimums that do not fit the smoothed cycle: the cycle grows past max_step_s
    out = check_smooth(net, [30.0], [10.0, 10.0], [20.0], [5.0, 5.0], alpha=1.0, max_step_s=1.0)
    np.testing.assert_allclose(out.cycle_s, [30.0])
    np.testing.assert_allclose(out.green_s, [10.0, 10.0])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"alpha": 0.5, "max_step_s": 0.0}, "max_step_s"),
        ({"alpha": 0.5, "max_step_s": math.nan}, "max_step_s"),
    ],
)
def test_smooth_bad_options(options: dict[str, float], match: str) -> None:
    net, _, _ = two_phase((0.2, 0.2))
    with pytest.raises(ValueError, match=match):
        smooth_timings(net, [50.0], [20.0, 20.0], [60.0], [25.0, 25.0], **options)


@pytest.mark.parametrize("which", range(4))
def test_smooth_bad_shapes(which: int) -> None:
    net, _, _ = two_phase((0.2, 0.2))
    arrays: list[Any] = [[50.0], [20.0, 20.0], [60.0], [25.0, 25.0]]
    arrays[which] = [*arrays[which], 1.0]
    name = ["prev_cycle_s", "prev_green_s", "target_cycle_s", "target_green_s"][which]
    with pytest.raises(ValueError, match=name):
        smooth_timings(net, *arrays, alpha=0.5)


finite_green = st.floats(0.0, 120.0)


@given(
    case=networks(),
    data=st.data(),
    alpha=st.floats(0.01, 1.0),
    max_step_s=st.one_of(st.just(math.inf), st.floats(0.1, 30.0)),
)
def test_property_smoothing_never_violates_min_greens(
    case: tuple[TimingNetwork, np.ndarray, TimingParams],
    data: st.DataObject,
    alpha: float,
    max_step_s: float,
) -> None:
    net, counts, params = case
    target = estimate_timings(net, counts, params)
    n, n_p = net.n_intersections, net.n_phases
    nan_or_cycle = st.one_of(st.just(math.nan), st.floats(0.0, 240.0))
    prev_c = np.array(data.draw(st.lists(nan_or_cycle, min_size=n, max_size=n)))
    prev_g = np.array(data.draw(st.lists(finite_green, min_size=n_p, max_size=n_p)))
    out = check_smooth(
        net, prev_c, prev_g, target.cycle_s, target.green_s, alpha=alpha, max_step_s=max_step_s
    )
    has_phases = np.diff(net.phase_ptr) > 0
    assert not np.isnan(out.cycle_s[has_phases]).any()


# --------------------------------------------------------------------------- max-pressure


def random_movements(
    rng: np.random.Generator, net: TimingNetwork, max_per_phase: int = 4
) -> PhaseMovements:
    sizes = rng.integers(0, max_per_phase + 1, size=net.n_phases)
    m = int(sizes.sum())
    out_lane = rng.integers(-1, net.n_lanes, size=m) if net.n_lanes else np.full(m, -1)
    return PhaseMovements.create(
        mov_ptr=_csr(sizes),
        mov_in_lane=rng.integers(0, max(net.n_lanes, 1), size=m),
        mov_out_lane=out_lane,
        mov_sat_flow_vph=rng.uniform(1500.0, 1900.0, size=m),
        n_lanes=net.n_lanes,
    )


def check_pressure(net: TimingNetwork, moves: PhaseMovements, queue: Any) -> Any:
    out = max_pressure(net, moves, queue)
    ref = max_pressure_reference(net, moves, queue)
    np.testing.assert_allclose(out.pressure, ref.pressure, **TOL)
    np.testing.assert_array_equal(out.best_phase, ref.best_phase)
    assert out.best_phase.dtype == np.int64
    return out


@pytest.mark.parametrize("seed", range(6))
def test_max_pressure_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    net = random_network(rng, 100, phases=(0, 6))
    moves = random_movements(rng, net)
    queue = rng.integers(0, 30, size=net.n_lanes).astype(float)  # integers: many ties
    queue[rng.random(net.n_lanes) < 0.1] = np.nan
    out = check_pressure(net, moves, queue)
    empty = np.diff(net.phase_ptr) == 0
    assert np.all(out.best_phase[empty] == -1)
    assert np.all(out.best_phase[~empty] >= 0)


def test_max_pressure_by_hand() -> None:
    # one intersection: phase 0 = lanes 0 -> 2, phase 1 = lanes 1 -> outside, 3 -> 2
    net = TimingNetwork.create(
        phase_ptr=[0, 2, 2],
        phase_lane_ptr=[0, 1, 3],
        phase_lanes=[0, 1, 3],
        sat_flow_vph=[1800.0] * 4,
        lost_s=[4.0, 4.0],
        intergreen_s=[4.0, 4.0],
        min_green_s=[7.0, 7.0],
    )
    moves = PhaseMovements.create(
        mov_ptr=[0, 1, 3],
        mov_in_lane=[0, 1, 3],
        mov_out_lane=[2, -1, 2],
        mov_sat_flow_vph=[1800.0, 1700.0, 900.0],
        n_lanes=4,
    )
    out = check_pressure(net, moves, [10.0, 4.0, 6.0, np.nan])
    np.testing.assert_allclose(out.pressure, [1800 * (10 - 6), 1700 * 4 + 900 * (0 - 6)])
    assert out.best_phase.tolist() == [0, -1]
    out = check_pressure(net, moves, [2.0, 9.0, 1.0, 8.0])
    assert out.best_phase.tolist() == [1, -1]


def test_max_pressure_ties_go_to_the_lowest_phase() -> None:
    net = TimingNetwork.create(
        phase_ptr=[0, 3],
        phase_lane_ptr=[0, 1, 2, 3],
        phase_lanes=[0, 1, 2],
        sat_flow_vph=[1800.0] * 3,
        lost_s=[4.0] * 3,
        intergreen_s=[4.0] * 3,
        min_green_s=[7.0] * 3,
    )
    moves = PhaseMovements.create(
        mov_ptr=[0, 1, 2, 3],
        mov_in_lane=[0, 1, 2],
        mov_out_lane=[-1, -1, -1],
        mov_sat_flow_vph=[1800.0] * 3,
        n_lanes=3,
    )
    assert check_pressure(net, moves, [3.0, 5.0, 5.0]).best_phase.tolist() == [1]
    assert check_pressure(net, moves, [0.0, 0.0, 0.0]).best_phase.tolist() == [0]
    assert check_pressure(net, moves, [np.nan] * 3).best_phase.tolist() == [0]


def test_max_pressure_negative_pressures_still_choose() -> None:
    net, _, _ = two_phase((0.1, 0.1))
    moves = PhaseMovements.create(
        mov_ptr=[0, 1, 2],
        mov_in_lane=[0, 1],
        mov_out_lane=[1, 0],
        mov_sat_flow_vph=[1.0, 2.0],
        n_lanes=2,
    )
    out = check_pressure(net, moves, [1.0, 5.0])
    np.testing.assert_allclose(out.pressure, [-4.0, 8.0])
    assert out.best_phase.tolist() == [1]
    moves_empty = PhaseMovements.create(
        mov_ptr=[0, 0, 1], mov_in_lane=[0], mov_out_lane=[1], mov_sat_flow_vph=[1.0], n_lanes=2
    )
    out = check_pressure(net, moves_empty, [1.0, 5.0])
    np.testing.assert_allclose(out.pressure, [0.0, -4.0])
    assert out.best_phase.tolist() == [0]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("mov_ptr", [0, 2, 1], "mov_ptr"),
        ("mov_ptr", [0, 1], "mov_ptr"),
        ("mov_in_lane", [0, 2], "mov_in_lane"),
        ("mov_in_lane", [-1, 0], "mov_in_lane"),
        ("mov_out_lane", [-2, 0], "mov_out_lane"),
        ("mov_out_lane", [0, 0, 0], "mov_out_lane"),
        ("mov_sat_flow_vph", [1.0, -1.0], "mov_sat_flow_vph"),
        ("n_lanes", -1, "n_lanes"),
        ("n_lanes", 1.5, "n_lanes"),
    ],
)
def test_bad_movements_raise_value_error(field: str, value: Any, match: str) -> None:
    kwargs: dict[str, Any] = {
        "mov_ptr": [0, 1, 2],
        "mov_in_lane": [0, 1],
        "mov_out_lane": [1, -1],
        "mov_sat_flow_vph": [1800.0, 1800.0],
        "n_lanes": 2,
    }
    kwargs[field] = value
    with pytest.raises(ValueError, match=match):
        PhaseMovements.create(**kwargs)


def test_max_pressure_bad_inputs() -> None:
    net, _, _ = two_phase((0.1, 0.1))
    moves = PhaseMovements.create(
        mov_ptr=[0, 1, 2],
        mov_in_lane=[0, 1],
        mov_out_lane=[1, 0],
        mov_sat_flow_vph=[1.0, 2.0],
        n_lanes=2,
    )
    with pytest.raises(ValueError, match="queue_veh"):
        max_pressure(net, moves, [1.0])
    with pytest.raises(ValueError, match="queue_veh"):
        max_pressure(net, moves, [1.0, -2.0])
    with pytest.raises(ValueError, match="queue_veh"):
        max_pressure(net, moves, [1.0, np.inf])
    other = PhaseMovements.create(
        mov_ptr=[0, 1], mov_in_lane=[0], mov_out_lane=[1], mov_sat_flow_vph=[1.0], n_lanes=2
    )
    with pytest.raises(ValueError, match="movements"):
        max_pressure(net, other, [1.0, 2.0])
