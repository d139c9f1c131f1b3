"""The API's run queue: booking runs (with the quota checks), the
:class:`~twin.engine.executors.QueueSource` the dispatcher serves, cancellation and
progress, all through the database, so an HTTP worker process and the dispatcher (in
the serving process) need share nothing else.

The queue itself is the run store's ``queued`` rows; ``api_runs`` says which of them
the API accepted, for which tenant, and the request to rebuild each one from.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from twin.app.api.db import ApiDatabase, ApiRun, now_utc
from twin.app.api.errors import ConflictError, NotFoundError
from twin.app.api.quotas import admit_run, today
from twin.config import Settings
from twin.engine.executors import CANCELLED, RunRequest, record_request
from twin.engine.store import RunRecord, RunStore, new_run_id
from twin.engine.sumo_tools import iter_xml_elements
from twin.errors import RunNotFoundError

log = logging.getLogger(__name__)


def request_to_json(request: RunRequest) -> dict[str, Any]:
    return dataclasses.asdict(request)


def request_from_json(data: dict[str, Any]) -> RunRequest:
    known = {f.name for f in dataclasses.fields(RunRequest)}
    values = {k: v for k, v in data.items() if k in known}
    values["extra_additional"] = tuple(values.get("extra_additional", ()))
    return RunRequest(**values)


def vehicle_seconds(run_dir: Path | None) -> float:
    """What a run cost: the sum of SUMO's trip durations (unfinished trips included)."""
    if run_dir is None or not (run_dir / "tripinfo.xml").is_file():
        return 0.0
    trips = iter_xml_elements(run_dir / "tripinfo.xml", "tripinfo")
    try:
        return float(sum(float(t.get("duration", 0.0)) for t in trips))
    except (OSError, SyntaxError, ValueError):  # a truncated file (a crash): charge nothing
        log.warning("could not read the trips of %s to charge them", run_dir)
        return 0.0


