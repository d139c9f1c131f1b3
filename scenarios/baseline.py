"""The baseline scenario: background demand and the network's fixed-time plans."""

from __future__ import annotations

from scenarios.base import Context, Scenario
from scenarios.registry import ScenarioKind, register
from scenarios.spec import BaselineSpec


class Baseline(Scenario[BaselineSpec]):
    """Does nothing but let the network run; the reference every scenario compares to."""

    def setup(self, ctx: Context[BaselineSpec]) -> None:
        ctx.bus.record("baseline_start", period=self.spec.demand.period)


register(ScenarioKind(name="baseline", spec=BaselineSpec, scenario=Baseline))
