"""Core tick() overhead: mock stages (no process runs), fsync off, native vs python.

Each tick journals stage_start and stage_end and rewrites state/run_state.json, so the
figure is the Core's own bookkeeping per state transition (run directory on tmpfs).
"""

from __future__ import annotations

import os
import tempfile
import time

from heidi_engine import backend as backend_mod

TICKS = 2000
TARGET_US = 20.0
# tmpfs when there is one: on ext4 a rename over a file with unflushed data forces a
# flush (auto_da_alloc) even with fsync off, and the figure would measure the disk.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _tick_us(backend, out_dir: str) -> tuple[float, float]:
    """(wall, CPU) microseconds per tick; CPU time includes the system calls."""
    config = backend.Config.from_env(
        out_dir=out_dir, mock_subprocesses=True, fsync=False, rounds=1_000_000,
        fake_time="2026-01-01T00:00:00.000Z",
    )
    core = backend.Core(config)
    try:
        core.start("full")
        for _ in range(50):  # warm-up
            core.tick()
        began = time.perf_counter()
        cpu_began = time.process_time()
        for _ in range(TICKS):
            core.tick()
        elapsed = time.perf_counter() - began
        cpu_elapsed = time.process_time() - cpu_began
    finally:
        core.shutdown()
    return elapsed / TICKS * 1e6, cpu_elapsed / TICKS * 1e6


def run(report) -> None:
    saved = {key: os.environ.pop(key) for key in list(os.environ) if key.startswith("HEIDI_")}
    try:
        with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
            python_us, python_cpu_us = _tick_us(backend_mod.load("python"), os.path.join(tmp, "py"))
            if backend_mod.native_import_error() is not None:
                report.add("core tick (python)", python_us, "us/tick", higher_is_better=False)
                return
            native_us, native_cpu_us = _tick_us(
                backend_mod.load("native"), os.path.join(tmp, "native")
            )
    finally:
        os.environ.update(saved)
    report.add(
        "core tick, mock stages, fsync off (native)",
        native_us,
        "us/tick",
        baseline_name="python",
        baseline_value=python_us,
        higher_is_better=False,
        target=f"<= {TARGET_US:g} us",
        met=native_us <= TARGET_US,
    )
    # CPU time per tick: what the tick costs when it is not waiting for a core (the
    # machine may be shared with other work).
    report.add(
        "core tick, CPU time per tick (native)",
        native_cpu_us,
        "us/tick",
        baseline_name="python",
        baseline_value=python_cpu_us,
        higher_is_better=False,
    )
