"""Generate stage: tasks -> teacher answers -> ``data/raw_round_N.jsonl``.

``python -m heidi_engine.stages.generate --round N --out-dir DIR``

A round has ``SAMPLES_PER_ROUND`` slots (fewer only when a task file has fewer tasks).
From round 2 on, the **dev** tasks the student failed in the previous round's evaluation
come first (self-correction): each gets training *variants* — same family, different
parameters, always from the train split, never the held-out task itself — round-robin,
up to half the round (at least one slot). Test-split and ``HEIDI_EVAL_TASK_FILE`` tasks
are never revisited, and no held-out prompt is ever shown to a teacher. Fresh tasks from
``HEIDI_TASK_SOURCE`` fill the remaining slots; tasks answered in earlier rounds are not
drawn again while others remain.

Each task gets ``HEIDI_TEACHER_SAMPLES`` answers (sample 0..n-1); identical answers to
one task are kept once. Model teachers store every answer in the response cache as it
arrives (:mod:`heidi_engine.teacher_cache`), so a re-run after a crash, stop or timeout
asks only for the answers still missing, and an answer is never paid for twice.

Progress goes to the Core as ``@heidi`` lines (tasks planned, answers, cache hits, token
usage and, with prices set, cost in millionths of the price unit as ``cost_micros``).
A bad configuration exits with status 2 and a message naming the variable.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .._py.config import Config
from ..errors import ConfigError
from ..io import iter_jsonl, write_jsonl_atomic
from ..prompts import teacher_instruction
from ..tasks import procedural
from ..tasks.llm_gen import TOPICS, InventionError, invention_prompt, parse_invented_task
from ..tasks.model import Task, TaskFileError, load_task_file
from ..tasks.sources import eval_task_ids, select_file_tasks
from ..teacher_cache import CacheError
from ..teachers import Answer, Request, Teacher, make_teacher
from ..telemetry import emit_event, progress
from .common import RoundPaths, StageContext, run_stage

VARIANTS_PER_FAILED_TASK = 2
INVENTION_ATTEMPTS = 3  # tries per llm_gen slot before it is given up


@dataclass(frozen=True)
class Invention:
    """A slot the teacher fills by inventing a task on ``topic``."""

    topic: str


@dataclass(frozen=True)
class Answered:
    task: Task
    answer: Answer
    task_source: str
    instruction: str


# --- planning -----------------------------------------------------------------------


def answered_task_ids(paths: RoundPaths) -> set[str]:
    """Task ids answered in earlier rounds' raw files."""
    seen: set[str] = set()
    for earlier in range(1, paths.round):
        path = paths.data("raw", earlier)
        if path.exists():
            seen.update(str(row.get("task_id", "")) for row in iter_jsonl(path))
    return seen


