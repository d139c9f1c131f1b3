"""Asyncio helpers of live mode."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any], *, retry_s: float = 0.1) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again while it runs on.

    Python 3.11's ``asyncio.wait_for`` loses a cancellation that arrives just as the
    future it awaits completes (gh-86296, fixed in 3.12): a loop that awaits a
    controller's answer could then run on, and ``task.cancel(); await task`` would wait
    for ever (a stopped center that never stops, still writing heartbeats). A task that
    ends with an error has it logged, not raised: stopping goes on.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("task %s ended with an error while stopping: %r", task.get_name(), exc)
