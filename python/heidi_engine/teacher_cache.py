"""The teacher response cache: every paid answer is stored once, as it arrives.

One JSON object per line (``heidi.teacher_cache/1``), appended, flushed and (with
``HEIDI_FSYNC=1``) fsynced as each answer arrives, keyed by the SHA-256 of everything
that determines the answer: the teacher and model, the sampling and request settings,
the task, the exact prompt text, the sample index and the seed. A crash, ``stop`` or
timeout of the generate stage loses at most the answers still in flight; the re-run
sends only the requests whose answers are missing. A torn last line (a crash during
the append) is cut off on load; any other bad line is an error naming the file and the
line, never skipped silently. The file holds JSON only and is read as JSON only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._py.jsonenc import dumps
from .io import fsync_dir, fsync_enabled
from .run_layout import TEACHER_CACHE_FILE

SCHEMA = "heidi.teacher_cache/1"
DEFAULT_RELATIVE_PATH = Path(TEACHER_CACHE_FILE)
_KEY = re.compile(r"[0-9a-f]{64}")


class CacheError(ValueError):
    """The cache file is unusable (corrupt line, locked by another process)."""


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int


def request_key(identity: Mapping[str, object], task: str, prompt: str, sample: int) -> str:
    """The cache key of one request: ``identity`` names the teacher, model and settings."""
    material = {"identity": dict(identity), "task": task, "prompt": prompt, "sample": sample}
    canonical = dumps(material, sort_keys=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_line(obj: object) -> str:
    """What is wrong with a decoded cache line ("" when nothing)."""
    if not isinstance(obj, dict):
        return "expected a JSON object"
    if obj.get("schema") != SCHEMA:
        return f"schema is not {SCHEMA!r}"
    if not isinstance(obj.get("key"), str) or not _KEY.fullmatch(obj["key"]):
        return "key is not 64 lowercase hex digits"
    if not isinstance(obj.get("text"), str):
        return "text is not a string"
    if not _count(obj.get("prompt_tokens")) or not _count(obj.get("completion_tokens")):
        return "token counts are not integers >= 0"
    return ""


class ResponseCache:
    """An append-only answer store; ``get``/``put`` are thread-safe.

    The file is locked (``flock``) while open, so two runs sharing one cache file
    cannot interleave their writes; the second gets a clear error.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool | None = None) -> None:
        self.path = Path(path)
        self.fsync = fsync_enabled() if fsync is None else fsync
        self.entries: dict[str, CachedAnswer] = {}
        self.torn_bytes = 0  # bytes of a torn last line cut off on load
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fh = open(self.path, "a+b")  # noqa: SIM115 - held open for appends
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise CacheError(f"{self.path}: the teacher cache is in use by another process") from None
        try:
            self._load()
        except BaseException:
            self.close()
            raise
        if created and self.fsync:
            fsync_dir(self.path.parent)

    def _load(self) -> None:
        self._fh.seek(0)
        data = self._fh.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line: the append a crash interrupted
            self.torn_bytes = len(data) - end
            self._fh.truncate(end)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
        for number, line in enumerate(data[:end].split(b"\n")[:-1], 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                problem = "not valid JSON"
            else:
                problem = _check_line(obj)
            if problem:
                raise CacheError(
                    f"{self.path}:{number}: corrupt teacher cache line ({problem}); "
                    "move the file aside or set HEIDI_TEACHER_CACHE=0"
                )
            self.entries[obj["key"]] = CachedAnswer(
                obj["text"], obj["prompt_tokens"], obj["completion_tokens"]
            )

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> CachedAnswer | None:
        with self._lock:
            return self.entries.get(key)

    def put(self, key: str, answer: CachedAnswer, **context: object) -> None:
        """Store an answer durably before returning; ``context`` (task, sample, model)
        is kept on the line for people reading the file."""
        row = {"schema": SCHEMA, "key": key, **context, "text": answer.text,
               "prompt_tokens": answer.prompt_tokens,
               "completion_tokens": answer.completion_tokens}
        line = (dumps(row) + "\n").encode("ascii")
        with self._lock:
            if key in self.entries:
                return
            self._fh.write(line)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
            self.entries[key] = answer

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()  # closing releases the lock


__all__ = ["CacheError", "CachedAnswer", "DEFAULT_RELATIVE_PATH", "ResponseCache", "SCHEMA",
           "request_key"]
