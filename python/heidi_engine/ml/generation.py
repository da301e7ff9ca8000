"""Greedy batched text generation on the CPU, with stop sequences."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

# Where a completion of a function body is over: the model starts another top-level
# statement. Callers that expect prose or fenced code pass their own list.
CODE_STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert ", "\n#")


def cpu_threads() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def configure_torch_threads() -> int:
    from .models import prepare_environment

    prepare_environment()
    import torch

    threads = cpu_threads()
    torch.set_num_threads(threads)
    return threads


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest stop sequence."""
    cut = len(text)
    for seq in stop:
        index = text.find(seq)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def _stop_criteria(
    tokenizer: Any, prompt_width: int, stop: Sequence[str], stop_when: Callable[[str], bool] | None
) -> Any:
    import torch
    from transformers import StoppingCriteria

    class StopOnSequences(StoppingCriteria):
        """Marks a row finished once its generated text contains a stop sequence."""

        def __init__(self) -> None:
            self.finished: list[bool] | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if self.finished is None:
                self.finished = [False] * input_ids.shape[0]
            for row in range(input_ids.shape[0]):
                if not self.finished[row]:
                    text = tokenizer.decode(input_ids[row, prompt_width:], skip_special_tokens=True)
                    self.finished[row] = any(seq in text for seq in stop) or bool(
                        stop_when is not None and stop_when(text)
                    )
            return torch.tensor(self.finished, dtype=torch.bool, device=input_ids.device)

    return StopOnSequences()


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 256,
    *,
    stop: Sequence[str] = (),
    stop_when: Callable[[str], bool] | None = None,
    batch_size: int = 8,
    on_batch: Callable[[int, int], None] | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Completions of ``prompts`` (one string each, in order): greedy, or sampled at
    ``temperature`` > 0 (nucleus ``top_p``) with torch's generator seeded from ``seed``.

    Prompts are batched by length with left padding; a row stops at the end-of-sequence
    token, after ``max_new_tokens``, at the first stop sequence (cut off the returned
    text), or once ``stop_when(generated_text)`` is true (the caller trims the text).
    ``on_batch(done, total)`` reports progress after each batch.
    """
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    results: list[str] = [""] * len(prompts)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    sampling = temperature > 0
    if sampling:
        torch.manual_seed(seed)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        **({"temperature": temperature, "top_p": top_p, "top_k": 0} if sampling else {}),
        num_beams=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues at the right edge of every row
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = tokenizer(
                [prompts[i] for i in batch],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(model.device)
            width = encoded["input_ids"].shape[1]
            criteria = StoppingCriteriaList(
                [_stop_criteria(tokenizer, width, stop, stop_when)] if stop or stop_when else []
            )
            with torch.inference_mode():
                output = model.generate(
                    **encoded, generation_config=config, stopping_criteria=criteria
                )
            for row, index in enumerate(batch):
                text = tokenizer.decode(output[row, width:], skip_special_tokens=True)
                results[index] = truncate_at_stop(text, stop)
            if on_batch is not None:
                on_batch(min(start + batch_size, len(order)), len(order))
    finally:
        tokenizer.padding_side = previous_side
    return results
