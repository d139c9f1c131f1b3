"""What every benchmark does with its result: print it, and write it where asked."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any


def emit_json(result: dict[str, Any], path: Path | None) -> None:
    """Print ``result`` as indented JSON to stdout and write it to ``path`` if given."""
    text = json.dumps(result, indent=2)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")


def finite_mean(values: list[Any], *, digits: int = 2, empty: float | None = math.nan) -> Any:
    """Mean of the values that are numbers (None and NaN left out), rounded; ``empty``
    when there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return round(statistics.fmean(vals), digits) if vals else empty
