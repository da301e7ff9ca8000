"""Where a round's tasks come from (``HEIDI_TASK_SOURCE``) and the held-out eval set."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from .._py.config import Config
from . import procedural
from .model import Task, load_task_file

TASK_SOURCES = Config.choices("task_source")


def check_task_source(mode: str) -> str:
    """``mode`` if it names a task source, else the ConfigError of ``HEIDI_TASK_SOURCE``."""
    return Config.check_choice("task_source", mode)


EVAL_SECTIONS = ("dev", "test", "file")


def held_out_tasks(config: Config) -> dict[str, list[Task]]:
    """The tasks the student is measured on, by section, the same every round.

    ``dev`` (``HEIDI_DEV_TASKS``) and ``test`` (``HEIDI_TEST_TASKS``) are disjoint
    procedural splits that no teacher ever answers; ``file`` is ``HEIDI_EVAL_TASK_FILE``,
    whole unless ``HEIDI_EVAL_FILE_LIMIT`` caps it, and only present when set.
    """
    sections = {
        "dev": procedural.generate(config.seed, config.dev_tasks, "dev"),
        "test": procedural.generate(config.seed, config.test_tasks, "test"),
    }
    path = config.eval_task_file
    if path:
        tasks = load_task_file(path)
        limit = config.eval_file_limit
        sections["file"] = tasks[:limit] if limit else tasks
    return sections


def eval_task_ids(config: Config) -> set[str]:
    """Ids that must never be trained on (only a file needs listing; the procedural
    split is excluded by construction)."""
    path = config.eval_task_file
    return {task.task_id for task in load_task_file(path)} if path else set()


def select_file_tasks(
    tasks: Sequence[Task], n: int, *, seed: int, round: int, answered: Iterable[str] = ()
) -> list[Task]:
    """A round's share of a task file (SPEC §8).

    With ``n`` or fewer tasks, all of them, once each, in file order. Otherwise a seeded
    draw that takes tasks not yet answered in earlier rounds first, then answered ones.
    """
    if len(tasks) <= n:
        return list(tasks)
    done = set(answered)
    rng = random.Random(f"heidi-file-tasks:{seed}:{round}")
    fresh = [t for t in tasks if t.task_id not in done]
    seen = [t for t in tasks if t.task_id in done]
    rng.shuffle(fresh)
    rng.shuffle(seen)
    return (fresh + seen)[:n]
