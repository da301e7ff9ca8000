"""``heidi``: run and steer the loop from a terminal (SPEC §10).

Steering commands (status, train-now, pause, resume, stop, events, dashboard) talk to
the server of the run directory when one is running (``heidid`` or ``heidi serve``,
found through ``OUT_DIR/state/daemon.json``); otherwise they read the run's files or
leave a latch in ``OUT_DIR/control/`` that a ``heidi run`` on the same directory picks up.
Heavy modules (the engine backends, pyarrow, torch) are imported only by the commands
that need them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api.reports import EvalReports
from .errors import HeidiError, TransitionError
from .io import JsonlError
from .process import pid_alive

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
MODES = ("full", "collect")
BACKENDS = ("auto", "native", "python")
RUNNING_STATES = ("COLLECTING", "VALIDATING", "TESTING", "FINALIZING", "EVALUATING")
CONTROL_LATCHES = ("train_now", "pause", "stop")
EXPORT_FORMATS = ("jsonl", "parquet", "hf", "messages", "preference")
EXPORT_SOURCES = ("train", "tested", "clean")


class CliError(Exception):
    """A failure to report as ``heidi: error: ...`` with exit code 1."""


# ----- locating the run and its server ------------------------------------------------


def resolve_out_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("OUT_DIR") or "./heidi_out")


@dataclass(frozen=True)
class ServerInfo:
    server: str
    pid: int
    host: str
    port: int
    url: str
    token: str

    def request(self, method: str, path: str, body: dict | None = None,
                timeout: float = 10.0) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                       "Content-Length": str(len(payload))}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise CliError(f"cannot reach {self.server} at {self.url}: {exc}") from None
        finally:
            conn.close()
        ctype = response.getheader("Content-Type", "")
        return response.status, json.loads(raw) if ctype.startswith("application/json") else raw


def find_server(out_dir: Path) -> ServerInfo | None:
    """The running server of ``out_dir``, or None (no discovery file, or a stale one)."""
    try:
        info = json.loads((out_dir / "state" / "daemon.json").read_text(encoding="utf-8"))
        pid = int(info["pid"])
        if not pid_alive(pid):
            return None
        token = Path(info["token_file"]).read_text(encoding="utf-8").strip()
        return ServerInfo(str(info.get("server", "server")), pid, str(info["host"]),
                          int(info["port"]), str(info["url"]), token)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_state_file(out_dir: Path) -> dict:
    """The run's state file, checked as the Core checks it when it resumes the run."""
    from ._py.core import state_file_problem
    from ._py.jsonenc import nesting_exceeds

    path = out_dir / "state" / "run_state.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"no run in {out_dir} (no {path})") from None
    status, problem = None, "not valid JSON"
    if not nesting_exceeds(raw):
        try:
            status = json.loads(raw)
            problem = state_file_problem(status)
        except ValueError:
            pass
    if problem is not None:
        raise CliError(f"invalid state file {path}: {problem}")
    return status


def waiting_for_train_now(status: dict) -> bool:
    """The Core's own answer (run_state.json's ``waiting_for_train_now``)."""
    return status.get("waiting_for_train_now") is True


def describe_status(status: dict) -> str:
    state = status["state"]
    if waiting_for_train_now(status):
        state += " (waiting for train-now)"
    stage = status["stage"] or "-"
    last = status["last_completed"]
    lines = [
        f"run        {status['run_id']} ({status['mode']})",
        f"state      {state}",
        f"round      {status['current_round']}/{status['rounds_total']}   stage {stage}",
        "counts     " + "  ".join(f"{k.removesuffix('_lines')}={v}" for k, v in status["counts"].items()),
        "completed  " + (f"round {last['round']} {last['stage']}" if last else "-"),
        f"journal    seq {status['journal_head']['seq']}",
    ]
    if status.get("last_error"):
        lines.append(f"error      {status['last_error']}")
    return "\n".join(lines)


