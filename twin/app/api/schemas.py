"""Request and response bodies, per resource: ``...Create`` (what a client sends),
``...Public`` (what it gets back), ``...List`` (``data`` and ``count`` for paging)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["queued", "running", "done", "failed"]
SEED_MAX = 2**31 - 1


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- health
class HealthPublic(BaseModel):
    status: Literal["ok"]
    version: str
    run_workers: int
    queued_runs: int
    running_runs: int


# ----------------------------------------------------------------------------- scenarios
class ScenarioPublic(BaseModel):
    name: str
    kind: str
    description: str
    source: Literal["shipped", "uploaded"]
    spec: dict[str, Any]


class ScenarioList(BaseModel):
    data: list[ScenarioPublic]
    count: int


class ScenarioValidated(BaseModel):
    valid: Literal[True]
    spec: dict[str, Any]


# ----------------------------------------------------------------------------- cities
class CityPublic(BaseModel):
    id: str = Field(description="What a run request's 'city' takes.")
    source: Literal["preset", "built", "uploaded"]
    preset: str | None
    seed: int | None
    signals: int | None
    built: bool


class CityList(BaseModel):
    data: list[CityPublic]
    count: int


# ----------------------------------------------------------------------------- runs
class RunCreate(_In):
    scenario: str | dict[str, Any] = Field(
        description="A scenario's name (GET /v1/scenarios) or a whole spec object."
    )
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    city: str | None = Field(
        default=None, max_length=80, description="A city id (GET /v1/cities); default: the spec's."
    )
    overrides: dict[str, Any] | None = Field(
        default=None,
        description='Fields to change, dotted ({"sim.duration_s": 300}) or nested.',
    )


class RunAccepted(BaseModel):
    id: str
    status: RunStatus
    queue_position: int | None


class RunProgress(BaseModel):
    done_s: float | None
    total_s: float | None


class RunPublic(BaseModel):
    id: str
    status: RunStatus
    scenario_name: str
    scenario_kind: str
    city_name: str
    seed: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_position: int | None
    progress: RunProgress
    cancel_requested: bool
    metrics: dict[str, Any] | None = Field(description="Present once the run is done.")
    error: str | None
    series: list[str] = Field(description="What GET /v1/runs/{id}/series/{name} offers you.")
    spec: dict[str, Any]


class RunList(BaseModel):
    data: list[RunPublic]
    count: int


class RunMetrics(BaseModel):
    id: str
    status: Literal["done"]
    metrics: dict[str, Any]


# ----------------------------------------------------------------------------- tenants
class QuotasPublic(BaseModel):
    concurrent_runs: int
    concurrent_sessions: int
    vehicle_s_per_day: float
    max_city_signals: int
    max_session_s: float
    requests_per_min: int


class QuotasUpdate(_In):
    concurrent_runs: int | None = Field(default=None, ge=0, le=10_000)
    concurrent_sessions: int | None = Field(default=None, ge=0, le=10_000)
    vehicle_s_per_day: float | None = Field(default=None, ge=0.0, le=1e15)
    max_city_signals: int | None = Field(default=None, ge=0, le=1_000_000)
    max_session_s: float | None = Field(default=None, ge=0.0, le=1e9)
    requests_per_min: int | None = Field(default=None, ge=1, le=1_000_000)


class TenantCreate(_In):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    quotas: QuotasUpdate | None = None


class TenantPublic(BaseModel):
    name: str
    quotas: QuotasPublic


class TenantList(BaseModel):
    data: list[TenantPublic]
    count: int


class UsagePublic(BaseModel):
    tenant: str
    role: str
    key_id: str
    day: str
    vehicle_s_used: float
    runs_active: int
    sessions_open: int
    quotas: QuotasPublic


class KeyCreate(_In):
    role: Literal["operator", "fire", "police", "researcher"]


class AdminKeyCreate(_In):
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    role: Literal["operator", "fire", "police", "researcher", "admin"]


class KeyPublic(BaseModel):
    id: str
    tenant: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    replaced_by: str | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The key itself: shown this once, never again.")


class KeyList(BaseModel):
    data: list[KeyPublic]
    count: int


class AuditPublic(BaseModel):
    id: int
    at: datetime
    tenant: str
    key_id: str
    role: str
    action: str
    target: str
    parameters: dict[str, Any]
    content_sha256: str
    size_bytes: int


class AuditList(BaseModel):
    data: list[AuditPublic]
    count: int


class SeriesList(BaseModel):
    run_id: str
    view: str = Field(description="raw, or which de-identified view your role gets.")
    data: list[str]
    count: int
