"""The run's contract in one place: the names of SPEC §4-§6 and what lives where in OUT_DIR.

Stage, state and level names, the status counts and the data file each one counts, and
every path below OUT_DIR (relative, with ``/``, as the journal reports them). The Core,
the stages, the servers and the CLI take them from here. The C++ engine keeps its twin in
``cpp/src/core.cpp``; the dashboard script (``dashboard/dashboard.js``), which both
servers serve as a static file, names the running states itself.
"""

from __future__ import annotations

import re
from pathlib import Path

# ----- names ------------------------------------------------------------------------

# The stages in the order a round runs them; journal events add "pipeline" (SPEC §6).
STAGES = ("generate", "validate", "test", "train", "eval")
PIPELINE = "pipeline"
EVENT_STAGES = (PIPELINE, *STAGES)
MODES = ("full", "collect")
LEVELS = ("debug", "info", "warn", "error", "critical")

IDLE, ERROR, PAUSED = "IDLE", "ERROR", "PAUSED"
# The running state that runs each stage (SPEC §4).
STATE_OF_STAGE = {
    "generate": "COLLECTING",
    "validate": "VALIDATING",
    "test": "TESTING",
    "train": "FINALIZING",
    "eval": "EVALUATING",
}
STAGE_OF_STATE = {state: stage for stage, state in STATE_OF_STAGE.items()}
RUNNING_STATES = tuple(STAGE_OF_STATE)
# The states in SPEC §4 order, then PAUSED, which the status shows while the flag is set.
STATES = (IDLE, *RUNNING_STATES, ERROR)
DISPLAY_STATES = (*STATES, PAUSED)
# What tick() returns when it has nothing to run.
RESTING_STATES = (IDLE, ERROR, PAUSED)

# The status counts of a round -> the kind of data file each one counts, in SPEC §5 order.
DATA_KIND_OF_COUNT = {
    "raw_lines": "raw",
    "clean_lines": "clean",
    "rejected_lines": "rejected",
    "tested_lines": "tested",
    "test_failed": "test_failed",
    "train_lines": "train",
    "val_lines": "val",
}
COUNT_KEYS = tuple(DATA_KIND_OF_COUNT)

# ----- OUT_DIR ----------------------------------------------------------------------

STATE_DIR = "state"
RUN_STATE_FILE = f"{STATE_DIR}/run_state.json"
RUN_LOCK_FILE = f"{STATE_DIR}/run.lock"
# Where a running server says where it is, and its bearer token (heidid and heidi serve).
DISCOVERY_FILE = f"{STATE_DIR}/daemon.json"
TOKEN_FILE = f"{STATE_DIR}/daemon.token"
JOURNAL_DIR = "journal"
JOURNAL_FILE = f"{JOURNAL_DIR}/events.jsonl"
# File latches (train_now, pause, stop) that a `heidi run` with no server picks up.
CONTROL_DIR = "control"
CONTROL_LATCHES = ("train_now", "pause", "stop")
DATA_DIR = "data"
LOGS_DIR = "logs"
ADAPTERS_DIR = "out_lora"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
TRAIN_METRICS_NAME = "metrics.json"
EVAL_DIR = "eval"
EVAL_BASELINE_FILE = f"{EVAL_DIR}/baseline.json"
BEST_ADAPTER = "best_adapter"
TEACHER_CACHE_FILE = "cache/teacher_responses.jsonl"

# Names of the per-round files inside their folders; ``{round}`` is the round number.
DATA_NAME = "{kind}_round_{round}.jsonl"
LOG_NAME = "{stage}_round_{round}.log"
ADAPTER_NAME = "round_{round}"
EVAL_REPORT_NAME = "report_round_{round}.json"
VALIDATE_INDEX_NAME = "validate_index_round_{round}.npz"  # in state/: the dedup snapshot


def data_file(kind: str, round_: int) -> str:
    return f"{DATA_DIR}/{DATA_NAME.format(kind=kind, round=round_)}"


def log_file(stage: str, round_: int) -> str:
    return f"{LOGS_DIR}/{LOG_NAME.format(stage=stage, round=round_)}"


def adapter_dir(round_: int) -> str:
    return f"{ADAPTERS_DIR}/{ADAPTER_NAME.format(round=round_)}"


def eval_report(round_: int) -> str:
    return f"{EVAL_DIR}/{EVAL_REPORT_NAME.format(round=round_)}"


def rounds_present(folder: str | Path, name: str, **fields: str) -> list[int]:
    """The rounds, in order, of the files in ``folder`` named by the template ``name``
    (one of the ``*_NAME`` above, with its other fields given)."""
    head, _, tail = name.format(**fields, round="\0").partition("\0")
    pattern = re.compile(re.escape(head) + "([0-9]+)" + re.escape(tail))
    rounds = []
    for path in Path(folder).glob(f"{head}*{tail}"):
        match = pattern.fullmatch(path.name)
        if match:
            rounds.append(int(match.group(1)))
    return sorted(rounds)


__all__ = [
    "ADAPTERS_DIR",
    "ADAPTER_FILES",
    "ADAPTER_NAME",
    "BEST_ADAPTER",
    "CONTROL_DIR",
    "CONTROL_LATCHES",
    "COUNT_KEYS",
    "DATA_DIR",
    "DATA_KIND_OF_COUNT",
    "DATA_NAME",
    "DISCOVERY_FILE",
    "DISPLAY_STATES",
    "ERROR",
    "EVAL_BASELINE_FILE",
    "EVAL_DIR",
    "EVAL_REPORT_NAME",
    "EVENT_STAGES",
    "IDLE",
    "JOURNAL_DIR",
    "JOURNAL_FILE",
    "LEVELS",
    "LOGS_DIR",
    "LOG_NAME",
    "MODES",
    "PAUSED",
    "PIPELINE",
    "RESTING_STATES",
    "RUNNING_STATES",
    "RUN_LOCK_FILE",
    "RUN_STATE_FILE",
    "STAGES",
    "STAGE_OF_STATE",
    "STATES",
    "STATE_DIR",
    "STATE_OF_STAGE",
    "TEACHER_CACHE_FILE",
    "TOKEN_FILE",
    "TRAIN_METRICS_NAME",
    "VALIDATE_INDEX_NAME",
    "adapter_dir",
    "data_file",
    "eval_report",
    "log_file",
    "rounds_present",
]
