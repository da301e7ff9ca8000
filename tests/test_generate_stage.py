"""The generate stage end to end: every task source, self-correction, bad config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from heidi_engine.io import read_jsonl, write_json_atomic
from heidi_engine.tasks import procedural, write_task_file
from heidi_engine.telemetry import PREFIX

PYTHON_DIR = str(Path(__file__).resolve().parents[1] / "python")
SAMPLE_KEYS = [
    "id",
    "task_id",
    "task_source",
    "instruction",
    "prompt",
    "completion",
    "test",
    "entry_point",
    "teacher",
    "round",
    "metadata",
]


def run_stage(out_dir: Path, round: int, **env: str) -> subprocess.CompletedProcess:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("HEIDI_", "SAMPLES_", "SEED"))
    }
    environ.update({"PYTHONPATH": PYTHON_DIR, "HEIDI_FSYNC": "0", "SAMPLES_PER_ROUND": "8", **env})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "heidi_engine.stages.generate",
            "--round",
            str(round),
            "--out-dir",
            str(out_dir),
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def events(result: subprocess.CompletedProcess) -> list[dict]:
    return [
        json.loads(line[len(PREFIX) :])
        for line in result.stdout.splitlines()
        if line.startswith(PREFIX)
    ]


def raw(out_dir: Path, round: int) -> list[dict]:
    return read_jsonl(out_dir / "data" / f"raw_round_{round}.jsonl")


def passes(sample: dict) -> bool:
    program = (
        sample["prompt"]
        + sample["completion"]
        + "\n"
        + sample["test"]
        + "\ncheck("
        + sample["entry_point"]
        + ")\n"
    )
    return (
        subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30).returncode
        == 0
    )


@pytest.mark.parametrize("teacher", ["reference", "mock"])
def test_procedural_round_writes_the_sample_schema(tmp_path, teacher):
    result = run_stage(tmp_path, 1, HEIDI_TEACHER=teacher)
    assert result.returncode == 0, result.stderr
    rows = raw(tmp_path, 1)
    assert len(rows) == 8
    for row in rows:
        assert list(row) == SAMPLE_KEYS
        assert (
            row["task_source"] == "procedural" and row["teacher"] == teacher and row["round"] == 1
        )
        assert row["prompt"].rstrip() in row["instruction"]
        assert row["metadata"]["split"] == "train"
    assert len({row["id"] for row in rows}) == 8
    if teacher == "reference":
        assert all(passes(row) for row in rows)
    log = events(result)
    assert log[0]["counters_delta"]["tasks_planned"] == 8
    assert sum(e.get("counters_delta", {}).get("teacher_answers", 0) for e in log) == 8
    assert log[-1]["artifact_paths"] == ["data/raw_round_1.jsonl"]
    if teacher == "mock":
        assert sum(e.get("usage_delta", {}).get("completion_tokens", 0) for e in log) > 0
    again = tmp_path / "again"
    assert run_stage(again, 1, HEIDI_TEACHER=teacher).returncode == 0
    assert raw(again, 1) == rows  # deterministic, ids included


def test_later_rounds_draw_fresh_tasks(tmp_path):
    for round in (1, 2):
        assert run_stage(tmp_path, round).returncode == 0
    first, second = raw(tmp_path, 1), raw(tmp_path, 2)
    assert not {r["task_id"] for r in first} & {r["task_id"] for r in second}
    assert {r["round"] for r in second} == {2}


def test_file_source_takes_all_tasks_once_when_few_then_favours_unanswered(tmp_path):
    tasks = procedural.generate(21, 12)
    small = tmp_path / "small.jsonl"
    write_task_file(small, tasks[:5])
    result = run_stage(tmp_path / "a", 1, HEIDI_TASK_SOURCE="file", HEIDI_TASK_FILE=str(small))
    assert result.returncode == 0, result.stderr
    rows = raw(tmp_path / "a", 1)
    assert [r["task_id"] for r in rows] == [t.task_id for t in tasks[:5]]
    assert {r["task_source"] for r in rows} == {"file"}

    big = tmp_path / "big.jsonl"
    write_task_file(big, tasks)
    out = tmp_path / "b"
    env = {"HEIDI_TASK_SOURCE": "file", "HEIDI_TASK_FILE": str(big)}
    assert run_stage(out, 1, **env).returncode == 0
    assert run_stage(out, 2, **env).returncode == 0
    first, second = {r["task_id"] for r in raw(out, 1)}, [r["task_id"] for r in raw(out, 2)]
    assert len(first) == 8 and len(second) == 8
    unanswered = {t.task_id for t in tasks} - first
    assert unanswered <= set(second)  # the 4 never-answered tasks come before repeats


def test_file_source_never_trains_on_held_out_tasks(tmp_path):
    tasks = procedural.generate(22, 6)
    write_task_file(tmp_path / "train.jsonl", tasks)
    write_task_file(tmp_path / "eval.jsonl", tasks[:2])
    result = run_stage(
        tmp_path / "out",
        1,
        HEIDI_TASK_SOURCE="file",
        HEIDI_TASK_FILE=str(tmp_path / "train.jsonl"),
        HEIDI_EVAL_TASK_FILE=str(tmp_path / "eval.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    assert {r["task_id"] for r in raw(tmp_path / "out", 1)} == {t.task_id for t in tasks[2:]}


def test_llm_gen_source_with_the_mock_teacher(tmp_path):
    result = run_stage(
        tmp_path, 1, HEIDI_TASK_SOURCE="llm_gen", HEIDI_TEACHER="mock", SAMPLES_PER_ROUND="5"
    )
    assert result.returncode == 0, result.stderr
    rows = raw(tmp_path, 1)
    assert len(rows) == 5
    for row in rows:
        assert row["task_source"] == "llm_gen" and row["task_id"].startswith("llm/")
        assert "Invent" in row["instruction"] and "def check(candidate)" in row["test"]
    verdicts = [passes(row) for row in rows]
    assert any(verdicts)  # the mock teacher's inventions are mostly right


def test_self_correction_revisits_failed_dev_tasks_first_and_never_test_tasks(tmp_path):
    dev = procedural.generate(42, 6, "dev")
    test = procedural.generate(42, 4, "test")
    failed = [dev[0].task_id, dev[3].task_id]

    def section(tasks, failing):
        rows = [{"task_id": t.task_id, "passed": t.task_id not in failing, "reason": "ok"}
                for t in tasks]
        return {"base": {"tasks": rows}, "adapter": {"tasks": rows}}

    report = {
        "round": 1,
        "n_tasks": 4,
        "n_passed": 0,
        "pass_at_1": 0.0,
        # every test task failed: none of them may be revisited
        "tasks": section(test, {t.task_id for t in test})["adapter"]["tasks"],
        "sections": {"dev": section(dev, set(failed)),
                     "test": section(test, {t.task_id for t in test})},
    }
    write_json_atomic(tmp_path / "eval" / "report_round_1.json", report)
    result = run_stage(tmp_path, 2, SAMPLES_PER_ROUND="10")
    assert result.returncode == 0, result.stderr
    rows = raw(tmp_path, 2)
    assert len(rows) == 10
    revisits = [r for r in rows if "revisit_of" in r["metadata"]]
    assert len(revisits) == 4  # two variants per failed dev task, within half the round
    assert rows[:4] == revisits  # first in the file
    assert [r["metadata"]["revisit_of"] for r in revisits] == [
        failed[0],
        failed[1],
        failed[0],
        failed[1],
    ]
    families = {t.task_id: t.family for t in dev}
    held_out = dev + test
    for row in revisits:
        assert row["metadata"]["family"] == families[row["metadata"]["revisit_of"]]
        assert row["metadata"]["split"] == "train"
    for row in rows:
        assert row["task_id"] not in {t.task_id for t in held_out}
        for task in held_out:  # no held-out prompt is shown to the teacher or stored
            assert task.prompt not in row["instruction"] and task.prompt != row["prompt"]
    assert events(result)[0]["counters_delta"]["revisit_tasks"] == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HEIDI_TEACHER": "gpt"},
            "invalid value for HEIDI_TEACHER: 'gpt' (valid: reference, openai, local, mock)",
        ),
        ({"HEIDI_TASK_SOURCE": "template"}, "invalid value for HEIDI_TASK_SOURCE: 'template'"),
        ({"HEIDI_TASK_SOURCE": "file"}, "HEIDI_TASK_SOURCE=file needs HEIDI_TASK_FILE"),
        (
            {"HEIDI_TASK_SOURCE": "file", "HEIDI_TASK_FILE": "/nonexistent/tasks.jsonl"},
            "task file not found",
        ),
        ({"HEIDI_TASK_SOURCE": "llm_gen"}, "needs a teacher that writes text"),
        ({"HEIDI_TEACHER": "openai"}, "HEIDI_TEACHER_BASE_URL"),
        ({"SAMPLES_PER_ROUND": "zero"}, "SAMPLES_PER_ROUND"),
    ],
)
def test_bad_config_exits_non_zero_with_a_clear_message(tmp_path, env, message):
    result = run_stage(tmp_path, 1, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "data" / "raw_round_1.jsonl").exists()
