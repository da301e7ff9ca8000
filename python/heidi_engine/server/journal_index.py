"""Incremental reader of the event journal for the servers (the twin of
``cpp/daemon/journal_index.cpp``), and for ``heidi status``, ``heidi events`` and ``heidi run``.

The Core is the journal's only writer; servers only read it. The index remembers the
byte offset of every complete line, so a page of events costs one read of the bytes
asked for, and each refresh reads only what was appended since the last one. It also
folds every new line into the aggregates ``/metrics`` reports, so metrics never rescan
the file. A line without its newline yet (being written) is left for the next refresh.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .._py.clock import is_iso_ms, parse_iso_ms
from ..run_layout import DATA_KIND_OF_COUNT, STAGES

# The level of a stage_end -> the outcome of the stage run (SPEC §4).
STAGE_OUTCOMES = {"info": "ok", "error": "failed", "warn": "cancelled"}
# Teacher usage_delta names summed over every event (tokens and cost paid for).
TEACHER_USAGE = ("prompt_tokens", "completion_tokens", "cost_micros")


@dataclass
class StageStats:
    runs: dict[str, int] = field(default_factory=lambda: {o: 0 for o in STAGE_OUTCOMES.values()})
    duration_ms_sum: int = 0
    last_duration_ms: int = 0


@dataclass
class JournalAggregates:
    last_seq: int = 0
    stages: dict[str, StageStats] = field(default_factory=lambda: {s: StageStats() for s in STAGES})
    samples: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(DATA_KIND_OF_COUNT.values(), 0))
    teacher_usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TEACHER_USAGE, 0))
    teacher_cache_hits: int = 0
    # Per round: the teacher usage names and ``cache_hits`` (what each round's eval report shows).
    teacher_by_round: dict[int, dict[str, int]] = field(default_factory=dict)


class JournalIndex:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._offsets: list[int] = []  # start offset of line k+1 (seq k+1)
        self._end = 0  # bytes of complete lines indexed
        self._identity: tuple[int, int] | None = None
        self._stage_started_ms: dict[str, int] = {}
        self.aggregates = JournalAggregates()

    def _refresh_locked(self) -> None:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            self._reset()
            return
        with fh:
            st = os.fstat(fh.fileno())
            identity = (st.st_dev, st.st_ino)
            if identity != self._identity or st.st_size < self._end:
                # A new or rewritten journal: index it from the start.
                self._reset()
                self._identity = identity
            if st.st_size == self._end:
                return
            fh.seek(self._end)
            chunk = fh.read(st.st_size - self._end)
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                break
            self._offsets.append(self._end + start)
            self._fold(chunk[start:newline])
            start = newline + 1
        self._end += start

    def _fold(self, line: bytes) -> None:
        agg = self.aggregates
        agg.last_seq = len(self._offsets)
        try:
            event = json.loads(line)
        except ValueError:
            return
        stage = event.get("stage") if isinstance(event, dict) else None
        if not isinstance(stage, str) or stage not in agg.stages:
            return
        round_no = event.get("round")
        per_round = (agg.teacher_by_round.setdefault(round_no, {**dict.fromkeys(TEACHER_USAGE, 0),
                                                                 "cache_hits": 0})
                     if isinstance(round_no, int) and not isinstance(round_no, bool) else {})
        usage = event.get("usage_delta")
        if isinstance(usage, dict):
            for name in TEACHER_USAGE:
                value = usage.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    agg.teacher_usage[name] += value
                    if per_round:
                        per_round[name] += value
        counters = event.get("counters_delta")
        hits = counters.get("teacher_cache_hits") if isinstance(counters, dict) else None
        if isinstance(hits, int) and not isinstance(hits, bool):
            agg.teacher_cache_hits += hits
            if per_round:
                per_round["cache_hits"] += hits
        ts = event.get("ts")
        ts_ms = parse_iso_ms(ts) if isinstance(ts, str) and is_iso_ms(ts) else None
        kind = event.get("event_type")
        if kind == "stage_start" and ts_ms is not None:
            self._stage_started_ms[stage] = ts_ms
        elif kind == "stage_end":
            stats = agg.stages[stage]
            outcome = STAGE_OUTCOMES.get(str(event.get("level")), "failed")
            stats.runs[outcome] += 1
            started = self._stage_started_ms.pop(stage, None)
            if started is not None and ts_ms is not None:
                stats.last_duration_ms = max(0, ts_ms - started)
                stats.duration_ms_sum += stats.last_duration_ms
            counters = event.get("counters_delta")
            if outcome == "ok" and isinstance(counters, dict):
                for name, outcome_name in DATA_KIND_OF_COUNT.items():
                    value = counters.get(name)
                    if isinstance(value, int) and not isinstance(value, bool):
                        agg.samples[outcome_name] += value

    def refresh(self) -> JournalAggregates:
        with self._lock:
            self._refresh_locked()
            return self.aggregates

    def page(self, since: int, limit: int) -> tuple[list[bytes], int]:
        """Raw lines (no newline) with seq > since, at most ``limit``; and the next ``since``."""
        with self._lock:
            self._refresh_locked()
            first = min(since, len(self._offsets))
            last = min(first + limit, len(self._offsets))
            if first == last:
                return [], since
            begin = self._offsets[first]
            end = self._offsets[last] if last < len(self._offsets) else self._end
            with open(self.path, "rb") as fh:
                fh.seek(begin)
                data = fh.read(end - begin)
        lines = data.split(b"\n")[: last - first]
        return lines, last


__all__ = ["JournalAggregates", "JournalIndex", "StageStats"]
