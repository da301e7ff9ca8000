"""Evaluation reports (``OUT_DIR/eval/report_round_N.json``) as the servers show them (the
twin of ``cpp/daemon/eval_reports.cpp``)."""

from __future__ import annotations

import json
import math
import os
import re
import threading
from pathlib import Path

from .._py.jsonenc import reject_constant
from ..run_layout import EVAL_DIR

# run_layout.EVAL_REPORT_NAME, for rounds 1..999999999 written without leading zeros (as heidid).
REPORT_NAME = re.compile(r"^report_round_([1-9][0-9]{0,8})\.json$")
# The report fields the API passes on, in this order (null when a report lacks one).
REPORT_FIELDS = ("pass_at_1", "baseline_pass_at_1", "n_tasks", "n_passed", "val_loss",
                 "pass_at_1_low", "pass_at_1_high", "baseline_pass_at_1_low",
                 "baseline_pass_at_1_high", "dev_pass_at_1", "best_round")


class EvalReports:
    """Reads the reports, re-parsing a file only when its size or mtime changed."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.eval_dir = Path(out_dir) / EVAL_DIR
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[tuple[int, int], dict | None]] = {}

    def rounds(self) -> list[dict]:
        """One entry per readable report, by round: ``{"round", pass_at_1, ...}``."""
        try:
            names = os.listdir(self.eval_dir)
        except FileNotFoundError:
            names = []
        found: dict[int, Path] = {}
        for name in names:
            match = REPORT_NAME.match(name)
            if match:
                found[int(match.group(1))] = self.eval_dir / name
        result = []
        with self._lock:
            for stale in set(self._cache) - set(found):
                del self._cache[stale]
            for round_no in sorted(found):
                entry = self._load(round_no, found[round_no])
                if entry is not None:
                    result.append(entry)
        return result

    def _load(self, round_no: int, path: Path) -> dict | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(round_no)
        if cached is not None and cached[0] == key:
            return cached[1]
        entry: dict | None
        try:
            with open(path, encoding="utf-8") as fh:
                report = json.load(fh, parse_constant=reject_constant)
        except (OSError, ValueError):
            report = None
        if isinstance(report, dict):
            entry = {"round": round_no}
            for name in REPORT_FIELDS:
                value = report.get(name)
                entry[name] = value if _is_number(value) else None
        else:
            entry = None
        self._cache[round_no] = (key, entry)
        return entry


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


__all__ = ["EvalReports"]
