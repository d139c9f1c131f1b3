"""What a tenant can run: shipped and uploaded scenarios, preset, built and uploaded
cities; turning a run request (scenario, seed, city, overrides) into a validated spec
on a city.

Uploads live under ``<data>/tenants/<tenant>/`` and their names match
:data:`~twin.app.api.keys.NAME_PATTERN`, so no name escapes the data dir; a spec that
names a server path (``city.path``) is refused: cities are named, never given by path.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
import tempfile
import threading
import tomllib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from city_models.build import City, build_city, load_city
from city_models.demand import od_matrix
from city_models.presets import PRESETS
from scenarios.loader import library_scenarios, parse_scenario
from scenarios.spec import ScenarioSpec
from twin.app.api.errors import ConflictError, NotFoundError, QuotaError, TooLargeError
from twin.app.api.keys import NAME_PATTERN, check_name
from twin.config import Settings
from twin.errors import CityError, ScenarioError

log = logging.getLogger(__name__)

MAX_OVERRIDE_DEPTH = 6
MAX_ARCHIVE_FILES = 64
UNPACKED_FACTOR = 4
"""An unpacked city may be this many times its archive's limit."""
CITY_FILES = frozenset({".json", ".xml", ".gz", ".sumocfg", ".csv", ".geojson", ".txt"})


class BodyScenarioError(ScenarioError):
    """A scenario error whose fields sit under ``body.<where>`` of the request."""

    def __init__(self, message: str, *, where: tuple[str, ...] = ("body", "scenario")) -> None:
        super().__init__(message)
        self.loc_prefix = where


def tenant_dir(settings: Settings, tenant: str) -> Path:
    return settings.data_dir / "tenants" / check_name(tenant)


