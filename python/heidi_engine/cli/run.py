"""``heidi run``: drive the loop here until it completes, fails or is stopped.

The Core is ticked by the same :class:`~heidi_engine.server.engine_runner.EngineRunner` as
in ``heidi serve``; this loop adds what a terminal needs: the ``control/`` latches that
steer a run with no server, Ctrl-C, and the progress display.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import TransitionError
from ..process import StopSignals
from ..run_layout import CONTROL_DIR, ERROR, IDLE, JOURNAL_FILE, RUNNING_STATES, STAGES, log_file
from ..server.engine_runner import EngineRunner
from ..server.journal_index import TEACHER_USAGE, JournalIndex
from .client import describe_teacher_usage, find_server, waiting_for_train_now
from .errors import EXIT_FAILED, EXIT_OK, CliError


class ProgressView:
    """Round and stage bars redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_key: tuple | None = None
        self._last_message = ""
        self._drawn_lines = 0
        self.teacher_usage: dict[str, int] = {}
        self.cache_hits = 0

    def note_event(self, event: dict) -> None:
        if event.get("event_type") in ("progress", "stage_end", "stage_start"):
            self._last_message = f"{event['stage']}: {event['message']}"
        for name, value in (event.get("usage_delta") or {}).items():
            if name in TEACHER_USAGE:
                self.teacher_usage[name] = self.teacher_usage.get(name, 0) + value
        self.cache_hits += (event.get("counters_delta") or {}).get("teacher_cache_hits", 0)

    @staticmethod
    def _bar(done: int, total: int, width: int = 24) -> str:
        filled = 0 if total <= 0 else min(width, round(width * done / total))
        return "[" + "#" * filled + "-" * (width - filled) + "]"

    def render(self, status: dict) -> None:
        if not self.enabled:
            return
        last = status.get("last_completed") or {}
        rounds_done = last.get("round", 0) - (0 if last.get("stage") == "eval" else 1)
        stage_done = 0
        if last.get("round") == status["current_round"] and last.get("stage") in STAGES:
            stage_done = STAGES.index(last["stage"]) + 1
        state = status["state"] + (" (waiting for train-now)" if waiting_for_train_now(status) else "")
        round_line = (f"rounds {self._bar(max(0, rounds_done), status['rounds_total'])} "
                      f"{max(0, rounds_done)}/{status['rounds_total']}")
        stage_line = (f"round {status['current_round']} {self._bar(stage_done, len(STAGES))} "
                      f"{status['stage'] or '-':<9} {state}")
        counts = "  ".join(f"{k.removesuffix('_lines')} {v}" for k, v in status["counts"].items() if v)
        if self.tty:
            lines = [round_line, stage_line, counts, self._last_message[:120]]
            if self.teacher_usage or self.cache_hits:
                lines.insert(3, describe_teacher_usage(self.teacher_usage, self.cache_hits))
            out = ("\x1b[F" * self._drawn_lines) + "".join(f"\x1b[2K{line}\n" for line in lines)
            self._drawn_lines = len(lines)
            self.stream.write(out)
            self.stream.flush()
            return
        key = (status["state"], status["current_round"], status["stage"], status["paused"])
        if key != self._last_key:
            self._last_key = key
            self.stream.write(f"{stage_line} | {round_line}\n")
            self.stream.flush()


def describe_failure(out_dir: Path, status: dict) -> str:
    """The run's error, with the stage that failed and where its output went."""
    stage, round_ = status.get("stage"), status.get("current_round")
    text = str(status.get("last_error"))
    if not stage:
        return text
    text = f"{stage} stage of round {round_}: {text}"
    log = out_dir / log_file(stage, round_)
    if log.exists():
        text += f" (output: {log})"
    return text


