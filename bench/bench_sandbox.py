"""Sandbox throughput: trivial test programs per second on 2 workers.

Baseline, measured in the same run: the same programs run with a plain
``python -c`` (no isolation, no limits) on 2 threads.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from heidi_engine.sandbox import SandboxLimits, build_program, detect_isolation, run_many, sandbox_python

N_PROGRAMS = 80
WORKERS = 2
PROGRAM = build_program('def add(a, b):\n    """a + b"""\n', "    return a + b\n",
                        "def check(candidate):\n    assert candidate(2, 3) == 5\n", "add")


def _plain(program: str) -> bool:
    return subprocess.run([sandbox_python(), "-c", program], capture_output=True,
                          timeout=30).returncode == 0


def run(report) -> None:
    programs = [PROGRAM] * N_PROGRAMS
    run_many(programs[:4], SandboxLimits(), WORKERS)  # warm-up (isolation probe, caches)
    started = time.perf_counter()
    results = run_many(programs, SandboxLimits(), WORKERS)
    sandboxed = N_PROGRAMS / (time.perf_counter() - started)
    assert all(r.passed for r in results)
    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        assert all(pool.map(_plain, programs))
    plain = N_PROGRAMS / (time.perf_counter() - started)
    report.add(f"sandbox trivial programs/s ({detect_isolation()}, {WORKERS} workers)", sandboxed,
               "prog/s", baseline_name="plain python -c", baseline_value=plain,
               target=">= 20 prog/s", met=sandboxed >= 20)
