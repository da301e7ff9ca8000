"""``/metrics`` in the Prometheus text format (version 0.0.4).

Names carry the ``heidi_`` prefix and base units (seconds); counters end in ``_total``.
The daemon renders the same text (``cpp/daemon/metrics.cpp``).
"""

from __future__ import annotations

import json

from ..run_layout import DATA_KIND_OF_COUNT, DISPLAY_STATES, STAGES
from .journal_index import STAGE_OUTCOMES, JournalAggregates

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def format_number(value: float | int) -> str:
    """Integers as integers, floats as the shortest text that reads back the same."""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def format_ms_as_seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def render(status_json: str, journal: JournalAggregates, eval_rounds: list[dict]) -> str:
    status = json.loads(status_json)
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("heidi_state", "gauge", "Current run state (1 for the state the run is in).")
    for state in DISPLAY_STATES:
        out.append(f'heidi_state{{state="{state}"}} {1 if status.get("state") == state else 0}')
    family("heidi_paused", "gauge", "1 while the run is paused.")
    out.append(f"heidi_paused {1 if status.get('paused') else 0}")
    family("heidi_round", "gauge", "Current round (0 before the first round).")
    out.append(f"heidi_round {int(status.get('current_round') or 0)}")
    family("heidi_rounds", "gauge", "Rounds the run is configured for.")
    out.append(f"heidi_rounds {int(status.get('rounds_total') or 0)}")

    family("heidi_stage_runs_total", "counter", "Stage runs by outcome (ok, failed, cancelled).")
    for stage in STAGES:
        for outcome in STAGE_OUTCOMES.values():
            count = journal.stages[stage].runs[outcome]
            out.append(f'heidi_stage_runs_total{{stage="{stage}",outcome="{outcome}"}} {count}')
    family("heidi_stage_duration_seconds", "summary", "Wall time of finished stage runs.")
    for stage in STAGES:
        stats = journal.stages[stage]
        runs = sum(stats.runs.values())
        out.append(f'heidi_stage_duration_seconds_sum{{stage="{stage}"}} '
                   f"{format_ms_as_seconds(stats.duration_ms_sum)}")
        out.append(f'heidi_stage_duration_seconds_count{{stage="{stage}"}} {runs}')
    family("heidi_stage_last_duration_seconds", "gauge", "Wall time of the latest run of a stage.")
    for stage in STAGES:
        out.append(f'heidi_stage_last_duration_seconds{{stage="{stage}"}} '
                   f"{format_ms_as_seconds(journal.stages[stage].last_duration_ms)}")

    family("heidi_samples_total", "counter", "Samples written, by outcome, over all rounds.")
    for outcome in DATA_KIND_OF_COUNT.values():
        out.append(f'heidi_samples_total{{outcome="{outcome}"}} {journal.samples[outcome]}')
    family("heidi_round_samples", "gauge", "Samples of the current round, by outcome.")
    counts = status.get("counts") or {}
    for counter, outcome in DATA_KIND_OF_COUNT.items():
        out.append(f'heidi_round_samples{{outcome="{outcome}"}} {int(counts.get(counter) or 0)}')

    latest = next((r for r in reversed(eval_rounds) if r.get("pass_at_1") is not None), None)
    if latest is not None:
        family("heidi_pass_at_1", "gauge", "pass@1 of the latest evaluated round (0..1).")
        out.append(f"heidi_pass_at_1 {format_number(latest['pass_at_1'])}")
        family("heidi_pass_at_1_round", "gauge", "Round of the latest evaluation.")
        out.append(f"heidi_pass_at_1_round {latest['round']}")

    family("heidi_teacher_tokens_total", "counter",
           "Teacher tokens paid for, by kind (answers from the response cache cost none).")
    out.append(f'heidi_teacher_tokens_total{{kind="prompt"}} {journal.teacher_usage["prompt_tokens"]}')
    out.append(f'heidi_teacher_tokens_total{{kind="completion"}} '
               f'{journal.teacher_usage["completion_tokens"]}')
    family("heidi_teacher_cost_total", "counter",
           "Teacher cost in the unit of HEIDI_TEACHER_PRICE_* (0 without prices).")
    out.append(f"heidi_teacher_cost_total {format_number(journal.teacher_usage['cost_micros'] / 1e6)}")
    family("heidi_teacher_cache_hits_total", "counter", "Teacher answers taken from the response cache.")
    out.append(f"heidi_teacher_cache_hits_total {journal.teacher_cache_hits}")

    family("heidi_journal_seq", "gauge", "Sequence number of the last journal event.")
    out.append(f"heidi_journal_seq {journal.last_seq}")
    return "\n".join(out) + "\n"


__all__ = ["CONTENT_TYPE", "render"]
