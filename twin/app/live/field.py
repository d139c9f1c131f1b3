"""``FIELD.toml``: which controller runs each city signal, and how to talk to it.

.. code-block:: toml

    backup_time_s = 5        # unitBackupTime written to every controller (s)
    heartbeat_s = 1.0        # the center writes at least this often (<= backup / 3)
    timeout_s = 0.3          # one SNMP request (s)
    retries = 1              # resends before a request counts as failed
    down_after = 3           # failed requests in a row: the controller is marked down
    probe_s = 2.0            # how often a controller marked down is asked again
    community = "citytwin"   # SNMPv2c community of every controller (default "public";
                             # the emulator answers only to the one it was started with)

    [signals.n7_7]
    host = "127.0.0.1"
    port = 16124
    phases = [2, 4, [6, 8]]  # NTCIP phase(s) of each of the city's stages, in plan order
    # community = "other"    # per controller

Every signal named must be one of the city's, with one entry per stage of its plan;
a phase number serves one stage only. City signals left out are not commanded (they run
their own plans). A mistake is one :class:`~twin.errors.ConfigError` naming the file, the
field and what is allowed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from city_models.build import City
from twin.app.live import ntcip
from twin.errors import ConfigError


class FieldSignal(BaseModel):
    """One controller: its address, community and phase numbers per stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    community: str | None = Field(default=None, min_length=1, max_length=64)
    phases: list[int | list[int]] = Field(min_length=1, max_length=16)

    def stage_phases(self) -> list[tuple[int, ...]]:
        return [tuple(p) if isinstance(p, list) else (p,) for p in self.phases]


class FieldConfig(BaseModel):
    """The center's view of the field (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backup_time_s: int = Field(default=5, ge=2, le=600)
    heartbeat_s: float = Field(default=1.0, gt=0.0, le=60.0)
    timeout_s: float = Field(default=0.3, gt=0.0, le=10.0)
    retries: int = Field(default=1, ge=0, le=5)
    down_after: int = Field(default=3, ge=1, le=20)
    probe_s: float = Field(default=2.0, gt=0.0, le=60.0)
    community: str = Field(default="public", min_length=1, max_length=64)
    signals: dict[str, FieldSignal] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> FieldConfig:
        if self.heartbeat_s > self.backup_time_s / 3:
            raise ValueError(
                f"heartbeat_s = {self.heartbeat_s:g} must be at most backup_time_s / 3 "
                f"({self.backup_time_s / 3:g} s): the heartbeat must land well inside the "
                "controllers' backup time"
            )
        for tls, sig in self.signals.items():
            flat: list[int] = []
            for k, group in enumerate(sig.stage_phases()):
                if not group:
                    raise ValueError(f"signals.{tls}.phases[{k}] is empty")
                for p in group:
                    try:
                        ntcip.check_phase(p)
                    except ValueError as exc:
                        raise ValueError(f"signals.{tls}.phases[{k}]: {exc}") from None
                flat += group
            if len(set(flat)) != len(flat):
                raise ValueError(f"signals.{tls}.phases: a phase number serves two stages {flat}")
        return self

    def community_of(self, tls: str) -> str:
        return self.signals[tls].community or self.community


def parse_field(raw: dict[str, Any], city: City, *, source: str = "FIELD.toml") -> FieldConfig:
    """Validate a FIELD table against the city; errors name ``source`` and the field."""
    try:
        cfg = FieldConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(
            f"{source}: field '{where}': {first['msg']} (got {str(first.get('input'))[:80]!r})."
        ) from exc
    stages = {s.id: sum(1 for p in s.phases if p.kind == "green") for s in city.manifest.signals}
    unknown = sorted(set(cfg.signals) - set(stages))
    if unknown:
        raise ConfigError(
            f"{source}: signals {', '.join(unknown[:5])} are not signals of city {city.name} "
            f"(e.g. {', '.join(sorted(stages)[:5])})."
        )
    for tls, sig in cfg.signals.items():
        if len(sig.phases) != stages[tls]:
            raise ConfigError(
                f"{source}: field 'signals.{tls}.phases' has {len(sig.phases)} entries; signal "
                f"{tls} of city {city.name} has {stages[tls]} stages (one entry each, in order)."
            )
    return cfg


def load_field(path: Path, city: City) -> FieldConfig:
    """Read and validate ``FIELD.toml`` (see the module doc)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"No field file at {path}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}.") from exc
    return parse_field(raw, city, source=str(path))
