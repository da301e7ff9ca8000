"""Where a round's tasks come from (``HEIDI_TASK_SOURCE``) and the held-out eval set."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from ..errors import ConfigError
from . import procedural
from .model import Task, load_task_file

TASK_SOURCES = ("procedural", "file", "llm_gen")


def check_task_source(mode: str) -> str:
    if mode not in TASK_SOURCES:
        raise ConfigError(
            f"invalid value for HEIDI_TASK_SOURCE: {mode!r} (valid: {', '.join(TASK_SOURCES)})"
        )
    return mode


EVAL_SECTIONS = ("dev", "test", "file")


def held_out_tasks(config: object) -> dict[str, list[Task]]:
    """The tasks the student is measured on, by section, the same every round.

    ``dev`` (``HEIDI_DEV_TASKS``) and ``test`` (``HEIDI_TEST_TASKS``) are disjoint
    procedural splits that no teacher ever answers; ``file`` is ``HEIDI_EVAL_TASK_FILE``,
    whole unless ``HEIDI_EVAL_FILE_LIMIT`` caps it, and only present when set.
    """
    seed = config.seed  # type: ignore[attr-defined]
    sections = {
        "dev": procedural.generate(seed, config.dev_tasks, "dev"),  # type: ignore[attr-defined]
        "test": procedural.generate(seed, config.test_tasks, "test"),  # type: ignore[attr-defined]
    }
    path = config.eval_task_file  # type: ignore[attr-defined]
    if path:
        tasks = load_task_file(path)
        limit = config.eval_file_limit  # type: ignore[attr-defined]
        sections["file"] = tasks[:limit] if limit else tasks
    return sections


def eval_task_ids(config: object) -> set[str]:
    """Ids that must never be trained on (only a file needs listing; the procedural
    split is excluded by construction)."""
    path = getattr(config, "eval_task_file", "")
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
