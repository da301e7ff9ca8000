"""The yardstick: interval and pass@k arithmetic, and decontamination of training data."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys

import pytest
from heidi_engine.eval_stats import intervals_overlap, mean_pass_at_k, pass_at_k, wilson_interval
from heidi_engine.io import write_jsonl_atomic
from heidi_engine.prompts import teacher_instruction
from heidi_engine.tasks import held_out_tasks, procedural, write_task_file
from heidi_engine.validation import contamination
from heidi_engine.validation.contamination import HeldOutIndex


# --- statistics --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passed", "n", "low", "high"),
    [
        # closed form at 0/n: (0, z^2 / (n + z^2))
        (0, 10, 0.0, 1.959963984540054**2 / (10 + 1.959963984540054**2)),
        (10, 10, 1 - 1.959963984540054**2 / (10 + 1.959963984540054**2), 1.0),
        # published values (e.g. Newcombe 1998, table I: 81/263 -> 0.2553-0.3662)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_interval_matches_known_values(passed, n, low, high):
    got = wilson_interval(passed, n)
    assert got[0] == pytest.approx(low, abs=1e-4) and got[1] == pytest.approx(high, abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert intervals_overlap((0.1, 0.3), (0.3, 0.5))
    assert not intervals_overlap((0.1, 0.29), (0.3, 0.5))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 1, 1, 0.1),
        (10, 0, 5, 0.0),
        (10, 10, 1, 1.0),
        (10, 2, 5, 1 - math.comb(8, 5) / math.comb(10, 5)),
        (200, 13, 10, 1 - math.comb(187, 10) / math.comb(200, 10)),
        (5, 4, 2, 1.0),  # fewer failures than k: every draw of k contains a pass
    ],
)
def test_pass_at_k_is_the_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12)


def test_mean_pass_at_k_averages_tasks():
    assert mean_pass_at_k([(4, 0), (4, 4)], 1) == 0.5
    assert mean_pass_at_k([], 1) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


# --- decontamination ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def held_out():
    return {"dev": procedural.generate(42, 30, "dev"), "test": procedural.generate(42, 60, "test")}


@pytest.fixture(scope="module")
def index(held_out):
    return HeldOutIndex(held_out)


def sample_for(task, **fields) -> dict:
    row = {"task_id": task.task_id, "instruction": teacher_instruction(task),
           "prompt": task.prompt, "completion": task.canonical_solution}
    row.update(fields)
    return row


def edit_tokens(text: str, share: float, rng: random.Random) -> str:
    """``text`` with ``share`` of its words replaced by others."""
    parts = re.findall(r"\S+|\s+", text)
    words = [i for i, part in enumerate(parts) if not part.isspace()]
    for i in rng.sample(words, max(1, int(len(words) * share))):
        parts[i] = f"w{rng.randrange(10_000)}"
    return "".join(parts)


def test_reference_answers_to_training_tasks_are_never_contaminated(index):
    # Same-family training tasks share the template of held-out ones; their own text is
    # discounted, so none of 1,000 of them is flagged.
    train = procedural.generate("decontam", 1000, "train")
    flagged = [t.task_id for t in train if index.match(sample_for(t)) is not None]
    assert flagged == []


def test_held_out_prompts_are_caught_in_every_field_even_when_edited(index, held_out):
    rng = random.Random(7)
    tasks = held_out["dev"] + held_out["test"]
    train = procedural.generate("decontam-template", 600, "train")
    by_family = {t.family: t for t in train}
    for task in tasks:
        edited = edit_tokens(task.prompt, 0.10, rng)
        file_sample = {"task_id": "file/7", "instruction": "", "prompt": edited,
                       "completion": "    return 0\n"}
        assert index.match(file_sample) is not None, task.task_id
        # pasted into a longer instruction of an llm_gen sample
        wrapped = {"task_id": "llm/x", "instruction": "Solve this:\n" + task.prompt + "\nThanks",
                   "prompt": "", "completion": "def f():\n    pass\n"}
        assert "instruction contains" in index.match(wrapped)
        # smuggled into the answer to a training task of another family, edited
        other = next(t for t in train if t.family != task.family)
        smuggled = sample_for(other, completion=other.canonical_solution + "\n" + edited)
        assert "completion contains" in index.match(smuggled)
        # and verbatim into the answer to a training task of its own family, whose prompt
        # shares most of its template
        sibling = by_family[task.family]
        smuggled = sample_for(sibling, completion=sibling.canonical_solution + "\n" + task.prompt)
        assert "completion contains" in index.match(smuggled), task.task_id


def test_held_out_ids_are_contaminated_whatever_the_text(index, held_out):
    task = held_out["test"][0]
    assert "held-out test task" in index.match({"task_id": task.task_id, "prompt": ""})
    other = procedural.generate(99, 1, "dev")[0]  # a dev task outside the measured sample
    assert "held-out dev task" in index.match({"task_id": other.task_id, "prompt": ""})
    file_index = HeldOutIndex({"file": [procedural.generate(5, 1, "train")[0]]})
    file_task = procedural.generate(5, 1, "train")[0]
    assert "held-out file task" in file_index.match(sample_for(file_task))


def test_threshold_and_shingle_size_are_documented():
    doc = contamination.__doc__
    assert "CONTAINMENT_THRESHOLD" in doc and "SHINGLE" in doc
    assert 0 < contamination.CONTAINMENT_THRESHOLD < 1


def run_validate(out_dir, env: dict) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HEIDI_FSYNC": "0", "HEIDI_DEV_TASKS": "10",
            "HEIDI_TEST_TASKS": "20", "RUN_UNIT_TESTS": "1", **env}
    import os

    base["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.run(
        [sys.executable, "-m", "heidi_engine.stages.validate", "--round", "1",
         "--out-dir", str(out_dir)],
        capture_output=True, text=True, env=base, timeout=120,
    )


def test_validate_rejects_contaminated_samples(tmp_path):
    class Cfg:
        seed, dev_tasks, test_tasks, eval_task_file, eval_file_limit = 42, 10, 20, "", 0

    sections = held_out_tasks(Cfg())
    eval_file_tasks = procedural.generate("ext", 3, "train")
    write_task_file(tmp_path / "bench.jsonl", eval_file_tasks)
    clean_tasks = procedural.generate("fresh", 6, "train")

    def row(i, task, **fields):
        return {"id": f"s{i}", "task_id": task.task_id, "task_source": "procedural",
                "instruction": teacher_instruction(task), "prompt": task.prompt,
                "completion": task.canonical_solution, "test": task.test,
                "entry_point": task.entry_point, "teacher": "reference", "round": 1,
                "metadata": {}, **fields}

    rows = [row(i, t) for i, t in enumerate(clean_tasks)]
    rows.append(row(10, sections["test"][0]))  # a held-out test task answered directly
    leaked = sections["dev"][1]
    rows.append(row(11, clean_tasks[0], id="s11", task_id="file/leak", task_source="file",
                    prompt=leaked.prompt, instruction=teacher_instruction(leaked)))
    rows.append(row(12, eval_file_tasks[0]))  # a task of HEIDI_EVAL_TASK_FILE
    write_jsonl_atomic(tmp_path / "data" / "raw_round_1.jsonl", rows)
    result = run_validate(tmp_path, {"HEIDI_EVAL_TASK_FILE": str(tmp_path / "bench.jsonl")})
    assert result.returncode == 0, result.stderr
    rejected = [json.loads(line) for line in
                (tmp_path / "data" / "rejected_round_1.jsonl").read_text().splitlines()]
    clean = [json.loads(line) for line in
             (tmp_path / "data" / "clean_round_1.jsonl").read_text().splitlines()]
    assert {r["id"]: r["reject_reason"] for r in rejected} == {
        "s10": "contaminated", "s11": "contaminated", "s12": "contaminated"}
    assert "held-out test task" in next(r for r in rejected if r["id"] == "s10")["reject_detail"]
    assert sorted(r["id"] for r in clean) == [f"s{i}" for i in range(6)]


def test_validate_names_a_bad_eval_task_file(tmp_path):
    write_jsonl_atomic(tmp_path / "data" / "raw_round_1.jsonl", [])
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    result = run_validate(tmp_path, {"HEIDI_EVAL_TASK_FILE": str(tmp_path / "bad.jsonl")})
    assert result.returncode == 2
    assert "bad.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_eval_report_carries_the_rounds_teacher_usage(out_dir, pure):
    from heidi_engine.stages.eval import teacher_usage

    journal = out_dir / "journal" / "events.jsonl"
    journal.parent.mkdir()
    writer = pure.JournalWriter(str(journal), "run_x", fsync=False)
    writer.append("progress", "answers", stage="generate", round=1,
                  usage_delta={"prompt_tokens": 100, "completion_tokens": 40, "cost_micros": 7},
                  counters_delta={"teacher_cache_hits": 2})
    writer.append("progress", "more", stage="generate", round=2,
                  usage_delta={"prompt_tokens": 5, "completion_tokens": 1})
    writer.append("progress", "more", stage="generate", round=1,
                  usage_delta={"prompt_tokens": 1, "completion_tokens": 1})
    writer.close()
    assert teacher_usage(out_dir, 1) == {"prompt_tokens": 101, "completion_tokens": 41,
                                         "cost_micros": 7, "cache_hits": 2}
    assert teacher_usage(out_dir, 2)["prompt_tokens"] == 5
    assert teacher_usage(out_dir, 3) == {"prompt_tokens": 0, "completion_tokens": 0,
                                         "cost_micros": 0, "cache_hits": 0}
