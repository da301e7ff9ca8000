"""The hash-chained event journal (SPEC §6, docs/design.md "Journal").

One event per line, compact JSON, keys in SPEC order. ``prev_hash`` of line 1 is
``sha256_hex(run_id)``; of line k, ``sha256_hex(line k-1 including its "\\n")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import JournalError
from ..run_layout import EVENT_STAGES, JOURNAL_DIR, JOURNAL_FILE, LEVELS, RUN_STATE_FILE
from . import faults
from .clock import SystemClock
from .fsutil import fsync_dir, write_all
from .jsonenc import encode_string
from .secrets import scrub_secrets

KEYS = (
    "event_version",
    "seq",
    "ts",
    "run_id",
    "round",
    "stage",
    "level",
    "event_type",
    "message",
    "counters_delta",
    "usage_delta",
    "artifact_paths",
    "prev_hash",
)
STAGES = EVENT_STAGES
EVENT_VERSION = "1.0"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# With fsync off, lines are written in batches of about this size.
_BUFFER_BYTES = 1 << 16


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    lines: int
    first_bad_line: int
    reason: str


class _Pairs(list):
    """A JSON object as its (key, value) pairs, so duplicate and misordered keys show."""


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_counter_map(value: Any) -> bool:
    return isinstance(value, _Pairs) and all(
        type(k) is str and _is_int(v) for k, v in value
    )


def _schema_ok(pairs: list[tuple[str, Any]]) -> bool:
    """Keys exactly as in SPEC order, each value of its type."""
    if len(pairs) != len(KEYS) or any(key != want for (key, _), want in zip(pairs, KEYS)):
        return False
    values = dict(pairs)
    strings = ("event_version", "ts", "run_id", "stage", "level", "event_type", "message", "prev_hash")
    paths = values["artifact_paths"]
    return (
        all(type(values[key]) is str for key in strings)
        and _is_int(values["seq"])
        and _is_int(values["round"])
        and _is_counter_map(values["counters_delta"])
        and _is_counter_map(values["usage_delta"])
        and type(paths) is list
        and all(type(path) is str for path in paths)
    )


@dataclass
class _Chain:
    """What a scan of complete journal lines found."""

    lines: int = 0
    head_hash: str = ""
    run_id: str | None = None
    wanted_hash: str = ""  # hash of line ``want_hash_of_line``, when the scan reached it
    bad_line: int = 0
    reason: str = "ok"


def _scan(data: bytes, run_id: str | None, want_hash_of_line: int = 0) -> _Chain:
    """Check the chain of ``data`` (whole lines plus perhaps an unterminated tail).

    ``run_id`` is the id line 1 must carry (None: whatever line 1 says). The scan stops
    at the first bad line.
    """
    chain = _Chain(lines=data.count(b"\n"), run_id=run_id)
    expected_hash = (
        sha256_hex(run_id.encode("utf-8", "surrogatepass")) if run_id is not None else None
    )
    start = 0
    number = 0
    total = len(data)
    while start < total:
        number += 1
        end = data.find(b"\n", start)
        if end < 0:
            chain.bad_line, chain.reason = number, f"line {number}: no trailing newline"
            return chain
        raw = data[start : end + 1]
        start = end + 1
        try:
            event = json.loads(raw[:-1].decode("utf-8"), object_pairs_hook=_Pairs)
        except (ValueError, RecursionError):
            chain.bad_line, chain.reason = number, f"line {number}: not valid JSON"
            return chain
        if not isinstance(event, _Pairs) or not _schema_ok(event):
            chain.bad_line, chain.reason = number, f"line {number}: bad keys"
            return chain
        seq = event[1][1]
        if seq != number:
            chain.bad_line, chain.reason = number, f"line {number}: seq {seq}, expected {number}"
            return chain
        line_run_id = event[3][1]
        if chain.run_id is None:
            chain.run_id = line_run_id
            expected_hash = sha256_hex(line_run_id.encode("utf-8", "surrogatepass"))
        elif line_run_id != chain.run_id:
            chain.bad_line, chain.reason = number, f"line {number}: run_id changed"
            return chain
        if event[12][1] != expected_hash:
            chain.bad_line, chain.reason = number, f"line {number}: prev_hash mismatch"
            return chain
        expected_hash = sha256_hex(raw)
        if number == want_hash_of_line:
            chain.wanted_hash = expected_hash
    chain.head_hash = expected_hash or ""
    return chain


def verify_chain(
    data: bytes, *, run_id: str | None = None, head: tuple[int, str] | None = None
) -> VerifyResult:
    """Check journal bytes: every line (as ``verify_journal``) and, given, the state's head.

    ``run_id``: the id line 1 must carry (None: whatever line 1 says). ``head``: the
    ``(seq, hash)`` a state file names; line ``seq`` must exist and hash to ``hash`` (seq 0
    is not checked). Reasons and ``first_bad_line`` are those of ``verify_journal``.
    """
    head_seq, head_hash = head if head is not None else (0, "")
    chain = _scan(data, run_id, head_seq)
    if chain.bad_line:
        return VerifyResult(False, chain.lines, chain.bad_line, chain.reason)
    if head_seq > chain.lines:
        return VerifyResult(
            False,
            chain.lines,
            chain.lines + 1,
            f"journal ends at seq {chain.lines} before state head seq {head_seq}",
        )
    if head_seq > 0 and chain.wanted_hash != head_hash:
        return VerifyResult(
            False, chain.lines, head_seq, f"line {head_seq}: hash differs from state head"
        )
    return VerifyResult(True, chain.lines, 0, "ok")


def _state_head(state_path: str) -> tuple[int, str] | None:
    """The state file's journal_head, or None when it has no valid one."""
    try:
        with open(state_path, "rb") as handle:
            state = json.loads(handle.read().decode("utf-8"))
    except (FileNotFoundError, ValueError, RecursionError):
        return None  # an unreadable one is an error of its own (OSError naming it)
    head = state.get("journal_head") if isinstance(state, dict) else None
    if not isinstance(head, dict):
        return None
    seq, digest = head.get("seq"), head.get("hash")
    if not _is_int(seq) or seq < 0 or type(digest) is not str:
        return None
    return seq, digest


