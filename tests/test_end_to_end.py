"""Two full rounds of the real loop with the ``tiny`` model, through the ``heidi`` CLI.

Every stage runs for real (procedural tasks, reference teacher, validation, sandboxed
tests, LoRA training, sandboxed eval) on both backends, and every file of SPEC §5 is
checked for what it must contain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ml, pytest.mark.slow]

SAMPLE_KEYS = ("id", "task_id", "task_source", "instruction", "prompt", "completion", "test",
               "entry_point", "teacher", "round", "metadata")
STATE_KEYS = ["schema", "run_id", "mode", "state", "paused", "stage", "current_round",
              "rounds_total", "last_write_ts", "counts", "train_now_pending", "stop_requested",
              "last_completed", "last_error", "journal_head", "waiting_for_train_now"]
ROUNDS = 2
SAMPLES = 16
DEV_TASKS = 6
TEST_TASKS = 10


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_cli(backend_name: str, out_dir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIDI_") or k == "HEIDI_REQUIRE_NATIVE"}
    env.update(
        HEIDI_BACKEND=backend_name,
        BASE_MODEL="tiny",
        TRAIN_STEPS="12",
        SEQ_LEN="256",
        SAMPLES_PER_ROUND=str(SAMPLES),
        HEIDI_SANDBOX_WORKERS="2",
        HEIDI_DEV_TASKS=str(DEV_TASKS),
        HEIDI_TEST_TASKS=str(TEST_TASKS),
    )
    return subprocess.run(
        [sys.executable, "-m", "heidi_engine.cli", "run", "--out-dir", str(out_dir),
         "--rounds", str(ROUNDS), "--quiet", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_two_full_rounds_write_every_file(backend, tmp_path):
    out_dir = tmp_path / "run"
    result = _run_cli(backend.name, out_dir, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # State: complete, in the SPEC key order, head matching the journal.
    state = json.loads((out_dir / "state" / "run_state.json").read_text())
    assert list(state) == STATE_KEYS
    assert state["schema"] == "heidi.run_state/1"
    assert state["state"] == "IDLE" and state["last_error"] is None
    assert state["current_round"] == ROUNDS and state["rounds_total"] == ROUNDS
    assert state["last_completed"] == {"round": ROUNDS, "stage": "eval"}

    # Journal: verifies, ends complete, every stage of every round completed exactly once.
    verdict = backend.verify_journal(str(out_dir))
    assert verdict.ok, verdict.reason
    events = _jsonl(out_dir / "journal" / "events.jsonl")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert state["journal_head"]["seq"] == events[-1]["seq"]
    assert events[-1]["event_type"] == "pipeline_complete"
    completed = [(e["round"], e["stage"]) for e in events
                 if e["event_type"] == "stage_end" and e["level"] == "info"]
    stages = ["generate", "validate", "test", "train", "eval"]
    assert completed == [(r, s) for r in range(1, ROUNDS + 1) for s in stages]
    assert any(e["event_type"] == "progress" for e in events), "stage progress was journaled"

    for r in range(1, ROUNDS + 1):
        data = out_dir / "data"
        raw = _jsonl(data / f"raw_round_{r}.jsonl")
        clean = _jsonl(data / f"clean_round_{r}.jsonl")
        rejected = _jsonl(data / f"rejected_round_{r}.jsonl")
        tested = _jsonl(data / f"tested_round_{r}.jsonl")
        failed = _jsonl(data / f"test_failed_round_{r}.jsonl")
        train = _jsonl(data / f"train_round_{r}.jsonl")
        val = _jsonl(data / f"val_round_{r}.jsonl")
        assert len(raw) == SAMPLES
        for sample in raw:
            assert list(sample)[: len(SAMPLE_KEYS)] == list(SAMPLE_KEYS)
            assert sample["round"] == r and sample["teacher"] == "reference"
        # Every raw sample ends up clean or rejected; every clean one tested or failed.
        assert sorted(s["id"] for s in clean + rejected) == sorted(s["id"] for s in raw)
        assert all(s.get("reject_reason") for s in rejected)
        assert sorted(s["id"] for s in tested + failed) == sorted(s["id"] for s in clean)
        assert tested, "reference answers pass their tests"
        assert all(s["test_result"]["passed"] for s in tested)
        assert all(s["reject_reason"] == "test_failed" for s in failed)
        assert sorted(s["id"] for s in train + val) == sorted(s["id"] for s in tested)
        assert train and val

        lora = out_dir / "out_lora" / f"round_{r}"
        assert (lora / "adapter_model.safetensors").stat().st_size > 0
        assert json.loads((lora / "adapter_config.json").read_text())["r"] > 0
        metrics = json.loads((lora / "metrics.json").read_text())
        for key in ("base_model", "resumed_from", "steps", "train_loss", "val_loss", "duration_s"):
            assert key in metrics, key
        assert metrics["base_model"] == "tiny"
        if r > 1:
            assert metrics["resumed_from"], "round 2 continues from the best adapter"
            assert metrics["steps"] < json.loads(
                (out_dir / "out_lora" / "round_1" / "metrics.json").read_text())["steps"]

        report = json.loads((out_dir / "eval" / f"report_round_{r}.json").read_text())
        for key in ("round", "n_tasks", "n_passed", "pass_at_1", "val_loss",
                    "baseline_pass_at_1", "adapter", "tasks"):
            assert key in report, key
        assert report["round"] == r and report["n_tasks"] == len(report["tasks"]) > 0
        assert report["n_passed"] == sum(t["passed"] for t in report["tasks"])
        assert report["pass_at_1"] == pytest.approx(report["n_passed"] / report["n_tasks"])
        assert all({"task_id", "passed", "reason"} <= set(t) for t in report["tasks"])
        # the headline is the test split; dev steers; both for base and adapter
        assert report["n_tasks"] == TEST_TASKS
        assert report["pass_at_1_low"] <= report["pass_at_1"] <= report["pass_at_1_high"]
        assert (report["baseline_pass_at_1_low"] <= report["baseline_pass_at_1"]
                <= report["baseline_pass_at_1_high"])
        for name, n in (("dev", DEV_TASKS), ("test", TEST_TASKS)):
            for model in ("base", "adapter"):
                part = report["sections"][name][model]
                assert part["n_tasks"] == len(part["tasks"]) == n
                assert part["n_passed"] == sum(t["passed"] for t in part["tasks"])
                assert part["ci95_low"] <= part["pass_at_1"] <= part["ci95_high"]
        assert report["sections"]["test"]["adapter"]["tasks"] == report["tasks"]
        assert report["dev_pass_at_1"] == report["sections"]["dev"]["adapter"]["pass_at_1"]
        assert isinstance(report["promotion_reason"], str) and report["promotion_reason"]
        assert report["best_adapter"] in {f"out_lora/round_{k}" for k in range(1, r + 1)}
        learning = report["learning"]
        assert 0 <= learning["now_passing"] <= learning["previous_dev_failures"] <= DEV_TASKS
        assert report["fixed_val_round"] == 1 and isinstance(report["fixed_val_loss"], float)
        assert set(report["teacher"]) == {"prompt_tokens", "completion_tokens", "cost_micros",
                                          "cache_hits"}
        held_out = {t["task_id"] for part in report["sections"].values()
                    for t in part["adapter"]["tasks"]}
        for kind in ("raw", "train", "val"):  # no held-out task reached the data
            assert not held_out & {row["task_id"] for row in
                                   _jsonl(out_dir / "data" / f"{kind}_round_{r}.jsonl")}

        log = out_dir / "logs"
        for stage in stages:
            assert (log / f"{stage}_round_{r}.log").exists()

    best = out_dir / "best_adapter"
    assert best.is_symlink()
    assert best.resolve().parent == (out_dir / "out_lora").resolve()
    assert (best / "adapter_model.safetensors").exists()
    assert (out_dir / "control").is_dir()
    leftovers = [p for p in out_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []

    # A finished run is not re-run.
    again = _run_cli(backend.name, out_dir, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(_jsonl(out_dir / "journal" / "events.jsonl")) == len(events)
