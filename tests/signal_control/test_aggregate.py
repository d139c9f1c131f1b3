"""Tests of the per-intersection aggregates (signal_control.aggregate) against a plain twin."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_control._reference.aggregate import group_sum_max_reference
from signal_control.aggregate import group_sum_max


def _random_groups(
    rng: np.random.Generator, n_groups: int, max_size: int, nan_share: float
) -> tuple[np.ndarray, np.ndarray]:
    sizes = rng.integers(0, max_size + 1, size=n_groups)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    values = rng.uniform(0.0, 40.0, size=int(offsets[-1]))
    values[rng.random(values.size) < nan_share] = np.nan
    return values, offsets


def _check(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total, peak = group_sum_max(values, offsets)
    ref_total, ref_peak = group_sum_max_reference(values.tolist(), offsets.tolist())
    assert total.dtype == np.float64 and peak.dtype == np.float64
    assert total.shape == peak.shape == (len(offsets) - 1,)
    np.testing.assert_allclose(total, ref_total, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(peak, ref_peak, rtol=0, atol=0)
    return total, peak


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    ("n_groups", "max_size", "nan_share"),
    [(1, 12, 0.0), (50, 8, 0.0), (200, 12, 0.2), (30, 3, 0.9), (1000, 16, 0.05)],
)
def test_matches_reference_on_random_inputs(
    seed: int, n_groups: int, max_size: int, nan_share: float
) -> None:
    rng = np.random.default_rng(seed)
    values, offsets = _random_groups(rng, n_groups, max_size, nan_share)
    _check(values, offsets)


def test_counts_like_integers() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 30, size=500).astype(float)
    offsets = np.array([0, 3, 3, 100, 101, 250, 250, 500])
    total, peak = _check(values, offsets)
    assert total.sum() == values.sum()
    assert peak.max() == values.max()


def test_empty_groups_give_zero() -> None:
    values = np.array([5.0, 1.0, 2.0])
    offsets = np.array([0, 0, 2, 2, 3, 3])
    total, peak = _check(values, offsets)
    np.testing.assert_array_equal(total, [0.0, 6.0, 0.0, 2.0, 0.0])
    np.testing.assert_array_equal(peak, [0.0, 5.0, 0.0, 2.0, 0.0])


def test_nan_is_skipped_and_all_nan_group_is_zero() -> None:
    values = np.array([np.nan, 4.0, np.nan, np.nan, np.nan, 3.0])
    offsets = np.array([0, 3, 5, 6])
    total, peak = _check(values, offsets)
    np.testing.assert_array_equal(total, [4.0, 0.0, 3.0])
    np.testing.assert_array_equal(peak, [4.0, 0.0, 3.0])


def test_single_group() -> None:
    values = np.array([1.5, 9.0, np.nan, 2.5])
    total, peak = _check(values, np.array([0, 4]))
    np.testing.assert_array_equal(total, [13.0])
    np.testing.assert_array_equal(peak, [9.0])


def test_zero_length_values() -> None:
    total, peak = _check(np.zeros(0), np.array([0]))
    assert total.shape == peak.shape == (0,)
    total, peak = _check(np.zeros(0), np.array([0, 0, 0]))
    np.testing.assert_array_equal(total, [0.0, 0.0])
    np.testing.assert_array_equal(peak, [0.0, 0.0])


def test_accepts_lists_and_other_dtypes() -> None:
    total, peak = group_sum_max([1, 2, 3], [0, 1, 3])
    np.testing.assert_array_equal(total, [1.0, 5.0])
    np.testing.assert_array_equal(peak, [1.0, 3.0])
    total32, _ = group_sum_max(np.array([1, 2, 3], dtype=np.float32), np.array([0, 3], np.int32))
    np.testing.assert_array_equal(total32, [6.0])


def test_inputs_are_not_modified() -> None:
    values = np.array([1.0, np.nan, 3.0])
    offsets = np.array([0, 2, 3])
    group_sum_max(values, offsets)
    np.testing.assert_array_equal(values, [1.0, np.nan, 3.0])
    np.testing.assert_array_equal(offsets, [0, 2, 3])


def test_max_of_negative_values() -> None:
    total, peak = group_sum_max([-1.0, -2.0], [0, 2])
    np.testing.assert_array_equal(total, [-3.0])
    np.testing.assert_array_equal(peak, [-1.0])


@pytest.mark.parametrize(
    ("values", "offsets", "match"),
    [
        ([1.0, 2.0], [], "offsets"),  # empty offsets
        ([1.0, 2.0], [1, 2], "offsets"),  # does not start at 0
        ([1.0, 2.0], [0, 1], "offsets"),  # does not end at len(values)
        ([1.0, 2.0], [0, 3], "offsets"),  # ends past len(values)
        ([1.0, 2.0, 3.0], [0, 2, 1, 3], "offsets"),  # decreasing
        ([1.0, 2.0], [[0, 2]], "offsets"),  # 2-D offsets
        ([1.0, 2.0], [0.0, 1.5, 2.0], "offsets"),  # not whole
        ([1.0, 2.0], [0.0, np.inf], "offsets"),  # not finite
        ([1.0, 2.0], ["0", "2"], "offsets"),  # not numbers
        ([[1.0, 2.0]], [0, 2], "values"),  # 2-D values
        ([], [0, 1], "offsets"),  # group past the end of empty values
    ],
    ids=[
        "empty", "start", "short", "long", "decreasing", "offsets-2d", "fraction", "inf",
        "strings", "values-2d", "empty-v",
    ],
)  # fmt: skip
def test_bad_inputs_raise_value_error_naming_them(
    values: list[float], offsets: list[Any], match: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{match}\b"):
        group_sum_max(values, offsets)


finite_or_nan = st.one_of(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    st.just(float("nan")),
)


@given(groups=st.lists(st.lists(finite_or_nan, max_size=8), min_size=1, max_size=30))
def test_property_matches_reference(groups: list[list[float]]) -> None:
    values = np.array([v for g in groups for v in g], dtype=np.float64)
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
    total, peak = _check(values, offsets)
    # group totals add up to the whole; each group's max bounds its mean
    np.testing.assert_allclose(total.sum(), np.nansum(values), rtol=1e-9, atol=1e-6)
    counts = np.array([sum(v == v for v in g) for g in groups])
    assert np.all(peak * np.maximum(counts, 1) >= total - 1e-6)
