"""What the student model is shown: one helper for training and generation alike.

With a chat template (``HEIDI_CHAT_TEMPLATE=auto`` and a tokenizer that has one, or
``on``), the student prompt of :mod:`heidi_engine.prompts` is the user turn after the
system prompt, and the model answers in the assistant turn, which ends with the
tokenizer's end-of-sequence token. Without one, the model continues the student prompt
directly (a code-completion model). The train stage tokenises ``model_prompt(...)`` and
the completion; the eval stage generates from the same ``model_prompt(...)``.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..prompts import SYSTEM_PROMPT


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
