"""The engine's JSON encoding: ``json.dumps(obj, ensure_ascii=True, separators=(",", ":"))``.

Every journal line and state file is this text plus ``"\\n"``; the native backend has its
own encoder with byte-identical output (golden vectors in ``tests/data/``).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as encode_string  # noqa: F401  (re-export)
from typing import Any


def dumps(obj: Any) -> str:
    """Compact, ASCII-only JSON of ``obj`` (no trailing newline)."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))


__all__ = ["dumps", "encode_string"]