def describe_eval(rounds: list[dict]) -> list[str]:
    """The latest evaluation: test pass@1 with its 95% interval, the base model's, the dev
    score and the best adapter (no lines before the first evaluated round)."""
    latest = next((r for r in reversed(rounds) if r.get("pass_at_1") is not None), None)
    if latest is None:
        return []

    def score(value, low, high) -> str:
        if value is None:
            return "n/a"
        interval = f" (95% CI {low:.2f}-{high:.2f})" if low is not None and high is not None else ""
        return f"{value:.2f}{interval}"

    dev = latest.get("dev_pass_at_1")
    best = latest.get("best_round")
    return [
        f"test       round {latest['round']}: pass@1 "
        + score(latest["pass_at_1"], latest.get("pass_at_1_low"), latest.get("pass_at_1_high"))
        + ", base "
        + score(latest.get("baseline_pass_at_1"), latest.get("baseline_pass_at_1_low"),
                latest.get("baseline_pass_at_1_high"))
        + ("" if dev is None else f"; dev {dev:.2f}"),
        "best       " + (f"out_lora/round_{best}" if best is not None else "-"),
    ]


def describe_teacher_usage(usage: dict[str, int], cache_hits: int) -> str:
    """Teacher tokens paid for, their cost (with HEIDI_TEACHER_PRICE_* set) and cache hits."""
    text = (f"teacher    tokens prompt={usage.get('prompt_tokens', 0)} "
            f"completion={usage.get('completion_tokens', 0)}")
    if usage.get("cost_micros"):
        text += f"  cost={usage['cost_micros'] / 1e6:.6f}"
    return text + f"  cache_hits={cache_hits}"


