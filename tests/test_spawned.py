"""The integration tests' spawned runs fail, never hang, when their process dies."""

from __future__ import annotations

import os
import time

import pytest

from tests import spawned


def _add(a: int, b: int) -> int:
    return a + b


def _die(code: int) -> None:
    os._exit(code)  # as a crash in SUMO would: no answer, no exception


def _raise(text: str) -> None:
    raise ValueError(text)


def _sleep(s: float) -> None:
    time.sleep(s)


def test_a_result_comes_back_and_several_run_side_by_side() -> None:
    assert spawned.in_process(_add, 2, 3) == 5
    assert spawned.in_processes(_add, [(1, 1), (2, 2), (3, 3)]) == [2, 4, 6]


def test_a_child_that_dies_fails_the_test_with_its_exit_code() -> None:
    # multiprocessing.Pool.apply waits forever here
    t0 = time.monotonic()
    with pytest.raises(spawned.SpawnedProcessError, match=r"_die: .* died .*exit code 7"):
        spawned.in_process(_die, 7)
    assert time.monotonic() - t0 < 30.0


def test_an_exception_in_the_child_is_raised_with_its_traceback() -> None:
    with pytest.raises(ValueError, match="no such signal") as info:
        spawned.in_process(_raise, "no such signal")
    assert any("in the spawned process" in n and "_raise" in n for n in info.value.__notes__)


def test_a_child_that_does_not_answer_is_stopped() -> None:
    with pytest.raises(spawned.SpawnedProcessError, match=r"no answer within 1 s"):
        spawned.in_process(_sleep, 60.0, timeout_s=1.0)
    with pytest.raises(spawned.SpawnedProcessError, match=r"died"):
        spawned.in_processes(_die, [(0,), (3,)])  # one answers nothing though exit 0
