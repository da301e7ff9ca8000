"""Programming tasks: the task record, HumanEval task files and the task sources.

- :mod:`.model`: :class:`Task` and HumanEval JSONL files (:func:`load_task_file`,
  :func:`write_task_file`).
- :mod:`.procedural`: the built-in generator (``generate(seed, n, split)``,
  ``variants(task, n, seed)``), with the families in :mod:`.families`.
- :mod:`.llm_gen`: tasks invented by the teacher.
- :mod:`.sources`: the ``HEIDI_TASK_SOURCE`` modes and the held-out eval set.
"""

from . import procedural
from .model import HUMANEVAL_KEYS, Task, TaskFileError, load_task_file, write_task_file
from .procedural import variants
from .sources import (
    EVAL_SECTIONS,
    TASK_SOURCES,
    check_task_source,
    held_out_tasks,
    select_file_tasks,
)

__all__ = [
    "EVAL_SECTIONS",
    "HUMANEVAL_KEYS",
    "TASK_SOURCES",
    "Task",
    "TaskFileError",
    "check_task_source",
    "held_out_tasks",
    "load_task_file",
    "procedural",
    "select_file_tasks",
    "variants",
    "write_task_file",
]
