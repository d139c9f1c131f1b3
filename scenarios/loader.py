"""Load scenario TOML files into typed specs, with errors a user can act on.

Every problem is one paragraph naming the file, the field, the value and what is
allowed, never a traceback: a file that is not UTF-8 (a UTF-8 byte-order mark is
fine), not TOML, nested deeper than :data:`MAX_DEPTH` levels, a NaN or infinite
number, a boolean or a text where a number belongs (``seed = true``: pydantic would
take it for 1), or a value the spec refuses.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from scenarios.clock import resolve_clock_times
from scenarios.registry import get_kind, kinds
from scenarios.spec import ScenarioSpec
from twin.errors import ScenarioError

LIBRARY = Path(__file__).parent / "library"
MAX_DEPTH = 32
"""How deeply tables and arrays may nest in a scenario (the specs use a few levels)."""
_MISSING = object()
_NUMERIC_ERRORS = ("greater_than", "less_than", "multiple_of", "int_", "float_", "finite_")


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
    text = _read_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"Scenario file {path} is not valid TOML: {exc}.") from None
    except RecursionError:
        field, line = _deepest_line(text)
        raise ScenarioError(
            f"Scenario file {path}: field '{field}' (line {line}) is a value nested more "
            f"than {MAX_DEPTH} levels deep (arrays or inline tables inside each other); "
            f"allowed: at most {MAX_DEPTH} levels."
        ) from None
    return parse_scenario(raw, source=str(path))


def _read_text(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"Scenario file {path} cannot be read: {exc}.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(
            f"Scenario file {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start} (line {line}) is not valid UTF-8 ({exc.reason}); allowed: "
            "UTF-8 text, with or without a byte-order mark. Save the file as UTF-8."
        ) from None


def _deepest_line(text: str) -> tuple[str, int]:
    """The key and line number of the first line whose value nests deepest (strings
    skipped roughly): where to look when the TOML parser gave up on the depth."""
    best, depth, quote = (0, "(unknown)", 0), 0, ""
    key, key_line = "(unknown)", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if depth == 0 and "=" in line and not line.lstrip().startswith(("#", "[")):
            key, key_line = line.split("=", 1)[0].strip() or "(unknown)", number
        for char in line:
            if quote:
                quote = "" if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#":
                break
            elif char in "[{":
                depth += 1
                if depth > best[0]:
                    best = (depth, key, key_line)
            elif char in "]}":
                depth = max(0, depth - 1)
    return best[1], best[2]


def parse_scenario(raw: dict[str, Any], *, source: str = "<scenario>") -> ScenarioSpec:
    """Validate a scenario given as a dict (from TOML or the API).

    Before the spec sees it: nesting at most :data:`MAX_DEPTH` levels, every number
    finite; after: no boolean or text was taken for a number.
    """
    _check_values(raw, source)
    raw = resolve_clock_times(raw, source=source)
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
        spec = model.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_explain(exc, model, source)) from None
    _check_numbers(raw, spec, source)
    return spec


def _field(path: list[str | int]) -> str:
    shown = ".".join(map(str, path[:8]))
    return shown + (f"... ({len(path)} levels)" if len(path) > 8 else "")


def _check_values(raw: Any, source: str) -> None:
    """Nesting depth and finite numbers, walked without recursion (a file nested
    thousands of levels deep must not overflow the stack here either)."""
    stack: list[tuple[list[str | int], Any]] = [([], raw)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict | list) and len(path) >= MAX_DEPTH:
            raise ScenarioError(
                f"{source}: field '{_field(path)}' is a {_kind(value)} nested more than "
                f"{MAX_DEPTH} levels deep; allowed: at most {MAX_DEPTH} levels of tables "
                "and arrays."
            )
        if isinstance(value, dict):
            stack += [([*path, str(k)], v) for k, v in reversed(value.items())]
        elif isinstance(value, list):
            stack += [([*path, k], v) for k, v in reversed(list(enumerate(value)))]
        elif isinstance(value, float) and not math.isfinite(value):
            raise ScenarioError(
                f"{source}: field '{_field(path)}' = {value!r}: a finite number is needed "
                "(NaN and infinities are not allowed)."
            )


def _kind(value: Any) -> str:
    return "table" if isinstance(value, dict) else "array"


def _check_numbers(raw: Any, spec: Any, source: str) -> None:
    """Refuse booleans and texts that the spec took for numbers (pydantic's lax mode
    reads ``true`` as 1 and ``"3"`` as 3): walk the raw values beside the spec's."""
    stack: list[tuple[list[str | int], Any, Any]] = [([], raw, spec)]
    while stack:
        path, given, made = stack.pop()
        if isinstance(given, dict):
            for key, value in given.items():
                if isinstance(made, BaseModel):
                    inner = getattr(made, str(key), _MISSING)
                elif isinstance(made, dict):
                    inner = made.get(key, _MISSING)
                else:
                    continue
                if inner is not _MISSING:
                    stack.append(([*path, str(key)], value, inner))
        elif isinstance(given, list) and isinstance(made, list | tuple):
            stack += [([*path, k], g, m) for k, (g, m) in enumerate(zip(given, made, strict=False))]
        elif isinstance(made, int | float) and not isinstance(made, bool):
            wanted = "an integer" if isinstance(made, int) else "a number"
            if isinstance(given, bool):
                raise ScenarioError(
                    f"{source}: field '{_field(path)}' = {str(given).lower()}: a boolean is "
                    f"not a number; allowed: {wanted}, such as {made if made != 1 else 42}."
                )
            if isinstance(given, str):
                raise ScenarioError(
                    f"{source}: field '{_field(path)}' = {given!r}: a text is not a number; "
                    f"allowed: {wanted}, written without quotes."
                )
            if isinstance(made, int) and isinstance(given, float):
                raise ScenarioError(
                    f"{source}: field '{_field(path)}' = {given!r}: allowed: an integer "
                    f"(such as {made}), not a decimal number."
                )


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
        if isinstance(value, bool) and err["type"].startswith(_NUMERIC_ERRORS):
            # pydantic read the boolean as 0 or 1 and then found it out of range
            shown, msg = str(value).lower(), "a boolean is not a number; allowed: a number"
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
