"""The baseline scenario: background demand and the network's fixed-time plans."""

from __future__ import annotations

from typing import Any

from scenarios.registry import ScenarioKind, register
from scenarios.spec import BaselineSpec, ScenarioSpec
from twin.hooks import RunContext


class Baseline:
    """Does nothing but let the network run; the reference every scenario compares to."""

    needs_step_hook = False

    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec

    def setup(self, ctx: RunContext) -> None:
        ctx.bus.record("baseline_start", period=self.spec.demand.period)

    def on_step(self, ctx: RunContext) -> None:
        return None

    def on_interval(self, ctx: RunContext) -> None:
        return None

    def finish(self, ctx: RunContext) -> dict[str, Any]:
        return {}


register(ScenarioKind(name="baseline", spec=BaselineSpec, behaviour=Baseline))
