"""Secret detection for the validate stage (SPEC §8).

``find_secrets(text)`` returns where credentials are in a text; ``mask_secrets(text)``
replaces each with ``[REDACTED:<kind>]`` (``[REDACTED:aws_access_key]``). The rules cover
provider key formats, private keys, URLs with passwords, webhooks, JWTs and high-entropy
values assigned to password/secret/token/key names. A redaction marker is itself a
finding (of the kind it names): a text that was masked once is still known to have
carried a secret, and masking is idempotent.

Speed: every rule has literal trigger strings; a rule's regex only runs when one of its
triggers occurs in the text (a C-speed substring search), so clean code costs a few
dozen ``in`` tests. Findings carry positions and a rule name, never the secret itself,
so they are safe to log.

The journal scrubber of the engine core (``docs/secrets.md``) is a separate, smaller
rule set for messages.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

MASK = "[REDACTED]"
MARKER_PREFIX = "[REDACTED"


def marker(kind: str) -> str:
    """The text a secret of ``kind`` is replaced by."""
    return f"[REDACTED:{kind}]"


# Words that mark a value as a documentation placeholder rather than a credential.
_PLACEHOLDER_WORDS = ("example", "xxxx", "your_", "your-", "yourkey", "<", ">", "placeholder",
                      "redacted", "changeme", "change_me", "dummy", "****", "...", "${", "{{",
                      "replace", "insert", "here")
# Values that stand for a password in documentation (``postgres://user:password@host``).
_PLACEHOLDER_PASSWORDS = frozenset((
    "password", "passwd", "pass", "pwd", "pw", "secret", "changeme", "mypassword",
    "yourpassword", "example", "test", "testing", "foo", "bar", "foobar", "admin", "root",
    "user", "username", "guest", "letmein", "qwerty", "123456", "12345678", "default"))
# Providers' own published documentation examples (exact values).
PUBLISHED_EXAMPLES = frozenset((
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "pk_test_TYooMQauvdEDq54NiTphI7jx",
    "rk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"
    "aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
))


@dataclass(frozen=True)
class SecretFinding:
    """One detected secret: its rule and the span ``text[start:end]`` to mask."""

    kind: str
    start: int
    end: int


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _is_placeholder(value: str) -> bool:
    if value in PUBLISHED_EXAMPLES:
        return True
    lowered = value.lower()
    return any(word in lowered for word in _PLACEHOLDER_WORDS)


def _char_classes(value: str) -> int:
    lower = upper = digit = other = False
    for ch in value:
        if ch.islower():
            lower = True
        elif ch.isupper():
            upper = True
        elif ch.isdigit():
            digit = True
        else:
            other = True
    return lower + upper + digit + other


_IDENTIFIER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.\-][A-Za-z_][A-Za-z0-9_]*)*")


def _token_like(value: str) -> bool:
    """A provider token's random part: not a placeholder, not a run of one character."""
    return not _is_placeholder(value) and shannon_entropy(value) >= 2.5


def _mixed_token(value: str) -> bool:
    """A long random-looking token: letters and digits mixed, high entropy."""
    return (_token_like(value) and any(c.isdigit() for c in value)
            and any(c.isalpha() for c in value) and shannon_entropy(value) >= 3.0)


def _mixed_case_token(value: str) -> bool:
    return (_token_like(value) and any(c.islower() for c in value)
            and any(c.isupper() for c in value))


def looks_random(value: str, *, min_length: int = 16, min_entropy: float = 3.5) -> bool:
    """Whether a value assigned to a credential-like name looks like a real secret."""
    if len(value) < min_length or _is_placeholder(value):
        return False
    if _char_classes(value) < 2:
        return False
    if _IDENTIFIER_PATH.fullmatch(value) and not any(c.isdigit() for c in value):
        return False  # words, identifiers, dotted/dashed names
    return shannon_entropy(value) >= min_entropy


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern
    triggers: tuple[str, ...]
    group: int = 0
    check: Callable[[str], bool] | None = None
    # Triggers are searched in the lower-cased text instead of the text.
    lowercase_triggers: bool = False
    # A group that names the finding's kind (redaction markers).
    kind_group: int | None = None


