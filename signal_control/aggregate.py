"""Per-intersection aggregates of per-lane values (queues, counts), whole city per call."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from signal_control._checks import check_offsets, float_array, index_array
from signal_control._kernels import _group_sum_max

FloatArray = npt.NDArray[np.float64]


def group_sum_max(values: npt.ArrayLike, offsets: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Sum and max of ``values`` within each CSR group ``offsets[g]:offsets[g+1]``.

    NaN values (lanes without a reading) are skipped; an empty group gives 0.

    Raises
    ------
    ValueError
        When ``values`` is not 1-D, or ``offsets`` is not a 1-D array of whole numbers
        rising (non-strictly) from 0 to ``len(values)``.
    """
    vals = float_array("values", values)
    offs = index_array("offsets", offsets)
    check_offsets("offsets", offs, vals.size, "len(values)")
    total, peak = _group_sum_max(vals, offs)
    return total, peak
