"""The live web map: the city's GeoJSON, the page (nothing from other hosts), frames by
role (a researcher's name no vehicle) and delta frames (only what changed)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from city_models.build import City
from city_models.geo import projection_of
from tests.twin.api.conftest import Api
from twin.app.api.routers.map import CityGeometry, delta, session_frame

URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.\-]+""")


def test_the_geojson_has_every_signal_and_edge_in_the_city_box(
    api: Api, district_city: City
) -> None:
    key = api.key(api.tenant("lab"), "researcher")
    r = api.client.get("/v1/cities/district-s1/geojson", headers=key)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    g = r.json()
    kinds: dict[str, list[dict[str, Any]]] = {}
    for f in g["features"]:
        kinds.setdefault(f["properties"]["kind"], []).append(f)
    signals = kinds["signal"]
    assert len(signals) == 49 == len(district_city.manifest.signals)
    assert {f["properties"]["id"] for f in kinds["edge"]} == set(district_city.net.edges)
    assert all(f["geometry"]["type"] == "LineString" for f in kinds["edge"])
    assert len(kinds["poi"]) == len(district_city.manifest.pois)
    assert len(kinds["vms"]) == len(district_city.manifest.vms)
    assert len(kinds.get("zone", [])) == len(district_city.manifest.zones)
    # lon/lat within the city's box (its corners through the city's own projection),
    # give or take the outer lanes' offset (a few metres: 1e-4 deg is about 10 m)
    proj = projection_of(district_city.manifest)
    x0, y0, x1, y1 = district_city.manifest.bbox_xy
    lon0, lat0 = proj.xy_to_lonlat(x0, y0)
    lon1, lat1 = proj.xy_to_lonlat(x1, y1)
    eps = 1e-4
    assert g["bbox"] == pytest.approx([lon0, lat0, lon1, lat1], abs=eps)
    b0, b1, b2, b3 = g["bbox"]

    def inside(pt: list[float]) -> bool:  # in the city's box, and in the GeoJSON's own
        in_city = lon0 - eps <= pt[0] <= lon1 + eps and lat0 - eps <= pt[1] <= lat1 + eps
        return in_city and b0 <= pt[0] <= b2 and b1 <= pt[1] <= b3

    for f in kinds["edge"]:
        assert all(inside(p) for p in f["geometry"]["coordinates"]), f["properties"]["id"]
    by_id = {s.id: s for s in district_city.manifest.signals}
    for f in signals:
        p = f["properties"]
        spec = by_id[p["id"]]
        assert inside(f["geometry"]["coordinates"])
        assert f["geometry"]["coordinates"] == pytest.approx([spec.lon, spec.lat], abs=1e-5)
        assert p["cycle_s"] == spec.cycle_s and p["offset_s"] == spec.offset_s
        greens = [ph for ph in spec.phases if ph.kind == "green"]
        assert [s["state"] for s in p["stages"]] == [ph.state for ph in greens]
    # roles without cities:read, unknown cities
    assert api.client.get("/v1/cities/district-s1/geojson").status_code == 401
    admin = api.key("lab", "admin")
    assert api.client.get("/v1/cities/district-s1/geojson", headers=admin).status_code == 403
    assert api.client.get("/v1/cities/nowhere/geojson", headers=key).status_code == 404


def test_the_page_loads_nothing_from_other_hosts(api: Api) -> None:
    page = api.client.get("/map")
    assert page.status_code == 200 and "<canvas" in page.text
    texts = [page.text]
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert src.startswith(("/map/static/", "data:")), src
        if src.startswith("/"):
            r = api.client.get(src)
            assert r.status_code == 200, src
            texts.append(r.text)
    assert len(texts) == 3  # the page, its script and its style
    for text in texts:
        assert "http://" not in text and "https://" not in text
        # protocol-relative URLs ("//host/...") neither; "//" comments are not URLs
        assert not [m for m in URL.findall(text) if "." in m[2:] and not m.startswith("// ")]
    assert api.client.get("/map/static/secrets.txt").status_code == 404
    assert api.client.get("/map/static/..%2Fapp.py").status_code == 404


OBS: dict[str, Any] = {
    "t_s": 10.0,
    "done": False,
    "signals": {
        "a": {"interval": "green", "stage": 0, "target": 0, "time_in_interval_s": 4.0,
              "next_change_s": 30.0, "min_end_s": 12.0, "priority_stage": None,
              "local": False, "state": "GGrr", "queue_veh": 2.0},
        "b": {"interval": "yellow", "stage": 1, "target": 0, "time_in_interval_s": 1.0,
              "next_change_s": 12.0, "min_end_s": None, "priority_stage": None,
              "local": False, "state": "rryy", "queue_veh": 0.0},
    },
    "lane_halting_veh": {},
}  # fmt: skip


def _geo(city: City) -> CityGeometry:
    return CityGeometry(city)


