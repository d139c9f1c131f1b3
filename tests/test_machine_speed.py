"""The CI log's machine line (``tests/machine_speed.py``) reads what it says it reads."""

from __future__ import annotations

import sys

import pytest

from tests import machine_speed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_steal_is_a_share_of_the_cpu_time() -> None:
    steal = machine_speed.steal_pct()
    assert steal is not None and 0.0 <= steal <= 100.0


def test_the_line_names_its_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_speed, "loop_s", lambda: 1.234)
    text = machine_speed.line()
    assert text.startswith("machine: python loop 1.23 s") and "cores" in text
