"""How a ``heidi`` command ends: its exit codes, and the error it reports without a traceback."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as ``heidi: error: ...`` with exit code 1."""


__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "CliError"]
