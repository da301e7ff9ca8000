"""The Core: the tick-driven state machine that runs the loop (SPEC §4-§7).

One object owns the run directory: it journals every step, keeps
``state/run_state.json`` current and runs each stage as a child process. Every method
is thread-safe; ``stop``/``pause``/``get_status_json`` never wait for a running stage
(the stage runs with the state lock released).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import threading
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, JournalError, SpawnError, TransitionError
from ..run_layout import (
    ADAPTER_FILES,
    COUNT_KEYS,
    DATA_KIND_OF_COUNT,
    DISPLAY_STATES,
    ERROR,
    IDLE,
    JOURNAL_FILE,
    LEVELS,
    MODES,
    PAUSED,
    RESTING_STATES,
    RUN_STATE_FILE,
    RUNNING_STATES,
    STAGE_OF_STATE,
    STAGES,
    STATE_OF_STAGE,
    TRAIN_METRICS_NAME,
    adapter_dir,
    data_file,
    eval_report,
    log_file,
)
from . import faults
from .clock import FakeClock, RunId, SystemClock
from .config import Config
from .fsutil import atomic_write
from .journal import JournalWriter, verify_chain
from .jsonenc import dumps, nesting_exceeds, reject_constant
from .runlock import RunLock
from .secrets import scrub_bytes, scrub_secrets
from .status import StatusWriter
from .subprocess_runner import CancelToken, Subprocess

SCHEMA = "heidi.run_state/1"
# Order of the calls listed in a TransitionError's "allowed" part.
GUARDED_CALLS = ("start", "train_now", "pause", "resume", "stop", "reset")

MAX_STAGE_OUTPUT_BYTES = 1 << 20
KILL_GRACE_S = 2.0
HEIDI_LINE_PREFIX = "@heidi "
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
# Failures of the run directory's I/O: they put the Core in ERROR (docs/design.md "Write errors").
IO_ERRORS = (OSError, JournalError)


def stage_counters(stage: str, run_unit_tests: bool) -> tuple[str, ...]:
    """The status counts a stage's stage_end reports (design.md "Stage-end counters")."""
    if stage == "generate":
        return ("raw_lines",)
    if stage == "validate":
        base = ("clean_lines", "rejected_lines")
        return base if run_unit_tests else (*base, "train_lines", "val_lines")
    if stage == "test":
        return ("tested_lines", "test_failed", "train_lines", "val_lines")
    return ()


def stage_artifacts(stage: str, round_: int, run_unit_tests: bool) -> tuple[str, ...]:
    """Every output file of a stage, relative to OUT_DIR, in SPEC §5 order."""
    if stage in ("generate", "validate", "test"):
        wanted = set(stage_counters(stage, run_unit_tests))
        return tuple(data_file(kind, round_) for key, kind in DATA_KIND_OF_COUNT.items()
                     if key in wanted)
    if stage == "train":
        folder = adapter_dir(round_)
        return tuple(f"{folder}/{name}" for name in (*ADAPTER_FILES, TRAIN_METRICS_NAME))
    return (eval_report(round_),)


def required_outputs(stage: str, round_: int, run_unit_tests: bool) -> tuple[str, ...]:
    """The files whose absence makes a stage's run fail (design.md "Stage processes")."""
    split = (data_file("train", round_), data_file("val", round_))
    if stage == "generate":
        return (data_file("raw", round_),)
    if stage == "validate":
        clean = (data_file("clean", round_),)
        return clean if run_unit_tests else clean + split
    if stage == "test":
        return (data_file("tested", round_), *split)
    if stage == "train":
        return (f"{adapter_dir(round_)}/{TRAIN_METRICS_NAME}",)
    return (eval_report(round_),)


