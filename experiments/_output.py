"""What every benchmark does with its result: print it, and write it where asked."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any


def _strict(value: Any) -> Any:
    """JSON values only: NaN and infinities become null (``NaN`` is not JSON)."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit_json(result: dict[str, Any], path: Path | None) -> None:
    """Print ``result`` as indented JSON to stdout and write it to ``path`` if given
    (NaN, meaning "not measured", is written as null)."""
    text = json.dumps(_strict(result), indent=2, allow_nan=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")


def finite_mean(values: list[Any], *, digits: int = 2, empty: float | None = math.nan) -> Any:
    """Mean of the values that are numbers (None and NaN left out), rounded; ``empty``
    when there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return round(statistics.fmean(vals), digits) if vals else empty
