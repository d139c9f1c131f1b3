"""Alembic migrations of the run store's schema (``twin.engine.store``).

Every schema change is a new revision in ``versions/``; the store upgrades a database
to the newest one when it is opened (``RunStore(url, migrate=True)``, the default), so
no ``alembic.ini`` is needed. See ``README`` here for how to add a revision.
"""
