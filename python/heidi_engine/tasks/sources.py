"""Where a round's tasks come from (``HEIDI_TASK_SOURCE``) and the held-out eval set."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from ..errors import ConfigError
from . import procedural
from .model import Task, load_task_file

TASK_SOURCES = ("procedural", "file", "llm_gen")
DEFAULT_EVAL_TASKS = 20


def check_task_source(mode: str) -> str:
    if mode not in TASK_SOURCES:
        raise ConfigError(
            f"invalid value for HEIDI_TASK_SOURCE: {mode!r} (valid: {', '.join(TASK_SOURCES)})"
        )
    return mode


def eval_tasks(config: object, n: int | None = None) -> list[Task]:
    """The held-out tasks: ``HEIDI_EVAL_TASK_FILE`` (its first ``n``, or all) or the
    procedural eval split (``n`` tasks, default :data:`DEFAULT_EVAL_TASKS`), the same
    every round for a given ``SEED``."""
    path = getattr(config, "eval_task_file", "")
    if path:
        tasks = load_task_file(path)
        return tasks if n is None else tasks[:n]
    return procedural.generate(
        getattr(config, "seed", 42), DEFAULT_EVAL_TASKS if n is None else n, "eval"
    )


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


def find_task(task_id: str, config: object) -> Task | None:
    """Rebuild a task named in an eval report: procedural ids carry their parameters;
    other ids are looked up in the eval task file."""
    if procedural.is_procedural_id(task_id):
        return procedural.build_task(task_id)
    path = getattr(config, "eval_task_file", "")
    if path:
        for task in load_task_file(path):
            if task.task_id == task_id:
                return task
    return None
