"""Cities: presets (built on first use), built ones, and the tenant's uploads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from twin.app.api.catalog import city_entries, install_city
from twin.app.api.deps import DoorDep, Principal, require
from twin.app.api.errors import responses
from twin.app.api.schemas import CityList, CityPublic

router = APIRouter(prefix="/v1/cities", tags=["cities"], responses=responses(401, 403, 422, 429))

ARCHIVE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A zip or tar.gz of a built city folder (city.json, net, loops, sumocfg).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get("")
def list_cities(
    door: DoorDep, principal: Annotated[Principal, Depends(require("cities:read"))]
) -> CityList:
    """Cities you can name in a run request's ``city``."""
    data = [CityPublic(**e.__dict__) for e in city_entries(door.engine, principal.tenant)]
    return CityList(data=data, count=len(data))


@router.post("", status_code=201, openapi_extra=ARCHIVE_BODY, responses=responses(409, 413))
async def upload_city(
    request: Request, door: DoorDep,
    principal: Annotated[Principal, Depends(require("cities:upload"))],
    name: Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")],
) -> CityPublic:  # fmt: skip
    """Add a built city for your tenant (checked: sizes, names, every signal plan)."""
    archive = await request.body()
    city = await run_in_threadpool(
        install_city, door.engine, principal.tenant, name, archive,
        max_bytes=door.settings.max_city_upload_bytes,
    )  # fmt: skip
    return CityPublic(id=name, source="uploaded", preset=None, seed=None,
                      signals=len(city.manifest.signals), built=True)  # fmt: skip
