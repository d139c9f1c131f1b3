"""Queues and delays per approach, measured in real SUMO (issue 15, "honest metrics").

The queue per approach is read every control tick, so its maximum can only be at least
what the once-a-minute snapshot of the whole signal saw; the level of service of each
approach is the HCM letter of its delay.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from tests import spawned

pytestmark = pytest.mark.sumo

DURATION_S = 900.0
HCM = (("A", 10.0), ("B", 20.0), ("C", 35.0), ("D", 55.0), ("E", 80.0))


def _observe(city_path: str, run_dir: str) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    spec = parse_scenario({
        "name": "approaches", "kind": "baseline", "seed": 6,
        "demand": {"scale": 1.3}, "sim": {"duration_s": DURATION_S},
    })  # fmt: skip
    result = simulate(spec, city, seed=6, run_dir=Path(run_dir))
    return {
        "metrics": result.metrics,
        "queues": result.series["queues"].to_dict("records"),
        "approach_queues": result.series["approach_queues"].to_dict("records"),
    }


@pytest.fixture(scope="module")
def run(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp("approaches")
    out: dict[str, Any] = spawned.in_process(_observe, str(district_city.path), str(run_dir))
    return out


def _letter(delay_s: float) -> str:
    return next((letter for letter, upto in HCM if delay_s <= upto), "F")


def test_every_incoming_edge_of_a_signal_is_an_approach(
    run: dict[str, Any], district_city: City
) -> None:
    m = run["metrics"]
    expected = {f"{s.id}/{lane.rsplit('_', 1)[0]}" for s in district_city.manifest.signals
                for lane in s.incoming_lanes}  # fmt: skip
    for key in ("approach_queue_max_veh", "approach_queue_max_m", "approach_delay_s",
                "approach_los"):  # fmt: skip
        assert set(m[key]) == expected, key


def test_the_approach_queue_max_is_at_least_the_minute_snapshot(run: dict[str, Any]) -> None:
    m = run["metrics"]
    # the old metric (all lanes of the signal, once a minute) stays as it was
    assert m["max_queue_veh"] == max(m["max_queue_by_tls_veh"].values())
    per_signal: dict[str, float] = {}
    for approach, veh in m["approach_queue_max_veh"].items():
        tls = approach.split("/", 1)[0]
        per_signal[tls] = per_signal.get(tls, 0.0) + veh
        metres = m["approach_queue_max_m"][approach]
        assert metres >= 0 and (metres > 0) == (veh > 0), approach
    for tls, snapshot_max in m["max_queue_by_tls_veh"].items():
        assert per_signal[tls] >= snapshot_max, tls
    # per minute as well: the maximum since the last sample includes the sampled tick
    snap = {(r["t_s"], r["tls_id"]): r["queue_veh"] for r in run["queues"]}
    summed: dict[tuple[float, str], float] = {}
    for r in run["approach_queues"]:
        key = (r["t_s"], r["tls_id"])
        summed[key] = summed.get(key, 0.0) + r["queue_max_veh"]
    assert set(summed) == set(snap)
    assert all(summed[k] >= snap[k] for k in snap)
    # and every control tick sees more than the two samples a cycle the minute gives
    assert sum(per_signal.values()) > sum(m["max_queue_by_tls_veh"].values())


def test_los_letters_match_the_delays(run: dict[str, Any]) -> None:
    m = run["metrics"]
    known = 0
    for approach, delay in m["approach_delay_s"].items():
        los = m["approach_los"][approach]
        if delay is None or math.isnan(delay):
            assert los is None, approach
            continue
        known += 1
        assert delay >= 0 and los == _letter(delay), (approach, delay, los)
    assert known > 0
    assert set(m["approach_los"].values()) - {None} <= set("ABCDEF")