def failed_task_ids(paths: RoundPaths) -> list[str]:
    """Dev task ids the student failed in the previous round's eval report, in order.

    Only the dev section steers the run; test and eval-file results are never read here.
    """
    if paths.round <= 1:
        return []
    report_path = paths.eval_report_of(paths.round - 1)
    if not report_path.exists():
        return []
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        rows = report["sections"]["dev"]["adapter"]["tasks"]
        return [str(row["task_id"]) for row in rows if not row["passed"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed eval report {report_path}: {exc!r}") from None


def plan_revisits(
    failed: Sequence[str],
    budget: int,
    *,
    seed: str,
    exclude: set[str],
) -> tuple[list[Task], int]:
    """Train-split variants of failed dev tasks, round-robin over the failures; returns
    (plan, skipped). Only procedural dev tasks have variants; anything else is skipped."""
    per_task: list[list[Task]] = []
    skipped = 0
    for task_id in failed:
        if not procedural.is_procedural_id(task_id) or procedural.split_of_id(task_id) != "dev":
            skipped += 1
            continue
        found = procedural.variants(
            procedural.build_task(task_id), VARIANTS_PER_FAILED_TASK, seed, exclude=exclude
        )
        exclude.update(t.task_id for t in found)
        per_task.append(list(found))
    plan: list[Task] = []
    for rank in range(VARIANTS_PER_FAILED_TASK):
        plan.extend(options[rank] for options in per_task if rank < len(options))
    return plan[:budget], skipped


def plan_fresh(
    source: str, n: int, *, config: Config, ctx: StageContext, exclude: set[str]
) -> list[Task | Invention]:
    seed, round = config.seed, ctx.round
    if n <= 0:
        return []
    if source == "procedural":
        return list(procedural.generate(f"{seed}:round:{round}", n, "train", exclude=exclude))
    if source == "file":
        path = config.task_file
        if not path:
            raise ConfigError(
                "HEIDI_TASK_SOURCE=file needs HEIDI_TASK_FILE (a HumanEval-format JSONL file)"
            )
        held_out = eval_task_ids(config)
        tasks = [t for t in load_task_file(path) if t.task_id not in held_out]
        if not tasks:
            raise ConfigError(f"HEIDI_TASK_FILE {path} has no task outside HEIDI_EVAL_TASK_FILE")
        return list(select_file_tasks(tasks, n, seed=seed, round=round, answered=exclude))
    rng = random.Random(f"heidi-llm-gen:{seed}:{round}")
    return [Invention(rng.choice(TOPICS)) for _ in range(n)]


# --- answering ----------------------------------------------------------------------


class Progress:
    """Reports answers as they come; ``prices`` (per million prompt / completion tokens)
    turn the tokens paid for now (not those of cached answers) into ``cost_micros``."""

    def __init__(self, total: int, prices: tuple[float, float] = (0.0, 0.0)) -> None:
        self.total = total
        self.done = 0
        self.prices = prices

    def report(self, answers: Sequence[Answer], what: str) -> None:
        ok = sum(1 for a in answers if a.ok)
        self.done += len(answers)
        counters = {"teacher_answers": ok}
        if len(answers) - ok:
            counters["teacher_errors"] = len(answers) - ok
        hits = sum(1 for a in answers if a.cached)
        if hits:
            counters["teacher_cache_hits"] = hits
        paid = [a for a in answers if not a.cached]
        usage = {
            "prompt_tokens": sum(a.prompt_tokens for a in paid),
            "completion_tokens": sum(a.completion_tokens for a in paid),
        }
        usage["cost_micros"] = round(
            usage["prompt_tokens"] * self.prices[0] + usage["completion_tokens"] * self.prices[1]
        )
        progress(
            f"{what} {self.done}/{self.total}" + (f" ({hits} from the cache)" if hits else ""),
            counters_delta=counters,
            usage_delta={k: v for k, v in usage.items() if v},
        )


def answer_tasks(
    teacher: Teacher, tasks: list[Task], meter: Progress, samples: int = 1
) -> list[list[Answer]]:
    """``samples`` answers per task, grouped by task."""
    per_task: list[list[Answer]] = []
    step = max(1, teacher.batch_size // samples)
    for start in range(0, len(tasks), step):
        chunk = tasks[start : start + step]
        replies = teacher.answer(chunk, samples)
        per_task.extend(replies[i * samples : (i + 1) * samples] for i in range(len(chunk)))
        meter.report(replies, "answered")
    return per_task


def invent_tasks(
    teacher: Teacher, slots: list[Invention], meter: Progress, seed: str
) -> list[Answered | None]:
    # Each slot's request is keyed by the round and the slot (its cache identity).
    """Fill each slot with a teacher-invented task (None when every attempt failed)."""
    results: list[Answered | None] = [None] * len(slots)
    pending = list(range(len(slots)))
    rng = random.Random(f"heidi-invent:{seed}")
    for attempt in range(INVENTION_ATTEMPTS):
        if not pending:
            break
        topics = {
            i: slots[i].topic if attempt == 0 else rng.choice(TOPICS)
            for i in pending
        }
        prompts = {i: invention_prompt(topics[i]) for i in pending}
        if attempt:  # a changed request, so a deterministic model does not repeat its reply
            prompts = {
                i: f"{p}\n(Request {attempt + 1}: make the task different from earlier ones.)"
                for i, p in prompts.items()
            }
        still: list[int] = []
        for start in range(0, len(pending), teacher.batch_size):
            chunk = pending[start : start + teacher.batch_size]
            replies = teacher.write(
                [Request(prompts[i], f"llm_gen:{seed}:slot{i}", structured=True) for i in chunk]
            )
            meter.report(replies, "invented")
            for i, reply in zip(chunk, replies, strict=False):
                try:
                    if not reply.ok:
                        raise InventionError(reply.error)
                    task, completion = parse_invented_task(reply.text, topic=topics[i])
                except InventionError:
                    still.append(i)
                    continue
                results[i] = Answered(
                    task,
                    Answer(
                        True,
                        reply.text,
                        completion,
                        "",
                        reply.prompt_tokens,
                        reply.completion_tokens,
                    ),
                    "llm_gen",
                    prompts[i],
                )
        meter.total += len(still) if attempt + 1 < INVENTION_ATTEMPTS else 0
        pending = still
    return results


# --- the stage ----------------------------------------------------------------------


def sample_id(round: int, index: int, task_id: str) -> str:
    return f"r{round}-{index:05d}-{hashlib.sha256(task_id.encode()).hexdigest()[:8]}"


def build_samples(items: Sequence[Answered], teacher: Teacher, round: int) -> list[dict]:
    return [
        {
            "id": sample_id(round, index, item.task.task_id),
            "task_id": item.task.task_id,
            "task_source": item.task_source,
            "instruction": item.instruction,
            "prompt": item.task.prompt,
            "completion": item.answer.completion,
            "test": item.task.test,
            "entry_point": item.task.entry_point,
            "teacher": teacher.name,
            "round": round,
            "metadata": (
                {**item.task.metadata, "sample": item.answer.sample}
                if item.answer.sample
                else item.task.metadata
            ),
        }
        for index, item in enumerate(items)
    ]


def run(ctx: StageContext) -> int:
    config = ctx.config
    source = config.task_source
    teacher = make_teacher(config)
    try:
        if source == "llm_gen" and not teacher.writes_text:
            raise ConfigError(
                "HEIDI_TASK_SOURCE=llm_gen needs a teacher that writes text "
                "(openai, local, mock), "
                f"not HEIDI_TEACHER={teacher.name}"
            )
        n = config.samples_per_round
        seed = f"{config.seed}:round:{ctx.round}"
        answered = answered_task_ids(ctx.paths)
        exclude = set(answered)

        failed = failed_task_ids(ctx.paths)
        budget = min(len(failed) * VARIANTS_PER_FAILED_TASK, max(1, n // 2)) if failed else 0
        revisits, skipped = plan_revisits(failed, budget, seed=seed, exclude=exclude)
        fresh = plan_fresh(source, n - len(revisits), config=config, ctx=ctx, exclude=exclude)
        # (what fills the slot, the task source it counts under); revisits come first
        plan: list[tuple[Task | Invention, str]] = [(item, "procedural") for item in revisits]
        plan += [(item, source) for item in fresh]
        counters = {"tasks_planned": len(plan), "revisit_tasks": len(revisits)}
        if skipped:
            counters["revisits_skipped"] = skipped
        progress(
            f"round {ctx.round}: {len(plan)} tasks "
            f"({len(revisits)} revisits of {len(failed)} failed, "
            f"{len(fresh)} fresh from {source}), teacher {teacher.name}",
            counters_delta=counters,
        )

        samples = config.teacher_samples
        prices = (config.teacher_price_prompt, config.teacher_price_completion)
        tasks = [item for item, _ in plan if isinstance(item, Task)]
        slots = [item for item, _ in plan if isinstance(item, Invention)]
        meter = Progress(len(tasks) * samples + len(slots), prices)
        answers = iter(answer_tasks(teacher, tasks, meter, samples))
        inventions = iter(invent_tasks(teacher, slots, meter, seed))
        items: list[Answered] = []
        lost = 0
        for item, origin in plan:
            if isinstance(item, Task):
                distinct: dict[str, Answer] = {}  # the same answer twice is kept once
                for reply in next(answers):
                    if reply.ok:
                        distinct.setdefault(reply.completion, reply)
                if not distinct:
                    lost += 1
                for reply in distinct.values():
                    items.append(Answered(item, reply, origin, teacher_instruction(item)))
            else:
                invented = next(inventions)
                if invented is None:
                    lost += 1
                else:
                    items.append(invented)
    finally:
        teacher.close()

    if not items:
        raise RuntimeError(f"no usable teacher answer for any of the {len(plan)} tasks")
    rows = build_samples(items, teacher, ctx.round)
    write_jsonl_atomic(ctx.paths.raw, rows)
    relative = ctx.paths.raw.relative_to(ctx.paths.out_dir).as_posix()
    level = "warn" if lost else "info"
    message = f"wrote {len(rows)} samples" + (
        f" ({lost} tasks without a usable answer)" if lost else ""
    )
    emit_event(
        "progress",
        message,
        level=level,
        counters_delta={"samples_written": len(rows)},
        artifact_paths=[relative],
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("generate", run, argv, config_errors=(TaskFileError, CacheError),
                     input_errors=(ValueError, RuntimeError))

if __name__ == "__main__":
    sys.exit(main())
