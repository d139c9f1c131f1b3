"""What every benchmark does with its result: print it, and write it where asked."""

from __future__ import annotations

import json
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
