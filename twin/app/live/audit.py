"""The live audit log: append-only, every record chained to the one before it.

Every GPS and detector report (accepted or rejected, with the reason), every decision
of the center, every command sent to a controller, every answer (with its latency) and
every guard verdict is one JSON line. Each line carries ``seq`` (0, 1, 2, ...),
``prev`` (the previous line's hash) and ``hash`` = HMAC-SHA256(key, canonical JSON of the
line without ``hash``). :func:`verify` walks the file: a deleted line breaks ``seq`` and
``prev``, an edited line its ``hash``, a line written without the key any hash. The key
is the server's secret (``CITYTWIN_SECRET_KEY``), so only the center can extend the
chain.

Each record is written with one ``write`` on a file opened for appending and flushed to
the operating system at once: a center killed mid-run loses nothing it had logged, and
a restarted center continues the chain (:meth:`AuditLog.open`) and reads it back
(:meth:`AuditLog.records`) to resume.

Who may read what (:func:`visible_to`): ``operator`` everything; an agency's role
(``fire``, ``police``) the records about its own vehicles (``ev`` with ``agency`` equal
to the role: a mission's agency) and, for ``police``, the records about incidents
(``incident``). A record about an EV of another agency, or about no EV, is not theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GENESIS = "0" * 64


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=_jsonable).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _clean(value: Any) -> Any:
    """Plain JSON values (NaN and infinities become null, as JSON has none)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in (sorted(value) if isinstance(value, set | frozenset) else value)]
    return value


def chain_hash(key: bytes, record: Mapping[str, Any]) -> str:
    """The hash of a record (every field but ``hash``)."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


class AuditLog:
    """An append-only, hash-chained JSON-lines log.

    Parameters
    ----------
    path
        The log file (created if missing; continued if present, after verifying it).
    key
        The HMAC key of the chain.
    clock
        The live clock's reading, stored as ``t_s`` next to the wall time ``t_wall``.
    """

    def __init__(self, path: Path, *, key: bytes, clock: Callable[[], float] | None = None) -> None:
        if not key:
            raise ValueError("the audit log needs a non-empty key")
        self.path = path
        self.key = key
        self.clock = clock
        self.seq = 0
        self.prev = GENESIS
        self.written = 0
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.by_kind: dict[str, int] = {}

    def open(self) -> AuditLog:
        """Open for appending; an existing log is verified and continued."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            report = verify(self.path, self.key)
            if not report.ok:
                raise ValueError(
                    f"audit log {self.path} fails its hash chain ({report.problems[:3]}); "
                    "refusing to append to it (keep it as evidence, start a new one)"
                )
            self.seq, self.prev = report.records, report.last_hash
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AuditLog:
        return self.open() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, kind: str, /, **data: Any) -> dict[str, Any]:
        """Write one record; returns it (with its ``seq`` and ``hash``)."""
        if self._fd is None:
            raise ValueError(f"audit log {self.path} is not open")
        with self._lock:
            record: dict[str, Any] = {
                "seq": self.seq,
                "t_wall": round(time.time(), 6),
                "kind": kind,
                **_clean(data),
                "prev": self.prev,
            }
            if self.clock is not None:
                record["t_s"] = round(self.clock(), 4)
            record["hash"] = chain_hash(self.key, record)
            line = json.dumps(record, separators=(",", ":"), default=_jsonable) + "\n"
            os.write(self._fd, line.encode())
            self.seq += 1
            self.prev = record["hash"]
            self.written += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        return record

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record written so far, in order."""
        yield from read_records(self.path)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield {"_unreadable": line[:200]}


@dataclass
class VerifyReport:
    """What :func:`verify` found."""

    records: int = 0
    last_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: Path, key: bytes) -> VerifyReport:
    """Walk the chain: every ``seq`` in order, every ``prev`` the previous ``hash``, every
    ``hash`` right. Each problem is named (the first few are enough to act on)."""
    rep = VerifyReport()
    prev = GENESIS
    for k, rec in enumerate(read_records(path)):
        if "_unreadable" in rec:
            rep.problems.append(f"line {k + 1}: not JSON")
            continue
        if rec.get("seq") != k:
            rep.problems.append(f"line {k + 1}: seq {rec.get('seq')} where {k} was due (deleted?)")
        if rec.get("prev") != prev:
            rep.problems.append(f"line {k + 1}: prev does not match the hash before it")
        if not hmac.compare_digest(str(rec.get("hash")), chain_hash(key, rec)):
            rep.problems.append(f"line {k + 1}: hash wrong (edited?)")
        prev = str(rec.get("hash"))
        rep.records = k + 1
    rep.last_hash = prev
    return rep


AUDIT_ROLES = ("operator", "fire", "police")


def visible_to(role: str, record: Mapping[str, Any]) -> bool:
    """Whether ``role`` may read ``record``: operator all; fire and police the records
    of their own agency's EVs, police its incidents too; every other role nothing."""
    if role == "operator":
        return True
    if role not in ("fire", "police"):
        return False
    if record.get("ev") and record.get("agency") == role:
        return True
    return role == "police" and bool(record.get("incident"))
