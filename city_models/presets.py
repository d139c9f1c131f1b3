"""City presets: the parameters of the synthetic generator, by name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from twin.errors import CityError

# Suwon City Hall; the synthetic city is centred here (its geometry is NOT Suwon's).
SUWON_LAT = 37.2636
SUWON_LON = 127.0286


@dataclass(frozen=True)
class RoadClass:
    """Cross-section and speed of one road class."""

    name: str
    lanes: int
    speed_kph: float
    priority: int


ARTERIAL = RoadClass("arterial", 3, 60.0, 3)
COLLECTOR = RoadClass("collector", 2, 50.0, 2)
LOCAL = RoadClass("local", 1, 30.0, 1)


@dataclass(frozen=True)
class CityPreset:
    """Parameters of one synthetic city.

    The layout is a warped lattice of road lines. Line ``i`` is an arterial when
    ``i % arterial_every == arterial_phase``, else a collector when ``i`` is odd,
    else a local street. Signals stand where two arterials/collectors cross.
    """

    name: str
    n_lines: int
    spacing_m: tuple[float, float]
    arterial_every: int
    arterial_phase: int
    warp_m: float
    jitter_m: float
    local_drop_share: float
    n_signals: int | None  # demote extra signalized crossings to reach exactly this many
    peak_trips_per_h: int
    n_hospitals: int
    n_fire_stations: int
    n_shelters: int
    n_vms: int
    left_pocket_m: float = 60.0
    yellow_s: float = 3.0
    all_red_s: float = 2.0
    walk_s: float = 7.0
    ped_speed_mps: float = 1.0  # Korean practice for clearance; 0.8 in senior/child zones
    vehicle_min_green_s: float = 10.0
    left_min_green_s: float = 7.0
    cycle_s: float = 120.0
    detector_period_s: float = 30.0
    upstream_detector_m: float = 100.0
    lat: float = SUWON_LAT
    lon: float = SUWON_LON
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, CityPreset] = {
    "district": CityPreset(
        name="district",
        n_lines=15,
        spacing_m=(170.0, 260.0),
        arterial_every=4,
        arterial_phase=3,
        warp_m=60.0,
        jitter_m=12.0,
        local_drop_share=0.15,
        n_signals=None,
        # calibrated to a Korean city centre's peak (docs/CALIBRATION.md): at 20,000
        # trips/h the AM peak meets every target of `twin city check-peak`
        peak_trips_per_h=20000,
        n_hospitals=2,
        n_fire_stations=2,
        n_shelters=3,
        n_vms=6,
    ),
    "suwon-scale": CityPreset(
        name="suwon-scale",
        n_lines=61,
        spacing_m=(160.0, 240.0),
        arterial_every=4,
        arterial_phase=3,
        warp_m=250.0,
        jitter_m=12.0,
        local_drop_share=0.15,
        n_signals=893,  # Suwon's signal controllers
        # about the calibrated district's load (docs/CALIBRATION.md: 110 vehicle-km per hour
        # per lane-km, the district 116; 12,000 before, a ninth of it): AM peak, seed 1,
        # arterial 18.9 km/h, network 20.1, stops 1.5/km, delay 39.6 s met; v/c p90 0.82 not
        # (PM: 20.5, 21.3, 1.5, 36.9 met; v/c p90 0.80 not)
        peak_trips_per_h=100000,
        n_hospitals=4,
        n_fire_stations=6,
        n_shelters=12,
        n_vms=48,  # Suwon runs 40-55 VMS
    ),
}


def with_overrides(preset: CityPreset, overrides: Mapping[str, Any] | None) -> CityPreset:
    """``preset`` with some numeric parameters replaced (e.g. ``peak_trips_per_h``: a
    lighter or heavier peak of the same layout); a :class:`CityError` names a field that
    is not one, or a value that is not a positive number."""
    if not overrides:
        return preset
    allowed = sorted(
        f.name
        for f in fields(CityPreset)
        if f.type in ("int", "float", "int | None") and f.name not in ("lat", "lon")
    )
    for key, value in overrides.items():
        if key not in allowed:
            raise CityError(
                f"City preset {preset.name!r}: {key!r} cannot be overridden; "
                f"allowed: {', '.join(allowed)}."
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise CityError(
                f"City preset {preset.name!r}: {key} = {value!r}; allowed: a number > 0."
            )
    return replace(preset, **overrides)


def get_preset(name: str) -> CityPreset:
    """The preset called ``name``; a :class:`CityError` lists the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise CityError(
            f"Unknown city preset {name!r}; allowed: {', '.join(sorted(PRESETS))}."
        ) from None
