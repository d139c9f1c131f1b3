"""FIELD.toml: validated against the city, every mistake one ConfigError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from city_models.build import City
from twin.app.live.field import load_field, parse_field
from twin.errors import ConfigError


def _raw(city: City, **over: object) -> dict[str, object]:
    sig = city.manifest.signals[0]
    stages = sum(1 for p in sig.phases if p.kind == "green")
    raw: dict[str, object] = {
        "backup_time_s": 6,
        "heartbeat_s": 2.0,
        "signals": {
            sig.id: {"host": "127.0.0.1", "port": 16100, "phases": list(range(1, stages + 1))}
        },
    }
    raw.update(over)
    return raw


def test_a_good_field_file(district_city: City, tmp_path: Path) -> None:
    path = tmp_path / "FIELD.toml"
    sig = district_city.manifest.signals[0]
    path.write_text(
        f'community = "x"\n[signals.{sig.id}]\nhost = "10.0.0.2"\nport = 161\n'
        f"phases = [2, [4, 8], 6]\n"
    )
    stages = sum(1 for p in sig.phases if p.kind == "green")
    if stages != 3:
        pytest.skip("the first signal has no 3 stages")
    cfg = load_field(path, district_city)
    assert cfg.signals[sig.id].stage_phases() == [(2,), (4, 8), (6,)]
    assert cfg.community_of(sig.id) == "x"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"heartbeat_s": 4.0}, "heartbeat_s"),
        ({"backup_time_s": 0}, "backup_time_s"),
        ({"signals": {"nowhere": {"host": "h", "port": 1, "phases": [1]}}}, "not signals of city"),
    ],
)
def test_mistakes_are_named(district_city: City, change: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_field(_raw(district_city, **change), district_city)


def test_a_stage_count_that_does_not_fit_and_a_phase_twice(district_city: City) -> None:
    sig = district_city.manifest.signals[0]
    with pytest.raises(ConfigError, match="stages"):
        parse_field(
            _raw(district_city, signals={sig.id: {"host": "h", "port": 1, "phases": [1]}}),
            district_city,
        )
    stages = sum(1 for p in sig.phases if p.kind == "green")
    with pytest.raises(ConfigError, match="two stages"):
        parse_field(
            _raw(district_city, signals={sig.id: {"host": "h", "port": 1, "phases": [1] * stages}}),
            district_city,
        )
    with pytest.raises(ConfigError, match="NTCIP phase number"):
        parse_field(
            _raw(
                district_city, signals={sig.id: {"host": "h", "port": 1, "phases": [40] * stages}}
            ),
            district_city,
        )


def test_not_toml(district_city: City, tmp_path: Path) -> None:
    path = tmp_path / "FIELD.toml"
    path.write_text("signals = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_field(path, district_city)
