"""Both backends write byte-identical journal and state files (SPEC §2).

A fixed scripted run under ``HEIDI_FAKE_TIME`` — failures, resume, train-now, pause, stop,
a restart on the same OUT_DIR, progress lines full of quotes, backslashes, non-ASCII and
control characters — must reproduce the files checked in under ``tests/data/``.
``HEIDI_UPDATE_GOLDEN=1`` rewrites them from the python backend.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
GOLDEN_EVENTS = DATA / "golden_core_events.jsonl"
GOLDEN_STATE = DATA / "golden_core_state.json"
STAGE_SCRIPT = Path(__file__).parent / "stage_scripts" / "fake_stage.py"
FAKE_TIME = "2026-01-01T00:00:00.000Z"
# Read at import: the clean_env fixture removes HEIDI_* variables during the test.
UPDATE_GOLDEN = os.environ.get("HEIDI_UPDATE_GOLDEN") == "1"


def scripted_run(backend, out_dir: Path, marker: Path) -> None:
    def command(stage: str, *extra: str) -> str:
        return shlex.join([sys.executable, str(STAGE_SCRIPT), stage, *extra])

    overrides = {f"stage_cmd_{stage}": command(stage) for stage in
                 ("generate", "validate", "test", "train", "eval")}
    overrides["stage_cmd_generate"] = command("generate", "--tricky")
    overrides["stage_cmd_test"] = command("test", "--fail-once", str(marker))
    config = backend.Config.from_env(
        out_dir=str(out_dir), rounds=2, pipeline_mode="collect", fake_time=FAKE_TIME,
        fsync=False, **overrides,
    )
    core = backend.Core(config)
    core.start("collect")
    assert [core.tick() for _ in range(3)] == ["VALIDATING", "TESTING", "ERROR"]
    core.start("collect")  # re-runs the failed test stage
    assert core.tick() == "IDLE"
    core.pause()
    assert core.tick() == "PAUSED"
    core.resume()
    assert core.train_now() is True
    assert [core.tick() for _ in range(3)] == ["EVALUATING", "COLLECTING", "VALIDATING"]
    core.stop()
    core.shutdown()

    restarted = backend.Core(config)  # a new process on the same run directory
    restarted.start("full")
    assert restarted.run_until_idle() == "IDLE"
    restarted.shutdown()


@pytest.mark.usefixtures("clean_env")
def test_scripted_run_matches_the_golden_files(backend, tmp_path):
    out_dir = tmp_path / "out"
    scripted_run(backend, out_dir, tmp_path / "test-failed-once")
    events = (out_dir / "journal" / "events.jsonl").read_bytes()
    state = (out_dir / "state" / "run_state.json").read_bytes()
    assert backend.verify_journal(str(out_dir)).ok
    if UPDATE_GOLDEN and backend.name == "python":
        GOLDEN_EVENTS.write_bytes(events)
        GOLDEN_STATE.write_bytes(state)
    assert events == GOLDEN_EVENTS.read_bytes()
    assert state == GOLDEN_STATE.read_bytes()


def test_golden_files_cover_the_tricky_characters():
    text = GOLDEN_EVENTS.read_text(encoding="ascii")
    for escaped in ('\\"', "\\\\", "\\u00e9", "\\ud83d\\ude00", "\\u0001", "\\n", "\\t", "\\u007f"):
        assert escaped in text
    assert "[REDACTED:secret_assignment]" in text and "hunter2" not in text and "sk-abc" not in text
    # Skipped by both Cores: lone surrogates and nesting beyond 64 levels.
    assert "surrogate" not in text and "nested too deeply" not in text
    assert "nested at the limit" in text
    for event_type in ("pipeline_error", "pipeline_resume", "train_now_trigger", "paused",
                       "resumed", "train_now_complete", "pipeline_stop", "pipeline_complete"):
        assert f'"event_type":"{event_type}"' in text
