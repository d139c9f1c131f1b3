"""SUMO against theory: the free-flow travel time of an empty link is length / speed limit.

The twin relies on it wherever it plans with free-flow times: routing and hospital
reachability (:func:`city_models.graph.free_flow_s` = ``length_m / speed_mps``), the EV's
ETA. Two instant loops 1,000 m apart on a 50 km/h lane time each vehicle between them
(SUMO interpolates the crossing within the 1 s step); nothing else is on the road.

Measured with SUMO 1.28.0 (step 1 s, the twin's command line):

- the ideal driver (no dawdling, exactly at the limit): 71.99 s against 72.00 s, and a
  whole trip from a standstill takes ``route / v + v / (2 a)`` to within the step;
- the city's own car (``sigma`` 0.5, ``speedDev`` 0.1): 6 % slower than ``L / v`` on
  average (76.3 s over 100 cars), and 6.4 % slower than each car's own desired speed
  (limit x its speed factor): the time is lost to dawdling, not to the spread of speed
  factors. The twin's free-flow times are that much optimistic for its traffic.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

import pytest

from tests.verification._corridor import (
    IDEAL_ACCEL_MPS2,
    build_corridor,
    instant_loops_xml,
    loop_entries,
    read_xml_rows,
    run_sumo,
)

pytestmark = pytest.mark.sumo
log = logging.getLogger(__name__)

SPEED_MPS = 50 / 3.6
LOOP_A_M, LOOP_B_M = 100.0, 1100.0  # on the 1,300 m approach: 1,000 m apart
STEP_S = 1.0  # the twin's step length (SessionConfig's default)
HEADWAY_S = 60.0  # one vehicle a minute: each has the road to itself


def _link_times(tmp_path: Path, vtype: str, depart_speed: str, n: int) -> tuple[
    list[float], list[dict[str, str]]
]:  # fmt: skip
    """Times between the loops, and the tripinfo rows, of ``n`` vehicles of ``vtype``."""
    corridor = build_corridor(tmp_path / "net", length_in_m=1300.0, length_out_m=200.0,
                              speed_mps=SPEED_MPS)  # fmt: skip
    loops = instant_loops_xml(
        [("a", "in_0", LOOP_A_M), ("b", "in_0", LOOP_B_M)], file=f"{vtype}.loops.xml"
    )
    vehicles = "".join(
        f'  <vehicle id="v{k}" type="{vtype}" route="r" depart="{k * HEADWAY_S:g}" '
        f'departSpeed="{depart_speed}"/>\n'
        for k in range(n)
    )
    trips = run_sumo(corridor, vehicles_xml=vehicles, additional_xml=[loops],
                     end_s=n * HEADWAY_S + 300.0, name=f"{vtype}-{depart_speed}")  # fmt: skip
    entries = loop_entries(corridor.folder / f"{vtype}.loops.xml")
    at_a = {veh: t for t, veh, _ in entries["a"]}
    at_b = {veh: t for t, veh, _ in entries["b"]}
    assert sorted(at_a) == sorted(at_b) == sorted(f"v{k}" for k in range(n))
    return [at_b[v] - at_a[v] for v in sorted(at_a)], read_xml_rows(trips, "tripinfo")


def test_ideal_driver_crosses_an_empty_link_in_length_over_speed(tmp_path: Path) -> None:
    theory_s = (LOOP_B_M - LOOP_A_M) / SPEED_MPS
    # flying start: at the limit from the first metre
    times, trips = _link_times(tmp_path / "flying", "ideal", "max", 5)
    log.info("ideal driver: %.3f s between the loops, theory %.3f s", times[0], theory_s)
    assert times == pytest.approx([theory_s] * 5, abs=0.05)  # interpolated crossings
    for trip in trips:  # the whole trip, arrival on the step grid
        route_s = float(trip["routeLength"]) / SPEED_MPS
        assert abs(float(trip["duration"]) - route_s) <= STEP_S
    # standing start: the same time between the loops (at the limit after 37 m), and
    # the trip loses v / (2 a) to accelerating, within one step (Euler steps of 1 s)
    times, trips = _link_times(tmp_path / "standing", "ideal", "0", 5)
    assert times == pytest.approx([theory_s] * 5, abs=0.05)
    accel_loss_s = SPEED_MPS / (2 * IDEAL_ACCEL_MPS2)
    for trip in trips:
        route_s = float(trip["routeLength"]) / SPEED_MPS
        assert abs(float(trip["duration"]) - (route_s + accel_loss_s)) <= STEP_S


def test_city_car_is_a_few_percent_slower_than_free_flow_time(tmp_path: Path) -> None:
    """The city's "car": its speed factor (mean 1, sd 0.1) and its dawdling (sigma 0.5)
    make the mean time a few percent longer than ``L / v``. The bound is what the twin
    can live with in its free-flow estimates; the test fails if the vehicle types or
    SUMO's car-following change it a lot."""
    n = 100
    theory_s = (LOOP_B_M - LOOP_A_M) / SPEED_MPS
    times, trips = _link_times(tmp_path, "car", "max", n)
    factor = {t["id"]: float(t["speedFactor"]) for t in trips}
    ratio = statistics.mean(times) / theory_s
    # each vehicle against its own desired speed (limit x speed factor): dawdling only
    dawdle = statistics.mean(
        t * factor[f"v{k}"] * SPEED_MPS / (LOOP_B_M - LOOP_A_M) for k, t in enumerate(times)
    )
    log.info(
        "city car: mean %.2f s between the loops, L/v %.2f s (x%.4f); against each "
        "vehicle's own desired speed x%.4f",
        statistics.mean(times), theory_s, ratio, dawdle,
    )  # fmt: skip
    assert 1.0 < dawdle < 1.08  # dawdling only slows a driver down, by a few percent
    assert 1.0 < ratio < 1.10
