"""The run store: one row per simulation run, through SQLAlchemy (SQLite or PostgreSQL).

A run is recorded ``'queued'`` (an executor will start it) or ``'running'``, and ends as
``'done'`` (with metrics) or ``'failed'`` (with the error message); ``owner`` says who
asked for it (a tenant). Time series of a run are Parquet files in the run's folder;
the store keeps their names. Several processes may share one store (SQLite file or
PostgreSQL database).

A record also keeps what the run used (``city_path``, ``city_files_hash`` recomputed
from the city's files, ``code_commit``) and who runs it (``worker_host``,
``worker_pid``, ``heartbeat_at``, refreshed by the worker). A store opened with
migrations on fails the runs left ``running`` by a worker that is gone
(:meth:`RunStore.fail_stale`), so no record stays ``running`` forever.

The schema changes only through Alembic migrations (``twin/engine/migrations``):
opening a store upgrades its database to the newest revision, unless
``migrate=False`` (the executors' worker processes), which only checks it is there.
Give CityTwin its own database, or its own schema on a shared PostgreSQL server
(``?options=-csearch_path%3Dcitytwin`` in the URL): the store's tables are ``runs``
and Alembic's ``alembic_version``.
"""

from __future__ import annotations

import builtins
import logging
import math
import os
import re
import shutil
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Engine,
    Integer,
    Select,
    String,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from twin.errors import ConfigError, RunError, RunNotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from twin.config import Settings

log = logging.getLogger(__name__)

RunStatus = Literal["queued", "running", "done", "failed"]
STATUSES: tuple[RunStatus, ...] = ("queued", "running", "done", "failed")
MIN_PREFIX_CHARS = 4
_SERIES_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
FIRST_REVISION = "0001"
_MIGRATION_LOCK_KEY = 0x7C17_7E1A  # PostgreSQL advisory lock: one migrator at a time
HEARTBEAT_S = 30.0
"""How often a worker refreshes its run's ``heartbeat_at``."""
STALE_AFTER_S = 600.0
"""A ``running`` run without a sign of life for this long is taken for dead."""
DEAD_PID_GRACE_S = 3 * HEARTBEAT_S
"""A run whose worker pid is gone on this host is failed once its last sign of life is
this old (a live worker in another PID namespace of the same host still heartbeats)."""
STALE = "Stale"
"""Every error of a run failed by :meth:`RunStore.fail_stale` starts with this word."""
_REVISION_COLUMNS = {
    "0002": {"owner", "started_at"},
    "0003": {"city_path", "city_files_hash", "code_commit", "worker_host", "worker_pid",
             "heartbeat_at"},
}  # fmt: skip


class _Base(DeclarativeBase):
    pass


