"""LoRA fine-tuning through TRL's ``SFTTrainer`` (transformers ``Trainer`` underneath).

The examples come tokenised (:func:`heidi_engine.ml.lora.encode_example`: the model prompt
and the completion tokenised apart, as at generation time), as ``input_ids`` plus a
``completion_mask``: the loss is on completion tokens only. The trainer brings what a user
of transformers expects: mixed precision, gradient accumulation and checkpointing,
``torchrun`` / ``accelerate launch`` data parallelism, ``report_to`` tracking (TensorBoard
by default), and checkpoints to resume from.

Two things differ from a stock ``SFTTrainer`` (:class:`CompletionSFTTrainer`):

- Without packing, batches are left-padded (:func:`heidi_engine.ml.lora.collate`), so every
  row's completion ends at the right edge and the LM head (a 49k-vocabulary projection,
  a fifth of a small model's work) runs on the completion span only; TRL's own loss
  scores every position off-GPU and adds entropy and accuracy metrics. With packing, TRL's
  collator and loss are used unchanged.
- The learning rate warms up linearly over the first tenth of the steps *including* the
  first (transformers' linear schedule gives step 1 a learning rate of 0), then decays
  linearly towards zero.

Checkpoints: every ``save_steps`` steps the trainer writes ``checkpoint-K`` under the
round's checkpoint directory; once it is complete, a ``heidi_complete.json`` marker is
written atomically (it is the publication of that checkpoint: a directory without it is
never resumed from). Only the newest two are kept. ``training_args.bin`` (a full pickle)
is deleted at once; what a resume reads is safetensors, JSON, or tensors read with
torch's ``weights_only`` loader, which cannot run code.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import write_json_atomic
from .lora import IGNORE_INDEX, Example

COMPLETE_MARKER = "heidi_complete.json"
RUN_KEY_FILE = "run_key.json"
CHECKPOINTS_KEPT = 2
WARMUP_SHARE = 10  # warm-up over the first 1/10 of the steps, then linear decay
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    lr: float
    batch_size: int
    grad_accum: int
    seed: int
    seq_len: int
    precision: str = "fp32"  # resolved: fp32 | bf16 | fp16
    packing: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 0
    report_to: tuple[str, ...] = ()


@dataclass
class StepRecord:
    step: int
    loss: float
    lr: float
    tokens: int
    seconds: float


@dataclass
class TrainResult:
    records: list[StepRecord]
    resumed_at_step: int  # the checkpoint this run continued from (0: none)
    world_size: int = 1


def is_main_process() -> bool:
    """Whether this is the only process, or rank 0 under a distributed launcher."""
    return int(os.environ.get("RANK", "0")) == 0


def resolve_precision(setting: str) -> str:
    """``auto``: bf16 on a GPU that has it, else fp16 on a GPU, fp32 on the CPU."""
    import torch

    cuda = torch.cuda.is_available()
    if setting == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if setting == "fp16" and not cuda:
        raise ConfigError(
            "invalid value for HEIDI_TRAIN_PRECISION: 'fp16' (fp16 training needs a CUDA GPU; "
            "use auto, fp32 or bf16)"
        )
    if setting == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            "invalid value for HEIDI_TRAIN_PRECISION: 'bf16' (this GPU has no bf16; use auto, "
            "fp16 or fp32)"
        )
    return setting


def report_targets(value: str) -> tuple[str, ...]:
    """``HEIDI_REPORT_TO`` as the trainer's ``report_to`` list (``none`` or empty: nothing)."""
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    return () if names in ((), ("none",)) else names


