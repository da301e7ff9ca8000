"""Tasks: procedural families, determinism, reach, the held-out split, task files."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from heidi_engine.errors import ConfigError
from heidi_engine.tasks import (
    Task,
    TaskFileError,
    check_task_source,
    held_out_tasks,
    load_task_file,
    procedural,
    select_file_tasks,
    variants,
    write_task_file,
)
from heidi_engine.tasks.llm_gen import InventionError, parse_invented_task

FAMILIES = sorted(procedural.families())
DRAWS_PER_FAMILY = 4

# Runs (name, program) pairs in a fresh interpreter, each in its own namespace; prints
# one JSON verdict per program: true when it ran to the end without an exception.
RUNNER = r"""
import json, sys
verdicts = []
for name, program in json.load(sys.stdin):
    try:
        exec(compile(program, name, "exec"), {"__name__": "__main__"})
        verdicts.append(True)
    except BaseException:
        verdicts.append(False)
print(json.dumps(verdicts))
"""


def run_programs(programs: list[tuple[str, str]]) -> list[bool]:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(programs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def tasks_of(name: str) -> list[Task]:
    fam = procedural.families()[name]
    rng = random.Random(f"test:{name}")
    ids = {procedural.task_id_of(fam, procedural._draw(rng, fam)) for _ in range(DRAWS_PER_FAMILY)}
    return [procedural.build_task(task_id) for task_id in sorted(ids)]


def test_at_least_thirty_families_over_many_categories():
    fams = procedural.families()
    assert len(fams) >= 30
    categories = {fam.category for fam in fams.values()}
    assert {
        "strings",
        "lists",
        "dicts",
        "math",
        "parsing",
        "recursion",
        "sorting",
        "dates",
        "bits",
    } <= categories


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_reference_passes_and_wrong_solutions_fail(name):
    programs = []
    for task in tasks_of(name):
        first_expected = task.test.splitlines()[1].rsplit(" == ", 1)[1]
        programs += [
            (f"{task.task_id}:reference", task.program(task.canonical_solution)),
            (f"{task.task_id}:buggy", task.program(procedural.wrong_solution(task))),
            # memorising the first docstring example is not enough either
            (f"{task.task_id}:constant", task.program(f"    return {first_expected}\n")),
        ]
    verdicts = run_programs(programs)
    outcome = {label: ok for (label, _), ok in zip(programs, verdicts, strict=False)}
    for label, passed in outcome.items():
        assert passed == label.endswith(":reference"), label


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_has_several_asserts_and_a_doc_example(name):
    for task in tasks_of(name):
        assert task.test.startswith("def check(candidate):\n")
        assert task.test.count("assert candidate(") >= 4
        assert f">>> {task.entry_point}(" in task.prompt
        assert task.prompt.endswith('"""\n') and task.canonical_solution.startswith("    ")
        assert task.metadata["family"] == name and "params" in task.metadata


def test_generation_is_deterministic_by_seed():
    first = procedural.generate(7, 25)
    again = procedural.generate(7, 25)
    other = procedural.generate(8, 25)
    assert [t.to_humaneval() for t in first] == [t.to_humaneval() for t in again]
    assert [t.task_id for t in first] != [t.task_id for t in other]
    assert len({t.task_id for t in first}) == 25


def test_more_than_ten_thousand_distinct_tasks_are_reachable():
    assert procedural.reachable_count() >= 10_000
    # Distinct parameters give distinct prompts: draw well over 10,000 ids across seeds
    # and check that the specs behind them (signature + description) never collide.
    seen_ids: set[str] = set()
    seen_specs: set[tuple[str, str, tuple]] = set()
    fams = procedural.families()
    sizes = [fams[name].size for name in FAMILIES]
    for seed in range(40):
        rng = random.Random(seed)
        for name in rng.choices(FAMILIES, weights=sizes, k=400):
            fam = fams[name]
            task_id = procedural.task_id_of(fam, procedural._draw(rng, fam))
            if task_id in seen_ids:
                continue
            seen_ids.add(task_id)
            _, _, spec = procedural.spec_of(task_id)
            seen_specs.add((spec.signature, spec.description, tuple(map(repr, spec.cases[:1]))))
    assert len(seen_ids) >= 10_000
    assert len(seen_specs) == len(seen_ids)


