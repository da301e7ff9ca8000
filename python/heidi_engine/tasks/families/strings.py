"""The ``strings`` task families."""

from __future__ import annotations

import itertools
import string

from .common import WORDS, ordinal, random_sentence, random_text
from .registry import Spec, family

CHARSETS = (
    "aeiou",
    "0123456789",
    *("".join(c) for c in itertools.combinations("bcdfghklmnprst", 3)),
)


@family(
    "strings",
    func=("count_matching", "tally_chars", "count_selected_chars", "num_matches"),
    arg=("text", "s", "line"),
    charset=CHARSETS,
    ignore_case=(False, True),
)
def count_char_class(p, rng):
    a, cs = p["arg"], p["charset"]
    source = f"{a}.lower()" if p["ignore_case"] else a
    desc = f"Return how many characters of `{a}` are one of {cs!r}."
    desc += (
        " Uppercase letters count as their lowercase form."
        if p["ignore_case"]
        else " The comparison is case-sensitive."
    )
    body = f"    allowed = set({cs!r})\n    return sum(1 for ch in {source} if ch in allowed)\n"
    wrong = (
        f"    allowed = set({cs!r})\n    return len({{ch for ch in {source} if ch in allowed}})\n"
    )
    alphabet = cs + cs.upper() + "xyzq XYZ"
    cases = [(random_text(rng, alphabet, rng.randint(6, 14)),) for _ in range(3)]
    cases += [("",), ("zzz q",), (cs * 2 + cs.upper(),)]
    return Spec(f"def {p['func']}({a}: str) -> int:", desc, body, wrong, cases)


@family(
    "strings",
    func=("caesar_shift", "rotate_letters", "shift_cipher", "encode_shift"),
    arg=("text", "message", "s"),
    shift=tuple(range(1, 26)),
    decode=(False, True),
)
def caesar(p, rng):
    a, k = p["arg"], p["shift"]
    delta = -k if p["decode"] else k
    way = "backward" if p["decode"] else "forward"
    desc = (
        f"Shift every ASCII letter of `{a}` {k} places {way} in the alphabet, wrapping around "
        "and keeping its case. Other characters stay unchanged."
    )
    loop = (
        f"    out = []\n    for ch in {a}:\n"
        f"        if 'a' <= ch <= 'z':\n"
        f"            out.append(chr((ord(ch) - 97 + {delta}) % 26 + 97))\n"
    )
    upper = (
        f"        elif 'A' <= ch <= 'Z':\n"
        f"            out.append(chr((ord(ch) - 65 + {delta}) % 26 + 65))\n"
    )
    tail = "        else:\n            out.append(ch)\n    return ''.join(out)\n"
    cases = [
        (random_text(rng, string.ascii_letters + " ,!", rng.randint(5, 12)),) for _ in range(3)
    ]
    cases += [("",), ("xyz XYZ abc",), ("Hello, World!",)]
    return Spec(f"def {p['func']}({a}: str) -> str:", desc, loop + upper + tail, loop + tail, cases)


@family(
    "strings",
    func=("run_length_encode", "rle", "compress_runs", "encode_runs"),
    arg=("text", "s", "data"),
    count_first=(False, True),
    omit_single=(False, True),
    sep=("", "-", ",", " "),
)
def run_length(p, rng):
    a = p["arg"]
    piece = "count + ch" if p["count_first"] else "ch + count"
    desc = (
        f"Run-length encode `{a}`: each maximal run of one repeated character becomes "
        + (
            "its length followed by the character"
            if p["count_first"]
            else "the character followed by its length"
        )
        + (", where a run of length 1 is written without its length" if p["omit_single"] else "")
        + f". Join the pieces with {p['sep']!r}."
    )
    count = "'' if n == 1 else str(n)" if p["omit_single"] else "str(n)"
    body = (
        f"    pieces = []\n    i = 0\n    while i < len({a}):\n        j = i\n"
        f"        while j < len({a}) and {a}[j] == {a}[i]:\n            j += 1\n"
        f"        n = j - i\n        ch = {a}[i]\n        count = {count}\n"
        f"        pieces.append({piece})\n        i = j\n    return {p['sep']!r}.join(pieces)\n"
    )
    wrong = (
        f"    totals = {{}}\n    for ch in {a}:\n        totals[ch] = totals.get(ch, 0) + 1\n"
        f"    pieces = []\n    for ch, n in totals.items():\n        count = {count}\n"
        f"        pieces.append({piece})\n    return {p['sep']!r}.join(pieces)\n"
    )
    cases = [
        (random_text(rng, "aab", rng.randint(5, 10)) + "b" + random_text(rng, "cdd", 4),)
        for _ in range(3)
    ]
    cases += [("",), ("aaabccaa",), ("x",)]
    return Spec(f"def {p['func']}({a}: str) -> str:", desc, body, wrong, cases)


