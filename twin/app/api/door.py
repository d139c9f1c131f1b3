"""The door: everything the routers share, made once per app (:func:`open_door`).

It holds the settings, the door's tables, the run store, the API's run queue, the
dispatcher that starts queued runs (when this process runs them), the session manager
(when the sessions module is there), loaded cities and the request-rate buckets.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any

from twin.app.api.catalog import CityCache
from twin.app.api.db import ApiDatabase
from twin.app.api.queue import RunQueue
from twin.app.api.quotas import RateLimiter
from twin.app.api.settings import ApiSettings
from twin.config import Settings
from twin.engine.executors import Dispatcher, Work
from twin.engine.store import RunStore

log = logging.getLogger(__name__)

SESSIONS_MODULE = "twin.app.sessions"


@dataclass
class Door:
    settings: ApiSettings
    engine: Settings
    db: ApiDatabase
    store: RunStore
    queue: RunQueue
    work: Work
    dispatcher: Dispatcher | None = None
    sessions: Any | None = None
    cities: CityCache = field(default_factory=CityCache)
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @property
    def secret(self) -> bytes:
        return self.settings.secret

    def start(self) -> None:
        """Start the dispatcher (``run_workers`` > 0) and the session manager."""
        if self.settings.run_workers > 0 and self.dispatcher is None:
            self.dispatcher = Dispatcher(
                self.engine, self.work, self.queue, workers=self.settings.run_workers,
                nice=self.settings.run_nice,
            ).start()  # fmt: skip
            log.info("dispatcher started: %d workers", self.settings.run_workers)
        if self.sessions is None and importlib.util.find_spec(SESSIONS_MODULE) is not None:
            manager = importlib.import_module(SESSIONS_MODULE).SessionManager
            self.sessions = manager(self.engine)

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def close(self, *, requeue: bool = True) -> None:
        """Stop the dispatcher (running runs go back to the queue, or fail), the
        sessions, and the database connections."""
        if self.dispatcher is not None:
            self.dispatcher.close(requeue=requeue)
            self.dispatcher = None
        if self.sessions is not None:
            shutdown = getattr(self.sessions, "shutdown", None)
            if callable(shutdown):
                shutdown()
            self.sessions = None
        self.store.close()
        self.db.close()


def open_door(settings: ApiSettings, work: Work) -> Door:
    """The door's parts for ``settings`` (tables migrated; nothing started yet)."""
    engine = settings.engine_settings()
    store = RunStore.from_settings(engine)
    db = ApiDatabase(engine.db_url)
    queue = RunQueue(db, store, engine, progress_every_s=settings.progress_every_s)
    return Door(settings=settings, engine=engine, db=db, store=store, queue=queue, work=work)
