"""Journal throughput: appends (Python API, native vs python; C++ loop) and verification."""

from __future__ import annotations

import os
import tempfile
import time

from heidi_engine import backend as backend_mod

APPENDS = 50_000
CPP_APPENDS = 2_000_000
VERIFY_LINES = 400_000


def _append_rate(backend, path: str, n: int) -> tuple[float, float]:
    """(events per wall second, per CPU second) through the public Python API, fsync off."""
    journal = backend.JournalWriter(path, "run_bench", fsync=False)
    counters = {"raw_lines": 1}
    start = time.perf_counter()
    cpu_start = time.process_time()
    for i in range(n):
        journal.append("progress", "progress step", stage="generate", round=1, counters_delta=counters)
    journal.close()
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu_start)


def _verify_rate(backend, path: str) -> tuple[float, float]:
    """(MB per wall second, per CPU second of all threads), best of three."""
    size = os.path.getsize(path)
    best = best_cpu = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        cpu_start = time.process_time()
        result = backend.verify_journal(path)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu_start)
        assert result.ok, result
    return size / best / 1e6, size / best_cpu / 1e6


def run(report) -> None:
    native = backend_mod.load("native")
    pure = backend_mod.load("python")
    with tempfile.TemporaryDirectory() as tmp:
        native_rate, native_cpu_rate = _append_rate(native, os.path.join(tmp, "n.jsonl"), APPENDS)
        python_rate, python_cpu_rate = _append_rate(
            pure, os.path.join(tmp, "p.jsonl"), APPENDS // 5
        )
        report.add("journal append, Python API, native (fsync off)", native_rate, "events/s",
                   baseline_name="python backend", baseline_value=python_rate,
                   target=">= 5x python", met=native_rate >= 5 * python_rate)
        report.add("journal append, Python API, per CPU-second", native_cpu_rate, "events/s",
                   baseline_name="python backend", baseline_value=python_cpu_rate)

        cpu_start = time.process_time()
        seconds = native.module._bench_journal_append(os.path.join(tmp, "c.jsonl"), CPP_APPENDS)
        cpu_seconds = time.process_time() - cpu_start
        cpp_rate = CPP_APPENDS / seconds
        report.add("journal append, C++ loop, native (fsync off)", cpp_rate, "events/s",
                   baseline_name="python backend", baseline_value=python_rate,
                   target=">= 1,000,000/s", met=cpp_rate >= 1_000_000)
        # The same loop per CPU-second: what the code does when it is not waiting for a
        # core (the machine may be shared with other work).
        report.add("journal append, C++ loop, per CPU-second", CPP_APPENDS / cpu_seconds, "events/s")

        verify_path = os.path.join(tmp, "v.jsonl")
        native.module._bench_journal_append(verify_path, VERIFY_LINES)
        native_mb, native_cpu_mb = _verify_rate(native, verify_path)
        python_mb, python_cpu_mb = _verify_rate(pure, verify_path)
        report.add("verify_journal, native", native_mb, "MB/s",
                   baseline_name="python backend", baseline_value=python_mb,
                   target=">= 500 MB/s", met=native_mb >= 500)
        report.add("verify_journal, native, per CPU-second", native_cpu_mb, "MB/s",
                   baseline_name="python backend", baseline_value=python_cpu_mb)