def count_lines(path: str) -> int | None:
    """Lines of a JSONL file (a final line without newline counts); None when absent."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _is_int64(value: Any) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def _int_map(value: Any) -> bool:
    return isinstance(value, dict) and all(_is_int64(v) for v in value.values())


def parse_heidi_line(line: str) -> dict[str, Any] | None:
    """The event of one ``@heidi {json}`` stdout line, or None when it is not a valid one."""
    if not line.startswith(HEIDI_LINE_PREFIX):
        return None
    text = line[len(HEIDI_LINE_PREFIX) :]
    if nesting_exceeds(text):  # refused unparsed, like any malformed line (both backends)
        return None
    try:
        payload = json.loads(text, parse_constant=reject_constant)
        # A lone surrogate escape ("\ud800") is not Unicode: the native parser refuses the
        # line, so it is skipped here too.
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError):
        return None
    if not isinstance(payload, dict):
        return None
    event = {
        "event_type": payload.get("event_type", "progress"),
        "message": payload.get("message", ""),
        "level": payload.get("level", "info"),
        "counters_delta": payload.get("counters_delta", {}),
        "usage_delta": payload.get("usage_delta", {}),
        "artifact_paths": payload.get("artifact_paths", []),
    }
    if not isinstance(event["event_type"], str) or not event["event_type"]:
        return None
    if not isinstance(event["message"], str) or event["level"] not in LEVELS:
        return None
    if not _int_map(event["counters_delta"]) or not _int_map(event["usage_delta"]):
        return None
    paths = event["artifact_paths"]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return None
    return event


STATE_KEYS = ("schema", "run_id", "mode", "state", "stage", "current_round", "counts",
              "last_completed", "last_error", "journal_head")


def state_file_problem(saved: Any) -> str | None:
    """What is wrong with a parsed run_state.json, or None (the same text as the native Core)."""
    if not isinstance(saved, dict):
        return "not a JSON object"
    for key in STATE_KEYS:
        if key not in saved:
            return f"missing key '{key}'"
    last = saved["last_completed"]
    checks = (
        ("schema", saved["schema"] == SCHEMA),
        ("run_id", isinstance(saved["run_id"], str)),
        ("mode", saved["mode"] in MODES),
        ("state", isinstance(saved["state"], str) and saved["state"] in DISPLAY_STATES),
        ("stage", saved["stage"] is None or saved["stage"] in STAGES),
        ("current_round", _is_int64(saved["current_round"])),
        ("counts", _int_map(saved["counts"])),
        ("last_completed", last is None or (
            isinstance(last, dict) and _is_int64(last.get("round")) and last.get("stage") in STAGES)),
        ("last_error", saved["last_error"] is None or isinstance(saved["last_error"], str)),
        ("journal_head", _is_head(saved["journal_head"])),
    )
    for key, ok in checks:
        if not ok:
            return f"invalid value for '{key}'"
    return None


def _is_json_object_file(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return isinstance(json.loads(handle.read()), dict)
    except (OSError, ValueError):
        return False


def remove_temp_files(out_dir: str) -> None:
    """Remove what a crash left half-written: every ``*.tmp*`` entry below OUT_DIR's
    subfolders, and temporary files and links at its top (``best_adapter.<pid>.tmp``)."""
    try:
        top = list(os.scandir(out_dir))
    except FileNotFoundError:
        return
    for entry in sorted(top, key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            _remove_temp_below(entry.path)
        elif ".tmp" in entry.name:
            os.unlink(entry.path)


def _remove_temp_below(folder: str) -> None:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        is_dir = entry.is_dir(follow_symlinks=False)
        if ".tmp" in entry.name:
            if is_dir:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        elif is_dir:
            _remove_temp_below(entry.path)


def io_error_text(exc: BaseException) -> str:
    """The ``last_error`` of an I/O failure (the same text in both backends)."""
    if isinstance(exc, OSError) and exc.strerror:
        if exc.filename is not None:
            return f"io error: {exc.filename}: {exc.strerror}"
        return f"io error: {exc.strerror}"
    return f"io error: {exc}"


def split_stage_command(env_name: str, command: str) -> list[str]:
    """POSIX-shell split of a stage command (no shell runs); a bad quote is a ConfigError."""
    try:
        argv = shlex.split(command)
    except ValueError:
        raise ConfigError(
            f"invalid value for {env_name}: {command!r} (unbalanced quote or trailing backslash)"
        ) from None
    if not argv:
        raise ConfigError(f"invalid value for {env_name}: {command!r} (empty command)")
    return argv


def _failure_message(result: Any, timeout_s: float) -> str | None:
    if result.timed_out:
        return f"failed: timed out after {timeout_s!r} s"
    if result.signal:
        return f"failed: killed by signal {result.signal}"
    if result.exit_code != 0:
        return f"failed: exit code {result.exit_code}"
    return None


class Core:
    """The loop's state machine over one OUT_DIR (see docs/design.md "Core")."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config if config is not None else Config.from_env()
        cfg = self._config
        self._clock = FakeClock(cfg.fake_time) if cfg.fake_time else SystemClock()
        self._out_dir = os.path.abspath(cfg.out_dir)
        self._python = cfg.python or sys.executable
        self._stage_argv = {stage: self._stage_base_argv(stage) for stage in STAGES}
        self._lock = threading.Lock()  # guards every field below and the journal
        self._tick_lock = threading.Lock()  # one tick at a time
        self._state = IDLE
        self._mode = cfg.pipeline_mode
        self._paused = False
        self._stage: str | None = None
        self._round = 0
        self._counts = dict.fromkeys(COUNT_KEYS, 0)
        self._train_now_pending = False
        self._stop_requested = False
        self._last_completed: tuple[int, str] | None = None
        self._last_error: str | None = None
        self._cancel: CancelToken | None = None  # set while a stage process runs
        self._closed = False
        self.last_refusal = ""

        os.makedirs(self._out_dir, exist_ok=True)
        faults.load_from_env()
        self._run_lock = RunLock(self._out_dir)
        try:
            self._open_run()
        except BaseException:
            self._run_lock.release()
            raise

    def _open_run(self) -> None:
        """Check what OUT_DIR holds (changing nothing), then clean up and continue it."""
        self._state_path = os.path.join(self._out_dir, RUN_STATE_FILE)
        journal_path = os.path.join(self._out_dir, JOURNAL_FILE)
        saved = self._load_saved_state()
        run_id = self._choose_run_id(saved, journal_path)
        trailing = self._verified_events_after_head(journal_path, saved)
        remove_temp_files(self._out_dir)
        if saved is not None:
            self._restore(saved)
        self._replay(trailing)
        self._run_id = run_id
        self._journal = JournalWriter(
            journal_path, run_id, fsync=self._config.fsync, clock=self._clock
        )
        self._status_writer = StatusWriter(self._state_path, fsync=self._config.fsync)
        self._status_line = ""
        self._last_head = self._journal.head  # the journal's head at the last state write
        with self._lock:
            self._write_state()

    # ----- construction helpers -------------------------------------------------------

    def _stage_base_argv(self, stage: str) -> list[str]:
        command = getattr(self._config, f"stage_cmd_{stage}")
        if command:
            return split_stage_command(f"HEIDI_STAGE_CMD_{stage.upper()}", command)
        return [self._python, "-m", f"heidi_engine.stages.{stage}"]

    def _load_saved_state(self) -> dict[str, Any] | None:
        try:
            with open(self._state_path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        saved: Any = None
        problem = "not valid JSON"
        if not nesting_exceeds(raw):
            try:
                saved = json.loads(raw)
                problem = state_file_problem(saved)
            except (ValueError, RecursionError):
                pass
        if problem is not None:
            raise JournalError(f"invalid state file {self._state_path}: {problem}")
        return saved

    def _choose_run_id(self, saved: dict[str, Any] | None, journal_path: str) -> str:
        existing = saved["run_id"] if saved is not None else _first_journal_run_id(journal_path)
        wanted = self._config.run_id
        if existing is not None:
            if wanted and wanted != existing:
                raise ConfigError(
                    f"invalid value for RUN_ID: {wanted!r} (OUT_DIR holds run {existing!r})"
                )
            return existing
        return wanted or RunId.generate(self._clock)

    def _verified_events_after_head(
        self, journal_path: str, saved: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Verify the journal against the state's head; return the events after the head.

        Only complete lines count (a torn last line is the journal writer's to recover).
        A journal that fails is a JournalError naming the first bad line, raised before
        anything in OUT_DIR is changed.
        """
        head_seq, head_hash = (0, "")
        if saved is not None:
            head_seq, head_hash = saved["journal_head"]["seq"], saved["journal_head"]["hash"]
        try:
            with open(journal_path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            if head_seq > 0:
                self._refuse_resume(journal_path, 1, "journal missing")
            return []
        complete = data[: data.rfind(b"\n") + 1]
        result = verify_chain(
            complete, run_id=saved["run_id"] if saved else None, head=(head_seq, head_hash)
        )
        if not result.ok:
            self._refuse_resume(journal_path, result.first_bad_line, result.reason)
        return [json.loads(line) for line in complete.split(b"\n")[head_seq:-1]]

    def _refuse_resume(self, journal_path: str, line: int, reason: str) -> None:
        raise JournalError(
            f"cannot resume {self._out_dir}: journal {journal_path} fails verification "
            f"at line {line} ({reason}); nothing was changed"
        )

    def _replay(self, events: list[dict[str, Any]]) -> None:
        """Bring the restored progress up to journal lines the state file never saw.

        A crash can land between a journal append and the state write that follows; the
        journal is the record (docs/design.md "Resume").
        """
        unfinished: str | None = None  # the stage of a stage_start without a good end
        for event in events:
            kind, stage = event["event_type"], event["stage"]
            if kind == "pipeline_start":
                mode = event["message"].split(" ", 1)[0].removeprefix("mode=")
                self._mode = mode if mode in MODES else self._mode
                self._round, self._counts = 0, dict.fromkeys(COUNT_KEYS, 0)
                self._to_idle_after_replayed_start()
            elif kind == "pipeline_resume":
                self._to_idle_after_replayed_start()
            elif kind == "round_start":
                self._round, self._counts = event["round"], dict.fromkeys(COUNT_KEYS, 0)
            elif kind == "stage_start":
                unfinished = stage
            elif kind == "stage_end" and event["level"] == "info":
                unfinished = None
                self._round = event["round"]
                self._last_completed = (event["round"], stage)
                for key, value in event["counters_delta"].items():
                    if key in self._counts:
                        self._counts[key] = value
            elif kind == "pipeline_error":
                self._state, self._stage = ERROR, unfinished
                self._last_error = event["message"]

    def _to_idle_after_replayed_start(self) -> None:
        self._state, self._stage, self._last_error = IDLE, None, None

    def _restore(self, saved: dict[str, Any]) -> None:
        """Continue a run: progress comes back, nothing is running (a crash ended it)."""
        self._mode = saved["mode"]
        self._round = saved["current_round"]
        for key in COUNT_KEYS:
            self._counts[key] = saved["counts"].get(key, 0)
        last = saved["last_completed"]
        self._last_completed = None if last is None else (last["round"], last["stage"])
        if saved["state"] == ERROR:
            self._state = ERROR
            self._stage = saved["stage"]
            self._last_error = saved["last_error"]

    # ----- status ---------------------------------------------------------------------

    def _display_state(self) -> str:
        return PAUSED if self._paused else self._state

    def _waiting(self) -> bool:
        """IDLE in collect mode with the current round's data ready for train-now."""
        if self._state != IDLE or self._mode != "collect" or self._last_completed is None:
            return False
        round_, stage = self._last_completed
        ready = stage == "test" or (stage == "validate" and not self._config.run_unit_tests)
        return ready and round_ == self._round

    def _write_state(self) -> None:
        # A journal that cannot write its buffered lines refuses to give its head: the
        # status snapshot still shows this call's state (with the last head written), the
        # file is not written (it would count lines that never reached the journal).
        journal_error: JournalError | None = None
        try:
            self._last_head = self._journal.head
        except JournalError as exc:
            journal_error = exc
        seq, digest = self._last_head
        status = {
            "schema": SCHEMA,
            "run_id": self._run_id,
            "mode": self._mode,
            "state": self._display_state(),
            "paused": self._paused,
            "stage": self._stage,
            "current_round": self._round,
            "rounds_total": self._config.rounds,
            "last_write_ts": self._clock.now_iso(),
            "counts": dict(self._counts),
            "train_now_pending": self._train_now_pending,
            "stop_requested": self._stop_requested,
            "last_completed": (
                None
                if self._last_completed is None
                else {"round": self._last_completed[0], "stage": self._last_completed[1]}
            ),
            "last_error": None if self._last_error is None else scrub_secrets(self._last_error),
            "journal_head": {"seq": seq, "hash": digest},
            # Not in SPEC's key list: appended after it, so readers ask the Core instead of
            # re-deriving the rule (it depends on RUN_UNIT_TESTS, which the file does not hold).
            "waiting_for_train_now": self._waiting(),
        }
        # The snapshot first: if the file write fails, status still tells the truth.
        self._status_line = dumps(status)
        if journal_error is not None:
            raise journal_error
        self._status_writer.write(status)

    def _enter_io_error(self, exc: BaseException, stage: str | None = None) -> None:
        """An I/O failure of the run directory: go to ERROR with the cause (lock held).

        Journaling and saving the ERROR are best effort: the failing disk may refuse them
        too, and every file is still valid as it stands.
        """
        cause = io_error_text(exc)
        self._state, self._stage, self._last_error = ERROR, stage, cause
        self._paused = self._stop_requested = self._train_now_pending = False
        try:
            self._append("pipeline_error", cause, level="error")
        except IO_ERRORS:
            pass
        try:
            self._write_state()
        except IO_ERRORS:
            pass

    def get_status_json(self) -> str:
        """The run_state.json line (without its newline); never waits for a stage."""
        return self._status_line

    # ----- journal --------------------------------------------------------------------

    def _append(
        self,
        event_type: str,
        message: str,
        *,
        stage: str = "pipeline",
        level: str = "info",
        round_: int | None = None,
        counters_delta: Mapping[str, int] | None = None,
        usage_delta: Mapping[str, int] | None = None,
        artifact_paths: list[str] | None = None,
    ) -> None:
        self._journal.append(
            event_type,
            message,
            stage=stage,
            round=self._round if round_ is None else round_,
            level=level,
            counters_delta=counters_delta,
            usage_delta=usage_delta,
            artifact_paths=artifact_paths,
        )

    # ----- guards ---------------------------------------------------------------------

    def _allowed_calls(self) -> list[str]:
        running = self._state in RUNNING_STATES
        waiting = self._waiting()
        allowed = {
            "start": (self._state == IDLE and not waiting) or self._state == ERROR,
            "train_now": waiting and not self._paused,
            "pause": (running or waiting) and not self._paused,
            "resume": self._paused,
            "stop": running or waiting,
            "reset": self._state in (IDLE, ERROR),
        }
        return [call for call in GUARDED_CALLS if allowed[call]]

    def _check_open(self, call: str) -> None:
        if self._closed:
            raise TransitionError(f"cannot {call}: the core is shut down")

    def _require(self, call: str) -> None:
        self._check_open(call)
        allowed = self._allowed_calls()
        if call not in allowed:
            raise TransitionError(
                f"cannot {call} in state {self._display_state()} (allowed: {', '.join(allowed)})"
            )

    # ----- calls ----------------------------------------------------------------------

    def start(self, mode: str | None = None) -> None:
        """IDLE/ERROR -> the next stage: round 1 for a fresh run, else after last_completed.

        ``mode`` defaults to the config's ``pipeline_mode``.
        """
        with self._lock:
            self._require("start")
            if mode is None:
                mode = self._config.pipeline_mode
            if mode not in MODES:
                raise ConfigError(
                    f"invalid value for PIPELINE_MODE: {mode!r} (valid: {', '.join(MODES)})"
                )
            try:
                if self._last_completed is None:
                    self._begin_fresh(mode)
                else:
                    self._begin_resumed(mode)
                self._write_state()
            except IO_ERRORS as exc:
                self._enter_io_error(exc)

    def _clear_flags(self) -> None:
        self._paused = False
        self._stop_requested = False
        self._train_now_pending = False
        self._last_error = None

    def _begin_fresh(self, mode: str) -> None:
        self._clear_flags()
        self._mode = mode
        self._round = 0
        if self._journal.head[0] > 0:  # a restart before any stage completed: still one run
            self._append("pipeline_resume", "resume round=1 stage=generate")
        else:
            self._append("pipeline_start", f"mode={mode} rounds={self._config.rounds}")
        self._enter_round(1)

    def _enter_round(self, round_: int) -> None:
        self._round = round_
        self._counts = dict.fromkeys(COUNT_KEYS, 0)
        self._append("round_start", f"round {round_}/{self._config.rounds}")
        self._state, self._stage = STATE_OF_STAGE["generate"], "generate"

    def _begin_resumed(self, mode: str) -> None:
        assert self._last_completed is not None
        done_round, done_stage = self._last_completed
        if done_stage == "eval" and done_round >= self._config.rounds:
            raise TransitionError(f"run complete: all {self._config.rounds} rounds done")
        self._clear_flags()
        self._mode = mode
        if done_stage == "eval":
            self._round = done_round + 1
            self._append("pipeline_resume", f"resume round={self._round} stage=generate")
            self._enter_round(self._round)
            return
        self._round = done_round
        next_stage = self._stage_after(done_stage)
        if next_stage is None:  # collect mode: the round waits for train-now
            self._state, self._stage = IDLE, None
            self._append("pipeline_resume", f"resume round={self._round} stage=waiting")
            return
        self._state, self._stage = STATE_OF_STAGE[next_stage], next_stage
        self._append("pipeline_resume", f"resume round={self._round} stage={next_stage}")

    def _stage_after(self, stage: str) -> str | None:
        """The stage that follows a successful one in this round (None: wait for train-now)."""
        if stage == "generate":
            return "validate"
        if stage == "validate" and self._config.run_unit_tests:
            return "test"
        if stage in ("validate", "test"):
            return "train" if self._mode == "full" else None
        if stage == "train":
            return "eval"
        raise AssertionError(stage)

    def train_now(self) -> bool:
        """Accepted (True) only in collect mode while IDLE and waiting; else see last_refusal."""
        with self._lock:
            self._check_open("train_now")
            refusal = self._train_now_refusal()
            if refusal is not None:
                self.last_refusal = refusal
                return False
            self.last_refusal = ""
            self._state, self._stage = STATE_OF_STAGE["train"], "train"
            self._train_now_pending = True
            try:
                self._append("train_now_trigger", f"train now round {self._round}")
                self._write_state()
            except IO_ERRORS as exc:
                self._enter_io_error(exc)
                self.last_refusal = self._last_error or ""
                return False
            return True

    action_train_now = train_now

    def _train_now_refusal(self) -> str | None:
        if self._paused:
            return "paused"
        if self._mode != "collect":
            return f"train-now needs collect mode (mode is {self._mode})"
        if self._state != IDLE:
            return f"not waiting for train-now (state {self._state})"
        if not self._waiting():
            return "no collected round waiting for training"
        return None

    def pause(self) -> None:
        self._set_paused("pause", True, "paused")

    def resume(self) -> None:
        self._set_paused("resume", False, "resumed")

    def _set_paused(self, call: str, paused: bool, event: str) -> None:
        with self._lock:
            self._require(call)
            self._paused = paused
            try:
                self._append(event, event)
                self._write_state()
            except IO_ERRORS as exc:
                self._enter_io_error(exc)

    def stop(self) -> None:
        """Stop now between stages; during a stage, kill it and let its tick record the cancel."""
        with self._lock:
            self._require("stop")
            try:
                if self._cancel is not None:
                    if not self._stop_requested:
                        self._stop_requested = True
                        self._cancel.cancel()
                        self._write_state()
                    return
                self._stopped()
                self._write_state()
            except IO_ERRORS as exc:
                self._enter_io_error(exc)

    def _stopped(self) -> None:
        self._append("pipeline_stop", "stopped")
        self._state, self._stage = IDLE, None
        self._paused = False
        self._stop_requested = False
        self._train_now_pending = False

    def reset(self) -> None:
        """IDLE/ERROR -> IDLE with the error, pause and stop flags cleared; progress is kept."""
        with self._lock:
            self._require("reset")
            self._state, self._stage = IDLE, None
            self._clear_flags()
            try:
                self._write_state()
            except IO_ERRORS as exc:
                self._enter_io_error(exc)

    def shutdown(self) -> None:
        """Cancel a running stage, wait for its tick, close the journal. Idempotent."""
        with self._lock:
            if self._closed:
                return
            if self._cancel is not None and not self._stop_requested:
                self._stop_requested = True
                self._cancel.cancel()
        with self._tick_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._journal.close()
            finally:
                self._run_lock.release()

    def __del__(self) -> None:
        # A Core dropped without shutdown() must not keep OUT_DIR locked (the native
        # Core's destructor does the same).
        lock = getattr(self, "_run_lock", None)
        if lock is not None:
            lock.release()

    # ----- ticking --------------------------------------------------------------------

    def run_until_idle(self) -> str:
        """Tick until IDLE, ERROR or PAUSED; returns that state name."""
        while True:
            state = self.tick()
            if state in RESTING_STATES:
                return state

    def tick(self) -> str:
        """Run the current state's stage and move on; returns the new state name."""
        with self._tick_lock:
            with self._lock:
                self._check_open("tick")
                if self._paused or self._state not in RUNNING_STATES:
                    return self._display_state()
                stage, round_ = STAGE_OF_STATE[self._state], self._round
                if stage == "train":
                    self._train_now_pending = False
                try:
                    self._append("stage_start", f"{stage} round {round_}", stage=stage)
                    if faults.ARMED:
                        faults.hit(f"stage_started.{stage}", self._out_dir)
                    started = self._clock.monotonic()
                    if self._config.mock_subprocesses:
                        self._finish_stage(stage, round_, started, None)
                        return self._display_state()
                except IO_ERRORS as exc:
                    self._enter_io_error(exc, stage)
                    return self._display_state()
                cancel = CancelToken()
                self._cancel = cancel
            try:
                failure = self._run_stage_process(stage, round_, cancel)
            except IO_ERRORS as exc:
                # Writing its progress, log or outputs failed: the stage failed (fail-closed).
                failure = f"failed: {io_error_text(exc)}"
            except BaseException:
                with self._lock:
                    self._cancel = None
                raise
            with self._lock:
                # Same lock section as the finish, so a stop() sees the stage either
                # running (and cancels it) or finished (and stops between stages).
                self._cancel = None
                try:
                    if faults.ARMED:
                        faults.hit(f"stage_exited.{stage}", self._out_dir)
                    self._finish_stage(stage, round_, started, failure)
                except IO_ERRORS as exc:
                    self._enter_io_error(exc, stage)
                return self._display_state()

    def _run_stage_process(self, stage: str, round_: int, cancel: CancelToken) -> str | None:
        """Run one stage process (state lock released); returns its failure text or None."""
        for rel in stage_artifacts(stage, round_, self._config.run_unit_tests):
            # Outputs of an earlier (failed or interrupted) attempt are discarded: a stale
            # file must not pass for this run's (fail-closed).
            path = os.path.join(self._out_dir, rel)
            if os.path.lexists(path):
                os.unlink(path)
        argv = [*self._stage_argv[stage], "--round", str(round_), "--out-dir", self._out_dir]
        timeout_s = self._config.stage_timeout_for(stage)
        try:
            result = Subprocess.run(
                argv,
                timeout_s,
                env=self._stage_env(),
                cwd=self._out_dir,
                max_output_bytes=MAX_STAGE_OUTPUT_BYTES,
                kill_grace_s=KILL_GRACE_S,
                on_stdout_line=lambda line: self._on_stage_line(stage, round_, line),
                cancel=cancel,
            )
        except SpawnError as exc:
            return f"failed: spawn error: cannot execute '{exc.filename}': {exc.strerror}"
        log = result.stdout + (b"\n--- stderr ---\n" + result.stderr if result.stderr else b"")
        log = scrub_bytes(log)  # what a stage or its programs print may hold a secret
        log_path = os.path.join(self._out_dir, log_file(stage, round_))
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        atomic_write(log_path, log, fsync=self._config.fsync)
        if result.cancelled:
            return None  # the tick sees stop_requested and records the cancel
        failure = _failure_message(result, timeout_s)
        if failure is not None:
            return failure
        for rel in required_outputs(stage, round_, self._config.run_unit_tests):
            path = os.path.join(self._out_dir, rel)
            if not os.path.isfile(path):
                return f"failed: invalid output: missing {rel}"
            if rel.endswith(".json") and not _is_json_object_file(path):
                return f"failed: invalid output: {rel} is not a JSON object"
        return None

    def _stage_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._config.to_env())
        env["OUT_DIR"] = self._out_dir
        env["HEIDI_PYTHON"] = self._python
        env["HEIDI_RUN_ID"] = self._run_id
        env.pop(faults.ENV, None)  # fault points target the runner, not its stages
        return env

    def _on_stage_line(self, stage: str, round_: int, line: str | bytes) -> None:
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                return  # not valid UTF-8: malformed, skipped like any bad line
        event = parse_heidi_line(line)
        if event is None:
            return
        with self._lock:
            self._append(
                event["event_type"],
                event["message"],
                stage=stage,
                level=event["level"],
                round_=round_,
                counters_delta=event["counters_delta"],
                usage_delta=event["usage_delta"],
                artifact_paths=event["artifact_paths"],
            )
            if faults.ARMED:
                faults.hit(f"stage_line.{stage}", self._out_dir)

    def _finish_stage(self, stage: str, round_: int, started: float, failure: str | None) -> None:
        """Journal the stage's end and take the transition it leads to (state lock held)."""
        if self._stop_requested:
            self._append("stage_end", "cancelled: stop requested", stage=stage, level="warn")
            self._stopped()
        elif failure is not None:
            self._append("stage_end", failure, stage=stage, level="error")
            self._append("pipeline_error", failure, level="error")
            self._state, self._last_error, self._paused = ERROR, failure, False
        else:
            self._stage_succeeded(stage, round_, started)
        self._write_state()
        if faults.ARMED:
            faults.hit(f"stage_committed.{stage}", self._out_dir)

    def _stage_succeeded(self, stage: str, round_: int, started: float) -> None:
        elapsed_ms = int((self._clock.monotonic() - started) * 1000)
        counters: dict[str, int] = {}
        artifacts: list[str] = []
        count_keys = stage_counters(stage, self._config.run_unit_tests)
        # A mock stage did not run: it has no outputs to count (docs/design.md).
        mock = self._config.mock_subprocesses
        for key in count_keys:
            rel = data_file(DATA_KIND_OF_COUNT[key], round_)
            lines = None if mock else count_lines(os.path.join(self._out_dir, rel))
            counters[key] = lines or 0
            if lines is not None:
                artifacts.append(rel)  # a data stage's artifacts are its counted files
        if not count_keys and not mock:
            artifacts = [
                rel
                for rel in stage_artifacts(stage, round_, self._config.run_unit_tests)
                if os.path.exists(os.path.join(self._out_dir, rel))
            ]
        self._counts.update(counters)
        self._append(
            "stage_end",
            f"ok in {elapsed_ms} ms",
            stage=stage,
            counters_delta=counters,
            artifact_paths=artifacts,
        )
        self._last_completed = (round_, stage)
        if faults.ARMED:
            faults.hit(f"stage_ended.{stage}", self._out_dir)
        if stage == "eval":
            self._round_evaluated(round_)
            return
        next_stage = self._stage_after(stage)
        if next_stage is None:
            self._state, self._stage = IDLE, None  # waiting for train-now
        else:
            self._state, self._stage = STATE_OF_STAGE[next_stage], next_stage

    def _round_evaluated(self, round_: int) -> None:
        if self._mode == "collect":
            self._append("train_now_complete", f"round {round_}")
        if round_ < self._config.rounds:
            self._enter_round(round_ + 1)
            return
        self._append("pipeline_complete", f"complete rounds={self._config.rounds}")
        self._state, self._stage, self._paused = IDLE, None, False

    @property
    def out_dir(self) -> str:
        return self._out_dir

    @property
    def run_id(self) -> str:
        return self._run_id

    def __repr__(self) -> str:
        return f"<Core {self._run_id} {self._out_dir}>"


def _is_head(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and _is_int64(value.get("seq"))
        and value["seq"] >= 0
        and isinstance(value.get("hash"), str)
    )


def _first_journal_run_id(journal_path: str) -> str | None:
    """The run id of an existing journal's first line (a state file may not exist yet)."""
    try:
        with open(journal_path, "rb") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return None
    try:
        run_id = json.loads(first)["run_id"]
    except (ValueError, KeyError, TypeError):
        return None
    return run_id if isinstance(run_id, str) else None
