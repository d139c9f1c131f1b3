"""Running one scenario inside a benchmark's worker process."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def simulate_raw(raw: dict[str, Any], city: Any, *, seed: int, source: str) -> Any:
    """Validate a scenario given as a dict and run it on ``city`` (a built city or its
    folder) in a scratch folder, in this process; returns the
    :class:`~twin.engine.run.RunResult`."""
    from city_models.build import load_city
    from scenarios.loader import parse_scenario
    from scenarios.registry import get_kind
    from twin.app.compose import simulate

    if isinstance(city, (str, Path)):
        city = load_city(Path(city))
    spec = parse_scenario(raw, source=source)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        return simulate(spec, city, get_kind(spec.kind).make(spec), seed=seed, run_dir=Path(tmp))
