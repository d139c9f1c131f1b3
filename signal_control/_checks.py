"""Input checks shared by the wrappers in front of the Numba kernels (private).

The public functions of :mod:`signal_control.timing`, :mod:`signal_control.preemption`
and :mod:`signal_control.aggregate` check and convert their inputs here, once, and hand
plain contiguous arrays to their kernels. Every error is a :class:`ValueError` whose
message starts with the argument's name and says what is allowed and what was given.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def check_length(name: str, arr: npt.NDArray[np.generic], size: int, what: str) -> None:
    """``arr`` must have shape ``(size,)``: one entry per ``what``."""
    if arr.shape != (size,):
        raise ValueError(f"{name} must have one entry per {what} ({size}); got shape {arr.shape}")


def float_array(
    name: str,
    value: npt.ArrayLike,
    *,
    size: int | None = None,
    what: str = "entry",
    copy: bool = False,
) -> FloatArray:
    """``value`` as a 1-D ``float64`` array (of ``size`` entries, one per ``what``, if given).

    With ``copy`` a read-only copy (for a structure checked once and kept), otherwise
    a contiguous array that is ``value`` itself when it already is one.
    """
    if copy:
        arr = np.array(value, dtype=np.float64, copy=True)
    else:
        arr = np.ascontiguousarray(value, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}")
    if size is not None:
        check_length(name, arr, size, what)
    if copy:
        arr.flags.writeable = False
    return arr


def readings(name: str, value: npt.ArrayLike, size: int, what: str) -> FloatArray:
    """Per-``what`` readings: a contiguous ``float64`` array of shape ``(size,)``, no copy
    if ``value`` is one already. Unlike :func:`float_array`, any wrong shape (2-D
    included) is reported as a count mismatch."""
    arr = np.ascontiguousarray(value, dtype=np.float64)
    check_length(name, arr, size, what)
    return arr


def index_array(
    name: str,
    value: npt.ArrayLike,
    *,
    size: int | None = None,
    what: str = "entry",
    copy: bool = False,
) -> IntArray:
    """``value`` as a 1-D ``int64`` array; integers, or floats holding whole numbers.

    With ``size`` the shape is checked first (one entry per ``what``); with ``copy`` the
    result is a read-only copy, otherwise a contiguous array.
    """
    raw = np.asarray(value)
    if size is not None:
        check_length(name, raw, size, what)
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or not np.array_equal(raw, np.floor(raw)):
            raise ValueError(f"{name} must hold whole numbers; got {raw.ravel()[:5]}")
    elif raw.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers; got dtype {raw.dtype}")
    if raw.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {raw.shape}")
    if copy:
        arr = np.array(raw, dtype=np.int64, copy=True)
        arr.flags.writeable = False
        return arr
    return np.ascontiguousarray(raw, dtype=np.int64)


def bool_array(name: str, value: npt.ArrayLike, size: int, what: str) -> BoolArray:
    """``value`` as a contiguous ``bool`` array of shape ``(size,)``; a non-bool array
    may hold only 0 and 1."""
    raw = np.asarray(value)
    check_length(name, raw, size, what)
    if raw.dtype.kind != "b" and (
        raw.dtype.kind not in "iuf" or not np.all((raw == 0) | (raw == 1))
    ):
        raise ValueError(f"{name} must hold booleans; got {raw[:5]}")
    return np.ascontiguousarray(raw, dtype=np.bool_)


def first(bad: npt.NDArray[np.bool_]) -> int:
    """Index of the first ``True`` of ``bad`` (which must hold one)."""
    return int(np.flatnonzero(bad)[0])


def check_values(
    name: str, arr: npt.NDArray[np.generic], bad: npt.NDArray[np.bool_], rule: str
) -> None:
    """No entry of ``arr`` may be ``bad``; the error names the first one and the ``rule``."""
    if np.any(bad):
        k = first(bad)
        raise ValueError(f"{name} must be {rule}; {name}[{k}]={arr[k]}")


def check_range(
    name: str, arr: FloatArray, *, low: float, allow_inf: bool = False, strict: bool = False
) -> None:
    """Every entry of ``arr`` must be ``>= low`` (``> low`` if strict), not NaN, and finite
    unless ``allow_inf``."""
    bad = np.isnan(arr) | (arr <= low if strict else arr < low)
    if not allow_inf:
        bad |= np.isinf(arr)
    op = ">" if strict else ">="
    kind = "" if allow_inf else "finite and "
    check_values(name, arr, bad, f"{kind}{op} {low}")


def check_offsets(name: str, offsets: IntArray, end: int, end_name: str) -> None:
    """CSR ``offsets`` must be non-empty and rise (non-strictly) from 0 to ``end``."""
    if offsets.size == 0:
        raise ValueError(f"{name} must have at least one entry (0)")
    if offsets[0] != 0 or offsets[-1] != end:
        raise ValueError(
            f"{name} must run from 0 to {end_name}={end}; got {offsets[0]}...{offsets[-1]}"
        )
    drops = np.flatnonzero(np.diff(offsets) < 0)
    if drops.size:
        k = int(drops[0])
        raise ValueError(
            f"{name} must be non-decreasing; {name}[{k + 1}]={offsets[k + 1]} < "
            f"{name}[{k}]={offsets[k]}"
        )


def scalar(name: str, value: float, *, low: float, strict: bool = False) -> float:
    """``value`` as a finite float ``>= low`` (``> low`` if strict)."""
    out = float(value)
    if not math.isfinite(out) or (out <= low if strict else out < low):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be finite and {op} {low}; got {value}")
    return out
