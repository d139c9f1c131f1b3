"""The errors the door adds, and the one handler that maps every TwinError to HTTP.

Each error subclasses :class:`~twin.errors.TwinError` and a built-in, as the project's
errors do. :func:`install` registers one handler for ``TwinError``: the class decides
the status code (:data:`STATUS`), the message is the body's ``detail``. Scenario
errors (422) also list the field paths they name, in FastAPI's validation shape
(``[{"loc": [...], "msg": ..., "type": ...}]``), so a client handles both alike.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from twin.errors import (
    CityError,
    ConfigError,
    RunError,
    RunNotFoundError,
    ScenarioError,
    SumoError,
    TwinError,
)

log = logging.getLogger(__name__)


class AuthError(TwinError, PermissionError):
    """No key, a malformed key, an unknown or a revoked key (401)."""


class ForbiddenError(TwinError, PermissionError):
    """The key's role may not do this (403)."""


class NotFoundError(TwinError, KeyError):
    """No such thing for this tenant (404): also what another tenant's thing is."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "not found"


class ConflictError(TwinError, ValueError):
    """The request clashes with the thing's state (409): cancelling an ended run, a
    tenant that exists, a series of a run that is not done."""


class TooLargeError(TwinError, ValueError):
    """The body or upload is larger than allowed (413)."""


class QuotaError(TwinError, RuntimeError):
    """Over a tenant's quota or a key's request rate (429, with ``Retry-After``).

    Parameters
    ----------
    message
        What is used up, how much, and when it frees up.
    quota
        The quota's name (``concurrent_runs``, ``vehicle_s_per_day``, ...).
    retry_after_s
        Seconds until a retry may succeed.
    """

    def __init__(self, message: str, *, quota: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.quota = quota
        self.retry_after_s = retry_after_s


STATUS: tuple[tuple[type[TwinError], int], ...] = (
    (AuthError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (RunNotFoundError, 404),
    (ConflictError, 409),
    (RunError, 409),
    (TooLargeError, 413),
    (QuotaError, 429),
    (ScenarioError, 422),
    (CityError, 422),
    (ConfigError, 422),
    (SumoError, 502),
)
"""Error class -> HTTP status; the first match wins (subclasses before bases)."""


class ErrorPublic(BaseModel):
    """The body of every error but validation errors."""

    detail: str


class QuotaErrorPublic(ErrorPublic):
    """The body of a 429: which quota, and when to retry (also the Retry-After header)."""

    quota: str
    retry_after_s: int


class FieldErrorPublic(BaseModel):
    """One bad field: where (``loc``, its path), what is wrong (``msg``)."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorPublic(BaseModel):
    """The body of a 422: one entry per bad field (FastAPI's own shape)."""

    detail: list[FieldErrorPublic]


_FIELD = re.compile(r"field '([^']+)'")


def status_of(exc: TwinError) -> int:
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def field_errors(message: str, *, prefix: tuple[str, ...] = ("body",)) -> list[dict[str, Any]]:
    """One validation entry per line of a scenario error, its ``loc`` the field path the
    line names (``field 'sim.duration_s'`` -> ``["body", "sim", "duration_s"]``)."""
    out = []
    for line in message.splitlines() or [message]:
        found = _FIELD.search(line)
        path = [p for p in found.group(1).split(".") if p] if found else []
        loc: list[str | int] = [*prefix, *(int(p) if p.isdigit() else p for p in path)]
        out.append({"loc": loc, "msg": line, "type": "value_error"})
    return out


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TwinError)  # registered for TwinError only
    code = status_of(exc)
    headers: dict[str, str] = {}
    if code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if code == 422:
        prefix = tuple(getattr(exc, "loc_prefix", ("body",)))
        body: dict[str, Any] = {"detail": field_errors(str(exc), prefix=prefix)}
    elif isinstance(exc, QuotaError):
        retry = max(1, math.ceil(exc.retry_after_s))
        headers["Retry-After"] = str(retry)
        body = {"detail": str(exc), "quota": exc.quota, "retry_after_s": retry}
    else:
        body = {"detail": str(exc)}
    if code >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(body, status_code=code, headers=headers)


def _finite(x: Any) -> Any:
    """``x`` with every NaN or infinity as its text (JSON has neither)."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own answer to a body that fails validation (422, each bad field with
    its path), but one whose bad value is NaN or infinite (``NaN`` is accepted by
    Python's JSON reader) is shown as text instead of failing to encode (a 500)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)


def install(app: FastAPI) -> None:
    """Register the one handler for every :class:`TwinError`, and the validation one."""
    app.add_exception_handler(TwinError, _handle)
    app.add_exception_handler(RequestValidationError, _handle_validation)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route may answer."""
    words = {
        401: "No key, or a wrong or revoked key",
        403: "The key's role may not do this",
        404: "Not found (also: another tenant's)",
        409: "Conflicts with its state",
        413: "Body too large",
        422: "Bad input: each bad field with its path",
        429: "Over a quota or the request rate",
        503: "Not available now (no live service, or its shadow twin does not run)",
    }
    models: dict[int, type[BaseModel]] = {429: QuotaErrorPublic, 422: ValidationErrorPublic}
    return {
        code: {"model": models.get(code, ErrorPublic), "description": words[code]} for code in codes
    }
