"""Uploads: scenarios (JSON or TOML, validated, named safely) and cities (archives
checked for size, names that leave their folder, links, and every signal plan)."""

from __future__ import annotations

import io
import tarfile
import zipfile

from city_models.build import City
from tests.twin.api.conftest import Api

TOML = b"""name = "my_peak"
kind = "baseline"
[sim]
duration_s = 600
"""


def test_validate_names_the_bad_field_with_its_path(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "researcher")
    toml = {**headers, "content-type": "application/toml"}
    ok = api.client.post("/v1/scenarios/validate", content=TOML, headers=toml)
    assert ok.status_code == 200 and ok.json()["spec"]["sim"]["duration_s"] == 600
    bad = api.client.post("/v1/scenarios/validate", content=TOML.replace(b"600", b"-5"),
                          headers=toml)  # fmt: skip
    assert bad.status_code == 422
    (entry,) = bad.json()["detail"]
    assert entry["loc"] == ["body", "sim", "duration_s"] and "-5" in entry["msg"]
    broken = api.client.post("/v1/scenarios/validate", content=b"name = ", headers=toml)
    assert broken.status_code == 422 and "not valid TOML" in broken.json()["detail"][0]["msg"]
    short = {"scenario": "baseline", "overrides": {"sim": {"duration_s": 1}}}
    run = api.client.post("/v1/runs", headers=headers, json=short)
    assert run.status_code == 422
    assert run.json()["detail"][0]["loc"] == ["body", "scenario", "sim", "duration_s"]


def test_uploaded_scenarios_are_the_tenants_own(api: Api) -> None:
    lab = api.key(api.tenant("lab"), "researcher")
    city = api.key(api.tenant("city"), "operator")
    toml = {**lab, "content-type": "application/toml"}
    assert api.client.post("/v1/scenarios", content=TOML, headers=toml).status_code == 201
    names = [s["name"] for s in api.client.get("/v1/scenarios", headers=lab).json()["data"]]
    assert "my_peak" in names and "baseline" in names
    assert api.client.get("/v1/scenarios/my_peak", headers=city).status_code == 404
    escape = TOML.replace(b'"my_peak"', b'"..x"')
    refused = api.client.post("/v1/scenarios", content=escape, headers=toml)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "name"]
    server_path = {"kind": "baseline", "name": "x", "city": {"path": "/etc"}}
    path = api.client.post("/v1/scenarios/validate", headers=lab, json=server_path)
    assert path.status_code == 422 and "city.path" in path.json()["detail"][0]["msg"]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_city_uploads_are_checked_before_anything_is_kept(api: Api, district_city: City) -> None:
    headers = api.key(api.tenant("city"), "operator")
    tenant_dir = api.door.engine.data_dir / "tenants" / "city"

    def upload(name: str, archive: bytes) -> tuple[int, str]:
        response = api.client.post(f"/v1/cities?name={name}", content=archive, headers=headers)
        return response.status_code, response.text

    assert upload("evil", _zip({"../../escape.json": b"{}"}))[0] == 422
    assert not (api.door.engine.data_dir / "escape.json").exists()
    assert upload("evil", _zip({"run.sh": b"rm -rf /"}))[0] == 422
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w:gz") as tf:
        info = tarfile.TarInfo("city.json")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    assert upload("evil", link.getvalue())[0] == 422
    assert upload("evil", _zip({"city.json": b"{}"}))[0] == 422  # not a city
    assert upload("../up", _zip({"city.json": b"{}"}))[0] == 422  # the name itself
    assert not (tenant_dir / "cities" / "evil").exists()

    archive = _zip({p.name: p.read_bytes() for p in district_city.path.iterdir() if p.is_file()})
    code, text = upload("mine", archive)
    assert code == 201, text
    listed = api.client.get("/v1/cities", headers=headers).json()["data"]
    assert {"id": "mine", "source": "uploaded", "preset": None, "seed": None,
            "signals": 49, "built": True} in listed  # fmt: skip
    assert upload("mine", archive)[0] == 409
    run = api.client.post("/v1/runs", headers=headers, json={
        "scenario": "baseline", "city": "mine", "overrides": {"sim.duration_s": 300}})  # fmt: skip
    assert run.status_code == 202, run.text
    other = api.key(api.tenant("lab"), "operator")
    refused = api.client.post(
        "/v1/runs", headers=other, json={"scenario": "baseline", "city": "mine"}
    )
    assert refused.status_code == 422 and "no such city" in refused.json()["detail"][0]["msg"]
