"""The status file: replaced atomically, so a reader never sees a half-written one."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

from . import faults
from .jsonenc import dumps

# Temp names are unique per process and call: <name>.<pid>.<counter>.tmp
_temp_counter = itertools.count(1)


def atomic_write(path: str, data: bytes, *, fsync: bool = True) -> None:
    """Write to a temp file beside ``path``, fsync, rename over ``path``, fsync the directory.

    ``fsync=False`` (``HEIDI_FSYNC=0``, benchmarks only) keeps the atomic rename, skips both fsyncs.
    """
    directory = os.path.dirname(path) or "."
    temp = os.path.join(
        directory, f"{os.path.basename(path)}.{os.getpid()}.{next(_temp_counter)}.tmp"
    )
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            if faults.ARMED:
                faults.torn_write("replace_torn", fd, data, temp)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if faults.ARMED:
            faults.hit("replace_written", temp)
        os.rename(temp, path)
        if faults.ARMED:
            faults.hit("replace_renamed", path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    if not fsync:
        return
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StatusWriter:
    """Writes one JSON object (compact line + newline) to ``path`` atomically."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = os.fspath(path)
        self.fsync = fsync

    def write(self, mapping: Mapping[str, Any]) -> None:
        data = (dumps(mapping) + "\n").encode("ascii")
        try:
            atomic_write(self.path, data, fsync=self.fsync)
        except FileNotFoundError:
            # The directory is created when it is missing, not checked before every write.
            directory = os.path.dirname(self.path)
            if not directory:
                raise
            os.makedirs(directory, exist_ok=True)
            atomic_write(self.path, data, fsync=self.fsync)

    def __repr__(self) -> str:
        return f"StatusWriter({self.path!r})"


__all__ = ["StatusWriter", "atomic_write"]
