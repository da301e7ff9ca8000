"""The task record and the HumanEval JSONL task-file format.

A task file has one JSON object per line with the HumanEval keys ``task_id, prompt,
canonical_solution, test, entry_point`` (all strings). An optional ``metadata`` object
is kept when present (our own files carry the procedural family and parameters in it);
other extra keys are ignored so files from related benchmarks load as well.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HeidiError
from ..io import write_jsonl_atomic

HUMANEVAL_KEYS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
_ENTRY_POINT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFINES_CHECK = re.compile(r"^\s*def\s+check\s*\(", re.M)


class TaskFileError(HeidiError, ValueError):
    """A task file is missing or has a malformed line (the message names the line)."""


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def family(self) -> str | None:
        return self.metadata.get("family")

    def program(self, completion: str) -> str:
        """The program a test runs (SPEC §8, HumanEval convention)."""
        return f"{self.prompt}{completion}\n{self.test}\ncheck({self.entry_point})\n"

    def to_humaneval(self) -> dict:
        row = {key: getattr(self, key) for key in HUMANEVAL_KEYS}
        if self.metadata:
            row["metadata"] = self.metadata
        return row

    @classmethod
    def from_humaneval(cls, row: dict, *, where: str = "task") -> Task:
        if not isinstance(row, dict):
            raise TaskFileError(f"{where}: expected a JSON object")
        missing = [key for key in HUMANEVAL_KEYS if key not in row]
        if missing:
            raise TaskFileError(f"{where}: missing key(s) {', '.join(missing)}")
        for key in HUMANEVAL_KEYS:
            if not isinstance(row[key], str):
                raise TaskFileError(
                    f"{where}: {key} must be a string, got {type(row[key]).__name__}"
                )
        if not row["task_id"].strip():
            raise TaskFileError(f"{where}: task_id is empty")
        if not row["entry_point"].isidentifier():
            raise TaskFileError(f"{where}: entry_point {row['entry_point']!r} is not a Python name")
        if "def check(" not in row["test"]:
            raise TaskFileError(f"{where}: test does not define check(candidate)")
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise TaskFileError(f"{where}: metadata must be an object")
        return cls(
            task_id=row["task_id"],
            prompt=row["prompt"],
            canonical_solution=row["canonical_solution"],
            test=row["test"],
            entry_point=row["entry_point"],
            metadata=dict(metadata),
        )


def is_entry_point(name: object) -> bool:
    """Whether ``name`` can be the function a sample's tests call: an ASCII identifier."""
    return isinstance(name, str) and bool(_ENTRY_POINT.fullmatch(name))


def has_runnable_tests(sample: Mapping) -> bool:
    """Whether a sample's tests can be run (fail-closed): its ``test`` defines
    ``check(candidate)`` and its ``entry_point`` names the function they check."""
    test = sample.get("test")
    return (isinstance(test, str) and bool(_DEFINES_CHECK.search(test))
            and is_entry_point(sample.get("entry_point")))


def load_task_file(path: str | os.PathLike) -> list[Task]:
    """Read a HumanEval-format JSONL file; errors name the file and line."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskFileError(f"task file not found: {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"cannot read task file {source}: {exc}") from None
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{where}: not valid JSON ({exc.msg})") from None
        task = Task.from_humaneval(row, where=where)
        if task.task_id in seen:
            raise TaskFileError(
                f"{where}: duplicate task_id {task.task_id!r} (first on line {seen[task.task_id]})"
            )
        seen[task.task_id] = number
        tasks.append(task)
    if not tasks:
        raise TaskFileError(f"task file has no tasks: {source}")
    return tasks


def write_task_file(path: str | os.PathLike, tasks: list[Task]) -> int:
    """Write tasks as HumanEval JSONL atomically; returns the number written."""
    return write_jsonl_atomic(path, (task.to_humaneval() for task in tasks))
