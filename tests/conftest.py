"""Shared fixtures: one district city per test session, data dirs in tmp paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from city_models.build import City, build_city
from twin.config import Settings, load_settings


@pytest.fixture(scope="session")
def district_city(tmp_path_factory: pytest.TempPathFactory) -> City:
    """The default city (preset district, seed 1), built once per test session."""
    out = tmp_path_factory.mktemp("cities") / "district-s1"
    return build_city("district", seed=1, out=out)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A private data dir + SQLite store for one test."""
    return load_settings(data_dir=tmp_path / "data", db_url=None)
