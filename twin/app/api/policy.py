"""Who may do what: the role matrix of docs/API.md, in one table.

Every route names one action (``require("runs:create")``, see :mod:`twin.app.api.deps`),
and :data:`POLICY` says which roles may do it; nothing else decides. Everything a role
may do is inside its own tenant, except the server ``admin``'s actions, which manage
tenants and keys and read no tenant's data. What a role gets out of an export (raw or
de-identified) is :data:`EXPORT_VIEW`.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["operator", "fire", "police", "researcher", "admin"]
ROLES: tuple[Role, ...] = ("operator", "fire", "police", "researcher", "admin")
TENANT_ROLES: tuple[Role, ...] = ("operator", "fire", "police", "researcher")

_AGENCIES = frozenset({"operator", "fire", "police", "researcher"})
POLICY: dict[str, frozenset[str]] = {
    # reading the world: every agency of a tenant
    "cities:read": _AGENCIES,
    "scenarios:read": _AGENCIES,
    "scenarios:validate": _AGENCIES,
    # bringing your own scenario or city
    "scenarios:upload": frozenset({"operator", "researcher"}),
    "cities:upload": frozenset({"operator"}),
    # batch runs: the city and the sandbox users run; fire and police read them
    "runs:create": frozenset({"operator", "researcher"}),
    "runs:read": _AGENCIES,
    "runs:cancel": frozenset({"operator", "researcher"}),
    "exports:read": _AGENCIES,
    # interactive sessions (the sessions router)
    "sessions:create": frozenset({"operator", "researcher"}),
    "sessions:use": frozenset({"operator", "researcher"}),
    # live mode (the live router): EV missions and GPS from the fire service, detector
    # counts from the operator's VDS, the audit read by role (fire: its EVs; police:
    # its incidents; operator: all), SPaT for every agency
    "live:dispatch": frozenset({"operator", "fire"}),
    "live:gps": frozenset({"fire"}),
    "live:detectors": frozenset({"operator"}),
    "live:audit": frozenset({"operator", "fire", "police"}),
    "live:spat": _AGENCIES,
    "live:status": frozenset({"operator"}),
    # what-if forks of the shadow twin's present, and calibration to the ingested counts
    "live:fork": frozenset({"operator"}),
    "live:calibrate": frozenset({"operator"}),
    # the tenant's own administration: the operator is the tenant's admin
    "tenant:read": _AGENCIES,
    "tenant:keys": frozenset({"operator"}),
    "tenant:audit": frozenset({"operator"}),
    # the server's administration
    "admin:tenants": frozenset({"admin"}),
    "admin:keys": frozenset({"admin"}),
    "admin:audit": frozenset({"admin"}),
}
"""Action -> the roles allowed to do it."""

ExportView = Literal["raw", "deidentified", "deidentified+ev", "deidentified+incidents"]
EXPORT_VIEW: dict[str, ExportView] = {
    "operator": "raw",  # the city's own data
    "fire": "deidentified+ev",  # de-identified, plus its emergency vehicles' events
    "police": "deidentified+incidents",  # de-identified, plus incidents and VMS as run
    "researcher": "deidentified",
}
"""Role -> what an export gives it (see :mod:`twin.app.api.deid`)."""


def allowed(role: str, action: str) -> bool:
    """May ``role`` do ``action``? An unknown action is a programming error."""
    if action not in POLICY:
        raise KeyError(f"Unknown action {action!r}; known: {', '.join(sorted(POLICY))}.")
    return role in POLICY[action]
