"""The golden runs' file and how metrics are compared (shared by
``test_golden_runs.py`` and ``test_safety_acceptance.py``, which checks the golden
cases that are its own one-hour shipped runs, so that each runs once)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_runs.json"


def differences(expected: Any, got: Any, path: str = "metrics") -> list[str]:
    """Where two metric trees differ (NaN, None and a missing float count as equal)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for key in sorted(set(expected) | set(got)):
            if key not in got or key not in expected:
                out.append(f"{path}.{key}: only in {'expected' if key in expected else 'got'}")
            else:
                out += differences(expected[key], got[key], f"{path}.{key}")
        return out
    if isinstance(expected, float) or isinstance(got, float):

        def nan(x: Any) -> bool:
            return x is None or (isinstance(x, float) and math.isnan(x))

        if nan(expected) or nan(got):
            return [] if nan(expected) and nan(got) else [f"{path}: {expected!r} != {got!r}"]
        if math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-9):
            return []
        return [f"{path}: {expected!r} != {got!r}"]
    if isinstance(expected, list | tuple) and isinstance(got, list | tuple):
        if len(expected) != len(got):
            return [f"{path}: {len(expected)} items != {len(got)}"]
        return [d for k, (a, b) in enumerate(zip(expected, got, strict=True))
                for d in differences(a, b, f"{path}[{k}]")]  # fmt: skip
    return [] if expected == got else [f"{path}: {expected!r} != {got!r}"]


def golden() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return out


def same_case(name: str, scenario: dict[str, Any]) -> bool:
    """The golden case ``name`` is exactly this scenario (its seed included)."""
    case = golden().get(name)
    return (
        case is not None and case["scenario"] == scenario and case["seed"] == scenario.get("seed")
    )
