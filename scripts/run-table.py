#!/usr/bin/env python3
"""Print a finished run's results as the README's Markdown tables.

    python scripts/run-table.py OUT_DIR

Reads only the run's own files: ``eval/baseline.json``, ``eval/report_round_N.json``,
``out_lora/round_N/metrics.json`` and the journal's ``stage_start``/``stage_end`` lines
(wall time per stage).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

STAGES = ("generate", "validate", "test", "train", "eval")


def interval(section: dict) -> str:
    return (f"{section['n_passed']}/{section['n_tasks']} = {section['pass_at_1']:.0%} "
            f"[{section['ci95_low']:.1%}, {section['ci95_high']:.1%}]")


def stage_seconds(out_dir: Path) -> dict[tuple[int, str], float]:
    started: dict[tuple[int, str], datetime] = {}
    seconds: dict[tuple[int, str], float] = {}
    for path in sorted((out_dir / "journal").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            key = (event["round"], event["stage"])
            when = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
            if event["event_type"] == "stage_start":
                started[key] = when
            elif event["event_type"] == "stage_end" and key in started:
                seconds[key] = (when - started[key]).total_seconds()
    return seconds


def main(out_dir: Path) -> None:
    reports = sorted((out_dir / "eval").glob("report_round_*.json"),
                     key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not reports:
        sys.exit(f"{out_dir}: no eval reports (is the run finished?)")
    rows = [json.loads(p.read_text(encoding="utf-8")) for p in reports]
    print("| model | dev pass@1 [95% CI] | test pass@1 [95% CI] | train steps | val loss "
          "(fixed set) | promoted |")
    print("|---|---|---|---|---|---|")
    base = rows[0]["sections"]
    print(f"| base model ({rows[0]['base_model']}) | {interval(base['dev']['base'])} | "
          f"{interval(base['test']['base'])} | — | — | — |")
    for report in rows:
        metrics = json.loads((out_dir / report["adapter"] / "metrics.json").read_text())
        sections = report["sections"]
        print(f"| round {report['round']} adapter | {interval(sections['dev']['adapter'])} | "
              f"{interval(sections['test']['adapter'])} | {metrics['steps']} "
              f"({metrics['n_train_samples']} samples) | {report['fixed_val_loss']:.3f} | "
              f"{'yes' if report['promoted'] else 'no'}: {report['promotion_reason']} |")
    final = rows[-1]
    best = next(r for r in rows if r["round"] == final["best_round"])
    gain = (best["pass_at_1"] - best["baseline_pass_at_1"]) * 100
    disjoint = best["pass_at_1_low"] > best["baseline_pass_at_1_high"]
    print(f"\nbest adapter: round {best['round']}; test gain {gain:+.0f} points, 95% intervals "
          f"{'disjoint' if disjoint else 'overlapping'}; learning events (round 2+): "
          + ", ".join(f"round {r['round']} {r['learning']['now_passing']}/"
                      f"{r['learning']['previous_dev_failures']} earlier dev failures pass"
                      for r in rows[1:]))
    seconds = stage_seconds(out_dir)
    print("\n| round | " + " | ".join(STAGES) + " | round total |")
    print("|---|" + "---|" * (len(STAGES) + 1))
    for report in rows:
        n = report["round"]
        cells = [seconds.get((n, stage)) for stage in STAGES]
        total = sum(c for c in cells if c is not None)
        print(f"| {n} | " + " | ".join("—" if c is None else f"{c:.0f} s" for c in cells)
              + f" | {total / 60:.1f} min |")
    eval_timings = rows[0].get("timings", {})
    if "baseline_generate_s" in eval_timings:
        print(f"\n(round 1's eval includes scoring the base model once: "
              f"{eval_timings['baseline_generate_s']:.0f} s of generation)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: run-table.py OUT_DIR")
    main(Path(sys.argv[1]))
