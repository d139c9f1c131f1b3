"""What a scenario plugs into a run: the context it sees and the hooks it implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from twin.events import EventBus
from twin.sumo_session import SumoSession


@dataclass
class RunContext:
    """Handed to every hook. ``city`` is a :class:`city_models.build.City`."""

    session: SumoSession
    bus: EventBus
    city: Any
    spec: Any
    seed: int
    run_dir: Path
    control: Any = None  # signal_control.control.ControlManager, when signals are driven
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedInputs:
    """What a scenario's optional ``prepare(city, *, seed, run_dir)`` returns before SUMO
    starts: the city to run on (e.g. a variant with contraflow lanes) and extra SUMO
    route / additional files (e.g. evacuee trips)."""

    city: Any
    routes: tuple[Path, ...] = ()
    additional: tuple[Path, ...] = ()


class ScenarioBehaviour(Protocol):
    """A scenario's behaviour during a run (template methods, all optional work).

    ``needs_step_hook``: call :meth:`on_step` after every SUMO step (costly; only for
    scenarios that must act within a control interval, e.g. following an EV).
    A behaviour may also define ``prepare(city, *, seed, run_dir) -> PreparedInputs``,
    called before demand is written and SUMO starts, and ``series() -> dict[str,
    DataFrame]``, its own time series, stored with the run after :meth:`finish`.
    """

    needs_step_hook: bool

    def setup(self, ctx: RunContext) -> None: ...

    def on_step(self, ctx: RunContext) -> None: ...

    def on_interval(self, ctx: RunContext) -> None: ...

    def finish(self, ctx: RunContext) -> dict[str, Any]: ...