def test_train_dev_and_test_splits_are_disjoint_even_up_to_renaming():
    splits = {name: procedural.generate(3, n, name)
              for name, n in (("train", 400), ("dev", 100), ("test", 150))}
    for name, tasks in splits.items():
        assert {t.metadata["split"] for t in tasks} == {name}
    # the split hashes the semantic parameters, so a renamed copy stays on its side
    keys = {name: {t.metadata["semantic_key"] for t in tasks} for name, tasks in splits.items()}
    assert not keys["train"] & keys["dev"] and not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]
    # held-out splits never measure the same problem twice under another name
    assert len(keys["dev"]) == 100 and len(keys["test"]) == 150
    with_dev = 0
    for name, fam in procedural.families().items():
        seen = {
            procedural.split_of(fam, procedural._draw(random.Random(i), fam)) for i in range(400)
        }
        assert {"train", "test"} <= seen, name  # every family is trained on and measured
        with_dev += "dev" in seen
    assert with_dev >= 30


def test_generate_excludes_given_ids_and_rejects_unknown_split():
    first = procedural.generate(5, 30)
    later = procedural.generate(5, 30, exclude={t.task_id for t in first})
    assert not {t.task_id for t in first} & {t.task_id for t in later}
    with pytest.raises(ValueError, match="valid: train, dev, test"):
        procedural.generate(5, 1, "eval")


def test_task_ids_round_trip_and_bad_ids_are_rejected():
    task = procedural.generate(11, 1)[0]
    assert procedural.build_task(task.task_id) == task
    for bad in ("proc/nope/1.2", "proc/rotate_list/99.0.0.0", "proc/rotate_list/x", "HumanEval/0"):
        with pytest.raises(ValueError):
            procedural.parse_task_id(bad)


def test_variants_change_semantics_stay_in_train_and_record_origin():
    origin = procedural.generate(2, 3, "dev") + procedural.generate(2, 3, "test")
    for task in origin:
        found = variants(task, 3, seed=1)
        assert len(found) == 3
        for variant in found:
            assert variant.family == task.family
            assert variant.metadata["semantic_key"] != task.metadata["semantic_key"]
            assert variant.metadata["split"] == "train"
            assert variant.metadata["revisit_of"] == task.task_id
        assert [v.task_id for v in variants(task, 3, seed=1)] == [v.task_id for v in found]
    file_task = Task(
        "HumanEval/0", "def f():\n", "    return 1\n", "def check(c):\n    assert c() == 1\n", "f"
    )
    with pytest.raises(ValueError, match="procedural"):
        variants(file_task, 1, seed=0)


def test_task_file_round_trip(tmp_path):
    tasks = procedural.generate(4, 5) + [
        Task(
            "HumanEval/1",
            'def f(x):\n    """ünïcode \\ "q" """\n',
            "    return x\n",
            "def check(candidate):\n    assert candidate(1) == 1\n",
            "f",
        )
    ]
    path = tmp_path / "tasks.jsonl"
    assert write_task_file(path, tasks) == 6
    loaded = load_task_file(path)
    assert [t.to_humaneval() for t in loaded] == [t.to_humaneval() for t in tasks]
    assert loaded[0].metadata == tasks[0].metadata
    plain = json.loads(path.read_text().splitlines()[-1])
    assert set(plain) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}


GOOD = {
    "task_id": "T/1",
    "prompt": "def f():\n",
    "canonical_solution": "    return 1\n",
    "test": "def check(candidate):\n    assert candidate() == 1\n",
    "entry_point": "f",
}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"tasks.jsonl:2: not valid JSON"),
        ("[1, 2]", r"tasks.jsonl:2: expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "test"}), r":2: missing key\(s\) test"),
        (json.dumps({**GOOD, "prompt": 3}), r":2: prompt must be a string"),
        (json.dumps({**GOOD, "entry_point": "f x"}), r":2: entry_point 'f x' is not a Python name"),
        (json.dumps({**GOOD, "test": "assert True"}), r":2: test does not define check"),
        (json.dumps(GOOD), r":2: duplicate task_id 'T/1' \(first on line 1\)"),
    ],
)
def test_task_file_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with pytest.raises(TaskFileError, match=message):
        load_task_file(path)


