"""Scenarios: the shipped ones and the tenant's uploads; validate one (JSON or TOML)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request

from twin.app.api.catalog import (
    parse_body,
    save_scenario,
    scenario_names,
    scenario_raw,
    validate_spec,
)
from twin.app.api.deps import DoorDep, Principal, require
from twin.app.api.errors import responses
from twin.app.api.schemas import ScenarioList, ScenarioPublic, ScenarioValidated

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"],
                   responses=responses(401, 403, 422, 429))  # fmt: skip

SCENARIO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A scenario: a JSON object, or TOML (Content-Type: application/toml).",
        "content": {
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
            "application/toml": {"schema": {"type": "string"}},
        },
    }
}


def _public(
    door: DoorDep, tenant: str, name: str, source: Literal["shipped", "uploaded"]
) -> ScenarioPublic:
    raw = scenario_raw(door.engine, tenant, name)
    spec = validate_spec(raw, where=("scenario", name))
    return ScenarioPublic(name=name, kind=spec.kind, description=spec.description,
                          source=source, spec=spec.model_dump(mode="json"))  # fmt: skip


@router.get("")
def list_scenarios(
    door: DoorDep, principal: Annotated[Principal, Depends(require("scenarios:read"))]
) -> ScenarioList:
    """Shipped scenarios and the ones your tenant uploaded."""
    names = scenario_names(door.engine, principal.tenant)
    data = [_public(door, principal.tenant, n, "uploaded" if s == "uploaded" else "shipped")
            for n, s in sorted(names.items())]  # fmt: skip
    return ScenarioList(data=data, count=len(data))


@router.get("/{name}", responses=responses(404))
def get_scenario(
    name: str, door: DoorDep, principal: Annotated[Principal, Depends(require("scenarios:read"))]
) -> ScenarioPublic:
    """One scenario's validated spec."""
    scenario_raw(door.engine, principal.tenant, name)  # 404 when unknown
    uploaded = scenario_names(door.engine, principal.tenant).get(name) == "uploaded"
    return _public(door, principal.tenant, name, "uploaded" if uploaded else "shipped")


@router.post("/validate", openapi_extra=SCENARIO_BODY, responses=responses(413))
async def validate_scenario(
    request: Request, principal: Annotated[Principal, Depends(require("scenarios:validate"))]
) -> ScenarioValidated:
    """Check a scenario without running it: 422 names each bad field."""
    raw = parse_body(await request.body(), request.headers.get("content-type", ""))
    spec = validate_spec(raw)
    return ScenarioValidated(valid=True, spec=spec.model_dump(mode="json"))


@router.post("", status_code=201, openapi_extra=SCENARIO_BODY, responses=responses(413))
async def upload_scenario(
    request: Request, door: DoorDep,
    principal: Annotated[Principal, Depends(require("scenarios:upload"))],
) -> ScenarioPublic:  # fmt: skip
    """Store a scenario for your tenant under its ``name`` (then run it by name)."""
    raw = parse_body(await request.body(), request.headers.get("content-type", ""))
    spec = validate_spec(raw)
    name = save_scenario(door.engine, principal.tenant, spec)
    return ScenarioPublic(name=name, kind=spec.kind, description=spec.description,
                          source="uploaded", spec=spec.model_dump(mode="json"))  # fmt: skip
