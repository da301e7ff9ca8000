"""LoRA adapters and the completion loss of (prompt, completion) pairs.

Tokenisation of a pair (:func:`encode_example`), the adapter itself (new or loaded), and
the token-weighted completion loss the train and eval stages report as ``val_loss``.
The training loop is TRL's (:mod:`heidi_engine.ml.trainer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100  # label value the loss skips (prompt and padding tokens)
LORA_DROPOUT = 0.05


@dataclass(frozen=True)
class Example:
    """One tokenised training pair; ``labels`` is IGNORE_INDEX over the prompt."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def encode_example(tokenizer: Any, prompt: str, completion: str, seq_len: int) -> Example | None:
    """Tokenise a pair, the completion followed by end-of-sequence, cut to ``seq_len``.

    Prompt and completion are tokenised separately, as at generation time, where the
    model continues the tokenised prompt. Returns None when nothing of the completion
    fits in ``seq_len``.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    completion_ids = [*completion_ids, tokenizer.eos_token_id]
    input_ids = (prompt_ids + completion_ids)[:seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:seq_len]
    example = Example(input_ids, labels)
    # The first label is never predicted (nothing precedes it), so one target is not enough.
    if sum(1 for label in labels[1:] if label != IGNORE_INDEX) == 0:
        return None
    return example


def collate(examples: Sequence[Example], pad_token_id: int) -> dict[str, Any]:
    """Left-padded batch tensors: input_ids, attention_mask, position_ids, labels.

    Left padding puts every row's completion (a suffix of the example) at the right edge,
    so the logits of the prompt positions need not be computed at all.
    """
    import torch

    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, width - n :] = torch.tensor(example.input_ids)
        labels[row, width - n :] = torch.tensor(example.labels)
        attention[row, width - n :] = 1
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "position_ids": position_ids,
        "labels": labels,
    }


def _target_span(labels: Any) -> int:
    """Positions from the earliest target token of any row to the right edge."""
    import torch

    is_target = labels != IGNORE_INDEX
    if not bool(is_target.any()):
        return 0
    first = torch.where(is_target.any(dim=0))[0][0]
    return int(labels.shape[1] - first)


def accepts_logits_to_keep(model: Any) -> bool:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def summed_loss(
    model: Any, batch: dict[str, Any], *, logits_to_keep: bool | None = None
) -> tuple[Any, int]:
    """Sum of the per-token cross-entropy over target tokens, and their number.

    Only the last ``span + 1`` positions get logits (the LM head over a 49k vocabulary is
    a fifth of the model's work; prompt positions have no targets). ``logits_to_keep``
    says whether the model's forward takes that argument (None: look; a DDP wrapper hides
    the signature, so the trainer looks once on the unwrapped model).
    """
    import torch.nn.functional as F

    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch["labels"]
    keep = min(_target_span(labels) + 1, labels.shape[1])
    if logits_to_keep is None:
        logits_to_keep = accepts_logits_to_keep(model)
    extra = {"logits_to_keep": keep} if logits_to_keep else {}
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        **extra,
    ).logits
    logits = logits[:, -keep:]
    targets = labels[:, labels.shape[1] - keep + 1 :]
    loss = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, int((targets != IGNORE_INDEX).sum())


def mean_loss(
    model: Any, examples: Sequence[Example], pad_token_id: int, batch_size: int = 8
) -> float | None:
    """Token-weighted mean completion loss over ``examples`` (None when there are none)."""
    import torch

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start : start + batch_size], pad_token_id)
            loss, n = summed_loss(model, batch)
            total += float(loss)
            count += n
    model.train(was_training)
    return total / count if count else None


def prepare_for_kbit_training(model: Any) -> Any:
    """Make a 4-bit (QLoRA) base model trainable through its adapter."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)


def new_lora_adapter(model: Any, *, r: int, alpha: int, seed: int = 0) -> Any:
    """Wrap ``model`` with a fresh trainable LoRA adapter on every linear layer.

    The adapter's random initialisation depends on ``seed`` only.
    """
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=LORA_DROPOUT,
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # peft still calls a transformers method that transformers has deprecated.
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def load_lora_adapter(model: Any, adapter_dir: str, *, trainable: bool) -> Any:
    """Wrap ``model`` with the adapter saved in ``adapter_dir``."""
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)
