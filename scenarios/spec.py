"""Scenario specs: typed, validated, frozen. A TOML file is validated into one of these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from city_models.presets import PRESETS
from signal_control.control import KINDS

Period = Literal["night", "am_peak", "midday", "pm_peak"]

# One source for each list: the city presets (city_models.presets.PRESETS) and the
# controller kinds (signal_control.control.KINDS). A Literal built from them validates,
# reports ("Input should be 'district' or 'suwon-scale'") and documents (JSON schema enum)
# the allowed values; type checkers, which cannot see a Literal built at run time, see str.
if TYPE_CHECKING:
    PresetName = str
    ControllerKind = str
else:
    PresetName = Literal[tuple(PRESETS)]
    ControllerKind = Literal[tuple(KINDS)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CityRef(_Spec):
    """Which city: a preset built (and cached) on demand, or a built city folder."""

    preset: PresetName = "district"
    seed: int = Field(default=1, ge=0, le=2**31 - 1)
    path: str | None = None


class DemandSpec(_Spec):
    """Background traffic from the city's OD model."""

    period: Period = "am_peak"
    scale: float = Field(default=1.0, gt=0.0, le=5.0)
    # "at_departure": SUMO routes each trip when it departs, on the travel times it
    # measures then (every driver has a live navigation app); "habitual": every trip
    # is routed once before the run on free-flow times (duarouter) and keeps its route
    # unless something in the run (a sign, the police) makes the driver change it
    routing: Literal["at_departure", "habitual"] = "at_departure"
    # "auto": an imported SUMO model's own routes when the city has them, else the OD
    # model; "od_model" / "city_routes" choose one (scale applies to both: SUMO --scale)
    source: Literal["auto", "od_model", "city_routes"] = "auto"


class SimSpec(_Spec):
    """Simulation window and how often the twin looks at it."""

    begin_s: float = Field(default=0.0, ge=0.0, le=86_400.0)
    duration_s: float = Field(default=3600.0, ge=60.0, le=86_400.0)
    step_length_s: float = Field(default=1.0, ge=0.05, le=1.0)
    control_interval_s: float = Field(default=5.0, ge=1.0, le=300.0)
    series_interval_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    teleport_s: float = Field(default=300.0, ge=-1.0, le=3600.0)
    backend: Literal["libsumo", "traci"] = "libsumo"

    @model_validator(mode="after")
    def _intervals(self) -> SimSpec:
        ratio = self.series_interval_s / self.control_interval_s
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"series_interval_s ({self.series_interval_s:g}) must be a multiple of "
                f"control_interval_s ({self.control_interval_s:g})"
            )
        return self

    @property
    def end_s(self) -> float:
        return self.begin_s + self.duration_s


class AdaptiveSpec(_Spec):
    """Webster/HCM timings estimated from the loops, applied through the guard."""

    update_s: float = Field(default=60.0, ge=10.0, le=900.0)
    window_s: float = Field(default=300.0, ge=30.0, le=3600.0)
    c_min_s: float = Field(default=60.0, ge=20.0, le=300.0)
    c_max_s: float = Field(default=150.0, ge=30.0, le=300.0)
    y_max: float = Field(default=0.95, gt=0.5, lt=1.0)
    smoothing: float = Field(default=0.5, gt=0.0, le=1.0)
    max_step_s: float = Field(default=15.0, gt=0.0, le=120.0)
    startup_loss_s: float = Field(default=2.0, ge=0.0, le=5.0)
    clearance_loss_s: float = Field(default=2.0, ge=0.0, le=6.0)

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveSpec:
        if self.c_min_s > self.c_max_s:
            raise ValueError(f"c_min_s ({self.c_min_s:g}) must be <= c_max_s ({self.c_max_s:g})")
        return self


class ControlSpec(_Spec):
    """Which controller runs each signal: ``default`` for all, ``by_signal`` overrides."""

    default: ControllerKind = "fixed"
    by_signal: dict[str, ControllerKind] = Field(default_factory=dict)
    adaptive: AdaptiveSpec = AdaptiveSpec()
    # run the fixed-time plans through the safety guard (same timings and offsets) so the
    # center can send commands to them, e.g. emergency-vehicle priority
    guard_fixed: bool = False
    pressure_hysteresis_veh: float = Field(default=1.0, ge=0.0, le=50.0)


class OutputsSpec(_Spec):
    """What SUMO writes into the run folder besides metrics and series (for pictures:
    ``twin plot timespace``)."""

    # every signal's state at each switch, as SUMO showed it (signal_states.xml)
    signal_states: bool = True
    # every vehicle's position and speed every trajectory_period_s (fcd.xml.gz; about
    # 40 MB per hour of the district's AM peak): the time-space diagram's trajectories
    trajectories: bool = False
    trajectory_period_s: float = Field(default=1.0, ge=0.1, le=60.0)


class ScenarioSpec(_Spec):
    """Fields every scenario has; ``kind`` picks the behaviour."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\- ]+$")
    kind: str
    description: str = ""
    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    city: CityRef = CityRef()
    demand: DemandSpec = DemandSpec()
    sim: SimSpec = SimSpec()
    control: ControlSpec = ControlSpec()
    outputs: OutputsSpec = OutputsSpec()


class BaselineSpec(ScenarioSpec):
    """Demand + the network's own fixed-time plans, nothing else."""

    kind: Literal["baseline"] = "baseline"
