"""The ``heidi`` command line: subcommands, their options, and how a failure is reported."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import HeidiError
from ..io import JsonlError
from ..run_layout import MODES
from . import client, doctor, export, run
from .errors import EXIT_FAILED, EXIT_OK, CliError

DESCRIPTION = "``heidi``: run and steer the loop from a terminal (SPEC §10)."
BACKENDS = ("auto", "native", "python")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heidi", description=DESCRIPTION)
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
    p.set_defaults(func=run.cmd_run)

    p = command("status", "show the run state")
    p.add_argument("--json", action="store_true", help="print run_state.json as one JSON line")
    p.set_defaults(func=client.cmd_status)

    for name, action, text in (("train-now", "train_now", "train on the collected round now"),
                               ("pause", "pause", "pause at the next stage boundary"),
                               ("resume", "resume", "resume a paused run"),
                               ("stop", "stop", "stop the run (cancels a running stage)")):
        p = command(name, text)
        p.set_defaults(func=client.cmd_action, action=action)

    p = command("verify", "verify the event journal's hash chain")
    p.add_argument("--backend", choices=BACKENDS)
    p.set_defaults(func=client.cmd_verify)

    p = command("serve", "serve the run over HTTP from Python (the twin of heidid)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=7779)
    p.add_argument("--token-file", help="default: OUT_DIR/state/daemon.token")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--no-start", action="store_true", help="serve without starting the run")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--log-requests", action="store_true",
                   help="log method, path and status of each request (never headers)")
    p.set_defaults(func=client.cmd_serve)

    p = command("dashboard", "open the live dashboard of the running server")
    p.add_argument("--print", dest="print_url", action="store_true",
                   help="print the URL (it contains the token) instead of opening a browser")
    p.set_defaults(func=client.cmd_dashboard)

    p = command("events", "print journal events")
    p.add_argument("--since", type=non_negative_int, default=0, help="events after this seq")
    p.add_argument("--limit", type=non_negative_int, help="at most this many events")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--json", action="store_true", help="raw journal lines")
    p.set_defaults(func=client.cmd_events)

    p = command("export", "export the dataset (JSONL, Parquet, Hugging Face datasets layout, "
                          "chat messages, or preference pairs)")
    p.add_argument("--format", choices=export.FORMATS, default="jsonl",
                   help="messages: chat `messages` JSONL; preference: prompt/chosen/rejected "
                        "pairs from tested and test_failed answers to the same task")
    p.add_argument("--source", choices=export.SOURCES, default="train",
                   help="train: the train/val split (default); tested or clean: those files")
    p.add_argument("--rounds", help="comma-separated rounds (default: all)")
    p.add_argument("--output", "-o", required=True, help="output directory")
    p.set_defaults(func=export.cmd_export)

    p = command("doctor", "show backends, model libraries, accelerators and sandbox isolation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=doctor.cmd_doctor)
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
    except (CliError, HeidiError, ImportError, JsonlError) as exc:
        print(f"heidi: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # an unreadable or unwritable file of the run: name it, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"heidi: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
