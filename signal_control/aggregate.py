"""Per-intersection aggregates of per-lane values (queues, counts), whole city per call."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from signal_control._kernels import _group_sum_max

FloatArray = npt.NDArray[np.float64]


def group_sum_max(values: npt.ArrayLike, offsets: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Sum and max of ``values`` within each CSR group ``offsets[g]:offsets[g+1]``.

    NaN values (lanes without a reading) are skipped; an empty group gives 0.

    Raises
    ------
    ValueError
        When ``offsets`` is not a non-decreasing 1-D array from 0 to ``len(values)``.
    """
    vals = np.ascontiguousarray(values, dtype=np.float64)
    raw = np.asarray(offsets)
    if raw.dtype.kind not in "iu" and not np.array_equal(raw, np.floor(raw)):
        raise ValueError(f"offsets must be whole numbers; got {raw[:5]}")
    offs = np.ascontiguousarray(raw, dtype=np.int64)
    if vals.ndim != 1 or offs.ndim != 1 or offs.size == 0:
        raise ValueError("values and offsets must be 1-D and offsets non-empty")
    if offs[0] != 0 or offs[-1] != vals.size or np.any(np.diff(offs) < 0):
        raise ValueError(
            f"offsets must rise from 0 to len(values)={vals.size}; got {offs[:3]}...{offs[-1:]}"
        )
    total, peak = _group_sum_max(vals, offs)
    return total, peak
