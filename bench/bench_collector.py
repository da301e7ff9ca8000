"""AsyncCollector throughput with the mock provider: the native and Python backends
against a plain asyncio baseline (a semaphore and ``asyncio.sleep``), same run.

1,000 prompts at 100 ms with concurrency 100 (ideal 1.00 s), and 10,000 prompts at
10 ms with concurrency 64 (ideal 1.5625 s).
"""

from __future__ import annotations

import asyncio
import math
import time

from heidi_engine import backend

CASES = (
    # prompts, latency_ms, concurrency, target (seconds or fraction over ideal)
    (1000, 100, 100, "<= 1.10 s", lambda elapsed, ideal: elapsed <= 1.10),
    (10000, 10, 64, "within 10% of ideal", lambda elapsed, ideal: elapsed <= 1.10 * ideal),
)


def asyncio_baseline(n: int, latency_ms: float, concurrency: int) -> float:
    async def main() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(prompt: str) -> str:
            async with gate:
                await asyncio.sleep(latency_ms / 1000.0)
                return "mock answer: " + prompt

        await asyncio.gather(*(one(str(i)) for i in range(n)))

    started = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - started


def collector_seconds(impl, n: int, latency_ms: float, concurrency: int) -> float:
    collector = impl.AsyncCollector(impl.MockProvider(latency_ms=latency_ms), concurrency=concurrency)
    prompts = [str(i) for i in range(n)]
    started = time.perf_counter()
    results = collector.generate_batch(prompts)
    elapsed = time.perf_counter() - started
    if len(results) != n or not all(r.ok for r in results):
        raise RuntimeError("mock batch did not complete")
    return elapsed


def run(report) -> None:
    impls = {"python": backend.load("python")}
    if backend.native_import_error() is None:
        impls["native"] = backend.load("native")
    for n, latency_ms, concurrency, target, meets in CASES:
        ideal = math.ceil(n / concurrency) * latency_ms / 1000.0
        label = f"collector {n} mock prompts @{latency_ms} ms, concurrency {concurrency}"
        baseline = asyncio_baseline(n, latency_ms, concurrency)
        report.add(f"{label}, asyncio baseline", baseline, "s", baseline_name="ideal",
                   baseline_value=ideal, higher_is_better=False)
        for name, impl in impls.items():
            elapsed = collector_seconds(impl, n, latency_ms, concurrency)
            report.add(
                f"{label}, {name} backend",
                elapsed,
                "s",
                baseline_name="asyncio baseline",
                baseline_value=baseline,
                higher_is_better=False,
                target=f"{target} (ideal {ideal:.4g} s)",
                met=meets(elapsed, ideal),
            )