def _rule(kind, pattern, triggers, group=0, check=None, flags=0, lowercase=False,
          kind_group=None) -> _Rule:
    return _Rule(kind, re.compile(pattern, flags), tuple(triggers), group, check, lowercase,
                 kind_group)


_B64 = r"A-Za-z0-9+/"
_END = r"(?![A-Za-z0-9_\-])"
# A token must not be glued to a preceding word ("task-sk-..." holds no "sk-" key); it
# may follow "_" or "-" ("seen_xoxb-...").
_START = r"(?<![A-Za-z0-9])"

_RULES: tuple[_Rule, ...] = (
    # A text that was masked before still carried a secret (fail-closed).
    _rule("redacted", r"\[REDACTED(?::([a-z0-9_]{1,40}))?\]", ["[redacted"], kind_group=1,
          lowercase=True),
    _rule("private_key",
          r"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----"
          # Line breaks (escaped or not), comment and string-continuation marks, and
          # header lines (Proc-Type: ...) may come before the key material.
          r"(?:\\[nr]|[\s#*;\"'+,]|//)*"
          r"(?:[A-Za-z][A-Za-z-]*:[^\n\\]*(?:\\n|\n)(?:\\[nr]|[\s#*;\"'+,]|//)*)*"
          r"[" + _B64 + r"]{32}[\s\S]*?"
          r"(?:-----END[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----|\Z)",
          ["PRIVATE KEY"]),
    _rule("aws_access_key",
          r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)"
          r"[A-Z2-7]{16}\b",
          ["AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA",
           "AROA", "ASCA", "A3T"], check=_token_like),
    _rule("aws_secret_access_key",
          r"aws[\w.\-]{0,30}?(?:secret|sk)[\w.\-]{0,30}?['\"]?\s*(?:=|:|=>|:=)\s*['\"]?"
          r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
          ["aws"], group=1, check=_mixed_token, flags=re.I, lowercase=True),
    _rule("github_token", _START + r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}" + _END,
          ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], check=_token_like),
    _rule("github_fine_grained_token",
          _START + r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}" + _END,
          ["github_pat_"], check=_token_like),
    _rule("gitlab_token", _START + r"glpat-[A-Za-z0-9_\-]{20}" + _END, ["glpat-"],
          check=_token_like),
    _rule("anthropic_key", _START + r"sk-ant-[a-z]{2,8}\d{2}-[A-Za-z0-9_\-]{32,}", ["sk-ant-"],
          check=_token_like),
    _rule("openai_key", _START + r"sk-(?!ant-)(?:[a-z]{2,8}-)?[A-Za-z0-9_\-]{20,}", ["sk-"],
          check=_mixed_token),
    _rule("huggingface_token", _START + r"hf_[A-Za-z0-9]{30,40}" + _END, ["hf_"],
          check=_mixed_case_token),
    _rule("google_api_key", _START + r"AIza[0-9A-Za-z_\-]{35}" + _END, ["AIza"], check=_token_like),
    _rule("google_oauth_secret", _START + r"GOCSPX-[A-Za-z0-9_\-]{28}" + _END, ["GOCSPX-"],
          check=_token_like),
    _rule("slack_token", _START + r"xox(?:[abposr]|e\.xoxp)-[0-9A-Za-z\-]{10,}",
          ["xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xoxe.xoxp-"],
          check=_mixed_token),
    _rule("slack_app_token", _START + r"xapp-\d-[A-Z0-9]+-\d+-[A-Za-z0-9]{32,}", ["xapp-"]),
    _rule("slack_webhook",
          r"hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9/_\-]{20,})",
          ["hooks.slack.com"], group=0, check=lambda v: _token_like(v.rsplit("/", 1)[-1])),
    _rule("discord_webhook",
          r"discord(?:app)?\.com/api/webhooks/\d{5,30}/([A-Za-z0-9_\-]{30,})",
          ["/api/webhooks/"], check=lambda v: _token_like(v.rsplit("/", 1)[-1])),
    _rule("stripe_key", _START + r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{20,}", ["_live_", "_test_"],
          check=_mixed_token),
    _rule("stripe_webhook_secret", _START + r"whsec_[A-Za-z0-9+/]{32,}", ["whsec_"],
          check=_token_like),
    _rule("twilio_api_key", r"\bSK[0-9a-f]{32}\b", ["SK"], check=_token_like),
    _rule("twilio_account_sid", r"\bAC[0-9a-f]{32}\b", ["AC"], check=_token_like),
    _rule("sendgrid_key", r"\bSG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}" + _END, ["SG."]),
    _rule("mailgun_key", _START + r"key-[0-9a-f]{32}" + _END, ["key-"], check=_token_like),
    _rule("telegram_bot_token", r"\b\d{8,10}:AA[A-Za-z0-9_\-]{33}" + _END, [":AA"],
          check=_mixed_token),
    _rule("npm_token", _START + r"npm_[A-Za-z0-9]{36}" + _END, ["npm_"], check=_token_like),
    _rule("npmrc_auth_token", r"_authToken\s*=\s*([^\s'\"$]{16,})", ["_authToken"], group=1,
          check=_token_like),
    _rule("pypi_token", _START + r"pypi-AgE[A-Za-z0-9_\-]{50,}", ["pypi-AgE"]),
    _rule("digitalocean_token", _START + r"do[opr]_v1_[a-f0-9]{64}\b", ["_v1_"]),
    _rule("shopify_token", _START + r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b",
          ["shpat_", "shpca_", "shppa_", "shpss_"]),
    _rule("azure_storage_key", r"(?:AccountKey|SharedAccessKey)\s*=\s*([A-Za-z0-9+/]{40,}={0,2})",
          ["AccountKey", "SharedAccessKey"], group=1, check=_token_like),
    _rule("azure_sas_signature", r"[?&;]sig=([A-Za-z0-9%+/=]{30,})", ["sig="], group=1,
          check=_token_like),
    _rule("jwt", _START + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
          ["eyJ"], check=lambda v: v not in PUBLISHED_EXAMPLES),
    # scheme://user:password@host for every scheme (databases, brokers, HTTP basic auth).
    _rule("url_password",
          r"\b[a-z][a-z0-9.\-]{1,20}(?:\+[a-z0-9]+)?://"
          r"[^:/\s@'\"]*:([^@/\s'\"]+)@",
          ["://"], group=1, check=lambda v: not _templated(v)),
    _rule("bearer_token", r"\bbearer\s+([A-Za-z0-9_\-.~+/]{16,}=*)", ["bearer"], group=1,
          check=lambda v: looks_random(v, min_entropy=3.0), flags=re.I, lowercase=True),
    _rule("basic_auth_header", r"authorization['\"]?\s*[:=]\s*['\"]?basic\s+([A-Za-z0-9+/]{12,}=*)",
          ["basic"], group=1, check=_token_like, flags=re.I, lowercase=True),
    # <add key="DB_PASSWORD" value="..."/> (XML application settings).
    _rule("high_entropy_assignment",
          r"key=['\"][\w.\-]*(?:pass|secret|token|api_?key|credential)[\w.\-]*['\"]\s+"
          r"value\s*=\s*['\"]([^'\"\s]{8,200})['\"]",
          ["key=\"", "key='"], group=1,
          check=lambda v: looks_random(v, min_length=8, min_entropy=2.5),
          flags=re.I, lowercase=True),
)


