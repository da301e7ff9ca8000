"""Small POSIX file helpers: the one atomic writer and ``fsync_dir`` (the twin of
``cpp/src/fsutil.cpp``).

The status file, the stage logs, the journal and every file :mod:`heidi_engine.io` writes
go through them. ``fsync=False`` (``HEIDI_FSYNC=0``, benchmarks only) keeps the atomic
rename and skips the fsyncs.
"""

from __future__ import annotations

import itertools
import os

from . import faults

# Temp names are unique per process and call: <name>.<pid>.<counter>.tmp
_temp_counter = itertools.count(1)


def write_all(fd: int, data: bytes) -> None:
    """``write()`` every byte, however short each write is."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write to a temp file beside ``path``, fsync, rename over ``path``, fsync the directory.

    A reader sees the old file or the new one, never a mix; a failure removes the temp file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    temp = os.path.join(
        directory, f"{os.path.basename(path)}.{os.getpid()}.{next(_temp_counter)}.tmp"
    )
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            if faults.ARMED:
                faults.torn_write("replace_torn", fd, data, temp)
            write_all(fd, data)
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
    if fsync:
        fsync_dir(directory)


__all__ = ["atomic_write", "fsync_dir", "write_all"]
