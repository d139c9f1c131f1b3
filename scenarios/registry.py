"""Scenario kinds: their spec model and scenario class, in a registry that refuses
duplicate names. The one list of kinds is what is registered here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from scenarios.base import Scenario
from scenarios.spec import ScenarioSpec
from twin.errors import ScenarioError

BUILTIN_MODULES = (
    "scenarios.baseline",
    "scenarios.ev_priority",
    "scenarios.vms_diversion",
    "scenarios.evacuation",
)


@dataclass(frozen=True)
class ScenarioKind:
    """A kind of scenario: its name (the spec's ``kind``), spec model and class."""

    name: str
    spec: type[ScenarioSpec]
    scenario: type[Scenario[Any]]

    def make(self, spec: ScenarioSpec) -> Scenario[Any]:
        """The scenario for ``spec``; a :class:`ScenarioError` if the spec is not this
        kind's."""
        if not isinstance(spec, self.spec):
            raise ScenarioError(
                f"Scenario {spec.name!r} is a {type(spec).__name__}, but kind {self.name!r} "
                f"needs a {self.spec.__name__}."
            )
        return self.scenario(spec)


_KINDS: dict[str, ScenarioKind] = {}


def register(kind: ScenarioKind) -> ScenarioKind:
    if kind.name in _KINDS:
        raise ValueError(f"scenario kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> ScenarioKind:
    _load_builtin()
    try:
        return _KINDS[name]
    except KeyError:
        raise ScenarioError(
            f"Unknown scenario kind {name!r}; allowed: {', '.join(sorted(_KINDS))}."
        ) from None


def kinds() -> list[str]:
    _load_builtin()
    return sorted(_KINDS)


def make_scenario(spec: ScenarioSpec) -> Scenario[Any]:
    """The scenario object of a validated spec."""
    return get_kind(spec.kind).make(spec)


def _load_builtin() -> None:
    # each module registers its kind when imported (deliberately lazy: the registry is
    # imported by every kind's module)
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
