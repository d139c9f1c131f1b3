"""The city manifest: what a city folder holds, validated with pydantic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.errors import CityError

MANIFEST_NAME = "city.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhaseSpec(_Model):
    index: int
    name: str
    kind: Literal["green", "yellow", "all_red"]
    state: str
    duration_s: float
    min_green_s: float
    ped_min_green_s: float
    max_green_s: float


class SignalSpec(_Model):
    id: str
    node: str
    x: float
    y: float
    lon: float
    lat: float
    cycle_s: float
    offset_s: float
    road_classes: tuple[str, str]
    approach_edges: list[str]
    incoming_lanes: list[str]
    phases: list[PhaseSpec]


class DetectorSpec(_Model):
    id: str
    kind: Literal["stopline", "upstream"]
    tls: str
    lane: str
    pos_m: float


class PoiSpec(_Model):
    id: str
    role: Literal["hospital", "fire_station", "shelter"]
    name: str
    edge: str
    pos_m: float
    x: float
    y: float
    lon: float
    lat: float
    capacity_veh: int | None = None


class VmsSpec(_Model):
    id: str
    edge: str
    pos_m: float
    x: float
    y: float
    lon: float
    lat: float
    junction: str  # the major junction the sign stands before


class ZoneSpec(_Model):
    id: str
    kind: Literal["flood"]
    name: str
    polygon_xy: list[tuple[float, float]]
    polygon_lonlat: list[tuple[float, float]]
    edges: list[str]


class TrafficZone(_Model):
    id: str
    x: float
    y: float
    edges: list[str]
    edge_weights: list[float]
    homes: float
    jobs: float


class DemandModel(_Model):
    """A gravity OD model: ``trips_ij ∝ P_i · A_j · exp(-d_ij / decay_m)``."""

    zones: list[TrafficZone]
    decay_m: float
    peak_trips_per_h: int
    periods: dict[str, dict[str, float | str]]
    truck_share: float


class CityFiles(_Model):
    net: str
    detectors: str
    sumocfg: str
    default_routes: str
    plain_nodes: str
    plain_edges: str
    plain_types: str
    signal_plans: str
    # POIs, VMS sites and zones as SUMO shapes, for sumo-gui (city.sumocfg loads it)
    shapes: str | None = None


class GeoRef(_Model):
    """The net's own projection (an imported city): net x/y = projected x/y + offset."""

    proj_params: str
    net_offset: tuple[float, float]


class SourceSpec(_Model):
    """Where an imported city came from: the source files' hashes, the importer, options."""

    kind: Literal["osm", "sumo", "nodelink"]
    files: dict[str, str]  # file name -> sha256
    importer_version: str
    options: dict[str, Any]


class Manifest(_Model):
    """Everything about a city that is not in SUMO's own files."""

    name: str
    preset: str
    seed: int
    generator_version: str
    sumo_version: str
    cache_key: str
    content_hash: str
    synthetic: bool = True
    note: str
    origin_lat: float
    origin_lon: float
    bbox_xy: tuple[float, float, float, float]
    params: dict[str, Any]
    files: CityFiles
    signals: list[SignalSpec]
    detectors: list[DetectorSpec]
    detector_period_s: float
    pois: list[PoiSpec]
    vms: list[VmsSpec]
    zones: list[ZoneSpec]
    demand: DemandModel
    counts: dict[str, int] = Field(default_factory=dict)
    # imported cities only: the source, the net's projection, road class per edge id
    source: SourceSpec | None = None
    georef: GeoRef | None = None
    edge_classes: dict[str, str] = Field(default_factory=dict)


def read_manifest(path: Path) -> Manifest:
    """Load and validate ``city.json``; errors name the file and the field."""
    if not path.exists():
        raise CityError(
            f"No city manifest at {path}; build a city first with "
            "'twin city build --preset district' or pass --city DIR of a built city."
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CityError(f"City manifest {path} is not valid JSON: {exc}.") from exc
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise CityError(
            f"City manifest {path}: field '{field}' {first['msg'].lower()} "
            f"(got {str(first.get('input'))[:80]!r}); rebuild the city with 'twin city build'."
        ) from exc


def write_manifest(manifest: Manifest, path: Path) -> None:
    path.write_text(manifest.model_dump_json(indent=1), encoding="utf-8")
