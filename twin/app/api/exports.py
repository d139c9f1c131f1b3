"""What leaves the door: a run's series (Parquet or CSV), its trips, its summary
report, each as the caller's role may see it (:data:`~twin.app.api.policy.EXPORT_VIEW`,
:mod:`twin.app.api.deid`) and each written to the audit log with the SHA-256 of the
bytes handed out.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import func, select

from twin.app.api.db import ApiDatabase, AuditEntry, Tenant, now_utc, utc
from twin.app.api.deid import Pseudonyms, available, deidentify
from twin.app.api.errors import ConflictError, NotFoundError
from twin.app.api.policy import EXPORT_VIEW, ExportView
from twin.engine.store import RunRecord, RunStore
from twin.engine.sumo_tools import iter_xml_elements

log = logging.getLogger(__name__)

Format = Literal["parquet", "csv"]
MEDIA = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8"}
TRIPS = "trips"
_REPORT_LOCK = threading.Lock()  # matplotlib is not thread-safe


@dataclass(frozen=True)
class Export:
    content: bytes
    media_type: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class Who:
    """Who asks (the principal, without the door's handle)."""

    tenant: str
    role: str
    key_id: str

    @property
    def view(self) -> ExportView:
        return EXPORT_VIEW[self.role]


def audit(db: ApiDatabase, who: Who, *, action: str, target: str, parameters: dict[str, Any],
          content: bytes = b"", note: str = "") -> None:  # fmt: skip
    """One audit row: who, which tenant, what, parameters, the content's hash."""
    with db.sessions.begin() as session:
        session.add(AuditEntry(
            at=now_utc(), tenant=who.tenant, key_id=who.key_id, role=who.role, action=action,
            target=target, parameters=parameters,
            content_sha256=hashlib.sha256(content).hexdigest(), size_bytes=len(content),
            note=note,
        ))  # fmt: skip


def audit_page(
    db: ApiDatabase, *, tenant: str | None, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    query = select(AuditEntry)
    count = select(func.count()).select_from(AuditEntry)
    if tenant is not None:
        query = query.where(AuditEntry.tenant == tenant)
        count = count.where(AuditEntry.tenant == tenant)
    with db.sessions() as session:
        rows = session.scalars(query.order_by(AuditEntry.id.desc()).offset(offset).limit(limit))
        data = [{"id": r.id, "at": utc(r.at), "tenant": r.tenant, "key_id": r.key_id,
                 "role": r.role, "action": r.action, "target": r.target,
                 "parameters": r.parameters, "content_sha256": r.content_sha256,
                 "size_bytes": r.size_bytes} for r in rows]  # fmt: skip
        return data, int(session.scalar(count) or 0)


def trips_frame(run_dir: Path) -> pd.DataFrame:
    """One row per vehicle from SUMO's tripinfo (unfinished trips included)."""
    rows = []
    for t in iter_xml_elements(run_dir / "tripinfo.xml", "tripinfo"):
        arrival = float(t.get("arrival", -1.0))
        rows.append({
            "vehicle": t["id"], "vtype": t.get("vType", ""),
            "depart_s": float(t.get("depart", 0.0)),
            "arrival_s": arrival if arrival >= 0 else float("nan"),
            "duration_s": float(t.get("duration", 0.0)),
            "route_length_m": float(t.get("routeLength", 0.0)),
            "time_loss_s": float(t.get("timeLoss", 0.0)),
            "waiting_s": float(t.get("waitingTime", 0.0)),
            "stops": int(float(t.get("waitingCount", 0))),
            "depart_lane": t.get("departLane", ""), "arrival_lane": t.get("arrivalLane", ""),
        })  # fmt: skip
    return pd.DataFrame(rows)


def names(record: RunRecord, view: ExportView) -> list[str]:
    """The series of a run this view may download."""
    out = [f.removesuffix(".parquet") for f in record.series_files]
    if record.run_dir is not None and (record.run_dir / "tripinfo.xml").is_file():
        out.append(TRIPS)
    return [n for n in out if available(n, view)]


def _done(record: RunRecord) -> None:
    if record.status != "done":
        raise ConflictError(
            f"Run {record.id} is {record.status}; its outputs are there once it is done."
        )


def _pseudonyms(db: ApiDatabase, secret: bytes, tenant: str) -> Pseudonyms:
    with db.sessions() as session:
        row = session.get(Tenant, tenant)
        salt = row.salt if row is not None else tenant
    return Pseudonyms(secret=secret, salt=salt)


def _frame(store: RunStore, record: RunRecord, name: str) -> pd.DataFrame:
    if name == TRIPS and record.run_dir is not None:
        return trips_frame(record.run_dir)
    return store.read_series(record.id, name)


def encode(frame: pd.DataFrame, fmt: Format) -> bytes:
    if fmt == "csv":
        text: str = frame.to_csv(index=False)
        return text.encode("utf-8")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def export_series(
    db: ApiDatabase, store: RunStore, secret: bytes, who: Who, record: RunRecord, *,
    name: str, fmt: Format,
) -> Export:  # fmt: skip
    """A series as ``who`` may see it, audited."""
    _done(record)
    if name not in names(record, who.view):
        offered = ", ".join(names(record, who.view)) or "none"
        raise NotFoundError(
            f"Run {record.id} has no series {name!r} for you; available: {offered}."
        )
    frame = deidentify(name, _frame(store, record, name), who.view,
                       _pseudonyms(db, secret, who.tenant))  # fmt: skip
    content = encode(frame, fmt)
    sha = hashlib.sha256(content).hexdigest()
    parameters = {"series": name, "format": fmt, "view": who.view, "rows": len(frame)}
    audit(db, who, action="export:series", target=record.id, content=content,
          parameters=parameters)  # fmt: skip
    return Export(content, MEDIA[fmt], f"{record.id}_{name}.{fmt}", sha)


def export_report(
    db: ApiDatabase, store: RunStore, secret: bytes, who: Who, record: RunRecord
) -> Export:
    """The run's summary page (HTML with its plot inside), from the series ``who`` may
    see, audited."""
    from viz.summary import write_summary  # noqa: PLC0415 - matplotlib: only for a report

    _done(record)
    assert record.run_dir is not None  # a done run has its folder
    pseudonyms = _pseudonyms(db, secret, who.tenant)
    frames: dict[str, pd.DataFrame | None] = {}
    for name in ("network", "queues"):
        frames[name] = (deidentify(name, store.read_series(record.id, name), who.view, pseudonyms)
                        if name in names(record, who.view) else None)  # fmt: skip
    out_dir = record.run_dir / "api_reports" / who.view
    run = {**record.to_dict(), "run_dir": None}
    with _REPORT_LOCK:
        files = write_summary(run=run, series=frames["network"], queues=frames["queues"],
                              out_dir=out_dir)  # fmt: skip
        content = files.html.read_bytes()
    sha = hashlib.sha256(content).hexdigest()
    audit(db, who, action="export:report", target=record.id, content=content,
          parameters={"format": "html", "view": who.view})  # fmt: skip
    return Export(content, "text/html; charset=utf-8", f"{record.id}_summary.html", sha)
