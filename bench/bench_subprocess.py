"""Spawn + reap of ``/bin/true``: the native runner, the Python runner, and Python's
``subprocess.run`` (baseline), with a small parent and with a 2 GB resident parent.

The 2 GB figure shows that spawning does not copy the parent's address space (the
native runner uses clone(CLONE_VM | CLONE_VFORK), not fork).
"""

from __future__ import annotations

import mmap
import subprocess
import time

from heidi_engine import backend

BATCH = 40
ROUNDS = 12
BIG_PARENT_BYTES = 2 << 30
PAGE = 4096


def per_spawn_us(spawners: dict) -> dict:
    """Best batch mean per spawner; batches interleave so machine load hits all alike."""
    best = {name: float("inf") for name in spawners}
    for spawn in spawners.values():
        spawn()  # warm up
    for _ in range(ROUNDS):
        for name, spawn in spawners.items():
            started = time.perf_counter()
            for _ in range(BATCH):
                spawn()
            best[name] = min(best[name], (time.perf_counter() - started) / BATCH * 1e6)
    return best


def runners() -> dict:
    # The baseline does the same work as the runners: stdout and stderr captured.
    found = {
        "python subprocess.run": lambda: subprocess.run(
            ["/bin/true"], capture_output=True, check=True
        )
    }
    found["python backend"] = lambda: backend.load("python").Subprocess.run(["/bin/true"], 10)
    if backend.native_import_error() is None:
        found["native backend"] = lambda: backend.load("native").Subprocess.run(["/bin/true"], 10)
    return found


def run(report) -> None:
    spawners = runners()
    small = per_spawn_us(spawners)
    big_buffer = mmap.mmap(-1, BIG_PARENT_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        for offset in range(0, BIG_PARENT_BYTES, PAGE):  # make every page resident
            big_buffer[offset] = 1
        big = per_spawn_us(spawners)
    finally:
        big_buffer.close()

    baseline = small["python subprocess.run"]
    for name in ("native backend", "python backend"):
        if name not in small:
            continue
        met = small[name] <= baseline if name == "native backend" else None
        report.add(
            f"subprocess spawn+reap /bin/true, {name}",
            small[name],
            "us",
            baseline_name="subprocess.run(capture_output=True)",
            baseline_value=baseline,
            higher_is_better=False,
            target="<= subprocess.run" if name == "native backend" else None,
            met=met,
        )
    for name, value in big.items():
        is_native = name == "native backend"
        report.add(
            f"subprocess spawn+reap /bin/true, 2 GB parent, {name}",
            value,
            "us",
            baseline_name="same, small parent",
            baseline_value=small[name],
            higher_is_better=False,
            target="within 2x of small parent" if is_native else None,
            met=value <= 2 * small[name] if is_native else None,
        )
