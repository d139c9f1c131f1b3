"""``twin live``: the live service with its API, until SIGINT/SIGTERM.

The service and the HTTP API (the sandbox API's app with the live router attached)
share one asyncio loop. On SIGINT or SIGTERM every signal is handed back to its
controller's own plan (never cutting an interval) before the process ends; a process
that is killed instead leaves it to the controllers' backup timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any, TextIO

import uvicorn

from city_models.build import City
from twin.app.api.app import create_app
from twin.app.api.settings import ApiSettings
from twin.app.live.audit import AuditLog
from twin.app.live.clock import LiveClock
from twin.app.live.field import FieldConfig
from twin.app.live.service import LiveOptions, LiveService

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the live service decides how to stop
    (hand every signal back first)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def start_api(
    svc: LiveService, settings: ApiSettings, *, host: str, port: int
) -> tuple[_Server, asyncio.Task[None], int]:
    """Serve the API (with the live router on ``svc``) on this loop; returns the server,
    its task and the port it listens on."""
    app = create_app(settings)
    app.state.live = svc
    server = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    task = asyncio.get_running_loop().create_task(server.serve(), name="live api")
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
    bound = int(server.servers[0].sockets[0].getsockname()[1]) if server.servers else port
    return server, task, bound


async def serve_live(
    city: City,
    field_cfg: FieldConfig,
    *,
    clock: LiveClock,
    audit_path: Path,
    secret: bytes,
    options: LiveOptions,
    api: ApiSettings | None = None,
    api_host: str = "127.0.0.1",
    api_port: int = 8100,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Run the live service (and its API) until SIGINT/SIGTERM; returns a summary.

    Prints one JSON line when ready: ``{"ready": true, "api_port", "signals", "down",
    "refused", "audit"}``.
    """
    audit = AuditLog(audit_path, key=secret, clock=clock.now_s).open()
    svc = LiveService(city, field_cfg, clock=clock, audit=audit, options=options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server: _Server | None = None
    task: asyncio.Task[None] | None = None
    try:
        await svc.start()
        bound = None
        if api is not None:
            server, task, bound = await start_api(svc, api, host=api_host, port=api_port)
        assert svc.port is not None and svc.field is not None
        states = svc.field.states()
        line = {
            "ready": True,
            "api_port": bound,
            "signals": len(svc.port.ids),
            "down": sorted(svc.port.down),
            "refused": sorted(t for t, s in states.items() if s["state"] == "refused"),
            "audit": str(audit_path),
        }
        stream = out or sys.stdout
        stream.write(json.dumps(line) + "\n")
        stream.flush()
        await stop.wait()
        log.info("stopping: handing every signal back to its controller's own plan")
    finally:
        await svc.stop(hand_back=True)
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
        audit.close()
    return svc.status()
