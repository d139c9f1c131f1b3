"""CityTwin. From Python: ``import twin; twin.run("baseline")`` (see
:mod:`twin.app.notebook`); the names are loaded on first use, so importing a small part
of the package (``twin.errors``) stays cheap."""

from __future__ import annotations

import importlib
from typing import Any

_NOTEBOOK = ("build_city", "import_city", "load_city", "load_scenario", "run", "runs")


def __getattr__(name: str) -> Any:
    if name in _NOTEBOOK:
        return getattr(importlib.import_module("twin.app.notebook"), name)
    raise AttributeError(f"module 'twin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NOTEBOOK])
