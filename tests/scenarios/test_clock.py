"""Clock times in scenario files: dispatch = "08:10" beside dispatch_s (scenarios.clock)."""

from __future__ import annotations

import pytest

from scenarios.clock import clock_s, resolve_clock_times
from scenarios.loader import parse_scenario
from twin.errors import ScenarioError


def _ev(**ev: object) -> dict[str, object]:
    return {"name": "e", "kind": "ev_priority", "sim": {"duration_s": 2400},
            "evs": [{"id": "amb1", "station": "fire_station_1", **ev}]}  # fmt: skip


def test_clock_text() -> None:
    assert clock_s("08:10") == 8 * 3600 + 600
    assert clock_s("17:30:15") == 17 * 3600 + 1815
    for bad in ("8h10", "24:00", "08:60", 810, None, "08:10:61"):
        assert clock_s(bad) is None


def test_dispatch_clock_time_is_seconds_after_the_period_starts() -> None:
    spec = parse_scenario(_ev(dispatch="08:10"))
    assert spec.evs[0].dispatch_s == 600  # type: ignore[attr-defined]
    # the same time in the PM peak (which starts at 18:00) is before the run
    raw = _ev(dispatch="08:10")
    raw["demand"] = {"period": "pm_peak"}
    with pytest.raises(
        ScenarioError, match=r"'evs\[0\]\.dispatch' = '08:10' is before the pm_peak"
    ):
        parse_scenario(raw)
    raw["evs"] = [{"id": "amb1", "station": "fire_station_1", "dispatch": "18:05"}]
    assert parse_scenario(raw).evs[0].dispatch_s == 300  # type: ignore[attr-defined]


def test_incident_and_warning_clock_times() -> None:
    vms = parse_scenario({
        "name": "v", "kind": "vms_diversion", "demand": {"period": "pm_peak"},
        "sim": {"duration_s": 3600},
        "incidents": [{"id": "c1", "edge": "e1", "start": "18:10", "end": "18:40"}],
    })  # fmt: skip
    inc = vms.incidents[0]  # type: ignore[attr-defined]
    assert (inc.start_s, inc.end_s) == (600, 2400)
    evac = parse_scenario({"name": "x", "kind": "evacuation", "warning": "08:05",
                           "sim": {"duration_s": 3000}})  # fmt: skip
    assert evac.warning_s == 300  # type: ignore[attr-defined]


def test_bad_clock_times_name_the_field() -> None:
    with pytest.raises(
        ScenarioError, match=r"f\.toml: field 'evs\[0\]\.dispatch' = '8h10'; allowed"
    ):
        parse_scenario(_ev(dispatch="8h10"), source="f.toml")
    with pytest.raises(ScenarioError, match="both given"):
        parse_scenario(_ev(dispatch="08:10", dispatch_s=600))
    raw = {"kind": "baseline", "name": "b"}
    assert resolve_clock_times(raw, source="s") is raw  # nothing to do: untouched
