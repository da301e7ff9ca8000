"""Train stage: ``python -m heidi_engine.stages.train --round N --out-dir DIR``.

LoRA-fine-tunes the student (``BASE_MODEL``) on ``data/train_round_N.jsonl`` with TRL's
``SFTTrainer`` (:mod:`heidi_engine.ml.trainer`): the student prompt, through the model's
chat template when it has one (:mod:`heidi_engine.ml.formatting`), and the completion,
loss on the completion only. Measures the loss on ``data/val_round_N.jsonl`` and writes
``out_lora/round_N/`` (``adapter_model.safetensors``, ``adapter_config.json``,
``metrics.json``, TensorBoard event files under ``tensorboard/``, and the tokenizer for
``tiny``) atomically. Round N > 1 continues from ``best_adapter`` with half the steps.

Checkpoints go to ``out_lora/round_N.checkpoints/`` every ``HEIDI_SAVE_STEPS`` steps; a
stage killed mid-way resumes from the newest complete one. ``HEIDI_TRAIN_LAUNCHER``
(e.g. ``torchrun --nproc_per_node 4``) runs the stage under that launcher, one process
per GPU; rank 0 reports and writes. QLoRA (4-bit) with ``HEIDI_QLORA`` (auto: when a
CUDA GPU, bitsandbytes and a transformers checkpoint are present).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import prompts
from .._py.config import Config
from ..errors import ConfigError, HeidiError
from ..io import write_json_atomic
from ..telemetry import progress
from .common import StageContext, read_samples, run_stage

CHECKPOINT_SUFFIX = ".checkpoints"
LAUNCHED_ENV = "HEIDI_TRAIN_LAUNCHED"


class TrainingDataError(HeidiError, ValueError):
    """The round has nothing to train on."""


def resumed_steps(train_steps: int) -> int:
    """Steps of a round that continues from an earlier adapter: half, at least one."""
    return max(1, train_steps // 2)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def checkpoint_dir(ctx: StageContext) -> Path:
    """Where the round's training checkpoints live until its adapter is published."""
    lora_dir = ctx.paths.lora_dir
    return lora_dir.with_name(lora_dir.name + CHECKPOINT_SUFFIX)


