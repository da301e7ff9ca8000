"""The status file: replaced atomically, so a reader never sees a half-written one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .fsutil import atomic_write
from .jsonenc import dumps


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


__all__ = ["StatusWriter"]