# ----- progress display for `heidi run` -----------------------------------------------


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
        from .api.journal_index import TEACHER_USAGE

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
        stages = ["generate", "validate", "test", "train", "eval"]
        last = status.get("last_completed") or {}
        rounds_done = last.get("round", 0) - (0 if last.get("stage") == "eval" else 1)
        stage_done = 0
        if last.get("round") == status["current_round"] and last.get("stage") in stages:
            stage_done = stages.index(last["stage"]) + 1
        state = status["state"] + (" (waiting for train-now)" if waiting_for_train_now(status) else "")
        round_line = (f"rounds {self._bar(max(0, rounds_done), status['rounds_total'])} "
                      f"{max(0, rounds_done)}/{status['rounds_total']}")
        stage_line = (f"round {status['current_round']} {self._bar(stage_done, len(stages))} "
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


# ----- `heidi run` --------------------------------------------------------------------


def describe_failure(out_dir: Path, status: dict) -> str:
    """The run's error, with the stage that failed and where its output went."""
    stage, round_ = status.get("stage"), status.get("current_round")
    text = str(status.get("last_error"))
    if not stage:
        return text
    text = f"{stage} stage of round {round_}: {text}"
    log = out_dir / "logs" / f"{stage}_round_{round_}.log"
    if log.exists():
        text += f" (output: {log})"
    return text


class RunLoop:
    """Drives a Core to completion: a tick thread, control latches, signals, progress."""

    POLL_S = 0.2

    def __init__(self, core: Any, out_dir: Path, view: ProgressView) -> None:
        self.core = core
        self.out_dir = out_dir
        self.view = view
        self.control_dir = out_dir / "control"
        self.control_dir.mkdir(parents=True, exist_ok=True)  # where latches are dropped
        self._wake = threading.Event()
        self._done = threading.Event()
        self._interrupted = threading.Event()
        self._interrupts = 0
        self._stopped = False
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._tick_loop, name="heidi-run", daemon=True)

    def _tick_loop(self) -> None:
        try:
            while not self._done.is_set():
                self._wake.clear()
                if self.core.tick() in ("IDLE", "ERROR", "PAUSED"):
                    self._wake.wait(self.POLL_S)
        except BaseException as exc:
            self.failure = exc
            self._done.set()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                os._exit(130)  # a second Ctrl-C: leave at once
        self._interrupted.set()

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
                self._wake.set()
        except TransitionError:
            pass  # the state moved on meanwhile; the next poll decides again
        train_now = self.control_dir / "train_now"
        if train_now.exists():
            train_now.unlink(missing_ok=True)
            if self.core.train_now():
                self._wake.set()
            else:
                print(f"heidi: train-now refused: {self.core.last_refusal}", file=sys.stderr,
                      flush=True)

    def run(self) -> int:
        from .api.journal_index import JournalIndex

        journal = JournalIndex(self.out_dir / "journal" / "events.jsonl")
        since = journal.refresh().last_seq
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        announced_wait = False
        self._thread.start()
        try:
            while True:
                if self._interrupted.is_set():
                    self._interrupted.clear()
                    print("heidi: stopping (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
                    self._stop_core()
                status = json.loads(self.core.get_status_json())
                self._apply_latches(status)
                lines, since = journal.page(since, 1000)
                for line in lines:
                    self.view.note_event(json.loads(line))
                self.view.render(status)
                if self.failure is not None:
                    raise self.failure
                if status["state"] == "ERROR":
                    print(f"heidi: run failed: {describe_failure(self.out_dir, status)}",
                          file=sys.stderr)
                    return EXIT_FAILED
                if self._stopped and status["state"] == "IDLE":
                    return EXIT_OK
                if waiting_for_train_now(status):
                    if not announced_wait:
                        announced_wait = True
                        print(f"heidi: round {status['current_round']} collected; waiting for "
                              "train-now (`heidi train-now`) or stop (`heidi stop`)",
                              file=sys.stderr, flush=True)
                elif status["state"] == "IDLE" and not status["train_now_pending"]:
                    return EXIT_OK
                else:
                    announced_wait = False
                time.sleep(self.POLL_S)
        finally:
            self._done.set()
            self._wake.set()
            self._thread.join()
            self.core.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from . import backend as backend_mod

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


# ----- steering -----------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    out_dir = resolve_out_dir(args.out_dir)
    server = find_server(out_dir)
    if server is not None:
        code, status = server.request("GET", "/api/v1/status")
        if code != 200:
            raise CliError(f"{server.server} answered {code}: {status}")
    else:
        status = read_state_file(out_dir)
    if args.json:
        print(json.dumps(status, ensure_ascii=True, separators=(",", ":")))
    else:
        from .api.journal_index import JournalIndex

        source = f"{server.server} pid {server.pid}" if server else "state file (no server running)"
        journal = JournalIndex(out_dir / "journal" / "events.jsonl").refresh()
        lines = [describe_status(status)]
        if any(journal.teacher_usage.values()) or journal.teacher_cache_hits:
            lines.append(describe_teacher_usage(journal.teacher_usage, journal.teacher_cache_hits))
        lines += describe_eval(EvalReports(out_dir).rounds())
        print("\n".join(lines) + f"\nsource     {source}")
    return EXIT_OK


ACTION_LATCH = {"train_now": "train_now", "pause": "pause", "stop": "stop"}


def cmd_action(args: argparse.Namespace) -> int:
    action: str = args.action
    out_dir = resolve_out_dir(args.out_dir)
    server = find_server(out_dir)
    if server is not None:
        code, reply = server.request("POST", f"/api/v1/action/{action}")
        if code == 202:
            print(f"{action.replace('_', '-')}: accepted by {server.server} (pid {server.pid})")
            return EXIT_OK
        message = reply.get("error") if isinstance(reply, dict) else reply
        print(f"heidi: {action.replace('_', '-')} refused: {message}", file=sys.stderr)
        return EXIT_FAILED
    control = out_dir / "control"
    if not (out_dir / "state").is_dir():
        raise CliError(f"no run in {out_dir}")
    control.mkdir(parents=True, exist_ok=True)
    if action == "resume":
        latch = control / "pause"
        if not latch.exists():
            print("heidi: resume: not paused (no control/pause latch)", file=sys.stderr)
            return EXIT_FAILED
        latch.unlink()
        print("resume: removed control/pause; `heidi run` resumes at its next poll")
        return EXIT_OK
    latch = control / ACTION_LATCH[action]
    latch.touch()
    print(f"{action.replace('_', '-')}: no server running; wrote {latch} "
          "(a `heidi run` on this directory acts on it)")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from . import backend as backend_mod

    out_dir = resolve_out_dir(args.out_dir)
    result = backend_mod.load(args.backend).verify_journal(str(out_dir))
    if result.ok:
        print(f"journal ok: {result.lines} lines")
        return EXIT_OK
    print(f"journal BAD at line {result.first_bad_line}: {result.reason}")
    return EXIT_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import ServeOptions, serve

    options = ServeOptions(
        out_dir=resolve_out_dir(args.out_dir), host=args.host, port=args.port,
        token_file=Path(args.token_file) if args.token_file else None, mode=args.mode,
        start=not args.no_start, config_file=args.config, log_requests=args.log_requests)
    return serve(options)


def cmd_dashboard(args: argparse.Namespace) -> int:
    out_dir = resolve_out_dir(args.out_dir)
    server = find_server(out_dir)
    if server is None:
        raise CliError(f"no server running for {out_dir}; start one with "
                       f"`heidid --out-dir {out_dir}` or `heidi serve --out-dir {out_dir}`")
    url = f"{server.url}#token={server.token}"
    if args.print_url:
        print(url)
        return EXIT_OK
    import webbrowser

    if not webbrowser.open(url):
        print(url)
    return EXIT_OK


def _format_event(event: dict) -> str:
    return (f"{event['seq']:>6} {event['ts']} r{event['round']} {event['stage']:<8} "
            f"{event['level']:<5} {event['event_type']}: {event['message']}")


def cmd_events(args: argparse.Namespace) -> int:
    out_dir = resolve_out_dir(args.out_dir)
    server = find_server(out_dir)
    journal = None
    if server is None:
        from .api.journal_index import JournalIndex

        path = out_dir / "journal" / "events.jsonl"
        if not path.exists() and not args.follow:
            raise CliError(f"no journal in {out_dir}")
        journal = JournalIndex(path)
    since, remaining = args.since, args.limit
    try:
        while True:
            page = 1000 if remaining is None else min(1000, remaining)
            if page == 0:
                return EXIT_OK
            if server is not None:
                code, reply = server.request("GET", f"/api/v1/events?since={since}&limit={page}")
                if code != 200:
                    raise CliError(f"{server.server} answered {code}: {reply}")
                events, since = reply["events"], reply["next_since"]
                lines = [json.dumps(e, ensure_ascii=True, separators=(",", ":")) for e in events]
            else:
                raw, since = journal.page(since, page)
                try:
                    lines = [line.decode() for line in raw]
                    events = [json.loads(line) for line in lines]
                except (ValueError, RecursionError):
                    raise CliError(f"invalid journal {journal.path}: an event is not valid "
                                   "JSON (`heidi verify` names the line)") from None
            for line, event in zip(lines, events):
                print(line if args.json else _format_event(event), flush=True)
            if remaining is not None:
                remaining -= len(events)
            if not events:
                if not args.follow:
                    return EXIT_OK
                time.sleep(0.5)
    except KeyboardInterrupt:
        return EXIT_OK


# ----- export -------------------------------------------------------------------------


def _rounds_with(out_dir: Path, kind: str) -> list[int]:
    rounds = []
    for path in (out_dir / "data").glob(f"{kind}_round_*.jsonl"):
        suffix = path.stem.removeprefix(f"{kind}_round_")
        if suffix.isdigit():
            rounds.append(int(suffix))
    return sorted(rounds)


def export_splits(out_dir: Path, source: str, rounds: Sequence[int] | None) -> dict[str, list[dict]]:
    """Split name -> rows, from ``data/<kind>_round_N.jsonl`` of the chosen rounds."""
    from .io import read_jsonl

    kinds = {"train": ("train", "val"), "tested": ("tested",), "clean": ("clean",)}[source]
    split_names = {"train": "train", "val": "validation", "tested": "train", "clean": "train"}
    splits: dict[str, list[dict]] = {}
    for kind in kinds:
        available = _rounds_with(out_dir, kind)
        chosen = available if rounds is None else [r for r in available if r in rounds]
        rows: list[dict] = []
        for round_no in chosen:
            rows.extend(read_jsonl(out_dir / "data" / f"{kind}_round_{round_no}.jsonl"))
        splits[split_names[kind]] = rows
    if not any(splits.values()):
        raise CliError(f"nothing to export: no {'/'.join(kinds)} files in {out_dir / 'data'}"
                       + (f" for rounds {list(rounds)}" if rounds else ""))
    return splits


def _flatten_for_columns(rows: list[dict]) -> list[dict]:
    # `metadata` differs by task source; as JSON text every row shares one column type.
    return [{k: (json.dumps(v, ensure_ascii=False) if k == "metadata" else v) for k, v in row.items()}
            for row in rows]


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(_flatten_for_columns(rows)), path)