def _checkpointing_args(config_class: Any, enabled: bool) -> dict:
    """Gradient (activation) checkpointing, under the name this transformers uses."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    prefix = "activation" if "activation_checkpointing" in names else "gradient"
    return {
        f"{prefix}_checkpointing": enabled,
        f"{prefix}_checkpointing_kwargs": {"use_reentrant": False},
    }


def _dataset(examples: Sequence[Example]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({
        "input_ids": [e.input_ids for e in examples],
        "completion_mask": [[int(x != IGNORE_INDEX) for x in e.labels] for e in examples],
    })


def lr_factor(step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) as a share of the peak."""
    warmup = max(1, total_steps // WARMUP_SHARE)
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


class _LeftPadCollator:
    """Batches of ``{"input_ids", "labels"}`` rows (TRL builds the labels from the
    completion mask), left-padded (lora.collate)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        from .lora import collate

        return collate([Example(list(r["input_ids"]), list(r["labels"])) for r in rows],
                       self.pad_token_id)


def _trainer_class() -> type:
    from torch.optim.lr_scheduler import LambdaLR
    from trl import SFTTrainer

    class CompletionSFTTrainer(SFTTrainer):
        """SFTTrainer with the completion-span loss and the warm-up described above."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.args.packing or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            from .lora import summed_loss

            loss_sum, n_tokens = summed_loss(model, inputs,
                                             logits_to_keep=self._accepts_logits_to_keep)
            denominator = n_tokens if num_items_in_batch is None else num_items_in_batch
            loss = loss_sum / max(1, int(denominator))
            # As in Trainer.compute_loss: num_items_in_batch counts every rank's tokens and
            # DDP averages the gradients across ranks.
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return loss

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = LambdaLR(
                    optimizer if optimizer is not None else self.optimizer,
                    lambda step: lr_factor(step, num_training_steps),
                )
                self._created_lr_scheduler = True
            return self.lr_scheduler

    return CompletionSFTTrainer


# --- checkpoints --------------------------------------------------------------------


def _step_of(path: Path) -> int:
    return int(path.name.split("-", 1)[1])


def latest_checkpoint(checkpoint_dir: Path, run_key: dict, *, clean: bool = True) -> Path | None:
    """The newest complete checkpoint of this very training run, or None.

    With ``clean``, checkpoints of another run (other data, settings or starting
    adapter) are deleted, and so are incomplete ones (a kill while saving).
    """
    if not checkpoint_dir.is_dir():
        return None
    try:
        key = json.loads((checkpoint_dir / RUN_KEY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        key = None
    if key != run_key:
        if clean:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        return None
    best = None
    for entry in sorted(checkpoint_dir.glob("checkpoint-*"), key=_step_of):
        if (entry / COMPLETE_MARKER).is_file():
            best = entry
        elif clean:
            shutil.rmtree(entry, ignore_errors=True)
    return best


def _publish_checkpoint(path: Path, step: int) -> None:
    from ..io import fsync_files

    (path / "training_args.bin").unlink(missing_ok=True)
    fsync_files(path, recursive=True)
    write_json_atomic(path / COMPLETE_MARKER, {"step": step})


# --- training -----------------------------------------------------------------------


def _callback(steps: int, on_step: Callable[[StepRecord], None] | None) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Times every step, adds seconds and tokens to the trainer's log (so they are
        saved with checkpoints), reports each step and publishes each checkpoint."""

        def __init__(self) -> None:
            self.started = 0.0
            self.seconds = 0.0
            self.tokens_seen = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.tokens_seen = int(state.num_input_tokens_seen or 0)

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

        def on_log(self, args, state, control, logs=None, **kwargs):
            entry = state.log_history[-1] if state.log_history else {}
            if "loss" not in entry or "step_seconds" in entry:
                return
            seen = int(state.num_input_tokens_seen or 0)
            entry["step_seconds"] = self.seconds
            entry["step_tokens"] = seen - self.tokens_seen
            self.tokens_seen = seen
            record = _record(entry)
            if not math.isfinite(record.loss):
                raise FloatingPointError(
                    f"training loss became {record.loss} at step {record.step}"
                )
            if on_step is not None and state.is_world_process_zero:
                on_step(record)

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if path.is_dir():
                    _publish_checkpoint(path, state.global_step)

    return Progress()


def _record(entry: dict) -> StepRecord:
    return StepRecord(
        step=int(entry["step"]),
        loss=float(entry["loss"]),
        lr=float(entry.get("learning_rate", 0.0)),
        tokens=int(entry.get("step_tokens", 0)),
        seconds=float(entry.get("step_seconds", 0.0)),
    )


def training_arguments(settings: TrainSettings, output_dir: Path) -> Any:
    """The trainer's arguments for ``settings``, checkpoints under ``output_dir``."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.lr,
        # The schedule itself is lr_factor (CompletionSFTTrainer.create_scheduler).
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=settings.precision == "bf16",
        fp16=settings.precision == "fp16",
        use_cpu=not cuda,
        **_checkpointing_args(SFTConfig, settings.gradient_checkpointing),
        completion_only_loss=True,  # the completion_mask of every example
        packing=settings.packing,
        max_length=settings.seq_len if settings.packing else None,
        padding_free=False,
        logging_steps=1,
        logging_strategy="steps",
        save_strategy="steps" if settings.save_steps > 0 else "no",
        save_steps=max(1, settings.save_steps),
        save_total_limit=CHECKPOINTS_KEPT,
        save_only_model=False,
        report_to=list(settings.report_to) or "none",
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        dataset_num_proc=None,
        disable_tqdm=True,
        remove_unused_columns=True,
        ddp_find_unused_parameters=False,
    )


def make_trainer(model: Any, tokenizer: Any, examples: Sequence[Example], args: Any,
                 *callbacks: Any) -> Any:
    """TRL's SFTTrainer (:class:`CompletionSFTTrainer`) over the tokenised examples,
    printing nothing to stdout (the stage's stdout carries its ``@heidi`` events)."""
    from transformers import PrinterCallback

    from .lora import accepts_logits_to_keep

    extra = {} if args.packing else {"data_collator": _LeftPadCollator(tokenizer.pad_token_id)}
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=_dataset(examples),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        **extra,
    )
    trainer._accepts_logits_to_keep = accepts_logits_to_keep(model)
    trainer.remove_callback(PrinterCallback)
    return trainer


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    settings: TrainSettings,
    checkpoint_dir: Path,
    *,
    run_key: dict | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
) -> TrainResult:
    """Train the LoRA adapter of ``model`` for ``settings.steps`` optimiser steps.

    Each step takes ``batch_size * grad_accum`` examples (per process) from a seeded
    shuffle. A complete checkpoint of the same ``run_key`` in ``checkpoint_dir`` is
    resumed from. Returns one record per step, the resumed ones included.
    """
    if not examples:
        raise ValueError("no training examples")
    if settings.steps < 1:
        raise ValueError(f"steps must be >= 1, got {settings.steps}")
    if settings.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {settings.precision!r}")
    from accelerate import PartialState

    key = {**asdict(settings), "report_to": None, **(run_key or {})}
    state = PartialState()
    with state.main_process_first():  # the main process cleans up, then the others read
        resume = latest_checkpoint(checkpoint_dir, key, clean=state.is_main_process)
        if state.is_main_process:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(checkpoint_dir / RUN_KEY_FILE, key)
    if "tensorboard" in settings.report_to:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(checkpoint_dir / "tensorboard")
    args = training_arguments(settings, checkpoint_dir)
    trainer = make_trainer(model, tokenizer, examples, args, _callback(settings.steps, on_step))
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    model.eval()
    records = [_record(e) for e in trainer.state.log_history if "loss" in e and "step" in e]
    return TrainResult(
        records=records,
        resumed_at_step=_step_of(resume) if resume is not None else 0,
        world_size=state.num_processes,
    )



