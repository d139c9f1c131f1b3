"""Load scenario TOML files into typed specs, with errors a user can act on."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from scenarios.registry import get_kind, kinds
from scenarios.spec import ScenarioSpec
from twin.errors import ScenarioError

LIBRARY = Path(__file__).parent / "library"


def library_scenarios() -> dict[str, Path]:
    """Scenario files shipped with CityTwin, by name."""
    return {p.stem: p for p in sorted(LIBRARY.glob("*.toml"))}


def resolve(name_or_path: str | Path) -> Path:
    """A path as given, or the shipped scenario of that name (``baseline``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = library_scenarios()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise ScenarioError(
        f"Scenario file {path} does not exist and is not a shipped scenario "
        f"(shipped: {', '.join(shipped) or 'none'})."
    )


def load_scenario(name_or_path: str | Path) -> ScenarioSpec:
    """Read and validate a scenario file.

    Raises
    ------
    ScenarioError
        Naming the file, the field, the bad value and what is allowed.
    """
    path = resolve(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"Scenario file {path} is not valid TOML: {exc}.") from exc
    except OSError as exc:
        raise ScenarioError(f"Scenario file {path} cannot be read: {exc}.") from exc
    return parse_scenario(raw, source=str(path))


def parse_scenario(raw: dict[str, Any], *, source: str = "<scenario>") -> ScenarioSpec:
    """Validate a scenario given as a dict (from TOML or the API)."""
    kind = raw.get("kind")
    if not isinstance(kind, str):
        raise ScenarioError(
            f"{source}: field 'kind' is {'missing' if kind is None else repr(kind)}; "
            f"allowed: {', '.join(kinds())}."
        )
    try:
        model = get_kind(kind).spec
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: field 'kind': {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_explain(exc, model, source)) from exc


def _explain(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "(top level)"
        value = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(model, loc[:-1])
            msg = f"is not a known field; allowed here: {', '.join(allowed)}"
            lines.append(f"{source}: field '{field}' {msg}.")
            continue
        shown = repr(value) if not isinstance(value, dict) else "a table"
        lines.append(f"{source}: field '{field}' = {shown}: {msg}.")
    more = len(exc.errors()) - 5
    if more > 0:
        lines.append(f"... and {more} more problem(s).")
    return "\n".join(lines)


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None or not isinstance(field.annotation, type):
            return []
        current = field.annotation
    return sorted(current.model_fields) if hasattr(current, "model_fields") else []
