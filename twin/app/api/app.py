"""The FastAPI app: :func:`create_app` puts the door, the routers and the one error
handler together."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from twin.app.api import errors
from twin.app.api.door import Door, open_door
from twin.app.api.routers import admin, cities, exports, health, runs, scenarios
from twin.app.api.settings import ApiSettings, load_api_settings
from twin.app.compose import execute_request
from twin.engine.executors import Work

log = logging.getLogger(__name__)

SESSIONS_ROUTER = "twin.app.api.routers.sessions"
LIVE_ROUTER = "twin.app.api.routers.live"
MAP_ROUTER = "twin.app.api.routers.map"
UPLOAD_PATHS = ("/v1/cities",)
"""Paths whose bodies may be as large as a city archive (``max_city_upload_bytes``)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """413 for a body over the limit, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = self.upload_bytes if path.startswith(UPLOAD_PATHS) else self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(send, limit)
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLargeError
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking)
        except _BodyTooLargeError:
            if not started:
                await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = f'{{"detail":"The request body is larger than {limit} bytes."}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class _BodyTooLargeError(Exception):
    pass


def create_app(settings: ApiSettings | None = None, *, work: Work = execute_request) -> FastAPI:
    """The API for ``settings`` (default: from the environment).

    Parameters
    ----------
    settings
        The API's settings; ``run_workers`` > 0 makes this app start queued runs (its
        lifespan starts the dispatcher), 0 leaves them to another process.
    work
        What a run's worker does (tests pass a stand-in).
    """
    settings = settings if settings is not None else load_api_settings()
    door = open_door(settings, work)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        door.start()
        try:
            yield
        finally:
            door.close()

    app = FastAPI(
        title="CityTwin sandbox API",
        version="1",
        summary="Run the city's traffic twin with your own key: scenarios, runs, results.",
        description="Authorization: `Bearer KEY`. Roles, quotas and de-identification: "
        "docs/API.md.",
        lifespan=lifespan,
    )
    app.state.door = door
    errors.install(app)
    for module in (health, cities, scenarios, runs, exports):
        app.include_router(module.router)
    app.include_router(admin.tenant_router)
    app.include_router(admin.router)
    if importlib.util.find_spec(SESSIONS_ROUTER) is not None:
        # the interactive sessions (their own module; the app works without it)
        app.include_router(importlib.import_module(SESSIONS_ROUTER).router)
    # the live web map (/map, GeoJSON, map frames); after the sessions router
    app.include_router(importlib.import_module(MAP_ROUTER).router)
    if importlib.util.find_spec(LIVE_ROUTER) is not None:
        # live mode's ingest, audit and SPaT (answers 503 unless a live service is attached)
        app.include_router(importlib.import_module(LIVE_ROUTER).router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       upload_bytes=settings.max_city_upload_bytes)  # fmt: skip
    return app


def door_of(app: FastAPI) -> Door:
    """The app's door (tests, the server)."""
    return app.state.door  # type: ignore[no-any-return]


def app_from_env() -> FastAPI:
    """The app from the environment (uvicorn's factory for ``twin serve --workers N``)."""
    return create_app(load_api_settings())
