"""``twin serve``: the API under uvicorn, with the run dispatcher.

One process (``--workers 1``, the default) serves HTTP and dispatches runs. With
``--workers N`` uvicorn starts N HTTP worker processes that only accept and read runs
(``CITYTWIN_RUN_WORKERS=0`` for them), and this process dispatches: one dispatcher per
database, so the runs a dead server left running are recovered by one process only.
Serve one database from one ``twin serve``.
"""

from __future__ import annotations

import logging
import os

import uvicorn

from twin.app.api.app import create_app
from twin.app.api.door import open_door
from twin.app.api.settings import ApiSettings
from twin.app.compose import execute_request

log = logging.getLogger(__name__)


def serve(settings: ApiSettings, *, host: str, port: int, workers: int = 1) -> None:
    """Serve the API until interrupted (Ctrl-C or SIGTERM: running runs go back to the
    queue)."""
    if workers <= 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
        return
    engine = settings.engine_settings()
    os.environ.update({
        "CITYTWIN_RUN_WORKERS": "0", "CITYTWIN_DATA": str(engine.data_dir),
        "CITYTWIN_DB": engine.db_url, "CITYTWIN_ENVIRONMENT": settings.environment,
        "CITYTWIN_SECRET_KEY": settings.secret_key.get_secret_value(),
    })  # fmt: skip
    door = open_door(settings, execute_request)
    door.start()
    try:
        uvicorn.run("twin.app.api.app:app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level="info")  # fmt: skip
    finally:
        door.close()