def _templated(value: str) -> bool:
    """A password slot filled in at run time (``${DB_PASS}``, ``{password}``, ``%s``...)
    or a documentation placeholder (``user:password@``)."""
    return (value[:1] in ("$", "{", "<", "%", "*", "[") or value.startswith(":")
            or _is_placeholder(value) or value.lower() in _PLACEHOLDER_PASSWORDS)


# High-entropy assignments: a credential-like name, an assignment operator, a value.
_STRONG_NAMES = ("password", "passwd", "pwd", "passphrase", "secret", "apikey", "api_key",
                 "api-key", "accesskey", "access_key", "privatekey", "private_key",
                 "auth_token", "authtoken", "access_token", "refresh_token", "credential",
                 "signing_key", "encryption_key", "master_key")
_WEAK_NAMES = ("token", "key", "auth")
_ASSIGNMENT_KEYWORDS = tuple(sorted(set(_STRONG_NAMES + _WEAK_NAMES + ("pass",))))
# Names whose value is about a secret, not the secret (``password_field = "pw1"``).
_DESCRIPTIVE_SUFFIXES = ("name", "names", "id", "ids", "path", "file", "env", "var", "field",
                         "type", "length", "len", "url", "uri", "prefix", "header", "dir",
                         "label", "pattern", "regex", "format", "count", "size", "hint",
                         "hash", "digest", "checksum", "sha", "fingerprint", "kid", "version")
