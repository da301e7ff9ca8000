"""Test stage: ``python -m heidi_engine.stages.test --round N --out-dir DIR``.

Runs every sample of ``data/clean_round_N.jsonl`` against its tests in the sandbox
(:mod:`heidi_engine.sandbox`, level ``HEIDI_SANDBOX``), ``HEIDI_SANDBOX_WORKERS`` at a
time, and writes
``data/tested_round_N.jsonl`` (passed), ``data/test_failed_round_N.jsonl``
(``reject_reason`` ``test_failed``, or ``no_tests`` when there is nothing to run) and
the train/val split of the passing samples. Both outcome files carry ``test_result``.
With several teacher samples per task, at most ``HEIDI_TEACHER_KEEP_PER_TASK`` passing
answers of a task go on (the first ones, in file order); failing ones are all recorded.
Exits 2, writing nothing, when the sandbox level cannot be enforced here, and 1 without
the clean file (the exit convention of every stage, :func:`.common.run_stage`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from ..io import write_jsonl_atomic
from ..sandbox import SandboxLimits, SandboxUnavailable, build_program, resolve_level, run_many
from ..tasks.model import has_runnable_tests
from ..telemetry import progress
from .common import StageContext, read_samples, run_stage, write_split

PROGRESS_INTERVAL_S = 1.0


def runnable(sample: dict) -> bool:
    """Whether the sample has tests to run (fail-closed: anything else is no_tests)."""
    return (has_runnable_tests(sample) and isinstance(sample.get("prompt"), str)
            and isinstance(sample.get("completion"), str))


def run(ctx: StageContext) -> int:
    paths, config = ctx.paths, ctx.config
    samples = read_samples(paths.clean)
    level = resolve_level(config.sandbox)
    limits = SandboxLimits(timeout_s=config.sandbox_timeout_s, memory_mb=config.sandbox_memory_mb)
    to_run = [i for i, s in enumerate(samples) if runnable(s)]
    programs = [build_program(samples[i]["prompt"], samples[i]["completion"], samples[i]["test"],
                              samples[i]["entry_point"]) for i in to_run]
    progress(f"testing {len(programs)} samples in the sandbox "
             f"({level}, workers {config.sandbox_workers or 'auto'})")
    done, passed, last_report = 0, 0, time.monotonic()

    def on_result(_index, result) -> None:
        nonlocal done, passed, last_report
        done += 1
        passed += result.passed
        if time.monotonic() - last_report >= PROGRESS_INTERVAL_S:
            last_report = time.monotonic()
            progress(f"tested {done}/{len(programs)}: passed {passed}")

    results = dict(zip(to_run, run_many(programs, limits, config.sandbox_workers,
                                        level=level, on_result=on_result)))
    tested, failed = [], []
    for i, sample in enumerate(samples):
        record = dict(sample)
        result = results.get(i)
        if result is None:
            record["test_result"] = {"passed": False, "reason": "no tests to run", "duration_ms": 0}
            record["reject_reason"] = "no_tests"
            failed.append(record)
            continue
        record["test_result"] = result.as_dict()
        if result.passed:
            tested.append(record)
        else:
            record["reject_reason"] = "test_failed"
            failed.append(record)
    tested, surplus = keep_per_task(tested, config.teacher_keep_per_task)
    write_jsonl_atomic(paths.tested, tested)
    write_jsonl_atomic(paths.test_failed, failed)
    write_split(paths, tested, config.val_ratio, config.seed)
    no_tests = sum(1 for r in failed if r["reject_reason"] == "no_tests")
    progress(f"test round {ctx.round}: {len(samples)} samples, passed {len(tested)}, "
             f"failed {len(failed) - no_tests}, no tests {no_tests}",
             counters_delta={"tests_passed": len(tested), "tests_failed": len(failed) - no_tests,
                             "tests_missing": no_tests,
                             **({"tests_passed_surplus": surplus} if surplus else {})})
    return 0


def keep_per_task(passed: list[dict], k: int) -> tuple[list[dict], int]:
    """The first ``k`` passing samples of each task, and how many were left out."""
    seen: dict[str, int] = {}
    kept = []
    for record in passed:
        task = str(record.get("task_id", ""))
        seen[task] = seen.get(task, 0) + 1
        if seen[task] <= k:
            kept.append(record)
    return kept, len(passed) - len(kept)


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("test", run, argv, config_errors=(SandboxUnavailable,))


if __name__ == "__main__":
    sys.exit(main())
