"""Administration: the tenant's own (``/v1/tenant``: usage for every agency; keys and
audit for its operator) and the server's (``/v1/admin``: tenants, quotas, any key,
the whole audit log; the ``admin`` role, which reads no tenant's runs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from twin.app.api import keys as key_store
from twin.app.api.deps import DoorDep, Principal, require
from twin.app.api.errors import responses
from twin.app.api.exports import Who, audit, audit_page
from twin.app.api.keys import KeyInfo, Quotas
from twin.app.api.quotas import active_runs, open_sessions, today, used_vehicle_s
from twin.app.api.schemas import (
    AdminKeyCreate,
    AuditList,
    AuditPublic,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyPublic,
    QuotasPublic,
    QuotasUpdate,
    TenantCreate,
    TenantList,
    TenantPublic,
    UsagePublic,
)

tenant_router = APIRouter(
    prefix="/v1/tenant", tags=["tenant"], responses=responses(401, 403, 422, 429)
)
router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=responses(401, 403, 422, 429))

Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=500)]


def _who(p: Principal) -> Who:
    return Who(tenant=p.tenant, role=p.role, key_id=p.key_id)


def _key(info: KeyInfo) -> KeyPublic:
    return KeyPublic(**info.__dict__)


def _created(info: KeyInfo, key: str) -> KeyCreated:
    return KeyCreated(**info.__dict__, key=key)


def _quotas(q: Quotas) -> QuotasPublic:
    return QuotasPublic(**q.__dict__)


# ----------------------------------------------------------------------------- tenant
@tenant_router.get("")
def usage(
    door: DoorDep, principal: Annotated[Principal, Depends(require("tenant:read"))]
) -> UsagePublic:
    """Your tenant's quotas and what it used today."""
    quotas = Quotas.of(key_store.get_tenant(door.db, principal.tenant))
    with door.db.sessions() as session:
        used = used_vehicle_s(session, principal.tenant, today())
        active = active_runs(session, principal.tenant)
    return UsagePublic(tenant=principal.tenant, role=principal.role, key_id=principal.key_id,
                       day=today(), vehicle_s_used=used, runs_active=active,
                       sessions_open=open_sessions(principal), quotas=_quotas(quotas))  # fmt: skip


@tenant_router.get("/keys")
def tenant_keys(
    door: DoorDep, principal: Annotated[Principal, Depends(require("tenant:keys"))]
) -> KeyList:
    """Your tenant's keys (prefixes only)."""
    data = [_key(k) for k in key_store.list_keys(door.db, tenant=principal.tenant)]
    return KeyList(data=data, count=len(data))


@tenant_router.post("/keys", status_code=201)
def tenant_create_key(
    body: KeyCreate, door: DoorDep,
    principal: Annotated[Principal, Depends(require("tenant:keys"))],
) -> KeyCreated:  # fmt: skip
    """A new key of your tenant (shown once)."""
    info, key = key_store.create_key(door.db, door.secret, tenant=principal.tenant, role=body.role)
    audit(door.db, _who(principal), action="key:create", target=info.id,
          parameters={"role": body.role, "tenant": principal.tenant})  # fmt: skip
    return _created(info, key)


@tenant_router.post("/keys/{key_id}/revoke", responses=responses(404, 409))
def tenant_revoke_key(
    key_id: str, door: DoorDep, principal: Annotated[Principal, Depends(require("tenant:keys"))]
) -> KeyPublic:
    """Revoke a key of your tenant (it fails from the next request on)."""
    info = key_store.revoke_key(door.db, key_id, tenant=principal.tenant)
    audit(door.db, _who(principal), action="key:revoke", target=key_id, parameters={})
    return _key(info)


@tenant_router.post("/keys/{key_id}/rotate", status_code=201, responses=responses(404, 409))
def tenant_rotate_key(
    key_id: str, door: DoorDep, principal: Annotated[Principal, Depends(require("tenant:keys"))]
) -> KeyCreated:
    """A new key in place of one of your tenant's (the old one is revoked at once)."""
    info, key = key_store.rotate_key(door.db, door.secret, key_id, tenant=principal.tenant)
    audit(door.db, _who(principal), action="key:rotate", target=key_id,
          parameters={"new": info.id})  # fmt: skip
    return _created(info, key)


