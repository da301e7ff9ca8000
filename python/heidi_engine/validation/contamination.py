"""Decontamination: no training sample carries a held-out task.

A sample is ``contaminated`` when it *is* a held-out task (a dev or test procedural id,
or an id of ``HEIDI_EVAL_TASK_FILE``), or when its ``instruction``, ``prompt`` or
``completion`` contains most of a held-out task's text: at least
:data:`CONTAINMENT_THRESHOLD` of the held-out prompt's (or, for file tasks, of its
canonical solution's) token :data:`SHINGLE`-grams occur in that field. Containment, not
Jaccard, so a held-out prompt pasted into a longer instruction is caught as well as a
lightly edited copy.

Procedural tasks of one family share their template: a training task's own prompt can
contain most of a held-out sibling's shingles while asking something else (another
constant, another rule). For a sample of a procedural *training* task, the shingles of
its own task (prompt, tests, reference solution, rebuilt from its id) are therefore
discounted on both sides: the share is taken over the held-out text's shingles that the
sample's own task does not have, and counts only text the sample adds beyond its own
task (at least :data:`MIN_SHINGLES` such held-out shingles must remain to judge). The
threshold and the shingle size are measured in ``tests/test_yardstick.py``: copies of
held-out prompts with 10% of their tokens edited are all caught, in any field and even
smuggled into an answer to a same-family training task, and no reference answer to a
training task is flagged.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from ..tasks import procedural
from ..tasks.model import Task

SHINGLE = 4
CONTAINMENT_THRESHOLD = 0.5
MIN_SHINGLES = 4  # fewer distinctive held-out shingles than this are too generic to judge
FIELDS = ("instruction", "prompt", "completion")
_TOKEN = re.compile(r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_]")


def shingles(text: str, size: int = SHINGLE) -> set[tuple[str, ...]]:
    """Token ``size``-grams of ``text`` (lower-cased words and single symbols)."""
    tokens = _TOKEN.findall(text.lower())
    return {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


class HeldOutIndex:
    """The held-out tasks' texts as shingle sets, with an inverted index for matching."""

    def __init__(self, sections: Mapping[str, Sequence[Task]]) -> None:
        self.ids: dict[str, str] = {}
        self.labels: list[str] = []
        self.sizes: list[int] = []
        self.postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for section, tasks in sections.items():
            for task in tasks:
                self.ids[task.task_id] = section
                texts = [task.prompt] + ([] if task.family else [task.canonical_solution])
                for text in texts:
                    self._add(f"{section} task {task.task_id}", shingles(text))

    def _add(self, label: str, grams: set[tuple[str, ...]]) -> None:
        if len(grams) < MIN_SHINGLES:
            return
        number = len(self.labels)
        self.labels.append(label)
        self.sizes.append(len(grams))
        for gram in grams:
            self.postings[gram].append(number)

    def match(self, sample: Mapping[str, object]) -> str | None:
        """Why ``sample`` is contaminated (a one-line detail), or None when it is not."""
        task_id = str(sample.get("task_id", ""))
        section = self.ids.get(task_id)
        if section is None and procedural.is_procedural_id(task_id):
            split = procedural.split_of_id(task_id)
            section = split if split != "train" else None
        if section is not None:
            return f"task {task_id} is a held-out {section} task"
        own = own_task_shingles(task_id, sample)
        for name in FIELDS:
            value = sample.get(name)
            if not isinstance(value, str) or not value:
                continue
            hit = self._best(shingles(value) - own, own)
            if hit is not None:
                label, share = hit
                return f"{name} contains {share:.0%} of held-out {label}"
        return None

    def _hits(self, grams: Iterable[tuple[str, ...]]) -> Counter[int]:
        counts: Counter[int] = Counter()
        for gram in grams:
            postings = self.postings.get(gram)
            if postings:
                counts.update(postings)
        return counts

    def _best(
        self, grams: Iterable[tuple[str, ...]], own: set[tuple[str, ...]]
    ) -> tuple[str, float] | None:
        discounted = self._hits(own) if own else Counter()
        best: tuple[str, float] | None = None
        for number, shared in self._hits(grams).items():
            distinctive = self.sizes[number] - discounted[number]
            if distinctive < MIN_SHINGLES:
                continue
            share = shared / distinctive
            if share >= CONTAINMENT_THRESHOLD and (best is None or share > best[1]):
                best = (self.labels[number], share)
        return best


def own_task_shingles(task_id: str, sample: Mapping[str, object]) -> set[tuple[str, ...]]:
    """Shingles a sample may share with held-out tasks because its own procedural training
    task has them; empty unless the sample really shows that task's prompt."""
    if not procedural.is_procedural_id(task_id):
        return set()
    task = procedural.build_task(task_id)
    if sample.get("prompt") != task.prompt:
        return set()
    return shingles("\n".join((task.prompt, task.test, task.canonical_solution)))


__all__ = ["CONTAINMENT_THRESHOLD", "SHINGLE", "HeldOutIndex", "own_task_shingles", "shingles"]