def test_delta_frames_hold_only_what_changed(district_city: City) -> None:
    geo = _geo(district_city)
    edges = list(district_city.net.edges)
    state = {"vehicles": [["v1", edges[0], 5.0], ["v2", edges[1], 1.0]], "evs": [], "events": []}
    first = session_frame(geo, OBS, state, role="operator")
    # 6 s later: signal a still green (same interval, same entry), b changed; v1 moved,
    # v2 left, v3 came
    later = json.loads(json.dumps(OBS))
    later["t_s"] = 16.0
    later["signals"]["a"]["time_in_interval_s"] = 10.0
    later["signals"]["b"].update(interval="green", stage=0, time_in_interval_s=0.0,
                                 next_change_s=40.0, min_end_s=26.0, state="GGrr")  # fmt: skip
    state2 = {"vehicles": [["v1", edges[0], 15.0], ["v3", edges[2], 0.0]], "evs": [], "events": []}
    second = session_frame(geo, later, state2, role="operator")
    d = delta(first, second)
    assert d["t_s"] == 16.0
    assert "a" not in d.get("signals", {})  # steady: no delta
    assert d["signals"]["b"] == {"interval": "green", "stage": 0, "entered_s": 16.0,
                                 "next_change_s": 40.0, "min_end_s": 26.0,
                                 "state": "GGrr"}  # fmt: skip
    assert set(d["vehicles"]) == {"v1", "v3"}
    assert d["removed"] == {"vehicles": ["v2"]}
    assert "queues" not in d and "incidents" not in d and "vms" not in d
    # nothing changed: a delta of t_s alone
    assert delta(second, second) == {"t_s": 16.0}


def test_a_researchers_frames_name_no_vehicle(district_city: City) -> None:
    geo = _geo(district_city)
    edges = list(district_city.net.edges)
    vms = {"kind": "vms_message", "sign": "vms1", "text": "SLOW", "t_s": 9.0}
    state = {"vehicles": [["car_17", edges[0], 5.0], ["amb1", edges[1], 3.0]], "evs": ["amb1"],
             "events": [vms]}  # fmt: skip
    obs = dict(OBS, lane_halting_veh={f"{edges[0]}_0": 3.0})
    operator = session_frame(geo, obs, state, role="operator")
    assert set(operator["vehicles"]) == {"car_17"} and set(operator["evs"]) == {"amb1"}
    for role in ("researcher", "fire", "police"):
        frame = session_frame(geo, obs, state, role=role)
        text = json.dumps(frame)
        assert "car_17" not in text and "amb1" not in text
        assert frame["vehicles"] == {} and frame["evs"] == {}
        assert frame["counts"]["running"] == 2 and frame["queues"] == {edges[0]: 3.0}
        assert len(frame["signals"]) == 2 and frame["vms"]["vms1"]["text"] == "SLOW"


@pytest.mark.sumo
def test_a_session_followed_on_the_map(api: Api) -> None:
    lab = api.tenant("lab")
    researcher, operator = api.key(lab, "researcher"), api.key(lab, "operator")
    other = api.key(api.tenant("other"), "researcher")
    c = api.client
    body = {"scenario": "baseline", "seed": 4, "overrides": {"sim.duration_s": 600}}
    r = c.post("/v1/sessions", json=body, headers=researcher)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    c.post(f"/v1/sessions/{sid}/advance", json={"seconds": 30}, headers=researcher)
    geo = c.get(f"/v1/sessions/{sid}/map/geojson", headers=researcher).json()
    assert sum(f["properties"]["kind"] == "signal" for f in geo["features"]) == 49
    frame = c.get(f"/v1/sessions/{sid}/map/frame", headers=researcher).json()
    assert frame["t_s"] == 30.0 and len(frame["signals"]) == 49
    assert frame["vehicles"] == {} and frame["evs"] == {} and not frame["vehicles_shown"]
    assert c.get(f"/v1/sessions/{sid}/map/frame", headers=other).status_code == 404
    fire = api.key(lab, "fire")
    assert c.get(f"/v1/sessions/{sid}/map/frame", headers=fire).status_code == 403
    op = c.get(f"/v1/sessions/{sid}/map/frame", headers=operator).json()
    assert op["vehicles_shown"] and len(op["signals"]) == 49
    if op["vehicles_available"]:
        assert op["vehicles"]  # the AM peak after 30 s
    # the stream: the key as the first message (a browser cannot send headers)
    token = researcher["Authorization"].split()[1]
    with c.websocket_connect(f"/v1/sessions/{sid}/map/stream?hz=10") as ws:
        ws.send_text(json.dumps({"key": token}))
        key = json.loads(ws.receive_text())
        assert key["type"] == "key" and key["t_s"] == 30.0 and len(key["signals"]) == 49
        c.post(f"/v1/sessions/{sid}/advance", json={"seconds": 5}, headers=researcher)
        d = json.loads(ws.receive_text())
    assert d["type"] == "delta" and d["t_s"] == 35.0 and d["seq"] == 1
    assert "vehicles" not in d and "evs" not in d
    for tls, fields in d.get("signals", {}).items():  # only what changed, field by field
        assert fields and all(key["signals"][tls][f] != v for f, v in fields.items())
    assert len(d.get("signals", {})) < 49  # most signals keep their interval over 5 s
    with c.websocket_connect(f"/v1/sessions/{sid}/map/stream") as ws:
        ws.send_text(json.dumps({"key": "ctk_wrong"}))
        with pytest.raises(Exception):  # noqa: B017 (closed 1008)
            ws.receive_text()
    c.delete(f"/v1/sessions/{sid}", headers=researcher)
