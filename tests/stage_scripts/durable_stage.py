"""A fast, realistic stage program for the durability suite (HEIDI_STAGE_CMD_<STAGE>).

    durable_stage.py STAGE --round N --out-dir DIR

Each stage reads the previous stage's round file and writes its own, sample by sample, to
a temporary file that it fsyncs and renames (as the real stages do), printing ``@heidi``
progress as it goes — so a runner killed at any moment leaves partial temp files and half
runs behind. Sample ids are ``r<round>-<index:05d>``; which samples are rejected, fail their
tests or go to validation is fixed by the index (see ``expected_partition``), so a checker
can tell a lost or duplicated sample from a legitimate split.

Environment: SAMPLES_PER_ROUND, RUN_UNIT_TESTS (from the Core), DURABLE_STAGE_DELAY_S
(pause after each sample, default 0), DURABLE_PID_DIR (write ``<stage>-<pid>`` files there,
so a test can find stage processes that outlived their runner).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

PROGRESS_EVERY = 4


def expected_partition(index: int) -> dict[str, bool]:
    """Where sample ``index`` of a round belongs."""
    rejected = index % 5 == 0
    return {
        "rejected": rejected,
        "test_failed": not rejected and index % 4 == 1,
        "val": index % 3 == 2,
    }


def heidi(message: str, **counters: int) -> None:
    payload = {"event_type": "progress", "message": message, "counters_delta": counters}
    sys.stdout.write("@heidi " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def data_path(out_dir: str, kind: str, round_: int) -> str:
    return os.path.join(out_dir, "data", f"{kind}_round_{round_}.jsonl")


def read_samples(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


class AtomicFile:
    """Lines go to ``<path>.<pid>.tmp``; ``commit()`` fsyncs and renames it over ``path``."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self.temp = f"{path}.{os.getpid()}.tmp"
        self.handle = open(self.temp, "w", encoding="utf-8")

    def write(self, text: str) -> None:
        self.handle.write(text)
        self.handle.flush()

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.rename(self.temp, self.path)
        fd = os.open(os.path.dirname(self.path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_rounds(out_dir: str, round_: int, routed: dict[str, list[dict]], delay: float) -> None:
    """Write each kind's samples to its round file, sample by sample, then commit all."""
    files = {kind: AtomicFile(data_path(out_dir, kind, round_)) for kind in routed}
    written = 0
    for kind, samples in routed.items():
        for sample in samples:
            files[kind].write(json.dumps(sample) + "\n")
            written += 1
            if written % PROGRESS_EVERY == 0:
                heidi(f"{written} samples written", samples_written=PROGRESS_EVERY)
            if delay:
                time.sleep(delay)
    for handle in files.values():
        handle.commit()


def write_json(out_dir: str, rel: str, value: object) -> None:
    target = AtomicFile(os.path.join(out_dir, rel))
    target.write(json.dumps(value))
    target.commit()


def run(stage: str, round_: int, out_dir: str, delay: float) -> None:
    samples_per_round = int(os.environ.get("SAMPLES_PER_ROUND", "10"))
    tests_on = os.environ.get("RUN_UNIT_TESTS", "1") == "1"
    heidi(f"{stage} round {round_} begins")
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
        write_json(out_dir, f"{folder}/adapter_config.json", {"r": 4})
        heidi("adapter written")
        write_json(out_dir, f"{folder}/metrics.json",
                   {"steps": len(train), "train_ids": [s["id"] for s in train]})
    elif stage == "eval":
        with open(os.path.join(out_dir, f"out_lora/round_{round_}/metrics.json")) as handle:
            metrics = json.load(handle)
        heidi("evaluating")
        write_json(out_dir, f"eval/report_round_{round_}.json",
                   {"round": round_, "n_tasks": metrics["steps"]})
    heidi(f"{stage} round {round_} done")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage")
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    pid_dir = os.environ.get("DURABLE_PID_DIR")
    if pid_dir:
        open(os.path.join(pid_dir, f"{args.stage}-{os.getpid()}"), "w").close()
    run(args.stage, args.round, args.out_dir, float(os.environ.get("DURABLE_STAGE_DELAY_S", "0")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
