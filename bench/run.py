"""Benchmark runner: ``python bench/run.py [name ...]``.

Runs every ``bench/bench_*.py`` (or the ones named), prints each figure with its ratio
against a baseline measured in the same run, and writes ``bench/results.json``.
Each module defines ``run(report)`` and calls ``report.add(...)`` for every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Report:
    def __init__(self) -> None:
        self.entries: list[dict] = []

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline_name: str | None = None,
        baseline_value: float | None = None,
        higher_is_better: bool = True,
        target: str | None = None,
        met: bool | None = None,
    ) -> None:
        """Record one figure. The ratio is value/baseline (or baseline/value when lower is better)."""
        ratio = None
        if baseline_value:
            ratio = value / baseline_value if higher_is_better else baseline_value / value
        entry = {
            "name": name,
            "value": value,
            "unit": unit,
            "baseline_name": baseline_name,
            "baseline_value": baseline_value,
            "ratio": ratio,
            "higher_is_better": higher_is_better,
            "target": target,
            "met": met,
        }
        self.entries.append(entry)
        line = f"{name:<58} {value:>14,.2f} {unit:<10}"
        if baseline_value is not None:
            line += f" | {baseline_name}: {baseline_value:,.2f} -> ratio {ratio:.2f}x"
        if target:
            line += f" | target {target}: {'MET' if met else 'NOT MET'}"
        print(line, flush=True)


def discover(names: list[str]) -> list[Path]:
    files = sorted(HERE.glob("bench_*.py"))
    if names:
        files = [f for f in files if f.stem.removeprefix("bench_") in names or f.stem in names]
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args(argv)
    report = Report()
    failures = []
    for path in discover(args.names):
        print(f"== {path.stem}", flush=True)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
            module.run(report)
        except Exception as exc:  # a broken benchmark is reported, the others still run
            failures.append(f"{path.stem}: {exc!r}")
            print(f"   FAILED: {exc!r}", flush=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"python": platform.python_version(), "platform": platform.platform()},
                "entries": report.entries,
                "failures": failures,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
