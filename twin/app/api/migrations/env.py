"""Alembic's environment for the door's tables: migrations run on the connection that
:class:`twin.app.api.db.ApiDatabase` hands over, inside its transaction, with their
own version table (the run store's migrations have theirs)."""

from __future__ import annotations

from alembic import context

from twin.app.api.db import API_METADATA, VERSION_TABLE
from twin.errors import ConfigError

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise ConfigError(
        "The API's migrations run through twin.app.api.db.ApiDatabase(url) (which "
        "upgrades the database it opens), not through the alembic command line."
    )
context.configure(
    connection=connection,
    target_metadata=API_METADATA,
    version_table=VERSION_TABLE,
    # the run store's tables share the database: never this environment's business
    include_name=lambda name, kind, _parent: kind != "table" or str(name).startswith("api_"),
)
with context.begin_transaction():
    context.run_migrations()