class _Run(_Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)
    owner: Mapped[str | None] = mapped_column(String(200), index=True)
    scenario_name: Mapped[str] = mapped_column(String(200))
    scenario_kind: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    city_name: Mapped[str] = mapped_column(String(200))
    city_hash: Mapped[str] = mapped_column(String(128))
    seed: Mapped[int] = mapped_column(Integer)
    versions: Mapped[dict[str, str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    run_dir: Mapped[str | None] = mapped_column(String(1024))
    series_files: Mapped[list[str] | None] = mapped_column(JSON)
    city_path: Mapped[str | None] = mapped_column(String(1024))
    city_files_hash: Mapped[str | None] = mapped_column(String(128))
    code_commit: Mapped[str | None] = mapped_column(String(64))
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


RUNS_METADATA = _Base.metadata
"""The tables as the code expects them (what the newest migration makes)."""


@dataclass(frozen=True)
class RunRecord:
    """One run as stored; see the module docstring for the life cycle.

    ``city_path`` and ``city_files_hash`` are the city folder the run used and a hash of
    its files recomputed when the run was recorded (equal to ``city_hash``, the
    manifest's, unless the files were edited since the city was built);
    ``code_commit`` is the git commit of the code (``None`` outside a git checkout).
    ``worker_host``, ``worker_pid`` and ``heartbeat_at`` say which process runs it and
    when it last showed life. All are ``None`` for runs recorded before they existed.
    """

    id: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: RunStatus
    owner: str | None
    scenario_name: str
    scenario_kind: str
    spec: dict[str, Any]
    city_name: str
    city_hash: str
    seed: int
    versions: dict[str, str]
    metrics: dict[str, Any] | None
    error: str | None
    run_dir: Path | None
    series_files: tuple[str, ...]
    city_path: Path | None = None
    city_files_hash: str | None = None
    code_commit: str | None = None
    worker_host: str | None = None
    worker_pid: int | None = None
    heartbeat_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-serialisable values (datetimes as ISO 8601 strings)."""
        return cast(dict[str, Any], jsonable({f.name: getattr(self, f.name) for f in fields(self)}))


def jsonable(value: Any) -> Any:
    """Plain JSON values from ``value``: numpy scalars and arrays become Python numbers
    and lists, tuples become lists, paths and datetimes become strings (ISO 8601 for
    datetimes), NaN and infinities become None.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def new_run_id(now: datetime | None = None) -> str:
    """A new sortable run id: UTC time ``YYYYmmddTHHMMSS``, ``-``, six random hex digits."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; every stored time is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _record(row: _Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        created_at=cast(datetime, _utc(row.created_at)),
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
        status=cast(RunStatus, row.status),
        owner=row.owner,
        scenario_name=row.scenario_name,
        scenario_kind=row.scenario_kind,
        spec=dict(row.spec),
        city_name=row.city_name,
        city_hash=row.city_hash,
        seed=row.seed,
        versions=dict(row.versions),
        metrics=dict(row.metrics) if row.metrics is not None else None,
        error=row.error,
        run_dir=Path(row.run_dir) if row.run_dir else None,
        series_files=tuple(row.series_files or ()),
        city_path=Path(row.city_path) if row.city_path else None,
        city_files_hash=row.city_files_hash,
        code_commit=row.code_commit,
        worker_host=row.worker_host,
        worker_pid=row.worker_pid,
        heartbeat_at=_utc(row.heartbeat_at),
    )


def alembic_config(
    connection: Connection | None = None, *, migrations_dir: Path = MIGRATIONS_DIR
) -> Config:
    """Alembic's configuration, made here (no ``alembic.ini``): the migrations shipped
    in the package (the run store's, or another door's ``migrations_dir``), run on
    ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest migration: the schema this code reads and writes."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise ConfigError(f"No run store migrations found in {MIGRATIONS_DIR}.")
    return head


@cache
def known_revisions() -> frozenset[str]:
    """Every revision of the migrations shipped with this code."""
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(r.revision for r in script.walk_revisions())


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def _legacy_revision(connection: Connection) -> str:
    """The revision whose schema a pre-Alembic ``runs`` table has (revision 0002's
    columns were first made by ``create_all`` too, before migrations existed; a table
    made by ``create_all`` of a newer model matches a newer revision)."""
    columns = {c["name"] for c in inspect(connection).get_columns(_Run.__tablename__)}
    found = FIRST_REVISION
    for revision, wanted in _REVISION_COLUMNS.items():  # oldest first
        added = wanted & columns
        if not added:
            break
        if added != wanted or found != str(int(revision) - 1).zfill(4):
            raise ConfigError(
                f"The runs table has {', '.join(sorted(added))} but not all the columns of "
                f"revision {revision} ({', '.join(sorted(wanted))}) or of the revisions "
                "before it, so it matches no known revision; it was made by other code. "
                "Move it away or fix it by hand, then open the store again."
            )
        found = revision
    return found


def migration_engine(url: str, connect_args: dict[str, Any], *, echo: bool = False) -> Engine:
    """An engine whose transactions lock out other migrators at once: SQLite's
    ``BEGIN IMMEDIATE`` (the driver would otherwise run DDL outside any transaction),
    PostgreSQL's advisory lock (taken in :func:`_upgrade`). An in-memory SQLite
    database lives in one connection, kept for the engine's life."""
    if not _is_sqlite_memory(url):
        engine = create_engine(url, connect_args=connect_args, echo=echo)
    else:
        engine = create_engine(url, connect_args=connect_args, echo=echo, poolclass=StaticPool)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _pid_alive(pid: int) -> bool:
    """A process with this id exists on this host (another user's counts)."""
    if pid <= 0:  # 0 and negative ids name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _common_prefix(a: str, b: str | None) -> int:
    if not b:
        return 0
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _is_sqlite_memory(url: str) -> bool:
    parsed = make_url(url)
    db = parsed.database or ""
    return parsed.get_backend_name() == "sqlite" and (
        db in ("", ":memory:") or "mode=memory" in url
    )


def _upgrade(engine: Engine, url: str) -> str:
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config = alembic_config(connection)
            before = current_revision(connection)
            if before is None and inspect(connection).has_table(_Run.__tablename__):
                before = _legacy_revision(connection)
                log.info("run store %s predates migrations: stamped %s", url, before)
                command.stamp(config, before)
            if before != head_revision():
                command.upgrade(config, "head")
                log.info("run store %s upgraded from %s to %s", url, before, head_revision())
            return head_revision()
    except CommandError as exc:
        raise ConfigError(
            f"The run store {url} could not be migrated: {exc}. A revision this code does "
            "not know means the database was upgraded by a newer CityTwin; use that one."
        ) from exc


def migrate_to_head(url: str, *, connect_args: dict[str, Any] | None = None) -> str:
    """Upgrade the run store at ``url`` to the newest revision, in one transaction;
    returns the revision. A database made before migrations (a ``runs`` table without
    Alembic's version table) is stamped with the revision it matches first. Safe to
    call from several processes at once: the others wait, then find nothing to do."""
    engine = migration_engine(url, connect_args or {})
    try:
        return _upgrade(engine, url)
    finally:
        engine.dispose()


class RunStore:
    """Records of runs in a SQL database.

    Parameters
    ----------
    url
        SQLAlchemy URL, e.g. ``sqlite:///path/runs.sqlite`` or ``postgresql+psycopg://...``.
        The parent folder of a SQLite file is created.
    echo
        Log every SQL statement (for debugging).
    migrate
        Upgrade the database to the newest schema revision (creating the tables if
        missing), see :func:`migrate_to_head`. ``False`` only checks that it is at that
        revision (worker processes: no DDL from many processes at once).
    stale_after_s
        With ``migrate=True`` the store fails, once opened, the runs left ``running``
        by a worker that is gone (:meth:`fail_stale` with this age); ``None``: don't.

    Raises
    ------
    ConfigError
        With ``migrate=False``, the database is not at the newest revision; or it
        cannot be migrated (made by a newer CityTwin, or by other code).
    """

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        migrate: bool = True,
        stale_after_s: float | None = STALE_AFTER_S,
    ) -> None:
        parsed = make_url(url)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            connect_args["timeout"] = 30.0  # seconds to wait for another process's write
            db = parsed.database
            if db and db != ":memory:" and not db.startswith("file:"):
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        memory = _is_sqlite_memory(url)
        if memory:  # one private database: it lives in this engine's one connection
            self._engine = migration_engine(url, connect_args, echo=echo)
        else:
            self._engine = create_engine(
                url, echo=echo, connect_args=connect_args, pool_pre_ping=True
            )
        with self._engine.connect() as connection:  # a plain read: no lock when at head
            found = current_revision(connection)
        if found != head_revision():
            if not migrate:
                self._engine.dispose()
                fix = (
                    "open it once with migrations on (RunStore(url) or any 'twin runs' "
                    "command) to upgrade it"
                    if found is None or found in known_revisions()
                    else "it was upgraded by a newer CityTwin; use that one"
                )
                raise ConfigError(
                    f"The run store {url} is at schema revision {found or 'none'}, this "
                    f"code needs {head_revision()}; {fix}."
                )
            if memory:
                _upgrade(self._engine, url)
            else:
                migrate_to_head(url, connect_args=connect_args)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        if migrate and stale_after_s is not None:
            try:
                self.fail_stale(stale_after_s=stale_after_s)
            except Exception:  # a read-only store still lists; it just cannot repair
                log.warning("run store %s: could not check for stale runs", url, exc_info=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> RunStore:
        """The store at ``settings.db_url``."""
        return cls(settings.db_url)

    def close(self) -> None:
        """Close every database connection of this store."""
        self._engine.dispose()

    def _row(self, session: Session, run_id: str) -> _Run:
        row = session.get(_Run, run_id)
        if row is None:
            raise RunNotFoundError(f"No run with id {run_id!r} in the run store {self.url}.")
        return row

    def create_run(
        self,
        *,
        scenario_name: str,
        scenario_kind: str,
        spec: dict[str, Any],
        city_name: str,
        city_hash: str,
        seed: int,
        versions: dict[str, str],
        run_dir: Path | None = None,
        run_id: str | None = None,
        status: Literal["queued", "running"] = "running",
        owner: str | None = None,
        city_path: Path | str | None = None,
        city_files_hash: str | None = None,
        code_commit: str | None = None,
    ) -> str:
        """Record a new run, ``'running'`` (the default) or ``'queued'`` for an executor
        to start, and return its id. ``owner`` is who asked for it (a tenant);
        ``city_path``, ``city_files_hash`` and ``code_commit`` what it uses (see
        :class:`RunRecord`)."""
        if status not in ("queued", "running"):
            raise ConfigError(f"A new run is 'queued' or 'running', not {status!r}.")
        now = datetime.now(UTC)
        run_id = run_id or new_run_id(now)
        if len(run_id) > 32:
            raise ConfigError(f"The run id {run_id!r} is longer than 32 characters.")
        with self._sessions.begin() as session:
            if session.get(_Run, run_id) is not None:
                raise ConfigError(f"A run with id {run_id!r} is already in the run store.")
            session.add(
                _Run(
                    id=run_id,
                    created_at=now,
                    started_at=now if status == "running" else None,
                    finished_at=None,
                    status=status,
                    owner=owner,
                    scenario_name=scenario_name,
                    scenario_kind=scenario_kind,
                    spec=jsonable(spec),
                    city_name=city_name,
                    city_hash=city_hash,
                    seed=int(seed),
                    versions={str(k): str(v) for k, v in versions.items()},
                    run_dir=str(run_dir) if run_dir is not None else None,
                    series_files=[],
                    city_path=str(city_path) if city_path is not None else None,
                    city_files_hash=city_files_hash,
                    code_commit=code_commit,
                )
            )
        log.info("run %s created (%s, %s)", run_id, scenario_kind, scenario_name)
        return run_id

    def mark_running(self, run_id: str) -> None:
        """A queued run has started (its worker process is up)."""
        with self._sessions.begin() as session:
            row = self._row(session, run_id)
            if row.status != "queued":
                raise RunError(f"Run {run_id} is {row.status}; only a queued run can start.")
            row.status = "running"
            row.started_at = datetime.now(UTC)
        log.info("run %s started", run_id)

    def mark_done(
        self, run_id: str, *, metrics: dict[str, Any], series_files: Sequence[str] = ()
    ) -> None:
        """Set the run ``'done'`` with its metrics; ``series_files`` are added to its list."""
        with self._sessions.begin() as session:
            row = self._row(session, run_id)
            row.status = "done"
            row.finished_at = datetime.now(UTC)
            row.metrics = jsonable(metrics)
            known = builtins.list(row.series_files or [])
            row.series_files = known + [f for f in series_files if f not in known]
        log.info("run %s done", run_id)

    def mark_failed(self, run_id: str, *, error: str) -> None:
        """Set the run ``'failed'`` with ``error``; a second failure appends its message.

        A run already ``'done'`` stays done (a warning is logged).
        """
        with self._sessions.begin() as session:
            row = self._row(session, run_id)
            if row.status == "done":
                log.warning("run %s is done; not marking it failed (%s)", run_id, error)
                return
            if row.error and row.error != error:
                error = f"{row.error}\n{error}"
            row.status = "failed"
            row.finished_at = datetime.now(UTC)
            row.error = error
        log.info("run %s failed: %s", run_id, error)

    def claim(self, run_id: str) -> bool:
        """Start a queued run for this caller only: ``queued`` -> ``running`` in one
        conditional update, so two dispatchers never start the same run. ``False``
        when the run is no longer queued (cancelled, or taken by another dispatcher)."""
        with self._sessions.begin() as session:
            changed = session.execute(
                update(_Run)
                .where(_Run.id == run_id, _Run.status == "queued")
                .values(status="running", started_at=datetime.now(UTC))
            ).rowcount  # type: ignore[attr-defined]
        if changed:
            log.info("run %s started", run_id)
        return bool(changed)

    def fail_if(self, run_id: str, status: Literal["queued", "running"], *, error: str) -> bool:
        """Set the run ``'failed'`` with ``error`` only if it is still ``status``, in one
        conditional update (cancelling a queued run while a dispatcher may claim it;
        failing a run a dead server left running). ``True`` when it was changed."""
        with self._sessions.begin() as session:
            changed = session.execute(
                update(_Run)
                .where(_Run.id == run_id, _Run.status == status)
                .values(status="failed", finished_at=datetime.now(UTC), error=error)
            ).rowcount  # type: ignore[attr-defined]
        if changed:
            log.info("run %s failed: %s", run_id, error)
        return bool(changed)

    def requeue(self, run_id: str) -> bool:
        """Put a running run back in the queue (its worker was stopped on purpose, at a
        server's orderly shutdown): ``running`` -> ``queued``. A run starts from scratch
        and the same spec and seed give the same metrics, so nothing is lost. ``False``
        when it was not running."""
        with self._sessions.begin() as session:
            changed = session.execute(
                update(_Run)
                .where(_Run.id == run_id, _Run.status == "running")
                .values(status="queued", started_at=None)
            ).rowcount  # type: ignore[attr-defined]
        if changed:
            log.info("run %s queued again", run_id)
        return bool(changed)

    # ------------------------------------------------------------------ liveness
    def set_worker(self, run_id: str, *, pid: int, host: str | None = None) -> None:
        """Record the process that runs the run (``host``: this machine's name by
        default); counts as a heartbeat."""
        with self._sessions.begin() as session:
            row = self._row(session, run_id)
            row.worker_pid = int(pid)
            row.worker_host = host if host is not None else socket.gethostname()
            row.heartbeat_at = datetime.now(UTC)

    def heartbeat(self, run_id: str, *, at: datetime | None = None) -> bool:
        """The run's worker is alive (``at``, default now); ``False`` when the run is
        no longer ``running`` (nothing is changed then)."""
        with self._sessions.begin() as session:
            changed = session.execute(
                update(_Run)
                .where(_Run.id == run_id, _Run.status == "running")
                .values(heartbeat_at=at or datetime.now(UTC))
            ).rowcount  # type: ignore[attr-defined]
        return bool(changed)

    def fail_stale(
        self, *, stale_after_s: float = STALE_AFTER_S, now: datetime | None = None
    ) -> builtins.list[str]:
        """Fail the ``running`` runs whose worker is gone; returns their ids.

        A run is stale when its last sign of life (``heartbeat_at``, else
        ``started_at``) is older than ``stale_after_s``, or when its worker ran on this
        host, that process no longer exists and the last sign of life is older than
        :data:`DEAD_PID_GRACE_S`. Each is failed in one conditional update (a run that
        ends or shows life meanwhile is left alone), its error starting with
        :data:`STALE`.
        """
        now = now or datetime.now(UTC)
        host = socket.gethostname()
        with self._sessions() as session:
            rows = session.execute(
                select(_Run.id, _Run.worker_host, _Run.worker_pid, _Run.heartbeat_at,
                       _Run.started_at, _Run.created_at).where(_Run.status == "running")
            ).all()  # fmt: skip
        failed = []
        for run_id, w_host, w_pid, beat, started, created in rows:
            last = cast(datetime, _utc(beat or started or created))
            age_s = (now - last).total_seconds()
            who = f"pid {w_pid} on {w_host}" if w_pid is not None else "no worker recorded"
            if age_s > stale_after_s:
                error = (
                    f"{STALE}: the run was still 'running' but its worker ({who}) showed no "
                    f"sign of life since {last:%Y-%m-%d %H:%M:%S} UTC, over "
                    f"{stale_after_s / 60:g} min before {now:%Y-%m-%d %H:%M:%S} UTC; it is "
                    "taken for dead (killed, or its machine went away). Submit it again."
                )
            elif (w_host == host and w_pid is not None and age_s > DEAD_PID_GRACE_S
                  and not _pid_alive(w_pid)):  # fmt: skip
                error = (
                    f"{STALE}: the run was still 'running' but its worker process ({who}) "
                    f"is gone, last seen {last:%Y-%m-%d %H:%M:%S} UTC (killed before it "
                    "could record its end). Submit it again."
                )
            else:
                continue
            with self._sessions.begin() as session:
                beat_now = (
                    _Run.heartbeat_at.is_(None) if beat is None else _Run.heartbeat_at == beat
                )
                changed = session.execute(
                    update(_Run)
                    .where(_Run.id == run_id, _Run.status == "running", beat_now)
                    .values(status="failed", finished_at=now, error=error)
                ).rowcount  # type: ignore[attr-defined]
            if changed:
                log.warning("run %s failed: %s", run_id, error)
                failed.append(run_id)
        return failed

    # ------------------------------------------------------------------ removal
    def ended_before(
        self, cutoff: datetime, *, status: str | None = None
    ) -> builtins.list[RunRecord]:
        """The runs that ended (``done`` or ``failed``, or only ``status``) and were
        created before ``cutoff``, oldest first."""
        if status is not None and status not in ("done", "failed"):
            raise ConfigError(
                f"Only ended runs are removed: status 'done' or 'failed', not {status!r}."
            )
        ended = (status,) if status is not None else ("done", "failed")
        query = (
            select(_Run)
            .where(_Run.status.in_(ended), _Run.created_at < cutoff)
            .order_by(_Run.created_at, _Run.id)
        )
        with self._sessions() as session:
            return [_record(row) for row in session.scalars(query)]

    def delete(self, run_id: str) -> RunRecord:
        """Remove an ended run's record and its run folder; returns the record removed.

        The folder is removed only when it is named after the run (the executors'
        ``<runs dir>/<run id>``): a record pointing elsewhere keeps that folder (logged).

        Raises
        ------
        RunNotFoundError
            No such run (ids and unique prefixes as in :meth:`get`).
        RunError
            The run is queued or running: cancel it first.
        """
        record = self.get(run_id)
        if record.status not in ("done", "failed"):
            raise RunError(
                f"Run {record.id} is {record.status}; only a done or failed run is removed "
                "(cancel it first)."
            )
        with self._sessions.begin() as session:
            session.execute(
                _Run.__table__.delete().where(  # type: ignore[attr-defined]
                    _Run.id == record.id, _Run.status.in_(("done", "failed"))
                )
            )
        folder = record.run_dir
        if folder is not None and folder.name == record.id and folder.is_dir():
            shutil.rmtree(folder)
            log.info("run %s removed with its folder %s", record.id, folder)
        elif folder is not None and folder.exists():
            log.warning("run %s removed; its folder %s is not named after it: kept",
                        record.id, folder)  # fmt: skip
        else:
            log.info("run %s removed (no run folder)", record.id)
        return record

    def short_ids(self, run_ids: Sequence[str]) -> dict[str, str]:
        """The shortest prefix (at least :data:`MIN_PREFIX_CHARS` characters) of each id
        that no other run in the store shares: what :meth:`get` accepts."""
        out = {}
        with self._sessions() as session:
            for run_id in run_ids:
                before = session.scalar(
                    select(_Run.id).where(_Run.id < run_id).order_by(_Run.id.desc()).limit(1)
                )
                after = session.scalar(
                    select(_Run.id).where(_Run.id > run_id).order_by(_Run.id).limit(1)
                )
                common = max(_common_prefix(run_id, other) for other in (before, after, ""))
                out[run_id] = run_id[: max(MIN_PREFIX_CHARS, common + 1)]
        return out

    def set_run_dir(self, run_id: str, run_dir: Path) -> None:
        """Record the folder that holds the run's files."""
        with self._sessions.begin() as session:
            self._row(session, run_id).run_dir = str(run_dir)

    def get(self, run_id: str) -> RunRecord:
        """The run with id ``run_id``, or with a unique id prefix of at least 4 characters.

        Raises
        ------
        RunNotFoundError
            No run matches, or the prefix matches several runs.
        """
        with self._sessions() as session:
            row = session.get(_Run, run_id)
            if row is not None:
                return _record(row)
            if len(run_id) < MIN_PREFIX_CHARS:
                raise RunNotFoundError(
                    f"No run with id {run_id!r} in the run store {self.url} "
                    f"(an id prefix needs at least {MIN_PREFIX_CHARS} characters)."
                )
            escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = select(_Run).where(_Run.id.like(f"{escaped}%", escape="\\"))
            rows = session.scalars(query.order_by(_Run.id.desc()).limit(6)).all()
        if not rows:
            raise RunNotFoundError(f"No run id starts with {run_id!r} in the run store {self.url}.")
        if len(rows) > 1:
            ids = ", ".join(r.id for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise RunNotFoundError(
                f"The id prefix {run_id!r} matches several runs ({ids}); give more characters."
            )
        return _record(rows[0])

    @staticmethod
    def _filters(
        query: Select[Any], *, status: str | None, kind: str | None, owner: str | None
    ) -> Select[Any]:
        if status is not None and status not in STATUSES:
            raise ConfigError(
                f"Unknown run status {status!r}; allowed values are {', '.join(STATUSES)}."
            )
        if status is not None:
            query = query.where(_Run.status == status)
        if kind is not None:
            query = query.where(_Run.scenario_kind == kind)
        if owner is not None:
            query = query.where(_Run.owner == owner)
        return query

    def list(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        status: str | None = None,
        kind: str | None = None,
        owner: str | None = None,
    ) -> builtins.list[RunRecord]:
        """Runs newest first (by creation; queued runs included), optionally of one
        status, scenario kind and owner: at most ``limit``, after skipping ``offset``.
        :meth:`count` with the same filters gives the total for paging."""
        if limit < 1:
            raise ConfigError(f"The run list limit must be at least 1, not {limit}.")
        if offset < 0:
            raise ConfigError(f"The run list offset must be at least 0, not {offset}.")
        query = select(_Run).order_by(_Run.created_at.desc(), _Run.id.desc())
        query = self._filters(query, status=status, kind=kind, owner=owner)
        with self._sessions() as session:
            return [_record(row) for row in session.scalars(query.offset(offset).limit(limit))]

    def count(
        self, *, status: str | None = None, kind: str | None = None, owner: str | None = None
    ) -> int:
        """How many runs :meth:`list` would page through with these filters."""
        query = self._filters(
            select(func.count()).select_from(_Run), status=status, kind=kind, owner=owner
        )
        with self._sessions() as session:
            return int(session.scalar(query) or 0)

    def write_series(self, run_id: str, name: str, frame: pd.DataFrame) -> Path:
        """Write ``frame`` to ``<run_dir>/<name>.parquet`` and record the file; return its path."""
        if not _SERIES_NAME.fullmatch(name):
            raise ConfigError(
                f"The series name {name!r} is not a plain file name "
                "(letters, digits, '_', '.', '-'; not starting with '.')."
            )
        record = self.get(run_id)
        if record.run_dir is None:
            raise RunError(
                f"Run {record.id} has no run folder, so series {name!r} cannot be written; "
                "set one with create_run(run_dir=...) or set_run_dir()."
            )
        file_name = f"{name}.parquet"
        path = record.run_dir / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{file_name}.{uuid.uuid4().hex[:8]}.tmp")
        frame.to_parquet(partial, engine="pyarrow")
        partial.replace(path)
        with self._sessions.begin() as session:
            row = self._row(session, record.id)
            known = builtins.list(row.series_files or [])
            if file_name not in known:
                row.series_files = [*known, file_name]
        log.debug("run %s: wrote series %s (%d rows)", record.id, path, len(frame))
        return path

    def read_series(self, run_id: str, name: str) -> pd.DataFrame:
        """The series ``name`` written by :meth:`write_series` for the run."""
        import pandas as pd

        record = self.get(run_id)
        file_name = f"{name}.parquet"
        if record.run_dir is None or file_name not in record.series_files:
            available = ", ".join(f.removesuffix(".parquet") for f in record.series_files)
            raise RunError(
                f"Run {record.id} has no series {name!r}; available: {available or 'none'}."
            )
        path = record.run_dir / file_name
        if not path.is_file():
            raise RunError(f"The series file {path} of run {record.id} is missing.")
        return pd.read_parquet(path, engine="pyarrow")
