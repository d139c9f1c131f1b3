"""Scenario kinds: their spec model and behaviour, in a registry that refuses duplicates."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from scenarios.spec import ScenarioSpec
from twin.errors import ScenarioError
from twin.hooks import ScenarioBehaviour


@dataclass(frozen=True)
class ScenarioKind:
    name: str
    spec: type[ScenarioSpec]
    behaviour: Callable[[ScenarioSpec], ScenarioBehaviour]


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


def _load_builtin() -> None:
    # each module registers its kind when imported
    for module in (
        "scenarios.baseline",
        "scenarios.ev_priority",
        "scenarios.vms_diversion",
        "scenarios.evacuation",
    ):
        importlib.import_module(module)
