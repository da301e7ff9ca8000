"""The stand-in stage program of the tests (used through HEIDI_STAGE_CMD_<STAGE>).

    fake_stage.py STAGE [options] --round N --out-dir DIR

Writes the outputs the Core requires of STAGE and prints ``@heidi`` progress. By default
the outputs are a few JSONL lines per file (``--samples`` raw lines; each later file
keeps fewer), a training ``metrics.json`` and an eval report with pass@1 = 0.25 * N.
It can misbehave on request: exit non-zero, sleep, ignore SIGTERM, skip or corrupt its
output, or leave a grandchild in its process group.

``--chain`` makes it a fast, realistic stage for the durability suite: each stage reads
the previous stage's round file and writes its own, sample by sample, to a temporary file
that it fsyncs and renames (as the real stages do), printing progress as it goes, so a
runner killed at any moment leaves partial temp files and half runs behind. Sample ids
are ``r<round>-<index:05d>`` (``SAMPLES_PER_ROUND`` of them); which samples are rejected,
fail their tests or go to validation is fixed by the index (see ``expected_partition``),
so a checker can tell a lost or duplicated sample from a legitimate split.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

PROGRESS_EVERY = 4  # --chain: a progress line every this many samples
TEACHER_USAGE = {"prompt_tokens": 1200, "completion_tokens": 345, "cost_micros": 6450}

# Progress messages that exercise the journal's escaping (golden files depend on them).
TRICKY_MESSAGES = (
    'quote " backslash \\ slash /',
    "caf\u00e9 \u65e5\u672c \U0001f600",
    "ctl \x01\x1f tab\tnl\nend \x7f",
    "leaked api_key=hunter2hunter2 and sk-abcdefghijklmnopqrstuvwxyz0123",
)


def expected_partition(index: int) -> dict[str, bool]:
    """--chain: where sample ``index`` of a round belongs."""
    rejected = index % 5 == 0
    return {
        "rejected": rejected,
        "test_failed": not rejected and index % 4 == 1,
        "val": index % 3 == 2,
    }


def heidi(payload: dict) -> None:
    sys.stdout.write("@heidi " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def progress(message: str, **counters: int) -> None:
    heidi({"event_type": "progress", "message": message, "counters_delta": counters})


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def data_path(out_dir: str, kind: str, round_: int) -> str:
    return os.path.join(out_dir, "data", f"{kind}_round_{round_}.jsonl")


def read_samples(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


class AtomicFile:
    """Text goes to ``<path>.<pid>.tmp``; ``commit()`` renames it over ``path`` (fsyncing
    the file and its folder when ``durable``)."""

    def __init__(self, path: str, durable: bool) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self.durable = durable
        self.temp = f"{path}.{os.getpid()}.tmp"
        self.handle = open(self.temp, "w", encoding="utf-8")

    def write(self, text: str) -> None:
        self.handle.write(text)
        self.handle.flush()

    def commit(self) -> None:
        self.handle.flush()
        if self.durable:
            os.fsync(self.handle.fileno())
        self.handle.close()
        os.rename(self.temp, self.path)
        if self.durable:
            fd = os.open(os.path.dirname(self.path), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_file(out_dir: str, rel: str, text: str, durable: bool = False) -> None:
    target = AtomicFile(os.path.join(out_dir, rel), durable)
    target.write(text)
    target.commit()


# ----- the default outputs -----------------------------------------------------------


def line_counts(samples: int) -> dict[str, int]:
    """Lines per round file: each stage keeps one sample fewer than the one before."""
    return {"raw": samples, "clean": samples - 1, "rejected": 1, "tested": samples - 2,
            "test_failed": 1, "train": samples - 3, "val": 1}


def eval_report(round_: int) -> dict:
    return {"round": round_, "n_tasks": 4, "n_passed": round_, "pass_at_1": 0.25 * round_,
            "val_loss": 1.5, "baseline_pass_at_1": 0.25, "adapter": "", "tasks": [],
            "pass_at_1_low": 0.05, "pass_at_1_high": 0.7, "dev_pass_at_1": 0.5,
            "best_round": round_}


def write_outputs(stage: str, round_: int, out_dir: str, samples: int, bad_json: bool) -> None:
    tests_on = os.environ.get("RUN_UNIT_TESTS", "1") == "1"
    kinds = {
        "generate": ["raw"],
        "validate": ["clean", "rejected"] + ([] if tests_on else ["train", "val"]),
        "test": ["tested", "test_failed", "train", "val"],
    }.get(stage, [])
    counts = line_counts(samples)
    for kind in kinds:
        rows = ({"id": f"{kind}-{round_}-{index}", "round": round_}
                for index in range(counts[kind]))
        write_file(out_dir, f"data/{kind}_round_{round_}.jsonl",
                   "".join(json.dumps(row) + "\n" for row in rows))
    if stage == "train":
        write_file(out_dir, f"out_lora/round_{round_}/metrics.json",
                   "[1, 2]" if bad_json else json.dumps({"steps": 1}))
    if stage == "eval":
        write_file(out_dir, f"eval/report_round_{round_}.json",
                   "not json" if bad_json else json.dumps(eval_report(round_)))


# ----- --chain: the durability suite's stages ----------------------------------------


def write_rounds(out_dir: str, round_: int, routed: dict[str, list[dict]], delay: float) -> None:
    """Write each kind's samples to its round file, sample by sample, then commit all."""
    files = {kind: AtomicFile(data_path(out_dir, kind, round_), True) for kind in routed}
    written = 0
    for kind, samples in routed.items():
        for sample in samples:
            files[kind].write(json.dumps(sample) + "\n")
            written += 1
            if written % PROGRESS_EVERY == 0:
                progress(f"{written} samples written", samples_written=PROGRESS_EVERY)
            if delay:
                time.sleep(delay)
    for handle in files.values():
        handle.commit()


