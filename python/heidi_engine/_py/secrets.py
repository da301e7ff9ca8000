"""Scrubbing of journal fields and stage logs: the fast rule set of ``docs/secrets.md``.

The native backend implements the same rules by hand (``cpp/src/secrets.cpp``); each
pattern is written so that it matches deterministically (every repeat is maximal and
ends where the next part cannot start; alternatives are tried in the same order), which
is what makes the two agree byte for byte. Rules run in this order, each over the
previous one's output. A match is replaced by ``[REDACTED:<kind>]`` (for URL passwords,
bearer tokens and ``name=value`` assignments, only the secret part).
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# Keys and tokens must not be glued to a preceding word ("task-..." is no "sk-" key);
# a provider key may follow "_" or "-" ("seen_xoxb-...").
_NOT_AFTER_WORD = r"(?<![A-Za-z0-9_-])"
_NOT_AFTER_ALNUM = r"(?<![A-Za-z0-9])"
_PEM_LABEL = r"[A-Z ]*PRIVATE KEY(?: BLOCK)?-----"

# Provider keys by prefix: (kind, pattern), tried in this order at each position.
PROVIDER_KEYS: tuple[tuple[str, str], ...] = (
    ("anthropic_key", r"sk-ant-[A-Za-z0-9_-]{16,}"),
    ("openai_key", r"sk-[A-Za-z0-9_-]{16,}"),
    ("stripe_key", r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("shopify_token", r"shp(?:at|ca|pa|ss)_[A-Fa-f0-9]{32,}"),
    ("github_token", r"github_pat_[A-Za-z0-9_]{20,}"),
    ("github_token", r"gh[pousr]_[A-Za-z0-9]{20,}"),
    ("gitlab_token", r"glpat-[A-Za-z0-9_-]{20,}"),
    ("aws_access_key", r"(?:AKIA|ASIA)[A-Z0-9]{16,}"),
    ("google_api_key", r"AIza[A-Za-z0-9_-]{30,}"),
    ("google_oauth_secret", r"GOCSPX-[A-Za-z0-9_-]{20,}"),
    ("slack_token", r"xox[abprs]-[A-Za-z0-9-]{10,}"),
    ("slack_token", r"xapp-[A-Za-z0-9-]{20,}"),
    ("huggingface_token", r"hf_[A-Za-z0-9]{30,}"),
    ("slack_webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}"),
    ("discord_webhook", r"discord(?:app)?\.com/api/webhooks/[A-Za-z0-9/_-]{20,}"),
    ("stripe_webhook_secret", r"whsec_[A-Za-z0-9+/]{24,}"),
    ("npm_token", r"npm_[A-Za-z0-9]{36,}"),
    ("pypi_token", r"pypi-AgE[A-Za-z0-9_-]{50,}"),
    ("sendgrid_key", r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    ("digitalocean_token", r"do[opr]_v1_[a-f0-9]{32,}"),
    ("mailgun_key", r"key-[a-f0-9]{32,}"),
)
_PROVIDER_KINDS = tuple(kind for kind, _ in PROVIDER_KEYS)
_PROVIDER = re.compile(
    _NOT_AFTER_ALNUM
    + "(?:"
    + "|".join(f"(?P<k{i}>{pattern})" for i, (_, pattern) in enumerate(PROVIDER_KEYS))
    + ")",
    re.ASCII,
)

# Names whose value is a secret (case-insensitive), tried in this order at each position.
ASSIGNMENT_KEYWORDS = (
    "password", "passwd", "pwd",
    "secret_access_key", "secret-access-key", "secretaccesskey",
    "secret_key", "secret-key", "secretkey", "secret",
    "token", "api_key", "api-key", "apikey",
    "access_key", "access-key", "accesskey",
    "private_key", "private-key", "privatekey",
)


def _provider_marker(match: re.Match[str]) -> str:
    return marker(_PROVIDER_KINDS[int(match.lastgroup[1:])])


# (pattern, replacement); re.ASCII keeps \s and case folding to ASCII, as in C++.
RULES: tuple[tuple[re.Pattern[str], object], ...] = (
    # A PEM/OpenSSH/PGP private key block, to its END line or, when that is missing, to the end.
    (
        re.compile(r"-----BEGIN" + _PEM_LABEL + r"(?:.*?-----END" + _PEM_LABEL + r"|.*)",
                   re.ASCII | re.DOTALL),
        marker("private_key"),
    ),
    # The password of scheme://user:password@host (every scheme).
    (re.compile(r"://([^\s:/@]*):[^\s/@]+@", re.ASCII), r"://\1:" + marker("url_password") + "@"),
    # JSON Web Tokens.
    (
        re.compile(_NOT_AFTER_WORD + r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
                   re.ASCII),
        marker("jwt"),
    ),
    # Provider keys and webhook URLs by prefix.
    (_PROVIDER, _provider_marker),
    # Authorization: Bearer <token>.
    (
        re.compile(_NOT_AFTER_WORD + r"((?i:bearer)[ \t]+)[A-Za-z0-9._~+/=-]{8,}", re.ASCII),
        r"\1" + marker("bearer_token"),
    ),
    # password=..., "token": "...", AWS_SECRET_ACCESS_KEY: ... (the value only).
    (
        re.compile(
            "((?i:" + "|".join(re.escape(k) for k in ASSIGNMENT_KEYWORDS) + ")"
            r"[\"']?[ \t]*[=:][ \t]*[\"']?)"
            r"[^\s\"',;&]+",
            re.ASCII,
        ),
        r"\1" + marker("secret_assignment"),
    ),
)


# Per rule, characters of which a match holds at least one (every provider key holds
# "-", "_" or "."; or starts with "A"): a rule runs only when one is in the text.
_TRIGGERS = ("-", ":", "J", "-_.A", "bB", "=:")


def scrub_secrets(text: str) -> str:
    """``text`` with every secret the rules find replaced by ``[REDACTED:<kind>]``."""
    for (pattern, replacement), triggers in zip(RULES, _TRIGGERS, strict=True):
        if any(c in text for c in triggers):
            text = pattern.sub(replacement, text)
    return text


def scrub_bytes(data: bytes) -> bytes:
    """``scrub_secrets`` over bytes (a stage log): bytes that are not UTF-8 pass through,
    and, as every rule's classes are ASCII, each is treated as the C++ scrubber treats it."""
    text = data.decode("utf-8", "surrogateescape")
    scrubbed = scrub_secrets(text)
    return data if scrubbed == text else scrubbed.encode("utf-8", "surrogateescape")


__all__ = ["REDACTED", "RULES", "marker", "scrub_bytes", "scrub_secrets"]
