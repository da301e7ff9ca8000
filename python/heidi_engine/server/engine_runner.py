"""The thread that drives the Core (the twin of ``cpp/daemon/engine_runner.cpp``).

It ticks whenever the run is in a running state and sleeps otherwise until it is woken.
Other threads never tick: they call the Core's thread-safe methods (which never wait for
a running stage) and then :meth:`EngineRunner.wake`. ``heidi serve`` and ``heidi run``
both drive their Core with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..errors import TransitionError
from ..run_layout import RESTING_STATES


class EngineRunner:
    """Ticks ``core`` on its own thread; ``failure`` is set if the thread died of an exception."""

    # A backstop: a wake() ends the wait at once, this only bounds a missed wake-up.
    IDLE_POLL_S = 0.5

    def __init__(self, core: Any, *, idle_poll_s: float = IDLE_POLL_S,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.core = core
        self.idle_poll_s = idle_poll_s
        self._on_failure = on_failure
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._in_tick = False
        self._thread = threading.Thread(target=self._loop, name="heidi-engine", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    self._in_tick = True
                # Cleared before the tick, so a wake-up during the tick is not lost.
                self._wake.clear()
                try:
                    state = self.core.tick()
                finally:
                    with self._lock:
                        self._in_tick = False
                if state in RESTING_STATES:
                    self._wake.wait(self.idle_poll_s)
        except BaseException as exc:  # the owner reports it (the Core's status stays readable)
            self.failure = exc
            if self._on_failure is not None:
                self._on_failure(exc)

    def shutdown(self, *, cancel_stage: bool = True) -> None:
        """Join the thread and close the Core. A stage the thread is running is cancelled
        first (SPEC stop semantics), or with ``cancel_stage=False`` waited for."""
        with self._lock:
            self._stopping = True
            stage_running = self._in_tick
        if stage_running and cancel_stage:
            try:
                self.core.stop()
            except TransitionError:
                pass  # the stage ended meanwhile
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.core.shutdown()


__all__ = ["EngineRunner"]
