"""Eval stage: ``python -m heidi_engine.stages.eval --round N --out-dir DIR``.

Measures pass@1 (greedy, one completion per task) of the student — the base model with
the round's adapter ``out_lora/round_N`` — on the held-out tasks, each completion run
against its task's tests in the sandbox, plus the completion loss on
``data/val_round_N.jsonl``. The base model without adapter is scored once on the same
tasks (the round-0 baseline, cached in ``eval/baseline.json``). Writes
``eval/report_round_N.json`` and moves ``best_adapter`` to this round's adapter when
pass@1 improved on the best so far (ties broken by a lower validation loss); the first
evaluated round always becomes the best.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import prompts
from ..errors import HeidiError
from ..io import write_json_atomic
from ..sandbox import SandboxLimits, SandboxResult, build_program, run_many
from ..tasks import Task, TaskFileError, eval_tasks
from ..telemetry import progress
from .common import StageContext, read_samples, run_stage

# Held-out tasks per evaluation and the generation budget per task: sized so that the
# default run (SmolLM2-135M on 2 CPU cores) evaluates a round in about a minute.
EVAL_TASKS = 20
MAX_NEW_TOKENS = 128
GENERATION_BATCH = 10
BASELINE_FILE = "baseline.json"

GenerateFn = Callable[[list[str]], list[str]]
RunProgramsFn = Callable[[list[str]], list[SandboxResult]]


class EvalInputError(HeidiError, ValueError):
    """The eval stage lacks an input (the adapter or the held-out tasks)."""


FENCE = "```"


def function_ended(generated: str) -> bool:
    """Whether a continuation of a function prompt has reached a top-level line."""
    return prompts.stop_at_toplevel(generated, "prompt") != generated


def reply_ended(generated: str, chat: bool) -> bool:
    """When to stop generating: a fenced answer at its closing fence; a continuation
    at its first top-level line; a chat reply otherwise at end of turn (EOS)."""
    if FENCE in generated:
        return generated.count(FENCE) >= 2
    return not chat and function_ended(generated)


def completion_of(task: Task, generated: str) -> str:
    """The code a generated continuation (or a fenced chat answer) contributes after the
    task's prompt."""
    if FENCE in generated:  # an instruct model's answer: read it like a teacher's
        return prompts.extract_code(generated, task.entry_point, task.prompt)
    body = prompts.stop_at_toplevel(generated, task.prompt)
    return prompts.extract_code(body, task.entry_point, task.prompt)


def evaluate_student(
    tasks: Sequence[Task], generate: GenerateFn, run_programs: RunProgramsFn
) -> list[dict]:
    """Per-task verdicts of one greedy completion each, judged by the sandbox."""
    generations = generate([prompts.student_prompt(task) for task in tasks])
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


def pass_at_1(results: Sequence[dict]) -> float:
    """Share of tasks whose single greedy completion passed (0.0 for no tasks)."""
    return sum(1 for r in results if r["passed"]) / len(results) if results else 0.0


def is_improvement(candidate: dict, best: dict | None) -> bool:
    """Whether a report beats the best so far: higher pass@1, or equal and lower val loss."""
    if best is None:
        return True
    if candidate["pass_at_1"] != best["pass_at_1"]:
        return candidate["pass_at_1"] > best["pass_at_1"]
    new_loss, old_loss = candidate.get("val_loss"), best.get("val_loss")
    return new_loss is not None and old_loss is not None and new_loss < old_loss


def best_report(out_dir: Path, this_round: int) -> tuple[str | None, dict | None]:
    """The current best adapter (relative path) and its eval report.

    A best adapter that is this very round (a re-run of the stage) counts as none, so the
    re-run reaches the same decision; so does one without a report.
    """
    from ..ml import adapters

    best = adapters.best_adapter_dir(out_dir)
    if best is None:
        return None, None
    best_round = adapters.round_of_adapter(best)
    if best_round is None or best_round == this_round:
        return None, None
    report_path = out_dir / "eval" / f"report_round_{best_round}.json"
    if not report_path.is_file():
        return os.path.relpath(best, out_dir), None
    return os.path.relpath(best, out_dir), json.loads(report_path.read_text(encoding="utf-8"))


def baseline_key(config: object, tasks: Sequence[Task], chat: bool = False) -> dict:
    """What the cached baseline depends on; a different key means it is recomputed."""
    return {
        "base_model": config.base_model,
        "chat_template": chat,
        "seed": config.seed,
        "max_new_tokens": MAX_NEW_TOKENS,
        "task_ids": [task.task_id for task in tasks],
    }


