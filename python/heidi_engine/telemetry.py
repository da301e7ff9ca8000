"""Progress reporting for stage programs.

Stages never write the journal: they print ``@heidi {json}`` lines on stdout and the
Core journals them, in order, while the stage runs (SPEC §6).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from ._py.jsonenc import dumps
from .run_layout import LEVELS

PREFIX = "@heidi "


def format_event(
    event_type: str,
    message: str,
    *,
    level: str = "info",
    counters_delta: Mapping[str, int] | None = None,
    usage_delta: Mapping[str, int] | None = None,
    artifact_paths: Sequence[str] | None = None,
) -> str:
    """The ``@heidi`` line for one event (without the newline), scrubbed of secrets."""
    if level not in LEVELS:
        raise ValueError(f"invalid level {level!r} (valid: {', '.join(LEVELS)})")
    payload: dict[str, object] = {"event_type": event_type, "message": message, "level": level}
    if counters_delta:
        payload["counters_delta"] = {str(k): int(v) for k, v in counters_delta.items()}
    if usage_delta:
        payload["usage_delta"] = {str(k): int(v) for k, v in usage_delta.items()}
    if artifact_paths:
        payload["artifact_paths"] = [str(p) for p in artifact_paths]
    from .io import scrub_values

    (payload,) = scrub_values([payload])
    return PREFIX + dumps(payload)


def emit_event(event_type: str, message: str, **fields) -> None:
    """Print one ``@heidi`` progress line for the Core to journal."""
    sys.stdout.write(format_event(event_type, message, **fields) + "\n")
    sys.stdout.flush()


def progress(message: str, **fields) -> None:
    emit_event("progress", message, **fields)
