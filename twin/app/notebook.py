"""CityTwin from Python (a notebook, a script): the same doors as the CLI.

>>> import twin
>>> record = twin.run("ev_priority", overrides={"mode": "none", "sim.duration_s": 1200})
>>> record.metrics["ev_s_per_km"]
>>> twin.runs().read_series(record.id, "network").plot(x="t_s", y="vehicles_running")

Each run goes through the run executor in its own process and is recorded in the run
store (``data_dir`` or ``CITYTWIN_DATA``, default ``~/.citytwin``), exactly as
``twin run`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from city_models.build import City, build_city, load_city
from city_models.importing import import_city
from scenarios.loader import load_scenario
from scenarios.spec import ScenarioSpec
from twin.app.compose import execute_request, run_request
from twin.app.study import with_overrides
from twin.config import load_settings
from twin.engine.executors import LocalProcess
from twin.engine.store import RunRecord, RunStore

__all__ = ["build_city", "import_city", "load_city", "load_scenario", "run", "runs"]


def run(
    scenario: str | Path | ScenarioSpec,
    *,
    city: City | str | Path | None = None,
    seed: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
) -> RunRecord:
    """Run a scenario (a shipped name, a TOML path or a spec) and return its record.

    ``overrides`` are dotted paths as for ``twin run --set`` (``{"sim.duration_s":
    600}``), validated like the file; ``city`` a city or its folder (default: the
    scenario's own, built and cached on demand)."""
    settings = load_settings(data_dir=data_dir)
    spec = scenario if isinstance(scenario, ScenarioSpec) else load_scenario(scenario)
    spec = with_overrides(spec, list((overrides or {}).items()), source=f"{spec.name} overrides")
    if isinstance(city, str | Path):
        city = load_city(Path(city))
    if city is None:
        city = (
            load_city(Path(spec.city.path))
            if spec.city.path
            else build_city(spec.city.preset, seed=spec.city.seed, cities_dir=settings.cities_dir)
        )
    with LocalProcess(settings, execute_request) as executor:
        run_id = executor.submit(run_request(spec, city, seed=spec.seed if seed is None else seed))
        return executor.wait(run_id)


def runs(*, data_dir: str | Path | None = None) -> RunStore:
    """The run store: ``.list()``, ``.get(id)``, ``.read_series(id, name)``."""
    return RunStore(load_settings(data_dir=data_dir).db_url)
