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
    # a demand variant stored with the city (``twin calibrate`` makes "counts-<period>"):
    # its routes replace the sampled demand; scale applies (SUMO --scale)
    variant: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
    )

    @model_validator(mode="after")
    def _variant_or_city_routes(self) -> DemandSpec:
        if self.variant is not None and self.source == "city_routes":
            raise ValueError(
                f"variant {self.variant!r} and source 'city_routes' both name the demand; "
                "set one of them"
            )
        return self


class SimSpec(_Spec):
    """Simulation window and how often the twin looks at it."""

    begin_s: float = Field(default=0.0, ge=0.0, le=86_400.0)
    duration_s: float = Field(default=3600.0, ge=60.0, le=86_400.0)
    step_length_s: float = Field(default=1.0, ge=0.05, le=1.0)
    control_interval_s: float = Field(default=5.0, ge=1.0, le=300.0)
    series_interval_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    teleport_s: float = Field(default=300.0, ge=-1.0, le=3600.0)
    backend: Literal["libsumo", "traci"] = "libsumo"
    # SUMO's traffic model: "micro" (vehicles on lanes) or "meso" (queues per edge
    # segment, several times faster; for forecasts)
    mode: Literal["micro", "meso"] = "micro"
    # save the run's state at these times (seconds, on control ticks) so that forks
    # can start there (`twin fork`); the files go to the run folder's states/
    save_state_at_s: tuple[float, ...] = Field(default=(), max_length=48)
    # start from a state a run saved (a fork; begin_s must be the state's time)
    load_state: str | None = None

    @model_validator(mode="after")
    def _intervals(self) -> SimSpec:
        ratio = self.series_interval_s / self.control_interval_s
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"series_interval_s ({self.series_interval_s:g}) must be a multiple of "
                f"control_interval_s ({self.control_interval_s:g})"
            )
        for t in self.save_state_at_s:
            ticks = (t - self.begin_s) / self.control_interval_s
            if not (self.begin_s < t <= self.end_s) or abs(ticks - round(ticks)) > 1e-9:
                raise ValueError(
                    f"save_state_at_s has {t:g}; allowed: times after begin_s "
                    f"({self.begin_s:g}) up to the end ({self.end_s:g}) on the control "
                    f"ticks (begin_s + k * control_interval_s = {self.control_interval_s:g})"
                )
        if len(set(self.save_state_at_s)) != len(self.save_state_at_s):
            raise ValueError(f"save_state_at_s lists a time twice: {self.save_state_at_s}")
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
    # vehicle actuation inside the plan: "gap_out" makes each planned green (the estimate
    # x green_headroom, at most the phase's max green) a maximum that ends early once its
    # minimum is served and its gap-out loops saw no vehicle for gap_s (the cycle then
    # floats); "none": every green runs its planned length
    actuation: Literal["none", "gap_out"] = "none"
    # where the gap is measured: "advance": a loop per lane placed for the run where
    # SUMO's actuated logic puts its own (detector_gap_s of travel at the lane's speed
    # before the line, at most what the minimum green clears, at most the lane; the city's
    # own files do not change); "stopline": the city's stop-line loops (3 m before the line)
    gap_loops: Literal["advance", "stopline"] = "advance"
    detector_gap_s: float = Field(default=2.0, ge=0.5, le=6.0)
    # seconds without a vehicle on those loops that end a green, as SUMO's actuated
    # max-gap (3 s). At the calibrated peak (seed 1, advance loops, headroom 4) 2.5-3 s
    # served best (89.8 s mean delay; 2 s cut platoons, 4 s held greens: 95.0 s); at the
    # stop-line loops 2 s did
    gap_s: float = Field(default=3.0, ge=1.0, le=10.0)
    # the planned maximum is the estimate x green_headroom (at most the phase's max green);
    # more headroom served the peak better (1.5 / 2 / 3 / 4: 93.3 / 91.0 / 90.7 / 89.9 s):
    # experiments.controllers' adaptive_actuated runs 4 (about every phase's max green)
    green_headroom: float = Field(default=1.0, ge=1.0, le=4.0)
    # with gap_out: skip a stage that serves no pedestrian crossing (e.g. a protected
    # left) when none of its lanes has a vehicle waiting or just detected (at the peak:
    # 89.9 s with, 91.5 s without)
    skip_empty: bool = False
    # "arterial": one cycle for all adaptive signals (the longest estimate), offsets for
    # an eastward progression at progression_kph (as the cities' fixed plans), and each
    # signal's main-street stage (its longest planned green) ends at its yield point
    # instead of gapping out; the other stages gap out within their split of the common
    # cycle (x green_headroom) and return what they leave unused to the main street
    # (signal_control.coordination). "none": every signal floats on its own cycle
    coordination: Literal["none", "arterial"] = "none"
    progression_kph: float = Field(default=50.0, ge=10.0, le=80.0)

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveSpec:
        if self.c_min_s > self.c_max_s:
            raise ValueError(f"c_min_s ({self.c_min_s:g}) must be <= c_max_s ({self.c_max_s:g})")
        if self.green_headroom != 1.0 and self.actuation == "none":
            raise ValueError(
                f"green_headroom ({self.green_headroom:g}) applies only with actuation = "
                "'gap_out' (without it every green would simply run longer); allowed: 1.0 "
                "with actuation = 'none'"
            )
        advance = self.actuation == "gap_out" and self.gap_loops == "advance"
        if self.detector_gap_s != 2.0 and not advance:
            raise ValueError(
                f"detector_gap_s ({self.detector_gap_s:g}) places the advance loops, used "
                "only with actuation = 'gap_out' and gap_loops = 'advance'; allowed: 2.0 "
                f"with actuation = {self.actuation!r} and gap_loops = {self.gap_loops!r}"
            )
        if self.skip_empty and self.actuation == "none":
            raise ValueError(
                "skip_empty applies only with actuation = 'gap_out' (the loops it reads); "
                "allowed: false with actuation = 'none'"
            )
        if self.coordination != "none" and self.actuation != "gap_out":
            raise ValueError(
                f"coordination = {self.coordination!r} ends the main street's green at its "
                "yield point while the other stages gap out: it needs actuation = 'gap_out'; "
                "allowed: coordination = 'none' with actuation = 'none'"
            )
        if self.progression_kph != 50.0 and self.coordination == "none":
            raise ValueError(
                f"progression_kph ({self.progression_kph:g}) sets the offsets of coordination "
                "= 'arterial'; allowed: 50 with coordination = 'none'"
            )
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
