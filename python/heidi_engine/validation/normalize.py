"""Normalisation of sample text fields before deduplication (SPEC §8).

Code fields (``prompt``, ``completion``, ``test``): line endings to ``\\n``, trailing
whitespace removed from every terminated line, tabs in leading indentation expanded to
4 spaces, NUL characters removed. The last, unterminated line keeps its trailing
whitespace: a prompt may end with the indentation its completion continues.
Other text fields (``instruction`` and the rest): line endings and NULs only.
Each fix applied is named in the sample's ``metadata["normalized"]``.
"""

from __future__ import annotations

import re

CODE_FIELDS = ("prompt", "completion", "test")
TEXT_FIELDS = ("instruction",)

_TRAILING_WS = re.compile(r"[ \t\f\v]+(?=\n)")
_LEADING_TABS = re.compile(r"^[ \t]*\t[ \t]*", re.M)


def _expand_indent(match: re.Match) -> str:
    return match.group(0).expandtabs(4)


def normalize_code(text: str, applied: set[str]) -> str:
    # Each check is a cheap substring test, so clean text is never copied.
    text = normalize_text(text, applied)
    if " \n" in text or "\t\n" in text or "\f\n" in text or "\v\n" in text:
        text = _TRAILING_WS.sub("", text)
        applied.add("trailing_whitespace")
    if "\t" in text:
        expanded = _LEADING_TABS.sub(_expand_indent, text)
        if expanded != text:
            text = expanded
            applied.add("tabs")
    return text


def normalize_text(text: str, applied: set[str]) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
        applied.add("nul")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        applied.add("line_endings")
    return text


# Every fix needs one of these in the text (trailing whitespace: before a newline).
_FIX_MARKERS = ("\x00", "\r", "\t", " \n", "\f\n", "\v\n")


def normalize_sample(sample: dict, containing: str | None = None) -> dict:
    """A copy of a schema-valid sample with normalised text and the fixes recorded.

    ``containing``: a text that contains every text field (e.g. all of them joined with
    newlines); when no fix marker occurs in it, the fields are taken as they are.
    """
    applied: set[str] = set()
    out = dict(sample)
    if containing is None or any(marker in containing for marker in _FIX_MARKERS):
        for name in CODE_FIELDS:
            out[name] = normalize_code(sample[name], applied)
        for name in TEXT_FIELDS:
            out[name] = normalize_text(sample[name], applied)
    metadata = dict(sample["metadata"])
    metadata["normalized"] = sorted(applied)
    out["metadata"] = metadata
    return out
