"""Heidi Engine: an autonomous, self-improving data loop for code models.

The public names (``Config``, ``JournalWriter``, ``Core``, ...) come from the backend
selected by ``HEIDI_BACKEND`` (see :mod:`heidi_engine.backend`); they are resolved on
first use so importing the package stays cheap.
"""

from __future__ import annotations

from . import errors
from .backend import PUBLIC_NAMES, load
from .errors import ConfigError as ConfigError  # re-exported: errors.__all__
from .errors import HeidiError as HeidiError
from .errors import JournalError as JournalError
from .errors import RunLockedError as RunLockedError
from .errors import SpawnError as SpawnError
from .errors import TransitionError as TransitionError

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in PUBLIC_NAMES:
        return getattr(load(), name)
    if name == "BACKEND":
        return load().name
    raise AttributeError(f"module 'heidi_engine' has no attribute {name!r}")


__all__ = [*PUBLIC_NAMES, *errors.__all__, "load"]
