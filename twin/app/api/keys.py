"""Tenants and API keys: create, list, revoke, rotate, authenticate.

A key is ``ctk_`` + 32 random bytes (URL-safe base64), shown once. The database keeps
only its keyed hash, HMAC-SHA256 with the server secret, and a visible prefix (its
first 12 characters) to tell keys apart in listings. A stolen database gives no key,
and without the secret no guessed key can be checked against it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select

from twin.app.api.db import ApiDatabase, ApiKey, Tenant, now_utc, utc
from twin.app.api.errors import AuthError, ConflictError, NotFoundError
from twin.app.api.policy import ROLES
from twin.errors import ConfigError

log = logging.getLogger(__name__)

KEY_TAG = "ctk_"
KEY_BYTES = 32
PREFIX_CHARS = 12
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass(frozen=True)
class Quotas:
    """A tenant's quotas (docs/API.md, "Quotas")."""

    concurrent_runs: int = 2
    """Runs queued or running at once."""
    concurrent_sessions: int = 2
    """Interactive sessions open at once."""
    vehicle_s_per_day: float = 50_000_000.0
    """Simulated vehicle-seconds per UTC day, runs and sessions together (the cost)."""
    max_city_signals: int = 1000
    """The largest city a run may use, in signals (district 49, suwon-scale 893)."""
    max_session_s: float = 14_400.0
    """The longest an interactive session may run, in simulated seconds."""
    requests_per_min: int = 600
    """Requests per minute per key."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, row: Tenant) -> Quotas:
        return cls(**{name: getattr(row, name) for name in cls.names()})

    def checked(self) -> Quotas:
        """Itself, or a :class:`ConfigError` naming the quota that is negative."""
        for name in self.names():
            value = getattr(self, name)
            if value < 0 or (name == "requests_per_min" and value < 1):
                least = 1 if name == "requests_per_min" else 0
                raise ConfigError(f"Quota {name!r} = {value!r}: must be at least {least}.")
        return self


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed (never the key itself)."""

    id: str
    tenant: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    replaced_by: str | None


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.tenant, row.role, row.prefix, utc(row.created_at) or now_utc(),
                   utc(row.revoked_at), row.replaced_by)  # fmt: skip


