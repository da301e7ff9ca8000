"""The commands that steer a run and read it: status, train-now, pause, resume, stop,
verify, serve, dashboard, events.

They talk to the server of the run directory when one is running (``heidid`` or ``heidi
serve``, found through its discovery file ``OUT_DIR/state/daemon.json``); otherwise they
read the run's files or leave a latch in ``OUT_DIR/control/`` that a ``heidi run`` on the
same directory picks up.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._py.jsonenc import dumps, nesting_exceeds
from ..process import pid_alive
from ..run_layout import CONTROL_DIR, CONTROL_LATCHES, JOURNAL_FILE, RUN_STATE_FILE, STATE_DIR
from ..server.eval_reports import EvalReports
from ..server.journal_index import JournalIndex
from ..server.main import discovery_path, read_token_file
from .errors import EXIT_FAILED, EXIT_OK, CliError


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
            payload = dumps(body).encode() if body is not None else b""
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
        info = json.loads(discovery_path(out_dir).read_text(encoding="utf-8"))
        pid = int(info["pid"])
        if not pid_alive(pid):
            return None
        token = read_token_file(info["token_file"])
        return ServerInfo(str(info.get("server", "server")), pid, str(info["host"]),
                          int(info["port"]), str(info["url"]), token)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_state_file(out_dir: Path) -> dict:
    """The run's state file, checked as the Core checks it when it resumes the run."""
    from .._py.core import state_file_problem

    path = out_dir / RUN_STATE_FILE
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
        print(dumps(status))
    else:
        source = f"{server.server} pid {server.pid}" if server else "state file (no server running)"
        journal = JournalIndex(out_dir / JOURNAL_FILE).refresh()
        lines = [describe_status(status)]
        if any(journal.teacher_usage.values()) or journal.teacher_cache_hits:
            lines.append(describe_teacher_usage(journal.teacher_usage, journal.teacher_cache_hits))
        lines += describe_eval(EvalReports(out_dir).rounds())
        print("\n".join(lines) + f"\nsource     {source}")
    return EXIT_OK


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
    control = out_dir / CONTROL_DIR
    if not (out_dir / STATE_DIR).is_dir():
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
    assert action in CONTROL_LATCHES, action
    latch = control / action
    latch.touch()
    print(f"{action.replace('_', '-')}: no server running; wrote {latch} "
          "(a `heidi run` on this directory acts on it)")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from .. import backend as backend_mod

    out_dir = resolve_out_dir(args.out_dir)
    result = backend_mod.load(args.backend).verify_journal(str(out_dir))
    if result.ok:
        print(f"journal ok: {result.lines} lines")
        return EXIT_OK
    print(f"journal BAD at line {result.first_bad_line}: {result.reason}")
    return EXIT_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    from ..server import ServeOptions, serve

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
        path = out_dir / JOURNAL_FILE
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
                lines = [dumps(e) for e in events]
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
