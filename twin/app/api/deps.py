"""The dependencies every route uses: settings, the door, who is asking, and the one
place that decides whether they may (:func:`require` over
:data:`~twin.app.api.policy.POLICY`).

Contract with the sessions router: :class:`Principal`, :data:`PrincipalDep`,
:func:`require` (``require("sessions:create")``, ``require("sessions:use")``) and
:data:`SettingsDep`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from twin.app.api.door import Door
from twin.app.api.errors import AuthError, ForbiddenError
from twin.app.api.keys import authenticate
from twin.app.api.policy import POLICY, allowed
from twin.app.api.settings import ApiSettings


@dataclass(frozen=True)
class Principal:
    """Who is asking: the key's tenant, role and id (``door``: the app's shared parts,
    for the quota functions)."""

    tenant: str
    role: str
    key_id: str
    door: Door | None = field(default=None, repr=False, compare=False)


def get_door(request: Request) -> Door:
    return request.app.state.door  # type: ignore[no-any-return]


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.door.settings  # type: ignore[no-any-return]


DoorDep = Annotated[Door, Depends(get_door)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]

bearer = HTTPBearer(
    auto_error=False, scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer ctk_...` (twin admin key create).",
)  # fmt: skip


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The key's principal; 401 without a live key, 429 over the key's request rate."""
    door = get_door(request)
    if credentials is None:
        raise AuthError("No API key: send the header 'Authorization: Bearer KEY'.")
    info, tenant = authenticate(door.db, door.secret, credentials.credentials)
    door.limiter.take(info.id, tenant.requests_per_min)
    return Principal(tenant=tenant.name, role=info.role, key_id=info.id, door=door)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(action: str) -> Callable[[Principal], Principal]:
    """A dependency: the principal, if its role may do ``action`` (else 403)."""
    if action not in POLICY:
        raise KeyError(f"Unknown action {action!r}; add it to twin.app.api.policy.POLICY.")

    def dependency(principal: PrincipalDep) -> Principal:
        if not allowed(principal.role, action):
            roles = ", ".join(sorted(POLICY[action]))
            raise ForbiddenError(
                f"A key with role {principal.role!r} may not do {action!r} (allowed: {roles})."
            )
        return principal

    dependency.__name__ = f"require_{action.replace(':', '_')}"
    return dependency


def websocket_principal(websocket: WebSocket, action: str) -> Principal:
    """A WebSocket's principal (its ``Authorization: Bearer KEY`` header), if its role
    may do ``action``: the same key check, rate and policy as :func:`require`."""
    door: Door = websocket.app.state.door
    header = websocket.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise AuthError("No API key: send the header 'Authorization: Bearer KEY'.")
    info, tenant = authenticate(door.db, door.secret, key.strip())
    door.limiter.take(info.id, tenant.requests_per_min)
    if not allowed(info.role, action):
        raise ForbiddenError(f"A key with role {info.role!r} may not do {action!r}.")
    return Principal(tenant=tenant.name, role=info.role, key_id=info.id, door=door)