# Names of things that are public by design (``STRIPE_PUBLISHABLE_KEY``, ``public_key``).
_PUBLIC_NAMES = ("public", "publishable", "authorized")
# Values that are identifiers, references or public material, not secrets.
_PUBLIC_PREFIXES = ("arn:", "ssh-rsa ", "ssh-ed25519 ", "ssh-dss ", "ecdsa-sha2-", "pk_live_",
                    "pk_test_", "http://", "https://", "sha256:", "sha512-", "data:")
_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FILE_PATH = re.compile(r".*/.*\.[A-Za-z][A-Za-z0-9]{0,4}")


def _public_value(value: str, name: str, strong_name: bool) -> bool:
    """Whether an assigned value is an ARN, a public key, a URL, a file path, or (under a
    plain ``*key`` name such as ``cache_key``) a hex digest or UUID: not a secret. (Hex
    under ``token`` or ``auth`` names stays suspect: older GitHub tokens were 40 hex.)"""
    if value.startswith(_PUBLIC_PREFIXES) or _FILE_PATH.fullmatch(value):
        return True
    plain_key = not strong_name and "token" not in name and "auth" not in name
    return plain_key and (_HEX.fullmatch(value) is not None or _UUID.fullmatch(value) is not None)


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_ASSIGNMENT_TAIL = re.compile(
    r"[A-Za-z0-9_.\-]*['\"]?\]?\s*(?:=|:=|=>|:|==)\s*"
    r"(?:[rbuRBU]?(?P<q>['\"])(?P<quoted>[^'\"\n\\]{6,200})(?P=q)"
    r"|(?P<bare>[^\s'\"`,;()\[\]{}<>]{8,200})(?=[\s,;]|$))")


def _assignment_findings(text: str, lowered: str) -> list[SecretFinding]:
    found = []
    seen_starts: set[int] = set()
    for keyword in _ASSIGNMENT_KEYWORDS:
        pos = lowered.find(keyword)
        while pos != -1:
            start = pos
            while start > 0 and text[start - 1] in _NAME_CHARS:
                start -= 1
            if start not in seen_starts:
                finding = _check_assignment(text, lowered, start, pos)
                if finding is not None:
                    seen_starts.add(start)
                    found.append(finding)
            pos = lowered.find(keyword, pos + len(keyword))
    return found


