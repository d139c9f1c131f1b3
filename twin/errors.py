"""The project's exceptions.

Each error subclasses :class:`TwinError` and a built-in, so callers may catch either
(``except ValueError`` keeps working for bad input). Messages are written for the user:
one paragraph that names the file, the field, the bad value and what is allowed.
"""

from __future__ import annotations


class TwinError(Exception):
    """Base class of every error CityTwin raises on purpose."""


class ConfigError(TwinError, ValueError):
    """A setting (environment variable, option) has a bad value."""


class ScenarioError(TwinError, ValueError):
    """A scenario file is missing, malformed or has out-of-range values."""


class CityError(TwinError, ValueError):
    """A city model is missing, malformed, or cannot be built."""


class SumoError(TwinError, RuntimeError):
    """SUMO rejected its input or died during a run."""


class RunNotFoundError(TwinError, KeyError):
    """No run with the given id is in the run store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "run not found"


class RunError(TwinError, RuntimeError):
    """A run failed; the run store holds the record with the same message."""
