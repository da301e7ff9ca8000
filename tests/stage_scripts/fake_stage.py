"""A stand-in stage program for Core tests (used through HEIDI_STAGE_CMD_<STAGE>).

    fake_stage.py STAGE [options] --round N --out-dir DIR

Writes the outputs the Core requires of STAGE (a few JSONL lines each), prints ``@heidi``
progress lines, and can misbehave on request: exit non-zero, sleep, skip or corrupt its
output, or leave a grandchild in its process group.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

LINES = {"raw": 5, "clean": 4, "rejected": 1, "tested": 3, "test_failed": 1, "train": 2, "val": 1}

# Progress messages that exercise the journal's escaping (golden files depend on them).
TRICKY_MESSAGES = (
    'quote " backslash \\ slash /',
    "caf\u00e9 \u65e5\u672c \U0001f600",
    "ctl \x01\x1f tab\tnl\nend \x7f",
    "leaked api_key=hunter2hunter2 and sk-abcdefghijklmnopqrstuvwxyz0123",
)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def heidi(payload: dict) -> None:
    sys.stdout.write("@heidi " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def write_jsonl(out_dir: str, kind: str, round_: int) -> None:
    path = os.path.join(out_dir, "data", f"{kind}_round_{round_}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(LINES[kind]):
            handle.write(json.dumps({"id": f"{kind}-{round_}-{index}"}) + "\n")


def write_json(out_dir: str, rel: str, value: object) -> None:
    path = os.path.join(out_dir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(value if isinstance(value, str) else json.dumps(value))


def write_outputs(stage: str, round_: int, out_dir: str, bad_json: bool) -> None:
    tests_on = os.environ.get("RUN_UNIT_TESTS", "1") == "1"
    if stage == "generate":
        kinds = ["raw"]
    elif stage == "validate":
        kinds = ["clean", "rejected"] + ([] if tests_on else ["train", "val"])
    elif stage == "test":
        kinds = ["tested", "test_failed", "train", "val"]
    else:
        kinds = []
    for kind in kinds:
        write_jsonl(out_dir, kind, round_)
    if stage == "train":
        write_json(out_dir, f"out_lora/round_{round_}/metrics.json",
                   "[1, 2]" if bad_json else {"steps": 1})
    if stage == "eval":
        write_json(out_dir, f"eval/report_round_{round_}.json",
                   "not json" if bad_json else {"round": round_})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage")
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--skip-output", action="store_true")
    parser.add_argument("--bad-json", action="store_true")
    parser.add_argument("--tricky", action="store_true", help="print escaping-heavy progress")
    parser.add_argument("--raw", action="append", default=[], help="print this stdout line")
    parser.add_argument("--fail-once", metavar="MARKER", help="exit 5 unless MARKER exists")
    parser.add_argument("--grandchild-pid-file", help="start a sleeping grandchild, write its pid")
    args = parser.parse_args()

    if args.fail_once and not os.path.exists(args.fail_once):
        open(args.fail_once, "w").close()
        heidi({"event_type": "progress", "message": "failing once", "level": "warn"})
        return 5
    heidi({"event_type": "progress", "message": f"{args.stage} working",
           "counters_delta": {"items": args.round}})
    for line in args.raw:
        print(line, flush=True)
    if args.tricky:
        for index, message in enumerate(TRICKY_MESSAGES):
            heidi({"message": message, "level": "debug", "usage_delta": {"tokens": index},
                   "artifact_paths": [f"data/x_{index}.jsonl"]})
        # Lines both Cores skip: lone surrogates (not Unicode), nesting beyond the limit of
        # 64; and one nested exactly to the limit, which is journaled.
        heidi({"message": "lone high \ud800 surrogate"})
        heidi({"message": "lone low surrogate", "extra": ["\udfff"]})
        heidi({"message": "nested too deeply", "extra": nested(64)})
        heidi({"message": "nested at the limit", "extra": nested(63)})
    print(f"{args.stage} stderr note", file=sys.stderr, flush=True)
    if args.grandchild_pid_file:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        with open(args.grandchild_pid_file, "w") as handle:
            handle.write(str(child.pid))
    if args.sleep:
        heidi({"event_type": "progress", "message": "sleeping"})
        time.sleep(args.sleep)
    if not args.skip_output:
        write_outputs(args.stage, args.round, args.out_dir, args.bad_json)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
