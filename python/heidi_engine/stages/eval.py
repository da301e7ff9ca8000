"""Eval stage: ``python -m heidi_engine.stages.eval --round N --out-dir DIR``.

Measures the student — the base model with the round's adapter ``out_lora/round_N`` —
and the base model alone on the held-out tasks, each completion run against its task's
tests in the sandbox, in up to three sections (see :func:`..tasks.held_out_tasks`):

- ``dev``: procedural tasks whose results steer the run: ``best_adapter`` moves to this
  round's adapter only when dev pass@1 beats the best so far (ties broken by the loss on
  the run's fixed validation set, ``data/val_round_1.jsonl``), and the next round
  revisits variants of the dev tasks the student failed;
- ``test``: procedural tasks that are only measured and reported (the headline number);
- ``file``: ``HEIDI_EVAL_TASK_FILE``, reported as its own benchmark.

Each section reports n, passed, pass@1 with a 95% Wilson interval, and pass@k when
``HEIDI_EVAL_SAMPLES`` asks for sampled completions. The base model is scored once per
run (cached in ``eval/baseline.json``). The report also says why ``best_adapter`` moved
or not, and how many of the previous round's dev failures now pass.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import prompts, run_layout
from .._py.config import Config
from ..errors import HeidiError
from ..eval_stats import mean_pass_at_k, wilson_interval
from ..io import write_json_atomic
from ..sandbox import (
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    build_program,
    resolve_level,
    run_many,
)
from ..tasks import Task, TaskFileError, held_out_tasks
from ..telemetry import progress
from .common import StageContext, read_samples, run_stage

# The generation budget per task and the batch of prompts generated together.
MAX_NEW_TOKENS = 128
GENERATION_BATCH = 10
# The run's fixed validation set: the first round's validation split. Later rounds never
# train on it (exact and near-duplicate removal persist across rounds), so losses on it
# compare adapters of different rounds on the same data.
FIXED_VAL_ROUND = 1
PASS_AT_K = (1, 5, 10)

GenerateFn = Callable[[list[str]], list[str]]
RunProgramsFn = Callable[[list[str]], list[SandboxResult]]


class EvalInputError(HeidiError, ValueError):
    """The eval stage lacks an input (the adapter or the held-out tasks)."""


FENCE = "```"


def function_ended(generated: str) -> bool:
    """Whether a continuation of a function prompt has reached a top-level line."""
    return prompts.stop_at_toplevel(generated, "prompt") != generated


def reply_ended(generated: str, chat: bool) -> bool:
    """When to stop generating: where :func:`completion_of` stops reading the reply, so
    nothing generated after it could change the result.

    A fenced answer at its closing fence (or at the first fence, when code precedes it:
    the answer began inside a block); a continuation (any reply without a chat template,
    and a chat reply that opens with an indented body line, as the trained student
    answers) at its first top-level line; a chat reply that writes code out without a
    fence at the first top-level line after it that is not code; other replies at end of
    turn (EOS) or the token budget."""
    head, fence, _ = generated.partition(FENCE)
    if fence:
        code = prompts.leading_code(head)[0]
        return generated.count(FENCE) >= 2 or bool(re.search(r"^def\s", code, re.MULTILINE))
    if chat and not prompts.opens_with_body(generated):
        return prompts.leading_code(generated)[1]
    return function_ended(generated)


def completion_of(task: Task, generated: str) -> str:
    """The code a reply contributes after the task's prompt: a fenced answer read like a
    teacher's; a continuation up to its first top-level line; a function written out
    without a fence up to where its code ends (:func:`prompts.leading_code`)."""
    if FENCE in generated:  # an instruct model's answer: read it like a teacher's
        return prompts.extract_code(generated, task.entry_point, task.prompt)
    code = "" if prompts.opens_with_body(generated) else prompts.leading_code(generated)[0]
    if not code.strip():  # a continuation of the prompt
        code = prompts.stop_at_toplevel(generated, task.prompt)
    return prompts.extract_code(code, task.entry_point, task.prompt)


def judge(
    tasks: Sequence[Task], generations: Sequence[str], run_programs: RunProgramsFn
) -> list[dict]:
    """Per-task verdicts of one completion each, judged by the sandbox."""
    if len(generations) != len(tasks):
        raise RuntimeError(f"generator returned {len(generations)} texts for {len(tasks)} tasks")
    completions = [completion_of(task, text) for task, text in zip(tasks, generations)]
    programs = [
        build_program(task.prompt, completion, task.test, task.entry_point)
        for task, completion in zip(tasks, completions)
    ]
    verdicts = run_programs(programs)
    return [
        {
            "task_id": task.task_id,
            "passed": bool(verdict.passed),
            "reason": verdict.reason,
            "duration_ms": verdict.duration_ms,
            "completion": completion,
        }
        for task, completion, verdict in zip(tasks, completions, verdicts)
    ]


def evaluate_student(
    tasks: Sequence[Task], generate: GenerateFn, run_programs: RunProgramsFn
) -> list[dict]:
    """Per-task verdicts of one greedy completion each."""
    return judge(tasks, generate([prompts.student_prompt(task) for task in tasks]), run_programs)


def trained_val_loss(adapter_dir: Path, n_val_samples: int) -> float | None:
    """``val_loss`` from the adapter's ``metrics.json`` when it was measured on this many
    validation samples, else None (then the eval stage measures it)."""
    try:
        metrics = json.loads((adapter_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("n_val_samples") != n_val_samples:
        return None
    loss = metrics.get("val_loss")
    if isinstance(loss, bool) or not isinstance(loss, (int, float)):
        return None
    return float(loss)


def summarize(results: Sequence[dict]) -> dict:
    """n, passed, pass@1 and its 95% Wilson interval of one section's greedy results."""
    n = len(results)
    passed = sum(1 for r in results if r["passed"])
    low, high = wilson_interval(passed, n)
    return {
        "n_tasks": n,
        "n_passed": passed,
        "pass_at_1": passed / n if n else 0.0,
        "ci95_low": low,
        "ci95_high": high,
    }


