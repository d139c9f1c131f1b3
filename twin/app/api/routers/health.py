"""``GET /health``: 200 once the server is ready (no key needed)."""

from __future__ import annotations

from importlib import metadata

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from twin.app.api.deps import DoorDep
from twin.app.api.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(door: DoorDep) -> HealthPublic:
    """Ready: the database answers; how many runs wait and run."""

    def counts() -> tuple[int, int]:
        return door.store.count(status="queued"), door.store.count(status="running")

    queued, running = await run_in_threadpool(counts)
    try:
        version = metadata.version("citytwin")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return HealthPublic(status="ok", version=version, run_workers=door.settings.run_workers,
                        queued_runs=queued, running_runs=running)  # fmt: skip
