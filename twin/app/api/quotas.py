"""Quotas per tenant, persisted in the door's tables, and the request rate per key.

- ``concurrent_runs``: runs queued or running at once (checked at submission, in the
  same transaction that books the run, so two submissions cannot both take the last
  place);
- ``vehicle_s_per_day``: simulated vehicle-seconds per UTC day, runs and sessions
  together. A run books an upper bound of its cost when it is accepted
  (:func:`~twin.app.api.catalog.estimate_vehicle_s`) and is charged what it really
  used (SUMO's trip durations) when it ends; a run is accepted only if its bound fits
  in what is left of the day;
- ``max_city_signals``: the largest city a run may use;
- ``concurrent_sessions``, ``max_session_s``: for interactive sessions
  (:func:`check_session_start`, :func:`max_session_s`, :func:`record_session_usage`,
  called by the sessions router);
- ``requests_per_min``: per key, a token bucket in each server process (not persisted:
  it is a rate, not a budget).

Over a quota is a :class:`~twin.app.api.errors.QuotaError` (429 with ``Retry-After``).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from twin.app.api.db import ApiRun, SessionUsage, Tenant, now_utc
from twin.app.api.errors import QuotaError
from twin.app.api.keys import Quotas
from twin.errors import ConfigError

if TYPE_CHECKING:
    from twin.app.api.deps import Principal
    from twin.app.api.door import Door


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def lock_tenant(session: Session, tenant: str) -> Tenant:
    """The tenant's row, locked for this transaction (PostgreSQL: the row; SQLite: the
    database's write lock), so quota checks and bookings of one tenant never interleave."""
    session.execute(update(Tenant).where(Tenant.name == tenant).values(name=Tenant.name))
    row = session.get(Tenant, tenant)
    if row is None:
        raise QuotaError(f"No tenant {tenant!r}.", quota="tenant", retry_after_s=3600.0)
    return row


def used_vehicle_s(session: Session, tenant: str, day: str) -> float:
    """The day's vehicle-seconds: ended runs as charged, others as booked, sessions."""
    runs = session.scalar(
        select(func.coalesce(func.sum(func.coalesce(ApiRun.charged_vehicle_s,
                                                    ApiRun.estimate_vehicle_s)), 0.0))
        .where(ApiRun.tenant == tenant, ApiRun.day == day)
    )  # fmt: skip
    sessions = session.scalar(
        select(func.coalesce(func.sum(SessionUsage.vehicle_s), 0.0)).where(
            SessionUsage.tenant == tenant, SessionUsage.day == day
        )
    )
    return float(runs or 0.0) + float(sessions or 0.0)


def active_runs(session: Session, tenant: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(ApiRun)
            .where(ApiRun.tenant == tenant, ApiRun.state != "ended")
        )
        or 0
    )


def admit_run(session: Session, tenant: str, *, estimate_vehicle_s: float, day: str) -> None:
    """Raise a :class:`QuotaError` unless the tenant may start one more run of this
    cost today (inside the booking transaction, the tenant's row locked)."""
    row = lock_tenant(session, tenant)
    quotas = Quotas.of(row)
    active = active_runs(session, tenant)
    if active >= quotas.concurrent_runs:
        raise QuotaError(
            f"Tenant {tenant!r} has {active} runs queued or running; its quota allows "
            f"{quotas.concurrent_runs} at once (concurrent_runs). Retry when one ends.",
            quota="concurrent_runs", retry_after_s=30.0,
        )  # fmt: skip
    used = used_vehicle_s(session, tenant, day)
    if used + estimate_vehicle_s > quotas.vehicle_s_per_day:
        raise QuotaError(
            f"Tenant {tenant!r} has used {used:,.0f} of its {quotas.vehicle_s_per_day:,.0f} "
            f"simulated vehicle-seconds today (vehicle_s_per_day); this run may cost up to "
            f"{estimate_vehicle_s:,.0f}. Shorten it, lower the demand scale, or retry after "
            "midnight UTC.",
            quota="vehicle_s_per_day", retry_after_s=seconds_to_midnight(),
        )  # fmt: skip


