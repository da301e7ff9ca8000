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


# --- the teacher for real: cache, kill -9 and resume, samples, cost -----------------

import signal  # noqa: E402
import time  # noqa: E402


def openai_env(server, backend, **env) -> dict:
    search = [PYTHON_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"HEIDI_TEACHER": "openai", "HEIDI_TEACHER_BASE_URL": server.base_url,
            "HEIDI_TEACHER_MODEL": "coder", "HEIDI_BACKEND": backend.name,
            "PYTHONPATH": os.pathsep.join(search), **env}


def start_stage(out_dir: Path, round: int, env: dict) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("HEIDI_", "SAMPLES_", "SEED"))}
    environ.update({"HEIDI_FSYNC": "0", "SAMPLES_PER_ROUND": "8", **env})
    return subprocess.Popen(
        [sys.executable, "-m", "heidi_engine.stages.generate", "--round", str(round),
         "--out-dir", str(out_dir)],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def cache_lines(out_dir: Path) -> int:
    path = out_dir / "cache" / "teacher_responses.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_kill_9_mid_round_then_rerun_pays_each_answer_once(tmp_path, fake, backend):
    """kill -9 while request 7 of 16 is in flight; the re-run sends only the 10 missing
    requests, and every answer the server gave was paid exactly once."""
    env = openai_env(fake, backend, HEIDI_TEACHER_SAMPLES="2", HEIDI_TEACHER_CONCURRENCY="1",
                     HEIDI_TEACHER_TEMPERATURE="0.7")
    stage = start_stage(tmp_path, 1, env)

    def kill_at_seventh(n, prompt):
        if n == 7:
            os.kill(stage.pid, signal.SIGKILL)
            return True
        return False

    fake.on_request = kill_at_seventh
    stage.communicate(timeout=120)
    assert stage.returncode == -signal.SIGKILL
    assert not (tmp_path / "data" / "raw_round_1.jsonl").exists()
    assert cache_lines(tmp_path) == 6 and fake.answered == 6
    fake.on_request = None
    result = run_stage(tmp_path, 1, **env)
    assert result.returncode == 0, result.stderr
    assert fake.answered == 16 == cache_lines(tmp_path)  # requests paid == distinct answers
    assert len(fake.requests) == 17  # + the one cut off by the kill, never answered
    log = events(result)
    assert sum(e.get("counters_delta", {}).get("teacher_cache_hits", 0) for e in log) == 6
    # A third run of the round asks nothing at all.
    assert run_stage(tmp_path, 1, **env).returncode == 0
    assert len(fake.requests) == 17
    # --no-cache (HEIDI_TEACHER_CACHE=0) asks again.
    assert run_stage(tmp_path, 1, **env, HEIDI_TEACHER_CACHE="0").returncode == 0
    assert len(fake.requests) == 33


@pytest.mark.slow
def test_kill_9_at_any_moment_resends_only_missing_answers(tmp_path, fake, backend):
    fake.latency_s = 0.05
    env = openai_env(fake, backend, HEIDI_TEACHER_SAMPLES="3", HEIDI_TEACHER_CONCURRENCY="4",
                     SAMPLES_PER_ROUND="10")
    stage = start_stage(tmp_path, 1, env)
    deadline = time.monotonic() + 60
    while cache_lines(tmp_path) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    stage.kill()
    stage.communicate(timeout=60)
    kept = cache_lines(tmp_path)
    assert 12 <= kept < 30
    before = len(fake.requests)
    result = run_stage(tmp_path, 1, **env)
    assert result.returncode == 0, result.stderr
    assert len(fake.requests) - before == 30 - kept  # nothing stored is asked again
    assert cache_lines(tmp_path) == 30
    assert 30 <= fake.answered <= 30 + 4  # at most the requests in flight at the kill


def test_usage_and_cost_are_reported(tmp_path, fake, backend):
    env = openai_env(fake, backend, HEIDI_TEACHER_PRICE_PROMPT="2.5",
                     HEIDI_TEACHER_PRICE_COMPLETION="10")
    result = run_stage(tmp_path, 1, **env)
    assert result.returncode == 0, result.stderr
    usage = {}
    for event in events(result):
        for key, value in event.get("usage_delta", {}).items():
            usage[key] = usage.get(key, 0) + value
    prompt_tokens = sum(len(r["body"]["messages"][-1]["content"].split()) for r in fake.requests)
    assert usage["prompt_tokens"] == prompt_tokens
    assert usage["cost_micros"] == round(prompt_tokens * 2.5 + usage["completion_tokens"] * 10)
    again = run_stage(tmp_path, 1, **env)  # all from the cache: nothing paid
    assert not any(e.get("usage_delta") for e in events(again))


def test_mock_teacher_samples_keep_distinct_answers(tmp_path):
    result = run_stage(tmp_path, 1, HEIDI_TEACHER="mock", HEIDI_TEACHER_SAMPLES="4",
                       SAMPLES_PER_ROUND="10")
    assert result.returncode == 0, result.stderr
    rows = raw(tmp_path, 1)
    per_task = {}
    for row in rows:
        per_task.setdefault(row["task_id"], []).append(row["completion"])
    assert len(per_task) == 10 and len(rows) > 10
    assert all(len(set(c)) == len(c) for c in per_task.values())  # no answer twice
    assert {row["metadata"].get("sample", 0) for row in rows} > {0}
    assert len({row["id"] for row in rows}) == len(rows)


def test_corrupt_cache_fails_the_stage_naming_the_file(tmp_path, fake, backend):
    path = tmp_path / "cache" / "teacher_responses.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("not json\n")
    result = run_stage(tmp_path, 1, **openai_env(fake, backend))
    assert result.returncode == 2
    assert f"{path}:1: corrupt teacher cache line (not valid JSON)" in result.stderr
    assert "Traceback" not in result.stderr and fake.requests == []


def test_keep_per_task_keeps_the_first_k_passing_answers():
    from heidi_engine.stages.test import keep_per_task

    rows = [{"task_id": t, "n": i} for i, t in enumerate("aabaacb")]
    kept, surplus = keep_per_task(rows, 2)
    assert [r["n"] for r in kept] == [0, 1, 2, 5, 6] and surplus == 2


def test_sibling_samples_of_a_task_survive_near_duplicate_removal(tmp_path):
    """Two sampled answers to one procedural task differing by one token both reach the
    test stage (where the right one passes and the wrong one is a preference pair's
    rejected answer); the same answer twice is still a duplicate."""
    from heidi_engine.validation.pipeline import DedupState, Validator

    [task] = procedural.generate(5, 1)
    base = {"task_id": task.task_id, "task_source": "procedural", "instruction": "solve it",
            "prompt": task.prompt, "test": task.test, "entry_point": task.entry_point,
            "teacher": "openai", "round": 1}
    body = task.canonical_solution
    rows = [{**base, "id": "s0", "completion": body, "metadata": {}},
            {**base, "id": "s1", "completion": body + "    # checked\n", "metadata": {"sample": 1}},
            {**base, "id": "s2", "completion": body, "metadata": {"sample": 2}}]
    results = Validator(DedupState()).check_lines([json.dumps(r) for r in rows])
    assert [reason for _, reason in results] == [None, None, "duplicate"]
