"""Event kinds are constant strings; the ids they are about are fields (issue 15): no
``bus.record`` / ``bus.at`` call builds its kind from an f-string or a concatenation."""

from __future__ import annotations

import ast
from pathlib import Path

from scenarios.ev_priority import _event_of
from twin.engine.events import EventBus

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scenarios", "twin", "signal_control")


def _built_kinds(path: Path) -> list[str]:
    """``record(<kind>, ...)`` / ``at(..., name=<kind>)`` calls whose kind is built."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        kind: ast.expr | None = None
        if node.func.attr == "record" and node.args:
            kind = node.args[0]
        elif node.func.attr == "at":
            kind = next((k.value for k in node.keywords if k.arg == "name"), None)
        if isinstance(kind, ast.JoinedStr | ast.BinOp):
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def test_no_event_kind_is_built_from_ids() -> None:
    found = [hit for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
             for hit in _built_kinds(p)]  # fmt: skip
    assert found == []


def test_a_scheduled_event_keeps_its_kind_and_carries_its_ids() -> None:
    bus = EventBus()
    bus.at(5.0, lambda: None, name="dispatch", ev="amb1")
    bus.advance_to(5.0)
    (event,) = bus.events
    assert (event.t_s, event.kind, event.data) == (5.0, "dispatch", {"ev": "amb1"})


def test_the_priority_managers_schedule_names_become_constant_kinds() -> None:
    assert _event_of("recovery n3_5 cycle 2") == {"name": "recovery_cycle", "tls": "n3_5",
                                                  "cycle": 2}  # fmt: skip
    assert _event_of("recovery n3_5 done") == {"name": "recovery_done", "tls": "n3_5"}
    assert _event_of("anything_else") == {"name": "anything_else"}
