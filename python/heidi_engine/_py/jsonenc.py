"""The engine's JSON encoding: ``json.dumps(obj, ensure_ascii=True, separators=(",", ":"))``.

Every journal line and state file is this text plus ``"\\n"``; the native backend has its
own encoder with byte-identical output (golden vectors in ``tests/data/``). The stages'
files, the ``@heidi`` lines and both servers' answers use the same :func:`dumps`.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring_ascii as encode_string  # noqa: F401  (re-export)
from typing import Any


def dumps(obj: Any, *, sort_keys: bool = False) -> str:
    """Compact, ASCII-only JSON of ``obj`` (no trailing newline)."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), sort_keys=sort_keys)


def reject_constant(name: str) -> Any:
    """``parse_constant`` for ``json.loads``: NaN and Infinity are not JSON, and the native
    parser refuses them too."""
    raise ValueError(f"not JSON: {name}")


# Deepest nesting of arrays and objects accepted in a stage's @heidi line or a request body
# (the native twin is heidi/json_limits.hpp). Deeper text is refused before parsing:
# json.loads would raise RecursionError.
MAX_NESTING_DEPTH = 64
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def nesting_exceeds(text: str | bytes, max_depth: int = MAX_NESTING_DEPTH) -> bool:
    """True when ``text`` opens more than ``max_depth`` arrays/objects at once.

    Brackets inside strings do not count. A scan, not a parse: the text need not be valid JSON.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        elif token in (b"]", b"}"):
            depth = max(0, depth - 1)
    return False


__all__ = ["MAX_NESTING_DEPTH", "dumps", "encode_string", "nesting_exceeds", "reject_constant"]
