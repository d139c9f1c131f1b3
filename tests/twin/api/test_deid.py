"""De-identification: the rules one by one, and what each role gets out of a run's
exports through the API, every export audited with the hash of its bytes."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd

from tests.twin.api.conftest import Api, quick
from twin.app.api.deid import (
    CountRule,
    Pseudonyms,
    deidentify_trajectories,
    drop_ev_rows,
    suppress_small,
)


def test_pseudonyms_are_stable_within_an_export_and_unlinkable_across() -> None:
    one = Pseudonyms(secret=b"s", salt="tenant-a")
    assert one("t1") == one("t1") != one("t2")
    assert one("t1").startswith("v_") and "t1" not in one("t1")
    assert Pseudonyms(secret=b"s", salt="tenant-a")("t1") != one("t1")  # a new export
    twin = Pseudonyms(secret=b"s", salt="tenant-b", nonce=one.nonce)
    assert twin("t1") != one("t1")  # another tenant's salt


def test_small_cells_and_what_is_computed_over_them_are_suppressed() -> None:
    frame = pd.DataFrame({"n": [0, 1, 4, 5, 12], "speed": [np.nan, 9.0, 8.0, 7.0, 6.0]})
    out = suppress_small(frame, CountRule(counts=("n",), derived={"speed": "n"}))
    assert out["n"].tolist()[0] == 0 and out["n"].isna().tolist() == [
        False,
        True,
        True,
        False,
        False,
    ]
    assert out["speed"].isna().tolist() == [True, True, True, False, False]


def test_ev_rows_and_call_places_are_dropped() -> None:
    events = pd.DataFrame([{"t_s": 0, "kind": "start"},
                           {"t_s": 1, "kind": "ev_dispatched", "ev": "amb1", "call_edge": "e"},
                           {"t_s": 2, "kind": "dispatch amb1"}])  # fmt: skip
    out = drop_ev_rows(events)
    assert out["kind"].tolist() == ["start"] and "call_edge" not in out and "ev" not in out


def test_trajectories_lose_300_m_at_both_ends_and_are_snapped() -> None:
    t = np.arange(0.0, 100.0, 0.5)
    edges = [f"e{int(x // 100)}" for x in 10.0 * t]
    frame = pd.DataFrame({"vehicle": "t1", "t_s": t + 0.3, "distance_m": 10.0 * t,
                          "edge": edges, "vtype": "car"})  # fmt: skip
    amb = frame.assign(vehicle="amb1", vtype="ambulance")
    out = deidentify_trajectories(pd.concat([frame, amb]), Pseudonyms(secret=b"s", salt="x"))
    assert set(out.columns) == {"vehicle", "t_s", "edge"}
    assert out["vehicle"].nunique() == 1 and not out["vehicle"].str.contains("t1").any()
    assert out["t_s"].min() >= 30.0 and out["t_s"].max() <= 70.0  # 300 m at 10 m/s
    assert (out["t_s"] == np.floor(out["t_s"])).all()
    assert out["edge"].min() == "e3" and out["edge"].max() == "e6"


def _csv(api: Api, run_id: str, name: str, headers: dict[str, str]) -> pd.DataFrame:
    response = api.client.get(f"/v1/runs/{run_id}/series/{name}", params={"format": "csv"},
                              headers=headers)  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["X-Content-SHA256"] == hashlib.sha256(response.content).hexdigest()
    return pd.read_csv(io.BytesIO(response.content))


def test_what_each_role_gets_and_that_every_export_is_audited(api: Api) -> None:
    operator = api.key(api.tenant("city"), "operator")
    researcher, fire, police = (api.key("city", r) for r in ("researcher", "fire", "police"))
    run = api.client.post("/v1/runs", json=quick(), headers=operator).json()
    api.wait(run["id"], operator)
    rid = run["id"]
    listing = api.client.get(f"/v1/runs/{rid}/series", headers=researcher).json()
    assert listing["view"] == "deidentified"
    assert "unknown_series" not in listing["data"]  # no rule: withheld
    assert (
        "unknown_series"
        in api.client.get(f"/v1/runs/{rid}/series", headers=operator).json()["data"]
    )
    assert (
        api.client.get(f"/v1/runs/{rid}/series/unknown_series", headers=researcher).status_code
        == 404
    )

    raw_trips = _csv(api, rid, "trips", operator)
    assert "amb1" in raw_trips["vehicle"].tolist() and "t3" in raw_trips["vehicle"].tolist()
    trips = _csv(api, rid, "trips", researcher)
    assert len(trips) == 12  # the ambulance is gone
    assert trips["vehicle"].str.startswith("v_").all() and trips["vehicle"].nunique() == 12
    assert "depart_lane" not in trips and "arrival_lane" not in trips
    again = _csv(api, rid, "trips", researcher)
    assert set(again["vehicle"]).isdisjoint(trips["vehicle"])  # per export

    queues = _csv(api, rid, "queues", researcher)
    assert queues["queue_veh"].isna().tolist() == [False, True, False]  # 0, 3 -> blank, 7
    events = _csv(api, rid, "events", researcher)
    assert "ev_dispatched" not in events["kind"].tolist()
    assert not events["vehicle"].dropna().isin(["t3"]).any()
    assert "ev_dispatched" in _csv(api, rid, "events", fire)["kind"].tolist()  # its own EVs
    assert "ev_dispatched" not in _csv(api, rid, "events", police)["kind"].tolist()

    report = api.client.get(f"/v1/runs/{rid}/report", headers=researcher)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")

    audit = api.client.get("/v1/tenant/audit", headers=operator).json()
    exports = [a for a in audit["data"] if a["action"].startswith("export:")]
    assert len(exports) == 8  # 7 series downloads and 1 report (the refused one: none)
    newest = exports[0]
    assert newest["action"] == "export:report" and newest["role"] == "researcher"
    assert newest["content_sha256"] == hashlib.sha256(report.content).hexdigest()
    by_role = {a["role"] for a in exports}
    assert by_role == {"operator", "researcher", "fire", "police"}
    assert exports[-1]["parameters"] == {"series": "trips", "format": "csv", "view": "raw",
                                         "rows": 13}  # fmt: skip
