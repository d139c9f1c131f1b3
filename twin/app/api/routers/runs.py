"""Runs: submit (202 + queue position), read, list, cancel, metrics, progress stream.

Every route that takes an id answers 404 for another tenant's run, exactly as for
one that does not exist.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from twin.app.api.catalog import (
    estimate_vehicle_s,
    merge_overrides,
    resolve_city,
    scenario_raw,
    validate_spec,
)
from twin.app.api.db import ApiRun
from twin.app.api.deps import DoorDep, Principal, require
from twin.app.api.door import Door
from twin.app.api.errors import ConflictError, responses
from twin.app.api.exports import Who, names
from twin.app.api.keys import Quotas, get_tenant
from twin.app.api.schemas import (
    RunAccepted,
    RunCreate,
    RunList,
    RunMetrics,
    RunProgress,
    RunPublic,
)
from twin.app.compose import run_request
from twin.engine.store import RunRecord

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=responses(401, 403, 422, 429))

RunId = Annotated[str, Path(min_length=1, max_length=32)]
ENDED = ("done", "failed")


def who(principal: Principal) -> Who:
    return Who(tenant=principal.tenant, role=principal.role, key_id=principal.key_id)


def progress_of(record: RunRecord, row: ApiRun) -> RunProgress:
    """Simulated seconds done of how many; a done run is done to the end (its last
    progress report may reach the database a moment after the worker recorded it, or
    never, when the run ended before the first report was relayed)."""
    if record.status == "done":
        total_s = row.progress_total_s
        if total_s is None:  # ended before its first progress report was written
            duration = (record.spec or {}).get("sim", {}).get("duration_s")
            total_s = float(duration) if isinstance(duration, int | float) else None
        if total_s is not None:
            return RunProgress(done_s=total_s, total_s=total_s)
    return RunProgress(done_s=row.progress_done_s, total_s=row.progress_total_s)


def run_public(door: Door, principal: Principal, run_id: str) -> RunPublic:
    record, row = door.queue.record(principal.tenant, run_id)
    return RunPublic(
        id=record.id, status=record.status, scenario_name=record.scenario_name,
        scenario_kind=record.scenario_kind, city_name=record.city_name, seed=record.seed,
        created_at=record.created_at, started_at=record.started_at,
        finished_at=record.finished_at, queue_position=door.queue.position(row),
        progress=progress_of(record, row),
        cancel_requested=bool(row.cancel_requested), metrics=record.metrics,
        error=record.error, spec=record.spec,
        series=names(record, who(principal).view) if record.status == "done" else [],
    )  # fmt: skip


@router.post("", status_code=202, responses=responses(404, 413))
def create_run(
    body: RunCreate, door: DoorDep,
    principal: Annotated[Principal, Depends(require("runs:create"))],
) -> RunAccepted:  # fmt: skip
    """Queue a run of a scenario (by name or as a spec), optionally with a seed, a city
    and overrides; 202 with its id and place in the queue."""
    tenant = principal.tenant
    if isinstance(body.scenario, str):
        raw: dict[str, Any] = scenario_raw(door.engine, tenant, body.scenario)
    else:
        raw = dict(body.scenario)
    if body.overrides:
        raw = merge_overrides(raw, body.overrides)
    spec = validate_spec(raw, where=("body", "scenario"))
    quotas = Quotas.of(get_tenant(door.db, tenant))
    city = resolve_city(door.engine, tenant, spec, body.city, door.cities,
                        max_signals=quotas.max_city_signals)  # fmt: skip
    request = run_request(spec, city, seed=body.seed, owner=tenant)
    run_id = door.queue.submit(tenant=tenant, key_id=principal.key_id, request=request,
                               estimate_vehicle_s=estimate_vehicle_s(spec, city))  # fmt: skip
    door.wake()
    row = door.queue.row(tenant, run_id)
    return RunAccepted(id=run_id, status="queued", queue_position=door.queue.position(row))


@router.get("")
def list_runs(
    door: DoorDep, principal: Annotated[Principal, Depends(require("runs:read"))],
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status: Literal["queued", "running", "done", "failed"] | None = None,
) -> RunList:  # fmt: skip
    """Your tenant's runs, newest first."""
    records, count = door.queue.page(principal.tenant, offset=offset, limit=limit, status=status)
    data = [run_public(door, principal, r.id) for r in records]
    return RunList(data=data, count=count)


@router.get("/{run_id}", responses=responses(404))
def get_run(
    run_id: RunId, door: DoorDep, principal: Annotated[Principal, Depends(require("runs:read"))]
) -> RunPublic:
    """A run: status, queue position, progress, metrics once done, error if failed."""
    return run_public(door, principal, run_id)


@router.post("/{run_id}/cancel", responses=responses(404, 409))
def cancel_run(
    run_id: RunId, door: DoorDep,
    principal: Annotated[Principal, Depends(require("runs:cancel"))],
) -> RunPublic:  # fmt: skip
    """Drop a queued run, or stop a running one (only its worker ends)."""
    door.queue.cancel(principal.tenant, run_id)
    door.wake()
    return run_public(door, principal, run_id)


@router.get("/{run_id}/metrics", responses=responses(404, 409))
def run_metrics(
    run_id: RunId, door: DoorDep, principal: Annotated[Principal, Depends(require("runs:read"))]
) -> RunMetrics:
    """The metrics of a done run (409 while it is not done)."""
    record, _row = door.queue.record(principal.tenant, run_id)
    if record.status != "done" or record.metrics is None:
        raise ConflictError(f"Run {run_id} is {record.status}; metrics come once it is done.")
    return RunMetrics(id=record.id, status="done", metrics=record.metrics)


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "Server-sent events: 'progress' while it runs, one 'end'."},
               **responses(404)},
)  # fmt: skip
async def run_events(
    run_id: RunId, door: DoorDep, principal: Annotated[Principal, Depends(require("runs:read"))]
) -> StreamingResponse:
    """Progress as server-sent events (``event: progress``; ``event: end`` with the final
    status, then the stream closes)."""
    await run_in_threadpool(door.queue.record, principal.tenant, run_id)  # 404 first
    poll_s = door.settings.stream_poll_s

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        while True:
            record, row = await run_in_threadpool(door.queue.record, principal.tenant, run_id)
            position = await run_in_threadpool(door.queue.position, row)
            progress = progress_of(record, row)
            state = {"id": record.id, "status": record.status, "queue_position": position,
                     "done_s": progress.done_s, "total_s": progress.total_s}  # fmt: skip
            if state != last:
                yield f"event: progress\ndata: {json.dumps(state)}\n\n"
                last = state
            if record.status in ENDED:
                end = {"id": record.id, "status": record.status, "error": record.error}
                yield f"event: end\ndata: {json.dumps(end)}\n\n"
                return
            await asyncio.sleep(poll_s)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip
