"""A built-in generator of Python programming tasks.

Each *family* (see :mod:`heidi_engine.tasks.families`) declares a parameter space — a
mapping from parameter name to the finite list of its choices — and a ``build``
function turning one choice of parameters into a :class:`Spec` (signature, description,
reference body, a plausible buggy body, and test inputs). The task id names the family
and the index of every choice, e.g. ``proc/rotate_list/2.0.7.1``, so a task can be
rebuilt from its id alone and distinct ids are distinct tasks.

Expected outputs in docstrings and tests come from running the reference body on the
test inputs when the task is built, so examples and tests always agree with it.

Held-out split: a task belongs to the ``eval`` split when the hash of its family and
*semantic* parameters (everything but the cosmetic function and argument names) falls
in a fixed bucket. Renaming a function therefore never moves an eval task into the
training split.
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import itertools
import random
import textwrap
from collections.abc import Sequence

from .families import FAMILIES, Family, Spec
from .model import Task

# ``train``: tasks teachers answer. ``dev``: held out; its failures steer the next round
# (revisits, best_adapter promotion). ``test``: held out; only measured and reported.
SPLITS = ("train", "dev", "test")
HELD_OUT_SPLITS = ("dev", "test")
# Parameters that only rename things; they do not change what the task asks.
COSMETIC_PARAMS = frozenset({"func", "arg"})
# Semantic tasks are hashed into SPLIT_BUCKETS buckets: TEST_BUCKETS of them are the test
# split (about 10% of the 2,250 semantic tasks), DEV_BUCKETS the dev split (about 5%).
SPLIT_BUCKETS = 20
TEST_BUCKETS = frozenset({0, 1})
DEV_BUCKETS = frozenset({2})
MAX_DRAWS_PER_TASK = 1000


def families() -> dict[str, Family]:
    return dict(FAMILIES)


def reachable_count() -> int:
    """How many distinct tasks the generator can produce."""
    return sum(fam.size for fam in FAMILIES.values())


# --- identity and split -------------------------------------------------------------


def task_id_of(fam: Family, indices: Sequence[int]) -> str:
    return f"proc/{fam.name}/{'.'.join(str(i) for i in indices)}"


def parse_task_id(task_id: str) -> tuple[Family, list[int]]:
    """Inverse of :func:`task_id_of`; ``ValueError`` for an id that is not procedural."""
    parts = task_id.split("/")
    if len(parts) != 3 or parts[0] != "proc":
        raise ValueError(f"not a procedural task id: {task_id!r}")
    fam = FAMILIES.get(parts[1])
    if fam is None:
        raise ValueError(f"unknown task family {parts[1]!r} in {task_id!r}")
    try:
        indices = [int(i) for i in parts[2].split(".")]
    except ValueError:
        raise ValueError(f"malformed procedural task id: {task_id!r}") from None
    sizes = [len(choices) for choices in fam.space.values()]
    if len(indices) != len(sizes) or any(
        not 0 <= i < n for i, n in zip(indices, sizes, strict=True)
    ):
        raise ValueError(f"parameter indices out of range in {task_id!r}")
    return fam, indices


def is_procedural_id(task_id: str) -> bool:
    try:
        parse_task_id(task_id)
    except ValueError:
        return False
    return True


def _semantic(fam: Family, indices: Sequence[int]) -> tuple[int, ...]:
    pairs = zip(fam.space, indices, strict=True)
    return tuple(i for key, i in pairs if key not in COSMETIC_PARAMS)


def _split_hash(fam: Family, semantic: Sequence[int]) -> int:
    digest = hashlib.sha256(f"heidi-split:{fam.name}:{semantic!r}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@functools.cache
def _anchor(fam_name: str) -> tuple[int, ...]:
    """The family's semantic choice with the smallest hash: always in the test split, so
    every family, however small, is measured."""
    fam = FAMILIES[fam_name]
    sizes = [range(len(v)) for key, v in fam.space.items() if key not in COSMETIC_PARAMS]
    return min(itertools.product(*sizes), key=lambda semantic: _split_hash(fam, semantic))


def split_of(fam: Family, indices: Sequence[int]) -> str:
    """``train``, ``dev`` or ``test``: decided by the semantic parameters only, so a
    renamed copy of a held-out task is held out too."""
    semantic = _semantic(fam, indices)
    bucket = _split_hash(fam, semantic) % SPLIT_BUCKETS
    if bucket in TEST_BUCKETS or semantic == _anchor(fam.name):
        return "test"
    if bucket in DEV_BUCKETS:
        return "dev"
    return "train"


def split_of_id(task_id: str) -> str:
    fam, indices = parse_task_id(task_id)
    return split_of(fam, indices)


# --- building -----------------------------------------------------------------------


def _literal(value: object) -> str:
    text = repr(value)
    if ast.literal_eval(text) != value:  # families must only use literal-safe values
        raise ValueError(f"value does not round-trip through repr: {text}")
    return text


def _docstring_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def spec_of(task_id: str) -> tuple[Family, dict, Spec]:
    fam, indices = parse_task_id(task_id)
    params = {key: fam.space[key][i] for key, i in zip(fam.space, indices, strict=False)}
    spec = fam.build(params, random.Random(f"heidi-task:{task_id}"))
    return fam, params, spec


def run_reference(spec: Spec, body: str | None = None) -> list[object]:
    """Outputs of ``body`` (default: the reference) on every test case."""
    namespace: dict[str, object] = {}
    exec(
        compile(spec.imports + spec.signature + "\n" + (body or spec.body), "<task>", "exec"),
        namespace,
    )
    function = namespace[spec.entry_point]
    return [function(*copy.deepcopy(args)) for args in spec.cases]  # type: ignore[operator]


def build_task(task_id: str) -> Task:
    fam, params, spec = spec_of(task_id)
    expected = run_reference(spec)
    calls = [f"{spec.entry_point}({', '.join(_literal(a) for a in args)})" for args in spec.cases]
    results = [_literal(value) for value in expected]

    description = "\n".join(
        textwrap.fill(paragraph, width=84) for paragraph in spec.description.split("\n")
    )
    examples = "".join(
        f"\n>>> {call}\n{result}"
        for call, result in zip(calls[: spec.n_examples], results, strict=False)
    )
    doc = textwrap.indent(_docstring_text(description + "\n" + examples), "    ")
    prompt = f'{spec.imports}{spec.signature}\n    """\n{doc}\n    """\n'
    asserts = "".join(
        f"    assert candidate({call.split('(', 1)[1]} == {result}\n"
        for call, result in zip(calls, results, strict=False)
    )
    semantic = {k: v for k, v in params.items() if k not in COSMETIC_PARAMS}
    return Task(
        task_id=task_id,
        prompt=prompt,
        canonical_solution=spec.body,
        test=f"def check(candidate):\n{asserts}",
        entry_point=spec.entry_point,
        metadata={
            "family": fam.name,
            "category": fam.category,
            "params": {k: _jsonable(v) for k, v in params.items()},
            "split": split_of_id(task_id),
            "semantic_key": f"{fam.name}:{sorted(semantic.items())!r}",
        },
    )


def wrong_solution(task: Task) -> str:
    """The family's deliberately buggy body for a procedural task."""
    _, _, spec = spec_of(task.task_id)
    return spec.wrong


def _jsonable(value: object) -> object:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


# --- sampling -----------------------------------------------------------------------


def _draw(rng: random.Random, fam: Family) -> list[int]:
    return [rng.randrange(len(choices)) for choices in fam.space.values()]


def generate(
    seed: int | str,
    n: int,
    split: str = "train",
    *,
    exclude: Sequence[str] | set[str] = (),
    family_names: Sequence[str] | None = None,
) -> list[Task]:
    """``n`` distinct tasks of ``split``, the same for the same seed.

    Families are visited in a seeded shuffled rotation so a batch covers many of them;
    ids in ``exclude`` (e.g. tasks answered in earlier rounds) are skipped. Held-out
    splits never repeat a semantic task under another name, so each measured task is
    an independent problem.
    """
    if split not in SPLITS:
        raise ValueError(f"invalid split {split!r} (valid: {', '.join(SPLITS)})")
    names = sorted(family_names if family_names is not None else FAMILIES)
    rng = random.Random(f"heidi-procedural:{seed}:{split}")
    skip = set(exclude)
    distinct = split in HELD_OUT_SPLITS
    semantics: set[tuple[str, tuple[int, ...]]] = set()
    chosen: list[str] = []
    rotation: list[str] = []
    draws_left = MAX_DRAWS_PER_TASK * max(n, 1)
    while len(chosen) < n:
        if draws_left <= 0:
            raise ValueError(f"cannot draw {n} distinct {split} tasks (space exhausted)")
        if not rotation:
            rotation = names[:]
            rng.shuffle(rotation)
        fam = FAMILIES[rotation.pop()]
        for _ in range(50):  # a few tries for this family before moving on
            draws_left -= 1
            indices = _draw(rng, fam)
            task_id = task_id_of(fam, indices)
            semantic = (fam.name, _semantic(fam, indices))
            if split_of(fam, indices) != split or task_id in skip:
                continue
            if distinct and semantic in semantics:
                continue
            skip.add(task_id)
            semantics.add(semantic)
            chosen.append(task_id)
            break
    return [build_task(task_id) for task_id in chosen]


def variants(
    task: Task, n: int, seed: int | str, *, exclude: Sequence[str] | set[str] = ()
) -> list[Task]:
    """``n`` training tasks of ``task``'s family asking something different.

    Variants differ from ``task`` in at least one semantic parameter (not just names)
    and always come from the training split, so revisiting a failed held-out task
    never trains on the task itself.
    """
    fam, indices = parse_task_id(task.task_id)
    original = _semantic(fam, indices)
    rng = random.Random(f"heidi-variants:{seed}:{task.task_id}")
    skip = set(exclude) | {task.task_id}
    found: list[str] = []
    for _ in range(MAX_DRAWS_PER_TASK * max(n, 1)):
        if len(found) == n:
            break
        candidate = _draw(rng, fam)
        task_id = task_id_of(fam, candidate)
        if (
            _semantic(fam, candidate) != original
            and split_of(fam, candidate) == "train"
            and task_id not in skip
        ):
            skip.add(task_id)
            found.append(task_id)
    result = []
    for task_id in found:
        variant = build_task(task_id)
        result.append(
            Task(
                **{**variant.__dict__, "metadata": {**variant.metadata, "revisit_of": task.task_id}}
            )
        )
    return result
