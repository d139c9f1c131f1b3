"""Run a test's simulation in a fresh process of its own, and fail (never hang) if that
process dies or does not answer.

libsumo allows one simulation per process, so the integration tests run each run in a
spawned process. ``multiprocessing.Pool.apply`` waits forever for a worker that died
without answering (a crash in SUMO, a kill): the pool starts a new worker and the task is
lost. CI once stalled at the last of 1,395 tests until its limit. Here the test waits
on the child's pipe, checks that the child is alive, and stops after ``timeout_s``. A
child that dies gives its exit code; an exception in the child is raised again in the
test with the child's traceback attached.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

TIMEOUT_S = 540.0
"""Below pytest-timeout's 600 s a test (pyproject.toml), so this message comes first."""


class SpawnedProcessError(RuntimeError):
    """The spawned process died, or did not answer in time."""


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        try:
            value = fn(*args)
        except BaseException as exc:
            exc.add_note("in the spawned process:\n" + traceback.format_exc())
            try:
                conn.send((False, exc))
            except Exception:  # an exception that does not pickle: its text
                conn.send((False, RuntimeError(traceback.format_exc())))
            return
        conn.send((True, value))
    finally:
        conn.close()


def _start(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Connection]:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    proc.start()
    send.close()
    return proc, recv


def _died(what: str, proc: Any) -> SpawnedProcessError:
    proc.join(10.0)  # its exit code
    return SpawnedProcessError(
        f"{what}: the spawned process died without an answer (exit code {proc.exitcode})"
    )


def _collect(proc: Any, conn: Connection, what: str, deadline: float, timeout_s: float) -> Any:
    answered = False
    try:
        while not conn.poll(0.5):
            if not proc.is_alive() and not conn.poll(0):
                raise _died(what, proc)
            if time.monotonic() > deadline:
                raise SpawnedProcessError(f"{what}: no answer within {timeout_s:g} s")
        try:
            ok, value = conn.recv()
            answered = True
        except EOFError:  # its end of the pipe closed without an answer
            raise _died(what, proc) from None
    finally:
        conn.close()
        proc.join(10.0 if answered else 0.0)  # one that answered ends on its own
        if proc.is_alive():
            proc.kill()
            proc.join()
    if not ok:
        raise value
    return value


def in_process(fn: Callable[..., Any], *args: Any, timeout_s: float = TIMEOUT_S) -> Any:
    """``fn(*args)`` in a spawned process of its own; its result (pickled back)."""
    proc, conn = _start(fn, args)
    return _collect(proc, conn, fn.__name__, time.monotonic() + timeout_s, timeout_s)


def in_processes(
    fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], *, timeout_s: float = TIMEOUT_S
) -> list[Any]:
    """``fn(*a)`` for each ``a`` of ``args``, each in a process of its own, side by side;
    the results in the order given."""
    started = [_start(fn, a) for a in args]
    deadline = time.monotonic() + timeout_s
    out: list[Any] = []
    try:
        for proc, conn in started:
            out.append(_collect(proc, conn, fn.__name__, deadline, timeout_s))
    finally:
        for proc, _conn in started:
            if proc.is_alive():
                proc.kill()
                proc.join()
    return out