# ----------------------------------------------------------------------------- scenarios
def _uploaded_scenarios(settings: Settings, tenant: str) -> dict[str, Path]:
    folder = tenant_dir(settings, tenant) / "scenarios"
    return {p.stem: p for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def scenario_names(settings: Settings, tenant: str) -> dict[str, str]:
    """Name -> ``shipped`` or ``uploaded`` (an upload shadows a shipped name)."""
    out = dict.fromkeys(library_scenarios(), "shipped")
    out.update(dict.fromkeys(_uploaded_scenarios(settings, tenant), "uploaded"))
    return out


def scenario_raw(settings: Settings, tenant: str, name: str) -> dict[str, Any]:
    """The scenario called ``name`` as a dict (the tenant's upload first, then shipped)."""
    uploaded = _uploaded_scenarios(settings, tenant)
    if name in uploaded:
        loaded: dict[str, Any] = json.loads(uploaded[name].read_text(encoding="utf-8"))
        return loaded
    shipped = library_scenarios()
    if name in shipped:
        return tomllib.loads(shipped[name].read_text(encoding="utf-8"))
    known = ", ".join(sorted(scenario_names(settings, tenant)))
    raise NotFoundError(f"No scenario {name!r}; known: {known}.")


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """A scenario body as a dict: JSON, or TOML (``application/toml``, ``text/x-toml``)."""
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    text = raw.decode("utf-8", errors="replace")
    if kind in ("application/toml", "text/x-toml", "text/toml"):
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BodyScenarioError(
                f"The body is not valid TOML: {exc}.", where=("body",)
            ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BodyScenarioError(f"The body is not valid JSON: {exc}.", where=("body",)) from None
    if not isinstance(value, dict):
        raise BodyScenarioError(
            f"The body is a JSON {type(value).__name__}; a scenario is an object.", where=("body",)
        )
    return value


def validate_spec(raw: Mapping[str, Any], *, where: tuple[str, ...] = ("body",)) -> ScenarioSpec:
    """A spec from a client: validated, and naming no server path."""
    city = raw.get("city")
    if isinstance(city, Mapping) and city.get("path") is not None:
        raise BodyScenarioError(
            "field 'city.path' is not allowed through the API (no server paths); "
            "name the city with 'city' in the run request, or use [city] preset and seed.",
            where=where,
        )
    try:
        return parse_scenario(dict(raw), source="scenario")
    except ScenarioError as exc:
        raise BodyScenarioError(str(exc), where=where) from None


def save_scenario(settings: Settings, tenant: str, spec: ScenarioSpec) -> str:
    """Store a validated scenario for the tenant under its name; returns the name."""
    name = spec.name
    if not NAME_PATTERN.fullmatch(name):
        raise BodyScenarioError(
            f"field 'name' = {name!r}: an uploaded scenario's name must be 1-63 lowercase "
            "letters, digits, '_' or '-' (it names a file).",
            where=("body",),
        )
    folder = tenant_dir(settings, tenant) / "scenarios"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    partial = folder / f".{name}.json.tmp"
    partial.write_text(json.dumps(spec.model_dump(mode="json"), indent=1), encoding="utf-8")
    partial.replace(target)
    return name


def merge_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with ``overrides`` applied: dotted keys (``"sim.duration_s": 300``) and
    nested objects (``{"sim": {"duration_s": 300}}``) alike, merged into tables."""
    out: dict[str, Any] = json.loads(json.dumps(raw))

    def put(target: dict[str, Any], path: list[str], value: Any, depth: int) -> None:
        if depth > MAX_OVERRIDE_DEPTH:
            raise BodyScenarioError(
                f"field 'overrides' nests deeper than {MAX_OVERRIDE_DEPTH} levels.",
                where=("body",),
            )
        head, rest = path[0], path[1:]
        if rest:
            inner = target.get(head)
            if not isinstance(inner, dict):
                inner = {}
                target[head] = inner
            put(inner, rest, value, depth + 1)
        elif isinstance(value, Mapping) and isinstance(target.get(head), dict):
            for key, sub in value.items():
                put(target[head], [p for p in str(key).split(".") if p] or [str(key)], sub,
                    depth + 1)  # fmt: skip
        else:
            target[head] = value

    for key, value in overrides.items():
        parts = [p for p in str(key).split(".") if p]
        if not parts:
            raise BodyScenarioError(
                f"field 'overrides' has an empty key {key!r}.", where=("body", "overrides")
            )
        put(out, parts, value, 1)
    return out


# ----------------------------------------------------------------------------- cities
@dataclass(frozen=True)
class CityEntry:
    """A city a tenant can name: ``id`` is what a run request's ``city`` takes."""

    id: str
    source: str  # preset | built | uploaded
    preset: str | None
    seed: int | None
    signals: int | None
    built: bool


def _uploaded_cities(settings: Settings, tenant: str) -> dict[str, Path]:
    folder = tenant_dir(settings, tenant) / "cities"
    if not folder.is_dir():
        return {}
    return {
        p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and NAME_PATTERN.fullmatch(p.name)
    }


def city_entries(settings: Settings, tenant: str) -> list[CityEntry]:
    """Presets (built on demand), cities built here, and the tenant's uploads."""
    out = [
        CityEntry(id=name, source="preset", preset=name, seed=None,
                  signals=preset.n_signals, built=False)
        for name, preset in PRESETS.items()
    ]  # fmt: skip
    if settings.cities_dir.is_dir():
        for folder in sorted(settings.cities_dir.iterdir()):
            manifest = folder / "city.json"
            if not manifest.is_file():
                continue
            try:
                info = json.loads(manifest.read_text(encoding="utf-8"))
                entry = CityEntry(id=f"{info['preset']}-s{int(info['seed'])}", source="built",
                                  preset=str(info["preset"]), seed=int(info["seed"]),
                                  signals=len(info.get("signals", [])), built=True)  # fmt: skip
            except (ValueError, KeyError, TypeError):
                continue
            if entry.preset in PRESETS and entry.id not in {e.id for e in out}:
                out.append(entry)
    for name, folder in _uploaded_cities(settings, tenant).items():
        try:
            info = json.loads((folder / "city.json").read_text(encoding="utf-8"))
            signals = len(info.get("signals", []))
        except (OSError, ValueError):
            signals = None
        out.append(CityEntry(id=name, source="uploaded", preset=None, seed=None,
                             signals=signals, built=True))  # fmt: skip
    return out


class CityCache:
    """Loaded cities by folder (loading checks every signal plan: do it once)."""

    def __init__(self) -> None:
        self._cities: dict[Path, City] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> City:
        with self._lock:
            city = self._cities.get(path)
        if city is None:
            city = load_city(path)
            with self._lock:
                self._cities[path] = city
        return city

    def build(self, settings: Settings, preset: str, seed: int) -> City:
        with self._lock:  # one build at a time (a build of the same city is cached)
            city = build_city(preset, seed=seed, cities_dir=settings.cities_dir)
            self._cities[city.path] = city
        return city


def preset_signals(preset: str) -> int | None:
    found = PRESETS.get(preset)
    return None if found is None else found.n_signals


def resolve_city(
    settings: Settings, tenant: str, spec: ScenarioSpec, city: str | None, cache: CityCache,
    *, max_signals: int,
) -> City:  # fmt: skip
    """The city a run uses: ``city`` (a preset name with the spec's city seed,
    ``<preset>-s<seed>``, or an uploaded city's name), else the spec's [city]."""
    preset, seed = spec.city.preset, spec.city.seed
    if city is not None:
        uploaded = _uploaded_cities(settings, tenant)
        if city in uploaded:
            found = cache.get(uploaded[city])
            _check_size(found.manifest.counts.get("signals", len(found.manifest.signals)),
                        max_signals, city)  # fmt: skip
            return found
        if city in PRESETS:
            preset = city
        else:
            head, _, tail = city.rpartition("-s")
            if head not in PRESETS or not tail.isdigit() or len(tail) > 9:
                known = ", ".join(e.id for e in city_entries(settings, tenant))
                raise BodyScenarioError(
                    f"field 'city' = {city!r}: no such city; known: {known} (or PRESET-sSEED).",
                    where=("body",),
                )
            preset, seed = head, int(tail)
    known_size = preset_signals(preset)
    if known_size is not None:
        _check_size(known_size, max_signals, f"{preset}-s{seed}")
    built = cache.build(settings, preset, seed)
    _check_size(len(built.manifest.signals), max_signals, built.name)
    return built


def _check_size(signals: int, max_signals: int, name: str) -> None:
    if signals > max_signals:
        raise QuotaError(
            f"The city {name} has {signals} signals; this tenant's quota allows cities of at "
            f"most {max_signals} signals (max_city_signals).",
            quota="max_city_signals", retry_after_s=86_400.0,
        )  # fmt: skip


def estimate_vehicle_s(spec: ScenarioSpec, city: City) -> float:
    """An upper bound of a run's cost in vehicle-seconds from the background demand:
    every expected trip counted from its departure to the end of the run (departures are
    uniform, so on average half the run). Scenario vehicles (EVs, evacuees) come on top."""
    trips_per_h = float(od_matrix(city.manifest.demand, spec.demand.period).sum())
    trips = trips_per_h * spec.demand.scale * spec.sim.duration_s / 3600.0
    return trips * spec.sim.duration_s / 2.0


# ----------------------------------------------------------------------------- city uploads
def install_city(settings: Settings, tenant: str, name: str, archive: bytes, *,
                 max_bytes: int) -> City:  # fmt: skip
    """Unpack a city archive (zip or tar.gz of a built city folder: city.json, the net,
    detectors, sumocfg) as the tenant's city ``name``, after checking it: size, file
    count, names (no absolute paths, no '..', no links), and :func:`load_city` (every
    signal plan against the net)."""
    check_name(name, what="city")
    if len(archive) > max_bytes:
        raise TooLargeError(f"The city archive is {len(archive)} bytes; at most {max_bytes}.")
    target = tenant_dir(settings, tenant) / "cities" / name
    if target.exists():
        raise ConflictError(f"The city {name!r} exists already; delete it or use another name.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=target.parent))
    try:
        _unpack(archive, staging, limit_bytes=max_bytes * UNPACKED_FACTOR)
        root = staging
        inner = list(staging.iterdir())
        if not (staging / "city.json").is_file() and len(inner) == 1 and inner[0].is_dir():
            root = inner[0]  # the folder itself was archived
        try:
            load_city(root)
        except CityError as exc:
            raise BodyScenarioError(
                f"The uploaded city is not valid: {exc}", where=("body",)
            ) from None
        root.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_city(target)


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BodyScenarioError(f"The archive member {name!r} leaves its folder.", where=("body",))
    if path.suffix.lower() not in CITY_FILES and not name.endswith("/"):
        raise BodyScenarioError(
            f"The archive member {name!r} is not a city file (allowed endings: "
            f"{', '.join(sorted(CITY_FILES))}).",
            where=("body",),
        )
    return path


def _unpack(archive: bytes, into: Path, *, limit_bytes: int) -> None:
    total = 0
    members: list[tuple[PurePosixPath, bytes]] = []
    if zipfile.is_zipfile(io.BytesIO(archive)):
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > MAX_ARCHIVE_FILES:
                raise TooLargeError(
                    f"The archive has {len(infos)} files; at most {MAX_ARCHIVE_FILES}."
                )
            for info in infos:
                path = _safe_member(info.filename)
                total += info.file_size
                if total > limit_bytes:
                    raise TooLargeError(f"The archive unpacks to more than {limit_bytes} bytes.")
                members.append((path, zf.read(info)))
    else:
        try:
            tf = tarfile.open(fileobj=io.BytesIO(archive), mode="r:*")  # noqa: SIM115 - closed below
        except tarfile.TarError:
            raise BodyScenarioError(
                "The city upload is neither a zip nor a tar archive.", where=("body",)
            ) from None
        with tf:
            count = 0
            for member in tf:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BodyScenarioError(
                        f"The archive member {member.name!r} is a link or device; only files.",
                        where=("body",),
                    )
                count += 1
                if count > MAX_ARCHIVE_FILES:
                    raise TooLargeError(f"The archive has more than {MAX_ARCHIVE_FILES} files.")
                path = _safe_member(member.name)
                total += member.size
                if total > limit_bytes:
                    raise TooLargeError(f"The archive unpacks to more than {limit_bytes} bytes.")
                handle = tf.extractfile(member)
                members.append((path, handle.read() if handle is not None else b""))
    for path, data in members:
        out = into.joinpath(*path.parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
