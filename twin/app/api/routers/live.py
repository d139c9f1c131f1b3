"""Live mode at the door: EV missions, GPS and detector ingest, the audit log, SPaT.

The routes answer 503 unless a live service (:class:`twin.app.live.service.LiveService`)
is attached to the app (``twin live`` attaches one), and 404 to every tenant but the
live service's own. Every message is answered with the ingest's verdict: accepted, or
the reason it was rejected (also in the audit log).

- ``POST /v1/live/missions`` (``live:dispatch``): an EV to help (route, or origin and
  destination); ``DELETE /v1/live/missions/{vehicle}`` ends it.
- ``POST /v1/live/gps`` (``live:gps``, role fire): one fix; ``WS /v1/live/gps/ws``: one
  fix per message, one verdict back per message.
- ``POST /v1/live/detectors`` (``live:detectors``): one count or a list.
- ``GET /v1/live/audit`` (``live:audit``): records by role (fire: its EVs, police: its
  incidents, operator: all), with the chain's verdict.
- ``GET /v1/live/spat`` (``live:spat``) and ``WS /v1/live/spat/ws``: SPaT.
- ``GET /v1/live/status`` (``live:status``): controllers, missions, ingest counts.
- ``POST /v1/live/forks`` (``live:fork``): what-if futures from the shadow twin's
  present (``variant``, ``places``, ``metrics`` as in a variants file; ``ahead_s``,
  ``mode``); answers the comparison table when they have run.
- ``POST /v1/live/calibrations`` (``live:calibrate``): a demand variant calibrated to
  the counts ingested over the last ``window_s``, with its GEH report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from city_models.calibrate import CalibrationOptions
from twin.app.api.deps import Principal, require, websocket_principal
from twin.app.api.errors import responses
from twin.app.fork import parse_variants
from twin.app.live.audit import verify, visible_to
from twin.app.live.follow import BusyError, LiveCalibration, live_calibrate, live_fork
from twin.app.live.service import Mission
from twin.app.live.shadow import ShadowDownError
from twin.errors import CityError, ConfigError, ScenarioError, TwinError

if TYPE_CHECKING:
    from twin.app.live.service import LiveService

router = APIRouter(prefix="/v1/live", tags=["live"], responses=responses(401, 403, 429))
MAX_AUDIT = 5000


def _service(app_state: Any, principal: Principal) -> LiveService:
    svc = getattr(app_state, "live", None)
    if svc is None:
        raise HTTPException(
            status_code=503, detail="No live service runs in this server ('twin live')."
        )
    if principal.tenant != svc.opt.tenant:
        raise HTTPException(status_code=404, detail="No live service for this tenant.")
    return svc  # type: ignore[no-any-return]


@router.post("/missions", status_code=201)
async def create_mission(
    body: Mission,
    request: Request,
    principal: Annotated[Principal, Depends(require("live:dispatch"))],
) -> dict[str, Any]:
    """Start helping an EV: its GPS is accepted from now on."""
    svc = _service(request.app.state, principal)
    try:
        return await svc.call(svc.dispatch, body)
    except (ValueError, TwinError) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@router.delete("/missions/{vehicle}")
async def end_mission(
    vehicle: str,
    request: Request,
    principal: Annotated[Principal, Depends(require("live:dispatch"))],
) -> dict[str, Any]:
    """End an EV's mission (its holds are released)."""
    svc = _service(request.app.state, principal)
    if vehicle not in svc.missions:
        raise HTTPException(status_code=404, detail=f"No mission for vehicle {vehicle!r}.")
    await svc.call(svc.end_mission, vehicle, reason="ended_by_operator")
    return {"vehicle": vehicle, "ended": True}


def _answer(verdict: dict[str, Any]) -> JSONResponse:
    return JSONResponse(verdict, status_code=202 if verdict["accepted"] else 422)


