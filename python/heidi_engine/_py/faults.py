"""Fault injection for the durability tests (docs/design.md "Fault points").

``HEIDI_FAULT_POINT=<point>:<nth>[:kill|eio]`` makes the process fail the nth time it
reaches ``<point>``: ``kill`` (the default) SIGKILLs the process there, as a power cut or
``kill -9`` would; ``eio`` makes the operation there fail with EIO. The variable is read
once per process, when the first Core is opened; unset, every point is one false test of
``ARMED``. The native backend has the same points with the same names.
"""

from __future__ import annotations

import errno
import os
import signal
import threading

from ..errors import ConfigError

ENV = "HEIDI_FAULT_POINT"
ACTIONS = ("kill", "eio")

# Read by the hooks before anything else: the only cost when no fault is configured.
ARMED = False
_point = ""
_nth = 0
_action = "kill"
_hits = 0
_loaded = False
_lock = threading.Lock()


def parse(spec: str) -> tuple[str, int, str]:
    """(point, nth, action) of a HEIDI_FAULT_POINT value; ConfigError when malformed."""
    parts = spec.split(":")
    action = parts[2] if len(parts) == 3 else "kill"
    valid = 2 <= len(parts) <= 3 and parts[0] and parts[1].isdigit() and int(parts[1]) >= 1
    if not valid or action not in ACTIONS:
        raise ConfigError(
            f"invalid value for {ENV}: {spec!r} (expected <point>:<nth>[:kill|eio], nth >= 1)"
        )
    return parts[0], int(parts[1]), action


def load_from_env() -> None:
    """Arm the configured point (once per process; later calls keep the first setting)."""
    global ARMED, _point, _nth, _action, _loaded
    with _lock:
        if _loaded:
            return
        spec = os.environ.get(ENV, "")
        if spec:
            _point, _nth, _action = parse(spec)
            ARMED = True
        _loaded = True


def _fires(point: str) -> bool:
    global _hits
    if point != _point:
        return False
    with _lock:
        _hits += 1
        return _hits == _nth


def _fail(path: str) -> None:
    if _action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.EIO, os.strerror(errno.EIO), path)


def hit(point: str, path: str) -> None:
    """Fail here if this is the configured point's nth hit (``path``: the file concerned)."""
    if _fires(point):
        _fail(path)


def torn_write(point: str, fd: int, data: bytes, path: str) -> None:
    """At the configured hit, write the first half of ``data`` durably, then fail."""
    if not _fires(point):
        return
    os.write(fd, data[: len(data) // 2])
    os.fsync(fd)
    _fail(path)


__all__ = ["ACTIONS", "ARMED", "ENV", "hit", "load_from_env", "parse", "torn_write"]
