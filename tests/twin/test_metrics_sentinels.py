"""SUMO's "not available" values (-1, -2, -3) never reach a metric or a series as numbers
(issue 15, "honest metrics"); the HCM level of service of an approach."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from twin.engine.metrics import (
    approach_delays,
    approach_los,
    level_of_service,
    summary_series,
    sumo_value,
    trip_metrics,
)

TRIPINFO = """<?xml version="1.0" encoding="UTF-8"?>
<tripinfos>
    <tripinfo id="a" depart="0.00" departDelay="2.00" arrival="100.00" duration="100.00"
              routeLength="1000.00" waitingTime="10.00" waitingCount="1" timeLoss="20.00"/>
    <tripinfo id="b" depart="5.00" departDelay="-1" arrival="205.00" duration="200.00"
              routeLength="2000.00" waitingTime="30.00" waitingCount="3" timeLoss="40.00"/>
    <tripinfo id="c" depart="9.00" departDelay="0.00" arrival="-1" duration="-1"
              routeLength="-1" waitingTime="-1" waitingCount="0" timeLoss="-1"/>
    <tripinfo id="amb" depart="1.00" departDelay="0.00" arrival="50.00" duration="49.00"
              routeLength="900.00" waitingTime="0.00" waitingCount="0" timeLoss="1.00"/>
</tripinfos>
"""

SUMMARY = """<?xml version="1.0" encoding="UTF-8"?>
<summary>
    <step time="0.00" loaded="0" inserted="0" running="0" waiting="0" ended="0" arrived="0"
          halting="0" meanWaitingTime="-1.00" meanTravelTime="-1.00" meanSpeed="-1.00"/>
    <step time="60.00" loaded="10" inserted="10" running="8" waiting="0" ended="2"
          arrived="2" halting="3" meanWaitingTime="4.50" meanTravelTime="50.00"
          meanSpeed="8.20"/>
    <step time="120.00" loaded="12" inserted="12" running="0" waiting="0" ended="12"
          arrived="12" halting="0" meanWaitingTime="-1.00" meanTravelTime="55.00"
          meanSpeed="-1.00"/>
</summary>
"""

EDGE_DATA = """<?xml version="1.0" encoding="UTF-8"?>
<meandata>
    <interval begin="0.00" end="600.00" id="twin_approaches">
        <edge id="n_in" sampledSeconds="900" entered="40" departed="0" left="38"
              timeLoss="320.00"/>
        <edge id="s_in" sampledSeconds="900" entered="10" departed="2" left="12"
              timeLoss="1100.00"/>
        <edge id="e_in" sampledSeconds="0" entered="0" departed="0" left="0" timeLoss="0"/>
    </interval>
</meandata>
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_sumo_value_turns_not_available_into_nan() -> None:
    assert all(math.isnan(sumo_value(x)) for x in ("-1", "-2.00", "-3", None, ""))
    assert sumo_value("0.00") == 0.0 and sumo_value("-0.5") == -0.5 and sumo_value(12) == 12.0


def test_trip_metrics_leave_sentinels_out(tmp_path: Path) -> None:
    m = trip_metrics(_write(tmp_path, "trips.xml", TRIPINFO), exclude=frozenset({"amb"}))
    assert m["throughput_veh"] == 2 and m["unfinished_veh"] == 1
    assert m["mean_delay_s"] == pytest.approx(30.0)  # (20 + 40) / 2: c's -1 left out
    assert m["total_delay_h"] == pytest.approx(60.0 / 3600.0)
    assert m["mean_depart_delay_s"] == pytest.approx(1.0)  # (2 + 0) / 2: b's -1 left out
    assert m["mean_travel_time_s"] == pytest.approx(150.0)
    assert m["mean_waiting_s"] == pytest.approx(20.0)
    assert m["mean_stops"] == pytest.approx(2.0)


def test_summary_series_has_nan_where_sumo_says_not_available(tmp_path: Path) -> None:
    s = summary_series(_write(tmp_path, "summary.xml", SUMMARY), every_s=60.0)
    assert s["t_s"].tolist() == [0.0, 60.0, 120.0]
    assert s["mean_waiting_s"].isna().tolist() == [True, False, True]
    assert s["mean_speed_mps"].isna().tolist() == [True, False, True]
    assert s["mean_waiting_s"].mean() == pytest.approx(4.5)  # never averaged with -1
    assert (s[["mean_waiting_s", "mean_speed_mps"]].dropna() >= 0).all().all()


@pytest.mark.parametrize(
    ("delay_s", "letter"),
    [(0.0, "A"), (10.0, "A"), (10.01, "B"), (20.0, "B"), (35.0, "C"), (35.5, "D"),
     (55.0, "D"), (80.0, "E"), (80.1, "F"), (400.0, "F")],
)  # fmt: skip
def test_level_of_service_follows_the_hcm_thresholds(delay_s: float, letter: str) -> None:
    assert level_of_service(delay_s) == letter


def test_approach_delay_and_los_from_edge_data(tmp_path: Path) -> None:
    path = _write(tmp_path, "edges.xml", EDGE_DATA)
    approaches = {"J/n_in": ("n_in",), "J/s_in": ("s_in",), "J/e_in": ("e_in",),
                  "K/w_in": ("w_in",), "J/pocket": ("s_in", "n_in")}  # fmt: skip
    delays = approach_delays(path, approaches)
    assert delays["J/n_in"] == pytest.approx(8.0)
    assert delays["J/s_in"] == pytest.approx(1100.0 / 12.0)
    assert delays["J/e_in"] is None and delays["K/w_in"] is None  # no vehicle: None
    # an approach over two edges: its loss over those entering upstream (+ departing)
    assert delays["J/pocket"] == pytest.approx((1100.0 + 320.0) / (40 + 0 + 2))
    assert approach_los(delays) == {"J/n_in": "A", "J/s_in": "F", "J/e_in": None,
                                    "K/w_in": None, "J/pocket": "C"}  # fmt: skip