@router.post("/gps", responses=responses(422))
async def post_gps(
    request: Request, principal: Annotated[Principal, Depends(require("live:gps"))]
) -> JSONResponse:
    """One GPS fix (JSON, see docs/LIVE.md): 202 accepted, 422 rejected with the reason."""
    svc = _service(request.app.state, principal)
    raw = await request.body()
    received = time.time()
    verdict = await svc.call(
        svc.gps, raw, source=f"http/{principal.key_id}", received_wall=received
    )
    return _answer(verdict.as_dict())


@router.post("/detectors", responses=responses(422))
async def post_detectors(
    request: Request, principal: Annotated[Principal, Depends(require("live:detectors"))]
) -> JSONResponse:
    """One count, or a JSON list of counts: the verdict of each."""
    svc = _service(request.app.state, principal)
    raw = await request.body()
    received = time.time()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = raw
    items = data if isinstance(data, list) else [data]
    out = []
    for item in items[:1000]:
        v = await svc.call(
            svc.detector,
            item if isinstance(item, dict) else raw,
            source=f"http/{principal.key_id}",
            received_wall=received,
        )
        out.append(v.as_dict())
    if not isinstance(data, list):
        return _answer(out[0])
    return JSONResponse({"verdicts": out}, status_code=202)


@router.get("/audit")
async def read_audit(
    request: Request,
    principal: Annotated[Principal, Depends(require("live:audit"))],
    after_seq: Annotated[int, Query(ge=-1)] = -1,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT)] = 500,
    check: bool = False,
) -> dict[str, Any]:
    """Audit records after ``after_seq`` that the key's role may read; ``check`` also
    walks the whole hash chain."""
    svc = _service(request.app.state, principal)
    out = []
    for rec in svc.audit.records():
        if rec.get("seq", -1) <= after_seq or not visible_to(principal.role, rec):
            continue
        out.append(rec)
        if len(out) >= limit:
            break
    body: dict[str, Any] = {"data": out, "count": len(out)}
    if check:
        rep = verify(svc.audit.path, svc.audit.key)
        body["chain"] = {"ok": rep.ok, "records": rep.records, "problems": rep.problems[:10]}
    return body


@router.get("/spat")
async def read_spat(
    request: Request, principal: Annotated[Principal, Depends(require("live:spat"))]
) -> dict[str, Any]:
    """The SPaT of every intersection under the center's control, now."""
    svc = _service(request.app.state, principal)
    data = await svc.call(svc.spat_all)
    return {"data": data, "count": len(data)}


@router.get("/status")
async def read_status(
    request: Request, principal: Annotated[Principal, Depends(require("live:status"))]
) -> dict[str, Any]:
    svc = _service(request.app.state, principal)
    return await svc.call(svc.status)


# ----------------------------------------------------------------------------- WebSockets


async def _ws_open(websocket: WebSocket, action: str) -> tuple[Principal, LiveService] | None:
    try:
        principal = websocket_principal(websocket, action)
        svc = _service(websocket.app.state, principal)
    except (TwinError, HTTPException) as exc:
        await websocket.close(code=1008, reason=str(getattr(exc, "detail", exc))[:120])
        return None
    await websocket.accept()
    return principal, svc


@router.websocket("/gps/ws")
async def gps_stream(websocket: WebSocket) -> None:
    """Send one GPS fix per message; each gets its verdict back."""
    opened = await _ws_open(websocket, "live:gps")
    if opened is None:
        return
    principal, svc = opened
    source = f"ws/{principal.key_id}"
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            raw = await websocket.receive_text()
            verdict = await svc.call(svc.gps, raw, source=source, received_wall=time.time())
            await websocket.send_text(json.dumps(verdict.as_dict()))


