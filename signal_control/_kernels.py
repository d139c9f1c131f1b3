"""Numba kernels over CSR-grouped arrays (signals -> lanes). Private: call the wrappers.

Each kernel has a plain-Python twin in ``signal_control/_reference/`` that the tests
compare it with. ``cache=True`` so a second process pays no compile time.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _group_sum_max(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = offsets.shape[0] - 1
    total = np.zeros(n)
    peak = np.zeros(n)
    for g in range(n):
        s = 0.0
        m = -np.inf
        for k in range(offsets[g], offsets[g + 1]):
            v = values[k]
            if not np.isnan(v):  # skip NaN (a lane with no reading)
                s += v
                m = max(m, v)
        total[g] = s
        peak[g] = m if m > -np.inf else 0.0  # empty or all-NaN group
    return total, peak