class RunLoop:
    """Drives a Core to completion: the engine runner's tick thread, control latches,
    signals, progress."""

    POLL_S = 0.2

    def __init__(self, core: Any, out_dir: Path, view: ProgressView) -> None:
        self.core = core
        self.out_dir = out_dir
        self.view = view
        self.control_dir = out_dir / CONTROL_DIR
        self.control_dir.mkdir(parents=True, exist_ok=True)  # where latches are dropped
        self.runner = EngineRunner(core, idle_poll_s=self.POLL_S)
        self._stopped = False

    def _stop_core(self) -> None:
        try:
            self.core.stop()  # cancels a running stage; the tick records it
        except TransitionError:
            pass  # nothing to stop (already idle)
        self._stopped = True

    def _apply_latches(self, status: dict) -> None:
        """Act on ``control/`` latches: train_now and stop are consumed, pause is a level."""
        stop = self.control_dir / "stop"
        if stop.exists():
            stop.unlink(missing_ok=True)
            print("heidi: stop requested (control/stop)", file=sys.stderr, flush=True)
            self._stop_core()
        pause_wanted = (self.control_dir / "pause").exists()
        try:
            if pause_wanted and not status["paused"] and (
                    status["state"] in RUNNING_STATES or waiting_for_train_now(status)):
                self.core.pause()
            elif not pause_wanted and status["paused"]:
                self.core.resume()
                self.runner.wake()
        except TransitionError:
            pass  # the state moved on meanwhile; the next poll decides again
        train_now = self.control_dir / "train_now"
        if train_now.exists():
            train_now.unlink(missing_ok=True)
            if self.core.train_now():
                self.runner.wake()
            else:
                print(f"heidi: train-now refused: {self.core.last_refusal}", file=sys.stderr,
                      flush=True)

    def run(self) -> int:
        journal = JournalIndex(self.out_dir / JOURNAL_FILE)
        since = journal.refresh().last_seq
        with StopSignals() as signals:
            announced_wait = False
            self.runner.start()
            try:
                while True:
                    if signals.requested.is_set():
                        signals.requested.clear()
                        print("heidi: stopping (Ctrl-C again to quit at once)", file=sys.stderr,
                              flush=True)
                        self._stop_core()
                    status = json.loads(self.core.get_status_json())
                    self._apply_latches(status)
                    lines, since = journal.page(since, 1000)
                    for line in lines:
                        self.view.note_event(json.loads(line))
                    self.view.render(status)
                    if self.runner.failure is not None:
                        raise self.runner.failure
                    if status["state"] == ERROR:
                        print(f"heidi: run failed: {describe_failure(self.out_dir, status)}",
                              file=sys.stderr)
                        return EXIT_FAILED
                    if self._stopped and status["state"] == IDLE:
                        return EXIT_OK
                    if waiting_for_train_now(status):
                        if not announced_wait:
                            announced_wait = True
                            print(f"heidi: round {status['current_round']} collected; waiting "
                                  "for train-now (`heidi train-now`) or stop (`heidi stop`)",
                                  file=sys.stderr, flush=True)
                    elif status["state"] == IDLE and not status["train_now_pending"]:
                        return EXIT_OK
                    else:
                        announced_wait = False
                    time.sleep(self.POLL_S)
            finally:
                # The loop leaves with the run at rest (or on an error of its own): nothing
                # to cancel, a stage still running is waited for.
                self.runner.shutdown(cancel_stage=False)


def cmd_run(args: argparse.Namespace) -> int:
    from .. import backend as backend_mod

    engine = backend_mod.load(args.backend)
    overrides: dict[str, Any] = {}
    if args.out_dir:
        overrides["out_dir"] = args.out_dir
    if args.mode:
        overrides["pipeline_mode"] = args.mode
    if args.rounds is not None:
        overrides["rounds"] = args.rounds
    if args.samples_per_round is not None:
        overrides["samples_per_round"] = args.samples_per_round
    if args.config:
        overrides["config_file"] = args.config
    if args.no_cache:
        overrides["teacher_cache"] = "0"
    config = engine.Config.from_env(**overrides)
    out_dir = Path(config.out_dir)
    server = find_server(out_dir)
    if server is not None:
        raise CliError(f"{server.server} (pid {server.pid}) is running {out_dir}; steer it with "
                       "`heidi status/train-now/pause/resume/stop`, or stop it first")
    core = engine.Core(config)
    status = json.loads(core.get_status_json())
    if not waiting_for_train_now(status):
        try:
            core.start(config.pipeline_mode)
        except TransitionError as exc:
            core.shutdown()
            if str(exc).startswith("run complete"):
                print(f"heidi: {exc}; nothing to do (raise ROUNDS to extend it)")
                return EXIT_OK
            raise
    view = ProgressView(enabled=not args.quiet)
    return RunLoop(core, out_dir, view).run()