def load_baseline(path: Path, key: dict) -> dict | None:
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cached if isinstance(cached, dict) and cached.get("key") == key else None


def _summary(results: Sequence[dict]) -> dict:
    return {
        "n_tasks": len(results),
        "n_passed": sum(1 for r in results if r["passed"]),
        "pass_at_1": pass_at_1(results),
    }


def run(ctx: StageContext) -> dict:
    """Evaluate one round; returns the report written to ``eval/report_round_N.json``."""
    from ..ml import adapters, configure_torch_threads, generate, load_model
    from ..ml.formatting import chat_enabled, model_prompt
    from ..ml.lora import load_lora_adapter, mean_loss
    from .train import encode_samples

    started = time.perf_counter()
    config, paths = ctx.config, ctx.paths
    adapter_dir = paths.lora_dir
    if not adapters.is_adapter_dir(adapter_dir):
        raise EvalInputError(f"no adapter in {adapter_dir} (run the train stage first)")
    tasks = eval_tasks(config, EVAL_TASKS)
    if not tasks:
        raise EvalInputError("no held-out tasks to evaluate on")
    val_samples = read_samples(paths.val) if paths.val.exists() else []
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
        results = run_many(programs, limits, config.sandbox_workers)
        timings["sandbox_s"] = timings.get("sandbox_s", 0.0) + time.perf_counter() - sandbox_started
        return results

    def generator(label: str) -> GenerateFn:
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
            )
            key = f"{label}_generate_s"
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - generate_started
            return texts

        return generate_all

    baseline_path = paths.out_dir / "eval" / BASELINE_FILE
    key = baseline_key(config, tasks, chat)
    baseline = load_baseline(baseline_path, key)
    if baseline is None:
        progress(f"baseline: scoring {config.base_model} without adapter on {len(tasks)} tasks")
        with model.disable_adapter():
            baseline_results = evaluate_student(tasks, generator("baseline"), run_programs)
        baseline = {"key": key, **_summary(baseline_results), "tasks": baseline_results}
        write_json_atomic(baseline_path, baseline)
    progress(f"baseline pass@1 {baseline['n_passed']}/{baseline['n_tasks']}")

    results = evaluate_student(tasks, generator("student"), run_programs)
    val_started = time.perf_counter()
    val_examples, _ = encode_samples(tokenizer, val_samples, config.seq_len, chat=chat)
    val_loss = mean_loss(model, val_examples, tokenizer.pad_token_id, config.batch_size)
    timings["val_s"] = time.perf_counter() - val_started

    adapter_rel = os.path.relpath(adapter_dir, paths.out_dir)
    previous_best, previous_report = best_report(paths.out_dir, ctx.round)
    report = {
        "round": ctx.round,
        **_summary(results),
        "val_loss": val_loss,
        "baseline_pass_at_1": baseline["pass_at_1"],
        "baseline_n_passed": baseline["n_passed"],
        "adapter": adapter_rel,
        "base_model": config.base_model,
        "previous_best": previous_best,
    }
    promoted = is_improvement(report, previous_report)
    report.update(
        {
            "promoted": promoted,
            "best_adapter": adapter_rel if promoted else previous_best,
            "max_new_tokens": MAX_NEW_TOKENS,
            "duration_s": time.perf_counter() - started,
            "timings": timings,
            "tasks": results,
        }
    )
    write_json_atomic(paths.eval_report, report)
    if promoted:
        adapters.point_best_adapter(paths.out_dir, adapter_dir)
    return report


def _run_and_report(ctx: StageContext) -> int:
    report = run(ctx)
    val = report["val_loss"]
    progress(
        f"round {report['round']} pass@1 {report['n_passed']}/{report['n_tasks']} "
        f"({report['pass_at_1']:.2f}, baseline {report['baseline_pass_at_1']:.2f}), val loss "
        f"{'n/a' if val is None else f'{val:.4f}'}; best adapter {report['best_adapter']}",
        artifact_paths=[os.path.relpath(ctx.paths.eval_report, ctx.paths.out_dir)],
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("eval", _run_and_report, argv, config_errors=(TaskFileError,),
                     input_errors=(EvalInputError,))

if __name__ == "__main__":
    sys.exit(main())