@family(
    "strings",
    func=("is_palindrome", "reads_same_backwards", "check_palindrome", "palindromic"),
    arg=("text", "s", "phrase"),
    ignore_case=(False, True),
    ignore=("nothing", "spaces", "non_alnum"),
)
def palindrome(p, rng):
    a = p["arg"]
    keep = {"nothing": "True", "spaces": "ch != ' '", "non_alnum": "ch.isalnum()"}[p["ignore"]]
    what = {
        "nothing": "every character counts",
        "spaces": "spaces are ignored",
        "non_alnum": "only letters and digits count",
    }[p["ignore"]]
    desc = f"Return True if `{a}` reads the same forwards and backwards, where {what} and " + (
        "letter case is ignored." if p["ignore_case"] else "letter case matters."
    )
    norm = ".lower()" if p["ignore_case"] else ""
    body = f"    t = [ch{norm} for ch in {a} if {keep}]\n    return t == t[::-1]\n"
    wrong = f"    t = [ch{norm} for ch in {a} if {keep}]\n    return not t or t[0] == t[-1]\n"
    w = rng.choice(("level", "noon", "radar", "stats"))
    cases = [
        (w,),
        ("abca",),
        ("",),
        ("Never odd or even",),
        ("No lemon, no melon",),
        ("Abba",),
        ("ab ba",),
        (random_text(rng, "ab", 5),),
    ]
    return Spec(f"def {p['func']}({a}: str) -> bool:", desc, body, wrong, cases)


@family(
    "strings",
    func=("count_long_words", "count_words_by_length", "tally_words", "words_matching"),
    arg=("sentence", "text", "s"),
    cmp=(">=", ">", "<=", "<", "=="),
    k=tuple(range(1, 10)),
)
def word_length_count(p, rng):
    a, op, k = p["arg"], p["cmp"], p["k"]
    desc = f"Return how many whitespace-separated words of `{a}` have a length {op} {k}."
    body = f"    return sum(1 for word in {a}.split() if len(word) {op} {k})\n"
    wrong = f"    return sum(1 for word in {a}.split() if len(word) {op} {k + 1})\n"
    exact = "w" * k
    cases = [(random_sentence(rng, rng.randint(3, 8)),) for _ in range(2)]
    cases += [
        ("",),
        (f"{exact} {'v' * (k + 1)} {'u' * max(k - 1, 1)}",),
        (f"  {exact}   {exact}x ",),
    ]
    return Spec(f"def {p['func']}({a}: str) -> int:", desc, body, wrong, cases)


CASE_CONVERSIONS = {
    # name: (description, body, wrong)
    "snake_to_camel": (
        "Convert a snake_case identifier to camelCase.",
        "    parts = {a}.split('_')\n"
        "    return parts[0] + ''.join(x.capitalize() for x in parts[1:])\n",
        "    return ''.join(x.capitalize() for x in {a}.split('_'))\n",
    ),
    "snake_to_pascal": (
        "Convert a snake_case identifier to PascalCase.",
        "    return ''.join(x.capitalize() for x in {a}.split('_'))\n",
        "    parts = {a}.split('_')\n"
        "    return parts[0] + ''.join(x.capitalize() for x in parts[1:])\n",
    ),
    "camel_to_snake": (
        "Convert a camelCase or PascalCase identifier to snake_case.",
        "    out = []\n    for i, ch in enumerate({a}):\n        if ch.isupper() and i > 0:\n"
        "            out.append('_')\n        out.append(ch.lower())\n    return ''.join(out)\n",
        "    return {a}.lower()\n",
    ),
    "camel_to_kebab": (
        "Convert a camelCase or PascalCase identifier to kebab-case.",
        "    out = []\n    for i, ch in enumerate({a}):\n        if ch.isupper() and i > 0:\n"
        "            out.append('-')\n        out.append(ch.lower())\n    return ''.join(out)\n",
        "    return {a}.lower()\n",
    ),
    "snake_to_kebab": (
        "Convert a snake_case identifier to kebab-case.",
        "    return {a}.replace('_', '-')\n",
        "    return {a}.replace('_', '-', 1)\n",
    ),
    "kebab_to_snake": (
        "Convert a kebab-case identifier to snake_case.",
        "    return {a}.replace('-', '_')\n",
        "    return {a}.replace('-', '_', 1)\n",
    ),
    "kebab_to_camel": (
        "Convert a kebab-case identifier to camelCase.",
        "    parts = {a}.split('-')\n"
        "    return parts[0] + ''.join(x.capitalize() for x in parts[1:])\n",
        "    return {a}.replace('-', '')\n",
    ),
}


