"""The sandbox HTTP API: a door onto the twin for cities, agencies and researchers.

Tenants, keys, roles, quotas, the run queue's bookkeeping, de-identification and the
audit log live here, at the door; runs go to the engine's executor (each in its own
worker process). :func:`create_app` makes the app, ``twin serve`` serves it.
"""

from __future__ import annotations

from twin.app.api.app import create_app
from twin.app.api.settings import ApiSettings, load_api_settings

__all__ = ["ApiSettings", "create_app", "load_api_settings"]
