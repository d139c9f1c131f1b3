"""What every importer hands the shared pipeline (:mod:`city_models.pipeline`)."""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from twin.errors import CityError

RoadClass = Literal["arterial", "collector", "local"]
PoiKind = Literal["hospital", "fire_station", "shelter"]
POI_KINDS: tuple[str, ...] = ("hospital", "fire_station", "shelter")
IMPORTER_VERSION = "1.0.0"


@dataclass(frozen=True)
class PoiCandidate:
    """A point of interest found in (or added to) a source, before it is snapped to an edge.

    ``preferred`` ranks candidates of one kind (a hospital tagged ``emergency=yes``).
    """

    id: str
    kind: str  # one of POI_KINDS
    name: str
    lon: float
    lat: float
    capacity_veh: int | None = None
    preferred: bool = False
    source: str = "tag"  # "tag" (found in the source) or "toml" (--pois)


@dataclass
class SourceNet:
    """A geo-referenced SUMO network made from a source, and what the source said.

    Attributes
    ----------
    kind
        ``"osm"``, ``"sumo"`` or ``"nodelink"``.
    name
        The city's name.
    net_file
        The ``.net.xml`` (or ``.net.xml.gz``) the importer made or copied; it carries a
        real geo-reference (``<location projParameter=...>``, not ``"!"``).
    source_files
        The input files (hashed into the manifest and the cache key).
    options
        The importer's options as given (recorded in the manifest).
    edge_classes
        Edge id -> ``arterial`` | ``collector`` | ``local`` for the net's normal edges;
        an edge missing here is ``local``.
    guessed_signals
        True: every signal gets a Korean-practice plan designed by the pipeline
        (:func:`city_models.signals.design_plan_general`). False: the net's own programs
        are kept (``plans`` holds them, read by the importer).
    plans
        The kept programs as :class:`city_models.signals.SignalPlan` (``guessed_signals``
        False only).
    pois
        POIs found in the source (the pipeline adds those of ``--pois`` and snaps all).
    routes, additional
        The model's own demand and additional files (SUMO importer), copied into the city.
    report
        The importer's own counts and findings (joined signals, discarded ways, ...),
        merged into the import report.
    """

    kind: str
    name: str
    net_file: Path
    source_files: list[Path]
    options: dict[str, Any]
    edge_classes: dict[str, str] = field(default_factory=dict)
    guessed_signals: bool = True
    plans: list[Any] | None = None
    pois: list[PoiCandidate] = field(default_factory=list)
    routes: list[Path] = field(default_factory=list)
    additional: list[Path] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the source hash of the manifest and the cache)."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise CityError(f"Cannot read {path}: {exc.strerror}.") from exc
    return h.hexdigest()


def need(module: str, what: str) -> Any:
    """Import an optional dependency of the importers, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CityError(
            f"{what} needs the Python package {module!r}, which is not installed; "
            "install the importers with: pip install -e '.[import]'"
        ) from None
