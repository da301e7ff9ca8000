"""Validate stage: ``python -m heidi_engine.stages.validate --round N --out-dir DIR``.

Reads ``data/raw_round_N.jsonl``; writes ``data/clean_round_N.jsonl`` and
``data/rejected_round_N.jsonl`` (each with ``reject_reason``; secrets masked), plus the
train/val split when unit tests are off (SPEC §4, §8). The checks are in
:mod:`heidi_engine.validation.pipeline`. Exits 2 on a bad ``HEIDI_EVAL_TASK_FILE``, 1
without the raw file or with an unreadable dedup snapshot (:func:`.common.run_stage`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from ..io import write_jsonl_atomic
from ..tasks import TaskFileError, held_out_tasks
from ..telemetry import progress
from ..validation.contamination import HeldOutIndex
from ..validation.pipeline import BATCH_SIZE, SnapshotError, Validator, load_state, save_state
from .common import StageContext, require_input, run_stage, write_split

PROGRESS_INTERVAL_S = 1.0


def run(ctx: StageContext) -> int:
    paths, config = ctx.paths, ctx.config
    require_input(paths.raw)
    held_out = HeldOutIndex(held_out_tasks(config))
    validator = Validator(load_state(paths.state_dir, paths.out_dir / "data", ctx.round), held_out)
    clean, rejected = [], []
    with open(paths.raw, encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    last_report = time.monotonic()
    for start in range(0, len(lines), BATCH_SIZE):
        for record, reason in validator.check_lines(lines[start:start + BATCH_SIZE]):
            (clean if reason is None else rejected).append(record)
        if time.monotonic() - last_report >= PROGRESS_INTERVAL_S:
            last_report = time.monotonic()
            progress(f"validated {len(clean) + len(rejected)}/{len(lines)}: clean {len(clean)}, "
                     f"rejected {len(rejected)}")
    write_jsonl_atomic(paths.clean, clean)
    write_jsonl_atomic(paths.rejected, rejected)
    # Line counts are the Core's (from the files); the progress event adds the reasons.
    counters = {f"rejected_{reason}": n for reason, n in sorted(validator.rejected.items())}
    if not config.run_unit_tests:
        write_split(paths, clean, config.val_ratio, config.seed)
    save_state(paths.state_dir, ctx.round, validator.state)
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(validator.rejected.items())) or "none"
    progress(f"validate round {ctx.round}: {len(lines)} samples, clean {len(clean)}, "
             f"rejected {len(rejected)} ({reasons})", counters_delta=counters)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("validate", run, argv, config_errors=(TaskFileError,),
                     input_errors=(SnapshotError,))


if __name__ == "__main__":
    sys.exit(main())