def _check_assignment(text: str, lowered: str, name_start: int, keyword_pos: int):
    match = _ASSIGNMENT_TAIL.match(text, keyword_pos)
    if match is None:
        return None
    name_end = keyword_pos + len(re.match(r"[A-Za-z0-9_.\-]*", text[keyword_pos:]).group(0))
    name = lowered[name_start:name_end].strip("._-")
    last_part = re.split(r"[._\-]", name)[-1]
    if last_part in _DESCRIPTIVE_SUFFIXES or any(word in name for word in _PUBLIC_NAMES):
        return None
    strong = any(word in name for word in _STRONG_NAMES) or last_part in ("pass", "pw")
    if not strong and not any(word in name for word in _WEAK_NAMES):
        return None
    if match.group("quoted") is not None:
        value, group = match.group("quoted"), "quoted"
        if strong:
            ok = looks_random(value, min_length=8, min_entropy=2.5)
        else:
            ok = looks_random(value, min_length=16, min_entropy=3.5)
    else:
        value, group = match.group("bare"), "bare"
        ok = looks_random(value, min_length=12 if strong else 20, min_entropy=3.3)
    if not ok or _public_value(value, name, strong):
        return None
    return SecretFinding("high_entropy_assignment", match.start(group), match.end(group))


_ASSIGNMENT_TRIGGERS = ("pass", "pwd", "secret", "token", "key", "auth", "credential")
# Where an assignment finding is possible at all. ``_check_assignment`` needs, from a
# keyword on, name characters, an optional quote and ``]``, spaces, an operator and a
# long enough value (``_ASSIGNMENT_TAIL``). Every keyword contains a trigger word and is
# made of name characters, so a finding needs an operator with such a value whose name
# run before it contains a trigger word. Searching from the operator (a regex led by one
# literal character) is far cheaper than trying every common letter a keyword starts with.
# ``looks_random`` accepts no quoted value under 8 characters and no bare one under 12,
# so the candidates ask for those lengths (the tail itself allows 6 and 8).
_ASSIGNED_VALUE = (r"\s*(?:[rbu]?(['\"])[^'\"\n\\]{8,200}\1"
                   r"|[^\s'\"`,;()\[\]{}<>]{12,200}(?=[\s,;]|$))")
# (The value is a lookahead: a match must not swallow the next operator. What precedes
# the operator must be able to end ``name['"]?]?\s*``, which most operators in code fail.)
_ASSIGNMENT_OPERATORS = tuple(
    re.compile(f"{first}(?<=[a-z0-9_.\\-'\"\\]\\s]{first}){second}(?={_ASSIGNED_VALUE})")
    for first, second in (("=", "[>=]?"), (":", "=?")))
_NAME_CHARS_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


def _assignment_candidates(lowered: str) -> Iterator[int]:
    """Positions of operators in ``lowered`` that could end a credential assignment."""
    for operators in _ASSIGNMENT_OPERATORS:
        for match in operators.finditer(lowered):
            end = match.start()
            while end > 0 and lowered[end - 1].isspace():
                end -= 1
            if end > 0 and lowered[end - 1] == "]":
                end -= 1
            if end > 0 and lowered[end - 1] in "'\"":
                end -= 1
            start = end
            while start > 0 and lowered[start - 1] in _NAME_CHARS_LOWER:
                start -= 1
            if start < end:
                name = lowered[start:end]
                if any(word in name for word in _ASSIGNMENT_TRIGGERS):
                    yield match.start()


# Anchor characters, preferred first: each distinct anchor costs one pass over the text,
# so a few fairly rare characters serve every trigger (uppercase letters, ``-``, ``_``).
_ANCHOR_PREFERENCE = ("ASJ-_.=/:QZXVKWYBGFPMUHDLCONRTIE9876543210~^|%$#@!?+&*;"
                      "qjzxkvbwgyfpmuchdlonrtisae")


def _anchor(trigger: str) -> int:
    """The index of the character ``trigger`` is searched from."""
    def rank(index: int) -> int:
        found = _ANCHOR_PREFERENCE.find(trigger[index])
        return found if found >= 0 else len(_ANCHOR_PREFERENCE)
    return min(range(len(trigger)), key=rank)


