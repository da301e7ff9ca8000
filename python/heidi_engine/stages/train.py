"""Train stage: ``python -m heidi_engine.stages.train --round N --out-dir DIR``.

LoRA-fine-tunes the student (``BASE_MODEL``) on ``data/train_round_N.jsonl`` in the
student format of :mod:`heidi_engine.prompts` (the loss covers the completion only),
measures the loss on ``data/val_round_N.jsonl`` and writes ``out_lora/round_N/``
(``adapter_model.safetensors``, ``adapter_config.json``, ``metrics.json``, and the
tokenizer for ``tiny``) atomically. Round N > 1 continues from ``best_adapter`` with
half the steps. QLoRA (4-bit) is used when a CUDA GPU and bitsandbytes are present and
the base model is a transformers checkpoint; otherwise plain LoRA in float32.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import prompts
from ..errors import ConfigError, HeidiError
from ..io import write_json_atomic
from ..telemetry import progress
from .common import StageContext, read_samples, run_stage


class TrainingDataError(HeidiError, ValueError):
    """The round has nothing to train on."""


def resumed_steps(train_steps: int) -> int:
    """Steps of a round that continues from an earlier adapter: half, at least one."""
    return max(1, train_steps // 2)


def training_pair(sample: dict) -> tuple[str, str]:
    """``(prompt, completion)`` of a sample in the student format."""
    prompt = prompts.student_prompt(sample)
    text = prompts.format_training_text(sample)
    return prompt, text[len(prompt) :]


def encode_samples(tokenizer, samples: Sequence[dict], seq_len: int) -> tuple[list, int]:
    """Tokenised examples and the number of samples dropped because no completion fit."""
    from ..ml.lora import encode_example

    examples = []
    for sample in samples:
        example = encode_example(tokenizer, *training_pair(sample), seq_len)
        if example is not None:
            examples.append(example)
    return examples, len(samples) - len(examples)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def run(ctx: StageContext) -> dict:
    """Train one round; returns the metrics written to ``metrics.json``."""
    from ..ml import adapters, configure_torch_threads, is_tiny, load_model
    from ..ml.lora import (
        load_lora_adapter,
        mean_loss,
        new_lora_adapter,
        prepare_for_kbit_training,
        train_lora,
    )
    from ..ml.models import save_tiny_tokenizer, supports_4bit

    started = time.perf_counter()
    config, paths = ctx.config, ctx.paths
    train_samples = read_samples(paths.train)
    if not train_samples:
        raise TrainingDataError(f"no training samples in {paths.train} (the round kept no answers)")
    val_samples = read_samples(paths.val) if paths.val.exists() else []
    threads = configure_torch_threads()

    best = adapters.best_adapter_dir(paths.out_dir) if ctx.round > 1 else None
    if best is not None and adapters.round_of_adapter(best) == ctx.round:
        best = None  # a re-run of this round must not continue from its own earlier output
    steps = resumed_steps(config.train_steps) if best is not None else config.train_steps
    resumed_from = os.path.relpath(best, paths.out_dir) if best is not None else None
    if best is not None:
        _check_same_base_model(best, config.base_model)

    texts = [prompts.format_training_text(s) for s in (*train_samples, *val_samples)]
    load_started = time.perf_counter()
    qlora = supports_4bit(config.base_model)
    model, tokenizer = load_model(
        config.base_model,
        seed=config.seed,
        tokenizer_dir=best,
        tokenizer_texts=texts,
        quantize_4bit=qlora,
    )
    if qlora:
        model = prepare_for_kbit_training(model)
    if best is not None:
        model = load_lora_adapter(model, str(best), trainable=True)
    else:
        model = new_lora_adapter(
            model, r=config.lora_r, alpha=config.lora_alpha, seed=config.seed * 1000 + ctx.round
        )
    load_s = time.perf_counter() - load_started
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    start_point = f"resuming from {resumed_from}" if resumed_from else "new adapter"
    progress(
        f"loaded {config.base_model} ({start_point}, {trainable} trainable parameters) "
        f"in {load_s:.1f} s"
    )

    examples, dropped = encode_samples(tokenizer, train_samples, config.seq_len)
    val_examples, val_dropped = encode_samples(tokenizer, val_samples, config.seq_len)
    if not examples:
        raise TrainingDataError(
            f"none of the {len(train_samples)} training samples fits in SEQ_LEN={config.seq_len} "
            "tokens with any of its completion"
        )
    pad_id = tokenizer.pad_token_id
    val_before = mean_loss(model, val_examples, pad_id, config.batch_size)

    def on_step(record) -> None:
        progress(
            f"step {record.step}/{steps} loss {record.loss:.4f} lr {record.lr:.2e} "
            f"({record.seconds:.1f} s)",
            usage_delta={"train_tokens": record.tokens},
        )

    train_started = time.perf_counter()
    records = train_lora(
        model,
        examples,
        steps=steps,
        lr=config.lr,
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        seed=config.seed * 1000 + ctx.round,
        pad_token_id=pad_id,
        on_step=on_step,
    )
    train_s = time.perf_counter() - train_started
    val_started = time.perf_counter()
    val_loss = mean_loss(model, val_examples, pad_id, config.batch_size)
    val_s = time.perf_counter() - val_started

    losses = [r.loss for r in records]
    tail = losses[-max(1, len(losses) // 5) :]
    metrics = {
        "round": ctx.round,
        "base_model": config.base_model,
        "resumed_from": resumed_from,
        "steps": steps,
        "train_loss": _mean(tail),
        "train_loss_first": losses[0],
        "train_loss_avg": _mean(losses),
        "val_loss": val_loss,
        "val_loss_before": val_before,
        "duration_s": 0.0,  # set below, once saving is done
        "n_train_samples": len(train_samples),
        "n_val_samples": len(val_samples),
        "n_train_examples": len(examples),
        "dropped_too_long": dropped + val_dropped,
        "trainable_params": trainable,
        "method": "qlora" if qlora else "lora",
        "device": str(next(model.parameters()).device),
        "torch_threads": threads,
        "seed": config.seed,
        "lr": config.lr,
        "lora_r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "seq_len": config.seq_len,
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "losses": losses,
        "step_seconds": [r.seconds for r in records],
        "step_tokens": [r.tokens for r in records],
        "timings": {"load_s": load_s, "train_s": train_s, "val_s": val_s},
    }

    save_started = time.perf_counter()
    tmp = adapters.temp_dir_for(paths.lora_dir)
    try:
        model.save_pretrained(str(tmp))
        (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model card
        if is_tiny(config.base_model):
            save_tiny_tokenizer(tokenizer, tmp)
        metrics["timings"]["save_s"] = time.perf_counter() - save_started
        metrics["duration_s"] = time.perf_counter() - started
        write_json_atomic(tmp / "metrics.json", metrics)
        adapters.publish_dir(tmp, paths.lora_dir)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metrics


def _check_same_base_model(adapter_dir: Path, base_model: str) -> None:
    import json

    metrics_path = adapter_dir / "metrics.json"
    if not metrics_path.is_file():
        return
    previous = json.loads(metrics_path.read_text(encoding="utf-8")).get("base_model")
    if previous is not None and previous != base_model:
        raise ConfigError(
            f"invalid value for BASE_MODEL: {base_model!r} (the best adapter so far, "
            f"{adapter_dir.name}, was trained on {previous!r}; use a new OUT_DIR to change "
            "the base model)"
        )


def _run_and_report(ctx: StageContext) -> int:
    metrics = run(ctx)
    val = metrics["val_loss"]
    progress(
        f"trained {metrics['steps']} steps in {metrics['duration_s']:.1f} s: train loss "
        f"{metrics['train_loss']:.4f}, val loss {'n/a' if val is None else f'{val:.4f}'}",
        artifact_paths=[os.path.relpath(ctx.paths.lora_dir / "metrics.json", ctx.paths.out_dir)],
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("train", _run_and_report, argv,
                     input_errors=(TrainingDataError, FloatingPointError))

if __name__ == "__main__":
    sys.exit(main())
