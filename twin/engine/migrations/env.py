"""Alembic's environment for the run store: migrations run on the connection that
:class:`twin.engine.store.RunStore` hands over, inside its transaction (no URL, no
``alembic.ini``)."""

from __future__ import annotations

from alembic import context

from twin.engine.store import RUNS_METADATA
from twin.errors import ConfigError

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise ConfigError(
        "The run store's migrations run through twin.engine.store.RunStore(url) (which "
        "upgrades the database it opens), not through the alembic command line."
    )
context.configure(connection=connection, target_metadata=RUNS_METADATA)
with context.begin_transaction():
    context.run_migrations()
