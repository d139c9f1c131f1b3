"""Stopping a live task ends it even when a cancellation is lost on the way.

On Python 3.11 ``asyncio.wait_for`` returns the awaited future's result, and drops
the cancellation, when the cancellation arrives just as that future completes
(gh-86296). A controller link's loop awaits an answer that way: CI once saw a restarted
center's ``stop`` wait for ever while the link kept writing heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest

from twin.app.live.aio import cancel_and_wait


async def _answers_as_it_is_cancelled(
    stop: Callable[[asyncio.Task[None]], Awaitable[None]],
) -> tuple[bool, int]:
    """A loop awaiting answers with ``wait_for``; the first answer arrives in the same
    loop iteration as the cancellation. Returns (ended, answers it took)."""
    loop = asyncio.get_running_loop()
    answer: list[asyncio.Future[int]] = [loop.create_future()]
    taken = 0

    async def link() -> None:
        nonlocal taken
        while True:
            await asyncio.wait_for(answer[0], timeout=5.0)
            taken += 1
            answer[0] = loop.create_future()

    task = loop.create_task(link())
    await asyncio.sleep(0)  # the link now awaits its first answer
    answer[0].set_result(1)  # the answer arrives ...
    stopping = loop.create_task(stop(task))  # ... as the center stops (cancels the link)

    async def answer_on() -> None:
        while True:
            await asyncio.sleep(0.005)
            if not answer[0].done():
                answer[0].set_result(1)

    answering = loop.create_task(answer_on())
    done, _ = await asyncio.wait({stopping}, timeout=2.0)
    ended = stopping in done
    answering.cancel()
    while not task.done():  # leave nothing running (the test's own clean-up)
        task.cancel()
        await asyncio.sleep(0.01)
    stopping.cancel()
    return ended, taken


async def _bare_stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_cancel_and_wait_ends_a_link_whose_cancellation_was_lost() -> None:
    ended, taken = asyncio.run(_answers_as_it_is_cancelled(cancel_and_wait))
    assert ended
    if sys.version_info < (3, 12):
        # the first cancellation was lost: the link took the answer and went on, and
        # only the repeated cancellation stopped it
        assert taken >= 1


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps cancellations from 3.12")
def test_a_single_cancel_is_lost_on_python_3_11() -> None:
    """What the helper guards against: one cancel, then waiting, never ends."""
    ended, taken = asyncio.run(_answers_as_it_is_cancelled(_bare_stop))
    assert not ended and taken > 1


def test_an_error_while_stopping_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> asyncio.Task[None]:
        async def failing() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise RuntimeError("link broke while closing") from None

        task = asyncio.get_running_loop().create_task(failing(), name="field n1")
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        return task

    task = asyncio.run(main())
    assert task.done() and not task.cancelled()
    assert "field n1" in caplog.text and "link broke while closing" in caplog.text
