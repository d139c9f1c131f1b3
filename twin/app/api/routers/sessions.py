"""Interactive sessions over HTTP: bring your own controller, through the safety guard.

``POST /v1/sessions`` starts a scenario in its own worker process and answers with the
layout of the signals the client controls. Then, as often as the client likes:
``POST .../advance`` (run N seconds, get the observation), ``POST .../commands`` (port
commands, in order; each answer says what the guard did, or why it refused),
``POST .../events`` (an incident, an EV dispatch, a VMS message), and
``DELETE /v1/sessions/{id}`` (finish: the run's metrics). ``GET .../stream`` (WebSocket)
advances and pushes an observation every ``every_s`` simulated seconds.

Roles: ``sessions:create`` / ``sessions:use`` (operator, researcher). Quotas: sessions
open at once, the tenant's vehicle-seconds per day (every step is charged what it
simulated), and the longest session. Another tenant's session is 404.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, WebSocket, WebSocketDisconnect, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from twin.app.api import quotas
from twin.app.api.catalog import merge_overrides, resolve_city, scenario_raw, validate_spec
from twin.app.api.deps import Principal, require, websocket_principal
from twin.app.api.errors import ConflictError, NotFoundError, QuotaError
from twin.app.sessions import (
    MAX_ADVANCE_S,
    MAX_BATCH,
    SessionError,
    SessionGoneError,
    SessionManager,
    Verb,
)
from twin.errors import ConfigError, RunError, TwinError

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

Create = Annotated[Principal, Depends(require("sessions:create"))]
Use = Annotated[Principal, Depends(require("sessions:use"))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionCreate(_In):
    scenario: str | dict[str, Any] = Field(
        description="A scenario's name (GET /v1/scenarios) or a whole spec object."
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    city: str | None = Field(default=None, max_length=80)
    overrides: dict[str, Any] | None = Field(
        default=None, description='Fields to change, dotted ({"sim.duration_s": 600}) or nested.'
    )
    controlled: Literal["all"] | list[str] = Field(
        default="all", description="The signals this session commands ('all', or ids)."
    )


class SessionCreated(BaseModel):
    id: str
    layout: dict[str, Any] = Field(
        description="Per controlled signal: plan (phases), links, approaches; edge lanes."
    )


class SessionPublic(BaseModel):
    id: str
    t_s: float
    vehicle_s: float
    idle_s: float
    age_s: float


class SessionList(BaseModel):
    data: list[SessionPublic]
    count: int


class Advance(_In):
    seconds: float = Field(gt=0.0, le=MAX_ADVANCE_S, description="Simulated seconds to run.")


class CommandIn(_In):
    verb: Verb
    signal: str = Field(max_length=100)
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="green_s (apply_timing), until_s (hold), stage (skip, request_priority), "
        "max_hold_s (request_priority).",
    )


class Commands(_In):
    commands: list[CommandIn] = Field(max_length=MAX_BATCH)


class CommandResults(BaseModel):
    results: list[dict[str, Any]]


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: Literal["incident", "ev_dispatch", "vms_message"]


class Closed(BaseModel):
    t_s: float
    vehicle_s: float
    metrics: dict[str, Any]


def _manager(principal: Principal) -> SessionManager:
    door = principal.door
    manager = door.sessions if door is not None else None
    if not isinstance(manager, SessionManager):
        raise ConflictError("Interactive sessions are not enabled on this server.")
    return manager


def _call(principal: Principal, sid: str, op: str, **payload: Any) -> Any:
    """One call to the session, its cost charged to the tenant's day, and the session's
    errors in HTTP terms (another tenant's session is 404)."""
    manager = _manager(principal)
    try:
        before = manager.info(sid, owner=principal.tenant).vehicle_s
        value = manager.call(sid, op, owner=principal.tenant, **payload)
    except SessionGoneError as exc:
        raise ConflictError(f"Session {sid} has ended: {exc}") from None
    except SessionError as exc:
        if str(exc).startswith("no session"):
            raise NotFoundError(f"No session {sid!r}.") from None
        raise ConfigError(str(exc)) from None
    after = float(value.get("vehicle_s", before)) if isinstance(value, dict) else before
    if after > before:
        quotas.record_session_usage(principal, after - before)
    return value


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SessionCreated)
def create_session(body: SessionCreate, principal: Create) -> SessionCreated:
    """Start a session: the scenario in its own worker process, stopped at its start."""
    quotas.check_session_start(principal)
    door = principal.door
    if door is None:  # pragma: no cover (the API's own principal always has it)
        raise ConflictError("No door.")
    engine = door.engine
    raw = (
        scenario_raw(engine, principal.tenant, body.scenario)
        if isinstance(body.scenario, str)
        else dict(body.scenario)
    )
    if body.overrides:
        raw = merge_overrides(raw, body.overrides)
    spec = validate_spec(raw, where=("body", "scenario"))
    limits = quotas.tenant_quotas(principal)
    city = resolve_city(engine, principal.tenant, spec, body.city, door.cities,
                        max_signals=limits.max_city_signals)  # fmt: skip
    max_s = quotas.max_session_s(principal)
    if spec.sim.duration_s > max_s:
        raise QuotaError(
            f"The scenario runs {spec.sim.duration_s:g} s; this tenant's sessions may run at "
            f"most {max_s:g} s (max_session_s). Shorten sim.duration_s.",
            quota="max_session_s", retry_after_s=86_400.0,
        )  # fmt: skip
    seed = spec.seed if body.seed is None else body.seed
    spec_dict = spec.model_dump(mode="json")
    try:
        sid, layout = _manager(principal).create(
            spec_dict, city, seed=seed, owner=principal.tenant, controlled=body.controlled
        )
    except SessionError as exc:
        raise ConfigError(str(exc)) from None
    except SessionGoneError as exc:
        raise RunError(f"The session could not start: {exc}") from None
    return SessionCreated(id=sid, layout=layout)


