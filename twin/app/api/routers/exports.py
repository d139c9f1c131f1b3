"""Exports of a run: its series (Parquet or CSV), its trips, its summary report; as
your role may see them, each one audited."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from twin.app.api.deps import DoorDep, Principal, require
from twin.app.api.errors import responses
from twin.app.api.exports import Export, export_report, export_series, names
from twin.app.api.routers.runs import RunId, who
from twin.app.api.schemas import SeriesList

router = APIRouter(
    prefix="/v1/runs", tags=["exports"], responses=responses(401, 403, 404, 422, 429)
)

BINARY = {"schema": {"type": "string", "format": "binary"}}
FILE = {
    "content": {
        "application/vnd.apache.parquet": BINARY,
        "text/csv": {"schema": {"type": "string"}},
    },
    "description": "The series as a file.",
}


def _file(export: Export, *, inline: bool = False) -> Response:
    disposition = "inline" if inline else f'attachment; filename="{export.filename}"'
    return Response(export.content, media_type=export.media_type,
                    headers={"Content-Disposition": disposition,
                             "X-Content-SHA256": export.sha256})  # fmt: skip


@router.get("/{run_id}/series")
def list_series(
    run_id: RunId, door: DoorDep, principal: Annotated[Principal, Depends(require("exports:read"))]
) -> SeriesList:
    """The series of a run you may download (de-identified for most roles)."""
    record, _row = door.queue.record(principal.tenant, run_id)
    view = who(principal).view
    data = names(record, view) if record.status == "done" else []
    return SeriesList(run_id=record.id, view=view, data=data, count=len(data))


@router.get("/{run_id}/series/{name}", response_class=Response,
            responses={200: FILE, **responses(409)})  # fmt: skip
def download_series(
    run_id: RunId,
    name: Annotated[str, Path(min_length=1, max_length=64)],
    door: DoorDep,
    principal: Annotated[Principal, Depends(require("exports:read"))],
    format: Annotated[Literal["parquet", "csv"], Query()] = "parquet",
) -> Response:
    """One series (``trips``: one row per vehicle) as Parquet or CSV."""
    record, _row = door.queue.record(principal.tenant, run_id)
    export = export_series(door.db, door.store, door.secret, who(principal), record,
                           name=name, fmt=format)  # fmt: skip
    return _file(export)


@router.get("/{run_id}/report", response_class=Response,
            responses={200: {"content": {"text/html": {"schema": {"type": "string"}}},
                             "description": "The summary page."}, **responses(409)})  # fmt: skip
def run_report(
    run_id: RunId, door: DoorDep, principal: Annotated[Principal, Depends(require("exports:read"))]
) -> Response:
    """The run's summary report (HTML with its plot inside)."""
    record, _row = door.queue.record(principal.tenant, run_id)
    return _file(export_report(door.db, door.store, door.secret, who(principal), record),
                 inline=True)  # fmt: skip