def key_hash(secret: bytes, key: str) -> str:
    """The keyed hash stored for ``key``."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def check_name(name: str, *, what: str = "tenant") -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"The {what} name {name!r} is not allowed: use 1-63 lowercase letters, digits, "
            "'_' or '-', starting with a letter or digit."
        )
    return name


def create_tenant(db: ApiDatabase, name: str, quotas: Quotas | None = None) -> Quotas:
    """A new tenant with ``quotas`` (default :class:`Quotas`); returns them."""
    check_name(name)
    quotas = (quotas or Quotas()).checked()
    with db.sessions.begin() as session:
        if session.get(Tenant, name) is not None:
            raise ConflictError(f"The tenant {name!r} exists already.")
        session.add(Tenant(name=name, created_at=now_utc(), salt=secrets.token_hex(16),
                           **{n: getattr(quotas, n) for n in Quotas.names()}))  # fmt: skip
    log.info("tenant %s created", name)
    return quotas


def tenant_names(db: ApiDatabase) -> list[str]:
    with db.sessions() as session:
        return list(session.scalars(select(Tenant.name).order_by(Tenant.name)))


def get_tenant(db: ApiDatabase, name: str) -> Tenant:
    with db.sessions() as session:
        row = session.get(Tenant, name)
    if row is None:
        raise NotFoundError(f"No tenant {name!r}.")
    return row


def set_quotas(db: ApiDatabase, name: str, **values: Any) -> Quotas:
    """Change some quotas of a tenant; returns all of them."""
    unknown = sorted(set(values) - set(Quotas.names()))
    if unknown:
        raise ConfigError(
            f"Unknown quota {', '.join(map(repr, unknown))}; allowed: {', '.join(Quotas.names())}."
        )
    with db.sessions.begin() as session:
        row = session.get(Tenant, name)
        if row is None:
            raise NotFoundError(f"No tenant {name!r}.")
        quotas = Quotas(**{**Quotas.of(row).__dict__, **values}).checked()
        for key, value in values.items():
            setattr(row, key, value)
    return quotas


def create_key(db: ApiDatabase, secret: bytes, *, tenant: str, role: str) -> tuple[KeyInfo, str]:
    """A new key for ``tenant`` with ``role``: its listing and the key (shown once)."""
    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}; allowed: {', '.join(ROLES)}.")
    key = KEY_TAG + secrets.token_urlsafe(KEY_BYTES)
    row = ApiKey(id=f"key_{secrets.token_hex(6)}", tenant=tenant, role=role,
                 prefix=key[:PREFIX_CHARS], key_hash=key_hash(secret, key),
                 created_at=now_utc(), revoked_at=None, replaced_by=None)  # fmt: skip
    with db.sessions.begin() as session:
        if session.get(Tenant, tenant) is None:
            raise NotFoundError(
                f"No tenant {tenant!r}; create it first (twin admin tenant create)."
            )
        session.add(row)
    log.info("key %s (%s) created for tenant %s", row.id, role, tenant)
    return _info(row), key


def list_keys(db: ApiDatabase, *, tenant: str) -> list[KeyInfo]:
    with db.sessions() as session:
        rows = session.scalars(
            select(ApiKey).where(ApiKey.tenant == tenant).order_by(ApiKey.created_at)
        )
        return [_info(r) for r in rows]


def _own_key(session: Any, key_id: str, tenant: str | None) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None or (tenant is not None and row.tenant != tenant):
        raise NotFoundError(f"No key {key_id!r}" + (f" in tenant {tenant!r}." if tenant else "."))
    return row  # type: ignore[no-any-return]


def revoke_key(db: ApiDatabase, key_id: str, *, tenant: str | None = None) -> KeyInfo:
    """Revoke a key (of ``tenant`` only, when given); it fails every request from now on."""
    with db.sessions.begin() as session:
        row = _own_key(session, key_id, tenant)
        if row.revoked_at is not None:
            raise ConflictError(f"The key {key_id!r} is revoked already.")
        row.revoked_at = now_utc()
        info = _info(row)
    log.info("key %s revoked", key_id)
    return info


def rotate_key(
    db: ApiDatabase, secret: bytes, key_id: str, *, tenant: str | None = None
) -> tuple[KeyInfo, str]:
    """A new key with the old one's tenant and role; the old one is revoked at once."""
    with db.sessions.begin() as session:
        old = _own_key(session, key_id, tenant)
        if old.revoked_at is not None:
            raise ConflictError(f"The key {key_id!r} is revoked; create a new one instead.")
        owner, role = old.tenant, old.role
    info, key = create_key(db, secret, tenant=owner, role=role)
    with db.sessions.begin() as session:
        row = _own_key(session, key_id, None)
        row.revoked_at = now_utc()
        row.replaced_by = info.id
    log.info("key %s rotated to %s", key_id, info.id)
    return info, key


def authenticate(db: ApiDatabase, secret: bytes, key: str) -> tuple[KeyInfo, Tenant]:
    """The live key and its tenant, or an :class:`AuthError` that says no more than
    needed (a wrong and an unknown key read the same)."""
    if not key.startswith(KEY_TAG) or len(key) > 200:
        raise AuthError("The API key is malformed: keys start with 'ctk_'.")
    digest = key_hash(secret, key)
    with db.sessions() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
        if row is None:
            raise AuthError("The API key is not valid.")
        if row.revoked_at is not None:
            raise AuthError(f"The API key {row.prefix}... was revoked.")
        tenant = session.get(Tenant, row.tenant)
        if tenant is None:  # a foreign key makes this impossible; never serve it
            raise AuthError("The API key is not valid.")
        return _info(row), tenant