_ALL_TRIGGERS = tuple(sorted({t for r in _RULES if not r.lowercase_triggers for t in r.triggers},
                             key=lambda t: (-len(t), t)))


def _anchored_scans() -> list[tuple[str, re.Pattern, dict[str, list[str]]]]:
    """Per anchor character: that character, a regex for the triggers anchored on it, and
    the triggers (longest first) by the text a match covers (anchor to trigger end).

    Each trigger is searched from an anchor character, with a lookbehind for the part
    before it, and the regex starts with that one literal character: the engine then
    skips straight to its occurrences, and a text without it costs one ``in`` test.
    Within an anchor, longer triggers come first, so a trigger that contains another
    (``sk-ant-`` and ``sk-``) selects the more specific rule.
    """
    by_anchor: dict[str, list[str]] = {}
    for trigger in _ALL_TRIGGERS:
        by_anchor.setdefault(trigger[_anchor(trigger)], []).append(trigger)
    scans = []
    for char, triggers in sorted(by_anchor.items()):
        plain, behind, preceding, ending = [], [], set(), {}
        for trigger in triggers:
            anchor = _anchor(trigger)
            rest = re.escape(trigger[anchor + 1:])
            if anchor:
                behind.append(f"(?<={re.escape(trigger[:anchor + 1])}){rest}")
                preceding.add(trigger[anchor - 1])
            else:
                plain.append(rest)
            ending.setdefault(trigger[anchor:], []).append(trigger)
        if behind:
            # One character class first: most occurrences of a common anchor (``_`` in
            # snake_case, ``-`` in numbers) fail it without trying every lookbehind.
            allowed = "".join(re.escape(c) for c in sorted(preceding))
            plain.append(f"(?<=[{allowed}]{re.escape(char)})(?:{'|'.join(behind)})")
        scans.append((char, re.compile(re.escape(char) + "(?:" + "|".join(plain) + ")"), ending))
    return scans


_TRIGGER_SCANS = _anchored_scans()


def _present_triggers(text: str) -> set[str]:
    """The triggers that occur in ``text``."""
    present = set()
    for char, scan, ending in _TRIGGER_SCANS:
        if char not in text:
            continue
        for match in scan.finditer(text):
            end = match.end()
            for trigger in ending[match.group()]:
                if end >= len(trigger) and text.startswith(trigger, end - len(trigger)):
                    present.add(trigger)
                    break
    return present


_ALL_LOWER_TRIGGERS = tuple(sorted({t for r in _RULES if r.lowercase_triggers for t in r.triggers}))


def find_secrets(text: str) -> list[SecretFinding]:
    """Every secret in ``text``, sorted by position (overlapping findings kept)."""
    present = _present_triggers(text)
    lowered = text.lower()
    present.update(t for t in _ALL_LOWER_TRIGGERS if t in lowered)
    findings: list[SecretFinding] = []
    for rule in _RULES:
        if present.isdisjoint(rule.triggers):
            continue
        for match in rule.pattern.finditer(text):
            value = match.group(rule.group)
            if value is None or (rule.check is not None and not rule.check(value)):
                continue
            kind = rule.kind
            if rule.kind_group is not None:
                kind = match.group(rule.kind_group) or "secret"
            findings.append(SecretFinding(kind, match.start(rule.group), match.end(rule.group)))
    # (lower() can change a text's length; the shortcut assumes it does not.)
    if len(lowered) != len(text) or any(True for _ in _assignment_candidates(lowered)):
        findings.extend(_assignment_findings(text, lowered))
    findings.sort(key=lambda f: (f.start, f.end))
    return findings


# Joins texts for the batch scan: no trigger and no assignment candidate can match
# across it (none contains a newline or NUL, and ``\s``, names and values stop at it).
_BATCH_SEPARATOR = "\n\x00\n"


