"""Behaviour is pinned: every shipped scenario (and variants) gives the metrics recorded.

``tests/data/golden_runs.json`` holds, per case, the scenario as given and the metrics
the run produced when the file was recorded (see ``tests/data/README.md`` for when and
why it was recorded). A structural change must reproduce them exactly (floats to 1e-9
relative); a deliberate behaviour change re-records the file and says so in its commit.

The runs go through the real executor (:class:`twin.engine.executors.Pool`, one spawned
process per run, records in a throw-away run store), so this also checks that a run
submitted as a request equals the run composed in-process when the file was recorded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from scenarios.loader import parse_scenario
from twin.app.compose import execute_request, run_request
from twin.config import Settings
from twin.engine.executors import run_requests

pytestmark = [pytest.mark.sumo, pytest.mark.slow]

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


def test_differences_sees_a_change() -> None:
    assert differences({"a": 1.0, "b": {"c": [1, 2]}}, {"a": 1.0, "b": {"c": [1, 2]}}) == []
    assert differences({"a": float("nan")}, {"a": None}) == []
    assert differences({"a": 1.0}, {"a": 1.0 + 1e-6}) != []
    assert differences({"a": {"b": 2}}, {"a": {"b": 3}}) == ["metrics.a.b: 2 != 3"]
    assert differences({"a": 1}, {}) != []


def _golden() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return out


def test_every_shipped_scenario_has_a_golden_run() -> None:
    shipped = {"baseline", "adaptive", "ev_priority", "vms_diversion", "evacuation"}
    assert shipped <= set(_golden())


# one test per case, so that the suite's workers share them out (a case is one run)
@pytest.mark.parametrize("name", sorted(_golden()))
def test_every_shipped_scenario_reproduces_its_recorded_metrics(
    name: str, settings: Settings, district_city: City
) -> None:
    case = _golden()[name]
    spec = parse_scenario(case["scenario"], source=f"golden {name}")
    assert spec.city.preset == "district" and spec.city.seed == 1
    request = run_request(spec, district_city, seed=case["seed"])
    (record,) = run_requests(settings, execute_request, [request], workers=1)
    assert record.status == "done", f"{name}: {record.error}"
    assert differences(case["metrics"], record.metrics)[:10] == []
