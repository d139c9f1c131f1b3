"""Tests of EV preemption (signal_control.preemption) against its plain twin."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_control._reference.preemption import (
    preemption_plan_reference,
    resolve_conflicts_reference,
)
from signal_control.preemption import (
    PreemptionPlan,
    preemption_plan,
    recovery_greens,
    resolve_conflicts,
)

FLOAT_FIELDS = ("eta_s", "transition_s", "discharge_s", "lead_s")
BOOL_FIELDS = ("request", "passed")
ARRAY_NAMES = (
    "ev_s_m",
    "stop_s_m",
    "speed_mps",
    "ev_stage_green",
    "in_intergreen",
    "elapsed_green_s",
    "min_green_s",
    "yellow_s",
    "all_red_s",
    "intergreen_left_s",
    "queue_veh",
    "lanes",
)


# --------------------------------------------------------------------------- builders


def random_pairs(rng: np.random.Generator, k: int, *, nan_share: float = 0.1) -> dict[str, Any]:
    """``k`` random (EV, signal) pairs with every edge case the rules name."""
    ev = rng.uniform(0.0, 3000.0, size=k)
    stop = ev + rng.uniform(-40.0, 600.0, size=k)  # some EVs past the line
    at_line = rng.random(k) < 0.05
    stop[at_line] = ev[at_line]
    ev[rng.random(k) < nan_share] = np.nan
    speed = rng.uniform(0.0, 25.0, size=k)
    speed[rng.random(k) < 0.1] = 0.0
    speed[rng.random(k) < 0.05] = 1.0  # below the default floor
    speed[rng.random(k) < nan_share] = np.nan
    state = rng.integers(0, 3, size=k)  # 0: EV's stage green, 1: intergreen, 2: other green
    green = state == 0
    inter = state == 1
    elapsed = rng.uniform(0.0, 40.0, size=k)
    gmin = rng.uniform(5.0, 20.0, size=k)
    yellow = rng.uniform(3.0, 5.0, size=k)
    red = rng.uniform(0.0, 3.0, size=k)
    left = rng.uniform(0.0, 6.0, size=k)
    # entries the rule does not read may be NaN
    unread = rng.random(k) < 0.3
    for arr, read in ((elapsed, state == 2), (gmin, state == 2), (left, inter)):
        arr[unread & ~read] = np.nan
    queue = rng.integers(0, 30, size=k).astype(float)
    queue[rng.random(k) < nan_share] = np.nan
    return {
        "ev_s_m": ev,
        "stop_s_m": stop,
        "speed_mps": speed,
        "ev_stage_green": green,
        "in_intergreen": inter,
        "elapsed_green_s": elapsed,
        "min_green_s": gmin,
        "yellow_s": yellow,
        "all_red_s": red,
        "intergreen_left_s": left,
        "queue_veh": queue,
        "lanes": rng.integers(0, 5, size=k),
    }


def one_pair(**changes: Any) -> dict[str, Any]:
    """A single pair, as lists: EV 300 m from the line at 15 m/s, other stage green."""
    pair: dict[str, Any] = {
        "ev_s_m": 0.0,
        "stop_s_m": 300.0,
        "speed_mps": 15.0,
        "ev_stage_green": False,
        "in_intergreen": False,
        "elapsed_green_s": 5.0,
        "min_green_s": 10.0,
        "yellow_s": 3.0,
        "all_red_s": 2.0,
        "intergreen_left_s": np.nan,
        "queue_veh": 4.0,
        "lanes": 2,
    }
    pair.update(changes)
    return {name: [value] for name, value in pair.items()}


def check_plan(arrays: dict[str, Any], **options: float) -> PreemptionPlan:
    """Kernel == reference, plus the invariants every plan must satisfy."""
    out = preemption_plan(**arrays, **options)
    ref = preemption_plan_reference(**arrays, **options)
    k = len(arrays["ev_s_m"])
    for name in FLOAT_FIELDS:
        got = getattr(out, name)
        assert got.shape == (k,) and got.dtype == np.float64, name
        np.testing.assert_allclose(got, getattr(ref, name), rtol=1e-12, atol=0, err_msg=name)
    for name in BOOL_FIELDS:
        got = getattr(out, name)
        assert got.shape == (k,) and got.dtype == np.bool_, name
        np.testing.assert_array_equal(got, getattr(ref, name), err_msg=name)
    assert np.all(out.eta_s >= 0)
    assert not np.any(out.request & out.passed)
    assert not np.any(np.isnan(out.lead_s))
    assert not np.any(out.request & np.isinf(out.eta_s))
    return out


# --------------------------------------------------------------------------- plan


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [0, 1, 7, 500])
def test_plan_matches_reference(seed: int, k: int) -> None:
    rng = np.random.default_rng(1000 * k + seed)
    check_plan(random_pairs(rng, k))


@pytest.mark.parametrize(
    "options",
    [
        {"startup_loss_s": 0.0, "headway_s": 0.0, "margin_s": 0.0},
        {"startup_loss_s": 3.5, "headway_s": 2.2, "margin_s": 8.0},
        {"min_speed_mps": 0.5, "clear_m": 0.0},
        {"min_speed_mps": 10.0, "clear_m": 30.0, "passed_m": 15.0},
    ],
)
def test_plan_matches_reference_with_options(options: dict[str, float]) -> None:
    rng = np.random.default_rng(7)
    out = check_plan(random_pairs(rng, 500), **options)
    assert out.request.any() and not out.request.all()


def test_plan_by_hand() -> None:
    # EV 300 m away at 15 m/s: eta 20 s. 5 s of min green left + yellow 3 + all-red 2 = 10;
    # 4 queued on 2 lanes at 2 s headway + 2 s start-up = 6; margin 3: lead 19 s.
    out = check_plan(one_pair())
    assert out.eta_s[0] == 20.0
    assert out.transition_s[0] == 10.0
    assert out.discharge_s[0] == 6.0
    assert out.lead_s[0] == 19.0
    assert not out.request[0] and not out.passed[0]
    # 15 m further on, eta == lead exactly: the moment to ask for green
    out = check_plan(one_pair(ev_s_m=15.0))
    assert out.eta_s[0] == 19.0 == out.lead_s[0]
    assert out.request[0]
    # a margin of 4 s asks for it 20 s ahead
    assert check_plan(one_pair(), margin_s=4.0).request[0]


def test_plan_transition_rules() -> None:
    # the EV's stage already green: no transition, only the queue and the margin
    out = check_plan(one_pair(ev_stage_green=True, elapsed_green_s=np.nan, min_green_s=np.nan))
    assert out.transition_s[0] == 0.0
    assert out.lead_s[0] == 6.0 + 3.0
    # in an intergreen: what is left of it, min green and yellow are not read
    out = check_plan(one_pair(in_intergreen=True, intergreen_left_s=2.5, min_green_s=np.nan))
    assert out.transition_s[0] == 2.5
    # min green already served: only yellow + all-red
    out = check_plan(one_pair(elapsed_green_s=42.0))
    assert out.transition_s[0] == 5.0


def test_plan_discharge_rules() -> None:
    assert check_plan(one_pair(queue_veh=np.nan)).discharge_s[0] == 2.0
    assert check_plan(one_pair(queue_veh=0.0)).discharge_s[0] == 2.0
    assert check_plan(one_pair(lanes=0)).discharge_s[0] == 2.0 + 4 * 2.0  # 0 lanes read as 1
    out = check_plan(one_pair(lanes=1), startup_loss_s=1.0, headway_s=2.5)
    assert out.discharge_s[0] == 1.0 + 4 * 2.5


def test_plan_eta_rules() -> None:
    # a stopped EV: the speed floor gives a finite ETA
    assert check_plan(one_pair(speed_mps=0.0)).eta_s[0] == 150.0
    assert check_plan(one_pair(speed_mps=0.0), min_speed_mps=5.0).eta_s[0] == 60.0
    # unknown speed or position: never requests, never passes
    for pair in (one_pair(speed_mps=np.nan), one_pair(ev_s_m=np.nan)):
        out = check_plan(pair, margin_s=1e9)
        assert math.isinf(out.eta_s[0]) and not out.request[0] and not out.passed[0]
    # at the line: eta 0, requests
    out = check_plan(one_pair(ev_s_m=300.0))
    assert out.eta_s[0] == 0.0 and out.request[0] and not out.passed[0]


def test_plan_past_the_line() -> None:
    # 5 m past: no longer requests (passed_m = 0) unless passed_m covers it; not cleared
    out = check_plan(one_pair(ev_s_m=305.0))
    assert out.eta_s[0] == 0.0 and not out.request[0] and not out.passed[0]
    out = check_plan(one_pair(ev_s_m=305.0), passed_m=6.0)
    assert out.request[0] and not out.passed[0]
    # cleared once more than clear_m past the line
    assert not check_plan(one_pair(ev_s_m=310.0)).passed[0]
    assert check_plan(one_pair(ev_s_m=310.5)).passed[0]
    assert check_plan(one_pair(ev_s_m=300.5), clear_m=0.0).passed[0]


def test_plan_accepts_lists_and_int_flags() -> None:
    pairs = random_pairs(np.random.default_rng(3), 20)
    as_lists = {name: np.asarray(v).tolist() for name, v in pairs.items()}
    as_lists["ev_stage_green"] = [int(v) for v in pairs["ev_stage_green"]]
    as_lists["lanes"] = [float(v) for v in pairs["lanes"]]
    out = preemption_plan(**as_lists)
    ref = preemption_plan(**pairs)
    for got, want in zip(out, ref, strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- plan: errors


@pytest.mark.parametrize("name", ARRAY_NAMES)
def test_plan_length_mismatch_names_the_argument(name: str) -> None:
    arrays = random_pairs(np.random.default_rng(0), 5)
    arrays[name] = arrays[name][:4]
    # ev_s_m sets K: a short ev_s_m makes the next array the mismatched one
    match = "stop_s_m" if name == "ev_s_m" else name
    with pytest.raises(ValueError, match=match):
        preemption_plan(**arrays)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"headway_s": -1.0}, "headway_s"),
        ({"headway_s": math.nan}, "headway_s"),
        ({"startup_loss_s": -0.1}, "startup_loss_s"),
        ({"margin_s": math.inf}, "margin_s"),
        ({"min_speed_mps": 0.0}, "min_speed_mps"),
        ({"clear_m": -1.0}, "clear_m"),
        ({"passed_m": -1.0}, "passed_m"),
        ({"passed_m": 20.0, "clear_m": 10.0}, "passed_m"),
    ],
)
def test_plan_bad_scalars(options: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        preemption_plan(**one_pair(), **options)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"ev_s_m": math.inf}, "ev_s_m"),
        ({"stop_s_m": math.nan}, "stop_s_m"),
        ({"speed_mps": -1.0}, "speed_mps"),
        ({"speed_mps": math.inf}, "speed_mps"),
        ({"queue_veh": -1.0}, "queue_veh"),
        ({"queue_veh": math.inf}, "queue_veh"),
        ({"lanes": -1}, "lanes"),
        ({"lanes": 1.5}, "lanes"),
        ({"ev_stage_green": 2}, "ev_stage_green"),
        ({"ev_stage_green": True, "in_intergreen": True}, "in_intergreen"),
        ({"min_green_s": math.nan}, "min_green_s"),
        ({"elapsed_green_s": -1.0}, "elapsed_green_s"),
        ({"yellow_s": math.inf}, "yellow_s"),
        ({"all_red_s": -2.0}, "all_red_s"),
        ({"in_intergreen": True, "intergreen_left_s": math.nan}, "intergreen_left_s"),
    ],
)
def test_plan_bad_values(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        preemption_plan(**one_pair(**changes))


def test_plan_rejects_2d() -> None:
    arrays = one_pair()
    arrays["ev_s_m"] = [[0.0]]
    with pytest.raises(ValueError, match="ev_s_m"):
        preemption_plan(**arrays)


def pairs_strategy() -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        k = draw(st.integers(0, 12))

        def col(elem: st.SearchStrategy[Any]) -> list[Any]:
            return draw(st.lists(elem, min_size=k, max_size=k))

        nan = st.just(math.nan)
        time = st.floats(0.0, 60.0)
        state = col(st.integers(0, 2))
        return {
            "ev_s_m": col(st.one_of(nan, st.floats(-1e4, 1e4))),
            "stop_s_m": col(st.floats(-1e4, 1e4)),
            "speed_mps": col(st.one_of(nan, st.just(0.0), st.floats(0.0, 60.0))),
            "ev_stage_green": [s == 0 for s in state],
            "in_intergreen": [s == 1 for s in state],
            "elapsed_green_s": col(time),
            "min_green_s": col(time),
            "yellow_s": col(time),
            "all_red_s": col(time),
            "intergreen_left_s": col(time),
            "queue_veh": col(st.one_of(nan, st.floats(0.0, 100.0))),
            "lanes": col(st.integers(0, 6)),
        }

    return build()


@given(
    arrays=pairs_strategy(),
    margin_s=st.floats(0.0, 20.0),
    headway_s=st.floats(0.0, 4.0),
    min_speed_mps=st.floats(0.1, 10.0),
)
def test_property_plan_matches_reference(
    arrays: dict[str, Any], margin_s: float, headway_s: float, min_speed_mps: float
) -> None:
    check_plan(arrays, margin_s=margin_s, headway_s=headway_s, min_speed_mps=min_speed_mps)


# --------------------------------------------------------------------------- conflicts


def check_resolve(*arrays: Any) -> np.ndarray:
    """Kernel == reference, plus: granted implies requested, one stage per signal."""
    granted = resolve_conflicts(*arrays)
    want = resolve_conflicts_reference(*arrays)
    assert granted.dtype == np.bool_
    np.testing.assert_array_equal(granted, want)
    signals, stages, _, _, request = (np.asarray(a) for a in arrays)
    request = request.astype(bool)
    assert not np.any(granted & ~request)
    for sig in np.unique(signals):
        at = signals == sig
        assert np.unique(stages[at & granted]).size <= 1
        assert granted[at].any() == request[at].any()
    return granted


def test_conflict_earliest_eta_wins() -> None:
    granted = check_resolve([0, 0], [1, 2], [12.0, 8.0], [1.0, 1.0], [True, True])
    assert granted.tolist() == [False, True]


def test_conflict_equal_eta_severity_wins() -> None:
    granted = check_resolve([0, 0], [1, 2], [8.0, 8.0], [3.0, 1.0], [True, True])
    assert granted.tolist() == [True, False]
    # ETA first: the more severe EV further away waits
    granted = check_resolve([0, 0], [1, 2], [9.0, 8.0], [3.0, 1.0], [True, True])
    assert granted.tolist() == [False, True]
    # full tie: the lower index
    granted = check_resolve([0, 0], [2, 1], [8.0, 8.0], [1.0, 1.0], [True, True])
    assert granted.tolist() == [True, False]


def test_conflict_same_stage_both_granted() -> None:
    granted = check_resolve([5, 5, 5], [1, 1, 2], [4.0, 9.0, 6.0], [1, 1, 9], [True] * 3)
    assert granted.tolist() == [True, True, False]


def test_conflict_signals_are_independent() -> None:
    granted = check_resolve(
        [0, 7, 0, 7], [1, 2, 2, 1], [5.0, 5.0, 6.0, 6.0], [1, 1, 1, 1], [True] * 4
    )
    assert granted.tolist() == [True, True, False, False]


def test_conflict_non_requests_never_win() -> None:
    # the earliest pair does not request: the other stage is granted
    granted = check_resolve([0, 0, 0], [1, 2, 1], [1.0, 8.0, 30.0], [9, 1, 1], [0, 1, 0])
    assert granted.tolist() == [False, True, False]
    # a NaN ETA ranks last
    granted = check_resolve([0, 0], [1, 2], [np.nan, 50.0], [9, 1], [True, True])
    assert granted.tolist() == [False, True]
    assert check_resolve([], [], [], [], []).tolist() == []


def test_conflict_with_plan_output() -> None:
    rng = np.random.default_rng(11)
    k = 500
    plan = preemption_plan(**random_pairs(rng, k), margin_s=40.0)
    assert plan.request.sum() > 50
    signals = rng.integers(0, 40, size=k) * 1000 - 5000  # any integers
    check_resolve(
        signals, rng.integers(0, 4, size=k), plan.eta_s, rng.integers(1, 3, size=k), plan.request
    )


@pytest.mark.parametrize(
    ("which", "match"),
    [(1, "stage"), (2, "eta_s"), (3, "severity"), (4, "request")],
)
def test_conflict_length_mismatch_names_the_argument(which: int, match: str) -> None:
    arrays: list[Any] = [[0, 0], [1, 2], [3.0, 4.0], [1.0, 1.0], [True, True]]
    arrays[which] = arrays[which][:1]
    with pytest.raises(ValueError, match=match):
        resolve_conflicts(*arrays)


@pytest.mark.parametrize(
    ("which", "value", "match"),
    [
        (0, [[0, 0]], "signal_index"),
        (0, [0.5, 0.0], "signal_index"),
        (1, [-1, 0], "stage"),
        (3, [np.nan, 1.0], "severity"),
        (4, [2, 0], "request"),
    ],
)
def test_conflict_bad_values(which: int, value: Any, match: str) -> None:
    arrays: list[Any] = [[0, 0], [1, 2], [3.0, 4.0], [1.0, 1.0], [True, True]]
    arrays[which] = value
    with pytest.raises(ValueError, match=match):
        resolve_conflicts(*arrays)


@given(data=st.data(), k=st.integers(0, 30))
def test_property_conflicts(data: st.DataObject, k: int) -> None:
    def col(elem: st.SearchStrategy[Any]) -> list[Any]:
        return data.draw(st.lists(elem, min_size=k, max_size=k))

    # few distinct values: many ties on signal, stage, ETA and severity
    eta = st.one_of(st.sampled_from([0.0, 1.0, 2.5, math.inf, math.nan]), st.floats(0.0, 30.0))
    check_resolve(
        col(st.integers(-2, 3)),
        col(st.integers(0, 3)),
        col(eta),
        col(st.sampled_from([0.0, 1.0, 2.0, -1.0])),
        col(st.booleans()),
    )


# --------------------------------------------------------------------------- recovery


def absorbed(planned: np.ndarray, greens: list[np.ndarray]) -> float:
    """Seconds the recovery cycles are shorter than the plan (late error absorbed)."""
    return float(sum(float((planned - g).sum()) for g in greens))


def test_recovery_late_shortens_by_slack() -> None:
    planned = np.array([30.0, 20.0, 10.0])
    lo = np.array([10.0, 10.0, 10.0])
    out = recovery_greens(planned, lo, np.full(3, 60.0), 15.0, 3)
    assert len(out.green_s) == 3 and out.residual_s == 0.0
    for g in out.green_s:  # 5 s per cycle, shared 20 : 10 : 0
        np.testing.assert_allclose(g, [30.0 - 5 * 2 / 3, 20.0 - 5 / 3, 10.0])
    assert absorbed(planned, out.green_s) == pytest.approx(15.0)


def test_recovery_early_lengthens_by_slack() -> None:
    planned = np.array([30.0, 20.0])
    out = recovery_greens(planned, [10.0, 10.0], [40.0, 50.0], -8.0, 2)
    for g in out.green_s:  # 4 s per cycle, shared 10 : 30
        np.testing.assert_allclose(g, [31.0, 23.0])
    assert out.residual_s == 0.0
    # stages without a maximum share the lengthening equally
    out = recovery_greens(planned, [10.0, 10.0], [40.0, np.inf], -8.0, 2)
    np.testing.assert_allclose(out.green_s[0], [30.0, 24.0])
    out = recovery_greens(planned, [10.0, 10.0], [np.inf, np.inf], -8.0, 2)
    np.testing.assert_allclose(out.green_s[1], [32.0, 22.0])


def test_recovery_residual_when_slack_runs_out() -> None:
    planned = np.array([15.0, 12.0])
    out = recovery_greens(planned, [10.0, 10.0], [20.0, 20.0], 20.0, 2)  # room 7 s/cycle
    for g in out.green_s:
        np.testing.assert_array_equal(g, [10.0, 10.0])
    assert out.residual_s == pytest.approx(6.0)
    out = recovery_greens(planned, [10.0, 10.0], [20.0, 20.0], -40.0, 3)  # room 13 s/cycle
    for g in out.green_s:
        np.testing.assert_array_equal(g, [20.0, 20.0])
    assert out.residual_s == pytest.approx(-1.0)
    out = recovery_greens(planned, planned, planned, 5.0, 2)  # no slack at all
    np.testing.assert_array_equal(out.green_s[0], planned)
    assert out.residual_s == 5.0
    zero = recovery_greens(planned, [10.0, 10.0], [20.0, 20.0], 0.0, 2)
    np.testing.assert_array_equal(zero.green_s[1], planned)
    assert zero.residual_s == 0.0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([20.0], [10.0], [30.0], 5.0, 1), "cycles"),
        (([20.0], [10.0], [30.0], 5.0, True), "cycles"),
        (([20.0], [10.0], [30.0], 5.0, 2.0), "cycles"),
        (([20.0], [10.0], [30.0], math.nan, 2), "offset_error_s"),
        (([20.0], [10.0, 10.0], [30.0], 5.0, 2), "min_green_s"),
        (([20.0], [10.0], [30.0, 30.0], 5.0, 2), "max_green_s"),
        (([20.0], [-1.0], [30.0], 5.0, 2), "min_green_s"),
        (([20.0], [10.0], [5.0], 5.0, 2), "max_green_s"),
        (([40.0], [10.0], [30.0], 5.0, 2), "planned_green_s"),
        (([5.0], [10.0], [30.0], 5.0, 2), "planned_green_s"),
        (([[20.0]], [10.0], [30.0], 5.0, 2), "planned_green_s"),
    ],
)
def test_recovery_bad_inputs(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        recovery_greens(*args)


@st.composite
def recovery_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    n = draw(st.integers(1, 5))
    lo = np.array(draw(st.lists(st.floats(0.0, 30.0), min_size=n, max_size=n)))
    above = np.array(draw(st.lists(st.floats(0.0, 40.0), min_size=n, max_size=n)))
    extra = draw(
        st.lists(st.one_of(st.just(math.inf), st.floats(0.0, 40.0)), min_size=n, max_size=n)
    )
    planned = lo + above
    hi = planned + np.array(extra)
    return planned, lo, hi, draw(st.floats(-300.0, 300.0)), draw(st.integers(2, 4))


@given(case=recovery_cases())
def test_property_recovery_bounds_and_absorption(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, float, int],
) -> None:
    planned, lo, hi, error_s, cycles = case
    out = recovery_greens(planned, lo, hi, error_s, cycles)
    assert len(out.green_s) == cycles
    for g in out.green_s:
        assert g.shape == planned.shape
        assert np.all(g >= lo) and np.all(g <= hi)
        # each cycle moves every green the same way: toward its bound, never past it
        assert np.all(g <= planned) if error_s >= 0 else np.all(g >= planned)
    room_s = float((planned - lo).sum()) if error_s >= 0 else float((hi - planned).sum())
    done_s = absorbed(planned, out.green_s)
    tol = 1e-9 * (1.0 + abs(error_s))
    assert done_s + out.residual_s == pytest.approx(error_s, abs=tol)
    assert out.residual_s == 0.0 or math.copysign(1.0, out.residual_s) == math.copysign(
        1.0, error_s
    )
    if abs(error_s) <= cycles * room_s:  # the slack allows it: all absorbed
        assert out.residual_s == 0.0
        assert done_s == pytest.approx(error_s, abs=tol)
    else:  # every green at its bound, the rest left
        bound = lo if error_s >= 0 else hi
        for g in out.green_s:
            np.testing.assert_array_equal(g, bound)
        assert out.residual_s == pytest.approx(error_s - math.copysign(cycles * room_s, error_s))
