"""Test stage: ``python -m heidi_engine.stages.test --round N --out-dir DIR``.

Runs every sample of ``data/clean_round_N.jsonl`` against its tests in the sandbox
(:mod:`heidi_engine.sandbox`, level ``HEIDI_SANDBOX``), ``HEIDI_SANDBOX_WORKERS`` at a
time, and writes
``data/tested_round_N.jsonl`` (passed), ``data/test_failed_round_N.jsonl``
(``reject_reason`` ``test_failed``, or ``no_tests`` when there is nothing to run) and
the train/val split of the passing samples. Both outcome files carry ``test_result``.
With several teacher samples per task, at most ``HEIDI_TEACHER_KEEP_PER_TASK`` passing
answers of a task go on (the first ones, in file order); failing ones are all recorded.
Exits 2, writing nothing, when the sandbox level cannot be enforced here.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence

from ..io import write_jsonl_atomic
from ..sandbox import SandboxLimits, SandboxUnavailable, build_program, resolve_level, run_many
from ..telemetry import emit_event, progress
from .common import parse_args, read_samples, write_split

PROGRESS_INTERVAL_S = 1.0
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFINES_CHECK = re.compile(r"^\s*def\s+check\s*\(", re.M)


def runnable(sample: dict) -> bool:
    """Whether the sample has tests to run (fail-closed: anything else is no_tests)."""
    test, entry_point = sample.get("test"), sample.get("entry_point")
    return (isinstance(test, str) and bool(_DEFINES_CHECK.search(test))
            and isinstance(entry_point, str) and bool(_IDENTIFIER.fullmatch(entry_point))
            and isinstance(sample.get("prompt"), str) and isinstance(sample.get("completion"), str))


def main(argv: Sequence[str] | None = None) -> int:
    ctx = parse_args("test", argv)
    paths, config = ctx.paths, ctx.config
    try:
        samples = read_samples(paths.clean)
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        level = resolve_level(config.sandbox)
    except SandboxUnavailable as exc:
        print(f"test: error: {exc}", file=sys.stderr)
        emit_event("progress", f"configuration error: {exc}", level="error")
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