@router.get("", response_model=SessionList)
def list_sessions(principal: Use) -> SessionList:
    """The tenant's open sessions."""
    infos = _manager(principal).list(owner=principal.tenant)
    data = [SessionPublic(id=i.id, t_s=i.t_s, vehicle_s=i.vehicle_s, idle_s=i.idle_s,
                          age_s=i.age_s) for i in infos]  # fmt: skip
    return SessionList(data=data, count=len(data))


@router.get("/{sid}", response_model=SessionPublic)
def get_session(sid: str, principal: Use) -> SessionPublic:
    try:
        i = _manager(principal).info(sid, owner=principal.tenant)
    except SessionError:
        raise NotFoundError(f"No session {sid!r}.") from None
    return SessionPublic(id=i.id, t_s=i.t_s, vehicle_s=i.vehicle_s, idle_s=i.idle_s,
                         age_s=i.age_s)  # fmt: skip


@router.get("/{sid}/layout")
def get_layout(sid: str, principal: Use) -> dict[str, Any]:
    """The controlled signals: plans, links, approaches; the out-edges' lanes."""
    value: dict[str, Any] = _call(principal, sid, "layout")
    return value


@router.get("/{sid}/observation")
def observe(sid: str, principal: Use) -> dict[str, Any]:
    """The state now (no time passes)."""
    value: dict[str, Any] = _call(principal, sid, "observe")
    return value


@router.post("/{sid}/advance")
def advance(sid: str, body: Advance, principal: Use) -> dict[str, Any]:
    """Run ``seconds`` more (whole control ticks); the observation after."""
    quotas.check_session_usage(principal)
    _check_length(principal, sid, body.seconds)
    value: dict[str, Any] = _call(principal, sid, "advance", seconds=body.seconds)
    return value


@router.post("/{sid}/commands", response_model=CommandResults)
def commands(sid: str, body: Commands, principal: Use) -> CommandResults:
    """Port commands, carried out in order through the safety guard; one answer each:
    ``accepted``, what the ``guard`` did (clamped, deferred, ignored ...) or the
    ``reason`` it refused, and the signal's ``status`` after."""
    batch = [c.model_dump() for c in body.commands]
    results: list[dict[str, Any]] = _call(principal, sid, "commands", commands=batch)
    return CommandResults(results=results)


@router.post("/{sid}/events")
def inject(sid: str, body: Event, principal: Use) -> dict[str, Any]:
    """An incident (``edge``, ``closed_lanes``, ``duration_s``), an EV dispatch (``id``,
    ``station``, ...; scenarios with EV priority) or a VMS message (``sign``, ``text``;
    VMS scenarios), from now on."""
    value: dict[str, Any] = _call(principal, sid, "inject", event=body.model_dump())
    return value


@router.delete("/{sid}", response_model=Closed)
def close(sid: str, principal: Use) -> Closed:
    """Finish the run where it stands; its metrics (unfinished trips included)."""
    value = _call(principal, sid, "close")
    return Closed(t_s=value["t_s"], vehicle_s=value["vehicle_s"], metrics=value["metrics"])


def _check_length(principal: Principal, sid: str, seconds: float) -> None:
    manager = _manager(principal)
    try:
        info = manager.info(sid, owner=principal.tenant)
    except SessionError:
        raise NotFoundError(f"No session {sid!r}.") from None
    layout = manager._sessions[sid].layout if sid in manager._sessions else {}
    begin = float(layout.get("begin_s", 0.0))
    max_s = quotas.max_session_s(principal)
    if info.t_s + seconds - begin > max_s + 1e-9:
        raise QuotaError(
            f"Session {sid} is at {info.t_s - begin:g} s; this tenant's sessions may run "
            f"{max_s:g} s (max_session_s).",
            quota="max_session_s", retry_after_s=86_400.0,
        )  # fmt: skip


# ----------------------------------------------------------------------------- stream


@router.websocket("/{sid}/stream")
async def stream(
    websocket: WebSocket,
    sid: str,
    every_s: Annotated[float, Query(gt=0.0, le=MAX_ADVANCE_S)] = 5.0,
) -> None:
    """Send ``{"advance": seconds}``: the session runs in steps of ``every_s`` and each
    observation is pushed as soon as it exists (with ``server_wall_s``), then
    ``{"end": true, "t_s": ...}``. Errors come as ``{"error": ...}``."""
    try:
        principal = websocket_principal(websocket, "sessions:use")
    except TwinError as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    await websocket.accept()
    try:
        while True:
            msg = json.loads(await websocket.receive_text())
            seconds = float(msg.get("advance", 0.0))
            if not 0 < seconds <= MAX_ADVANCE_S:
                await websocket.send_text(json.dumps({"error": "send {'advance': seconds}"}))
                continue
            left = seconds
            try:
                while left > 1e-9:
                    step = min(every_s, left)
                    await run_in_threadpool(quotas.check_session_usage, principal)
                    await run_in_threadpool(_check_length, principal, sid, step)
                    obs = await run_in_threadpool(_call, principal, sid, "advance", seconds=step)
                    obs["server_wall_s"] = time.time()
                    await websocket.send_text(json.dumps(obs))
                    left -= step
                    if obs.get("done"):
                        break
                    await asyncio.sleep(0)
            except TwinError as exc:
                await websocket.send_text(json.dumps({"error": str(exc)}))
                continue
            await websocket.send_text(json.dumps({"end": True, "t_s": obs["t_s"]}))
    except (WebSocketDisconnect, json.JSONDecodeError, ValueError):
        return
