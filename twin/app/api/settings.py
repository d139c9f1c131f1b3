"""The API's settings, from the environment (``CITYTWIN_*``) through pydantic-settings.

Outside development (``CITYTWIN_ENVIRONMENT=production``, or ``staging``) the server
refuses to start with the placeholder secret: the secret keys the hash of every API
key and the de-identification salts, so a known secret would let anyone who reads the
database test guessed keys and undo the vehicle-id hashes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twin.config import Settings, load_settings
from twin.errors import ConfigError

DEFAULT_SECRET = "changethis-development-only"
MIN_SECRET_CHARS = 32
Environment = Literal["development", "staging", "production"]


class ApiSettings(BaseSettings):
    """Everything ``twin serve`` and :func:`twin.app.api.create_app` need.

    Each field is read from ``CITYTWIN_<FIELD>`` (``CITYTWIN_SECRET_KEY``,
    ``CITYTWIN_RUN_WORKERS``, ...); ``data`` and ``db`` are the same
    ``CITYTWIN_DATA`` / ``CITYTWIN_DB`` the CLI reads.
    """

    model_config = SettingsConfigDict(env_prefix="CITYTWIN_", extra="ignore", frozen=True)

    environment: Environment = "development"
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    data: Path | None = None
    db: str | None = None
    run_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=0, le=256)
    """Runs at once (worker processes); 0: this process runs none (the queue waits for
    a server that does)."""
    run_nice: int = Field(default=10, ge=0, le=19)
    """How much lower the run workers' CPU priority is than the server's (so status
    reads and session steps stay quick while every core simulates)."""
    max_body_bytes: int = Field(default=1_000_000, ge=1_000, le=100_000_000)
    """The largest request body (a scenario, a run request)."""
    max_city_upload_bytes: int = Field(default=50_000_000, ge=1_000, le=2_000_000_000)
    """The largest city archive (compressed); unpacked it may be 4x that."""
    progress_every_s: float = Field(default=1.0, gt=0.0, le=60.0)
    """How often a running run's progress is written to the database."""
    stream_poll_s: float = Field(default=0.5, gt=0.0, le=10.0)
    """How often a progress stream looks for news."""

    @model_validator(mode="after")
    def _no_default_secret_outside_development(self) -> ApiSettings:
        secret = self.secret_key.get_secret_value()
        if self.environment != "development" and (
            secret == DEFAULT_SECRET or len(secret) < MIN_SECRET_CHARS
        ):
            raise ValueError(
                f"CITYTWIN_SECRET_KEY must be set to a secret of at least {MIN_SECRET_CHARS} "
                f"characters when CITYTWIN_ENVIRONMENT={self.environment!r} (the placeholder "
                "is allowed only in development); e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return self

    def engine_settings(self) -> Settings:
        """The data dir and run store URL the engine uses (the CLI's rules)."""
        return load_settings(data_dir=self.data, db_url=self.db)

    @property
    def secret(self) -> bytes:
        return self.secret_key.get_secret_value().encode()


def load_api_settings(**overrides: object) -> ApiSettings:
    """Settings from ``overrides``, else the environment; a bad value is a
    :class:`ConfigError` naming the variable, the value and what is allowed."""
    try:
        return ApiSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            name = f"CITYTWIN_{loc.upper()}" if loc else "settings"
            value = err.get("input")
            shown = "" if loc == "" or isinstance(value, dict) else f" = {value!r}"
            problems.append(f"{name}{shown}: {err['msg']}")
        raise ConfigError("The API settings are not valid: " + "; ".join(problems)) from None