@tenant_router.get("/audit")
def tenant_audit(
    door: DoorDep, principal: Annotated[Principal, Depends(require("tenant:audit"))],
    offset: Offset = 0, limit: Limit = 100,
) -> AuditList:  # fmt: skip
    """Your tenant's audit log, newest first: every export and key change."""
    data, count = audit_page(door.db, tenant=principal.tenant, offset=offset, limit=limit)
    return AuditList(data=[AuditPublic(**d) for d in data], count=count)


# ----------------------------------------------------------------------------- server admin
@router.get("/tenants")
def list_tenants(
    door: DoorDep, _p: Annotated[Principal, Depends(require("admin:tenants"))]
) -> TenantList:
    """Every tenant with its quotas."""
    data = [TenantPublic(name=n, quotas=_quotas(Quotas.of(key_store.get_tenant(door.db, n))))
            for n in key_store.tenant_names(door.db)]  # fmt: skip
    return TenantList(data=data, count=len(data))


@router.post("/tenants", status_code=201, responses=responses(409))
def create_tenant(
    body: TenantCreate, door: DoorDep,
    principal: Annotated[Principal, Depends(require("admin:tenants"))],
) -> TenantPublic:  # fmt: skip
    """A new tenant (default quotas, or the ones given)."""
    given = body.quotas.model_dump(exclude_none=True) if body.quotas else {}
    quotas = key_store.create_tenant(door.db, body.name, Quotas(**given))
    audit(door.db, _who(principal), action="tenant:create", target=body.name, parameters=given)
    return TenantPublic(name=body.name, quotas=_quotas(quotas))


@router.patch("/tenants/{name}/quotas", responses=responses(404))
def set_quotas(
    name: str, body: QuotasUpdate, door: DoorDep,
    principal: Annotated[Principal, Depends(require("admin:tenants"))],
) -> TenantPublic:  # fmt: skip
    """Change some of a tenant's quotas."""
    given = body.model_dump(exclude_none=True)
    quotas = key_store.set_quotas(door.db, name, **given)
    audit(door.db, _who(principal), action="tenant:quotas", target=name, parameters=given)
    return TenantPublic(name=name, quotas=_quotas(quotas))


@router.post("/keys", status_code=201, responses=responses(404))
def admin_create_key(
    body: AdminKeyCreate, door: DoorDep,
    principal: Annotated[Principal, Depends(require("admin:keys"))],
) -> KeyCreated:  # fmt: skip
    """A new key for any tenant and role (shown once)."""
    info, key = key_store.create_key(door.db, door.secret, tenant=body.tenant, role=body.role)
    audit(door.db, _who(principal), action="key:create", target=info.id,
          parameters={"role": body.role, "tenant": body.tenant})  # fmt: skip
    return _created(info, key)


@router.post("/keys/{key_id}/revoke", responses=responses(404, 409))
def admin_revoke_key(
    key_id: str, door: DoorDep, principal: Annotated[Principal, Depends(require("admin:keys"))]
) -> KeyPublic:
    """Revoke any key."""
    info = key_store.revoke_key(door.db, key_id)
    audit(door.db, _who(principal), action="key:revoke", target=key_id, parameters={})
    return _key(info)


@router.post("/keys/{key_id}/rotate", status_code=201, responses=responses(404, 409))
def admin_rotate_key(
    key_id: str, door: DoorDep, principal: Annotated[Principal, Depends(require("admin:keys"))]
) -> KeyCreated:
    """Replace any key by a new one (the old one is revoked at once)."""
    info, key = key_store.rotate_key(door.db, door.secret, key_id)
    audit(door.db, _who(principal), action="key:rotate", target=key_id,
          parameters={"new": info.id})  # fmt: skip
    return _created(info, key)


@router.get("/audit")
def admin_audit(
    door: DoorDep, _p: Annotated[Principal, Depends(require("admin:audit"))],
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    offset: Offset = 0, limit: Limit = 100,
) -> AuditList:  # fmt: skip
    """The audit log of every tenant (or one), newest first."""
    data, count = audit_page(door.db, tenant=tenant, offset=offset, limit=limit)
    return AuditList(data=[AuditPublic(**d) for d in data], count=count)
