"""A stand-in stage program for server and CLI tests: `fake_stage.py STAGE --round N --out-dir D`.

Writes the outputs the Core requires for STAGE (a few sample lines, an eval report with
pass@1 = 0.25 * N) after sleeping FAKE_STAGE_SLEEP_<STAGE> seconds (default 0). With
FAKE_STAGE_IGNORE_TERM=1 it ignores SIGTERM, so only the runner's SIGKILL ends it.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def lines(n: int, round_no: int) -> str:
    return "".join(json.dumps({"id": f"r{round_no}-{i}", "round": round_no}) + "\n" for i in range(n))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage")
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    if os.environ.get("FAKE_STAGE_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("@heidi " + json.dumps({"event_type": "progress", "message": f"{args.stage} working"}),
          flush=True)
    time.sleep(float(os.environ.get(f"FAKE_STAGE_SLEEP_{args.stage.upper()}", "0")))
    out, r = Path(args.out_dir), args.round
    data = out / "data"
    if args.stage == "generate":
        write(data / f"raw_round_{r}.jsonl", lines(6, r))
    elif args.stage == "validate":
        write(data / f"clean_round_{r}.jsonl", lines(5, r))
        write(data / f"rejected_round_{r}.jsonl", lines(1, r))
        if os.environ.get("RUN_UNIT_TESTS") == "0":
            write(data / f"train_round_{r}.jsonl", lines(4, r))
            write(data / f"val_round_{r}.jsonl", lines(1, r))
    elif args.stage == "test":
        write(data / f"tested_round_{r}.jsonl", lines(4, r))
        write(data / f"test_failed_round_{r}.jsonl", lines(1, r))
        write(data / f"train_round_{r}.jsonl", lines(3, r))
        write(data / f"val_round_{r}.jsonl", lines(1, r))
    elif args.stage == "train":
        write(out / "out_lora" / f"round_{r}" / "metrics.json", json.dumps({"steps": 1}))
    elif args.stage == "eval":
        report = {"round": r, "n_tasks": 4, "n_passed": r, "pass_at_1": 0.25 * r,
                  "val_loss": 1.5, "baseline_pass_at_1": 0.25, "adapter": "", "tasks": [],
                  "pass_at_1_low": 0.05, "pass_at_1_high": 0.7, "dev_pass_at_1": 0.5,
                  "best_round": r}
        write(out / "eval" / f"report_round_{r}.json", json.dumps(report))
    else:
        print(f"unknown stage {args.stage}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
