"""The EV scenario's route-time window: its default and bad values."""

from __future__ import annotations

from typing import Any

import pytest

from scenarios.loader import parse_scenario
from twin.center.travel_times import DEFAULT_WINDOW_S
from twin.errors import ScenarioError


def _raw(**fields: Any) -> dict[str, Any]:
    return {"name": "ev", "kind": "ev_priority",
            "evs": [{"id": "amb1", "dispatch_s": 60.0, "station": "fire_station_1"}],
            **fields}  # fmt: skip


def test_defaults_are_the_documented_ones() -> None:
    spec: Any = parse_scenario(_raw())
    assert spec.route_time_window_s == DEFAULT_WINDOW_S == 180.0
    spec = parse_scenario(_raw(route_time_window_s=5.0))
    assert spec.route_time_window_s == 5.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("route_time_window_s", 0.0),
        ("route_time_window_s", 4000.0),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ScenarioError, match=rf"{field}.*{value:g}"):
        parse_scenario(_raw(**{field: value}))
