"""Shared fixtures: one district city per test session, data dirs in tmp paths.

Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE`` (default ``dev``): ``dev`` tries
25 examples per property (quick, while editing), ``ci`` 100 (``tests/check.sh``, which
CI runs). A test that sets ``max_examples`` itself overrides both, so none does without
a reason written next to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from city_models.build import City, build_city
from twin.config import Settings, load_settings

# deadline=None: a property drawing a whole plan or network takes longer than
# Hypothesis' 200 ms default on a loaded 2-core runner, which is noise, not a bug.
hypothesis_settings.register_profile("dev", max_examples=25, deadline=None)
hypothesis_settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
HYPOTHESIS_PROFILES = ("dev", "ci")
_profile = os.environ.get("HYPOTHESIS_PROFILE", "dev")
if _profile not in HYPOTHESIS_PROFILES:
    raise pytest.UsageError(
        f"HYPOTHESIS_PROFILE={_profile!r} is not a Hypothesis profile; "
        f"allowed: {', '.join(HYPOTHESIS_PROFILES)}"
    )
hypothesis_settings.load_profile(_profile)


# The suite's district carries its pre-calibration demand (3,600 trips/h in the AM peak,
# a fifth of the calibrated Korean peak of docs/CALIBRATION.md), so that its hundreds of
# SUMO runs stay inside CI's time; same layout, signals and plans. The calibrated peak
# itself is measured by experiments.calibration and tests/integration/test_peak.py.
LIGHT_DISTRICT = {"peak_trips_per_h": 3600}


@pytest.fixture(scope="session")
def district_city(tmp_path_factory: pytest.TempPathFactory) -> City:
    """The district (seed 1) at the suite's light demand, built once per test session."""
    out = tmp_path_factory.mktemp("cities") / "district-s1"
    return build_city("district", seed=1, out=out, overrides=LIGHT_DISTRICT)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A private data dir + SQLite store for one test."""
    return load_settings(data_dir=tmp_path / "data", db_url=None)