def _paths(path_or_out_dir: str | os.PathLike[str]) -> tuple[str, str | None]:
    """(journal file, state file or None) for a journal path or an OUT_DIR."""
    path = os.fspath(path_or_out_dir)
    if os.path.isdir(path):
        return (
            os.path.join(path, JOURNAL_FILE),
            os.path.join(path, RUN_STATE_FILE),
        )
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.basename(parent) == JOURNAL_DIR:
        return path, os.path.join(os.path.dirname(parent), RUN_STATE_FILE)
    return path, None


def verify_journal(path_or_out_dir: str | os.PathLike[str]) -> VerifyResult:
    """Recompute the chain and check the state file's head (docs/design.md "Journal")."""
    journal_path, state_path = _paths(path_or_out_dir)
    try:
        with open(journal_path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return VerifyResult(False, 0, 0, "journal missing")
    state_exists = state_path is not None and os.path.exists(state_path)
    head = _state_head(state_path) if state_exists else None
    result = verify_chain(data, head=head)
    if result.ok and state_exists and head is None:
        return VerifyResult(False, result.lines, 0, "state file has no valid journal_head")
    return result


def _counters_json(value: Mapping[str, int] | None, name: str) -> str:
    """Counter names are scrubbed like every text field; names that scrub to the same
    text become one counter (at the first one's place) holding their saturated sum."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map str to int")
    merged: dict[str, int] = {}
    for key, number in value.items():
        if type(key) is not str or not _is_int(number) or not _INT64_MIN <= number <= _INT64_MAX:
            raise ValueError(f"{name} must map str to int")
        key = scrub_secrets(key)
        if key in merged:
            number = min(max(merged[key] + number, _INT64_MIN), _INT64_MAX)
        merged[key] = number
    return "{" + ",".join(f"{encode_string(key)}:{number}" for key, number in merged.items()) + "}"


def _paths_json(value: Sequence[str] | None) -> str:
    if value is None:
        return "[]"
    if not isinstance(value, (list, tuple)) or any(type(path) is not str for path in value):
        raise ValueError("artifact_paths must be a list of str")
    return "[" + ",".join(encode_string(scrub_secrets(path)) for path in value) + "]"


class JournalWriter:
    """Appends events to the journal; continues an existing one. Thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        run_id: str,
        *,
        fsync: bool = True,
        clock: Any = None,
    ) -> None:
        if type(run_id) is not str:
            raise TypeError("run_id must be str")
        self.path = os.fspath(path)
        self.run_id = run_id
        self._fsync = bool(fsync)
        self._clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._fd = -1
        # The strerror of a write that failed, leaving the file at its last whole line:
        # the writer's seq and hash had advanced past lines that never reached the file,
        # so it refuses further use (reopen the journal to continue from the last line).
        self._failure: str | None = None
        self._run_id_json = encode_string(run_id)
        self._open_and_continue()

    # -- opening -----------------------------------------------------------------------

    def _open_and_continue(self) -> None:
        directory = os.path.dirname(self.path)
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
            try:
                with open(self.path, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                data = b""
        except OSError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc.strerror}") from None
        cut = data.rfind(b"\n") + 1
        complete, torn = data[:cut], data[cut:]
        chain = _scan(complete, self.run_id)
        if chain.bad_line:
            raise JournalError(f"cannot continue journal {self.path}: {chain.reason}")
        self._seq = chain.lines
        self._hash = chain.head_hash
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if torn:
                self._move_torn_tail(torn, len(complete))
        except OSError as exc:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            raise JournalError(f"cannot open journal {self.path}: {exc.strerror}") from None
        self._size = len(complete)
        if torn:
            self.append(
                "journal_recovered",
                f"recovered torn line of {len(torn)} bytes",
                level="warn",
                counters_delta={"torn_bytes": len(torn)},
            )

    def _move_torn_tail(self, torn: bytes, keep: int) -> None:
        """Save the crash's partial line beside the journal, then cut it off."""
        aside = f"{self.path}.torn-{self._seq + 1}"
        fd = os.open(aside, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, torn)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)
        fsync_dir(os.path.dirname(self.path) or ".")

    # -- writing -----------------------------------------------------------------------

    def append(
        self,
        event_type: str,
        message: str,
        *,
        stage: str = "pipeline",
        round: int = 0,  # noqa: A002 - the SPEC's field name
        level: str = "info",
        counters_delta: Mapping[str, int] | None = None,
        usage_delta: Mapping[str, int] | None = None,
        artifact_paths: Sequence[str] | None = None,
    ) -> int:
        """Append one event; return its seq. With fsync on, the line is durable on return."""
        if type(event_type) is not str or type(message) is not str:
            raise TypeError("event_type and message must be str")
        if level not in LEVELS:
            raise ValueError(f"invalid level '{level}' (valid: {', '.join(LEVELS)})")
        if stage not in STAGES:
            raise ValueError(f"invalid stage '{stage}' (valid: {', '.join(STAGES)})")
        if not _is_int(round) or not 0 <= round <= _INT64_MAX:
            raise ValueError("round must be an integer >= 0")
        counters = _counters_json(counters_delta, "counters_delta")
        usage = _counters_json(usage_delta, "usage_delta")
        paths = _paths_json(artifact_paths)
        event_type_json = encode_string(scrub_secrets(event_type))
        message_json = encode_string(scrub_secrets(message))
        with self._lock:
            self._check_usable()
            seq = self._seq + 1
            line = (
                f'{{"event_version":"{EVENT_VERSION}","seq":{seq},'
                f'"ts":"{self._clock.now_iso()}","run_id":{self._run_id_json},'
                f'"round":{round},"stage":"{stage}","level":"{level}",'
                f'"event_type":{event_type_json},"message":{message_json},'
                f'"counters_delta":{counters},"usage_delta":{usage},'
                f'"artifact_paths":{paths},"prev_hash":"{self._hash}"}}\n'
            ).encode("ascii")
            if self._fsync:
                self._write_durably(line)
            else:
                self._pending.append(line)
                self._pending_bytes += len(line)
                if self._pending_bytes >= _BUFFER_BYTES:
                    self._flush_locked()
            self._seq = seq
            self._hash = sha256_hex(line)
            return seq

    def _check_usable(self) -> None:
        if self._fd < 0:
            raise JournalError(f"journal {self.path} is closed")
        if self._failure is not None:
            raise JournalError(f"journal {self.path} stopped after a write error: {self._failure}")

    def _write_durably(self, data: bytes) -> None:
        try:
            if faults.ARMED:
                faults.torn_write("journal_torn", self._fd, data, self.path)
            write_all(self._fd, data)
            os.fdatasync(self._fd)
            if faults.ARMED:
                faults.hit("journal_written", self.path)
        except OSError as exc:
            # The line was not written: cut off any part of it and stay usable, unless the
            # cut fails (the file would not end at a whole line).
            self._write_failed(exc, keep_usable=True)
        self._size += len(data)

    def _flush_locked(self) -> None:
        # Only the fsync-off mode buffers; with fsync on every append is already written.
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._write_buffered(data)

    def _write_buffered(self, data: bytes) -> None:
        try:
            if faults.ARMED:
                faults.torn_write("journal_flush_torn", self._fd, data, self.path)
            write_all(self._fd, data)
        except OSError as exc:
            # Lines the writer has already counted are lost: it stops (see _failure).
            self._write_failed(exc, keep_usable=False)
        self._size += len(data)

    def _write_failed(self, exc: OSError, *, keep_usable: bool) -> None:
        """Cut the file back to its last whole line, then raise the write error."""
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            keep_usable = False
        if not keep_usable:
            self._failure = exc.strerror
        raise JournalError(f"cannot write journal {self.path}: {exc.strerror}") from None

    def flush(self) -> None:
        """Write buffered lines (fsync off) to the file."""
        with self._lock:
            if self._fd >= 0:
                self._check_usable()
                self._flush_locked()

    @property
    def head(self) -> tuple[int, str]:
        """(seq, sha256 hex) of the last line; buffered lines are written first."""
        with self._lock:
            if self._fd >= 0:
                self._check_usable()
                self._flush_locked()
            return self._seq, self._hash

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Flush and close; idempotent."""
        with self._lock:
            if self._fd < 0:
                return
            try:
                if self._failure is None:
                    self._flush_locked()
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JournalWriter({self.path!r})"


__all__ = [
    "KEYS",
    "LEVELS",
    "STAGES",
    "JournalWriter",
    "VerifyResult",
    "sha256_hex",
    "verify_chain",
    "verify_journal",
]