def pass_at_k_summary(counts: Sequence[tuple[int, int]], temperature: float) -> dict:
    """pass@k (unbiased estimator) for each k in :data:`PASS_AT_K` the sample count allows."""
    samples = counts[0][0] if counts else 0
    return {
        "samples_per_task": samples,
        "temperature": temperature,
        **{f"pass_at_{k}": mean_pass_at_k(counts, k) for k in PASS_AT_K if k <= samples},
    }


def promotion(candidate: dict, best: dict | None, best_round: int | None) -> tuple[bool, str]:
    """Whether a report beats the best so far, and why: a higher dev pass@1, or an equal
    one and a lower loss on the fixed validation set."""
    if best is None or best.get("dev_pass_at_1") is None:
        return True, "first evaluated round" if best_round is None else (
            f"round {best_round}'s report has no dev result to compare with"
        )
    new, old = candidate["dev_pass_at_1"], best["dev_pass_at_1"]
    if new != old:
        verb = "improved" if new > old else "did not improve"
        return new > old, f"dev pass@1 {verb}: {new:.4f} vs {old:.4f} (round {best_round})"
    new_loss, old_loss = candidate.get("fixed_val_loss"), best.get("fixed_val_loss")
    if new_loss is None or old_loss is None:
        return False, (
            f"dev pass@1 tied at {new:.4f} with round {best_round}; "
            "no fixed validation loss to break the tie"
        )
    better = new_loss < old_loss
    return better, (
        f"dev pass@1 tied at {new:.4f} with round {best_round}; fixed validation loss "
        f"{new_loss:.4f} {'below' if better else 'not below'} {old_loss:.4f}"
    )


def best_report(out_dir: Path, this_round: int) -> tuple[str | None, dict | None, int | None]:
    """The current best adapter (relative path), its eval report and its round.

    A best adapter that is this very round (a re-run of the stage) counts as none, so the
    re-run reaches the same decision; so does one without a report.
    """
    from ..ml import adapters

    best = adapters.best_adapter_dir(out_dir)
    if best is None:
        return None, None, None
    best_round = adapters.round_of_adapter(best)
    if best_round is None or best_round == this_round:
        return None, None, None
    report_path = out_dir / run_layout.eval_report(best_round)
    if not report_path.is_file():
        return os.path.relpath(best, out_dir), None, best_round
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return os.path.relpath(best, out_dir), report, best_round


def previous_dev_failures(out_dir: Path, this_round: int, baseline: dict) -> list[str]:
    """Dev task ids the previous round's adapter failed (the base model's, for round 1)."""
    if this_round <= 1:
        rows = baseline["sections"]["dev"]["tasks"]
    else:
        path = out_dir / run_layout.eval_report(this_round - 1)
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["sections"]["dev"]["adapter"][
                "tasks"
            ]
        except (OSError, ValueError, KeyError, TypeError):
            return []
    return [str(row["task_id"]) for row in rows if not row["passed"]]


def teacher_usage(out_dir: Path, round_no: int) -> dict:
    """What the round's teacher cost, from the journal's complete lines: tokens paid for,
    ``cost_micros`` (with HEIDI_TEACHER_PRICE_* set) and answers taken from the cache."""
    from ..server.journal_index import TEACHER_USAGE, JournalIndex

    empty = {**dict.fromkeys(TEACHER_USAGE, 0), "cache_hits": 0}
    path = out_dir / run_layout.JOURNAL_FILE
    if not path.is_file():
        return empty
    return dict(JournalIndex(path).refresh().teacher_by_round.get(round_no, empty))