class RunQueue:
    """Runs the API accepted (see the module docstring).

    Parameters
    ----------
    db, store, settings
        The door's tables, the run store, the data dir.
    progress_every_s
        How often a running run's progress is written.
    """

    def __init__(self, db: ApiDatabase, store: RunStore, settings: Settings, *,
                 progress_every_s: float = 1.0) -> None:  # fmt: skip
        self.db = db
        self.store = store
        self.settings = settings
        self.progress_every_s = progress_every_s
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the API's side
    def submit(
        self, *, tenant: str, key_id: str, request: RunRequest, estimate_vehicle_s: float
    ) -> str:
        """Book the run against the tenant's quotas and queue it; returns its id."""
        run_id = new_run_id()
        day = today()
        with self.db.sessions.begin() as session:
            admit_run(session, tenant, estimate_vehicle_s=estimate_vehicle_s, day=day)
            session.add(ApiRun(
                run_id=run_id, tenant=tenant, key_id=key_id, state="queued",
                submitted_at=now_utc(), day=day, request=request_to_json(request),
                estimate_vehicle_s=float(estimate_vehicle_s), charged_vehicle_s=None,
                cancel_requested=False, progress_done_s=None, progress_total_s=None,
            ))  # fmt: skip
        try:
            record_request(self.store, self.settings, request, run_id=run_id)
        except BaseException:
            with self.db.sessions.begin() as session:
                row = session.get(ApiRun, run_id)
                if row is not None:
                    session.delete(row)
            raise
        return run_id

    def row(self, tenant: str, run_id: str) -> ApiRun:
        """The tenant's run; another tenant's reads exactly like one that does not exist."""
        with self.db.sessions() as session:
            row = session.get(ApiRun, run_id)
        if row is None or row.tenant != tenant:
            raise NotFoundError(f"No run {run_id!r}.")
        return row

    def record(self, tenant: str, run_id: str) -> tuple[RunRecord, ApiRun]:
        row = self.row(tenant, run_id)
        try:
            return self.store.get(run_id), row
        except RunNotFoundError:
            raise NotFoundError(f"No run {run_id!r}.") from None

    def position(self, row: ApiRun) -> int | None:
        """0 for the next run to start; ``None`` when the run is not waiting."""
        if row.state != "queued":
            return None
        with self.db.sessions() as session:
            ahead = session.scalar(
                select(func.count()).select_from(ApiRun).where(
                    ApiRun.state == "queued",
                    or_(ApiRun.submitted_at < row.submitted_at,
                        and_(ApiRun.submitted_at == row.submitted_at, ApiRun.run_id < row.run_id)),
                )
            )  # fmt: skip
        return int(ahead or 0)

    def page(
        self, tenant: str, *, offset: int, limit: int, status: str | None
    ) -> tuple[list[RunRecord], int]:
        """The tenant's runs, newest first, and how many there are."""
        return (self.store.list(offset=offset, limit=limit, status=status, owner=tenant),
                self.store.count(status=status, owner=tenant))  # fmt: skip

    def cancel(self, tenant: str, run_id: str) -> RunRecord:
        """Drop a queued run now, or ask the dispatcher to stop a running one."""
        record, _row = self.record(tenant, run_id)
        if record.status in ("done", "failed"):
            raise ConflictError(f"Run {run_id} is {record.status}; there is nothing to cancel.")
        if self.store.fail_if(run_id, "queued", error=f"{CANCELLED} before it started."):
            self.ended(self.store.get(run_id))
            return self.store.get(run_id)
        with self.db.sessions.begin() as session:
            session.execute(update(ApiRun).where(ApiRun.run_id == run_id)
                            .values(cancel_requested=True))  # fmt: skip
        return self.store.get(run_id)

    # ------------------------------------------------------------------ QueueSource
    def waiting(self, limit: int) -> Sequence[tuple[str, RunRequest]]:
        with self.db.sessions() as session:
            rows = session.execute(
                select(ApiRun.run_id, ApiRun.request).where(ApiRun.state == "queued")
                .order_by(ApiRun.submitted_at, ApiRun.run_id).limit(limit)
            ).all()  # fmt: skip
        return [(run_id, request_from_json(dict(request))) for run_id, request in rows]

    def unfinished(self) -> Sequence[str]:
        with self.db.sessions() as session:
            ids = list(session.scalars(select(ApiRun.run_id).where(ApiRun.state != "ended")))
        out = []
        for run_id in ids:
            try:
                self.store.get(run_id)
                out.append(run_id)
            except RunNotFoundError:  # booked, then the server died before recording it
                with self.db.sessions.begin() as session:
                    row = session.get(ApiRun, run_id)
                    if row is not None:
                        session.delete(row)
        return out

    def started(self, run_id: str) -> None:
        with self.db.sessions.begin() as session:
            session.execute(update(ApiRun).where(ApiRun.run_id == run_id).values(state="running"))

    def cancelling(self, run_ids: Sequence[str]) -> Sequence[str]:
        if not run_ids:
            return []
        with self.db.sessions() as session:
            return list(session.scalars(select(ApiRun.run_id).where(
                ApiRun.run_id.in_(list(run_ids)), ApiRun.cancel_requested.is_(True))))  # fmt: skip

    def progress(self, run_id: str, done_s: float, total_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._written.get(run_id, -1e9)
            if now - last < self.progress_every_s and done_s < total_s:
                return
            self._written[run_id] = now
        with self.db.sessions.begin() as session:
            session.execute(update(ApiRun).where(ApiRun.run_id == run_id)
                            .values(progress_done_s=done_s, progress_total_s=total_s))  # fmt: skip

    def ended(self, record: RunRecord) -> None:
        with self._lock:
            self._written.pop(record.id, None)
        values: dict[str, Any]
        if record.status == "queued":
            values = {"state": "queued", "progress_done_s": None}
        else:
            values = {"state": "ended", "charged_vehicle_s": vehicle_seconds(record.run_dir)}
        with self.db.sessions.begin() as session:
            session.execute(update(ApiRun).where(ApiRun.run_id == record.id).values(**values))
