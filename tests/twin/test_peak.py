"""The peak check's figures from SUMO output files the tests write (no SUMO here), and
one short real check on the suite's district (marked ``sumo``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from city_models.build import City
from twin.app.cli import app
from twin.app.peak import (
    PEAK_TARGETS,
    SATURATION_VPH_PER_LANE,
    approach_vc,
    edges_of,
    peak_cases,
    read_lane_data,
    summarize_figures,
    trip_stops_per_km,
)
from twin.errors import RunError


def _lane_xml(path: Path, lanes: dict[str, dict[str, float]]) -> Path:
    by_edge: dict[str, list[str]] = {}
    for lane, values in lanes.items():
        attrs = " ".join(f'{k}="{v}"' for k, v in values.items())
        by_edge.setdefault(lane.rsplit("_", 1)[0], []).append(f'<lane id="{lane}" {attrs}/>')
    body = "".join(f'<edge id="{e}">{"".join(ls)}</edge>' for e, ls in by_edge.items())
    path.write_text(
        f'<meandata><interval begin="900" end="3600" id="x">{body}</interval></meandata>',
        encoding="utf-8",
    )
    return path


def test_space_mean_speed_weights_lanes_by_time(tmp_path: Path) -> None:
    lanes = read_lane_data(_lane_xml(tmp_path / "l.xml", {
        "a_0": {"sampledSeconds": 100.0, "speed": 10.0, "left": 5},
        "a_1": {"sampledSeconds": 300.0, "speed": 2.0, "left": 7},
    }))  # fmt: skip
    edge = edges_of(lanes)["a"]
    assert edge["speed"] == pytest.approx((100 * 10 + 300 * 2) / 400)
    assert edge["left"] == 12


def test_critical_lane_vc_uses_the_plans_green_share(tmp_path: Path, district_city: City) -> None:
    net = district_city.net
    spec = district_city.manifest.signals[0]
    tls = net.tls[spec.id]
    lane = tls.links[0].from_lane
    green_s = sum(
        p.duration_s
        for p in spec.phases
        if p.kind == "green"
        and any(k.from_lane == lane and p.state[k.index] in "Gg" for k in tls.links)
    )
    window_s = 2700.0
    left = 300
    lanes = read_lane_data(_lane_xml(tmp_path / "l.xml", {lane: {"left": left}}))
    vc = approach_vc(district_city, net, lanes, window_s=window_s)
    expected = left * 3600 / window_s / (SATURATION_VPH_PER_LANE * green_s / spec.cycle_s)
    assert vc == {lane.rsplit("_", 1)[0]: pytest.approx(expected)}


def test_stops_per_km_counts_arrived_trips_after_the_warmup(tmp_path: Path) -> None:
    info = tmp_path / "tripinfo.xml"
    info.write_text(
        "<tripinfos>"
        '<tripinfo id="early" depart="100" arrival="400" waitingCount="9" routeLength="1000"'
        ' vType="car"/>'
        '<tripinfo id="a" depart="1000" arrival="1300" waitingCount="3" routeLength="2000"'
        ' vType="car"/>'
        '<tripinfo id="b" depart="1100" arrival="1500" waitingCount="1" routeLength="2000"'
        ' vType="truck"/>'
        '<tripinfo id="on" depart="1200" arrival="-1" waitingCount="5" routeLength="100"'
        ' vType="car"/>'
        '<tripinfo id="ev" depart="1200" arrival="1300" waitingCount="0" routeLength="3000"'
        ' vType="ambulance"/>'
        "</tripinfos>",
        encoding="utf-8",
    )
    assert trip_stops_per_km(info, after_s=900) == pytest.approx(4 / 4.0)


def test_summary_says_which_targets_are_met() -> None:
    inside = {k: (lo + hi) / 2 for k, (lo, hi) in PEAK_TARGETS.items()}
    below = {**inside, "arterial_speed_kph": PEAK_TARGETS["arterial_speed_kph"][0] - 5}
    out = summarize_figures([inside, below, inside])
    assert out["met"]["arterial_speed_kph"]  # the median of three is inside
    out = summarize_figures([below])
    assert not out["met"]["arterial_speed_kph"] and not out["all_met"]
    assert out["met"]["vc_p90"]


def test_warmup_must_be_inside_the_run(tmp_path: Path, district_city: City) -> None:
    with pytest.raises(RunError, match="warmup_s must be in"):
        peak_cases(district_city, period="am_peak", seeds=[1], work_dir=tmp_path,
                   duration_s=600, warmup_s=600)  # fmt: skip


@pytest.mark.sumo
def test_check_peak_on_the_suite_district(tmp_path: Path, district_city: City) -> None:
    """A short real check: every figure measured, plausible, and the light district is
    (as documented) lighter than the calibrated peak: its v/c is far below target."""
    res = CliRunner().invoke(app, [
        "city", "check-peak", "--city", str(district_city.path), "--duration-s", "300",
        "--warmup-s", "120", "--data-dir", str(tmp_path), "--json", "--workers", "1",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert 5 < out["network_speed_kph"] < 60 and 5 < out["arterial_speed_kph"] < 60
    assert 0 < out["vc_p90"] < PEAK_TARGETS["vc_p90"][0]
    assert out["stops_per_km"] > 0 and out["intersection_delay_s"] > 0
    assert out["met"]["vc_p90"] is False and out["all_met"] is False
    assert len(out["per_seed"]) == 1 and out["teleports"] == 0
