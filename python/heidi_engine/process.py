"""Small facts about processes on this machine, shared by the CLI, the server and the sandbox."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StopSignals:
    """While entered, SIGINT and SIGTERM set :attr:`requested` (the foreground loop stops
    in its own time) and a second SIGINT exits at once with 130; on exit the previous
    handlers come back. The signal handling of ``heidi run`` and ``heidi serve``."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._interrupts = 0
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                os._exit(130)  # a second Ctrl-C: leave at once
        self.requested.set()

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


__all__ = ["StopSignals", "pid_alive"]