def answer_code(sample: dict) -> str:
    """The whole program an answer stands for: the task's prompt and the completion."""
    return str(sample.get("prompt", "")) + str(sample.get("completion", ""))


def as_messages(sample: dict) -> dict:
    """A sample as a chat: the system prompt, the instruction, the answer in a code block."""
    from .prompts import chat_messages

    code = answer_code(sample).rstrip()
    return {"id": sample.get("id"), "task_id": sample.get("task_id"),
            "messages": [*chat_messages(str(sample.get("instruction", ""))),
                         {"role": "assistant", "content": f"```python\n{code}\n```"}]}


def preference_pairs(out_dir: Path, rounds: Sequence[int] | None) -> list[dict]:
    """(prompt, chosen, rejected) from passing (tested) and failing (test_failed with
    reason test_failed) answers to the same task; each failing answer is paired once, with
    the task's passing answers in turn."""
    from .io import read_jsonl

    def rows(kind: str) -> list[dict]:
        chosen = [r for r in _rounds_with(out_dir, kind) if rounds is None or r in rounds]
        return [row for r in chosen for row in read_jsonl(out_dir / "data" / f"{kind}_round_{r}.jsonl")]

    passing: dict[str, list[dict]] = {}
    for row in rows("tested"):
        passing.setdefault(str(row.get("task_id")), []).append(row)
    pairs = []
    taken: dict[str, int] = {}
    for row in rows("test_failed"):
        task = str(row.get("task_id"))
        if row.get("reject_reason") != "test_failed" or task not in passing:
            continue
        good = passing[task][taken.get(task, 0) % len(passing[task])]
        taken[task] = taken.get(task, 0) + 1
        pairs.append({"task_id": task, "prompt": str(good.get("instruction", "")),
                      "chosen": answer_code(good), "rejected": answer_code(row),
                      "rejected_test_result": row.get("test_result")})
    if not pairs:
        raise CliError(f"nothing to export: no task in {out_dir / 'data'} has both a passing "
                       "(tested) and a failing (test_failed) answer"
                       + (f" in rounds {list(rounds)}" if rounds else ""))
    return pairs


