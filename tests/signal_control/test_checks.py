"""The shared input checks of the kernel wrappers (signal_control._checks)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from signal_control import _checks as c


def test_float_array_copy_is_read_only_and_view_is_not_copied() -> None:
    src = np.array([1.0, 2.0])
    frozen = c.float_array("x_s", src, copy=True)
    assert frozen is not src and not frozen.flags.writeable
    assert c.float_array("x_s", src) is src  # already contiguous float64: no copy
    assert c.readings("x_s", src, 2, "lane") is src


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: c.float_array("x_s", [[1.0]]), r"^x_s must be 1-D; got shape \(1, 1\)$"),
        (lambda: c.float_array("x_s", [1.0], size=2, what="lane"),
         r"^x_s must have one entry per lane \(2\); got shape \(1,\)$"),
        (lambda: c.readings("q_veh", [[1.0, 2.0]], 2, "lane"),
         r"^q_veh must have one entry per lane \(2\); got shape \(1, 2\)$"),
        (lambda: c.index_array("ptr", [0.0, 1.5]), r"^ptr must hold whole numbers"),
        (lambda: c.index_array("ptr", [0.0, math.inf]), r"^ptr must hold whole numbers"),
        (lambda: c.index_array("ptr", ["0"]), r"^ptr must hold integers; got dtype <U1$"),
        (lambda: c.index_array("ptr", [[0]]), r"^ptr must be 1-D"),
        (lambda: c.index_array("lanes", [0.5], size=2, what="pair"),
         r"^lanes must have one entry per pair \(2\)"),  # the length first, then the values
        (lambda: c.bool_array("ok", [0, 2], 2, "pair"), r"^ok must hold booleans"),
        (lambda: c.check_offsets("ptr", np.array([], np.int64), 0, "n"),
         r"^ptr must have at least one entry \(0\)$"),
        (lambda: c.check_offsets("ptr", np.array([0, 2]), 3, "len(x)"),
         r"^ptr must run from 0 to len\(x\)=3; got 0...2$"),
        (lambda: c.check_offsets("ptr", np.array([0, 2, 1, 3]), 3, "len(x)"),
         r"^ptr must be non-decreasing; ptr\[2\]=1 < ptr\[1\]=2$"),
        (lambda: c.check_range("g_s", np.array([1.0, math.nan]), low=0.0),
         r"^g_s must be finite and >= 0.0; g_s\[1\]=nan$"),
        (lambda: c.check_range("s_vph", np.array([0.0]), low=0.0, strict=True, allow_inf=True),
         r"^s_vph must be > 0.0; s_vph\[0\]=0.0$"),
        (lambda: c.scalar("h_s", -1.0, low=0.0), r"^h_s must be finite and >= 0.0; got -1.0$"),
        (lambda: c.scalar("v_mps", 0.0, low=0.0, strict=True), r"^v_mps must be finite and > 0"),
    ],
)  # fmt: skip
def test_errors_name_the_argument_and_what_is_allowed(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_accepted_values_convert() -> None:
    ints = c.index_array("ptr", [0.0, 2.0], copy=True)
    assert ints.dtype == np.int64 and ints.tolist() == [0, 2] and not ints.flags.writeable
    assert c.bool_array("ok", [0.0, 1.0], 2, "pair").tolist() == [False, True]
    assert c.scalar("h_s", 2, low=0.0) == 2.0
    c.check_range("g_max_s", np.array([math.inf]), low=0.0, allow_inf=True)
    c.check_offsets("ptr", np.array([0, 0, 3]), 3, "len(x)")
