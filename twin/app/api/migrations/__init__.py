"""Alembic migrations of the door's tables (``twin.app.api.db``); see ``README``."""