def cmd_export(args: argparse.Namespace) -> int:
    from .io import scrub_values, write_jsonl_atomic, write_text_atomic

    out_dir = resolve_out_dir(args.out_dir)
    rounds = [int(r) for r in args.rounds.split(",")] if args.rounds else None
    target = Path(args.output)
    if args.format == "preference":
        pairs = preference_pairs(out_dir, rounds)
        target.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(target / "preference.jsonl", pairs)
        print(f"{target / 'preference.jsonl'}: {len(pairs)} rows")
        return EXIT_OK
    splits = export_splits(out_dir, args.source, rounds)
    splits = {split: scrub_values(rows) for split, rows in splits.items()}  # every format
    target.mkdir(parents=True, exist_ok=True)
    written = []
    if args.format == "messages":
        for split, rows in splits.items():
            write_jsonl_atomic(target / f"{split}.jsonl", [as_messages(r) for r in rows])
            written.append((target / f"{split}.jsonl", len(rows)))
    elif args.format == "jsonl":
        for split, rows in splits.items():
            write_jsonl_atomic(target / f"{split}.jsonl", rows)
            written.append((target / f"{split}.jsonl", len(rows)))
    elif args.format == "parquet":
        for split, rows in splits.items():
            _write_parquet(rows, target / f"{split}.parquet")
            written.append((target / f"{split}.parquet", len(rows)))
    else:
        # The Hugging Face Hub dataset layout: `datasets.load_dataset(DIR)` reads it.
        data_dir = target / "data"
        data_dir.mkdir(exist_ok=True)
        files_yaml = []
        for split, rows in splits.items():
            if not rows:
                continue
            path = data_dir / f"{split}-00000-of-00001.parquet"
            _write_parquet(rows, path)
            written.append((path, len(rows)))
            files_yaml.append(f"  - split: {split}\n    path: data/{split}-*.parquet")
        card = ("---\nconfigs:\n- config_name: default\n  data_files:\n" + "\n".join(files_yaml)
                + "\n---\n\n# Heidi Engine dataset\n\nExported by `heidi export` from "
                f"`{args.source}` files of run directory `{out_dir.name}`.\n")
        write_text_atomic(target / "README.md", card)
    for path, count in written:
        print(f"{path}: {count} rows")
    return EXIT_OK


