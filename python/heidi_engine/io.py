"""Atomic file writing and JSONL reading shared by the stages and tools.

Every file is written by the engine's atomic writer (:mod:`heidi_engine._py.fsutil`): to a
temporary name in its own directory (containing ``.tmp``), fsynced, renamed over the
target, and the directory fsynced (SPEC §5), so a reader never sees a half-written file
and a crash leaves either the old or the new file. Whether to fsync is the
configuration's ``fsync`` (``HEIDI_FSYNC``).

The JSON writers are the one place where stage outputs are scrubbed: every string (and
key) of what they write has its secrets masked (``[REDACTED:<kind>]``, the detector of
``heidi_engine.validation.secrets``), so no data file, report or export holds a secret
that came from a teacher, a task file or a program under test (docs/secrets.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ._py.config import setting_from_env
from ._py.fsutil import atomic_write, fsync_dir
from ._py.jsonenc import dumps


def fsync_enabled() -> bool:
    """The configuration's ``fsync`` (``HEIDI_FSYNC``; off for benchmarks only)."""
    return setting_from_env("fsync")


def fsync_files(directory: str | os.PathLike, *, recursive: bool = False) -> None:
    """With fsync on, fsync every file in ``directory`` (and below it when ``recursive``),
    then the directory itself: a tree written in place made durable before it is
    published by a rename."""
    if not fsync_enabled():
        return
    root = Path(directory)
    for entry in root.rglob("*") if recursive else root.iterdir():
        if entry.is_file():
            fd = os.open(entry, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(root)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data, fsync=fsync_enabled())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def scrub_values(values: list) -> list:
    """The JSON values with every secret in their strings masked."""
    # (Imported here: the validation package itself writes through this module.)
    from .validation.secrets import scrub_values as scrub

    return scrub(values)


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[Mapping]) -> int:
    """Write ``rows``, scrubbed of secrets, as JSON lines atomically; returns the number
    of lines."""
    lines = [dumps(row) + "\n" for row in scrub_values(list(rows))]
    write_text_atomic(path, "".join(lines))
    return len(lines)


def write_json_atomic(path: str | os.PathLike, obj: object, *, indent: int | None = 2) -> None:
    """Write ``obj``, scrubbed of secrets, as a JSON file atomically."""
    (obj,) = scrub_values([obj])
    write_text_atomic(path, json.dumps(obj, ensure_ascii=True, indent=indent) + "\n")


class JsonlError(ValueError):
    """A JSONL file has a line that is not a JSON object."""


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield each JSON object of a JSONL file; a bad line raises JsonlError naming it."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise JsonlError(f"{path}:{number}: not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonlError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise JsonlError(f"{path}:{number}: nested too deeply") from None
            if not isinstance(obj, dict):
                raise JsonlError(f"{path}:{number}: expected a JSON object")
            yield obj


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(path))


def count_lines(path: str | os.PathLike) -> int:
    """Newline count of a file, 0 when it does not exist."""
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
