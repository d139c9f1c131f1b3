"""What every scenario is: a spec, the run hooks, and an optional ``prepare`` step.

A scenario subclasses :class:`Scenario` and overrides only the hooks it needs (SimPy's
template-method style): ``prepare`` runs before SUMO starts (a network variant, extra
routes or loops); ``setup``, ``on_step``, ``on_interval``, ``finish`` and ``series`` run
inside the engine's :class:`~twin.engine.run.Run` (see :class:`~twin.engine.run.RunHooks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from city_models.build import City
from scenarios.spec import ScenarioSpec
from twin.engine.run import RunContext, RunHooks

SpecT = TypeVar("SpecT", bound=ScenarioSpec)

Context = RunContext[City, SpecT]
"""The context a scenario's hooks receive."""


@dataclass(frozen=True)
class PreparedInputs:
    """What :meth:`Scenario.prepare` returns before SUMO starts: the city to run on (e.g.
    a variant with contraflow lanes), extra SUMO route / additional files (e.g.
    evacuee trips, incident loops, vehicle types) and extra SUMO options (e.g. the
    junction collision check of emergency vehicles that pass red lights)."""

    city: City
    routes: tuple[Path, ...] = ()
    additional: tuple[Path, ...] = ()
    sumo_args: tuple[str, ...] = ()


class Scenario(RunHooks[City, SpecT], Generic[SpecT]):
    """Base class of every scenario kind; ``spec`` is its validated spec."""

    def __init__(self, spec: SpecT) -> None:
        self.spec = spec

    def check(self, city: City) -> None:
        """Check the spec against the city without SUMO (stations, streets, zones...):
        a :class:`~twin.errors.ScenarioError` here is a bad-input error, reported before
        a run is recorded. By default there is nothing to check."""

    def prepare(self, city: City, *, seed: int, run_dir: Path) -> PreparedInputs:
        """Before demand is written and SUMO starts; by default nothing changes."""
        return PreparedInputs(city=city)
