"""Run store backends for the store and executor tests: a SQLite file and a real
PostgreSQL server.

PostgreSQL is the server at ``CITYTWIN_TEST_PG_URL`` (default: the local one,
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test gets a schema of its
own (``search_path`` in the URL, so spawned workers use it too), dropped afterwards:
parallel test runs never see each other's rows. The tests are skipped only when
nothing listens at the server's address; any other problem (no psycopg, bad
credentials, a missing database) fails them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_URL_ENV = "CITYTWIN_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _listening(url: str) -> str | None:
    """Why nothing listens at the server's address, or ``None`` when something does."""
    parsed = make_url(url)
    host, port = parsed.host, parsed.port or 5432
    try:
        if host and not host.startswith("/"):
            with socket.create_connection((host, port), timeout=3.0):
                return None
        path = Path(host or "/var/run/postgresql") / f".s.PGSQL.{port}"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(3.0)
            sock.connect(str(path))
            return None
    except OSError as exc:
        return f"{exc}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server's URL, checked to answer ``SELECT 1``."""
    url = os.environ.get(PG_URL_ENV, DEFAULT_PG_URL)
    why = _listening(url)
    if why is not None:
        pytest.skip(f"no PostgreSQL server at {url} ({PG_URL_ENV}): {why}")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
    return url


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections work in ``schema``."""
    parsed = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL into a fresh, empty schema of the PostgreSQL server (dropped afterwards)."""
    schema = f"citytwin_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(pg_server, schema)
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'runs.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty run store database: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        (tmp_path / "nested").mkdir()
        return sqlite_url(tmp_path)
    return str(request.getfixturevalue("pg_url"))
