"""VMS diversion without SUMO: sign display rules, incident specs, errors, recovery time,
the compliance draw."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from city_models.build import City
from scenarios.incidents import Incidents, IncidentSpec, closed_lane_ids
from scenarios.loader import library_scenarios, parse_scenario
from scenarios.vms_diversion import VmsDiversion, VmsDiversionSpec, _draw, recovery_time_s
from twin.center.signs import BLANK, Message, SignState, may_change, show
from twin.engine.events import EventBus
from twin.engine.run import RunContext
from twin.errors import ScenarioError

DETOUR = Message("incident_detour", "detour", incident="c1", avoid_edges=("e",))
WARNING = Message("incident_warning", "warning", incident="c1", avoid_edges=("e",))
TT = Message("travel_time", "To X: 5 min")
EV = Message("ev_clear", "Ambulance: keep the left lane clear")


def _shipped() -> dict[str, Any]:
    text = library_scenarios()["vms_diversion"].read_text(encoding="utf-8")
    return tomllib.loads(text)


# --------------------------------------------------------------------- sign rules


def test_higher_priority_replaces_at_once_lower_waits_min_display() -> None:
    sign = SignState("vms_1", "e0")
    show(sign, TT, 0.0)
    assert may_change(sign, DETOUR, 1.0, min_display_s=60.0)  # incident beats travel time
    show(sign, DETOUR, 1.0)
    assert not may_change(sign, WARNING, 30.0, min_display_s=60.0)  # same priority: wait
    assert not may_change(sign, BLANK, 60.0, min_display_s=60.0)
    assert may_change(sign, BLANK, 61.0, min_display_s=60.0)
    assert not may_change(sign, DETOUR, 500.0, min_display_s=60.0)  # nothing to change


def test_emergency_message_overrides_and_ends_at_once() -> None:
    sign = SignState("vms_1", "e0")
    show(sign, DETOUR, 0.0)
    assert may_change(sign, EV, 1.0, min_display_s=60.0)
    show(sign, EV, 1.0)
    assert may_change(sign, DETOUR, 2.0, min_display_s=60.0)  # EV passed: back at once


def test_episode_counts_new_messages_not_text_updates() -> None:
    sign = SignState("vms_1", "e0")
    show(sign, TT, 0.0)
    first = sign.episode
    show(sign, Message("travel_time", "To X: 6 min"), 100.0)
    assert sign.episode == first  # drivers who read it already do not react again
    show(sign, DETOUR, 200.0)
    assert sign.episode == first + 1


# --------------------------------------------------------------------- incidents


def test_closed_lanes_count_from_the_inner_lane() -> None:
    spec = IncidentSpec(id="c", edge="a-b", closed_lanes=2, start_s=0, end_s=10)
    assert closed_lane_ids(spec, 3) == ["a-b_1", "a-b_2"]
    full = IncidentSpec(id="c", edge="a-b", closed_lanes="all", start_s=0, end_s=10)
    assert closed_lane_ids(full, 3) == ["a-b_0", "a-b_1", "a-b_2"] and full.full


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"end_s": 500.0}, "end_s"),  # before start
        ({"start_s": 5000.0, "end_s": 5100.0}, "start_s"),  # outside the run
        ({"end_s": 4000.0}, "end_s"),  # after the run ends
        ({"closed_lanes": 0}, "speed_kph"),  # neither lanes nor speed
        ({"closed_lanes": -1}, "closed_lanes"),
    ],
)
def test_bad_incident_is_refused_naming_the_field(patch: dict[str, Any], field: str) -> None:
    raw = _shipped()
    raw["incidents"][0].update(patch)
    if patch.get("closed_lanes") == 0:
        raw["incidents"][0].pop("speed_kph")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw, source="vms.toml")
    assert "vms.toml" in str(info.value) and field in str(info.value)


def test_overlapping_incidents_on_one_street_are_refused() -> None:
    raw = _shipped()
    second = {**raw["incidents"][0], "id": "crash2", "start_s": 1200.0, "end_s": 3000.0}
    raw["incidents"].append(second)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw, source="vms.toml")
    assert "overlap" in str(info.value) and second["edge"] in str(info.value)


def test_closing_every_lane_by_number_is_a_full_closure(district_city: City) -> None:
    edge = _shipped()["incidents"][0]["edge"]
    lanes = district_city.net.edges[edge].lanes
    by_number = IncidentSpec(id="c", edge=edge, closed_lanes=lanes, start_s=0, end_s=10)
    partial = IncidentSpec(id="c", edge=edge, closed_lanes=lanes - 1, start_s=0, end_s=10)
    states = Incidents([by_number, partial], district_city.net).states
    assert states[0].closes_street and not states[0].open_lanes
    assert not states[1].closes_street and states[1].open_lanes == [f"{edge}_0"]


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_compliance_outside_0_1_is_refused(value: float) -> None:
    raw = _shipped()
    raw["compliance"]["incident_detour"] = value
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw, source="vms.toml")
    assert "compliance.incident_detour" in str(info.value)


def _behaviour(raw: dict[str, Any]) -> VmsDiversion:
    spec = parse_scenario(raw)
    assert isinstance(spec, VmsDiversionSpec)
    return VmsDiversion(spec)


def _ctx(city: City, behaviour: VmsDiversion, tmp_path: Path) -> RunContext[City, Any]:
    return RunContext(session=None, bus=EventBus(), city=city, spec=behaviour.spec,  # type: ignore[arg-type]
                      seed=1, run_dir=tmp_path)  # fmt: skip


def test_unknown_incident_street_is_named(district_city: City, tmp_path: Path) -> None:
    raw = _shipped()
    raw["incidents"][0]["edge"] = "no_such_street"
    with pytest.raises(ScenarioError) as info:
        _behaviour(raw).prepare(district_city, seed=1, run_dir=tmp_path)
    assert "incidents[0].edge" in str(info.value) and "no_such_street" in str(info.value)


def test_more_closed_lanes_than_the_street_has(district_city: City, tmp_path: Path) -> None:
    raw = _shipped()
    raw["incidents"][0]["closed_lanes"] = 7
    with pytest.raises(ScenarioError) as info:
        _behaviour(raw).prepare(district_city, seed=1, run_dir=tmp_path)
    assert "incidents[0].closed_lanes" in str(info.value) and "0..3" in str(info.value)


def test_unknown_sign_and_landmark_are_named(district_city: City, tmp_path: Path) -> None:
    raw = _shipped()
    raw["signs"] = ["vms_1", "vms_99"]
    b = _behaviour(raw)
    with pytest.raises(ScenarioError) as info:
        b.setup(_ctx(district_city, b, tmp_path))
    assert "'signs'" in str(info.value) and "vms_99" in str(info.value)
    assert "vms_1" in str(info.value)  # the allowed ones are listed
    raw = _shipped()
    raw["logic"]["landmark"] = "city_hall"
    b = _behaviour(raw)
    with pytest.raises(ScenarioError) as info:
        b.setup(_ctx(district_city, b, tmp_path))
    assert "logic.landmark" in str(info.value) and "hospital_1" in str(info.value)


def test_ev_sign_must_be_one_of_the_runs_signs(district_city: City, tmp_path: Path) -> None:
    raw = _shipped()
    raw["signs"] = ["vms_1"]
    raw["ev_signs"] = ["vms_2"]
    b = _behaviour(raw)
    with pytest.raises(ScenarioError) as info:
        b.setup(_ctx(district_city, b, tmp_path))
    assert "'ev_signs'" in str(info.value) and "vms_2" in str(info.value)


def test_prepare_puts_loops_across_the_incident_street(district_city: City, tmp_path: Path) -> None:
    b = _behaviour(_shipped())
    prepared = b.prepare(district_city, seed=1, run_dir=tmp_path)
    text = prepared.additional[0].read_text()
    edge = _shipped()["incidents"][0]["edge"]
    lanes = district_city.net.edges[edge].lanes
    assert text.count("<inductionLoop") == lanes
    assert all(f'lane="{edge}_{k}"' in text for k in range(lanes))


def test_signs_warn_only_of_incidents_ahead(district_city: City, tmp_path: Path) -> None:
    b = _behaviour(_shipped())
    b.setup(_ctx(district_city, b, tmp_path))
    assert len(b.signs) == len(district_city.manifest.vms)
    # the shipped crash is ahead of at least one sign, and not ahead of every sign
    edge = _shipped()["incidents"][0]["edge"]
    ahead = [sid for sid in b.signs if b.logic.reach_m(sid, edge) is not None]
    assert 0 < len(ahead) < len(b.signs)
    site = b.logic.site(edge)
    assert site.queue_edges[0] == edge and len(site.queue_edges) >= 2
    assert site.beyond and not any(e.endswith("_pocket") for e in site.beyond)
    assert b.sites[0].queue_edges == list(site.queue_edges)


def test_no_vms_means_no_sign(district_city: City, tmp_path: Path) -> None:
    raw = copy.deepcopy(_shipped())
    raw["vms"] = False
    b = _behaviour(raw)
    b.setup(_ctx(district_city, b, tmp_path))
    assert b.signs == {}


# --------------------------------------------------------------------- measures


def _queue(after_drop_s: float, *, end_s: float = 1800.0) -> pd.DataFrame:
    t = np.arange(0.0, 3600.0, 5.0)
    q = np.where((t > 600.0) & (t < end_s + after_drop_s), 25.0, 3.0)
    q = q + np.where((t.astype(int) // 5) % 2 == 0, 1.0, -1.0)  # red/green wobble
    return pd.DataFrame({"t_s": t, "queue_veh": q})


def test_recovery_time_is_when_the_queue_is_back_to_normal() -> None:
    rec = recovery_time_s(_queue(300.0), start_s=600.0, end_s=1800.0)
    assert 270.0 <= rec <= 310.0  # to within the rolling window's resolution
    assert recovery_time_s(_queue(0.0), start_s=600.0, end_s=1800.0) <= 10.0
    never = recovery_time_s(_queue(5000.0), start_s=600.0, end_s=1800.0)
    assert math.isnan(never)


def test_compliance_draw_is_fixed_uniform_and_independent() -> None:
    ids = [f"t{k}" for k in range(4000)]  # SUMO trip ids: neighbours differ by a digit
    draws = np.array([_draw(7, v, "crash1") for v in ids])
    assert ((draws >= 0.0) & (draws < 1.0)).all()
    assert draws.tolist() == [_draw(7, v, "crash1") for v in ids]  # fixed: common numbers
    assert abs(np.mean(draws < 0.25) - 0.25) < 0.03  # about uniform
    # independent: neighbouring trips, other seeds, other purposes (a CRC fails these)
    assert abs(np.corrcoef(draws[:-1], draws[1:])[0, 1]) < 0.1
    other_seed = np.array([_draw(8, v, "crash1") for v in ids])
    assert abs(np.corrcoef(draws, other_seed)[0, 1]) < 0.1
    other_use = np.array([_draw(7, v, "tt") for v in ids])
    assert abs(np.corrcoef(draws, other_use)[0, 1]) < 0.1
    # a coin per driver, not a quota: 100 consecutive trips at 50 % vary like a binomial
    per_block = (draws < 0.5).reshape(40, 100).sum(axis=1)
    assert 2.5 < per_block.std() < 8.0  # binomial: 5