@family(
    "strings",
    func=("{conv}", "convert_{conv}", "{conv}_case"),
    arg=("name", "identifier", "text"),
    conv=tuple(CASE_CONVERSIONS),
)
def case_convert(p, rng):
    a, conv = p["arg"], p["conv"]
    desc, body, wrong = CASE_CONVERSIONS[conv]
    words = [[rng.choice(WORDS[:20]) for _ in range(n)] for n in (3, 2, 4)]
    if conv.startswith("snake"):
        inputs = ["_".join(w) for w in words]
    elif conv.startswith("kebab"):
        inputs = ["-".join(w) for w in words]
    else:
        inputs = [w[0] + "".join(x.capitalize() for x in w[1:]) for w in words] + [
            "ParseHttpRequest"
        ]
    cases = [(s,) for s in inputs] + [("",), ("single",)]
    name = p["func"].format(conv=conv)
    return Spec(f"def {name}({a}: str) -> str:", desc, body.format(a=a), wrong.format(a=a), cases)


@family(
    "strings",
    func=("reverse_words", "flip_words", "mirror_words", "backwards_words"),
    arg=("sentence", "text", "s"),
    sep=(" ", "-", "_", ",", "/"),
    mode=("order", "letters"),
)
def reverse_words(p, rng):
    a, sep = p["arg"], p["sep"]
    if p["mode"] == "order":
        desc = (
            f"Split `{a}` on whitespace and return its words in reverse order, joined by {sep!r}."
        )
        body = f"    return {sep!r}.join(reversed({a}.split()))\n"
        wrong = f"    return {sep!r}.join({a}.split())[::-1]\n"
    else:
        desc = (
            f"Split `{a}` on whitespace, reverse the letters of each word (keeping the word "
            f"order) and join them with {sep!r}."
        )
        body = f"    return {sep!r}.join(word[::-1] for word in {a}.split())\n"
        wrong = f"    return {sep!r}.join(reversed({a}.split()))\n"
    cases = [(random_sentence(rng, rng.randint(2, 6)),) for _ in range(3)] + [
        ("",),
        ("one",),
        ("  ab   cd ",),
    ]
    return Spec(f"def {p['func']}({a}: str) -> str:", desc, body, wrong, cases)


@family(
    "strings",
    func=("mask_every_nth", "replace_nth_chars", "stamp_every_nth", "mark_positions"),
    arg=("text", "s", "word"),
    n=tuple(range(2, 10)),
    symbol=("*", "#", "_", "?", ".", "x"),
)
def mask_every_nth(p, rng):
    a, n, sym = p["arg"], p["n"], p["symbol"]
    desc = (
        f"Return `{a}` with every {ordinal(n)} character (the {ordinal(n)}, "
        f"{ordinal(2 * n)}, ... counting from 1) "
        f"replaced by {sym!r}."
    )
    body = (
        f"    return ''.join({sym!r} if (i + 1) % {n} == 0 else ch for i, ch in enumerate({a}))\n"
    )
    wrong = f"    return ''.join({sym!r} if i % {n} == 0 else ch for i, ch in enumerate({a}))\n"
    cases = [(random_text(rng, "abcdefgh", rng.randint(n, 3 * n + 2)),) for _ in range(3)]
    cases += [("",), ("a" * (n - 1),), ("q" * n,)]
    return Spec(f"def {p['func']}({a}: str) -> str:", desc, body, wrong, cases)
