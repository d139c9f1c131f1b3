"""Ingest: every bad GPS or detector message is rejected with its reason, none crashes."""

from __future__ import annotations

import json
import time

import pytest

from city_models.build import City
from twin.app.live.clock import LiveClock
from twin.app.live.ingest import Ingest, IngestLimits
from twin.app.live.trace import gps_message


@pytest.fixture
def ingest(district_city: City) -> Ingest:
    ing = Ingest(
        district_city,
        clock=LiveClock.time_of_day(1.0),
        limits=IngestLimits(max_rate_hz=5.0, burst=3),
    )
    ing.vehicles["amb1"] = "fire"
    return ing


def _fix(city: City, *, ahead_s: float = 0.0, **over: object) -> dict[str, object]:
    """A good fix, changed by ``over``; ``ahead_s``: its time that far from now (taken
    when the test runs, not when the parameters were collected)."""
    x0, y0, x1, y1 = city.manifest.bbox_xy
    msg = gps_message(
        city, "amb1", t_wall=time.time() + ahead_s, x_m=(x0 + x1) / 2, y_m=(y0 + y1) / 2,
        speed_mps=12.0,
    )  # fmt: skip
    msg.update(over)
    return msg


def test_a_good_fix_is_accepted_in_the_centers_terms(ingest: Ingest, district_city: City) -> None:
    v = ingest.gps(json.dumps(_fix(district_city)), source="t", received_wall=time.time())
    assert v.accepted and v.fix is not None
    x0, y0, x1, y1 = district_city.manifest.bbox_xy
    assert v.fix.x_m == pytest.approx((x0 + x1) / 2, abs=0.05)
    assert v.fix.y_m == pytest.approx((y0 + y1) / 2, abs=0.05)
    assert v.fix.agency == "fire"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"lat": 38.5}, "outside_city"),
        ({"lon": 126.0}, "outside_city"),
        ({"speed_mps": 400 / 3.6}, "speed_out_of_range"),
        ({"speed_kph": 400.0, "speed_mps": None}, "speed_out_of_range"),
        ({"ahead_s": 30.0}, "future"),
        ({"ahead_s": -600.0}, "too_old"),
        ({"t": "2020-01-01T00:00:00Z"}, "too_old"),
        ({"vehicle": "ghost"}, "unknown_vehicle"),
        ({"agency": "police"}, "agency_mismatch"),
        ({"accuracy_m": 400.0}, "inaccurate"),
        ({"lat": "north"}, "malformed"),
        ({"lat": float("nan")}, "malformed"),
        ({"t": "yesterday"}, "malformed"),
    ],
)
def test_bad_fixes_are_rejected_with_their_reason(
    ingest: Ingest,
    district_city: City,
    change: dict[str, object],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    msg = _fix(district_city, **change)
    raw = json.dumps(msg, allow_nan=True)
    with caplog.at_level("INFO", logger="twin.app.live.ingest"):
        v = ingest.gps(raw, source="t", received_wall=time.time())
    assert not v.accepted and v.reason == reason, v
    assert reason in caplog.text  # logged, with the reason


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"not json", b"[1, 2]", b"{}", b'{"vehicle": 5}'])
def test_garbage_is_malformed(ingest: Ingest, raw: bytes) -> None:
    v = ingest.gps(raw, source="t", received_wall=time.time())
    assert not v.accepted and v.reason == "malformed"


def test_a_replayed_fix_and_a_late_one(ingest: Ingest, district_city: City) -> None:
    now = time.time()
    first = json.dumps(_fix(district_city, t=now - 2.0))
    assert ingest.gps(first, source="t", received_wall=now).accepted
    again = ingest.gps(first, source="t", received_wall=now + 0.5)
    assert again.reason == "duplicate"
    late = ingest.gps(
        json.dumps(_fix(district_city, t=now - 4.0)), source="t", received_wall=now + 0.6
    )
    assert late.reason == "out_of_order"
    assert ingest.gps(
        json.dumps(_fix(district_city, t=now - 1.0)), source="t", received_wall=now + 0.7
    ).accepted
    assert ingest.rejected == {"duplicate": 1, "out_of_order": 1}


def test_one_source_is_rate_limited(ingest: Ingest, district_city: City) -> None:
    now = time.time()
    verdicts = [
        ingest.gps(
            json.dumps(_fix(district_city, t=now - 1 + k * 0.01)),
            source="phone",
            received_wall=now + k * 0.001,
        ).reason
        for k in range(6)
    ]
    assert verdicts[:3] == [None, None, None]  # the burst
    assert set(verdicts[3:]) == {"rate_limited"}
    # another source is not held back by this one
    assert ingest.gps(
        json.dumps(_fix(district_city, t=now - 0.5)), source="api", received_wall=now + 0.01
    ).accepted


def test_detector_counts(ingest: Ingest, district_city: City) -> None:
    loop = district_city.manifest.detectors[0].id
    now = time.time()
    good = {"loop": loop, "t_end": now - 1, "interval_s": 30, "count_veh": 9, "occupancy_pct": 12.5}
    assert ingest.detector(good, source="vds", received_wall=now).accepted
    assert ingest.detector(good, source="vds", received_wall=now).reason == "duplicate"
    cases = [
        ({"loop": "no_such_loop"}, "unknown_loop"),
        ({"count_veh": -1}, "count_out_of_range"),
        ({"count_veh": 500}, "count_out_of_range"),
        ({"occupancy_pct": 140.0}, "occupancy_out_of_range"),
        ({"t_end": now + 60}, "future"),
        ({"t_end": now - 3600}, "too_old"),
        ({"count_veh": "many"}, "malformed"),
    ]
    for k, (change, reason) in enumerate(cases):
        msg = {**good, "t_end": now - 2 - k, **change}
        v = ingest.detector(msg, source=f"vds{k}", received_wall=now)
        assert v.reason == reason, (change, v)
