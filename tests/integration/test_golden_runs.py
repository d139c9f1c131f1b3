"""Behaviour is pinned: every shipped scenario (and variants) gives the metrics recorded.

``tests/data/golden_runs.json`` holds, per case, the scenario as given and the metrics
the run produced when the file was recorded (see ``tests/data/README.md`` for when and
why it was recorded). A structural change must reproduce them exactly (floats to 1e-9
relative); a deliberate behaviour change re-records the file and says so in its commit.

The runs go through the real executor (:class:`twin.engine.executors.Pool`, one spawned
process per run, records in a throw-away run store), so this also checks that a run
submitted as a request equals the run composed in-process when the file was recorded.
The cases that are exactly a shipped scenario's one-hour run (the five shipped
scenarios: ``baseline``, ``adaptive``, ``ev_priority``, ``vms_diversion``,
``evacuation``) are checked by ``test_safety_acceptance.py`` on its own run of them
instead of running twice.
"""

from __future__ import annotations

import pytest

from city_models.build import City
from scenarios.loader import parse_scenario
from tests.integration._golden import differences, golden, same_case
from tests.integration.test_safety_acceptance import SHIPPED, shipped_hour
from twin.app.compose import execute_request, run_request
from twin.config import Settings
from twin.engine.executors import run_requests

pytestmark = [pytest.mark.sumo, pytest.mark.slow]
# the golden cases test_safety_acceptance checks on its own as-shipped runs
ACCEPTANCE = {n for n in SHIPPED if same_case(n, shipped_hour(n, hand_back=False))}


def test_differences_sees_a_change() -> None:
    assert differences({"a": 1.0, "b": {"c": [1, 2]}}, {"a": 1.0, "b": {"c": [1, 2]}}) == []
    assert differences({"a": float("nan")}, {"a": None}) == []
    assert differences({"a": 1.0}, {"a": 1.0 + 1e-6}) != []
    assert differences({"a": {"b": 2}}, {"a": {"b": 3}}) == ["metrics.a.b: 2 != 3"]
    assert differences({"a": 1}, {}) != []


def test_every_shipped_scenario_has_a_golden_run() -> None:
    shipped = {"baseline", "adaptive", "ev_priority", "vms_diversion", "evacuation"}
    assert shipped <= set(golden())
    # checked by the safety acceptance's runs (if a shipped scenario or its golden case
    # changes, it runs here again)
    assert shipped <= ACCEPTANCE


# one test per case, so that the suite's workers share them out (a case is one run)
@pytest.mark.parametrize("name", sorted(set(golden()) - ACCEPTANCE))
def test_every_shipped_scenario_reproduces_its_recorded_metrics(
    name: str, settings: Settings, district_city: City
) -> None:
    case = golden()[name]
    spec = parse_scenario(case["scenario"], source=f"golden {name}")
    assert spec.city.preset == "district" and spec.city.seed == 1
    request = run_request(spec, district_city, seed=case["seed"])
    (record,) = run_requests(settings, execute_request, [request], workers=1)
    assert record.status == "done", f"{name}: {record.error}"
    assert differences(case["metrics"], record.metrics)[:10] == []
