"""The pure-Python backend: the same names and behaviour as the compiled ``heidi_cpp``.

Names resolve lazily so that loading one component does not import the others.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "SystemClock": "clock",
    "FakeClock": "clock",
    "RunId": "clock",
    "Config": "config",
    "JournalWriter": "journal",
    "verify_journal": "journal",
    "VerifyResult": "journal",
    "StatusWriter": "status",
    "Subprocess": "subprocess_runner",
    "RunResult": "subprocess_runner",
    "CancelToken": "subprocess_runner",
    "MockProvider": "collector",
    "OpenAIProvider": "collector",
    "AsyncCollector": "collector",
    "Completion": "collector",
    "Core": "core",
}


def __getattr__(name: str):
    module_name = _WHERE.get(name)
    if module_name is None:
        raise AttributeError(f"module 'heidi_engine._py' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(_WHERE)


__all__ = sorted(_WHERE)