@router.websocket("/spat/ws")
async def spat_stream(websocket: WebSocket) -> None:
    """SPaT messages as they are published (every change, and every second)."""
    opened = await _ws_open(websocket, "live:spat")
    if opened is None:
        return
    _principal, svc = opened
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
    loop = asyncio.get_running_loop()

    def push(msg: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    forward = _Forward(push)
    await svc.call(svc.spat_subscribers.append, forward)
    try:
        while True:
            msg = await queue.get()
            await websocket.send_text(json.dumps(msg))
    except WebSocketDisconnect:
        pass
    finally:
        await svc.call(svc.spat_subscribers.remove, forward)


class _Forward:
    """A queue-like subscriber that hands SPaT over to another loop's queue."""

    def __init__(self, push: Any) -> None:
        self.push = push

    def put_nowait(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):
            self.push(msg)


# --------------------------------------------------------------------------- follow
class ForkBody(BaseModel):
    """What-if futures from the shadow twin's present (a variants file as JSON)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    variant: dict[str, dict[str, Any]] = Field(min_length=1, max_length=16)
    places: list[str] = Field(default_factory=list, max_length=50)
    metrics: list[str] = Field(default_factory=list, max_length=20)
    ahead_s: float = Field(default=900.0, ge=60.0, le=7200.0)
    mode: Literal["micro", "meso"] = "meso"


class CalibrationBody(BaseModel):
    """A rolling-window calibration to the counts live mode ingested."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    window_s: float = Field(default=3600.0, ge=300.0, le=4 * 3600.0)
    interval_s: float = Field(default=300.0, ge=60.0, le=3600.0)
    end_s: float | None = None
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    period: str = "am_peak"
    period_start_s: float | None = None


@router.post("/forks", responses=responses(409, 422, 503))
async def create_forks(
    body: ForkBody,
    request: Request,
    principal: Annotated[Principal, Depends(require("live:fork"))],
) -> dict[str, Any]:
    """Fork the shadow twin now: the null fork and each variant, ``ahead_s`` ahead, in
    worker processes; the comparison table (every fork is a recorded run)."""
    svc = _service(request.app.state, principal)
    try:
        raw = body.model_dump(include={"variant", "places", "metrics"})
        variants = parse_variants(raw, where="Request body")
    except ConfigError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    if svc.shadow is None:
        raise HTTPException(
            status_code=409,
            detail="A live fork starts from the shadow twin's state, and none runs; start "
            "live mode with --shadow.",
        )
    try:
        return await svc.call_async(
            live_fork, svc, variants, ahead_s=body.ahead_s, mode=body.mode,
            who=principal.key_id,
        )  # fmt: skip
    except TwinError as exc:
        raise _follow_error(exc) from exc


def _follow_error(exc: TwinError) -> HTTPException:
    """Bad input 422, busy 409, the shadow down 503, a failure of the work itself 500;
    always the one paragraph that says why."""
    if isinstance(exc, BusyError):
        return HTTPException(status_code=409, detail=str(exc))
    if isinstance(exc, ShadowDownError):
        return HTTPException(status_code=503, detail=str(exc))
    if isinstance(exc, ConfigError | CityError | ScenarioError):
        return HTTPException(status_code=422, detail=str(exc))
    return HTTPException(status_code=500, detail=str(exc))


@router.post("/calibrations", responses=responses(409, 422))
async def create_calibration(
    body: CalibrationBody,
    request: Request,
    principal: Annotated[Principal, Depends(require("live:calibrate"))],
) -> dict[str, Any]:
    """Calibrate the city's demand to the counts of the last ``window_s`` (a demand
    variant stored with the city, ``demand.variant`` in a scenario); its GEH report."""
    svc = _service(request.app.state, principal)
    try:
        req = LiveCalibration(
            window_s=body.window_s, interval_s=body.interval_s, name=body.name,
            end_s=body.end_s, period_start_s=body.period_start_s,
            options=CalibrationOptions(period=body.period),
        )  # fmt: skip
        return await svc.call_async(live_calibrate, svc, req, who=principal.key_id)
    except TwinError as exc:
        raise _follow_error(exc) from exc
