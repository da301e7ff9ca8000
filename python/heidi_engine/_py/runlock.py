"""The run lock: one runner per OUT_DIR (docs/design.md "Run lock").

An exclusive ``flock`` on ``OUT_DIR/state/run.lock``, held from the Core's opening to its
shutdown. The kernel drops it when the holder dies, so a crash never leaves a stale lock.
The descriptor is close-on-exec: stage processes never hold it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from ..errors import RunLockedError
from ..run_layout import RUN_LOCK_FILE


def lock_path(out_dir: str) -> str:
    return os.path.join(out_dir, RUN_LOCK_FILE)


def _holder_pid(fd: int) -> str:
    """The pid the holder wrote into the lock file ("unknown" before it has written it)."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _wait_for_holder_pid(fd: int) -> str:
    """The holder writes its pid just after taking the lock: give it a moment to appear."""
    holder = _holder_pid(fd)
    for _ in range(40):
        if holder != "unknown":
            break
        time.sleep(0.005)
        holder = _holder_pid(fd)
    return holder


class RunLock:
    """Holds OUT_DIR's run lock until ``release()``; RunLockedError when another holds it."""

    def __init__(self, out_dir: str) -> None:
        self.path = lock_path(out_dir)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            locked = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            holder = _wait_for_holder_pid(fd) if locked else ""
            os.close(fd)
            if locked:
                raise RunLockedError(
                    f"run directory {out_dir} is in use by another runner (pid {holder})"
                ) from None
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: removing it would race a new holder."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            os.ftruncate(fd, 0)  # no pid of a runner that has finished
        except OSError:
            pass
        os.close(fd)


__all__ = ["RunLock", "lock_path"]