def use_qlora(config: Config) -> bool:
    """``HEIDI_QLORA``: auto uses it when possible; on fails clearly when impossible."""
    from ..ml.models import qlora_unavailable_reason

    if config.qlora == "off":
        return False
    why = qlora_unavailable_reason(config.base_model)
    if config.qlora == "on" and why is not None:
        raise ConfigError(f"invalid value for HEIDI_QLORA: 'on' (QLoRA is impossible here: {why})")
    return why is None


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(ctx: StageContext) -> dict:
    """Train one round; returns the metrics written to ``metrics.json`` (on rank 0)."""
    from ..ml import adapters, configure_torch_threads, is_tiny, load_model
    from ..ml.formatting import chat_enabled, encode_samples
    from ..ml.lora import load_lora_adapter, mean_loss, new_lora_adapter, prepare_for_kbit_training
    from ..ml.models import save_tiny_tokenizer
    from ..ml.trainer import (
        TrainSettings,
        is_main_process,
        report_targets,
        resolve_precision,
        train,
    )

    started = time.perf_counter()
    config, paths = ctx.config, ctx.paths
    train_samples = read_samples(paths.train)
    if not train_samples:
        raise TrainingDataError(f"no training samples in {paths.train} (the round kept no answers)")
    val_samples = read_samples(paths.val) if paths.val.exists() else []
    threads = configure_torch_threads()
    precision = resolve_precision(config.train_precision)
    qlora = use_qlora(config)
    main = is_main_process()

    best = adapters.best_adapter_dir(paths.out_dir) if ctx.round > 1 else None
    if best is not None and adapters.round_of_adapter(best) == ctx.round:
        best = None  # a re-run of this round must not continue from its own earlier output
    steps = resumed_steps(config.train_steps) if best is not None else config.train_steps
    resumed_from = os.path.relpath(best, paths.out_dir) if best is not None else None
    if best is not None:
        _check_same_base_model(best, config.base_model)

    texts = [prompts.format_training_text(s) for s in (*train_samples, *val_samples)]
    load_started = time.perf_counter()
    model, tokenizer = load_model(
        config.base_model,
        seed=config.seed,
        tokenizer_dir=best,
        tokenizer_texts=texts,
        quantize_4bit=qlora,
    )
    chat = chat_enabled(tokenizer, config.chat_template)
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
    if main:
        progress(
            f"loaded {config.base_model} ({start_point}, {trainable} trainable parameters, "
            f"{'qlora' if qlora else 'lora'}, {precision}) in {load_s:.1f} s"
        )

    examples, dropped = encode_samples(tokenizer, train_samples, config.seq_len, chat=chat)
    val_examples, val_dropped = encode_samples(tokenizer, val_samples, config.seq_len, chat=chat)
    if not examples:
        raise TrainingDataError(
            f"none of the {len(train_samples)} training samples fits in SEQ_LEN={config.seq_len} "
            "tokens with any of its completion"
        )
    pad_id = tokenizer.pad_token_id
    val_before = mean_loss(model, val_examples, pad_id, config.batch_size) if main else None

    def on_step(record) -> None:
        progress(
            f"step {record.step}/{steps} loss {record.loss:.4f} lr {record.lr:.2e} "
            f"({record.seconds:.1f} s)",
            usage_delta={"train_tokens": record.tokens},
        )

    settings = TrainSettings(
        steps=steps,
        lr=config.lr,
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        seed=config.seed * 1000 + ctx.round,
        seq_len=config.seq_len,
        precision=precision,
        packing=config.train_packing,
        gradient_checkpointing=config.gradient_checkpointing or qlora,
        save_steps=config.save_steps,
        report_to=report_targets(config.report_to),
    )
    run_key = {
        "base_model": config.base_model,
        "resumed_from": resumed_from,
        "lora_r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "qlora": qlora,
        "chat": chat,
        "train_data": _file_digest(paths.train),
    }
    ckpt_dir = checkpoint_dir(ctx)
    train_started = time.perf_counter()
    result = train(model, tokenizer, examples, settings, ckpt_dir, run_key=run_key,
                   on_step=on_step)
    train_s = time.perf_counter() - train_started
    if result.resumed_at_step and main:
        progress(f"resumed training from checkpoint step {result.resumed_at_step}")
    if not main:
        return {}
    val_started = time.perf_counter()
    val_loss = mean_loss(model, val_examples, pad_id, config.batch_size)
    val_s = time.perf_counter() - val_started

    records = result.records
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
        "trainer": "trl.SFTTrainer",
        "precision": precision,
        "chat_template": chat,
        "packing": config.train_packing,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "world_size": result.world_size,
        "resumed_at_step": result.resumed_at_step,
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
        if (ckpt_dir / "tensorboard").is_dir():
            shutil.copytree(ckpt_dir / "tensorboard", tmp / "tensorboard")
        metrics["timings"]["save_s"] = time.perf_counter() - save_started
        metrics["duration_s"] = time.perf_counter() - started
        write_json_atomic(tmp / "metrics.json", metrics)
        adapters.publish_dir(tmp, paths.lora_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the adapter is out: nothing to resume
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


def launcher_argv(launcher: str, argv: Sequence[str]) -> list[str]:
    """The stage's command line under ``HEIDI_TRAIN_LAUNCHER`` (torchrun, accelerate launch)."""
    try:
        words = shlex.split(launcher)
    except ValueError as exc:
        raise ConfigError(f"invalid value for HEIDI_TRAIN_LAUNCHER: {launcher!r} ({exc})") from None
    if not words:
        raise ConfigError(f"invalid value for HEIDI_TRAIN_LAUNCHER: {launcher!r} (no command)")
    # torchrun and accelerate come with the ML extra, beside this interpreter.
    executable = shutil.which(words[0]) or shutil.which(
        words[0], path=str(Path(sys.executable).parent)
    )
    if executable is None:
        raise ConfigError(
            f"invalid value for HEIDI_TRAIN_LAUNCHER: {launcher!r} ({words[0]!r} is not on PATH)"
        )
    return [executable, *words[1:], "-m", "heidi_engine.stages.train", *argv]


def _run_and_report(ctx: StageContext) -> int:
    launcher = ctx.config.train_launcher.strip()
    if launcher and not os.environ.get(LAUNCHED_ENV) and "LOCAL_RANK" not in os.environ:
        argv = launcher_argv(
            launcher, ["--round", str(ctx.round), "--out-dir", str(ctx.paths.out_dir)]
        )
        progress(f"launching {shlex.join(argv)}")
        sys.stdout.flush()
        sys.stderr.flush()
        # The launcher replaces this process: same process group, same parent-death
        # signal, so the runner's timeout and kill reach every rank.
        os.environ[LAUNCHED_ENV] = "1"
        os.execvp(argv[0], argv)
    metrics = run(ctx)
    if not metrics:  # a rank other than 0
        return 0
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