# --- what this machine can do -------------------------------------------------------


def training_paths() -> dict[str, dict[str, Any]]:
    """Which training paths this machine can use: ``{path: {"ok": bool, "detail": str}}``.

    Reported by ``heidi doctor``; cheap (imports torch only when the ML stack is present).
    """
    import importlib.util

    def have(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    missing = [m for m in ("torch", "transformers", "peft", "trl") if not have(m)]
    if missing:
        why = f"{', '.join(missing)} not installed (pip install 'heidi-engine[ml]')"
        return {name: {"ok": False, "detail": why}
                for name in ("cpu_lora", "gpu_lora", "qlora", "multi_gpu")}
    import torch

    cuda = torch.cuda.is_available()
    n_gpus = torch.cuda.device_count() if cuda else 0
    bf16 = cuda and torch.cuda.is_bf16_supported()
    launchers = [name for name in ("torchrun", "accelerate") if shutil.which(name)]
    paths = {
        "cpu_lora": {"ok": True, "detail": "LoRA in float32 on the CPU"},
        "gpu_lora": {
            "ok": cuda,
            "detail": (f"LoRA in {'bf16' if bf16 else 'fp16'} mixed precision on "
                       f"{torch.cuda.get_device_name(0)}") if cuda else "no CUDA GPU",
        },
    }
    if not cuda:
        qlora_why = "no CUDA GPU"
    elif not have("bitsandbytes"):
        qlora_why = "bitsandbytes not installed (pip install 'heidi-engine[gpu]')"
    else:
        qlora_why = ""
    paths["qlora"] = {
        "ok": not qlora_why,
        "detail": qlora_why or "4-bit NF4 via bitsandbytes, for a transformers checkpoint "
        "(not GGUF or tiny)",
    }
    if n_gpus >= 2 and launchers:
        multi = (True, f"{n_gpus} GPUs: HEIDI_TRAIN_LAUNCHER='torchrun --nproc_per_node {n_gpus}'")
    elif n_gpus >= 2:
        multi = (False, f"{n_gpus} GPUs but neither torchrun nor accelerate is on PATH")
    else:
        multi = (False, f"{n_gpus} CUDA GPU{'s' if n_gpus != 1 else ''}; data parallel needs 2+")
    paths["multi_gpu"] = {"ok": multi[0], "detail": multi[1]}
    return paths