def find_secrets_many(texts: Sequence[str]) -> list[list[SecretFinding]]:
    """``[find_secrets(t) for t in texts]``, faster for many texts.

    ``find_secrets`` finds nothing in a text where no trigger occurs and no assignment
    candidate matches. Those scans run once over all texts joined (a regex call per text
    and anchor cost more than the scanning itself), and only the texts they flag get the
    full detector.
    """
    joined = _BATCH_SEPARATOR.join(texts)
    lowered = joined.lower()
    if len(lowered) != len(joined):  # lower() changed a length: positions would not map
        return [find_secrets(text) for text in texts]
    starts = list(itertools.accumulate((len(t) + len(_BATCH_SEPARATOR) for t in texts[:-1]),
                                       initial=0))
    flagged: set[int] = set()

    def flag(position: int) -> None:
        flagged.add(bisect.bisect_right(starts, position) - 1)

    for char, scan, _ in _TRIGGER_SCANS:
        if char in joined:
            for match in scan.finditer(joined):
                flag(match.start())
    for trigger in _ALL_LOWER_TRIGGERS:
        position = lowered.find(trigger)
        while position != -1:
            flag(position)
            position = lowered.find(trigger, position + 1)
    for position in _assignment_candidates(lowered):
        flag(position)
    return [find_secrets(text) if i in flagged else [] for i, text in enumerate(texts)]


def contains_secret(text: str) -> bool:
    return bool(find_secrets(text))


def mask_secrets(text: str) -> str:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]`` (overlaps merged, the
    first finding's kind named)."""
    return _masked(text, find_secrets(text))


def mask_secrets_many(texts: Sequence[str]) -> list[str]:
    """``[mask_secrets(t) for t in texts]``, faster for many texts."""
    return [_masked(text, findings) for text, findings in zip(texts, find_secrets_many(texts))]


def _masked(text: str, findings: list[SecretFinding]) -> str:
    if not findings:
        return text
    pieces, cursor = [], 0
    for finding in findings:
        if finding.end <= cursor:
            continue
        if finding.start < cursor:  # overlaps the previous mask: extend it
            cursor = finding.end
            continue
        pieces.append(text[cursor:finding.start])
        pieces.append(marker(finding.kind))
        cursor = finding.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def json_strings(value: object, out: list[str]) -> list[str]:
    """Every string in a JSON value, keys included, appended to ``out`` in document order."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        append = out.append
        for key, item in value.items():
            append(key if type(key) is str else str(key))
            if type(item) is str:  # the common leaf, without a call
                append(item)
            elif isinstance(item, (str, dict, list)):
                json_strings(item, out)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (str, dict, list)):
                json_strings(item, out)
    return out


def _rebuild(value: object, masked: Iterator[str]) -> object:
    """``value`` with its strings (in ``json_strings`` order) taken from ``masked``."""
    if isinstance(value, str):
        return next(masked)
    if isinstance(value, dict):
        return {next(masked): _rebuild(v, masked) for v in value.values()}  # key, then value
    if isinstance(value, list):
        return [_rebuild(v, masked) for v in value]
    return value


def mask_value(value: object) -> object:
    """A JSON value with every secret in every string (and key) masked."""
    return _rebuild(value, iter(mask_secrets_many(json_strings(value, []))))


def scrub_values(values: Sequence[object]) -> list[object]:
    """``[mask_value(v) for v in values]``, faster for many values; a value without a
    secret is returned as it is (not copied).

    Each value's strings are joined with the batch separator (nothing matches across it)
    and the joined texts are checked together; only a value with a finding has its
    strings checked and masked one by one.
    """
    strings = [json_strings(value, []) for value in values]
    found = find_secrets_many([_BATCH_SEPARATOR.join(texts) for texts in strings])
    out = list(values)
    for i, findings in enumerate(found):
        if findings:
            out[i] = _rebuild(values[i], iter(mask_secrets_many(strings[i])))
    return out


def secret_kinds(text: str) -> list[str]:
    """The distinct rule names that fire on ``text`` (safe to log)."""
    return sorted({f.kind for f in find_secrets(text)})
