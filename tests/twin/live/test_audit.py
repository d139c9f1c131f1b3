"""The audit log: append-only, hash-chained; a deleted or edited record is detected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twin.app.live.audit import AuditLog, read_records, verify, visible_to

KEY = b"k" * 32


def _log(path: Path, n: int = 5) -> None:
    with AuditLog(path, key=KEY) as audit:
        for k in range(n):
            audit.append("gps", ev=f"amb{k % 2}", accepted=True, x_m=float(k), latency_ms=1.5)
        audit.append("command", tls="n7_7", control={"hold": [1]})


def test_an_intact_log_verifies_and_continues_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path)
    rep = verify(path, KEY)
    assert rep.ok and rep.records == 6
    with AuditLog(path, key=KEY) as audit:  # a restarted center continues the chain
        rec = audit.append("service_start")
    assert rec["seq"] == 6 and rec["prev"] == rep.last_hash
    assert verify(path, KEY).ok


def test_a_deleted_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    rep = verify(path, KEY)
    assert not rep.ok
    assert any("seq" in p for p in rep.problems) and any("prev" in p for p in rep.problems)


def test_an_edited_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path)
    lines = path.read_text().splitlines()
    rec = json.loads(lines[3])
    rec["accepted"] = False  # someone hides that a report was accepted
    lines[3] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    rep = verify(path, KEY)
    assert not rep.ok and any("line 4: hash wrong" in p for p in rep.problems)


def test_a_chain_rebuilt_without_the_key_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path)
    forged = tmp_path / "forged.jsonl"
    with AuditLog(forged, key=b"another key") as audit:
        for rec in read_records(path):
            audit.append(
                rec["kind"],
                **{
                    k: v
                    for k, v in rec.items()
                    if k not in ("seq", "t_wall", "kind", "prev", "hash")
                },
            )
    assert not verify(forged, KEY).ok


def test_a_broken_log_is_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match="fails its hash chain"):
        AuditLog(path, key=KEY).open()


def test_what_each_role_may_read() -> None:
    ev = {"kind": "gps", "ev": "amb1", "agency": "fire"}
    patrol = {"kind": "gps", "ev": "car7", "agency": "police"}
    unowned = {"kind": "gps", "ev": "amb9", "agency": None}  # an unknown vehicle's fix
    incident = {"kind": "incident", "incident": "crash1"}
    command = {"kind": "command", "tls": "n7_7"}
    records = (ev, patrol, unowned, incident, command)
    assert all(visible_to("operator", r) for r in records)
    assert [visible_to("fire", r) for r in records] == [True, False, False, False, False]
    assert [visible_to("police", r) for r in records] == [False, True, False, True, False]
    assert not any(visible_to("researcher", r) for r in records)