def run_chained(stage: str, round_: int, out_dir: str, delay: float) -> None:
    samples_per_round = int(os.environ.get("SAMPLES_PER_ROUND", "10"))
    tests_on = os.environ.get("RUN_UNIT_TESTS", "1") == "1"
    progress(f"{stage} round {round_} begins")
    if stage == "generate":
        raw = [{"id": f"r{round_}-{i:05d}", "index": i, "round": round_}
               for i in range(samples_per_round)]
        write_rounds(out_dir, round_, {"raw": raw}, delay)
    elif stage == "validate":
        raw = read_samples(data_path(out_dir, "raw", round_))
        clean = [s for s in raw if not expected_partition(s["index"])["rejected"]]
        rejected = [dict(s, reject_reason="schema") for s in raw
                    if expected_partition(s["index"])["rejected"]]
        routed = {"clean": clean, "rejected": rejected}
        if not tests_on:
            routed["train"] = [s for s in clean if not expected_partition(s["index"])["val"]]
            routed["val"] = [s for s in clean if expected_partition(s["index"])["val"]]
        write_rounds(out_dir, round_, routed, delay)
    elif stage == "test":
        clean = read_samples(data_path(out_dir, "clean", round_))
        failed = [s for s in clean if expected_partition(s["index"])["test_failed"]]
        tested = [s for s in clean if not expected_partition(s["index"])["test_failed"]]
        write_rounds(out_dir, round_, {
            "tested": tested,
            "test_failed": [dict(s, reject_reason="test_failed") for s in failed],
            "train": [s for s in tested if not expected_partition(s["index"])["val"]],
            "val": [s for s in tested if expected_partition(s["index"])["val"]],
        }, delay)
    elif stage == "train":
        train = read_samples(data_path(out_dir, "train", round_))
        folder = f"out_lora/round_{round_}"
        write_file(out_dir, f"{folder}/adapter_config.json", json.dumps({"r": 4}), True)
        progress("adapter written")
        write_file(out_dir, f"{folder}/metrics.json",
                   json.dumps({"steps": len(train), "train_ids": [s["id"] for s in train]}), True)
    elif stage == "eval":
        with open(os.path.join(out_dir, f"out_lora/round_{round_}/metrics.json")) as handle:
            metrics = json.load(handle)
        progress("evaluating")
        write_file(out_dir, f"eval/report_round_{round_}.json",
                   json.dumps({"round": round_, "n_tasks": metrics["steps"]}), True)
    progress(f"{stage} round {round_} done")


# ----- the program -------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage")
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--samples", type=int, default=5, help="raw lines a round has")
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds before the outputs")
    parser.add_argument("--ignore-term", action="store_true", help="only SIGKILL ends it")
    parser.add_argument("--skip-output", action="store_true")
    parser.add_argument("--bad-json", action="store_true")
    parser.add_argument("--tricky", action="store_true", help="print escaping-heavy progress")
    parser.add_argument("--raw", action="append", default=[], help="print this stdout line")
    parser.add_argument("--fail-once", metavar="MARKER", help="exit 5 unless MARKER exists")
    parser.add_argument("--grandchild-pid-file", help="start a sleeping grandchild, write its pid")
    parser.add_argument("--teacher-usage", action="store_true",
                        help="first report teacher tokens, cost and cache hits")
    parser.add_argument("--chain", action="store_true",
                        help="read the previous stage's file and write sample by sample")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="--chain: pause after each sample")
    parser.add_argument("--pid-dir", help="write a <stage>-<pid> file there on start")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.pid_dir:
        open(os.path.join(args.pid_dir, f"{args.stage}-{os.getpid()}"), "w").close()
    if args.chain:
        run_chained(args.stage, args.round, args.out_dir, args.delay)
        return args.exit_code
    if args.fail_once and not os.path.exists(args.fail_once):
        open(args.fail_once, "w").close()
        heidi({"event_type": "progress", "message": "failing once", "level": "warn"})
        return 5
    if args.teacher_usage:
        heidi({"event_type": "progress", "message": "answered 3/3",
               "counters_delta": {"teacher_cache_hits": 2}, "usage_delta": TEACHER_USAGE})
    progress(f"{args.stage} working", items=args.round)
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
        write_outputs(args.stage, args.round, args.out_dir, args.samples, args.bad_json)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