# ----- doctor -------------------------------------------------------------------------


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def doctor_report() -> dict[str, Any]:
    from . import backend as backend_mod
    from .api.launcher import find_heidid

    native_error = backend_mod.native_import_error()
    try:
        selected = backend_mod.load().name
    except (ImportError, HeidiError) as exc:
        selected = f"unavailable: {exc}"
    report: dict[str, Any] = {
        "backend": selected,
        "heidi_backend_env": os.environ.get("HEIDI_BACKEND", "auto"),
        "heidi_cpp": "importable" if native_error is None else f"not importable: {native_error}",
        "heidid": find_heidid(),
        "python": sys.version.split()[0],
        "packages": {name: _package_version(name) for name in (
            "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "tensorboard",
            "safetensors", "gguf", "datasketch", "pyarrow")},
    }
    cuda: dict[str, Any] = {"available": False}
    if report["packages"]["torch"]:
        try:
            import torch

            cuda["available"] = bool(torch.cuda.is_available())
            if cuda["available"]:
                cuda["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception as exc:  # a broken torch install is worth reporting, not crashing on
            cuda["error"] = f"{type(exc).__name__}: {exc}"
    report["cuda"] = cuda
    report["qlora"] = bool(cuda["available"] and report["packages"]["bitsandbytes"])
    try:
        from .ml.trainer import training_paths

        report["training"] = training_paths()
    except Exception as exc:
        report["training"] = {"error": {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}}
    try:
        from . import sandbox

        report["sandbox"] = sandbox.describe()
    except Exception as exc:
        report["sandbox"] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"backend        {report['backend']} (HEIDI_BACKEND={report['heidi_backend_env']})")
    print(f"heidi_cpp      {report['heidi_cpp']}")
    print(f"heidid         {report['heidid'] or 'not found (HEIDID, beside heidi_cpp, the scripts directory, PATH)'}")
    print(f"python         {report['python']}")
    for name, version in report["packages"].items():
        print(f"{name:<14} {version or 'not installed'}")
    cuda = report["cuda"]
    print(f"cuda           {'available: ' + ', '.join(cuda.get('devices', [])) if cuda['available'] else 'not available'}"
          + (f" ({cuda['error']})" if "error" in cuda else ""))
    print(f"qlora (4-bit)  {'yes' if report['qlora'] else 'no (needs CUDA and bitsandbytes; LoRA is used)'}")
    for name, path in report["training"].items():
        print(f"train {name:<10}{'yes' if path['ok'] else 'no '} {path['detail']}")
    sandbox = report["sandbox"]
    if sandbox.get("isolation") is None:
        print(f"sandbox        REFUSES to run tests ({sandbox.get('error', 'unknown')})")
    else:
        print(f"sandbox        {sandbox['isolation']} (HEIDI_SANDBOX={sandbox['level']}), network "
              f"isolated: {'yes' if sandbox['network_isolated'] else 'no'}, filesystem: "
              f"{sandbox['filesystem']}, runs as {sandbox['runs_as']}")
    return EXIT_OK