class RateLimiter:
    """Requests per minute per key: a token bucket per key, in this process."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key_id: str, per_min: int) -> None:
        if per_min < 1:
            raise ConfigError(f"requests_per_min must be at least 1, not {per_min}.")
        rate_per_s = per_min / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(per_min), now))
            tokens = min(float(per_min), tokens + (now - at) * rate_per_s)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                raise QuotaError(
                    f"Too many requests with key {key_id}: its tenant's quota is {per_min} "
                    "per minute (requests_per_min).",
                    quota="requests_per_min", retry_after_s=(1.0 - tokens) / rate_per_s,
                )  # fmt: skip
            self._buckets[key_id] = (tokens - 1.0, now)


# ----------------------------------------------------------------------------- sessions
def _door(principal: Principal) -> Door:
    if principal.door is None:
        raise ConfigError("This principal was not made by the API's authentication.")
    return principal.door


def tenant_quotas(principal: Principal) -> Quotas:
    door = _door(principal)
    with door.db.sessions() as session:
        row = session.get(Tenant, principal.tenant)
        if row is None:
            raise QuotaError(f"No tenant {principal.tenant!r}.", quota="tenant",
                             retry_after_s=3600.0)  # fmt: skip
        return Quotas.of(row)


def open_sessions(principal: Principal) -> int:
    """The tenant's open interactive sessions (the session manager's count)."""
    manager = _door(principal).sessions
    if manager is None:
        return 0
    return int(manager.count(owner=principal.tenant))


def check_session_start(principal: Principal) -> None:
    """Raise the 429 :class:`QuotaError` when the tenant may open no more sessions now:
    ``concurrent_sessions`` open already, or no vehicle-seconds left today."""
    quotas = tenant_quotas(principal)
    n = open_sessions(principal)
    if n >= quotas.concurrent_sessions:
        raise QuotaError(
            f"Tenant {principal.tenant!r} has {n} sessions open; its quota allows "
            f"{quotas.concurrent_sessions} at once (concurrent_sessions). Close one first.",
            quota="concurrent_sessions", retry_after_s=30.0,
        )  # fmt: skip
    with _door(principal).db.sessions() as session:
        used = used_vehicle_s(session, principal.tenant, today())
    if used >= quotas.vehicle_s_per_day:
        raise QuotaError(
            f"Tenant {principal.tenant!r} has used its {quotas.vehicle_s_per_day:,.0f} "
            "simulated vehicle-seconds of today (vehicle_s_per_day); retry after midnight UTC.",
            quota="vehicle_s_per_day", retry_after_s=seconds_to_midnight(),
        )  # fmt: skip


def check_session_usage(principal: Principal) -> None:
    """Raise the 429 :class:`QuotaError` when the day's vehicle-seconds are used up (for
    a session that wants to advance)."""
    quotas = tenant_quotas(principal)
    with _door(principal).db.sessions() as session:
        used = used_vehicle_s(session, principal.tenant, today())
    if used >= quotas.vehicle_s_per_day:
        raise QuotaError(
            f"Tenant {principal.tenant!r} has used its {quotas.vehicle_s_per_day:,.0f} "
            "simulated vehicle-seconds of today (vehicle_s_per_day).",
            quota="vehicle_s_per_day", retry_after_s=seconds_to_midnight(),
        )  # fmt: skip


def record_session_usage(principal: Principal, vehicle_seconds: float) -> None:
    """Charge the tenant's day with what a session's step cost."""
    if not vehicle_seconds >= 0.0:
        raise ConfigError(f"vehicle_seconds must be >= 0, not {vehicle_seconds!r}.")
    if vehicle_seconds == 0.0:
        return
    with _door(principal).db.sessions.begin() as session:
        session.add(SessionUsage(tenant=principal.tenant, key_id=principal.key_id, day=today(),
                                 at=now_utc(), vehicle_s=float(vehicle_seconds)))  # fmt: skip


def max_session_s(principal: Principal) -> float:
    """The longest a session of this tenant may run, in simulated seconds."""
    return float(tenant_quotas(principal).max_session_s)
