"""Where CityTwin keeps its data, read from the environment once, when asked.

``CITYTWIN_DATA`` sets the data directory (default ``~/.citytwin``); ``CITYTWIN_DB``
sets the run store URL (default: a SQLite file in the data directory; any SQLAlchemy
URL such as ``postgresql+psycopg://user@host/db`` works).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from twin.errors import ConfigError

DATA_ENV = "CITYTWIN_DATA"
DB_ENV = "CITYTWIN_DB"


@dataclass(frozen=True)
class Settings:
    """Paths and URLs a run needs.

    Parameters
    ----------
    data_dir
        Root of cached cities (``cities/``), run folders (``runs/``) and the SQLite store.
    db_url
        SQLAlchemy URL of the run store.
    """

    data_dir: Path
    db_url: str

    @property
    def cities_dir(self) -> Path:
        return self.data_dir / "cities"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id


def load_settings(*, data_dir: str | Path | None = None, db_url: str | None = None) -> Settings:
    """Settings from explicit values, else the environment, else the defaults."""
    raw_dir = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    root = Path(raw_dir).expanduser() if raw_dir else Path.home() / ".citytwin"
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"The data directory {root} (from {DATA_ENV} or --data-dir) is a file; "
            "point it at a directory (it is created if missing)."
        )
    url = db_url if db_url is not None else os.environ.get(DB_ENV)
    if not url:
        url = f"sqlite:///{(root / 'runs.sqlite').resolve()}"
    if "://" not in url:
        raise ConfigError(
            f"The run store URL {url!r} (from {DB_ENV} or --db) is not a SQLAlchemy URL; "
            "use e.g. 'sqlite:///path/runs.sqlite' or 'postgresql+psycopg://user@host/db'."
        )
    return Settings(data_dir=root, db_url=url)
