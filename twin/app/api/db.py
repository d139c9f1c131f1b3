"""The door's own tables: tenants and their quotas, API keys, the API's runs, usage
and the audit log. They live at the door (the app layer), never in the engine.

They share the run store's database (``CITYTWIN_DB``; a SQLite file in the data dir by
default, PostgreSQL by URL) but have their own Alembic environment
(``twin/app/api/migrations``) and version table (:data:`VERSION_TABLE`), so the run
store and the door migrate independently. Opening an :class:`ApiDatabase` upgrades it
to the newest revision (one migrator at a time: SQLite's ``BEGIN IMMEDIATE``, a
PostgreSQL advisory lock).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from twin.engine.store import alembic_config, migration_engine
from twin.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "citytwin_api_version"
_MIGRATION_LOCK_KEY = 0x7C17_A9E1  # PostgreSQL advisory lock (the run store uses another)


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    """An organisation with keys (a city, a fire or police service, a lab) and its
    quotas. ``salt`` keys its de-identification hashes (with the server secret)."""

    __tablename__ = "api_tenants"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    salt: Mapped[str] = mapped_column(String(64))
    concurrent_runs: Mapped[int] = mapped_column(Integer)
    concurrent_sessions: Mapped[int] = mapped_column(Integer)
    vehicle_s_per_day: Mapped[float] = mapped_column(Float)
    max_city_signals: Mapped[int] = mapped_column(Integer)
    max_session_s: Mapped[float] = mapped_column(Float)
    requests_per_min: Mapped[int] = mapped_column(Integer)


class ApiKey(Base):
    """An API key: only its keyed hash (HMAC-SHA256 with the server secret) is stored,
    with a visible prefix to tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("api_tenants.name"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replaced_by: Mapped[str | None] = mapped_column(String(32))


class ApiRun(Base):
    """A run the API accepted: whose, the request to rebuild it from (the queue is the
    run store's ``queued`` rows; this says which are the API's), its cost, progress and
    a cancel request (read by the dispatcher, which may sit in another process)."""

    __tablename__ = "api_runs"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | ended
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    day: Mapped[str] = mapped_column(String(10), index=True)  # UTC day it is charged to
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    estimate_vehicle_s: Mapped[float] = mapped_column(Float)
    charged_vehicle_s: Mapped[float | None] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress_done_s: Mapped[float | None] = mapped_column(Float)
    progress_total_s: Mapped[float | None] = mapped_column(Float)


class SessionUsage(Base):
    """Vehicle-seconds an interactive session used (recorded by the sessions router)."""

    __tablename__ = "api_session_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    day: Mapped[str] = mapped_column(String(10), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    vehicle_s: Mapped[float] = mapped_column(Float)


class AuditEntry(Base):
    """One export (or key or tenant change): who, which tenant, what, with which
    parameters, and the SHA-256 of what was handed out."""

    __tablename__ = "api_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")


API_METADATA = Base.metadata
"""The door's tables as the code expects them (what the newest migration makes)."""


def _alembic_config(connection: Connection | None = None) -> Config:
    return alembic_config(connection, migrations_dir=MIGRATIONS_DIR)


@cache
def head_revision() -> str:
    """The newest migration of the door's tables."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise ConfigError(f"No API migrations found in {MIGRATIONS_DIR}.")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision of the door's tables in this database (``None``: never migrated)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def now_utc() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes; every stored time is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


class ApiDatabase:
    """The door's tables in the run store's database.

    Parameters
    ----------
    url
        The SQLAlchemy URL (the run store's). An in-memory SQLite database is refused:
        the run store and the door would each get their own.
    migrate
        Upgrade to the newest revision (creating the tables); ``False`` only checks.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        parsed = make_url(url)
        connect_args: dict[str, Any] = {}
        self.url = url
        if parsed.get_backend_name() == "sqlite":
            db = parsed.database or ""
            if db in ("", ":memory:") or "mode=memory" in url:
                raise ConfigError(
                    f"The API needs a database the run store shares; {url!r} is an "
                    "in-memory SQLite database. Use a file (sqlite:///PATH) or PostgreSQL."
                )
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            connect_args["timeout"] = 30.0
        self.engine: Engine = create_engine(
            url, connect_args=connect_args, pool_pre_ping=True, pool_size=10, max_overflow=20
        ) if parsed.get_backend_name() != "sqlite" else create_engine(
            url, connect_args=connect_args
        )  # fmt: skip
        if self.engine.dialect.name == "sqlite":

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                # readers never wait for a writer (run status polls while workers write)
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

        with self.engine.connect() as connection:
            found = current_revision(connection)
        if found != head_revision():
            if not migrate:
                self.engine.dispose()
                raise ConfigError(
                    f"The API tables in {url} are at revision {found or 'none'}, this code "
                    f"needs {head_revision()}; start the server once (it upgrades them)."
                )
            self._upgrade(connect_args)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _upgrade(self, connect_args: dict[str, Any]) -> None:
        engine = migration_engine(self.url, connect_args)  # one migrator at a time
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                before = current_revision(connection)
                if before != head_revision():
                    command.upgrade(_alembic_config(connection), "head")
                    log.info("API tables in %s upgraded from %s to %s", self.url, before,
                             head_revision())  # fmt: skip
        except CommandError as exc:
            raise ConfigError(
                f"The API tables in {self.url} could not be migrated: {exc}. A revision "
                "this code does not know means a newer CityTwin upgraded them; use that one."
            ) from exc
        finally:
            engine.dispose()

    def close(self) -> None:
        self.engine.dispose()