# ----- argument model -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heidi", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, **kwargs)
        p.add_argument("--out-dir", help="run directory (default: $OUT_DIR or ./heidi_out)")
        return p

    def positive_int(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"invalid value {text!r} (expected an integer >= 1)")
        return int(text)

    def non_negative_int(text: str) -> int:
        if not text.isdigit():
            raise argparse.ArgumentTypeError(f"invalid value {text!r} (expected an integer >= 0)")
        return int(text)

    def port(text: str) -> int:
        if not text.isdigit() or int(text) > 65535:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r} (expected an integer 0..65535; 0 picks a free port)")
        return int(text)

    p = command("run", "run the loop here until it completes, fails or is stopped")
    p.add_argument("--mode", choices=MODES, help="pipeline mode (default: $PIPELINE_MODE or full)")
    p.add_argument("--rounds", type=positive_int)
    p.add_argument("--samples-per-round", type=positive_int)
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--backend", choices=BACKENDS, help="engine backend (default: $HEIDI_BACKEND)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--no-cache", action="store_true",
                   help="ask the teacher again even for answers in the response cache "
                        "(HEIDI_TEACHER_CACHE=0)")
    p.set_defaults(func=cmd_run)

    p = command("status", "show the run state")
    p.add_argument("--json", action="store_true", help="print run_state.json as one JSON line")
    p.set_defaults(func=cmd_status)

    for name, action, text in (("train-now", "train_now", "train on the collected round now"),
                               ("pause", "pause", "pause at the next stage boundary"),
                               ("resume", "resume", "resume a paused run"),
                               ("stop", "stop", "stop the run (cancels a running stage)")):
        p = command(name, text)
        p.set_defaults(func=cmd_action, action=action)

    p = command("verify", "verify the event journal's hash chain")
    p.add_argument("--backend", choices=BACKENDS)
    p.set_defaults(func=cmd_verify)

    p = command("serve", "serve the run over HTTP from Python (the twin of heidid)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=7779)
    p.add_argument("--token-file", help="default: OUT_DIR/state/daemon.token")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--no-start", action="store_true", help="serve without starting the run")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--log-requests", action="store_true",
                   help="log method, path and status of each request (never headers)")
    p.set_defaults(func=cmd_serve)

    p = command("dashboard", "open the live dashboard of the running server")
    p.add_argument("--print", dest="print_url", action="store_true",
                   help="print the URL (it contains the token) instead of opening a browser")
    p.set_defaults(func=cmd_dashboard)

    p = command("events", "print journal events")
    p.add_argument("--since", type=non_negative_int, default=0, help="events after this seq")
    p.add_argument("--limit", type=non_negative_int, help="at most this many events")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--json", action="store_true", help="raw journal lines")
    p.set_defaults(func=cmd_events)

    p = command("export", "export the dataset (JSONL, Parquet, Hugging Face datasets layout, "
                          "chat messages, or preference pairs)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl",
                   help="messages: chat `messages` JSONL; preference: prompt/chosen/rejected "
                        "pairs from tested and test_failed answers to the same task")
    p.add_argument("--source", choices=EXPORT_SOURCES, default="train",
                   help="train: the train/val split (default); tested or clean: those files")
    p.add_argument("--rounds", help="comma-separated rounds (default: all)")
    p.add_argument("--output", "-o", required=True, help="output directory")
    p.set_defaults(func=cmd_export)

    p = command("doctor", "show backends, model libraries, accelerators and sandbox isolation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "events" and args.follow and args.limit is not None:
        parser.error("argument --follow: not allowed with --limit (valid: one of them)")
    if args.command == "export" and args.rounds is not None:
        parts = args.rounds.split(",")
        if not all(p.isdigit() and int(p) >= 1 for p in parts):
            parser.error(f"argument --rounds: invalid value {args.rounds!r} "
                         "(expected comma-separated integers >= 1, e.g. 1,2)")
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"heidi: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (HeidiError, ImportError, JsonlError) as exc:
        print(f"heidi: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # an unreadable or unwritable file of the run: name it, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"heidi: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
