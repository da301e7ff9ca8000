"""Exception classes shared by both backends.

The native module translates its C++ exceptions into these classes, so callers
catch the same types with the same messages whichever backend runs.
"""

from __future__ import annotations


class HeidiError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(HeidiError, ValueError):
    """A configuration value, TOML file or key is invalid."""


class TransitionError(HeidiError, RuntimeError):
    """A Core call is not allowed in the current state."""


class JournalError(HeidiError, RuntimeError):
    """The event journal cannot be opened, continued or written."""


class SpawnError(HeidiError, OSError):
    """A child process could not be started (exec failed)."""


class RunLockedError(HeidiError, RuntimeError):
    """Another runner holds the run directory's lock."""


__all__ = [
    "ConfigError",
    "HeidiError",
    "JournalError",
    "RunLockedError",
    "SpawnError",
    "TransitionError",
]
