"""The evacuation scenario's spec (validated from TOML; see :mod:`scenarios.evacuation`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from scenarios.spec import ControlSpec, ScenarioSpec, _Spec


class DepartureSpec(_Spec):
    """When the evacuees leave, counted from the warning."""

    curve: Literal["simultaneous", "staged", "rayleigh", "lognormal"] = "simultaneous"
    spread_s: float = Field(default=120.0, ge=0.0, le=3600.0)  # simultaneous / each wave
    waves: int = Field(default=3, ge=1, le=12)  # staged: sub-zones
    wave_gap_s: float = Field(default=600.0, ge=0.0, le=7200.0)
    rayleigh_scale_s: float = Field(default=900.0, gt=0.0, le=14_400.0)
    lognormal_median_s: float = Field(default=1200.0, gt=0.0, le=14_400.0)
    lognormal_sigma: float = Field(default=0.6, gt=0.0, le=3.0)


class MeasuresSpec(_Spec):
    """Network measures for the evacuation."""

    contraflow: bool = False
    # outbound edges that take the opposite lanes; empty: the main outbound road
    contraflow_edges: list[str] = Field(default_factory=list, max_length=30)
    contraflow_max_length_m: float = Field(default=2000.0, gt=0.0, le=10_000.0)
    evacuation_signals: bool = False
    signal_update_s: float = Field(default=300.0, ge=30.0, le=3600.0)
    cycle_stretch: float = Field(default=1.25, ge=1.0, le=2.0)
    min_signal_flow_veh: int = Field(default=10, ge=1, le=10_000)
    close_inbound: bool = False


class HazardSpec(_Spec):
    """A spreading hazard (flood rising street by street), off by default."""

    spreading: bool = False
    source_xy: tuple[float, float] | None = None  # default: the zone's centroid
    onset_s: float = Field(default=300.0, ge=0.0, le=14_400.0)  # after the warning
    front_speed_mps: float = Field(default=0.5, gt=0.0, le=20.0)
    flooded_speed_mps: float = Field(default=3.0, gt=0.0, le=20.0)
    close_after_s: float = Field(default=300.0, ge=0.0, le=7200.0)


class EvacuationSpec(ScenarioSpec):
    kind: Literal["evacuation"] = "evacuation"
    zone: str = "flood_1"
    zone_polygon_xy: list[tuple[float, float]] | None = Field(default=None, min_length=3)
    # the same in longitude, latitude (degrees): how an imported city's zone is given
    zone_polygon_lonlat: list[tuple[float, float]] | None = Field(default=None, min_length=3)
    warning_s: float = Field(default=300.0, ge=0.0)
    households_per_km2: float = Field(default=2000.0, gt=0.0, le=50_000.0)
    vehicles_per_household: float = Field(default=1.0, gt=0.0, le=5.0)
    evacuating_share: float = Field(default=0.6, gt=0.0, le=1.0)
    departure: DepartureSpec = DepartureSpec()
    assignment: Literal["nearest", "capacity_aware", "system_optimal"] = "capacity_aware"
    system_horizon_s: float = Field(default=1800.0, ge=60.0, le=14_400.0)
    shelters: list[str] = Field(default_factory=list)  # empty: every shelter of the city
    # capacity overrides; a shelter without places is left out of 'shelters' instead
    shelter_capacity_veh: dict[str, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)
    measures: MeasuresSpec = MeasuresSpec()
    hazard: HazardSpec = HazardSpec()
    control: ControlSpec = ControlSpec(guard_fixed=True)

    @model_validator(mode="after")
    def _check(self) -> EvacuationSpec:
        if self.zone_polygon_xy is not None and self.zone_polygon_lonlat is not None:
            raise ValueError("give zone_polygon_xy or zone_polygon_lonlat, not both")
        for lon, lat in self.zone_polygon_lonlat or []:
            if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                raise ValueError(
                    f"zone_polygon_lonlat has the point ({lon:g}, {lat:g}); allowed: "
                    "[longitude -180..180, latitude -90..90] pairs"
                )
        if not self.sim.begin_s <= self.warning_s < self.sim.end_s:
            raise ValueError(
                f"warning_s = {self.warning_s:g} is outside the run "
                f"[{self.sim.begin_s:g}, {self.sim.end_s:g})"
            )
        if self.measures.evacuation_signals and not self.control.guard_fixed:
            raise ValueError("control.guard_fixed must be true for measures.evacuation_signals")
        return self
