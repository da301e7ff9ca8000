"""Scrubbing of journal messages: the fast rule set of ``docs/secrets.md``.

The native backend implements the same rules by hand (``cpp/src/secrets.cpp``); each
pattern is written so that it matches deterministically (every repeat is maximal and
ends where the next part cannot start), which is what makes the two agree byte for byte.
Rules run in this order, each over the previous one's output.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

# Keys and tokens must not be glued to a preceding word ("task-..." is no "sk-" key).
_NOT_AFTER_WORD = r"(?<![A-Za-z0-9_-])"

# (pattern, replacement); re.ASCII keeps \s and case folding to ASCII, as in C++.
RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # A PEM private key block, to its END line or, when that is missing, to the end.
    (
        re.compile(
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----(?:.*?-----END[A-Z ]*PRIVATE KEY-----|.*)",
            re.ASCII | re.DOTALL,
        ),
        REDACTED,
    ),
    # The password of scheme://user:password@host.
    (re.compile(r"://([^\s:/@]*):[^\s/@]+@", re.ASCII), r"://\1:" + REDACTED + "@"),
    # JSON Web Tokens.
    (
        re.compile(_NOT_AFTER_WORD + r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", re.ASCII),
        REDACTED,
    ),
    # Provider keys by prefix.
    (
        re.compile(
            _NOT_AFTER_WORD
            + r"(?:sk-[A-Za-z0-9_-]{16,}"
            + r"|gh[pousr]_[A-Za-z0-9]{20,}"
            + r"|github_pat_[A-Za-z0-9_]{20,}"
            + r"|(?:AKIA|ASIA)[A-Z0-9]{16,}"
            + r"|xox[abprs]-[A-Za-z0-9-]{10,}"
            + r"|AIza[A-Za-z0-9_-]{30,}"
            + r"|hf_[A-Za-z0-9]{30,})",
            re.ASCII,
        ),
        REDACTED,
    ),
    # Authorization: Bearer <token>.
    (
        re.compile(_NOT_AFTER_WORD + r"((?i:bearer)[ \t]+)[A-Za-z0-9._~+/=-]{8,}", re.ASCII),
        r"\1" + REDACTED,
    ),
    # password=..., "token": "...", API_KEY: ... (the value only).
    (
        re.compile(
            r"((?i:password|passwd|pwd|secret|token|api[_-]?key)[\"']?[ \t]*[=:][ \t]*[\"']?)"
            r"[^\s\"',;&]+",
            re.ASCII,
        ),
        r"\1" + REDACTED,
    ),
)


def scrub_secrets(message: str) -> str:
    """``message`` with every secret the rules find replaced by ``[REDACTED]``."""
    for pattern, replacement in RULES:
        message = pattern.sub(replacement, message)
    return message


__all__ = ["REDACTED", "RULES", "scrub_secrets"]
