"""Backend selection: ``HEIDI_BACKEND=auto|native|python``.

``native`` means the compiled ``heidi_cpp`` module and is an error when it does not
import; ``auto`` (the default) prefers it and falls back to the pure-Python twin.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from .errors import ConfigError

VALID_BACKENDS = ("auto", "native", "python")

# The names every backend exposes (SPEC §11).
PUBLIC_NAMES = (
    "Config",
    "SystemClock",
    "FakeClock",
    "RunId",
    "JournalWriter",
    "verify_journal",
    "VerifyResult",
    "StatusWriter",
    "Subprocess",
    "RunResult",
    "CancelToken",
    "MockProvider",
    "OpenAIProvider",
    "AsyncCollector",
    "Completion",
    "Core",
)


class Backend:
    """One engine implementation: attributes are the public names, plus ``name``."""

    def __init__(self, name: str, module: ModuleType) -> None:
        self.name = name
        self.module = module

    def __getattr__(self, attr: str):
        return getattr(self.module, attr)

    def __repr__(self) -> str:
        return f"<heidi backend {self.name}>"


_cache: dict[str, Backend] = {}


def native_import_error() -> str | None:
    """Why ``heidi_cpp`` does not import, or None when it does."""
    try:
        importlib.import_module("heidi_cpp")
    except ImportError as exc:
        return str(exc)
    return None


def load(name: str | None = None) -> Backend:
    """Return the backend named ``name`` (default: ``HEIDI_BACKEND``, else ``auto``)."""
    requested = (name if name is not None else os.environ.get("HEIDI_BACKEND", "auto")).strip()
    if requested not in VALID_BACKENDS:
        raise ConfigError(
            f"invalid value for HEIDI_BACKEND: {requested!r} (valid: {', '.join(VALID_BACKENDS)})"
        )
    if requested == "auto":
        requested = "native" if native_import_error() is None else "python"
    if requested in _cache:
        return _cache[requested]
    if requested == "native":
        try:
            module = importlib.import_module("heidi_cpp")
        except ImportError as exc:
            raise ImportError(
                "HEIDI_BACKEND=native but the compiled module heidi_cpp does not import "
                f"({exc}); build it with `pip install .` (needs a C++ compiler), "
                "or use HEIDI_BACKEND=python"
            ) from exc
    else:
        module = importlib.import_module("heidi_engine._py")
    backend = Backend(requested, module)
    _cache[requested] = backend
    return backend