def baseline_key(config: Config, sections: dict[str, list[Task]], chat: bool = False) -> dict:
    """What the cached baseline depends on; a different key means it is recomputed."""
    return {
        "base_model": config.base_model,
        "chat_template": chat,
        "seed": config.seed,
        "max_new_tokens": MAX_NEW_TOKENS,
        "eval_samples": config.eval_samples,
        "eval_temperature": config.eval_temperature,
        "task_ids": {name: [task.task_id for task in tasks] for name, tasks in sections.items()},
    }


def load_baseline(path: Path, key: dict) -> dict | None:
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cached if isinstance(cached, dict) and cached.get("key") == key else None


def run(ctx: StageContext) -> dict:
    """Evaluate one round; returns the report written to ``eval/report_round_N.json``."""
    from ..ml import adapters, configure_torch_threads, generate, load_model
    from ..ml.formatting import chat_enabled, encode_samples, model_prompt
    from ..ml.lora import load_lora_adapter, mean_loss

    started = time.perf_counter()
    config, paths = ctx.config, ctx.paths
    adapter_dir = paths.lora_dir
    if not adapters.is_adapter_dir(adapter_dir):
        raise EvalInputError(f"no adapter in {adapter_dir} (run the train stage first)")
    level = resolve_level(config.sandbox)  # refuse before loading any model
    sections = held_out_tasks(config)
    if not all(sections.values()):
        empty = [name for name, tasks in sections.items() if not tasks]
        raise EvalInputError(f"no held-out tasks in section(s) {', '.join(empty)}")
    val_samples = read_samples(paths.val) if paths.val.exists() else []
    fixed_val_path = paths.data("val", FIXED_VAL_ROUND)
    fixed_val_samples = read_samples(fixed_val_path) if fixed_val_path.exists() else []
    configure_torch_threads()

    timings: dict[str, float] = {}
    load_started = time.perf_counter()
    base, tokenizer = load_model(config.base_model, seed=config.seed, tokenizer_dir=adapter_dir)
    model = load_lora_adapter(base, str(adapter_dir), trainable=False)
    chat = chat_enabled(tokenizer, config.chat_template)
    timings["load_s"] = time.perf_counter() - load_started

    limits = SandboxLimits(timeout_s=config.sandbox_timeout_s, memory_mb=config.sandbox_memory_mb)

    def run_programs(programs: list[str]) -> list[SandboxResult]:
        sandbox_started = time.perf_counter()
        results = run_many(programs, limits, config.sandbox_workers, level=level)
        timings["sandbox_s"] = timings.get("sandbox_s", 0.0) + time.perf_counter() - sandbox_started
        return results

    def generator(label: str, temperature: float = 0.0, seed: int = 0) -> GenerateFn:
        def generate_all(student_prompts: list[str]) -> list[str]:
            generate_started = time.perf_counter()
            texts = generate(
                model,
                tokenizer,
                [model_prompt(tokenizer, p, chat) for p in student_prompts],
                MAX_NEW_TOKENS,
                stop_when=lambda text: reply_ended(text, chat),
                batch_size=GENERATION_BATCH,
                on_batch=lambda done, total: progress(f"{label}: generated {done}/{total}"),
                temperature=temperature,
                seed=seed,
            )
            key = f"{label.split(' ')[0]}_generate_s"
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - generate_started
            return texts

        return generate_all

    def measure(label: str) -> dict:
        """Every section's greedy results (and pass@k when asked) for the active model."""
        measured = {}
        for name, tasks in sections.items():
            results = evaluate_student(tasks, generator(f"{label} {name}"), run_programs)
            section = {**summarize(results), "tasks": results}
            if config.eval_samples > 0:
                passed = [0] * len(tasks)
                for sample in range(config.eval_samples):
                    texts = generator(
                        f"{label} {name} sample {sample + 1}/{config.eval_samples}",
                        config.eval_temperature,
                        config.seed * 1000 + sample,
                    )([prompts.student_prompt(task) for task in tasks])
                    for i, row in enumerate(judge(tasks, texts, run_programs)):
                        passed[i] += row["passed"]
                counts = [(config.eval_samples, c) for c in passed]
                section["pass_at_k"] = pass_at_k_summary(counts, config.eval_temperature)
            measured[name] = section
            progress(
                f"{label} {name}: pass@1 {section['n_passed']}/{section['n_tasks']} "
                f"(95% CI {section['ci95_low']:.2f}-{section['ci95_high']:.2f})"
            )
        return measured

    baseline_path = paths.out_dir / run_layout.EVAL_BASELINE_FILE
    key = baseline_key(config, sections, chat)
    baseline = load_baseline(baseline_path, key)
    if baseline is None:
        counts = ", ".join(f"{len(tasks)} {name}" for name, tasks in sections.items())
        progress(f"baseline: scoring {config.base_model} without adapter on {counts} tasks")
        with model.disable_adapter():
            baseline = {"key": key, "sections": measure("baseline")}
        write_json_atomic(baseline_path, baseline)

    # The adapter's weights folded into the base layers: the same function, without the
    # LoRA branch on every generated token.
    model.merge_adapter()
    student = measure("student")
    val_started = time.perf_counter()

    def loss_on(samples: list[dict]) -> float | None:
        examples, _ = encode_samples(tokenizer, samples, config.seq_len, chat=chat)
        return mean_loss(model, examples, tokenizer.pad_token_id, config.batch_size)

    # The train stage measured this adapter on this round's validation split already
    # (same examples, same loss); the first round's split is also the fixed one.
    val_loss = trained_val_loss(adapter_dir, len(val_samples))
    if val_loss is None:
        val_loss = loss_on(val_samples)
    fixed_val_loss = val_loss if ctx.round == FIXED_VAL_ROUND else loss_on(fixed_val_samples)
    timings["val_s"] = time.perf_counter() - val_started

    failed_before = previous_dev_failures(paths.out_dir, ctx.round, baseline)
    dev_passed = {row["task_id"] for row in student["dev"]["tasks"] if row["passed"]}
    fixed = [task_id for task_id in failed_before if task_id in dev_passed]

    base_sections, test = baseline["sections"], student["test"]
    base_test = base_sections["test"]
    adapter_rel = os.path.relpath(adapter_dir, paths.out_dir)
    previous_best, previous_report, previous_round = best_report(paths.out_dir, ctx.round)
    report = {
        "round": ctx.round,
        # The headline: the test split, which nothing in the run is chosen by.
        "n_tasks": test["n_tasks"],
        "n_passed": test["n_passed"],
        "pass_at_1": test["pass_at_1"],
        "pass_at_1_low": test["ci95_low"],
        "pass_at_1_high": test["ci95_high"],
        "val_loss": val_loss,
        "fixed_val_loss": fixed_val_loss,
        "fixed_val_round": FIXED_VAL_ROUND if fixed_val_samples else None,
        "baseline_pass_at_1": base_test["pass_at_1"],
        "baseline_n_passed": base_test["n_passed"],
        "baseline_pass_at_1_low": base_test["ci95_low"],
        "baseline_pass_at_1_high": base_test["ci95_high"],
        "dev_pass_at_1": student["dev"]["pass_at_1"],
        "baseline_dev_pass_at_1": base_sections["dev"]["pass_at_1"],
        "adapter": adapter_rel,
        "base_model": config.base_model,
        "previous_best": previous_best,
    }
    promoted, why = promotion(report, previous_report, previous_round)
    best_rel = adapter_rel if promoted else previous_best
    report.update(
        {
            "promoted": promoted,
            "promotion_reason": why,
            "best_adapter": best_rel,
            "best_round": ctx.round if promoted else previous_round,
            "learning": {
                "previous_dev_failures": len(failed_before),
                "now_passing": len(fixed),
                "task_ids": fixed,
            },
            "sections": {
                name: {
                    "base": base_sections[name],
                    "adapter": student[name],
                }
                for name in sections
            },
            "teacher": teacher_usage(paths.out_dir, ctx.round),
            "max_new_tokens": MAX_NEW_TOKENS,
            "duration_s": time.perf_counter() - started,
            "timings": timings,
            "tasks": test["tasks"],
        }
    )
    write_json_atomic(paths.eval_report, report)
    if promoted:
        adapters.point_best_adapter(paths.out_dir, adapter_dir)
    return report


def _run_and_report(ctx: StageContext) -> int:
    report = run(ctx)
    learning = report["learning"]
    progress(
        f"round {report['round']} test pass@1 {report['n_passed']}/{report['n_tasks']} "
        f"(95% CI {report['pass_at_1_low']:.2f}-{report['pass_at_1_high']:.2f}; base "
        f"{report['baseline_pass_at_1']:.2f}), dev pass@1 {report['dev_pass_at_1']:.2f}; "
        f"{learning['now_passing']}/{learning['previous_dev_failures']} earlier dev failures "
        f"now pass; best adapter {report['best_adapter']} ({report['promotion_reason']})",
        artifact_paths=[os.path.relpath(ctx.paths.eval_report, ctx.paths.out_dir)],
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("eval", _run_and_report, argv,
                     config_errors=(TaskFileError, SandboxUnavailable),
                     input_errors=(EvalInputError,))


if __name__ == "__main__":
    sys.exit(main())
