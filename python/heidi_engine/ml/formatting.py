"""What the student model is shown: one helper for training and generation alike.

With a chat template (``HEIDI_CHAT_TEMPLATE=auto`` and a tokenizer that has one, or
``on``), the student prompt of :mod:`heidi_engine.prompts` is the user turn after the
system prompt, and the model answers in the assistant turn, which ends with the
tokenizer's end-of-sequence token. Without one, the model continues the student prompt
directly (a code-completion model). The train stage tokenises ``model_prompt(...)`` and
the completion; the eval stage generates from the same ``model_prompt(...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import prompts
from ..errors import ConfigError
from ..prompts import SYSTEM_PROMPT
from .lora import Example, encode_example


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_enabled(tokenizer: Any, setting: str) -> bool:
    """Whether prompts go through the chat template (``setting``: auto, on or off)."""
    if setting == "off":
        return False
    if setting == "on" and not has_chat_template(tokenizer):
        raise ConfigError(
            "invalid value for HEIDI_CHAT_TEMPLATE: 'on' (the tokenizer of BASE_MODEL has no "
            "chat template; use auto or off)"
        )
    return has_chat_template(tokenizer)


def model_prompt(tokenizer: Any, student_prompt: str, chat: bool) -> str:
    """The text the model continues for a student prompt."""
    if not chat:
        return student_prompt
    return tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": student_prompt}],
        tokenize=False,
        add_generation_prompt=True,
    )


def training_pair(sample: dict) -> tuple[str, str]:
    """``(prompt, completion)`` of a sample in the student format."""
    prompt = prompts.student_prompt(sample)
    text = prompts.format_training_text(sample)
    return prompt, text[len(prompt) :]


def encode_samples(
    tokenizer: Any, samples: Sequence[dict], seq_len: int, *, chat: bool = False
) -> tuple[list[Example], int]:
    """Tokenised examples and the number of samples dropped because no completion fit.

    The prompt is what the model is shown at generation time (``model_prompt``).
    """
    examples = []
    for sample in samples:
        prompt, completion = training_pair(sample)
        shown = model_prompt(tokenizer, prompt, chat)
        example = encode_example(tokenizer, shown, completion, seq_len)
        if example is not None:
            examples.append(example)
    return examples, len(samples) - len(examples)
