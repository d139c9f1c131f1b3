"""Keys: missing, malformed, wrong, revoked, rotated; stored only as keyed hashes;
settings that refuse the placeholder secret outside development."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.twin.api.conftest import Api
from twin.app.api.keys import KEY_TAG, key_hash, revoke_key, rotate_key
from twin.app.api.settings import DEFAULT_SECRET, load_api_settings
from twin.errors import ConfigError


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (None, "No API key"),
        ("Bearer nonsense", "malformed"),
        ("Bearer ctk_" + "A" * 43, "not valid"),
        ("Basic dXNlcjpwYXNz", "No API key"),
    ],
)
def test_missing_malformed_or_wrong_keys_are_401(api: Api, header: str | None, words: str) -> None:
    api.tenant("lab")
    headers = {} if header is None else {"Authorization": header}
    response = api.client.get("/v1/runs", headers=headers)
    assert response.status_code == 401
    assert words in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_revoked_and_rotated_keys_fail_at_once(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "operator")
    assert api.client.get("/v1/runs", headers=headers).status_code == 200
    keys = api.client.get("/v1/tenant/keys", headers=headers).json()["data"]
    (mine,) = keys
    other = api.key("lab", "researcher")
    other_id = api.client.get("/v1/tenant/keys", headers=headers).json()["data"][1]["id"]
    new = api.client.post(f"/v1/tenant/keys/{other_id}/rotate", headers=headers)
    assert new.status_code == 201 and new.json()["key"].startswith(KEY_TAG)
    assert api.client.get("/v1/runs", headers=other).status_code == 401
    fresh = {"Authorization": f"Bearer {new.json()['key']}"}
    assert api.client.get("/v1/runs", headers=fresh).status_code == 200
    revoke_key(api.door.db, mine["id"])
    response = api.client.get("/v1/runs", headers=headers)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    with pytest.raises(Exception, match="revoked"):
        rotate_key(api.door.db, api.settings.secret, mine["id"])


def test_keys_are_stored_only_as_keyed_hashes(api: Api) -> None:
    headers = api.key(api.tenant("lab"), "operator")
    key = headers["Authorization"].split()[1]
    with api.door.db.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM api_keys")).all()
    dump = repr(rows)
    assert key not in dump and key[12:] not in dump
    assert key_hash(api.settings.secret, key) in dump
    assert key[:12] in dump  # the visible prefix
    assert len(key) == len(KEY_TAG) + 43  # 32 random bytes, URL-safe base64


def test_another_server_secret_knows_no_key(api: Api) -> None:
    key = api.key(api.tenant("lab"), "operator")["Authorization"].split()[1]
    assert key_hash(b"another secret", key) != key_hash(api.settings.secret, key)


def test_settings_refuse_the_placeholder_secret_outside_development() -> None:
    assert (
        load_api_settings(environment="development").secret_key.get_secret_value() == DEFAULT_SECRET
    )
    with pytest.raises(ConfigError, match="CITYTWIN_SECRET_KEY"):
        load_api_settings(environment="production")
    with pytest.raises(ConfigError, match="at least 32"):
        load_api_settings(environment="production", secret_key="short")
    good = load_api_settings(environment="production", secret_key="x" * 40)
    assert good.secret == b"x" * 40
    with pytest.raises(ConfigError, match="CITYTWIN_RUN_WORKERS"):
        load_api_settings(run_workers=-1)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYTWIN_ENVIRONMENT", "production")
    monkeypatch.setenv("CITYTWIN_SECRET_KEY", "s" * 48)
    monkeypatch.setenv("CITYTWIN_RUN_WORKERS", "3")
    settings = load_api_settings()
    assert (settings.environment, settings.run_workers) == ("production", 3)
    monkeypatch.delenv("CITYTWIN_SECRET_KEY")
    with pytest.raises(ConfigError):
        load_api_settings()
