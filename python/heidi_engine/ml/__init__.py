"""The student model: loading, LoRA training and generation.

torch, transformers and peft are imported only when a function here is called, so
importing the package costs nothing.
"""

from __future__ import annotations

from .generation import CODE_STOP_SEQUENCES, configure_torch_threads, generate, truncate_at_stop
from .models import SMOLLM2, TINY, ModelSource, is_tiny, load_model, resolve_base_model

__all__ = [
    "CODE_STOP_SEQUENCES",
    "SMOLLM2",
    "TINY",
    "ModelSource",
    "configure_torch_threads",
    "generate",
    "is_tiny",
    "load_model",
    "resolve_base_model",
    "truncate_at_stop",
]