def test_task_file_missing_or_empty(tmp_path):
    with pytest.raises(TaskFileError, match="task file not found"):
        load_task_file(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TaskFileError, match="no tasks"):
        load_task_file(tmp_path / "empty.jsonl")


def test_task_sources_are_explicit_modes():
    for mode in ("procedural", "file", "llm_gen"):
        assert check_task_source(mode) == mode
    with pytest.raises(ConfigError, match=r"'template' \(valid: procedural, file, llm_gen\)"):
        check_task_source("template")


class Cfg:
    seed = 42
    dev_tasks = 6
    test_tasks = 9
    eval_task_file = ""
    eval_file_limit = 0


def test_held_out_tasks_are_the_dev_and_test_splits_and_the_whole_eval_file(tmp_path):
    sections = held_out_tasks(Cfg())
    assert list(sections) == ["dev", "test"]
    assert [len(sections["dev"]), len(sections["test"])] == [6, 9]
    for name, tasks in sections.items():
        assert {t.metadata["split"] for t in tasks} == {name}
    again = held_out_tasks(Cfg())
    assert {k: [t.task_id for t in v] for k, v in again.items()} == {
        k: [t.task_id for t in v] for k, v in sections.items()}
    path = tmp_path / "eval.jsonl"
    many = procedural.generate(8, 30)  # more than any old cut-off: the file is used whole
    write_task_file(path, many)
    cfg = Cfg()
    cfg.eval_task_file = str(path)
    assert [t.task_id for t in held_out_tasks(cfg)["file"]] == [t.task_id for t in many]
    cfg.eval_file_limit = 5
    assert [t.task_id for t in held_out_tasks(cfg)["file"]] == [t.task_id for t in many[:5]]


def test_file_selection_takes_all_when_few_and_favours_unanswered():
    tasks = procedural.generate(9, 10)
    assert select_file_tasks(tasks[:3], 5, seed=1, round=1) == tasks[:3]
    answered = {t.task_id for t in tasks[:6]}
    picked = select_file_tasks(tasks, 4, seed=1, round=2, answered=answered)
    assert {t.task_id for t in picked} == {t.task_id for t in tasks[6:]}
    picked = select_file_tasks(tasks, 6, seed=1, round=2, answered=answered)
    assert {t.task_id for t in tasks[6:]} < {t.task_id for t in picked}
    assert picked == select_file_tasks(tasks, 6, seed=1, round=2, answered=answered)


SECOND_MAX = {
    "function_name": "second_max",
    "description": "Return the second largest distinct value of a list, or None.",
    "solution": "def second_max(xs):\n    vals = sorted(set(xs))\n"
    "    return vals[-2] if len(vals) > 1 else None\n",
    "tests": "def check(candidate):\n    assert candidate([1, 2, 3]) == 2\n"
    "    assert candidate([5]) is None\n",
}
INVENTED_JSON = f"Sure! Here's a new task.\n\n```json\n{json.dumps(SECOND_MAX, indent=2)}\n```\n"

INVENTED_BLOCKS = """Task: count the vowels in a string.

```python
import re


def count_vowels(s: str) -> int:
    \"\"\"Count vowels.\"\"\"
    return len(re.findall('[aeiou]', s))
```

```python
assert count_vowels('hello') == 2
assert count_vowels('') == 0
```
"""


@pytest.mark.parametrize("reply", [INVENTED_JSON, INVENTED_BLOCKS])
def test_invented_tasks_parse_into_runnable_tasks(reply):
    task, completion = parse_invented_task(reply, topic="lists")
    assert task.task_id.startswith("llm/") and task.metadata["source"] == "llm_gen"
    assert '"""' in task.prompt and "def check(candidate)" in task.test
    assert run_programs(
        [("invented", task.program(completion)), ("broken", task.program("    return -1\n"))]
    ) == [True, False]


@pytest.mark.parametrize(
    "reply",
    [
        "I cannot help with that.",
        "```python\ndef f(:\n```",
        '```json\n{"solution": "def f():\\n    return 1\\n"}\n```',
    ],
)
def test_unusable_inventions_are_rejected(reply):
    with pytest.raises(InventionError):
        parse_invented_task(reply)
