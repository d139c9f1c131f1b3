"""Plain-Python twin of ``signal_control._kernels._group_sum_max``: obvious loops."""

from __future__ import annotations

import math
from collections.abc import Sequence


def group_sum_max_reference(
    values: Sequence[float], offsets: Sequence[int]
) -> tuple[list[float], list[float]]:
    """Sum and max of ``values[offsets[g]:offsets[g + 1]]`` for every group ``g``.

    NaN values are skipped; a group with no (non-NaN) value gives 0 for both.
    """
    totals: list[float] = []
    peaks: list[float] = []
    for g in range(len(offsets) - 1):
        readings = [float(v) for v in values[offsets[g] : offsets[g + 1]] if not math.isnan(v)]
        total = 0.0
        for v in readings:
            total += v
        totals.append(total)
        peaks.append(max(readings) if readings else 0.0)
    return totals, peaks
