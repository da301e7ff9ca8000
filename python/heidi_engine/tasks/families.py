"""The procedural task families (registered on import by :func:`procedural.family`).

Every family takes ``func`` (and usually ``arg``) naming choices plus semantic choices
(constants, operations, options). ``build`` returns the reference body, a plausible
buggy body used to check that the tests discriminate, and test inputs that include edge
cases (empty inputs, zero, boundaries).
"""

from __future__ import annotations

import datetime
import itertools
import random
import string

from .procedural import Spec, family

WORDS = (
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "piano",
    "lemon",
    "orbit",
    "maple",
    "ember",
    "frost",
    "delta",
    "quartz",
    "nova",
    "pixel",
    "harbor",
    "violet",
    "cedar",
    "falcon",
    "meadow",
    "sun",
    "sky",
    "ox",
    "a",
    "io",
    "tree",
    "banana",
    "level",
    "noon",
    "radar",
)
NAMES3 = ("items", "values", "xs")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _ints(rng: random.Random, n: int, lo: int = -20, hi: int = 50) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _text(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


# ------------------------------------------------------------------------- strings


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
    cases = [(_text(rng, alphabet, rng.randint(6, 14)),) for _ in range(3)]
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
    cases = [(_text(rng, string.ascii_letters + " ,!", rng.randint(5, 12)),) for _ in range(3)]
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
        (_text(rng, "aab", rng.randint(5, 10)) + "b" + _text(rng, "cdd", 4),) for _ in range(3)
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
        (_text(rng, "ab", 5),),
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
    cases = [(_sentence(rng, rng.randint(3, 8)),) for _ in range(2)]
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
    cases = [(_sentence(rng, rng.randint(2, 6)),) for _ in range(3)] + [
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
        f"Return `{a}` with every {_ordinal(n)} character (the {_ordinal(n)}, "
        f"{_ordinal(2 * n)}, ... counting from 1) "
        f"replaced by {sym!r}."
    )
    body = (
        f"    return ''.join({sym!r} if (i + 1) % {n} == 0 else ch for i, ch in enumerate({a}))\n"
    )
    wrong = f"    return ''.join({sym!r} if i % {n} == 0 else ch for i, ch in enumerate({a}))\n"
    cases = [(_text(rng, "abcdefgh", rng.randint(n, 3 * n + 2)),) for _ in range(3)]
    cases += [("",), ("a" * (n - 1),), ("q" * n,)]
    return Spec(f"def {p['func']}({a}: str) -> str:", desc, body, wrong, cases)


# --------------------------------------------------------------------------- lists


@family(
    "lists",
    func=("rotate", "rotate_list", "cycle_items", "shift_items"),
    arg=NAMES3,
    k=tuple(range(1, 13)),
    direction=("left", "right"),
)
def rotate_list(p, rng):
    a, k = p["arg"], p["k"]
    desc = (
        f"Return a new list with `{a}` rotated {k} positions to the {p['direction']} "
        f"(the rotation wraps around; an empty list stays empty)."
    )
    left = f"{a}[k:] + {a}[:k]"
    right = f"{a}[len({a}) - k:] + {a}[:len({a}) - k]"
    first, second = (left, right) if p["direction"] == "left" else (right, left)
    head = f"    if not {a}:\n        return []\n    k = {k} % len({a})\n"
    cases = [(_ints(rng, rng.randint(2, 9)),) for _ in range(2)]
    cases += [([],), ([7],), (list(range(2 * k + 1)),), (list(range(1, k + 2)),)]
    return Spec(
        f"def {p['func']}({a}: list[int]) -> list[int]:",
        desc,
        head + f"    return {first}\n",
        head + f"    return {second}\n",
        cases,
    )


@family(
    "lists",
    func=("chunk", "chunked", "split_into_groups", "batch_items"),
    arg=NAMES3,
    size=tuple(range(2, 9)),
    last=("keep", "drop", "pad"),
)
def chunk_list(p, rng):
    a, n = p["arg"], p["size"]
    rule = {
        "keep": "A shorter final chunk is kept as is.",
        "drop": "A final chunk shorter than that is dropped.",
        "pad": "A shorter final chunk is padded with zeros.",
    }[p["last"]]
    desc = f"Split `{a}` into consecutive chunks of {n} elements. {rule}"
    stop = f"len({a}) - {n} + 1" if p["last"] == "drop" else f"len({a})"
    wrong_stop = f"len({a}) - {n}"
    pad = f"chunk + [0] * ({n} - len(chunk))" if p["last"] == "pad" else "chunk"
    template = (
        f"    out = []\n    for i in range(0, {{stop}}, {n}):\n        chunk = {a}[i:i + {n}]\n"
        f"        out.append({pad})\n    return out\n"
    )
    cases = [(_ints(rng, rng.randint(n + 1, 3 * n)),) for _ in range(2)]
    cases += [([],), (list(range(n)),), (list(range(2 * n + 1)),), ([5] * (n - 1),)]
    return Spec(
        f"def {p['func']}({a}: list[int]) -> list[list[int]]:",
        desc,
        template.format(stop=stop),
        template.format(stop=wrong_stop),
        cases,
    )


SCAN_OPS = {
    "sum": ("running sum", "acc + x"),
    "max": ("running maximum", "max(acc, x)"),
    "min": ("running minimum", "min(acc, x)"),
    "product": ("running product", "acc * x"),
    "xor": ("running bitwise xor", "acc ^ x"),
}


@family(
    "lists",
    func=("running_totals", "prefix_scan", "cumulative", "accumulate_values"),
    arg=("nums", "values", "xs"),
    op=tuple(SCAN_OPS),
    from_right=(False, True),
)
def running_aggregate(p, rng):
    a = p["arg"]
    label, expr = SCAN_OPS[p["op"]]
    if p["from_right"]:
        desc = (
            f"Return the {label} of `{a}` taken from the right: element i of the result "
            f"combines {a}[i:] (the result keeps the input's order)."
        )
        src, ret = f"reversed({a})", "out[::-1]"
    else:
        desc = f"Return the {label} of `{a}`: element i of the result combines {a}[:i + 1]."
        src, ret = a, "out"
    template = (
        f"    out = []\n    acc = None\n    for x in {{src}}:\n"
        f"        acc = x if acc is None else {expr}\n        out.append(acc)\n    return {ret}\n"
    )
    wrong_src = f"list(reversed({a}))[:-1]" if p["from_right"] else f"{a}[:-1]"
    cases = [(_ints(rng, rng.randint(3, 7), -5, 9),) for _ in range(3)] + [
        ([],),
        ([4],),
        ([3, -1, 2],),
    ]
    return Spec(
        f"def {p['func']}({a}: list[int]) -> list[int]:",
        desc,
        template.format(src=src),
        template.format(src=wrong_src),
        cases,
    )


@family(
    "lists",
    func=("select_values", "filter_numbers", "keep_matching", "pick_items"),
    arg=("nums", "values", "xs"),
    m=tuple(range(2, 13)),
    remainder=("zero", "one", "minus_one"),
    keep=(True, False),
)
def filter_mod(p, rng):
    a, m = p["arg"], p["m"]
    r = {"zero": 0, "one": 1, "minus_one": m - 1}[p["remainder"]]
    op = "==" if p["keep"] else "!="
    verb = "Keep only" if p["keep"] else "Remove"
    desc = (
        f"{verb} the elements x of `{a}` with x % {m} == {r} (Python's modulo, so the result "
        "is never negative), preserving order and duplicates."
    )
    body = f"    return [x for x in {a} if x % {m} {op} {r}]\n"
    wrong = f"    return sorted(set(x for x in {a} if x % {m} {op} {r}))\n"
    cases = [(_ints(rng, rng.randint(5, 10), -30, 60),) for _ in range(2)]
    cases += [([],), ([r + 3 * m, r, r + m, r, 1 + r + m, -m + r, 2 + r],)]
    return Spec(f"def {p['func']}({a}: list[int]) -> list[int]:", desc, body, wrong, cases)


PAIR_OPS = {
    "diff": "b - a",
    "sum": "a + b",
    "max": "max(a, b)",
    "min": "min(a, b)",
    "product": "a * b",
    "abs_diff": "abs(b - a)",
}


@family(
    "lists",
    func=("pairwise", "adjacent_op", "neighbour_combine", "pair_up"),
    arg=("nums", "values", "xs"),
    op=tuple(PAIR_OPS),
    gap=(1, 2, 3, 4),
)
def adjacent_pairs(p, rng):
    a, g, expr = p["arg"], p["gap"], PAIR_OPS[p["op"]]
    desc = (
        f"For every i with i + {g} < len({a}), let a = {a}[i] and b = {a}[i + {g}]; return "
        f"the list of `{expr}` for those pairs, in order."
    )
    template = (
        f"    out = []\n    for i in range({{stop}}):\n        a, b = {a}[i], {a}[i + {g}]\n"
        f"        out.append({expr})\n    return out\n"
    )
    cases = [(_ints(rng, rng.randint(g + 2, g + 7), -9, 20),) for _ in range(3)]
    cases += [([],), ([1] * g,), (list(range(g + 1)),)]
    return Spec(
        f"def {p['func']}({a}: list[int]) -> list[int]:",
        desc,
        template.format(stop=f"len({a}) - {g}"),
        template.format(stop=f"len({a}) - {g} - 1"),
        cases,
    )


@family(
    "lists",
    func=("kth_value", "order_statistic", "pick_kth", "rank_select"),
    arg=("nums", "values", "xs"),
    k=(1, 2, 3, 4, 5),
    largest=(True, False),
    distinct=(False, True),
)
def kth_order(p, rng):
    a, k = p["arg"], p["k"]
    which = "largest" if p["largest"] else "smallest"
    desc = (
        f"Return the {_ordinal(k)} {which} {'distinct value' if p['distinct'] else 'element'} of "
        f"`{a}` (counting from 1{', duplicates counted once' if p['distinct'] else ''}), or None "
        "when there are not enough."
    )
    vals = f"sorted({'set(' + a + ')' if p['distinct'] else a}, reverse={p['largest']})"
    body = f"    vals = {vals}\n    return vals[{k - 1}] if len(vals) >= {k} else None\n"
    wrong = f"    vals = {vals}\n    return vals[{k}] if len(vals) > {k} else None\n"
    cases = [(_ints(rng, rng.randint(k + 2, k + 8), -10, 10),) for _ in range(3)]
    cases += [([],), (list(range(k)),), ([3, 3, 3, 1, 1, 2, 2, 9, 9, 5],)]
    return Spec(f"def {p['func']}({a}: list[int]) -> int | None:", desc, body, wrong, cases)


LIMITED_FLATTEN = " while fewer than that many levels were opened; deeper lists stay as lists"


def _nested(rng: random.Random, depth: int) -> list:
    out: list = []
    for _ in range(rng.randint(1, 3)):
        if depth > 0 and rng.random() < 0.6:
            out.append(_nested(rng, depth - 1))
        else:
            out.append(rng.randint(-5, 9))
    return out


@family(
    "recursion",
    func=("flatten", "flatten_list", "unnest", "deep_flatten"),
    arg=("items", "nested", "data"),
    depth=(0, 1, 2, 3),
    drop=("none", "zeros", "negatives"),
)
def flatten(p, rng):
    a, depth = p["arg"], p["depth"]
    limit = "" if depth == 0 else f" and level < {depth}"
    how = "completely" if depth == 0 else f"by at most {depth} level{'s' if depth > 1 else ''}"
    drop = {
        "none": "",
        "zeros": " Integers equal to 0 are left out.",
        "negatives": " Negative integers are left out.",
    }[p["drop"]]
    cond = {"none": "False", "zeros": "x == 0", "negatives": "x < 0"}[p["drop"]]
    desc = (
        f"Flatten the nested list `{a}` {how}: a list found inside is replaced by its "
        f"elements{'' if depth == 0 else LIMITED_FLATTEN}.{drop}"
    )
    template = (
        f"    def walk(seq, level):\n        out = []\n        for x in seq:\n"
        f"            if isinstance(x, list){{limit}}:\n"
        f"                out.extend(walk(x, level + 1))\n"
        f"            elif not (isinstance(x, int) and {cond}):\n                out.append(x)\n"
        f"        return out\n    return walk({a}, 0)\n"
    )
    wrong_limit = f" and level < {max(depth - 1, 1) if depth != 1 else 0}"
    cases = [(_nested(rng, 4),) for _ in range(3)]
    cases += [([],), ([1, [0, [-2, [3, [4, [5]]]]]],), ([[[]], 0, [-1, [2]]],)]
    return Spec(
        f"def {p['func']}({a}: list) -> list:",
        desc,
        template.format(limit=limit),
        template.format(limit=wrong_limit),
        cases,
    )


@family(
    "lists",
    func=("values_with_count", "filter_by_count", "select_by_frequency", "frequency_filter"),
    arg=("nums", "values", "xs"),
    cmp=("==", ">=", "<="),
    k=(1, 2, 3, 4, 5),
)
def count_occurrences(p, rng):
    a, op, k = p["arg"], p["cmp"], p["k"]
    desc = (
        f"Return the distinct values of `{a}` whose number of occurrences is {op} {k}, "
        "each once, in order of first appearance."
    )
    body = (
        f"    counts = {{}}\n    for x in {a}:\n        counts[x] = counts.get(x, 0) + 1\n"
        f"    return [x for x in counts if counts[x] {op} {k}]\n"
    )
    wrong = (
        f"    counts = {{}}\n    for x in {a}:\n        counts[x] = counts.get(x, 0) + 1\n"
        f"    return [x for x in counts if counts[x] {op} {k + 1}]\n"
    )
    base = [v for v in range(1, 7) for _ in range(v if v <= k + 1 else 1)]
    rng.shuffle(base)
    cases = [
        (base,),
        ([rng.randint(0, 4) for _ in range(12)],),
        ([],),
        ([9] * k + [8] * (k + 1) + [7],),
    ]
    return Spec(f"def {p['func']}({a}: list[int]) -> list[int]:", desc, body, wrong, cases)


# --------------------------------------------------------------------------- dicts


INVERT_MODES = {
    "list_asc": (
        "a sorted list (ascending) of all keys that had that value",
        "    out = {{}}\n    for k, v in {a}.items():\n        out.setdefault(v, []).append(k)\n"
        "    return {{v: sorted(ks) for v, ks in out.items()}}\n",
    ),
    "list_desc": (
        "a list of all keys that had that value, sorted in descending order",
        "    out = {{}}\n    for k, v in {a}.items():\n        out.setdefault(v, []).append(k)\n"
        "    return {{v: sorted(ks, reverse=True) for v, ks in out.items()}}\n",
    ),
    "min_key": (
        "the smallest key that had that value",
        "    out = {{}}\n    for k, v in {a}.items():\n        if v not in out or k < out[v]:\n"
        "            out[v] = k\n    return out\n",
    ),
    "max_key": (
        "the largest key that had that value",
        "    out = {{}}\n    for k, v in {a}.items():\n        if v not in out or k > out[v]:\n"
        "            out[v] = k\n    return out\n",
    ),
    "count": (
        "the number of keys that had that value",
        "    out = {{}}\n    for v in {a}.values():\n        out[v] = out.get(v, 0) + 1\n"
        "    return out\n",
    ),
}


@family(
    "dicts",
    func=("invert", "invert_mapping", "reverse_lookup", "index_by_value"),
    arg=("mapping", "table", "d"),
    mode=tuple(INVERT_MODES),
)
def invert_dict(p, rng):
    a = p["arg"]
    what, body = INVERT_MODES[p["mode"]]
    desc = f"Invert the dictionary `{a}`: map each value to {what}."
    wrong = f"    return {{v: k for k, v in {a}.items()}}\n"
    keys = rng.sample(WORDS[:20], 7)
    cases = [
        ({k: rng.randint(1, 3) for k in keys},),
        ({"b": 1, "c": 2, "a": 1, "d": 1},),
        ({},),
        ({"x": 5},),
        ({"z": 3, "y": 3},),
    ]
    rtype = {
        "list_asc": "dict[int, list[str]]",
        "list_desc": "dict[int, list[str]]",
        "count": "dict[int, int]",
    }.get(p["mode"], "dict[int, str]")
    return Spec(
        f"def {p['func']}({a}: dict[str, int]) -> {rtype}:", desc, body.format(a=a), wrong, cases
    )


@family(
    "dicts",
    func=("top_words", "most_common_words", "frequent_words", "word_ranking"),
    arg=("text", "document", "s"),
    k=(1, 2, 3, 4, 5),
    ties=("alphabetical", "first_seen"),
    fold_case=(True, False),
)
def top_words(p, rng):
    a, k = p["arg"], p["k"]
    fold = ".lower()" if p["fold_case"] else ""
    tie = "alphabetically" if p["ties"] == "alphabetical" else "by first appearance in the text"
    desc = (
        f"Return the {k} most frequent whitespace-separated words of `{a}` (or fewer when "
        f"there are fewer distinct words), most frequent first; ties are ordered {tie}. "
        + ("Words are compared in lowercase." if p["fold_case"] else "Words are case-sensitive.")
    )
    key = "(-counts[w], w)" if p["ties"] == "alphabetical" else "(-counts[w], first[w])"
    template = (
        f"    counts, first = dict(), dict()\n    for i, w in enumerate({a}{fold}.split()):\n"
        f"        counts[w] = counts.get(w, 0) + 1\n        first.setdefault(w, i)\n"
        f"    return sorted(counts, key=lambda w: {{key}})[:{k}]\n"
    )
    wrong_key = key.replace("-counts[w]", "counts[w]")
    pool = [rng.choice(WORDS[:12]) for _ in range(6)]
    cases = [(" ".join(rng.choice(pool) for _ in range(14)),) for _ in range(2)]
    cases += [("",), ("b a b A c a B b",), ("pear fig pear kiwi fig pear date",)]
    return Spec(
        f"def {p['func']}({a}: str) -> list[str]:",
        desc,
        template.format(key=key),
        template.format(key=wrong_key),
        cases,
    )


NUMBER_KEYS = {
    **{f"mod_{m}": (f"x % {m}", f"its remainder modulo {m}") for m in range(2, 11)},
    "digits": ("len(str(abs(x)))", "its number of decimal digits (ignoring the sign)"),
    "last_digit": ("abs(x) % 10", "its last decimal digit (ignoring the sign)"),
}


@family(
    "dicts",
    func=("group_numbers", "bucket_numbers", "partition_by", "group_items"),
    arg=("nums", "values", "xs"),
    key=tuple(NUMBER_KEYS),
    order=("input", "ascending", "descending"),
)
def group_numbers(p, rng):
    a = p["arg"]
    expr, what = NUMBER_KEYS[p["key"]]
    order = {
        "input": "in input order",
        "ascending": "sorted ascending",
        "descending": "sorted descending",
    }[p["order"]]
    desc = (
        f"Group the numbers of `{a}` by {what}: return a dict mapping each key to the list "
        f"of numbers with that key, {order}."
    )
    fix = {
        "input": "",
        "ascending": "\n    for k in groups:\n        groups[k].sort()",
        "descending": "\n    for k in groups:\n        groups[k].sort(reverse=True)",
    }[p["order"]]
    body = (
        f"    groups = {{}}\n    for x in {a}:\n"
        f"        groups.setdefault({expr}, []).append(x){fix}\n"
        "    return groups\n"
    )
    wrong = (
        f"    groups = {{}}\n    for x in {a}:\n        groups[{expr}] = [x]\n    return groups\n"
    )
    cases = [(_ints(rng, rng.randint(6, 12), -150, 150),) for _ in range(3)] + [
        ([],),
        ([12, 5, 7, 100, 2],),
    ]
    return Spec(
        f"def {p['func']}({a}: list[int]) -> dict[int, list[int]]:", desc, body, wrong, cases
    )


MERGE_OPS = {
    "sum": "a_val + b_val",
    "max": "max(a_val, b_val)",
    "min": "min(a_val, b_val)",
    "first": "a_val",
    "second": "b_val",
    "diff": "a_val - b_val",
}


@family(
    "dicts",
    func=("merge_counts", "combine", "merge_with", "union_dicts"),
    arg=(("a", "b"), ("left", "right"), ("first", "second")),
    op=tuple(MERGE_OPS),
    keys=("union", "intersection"),
)
def merge_dicts(p, rng):
    x, y = p["arg"]
    expr = MERGE_OPS[p["op"]]
    if p["keys"] == "union":
        desc = (
            f"Merge the dicts `{x}` and `{y}`. For a key in both, the value is `{expr}` where "
            f"a_val = {x}[key] and b_val = {y}[key]; a key in only one of them keeps "
            f"{'its value' if p['op'] != 'diff' else f'its value (negated when only in {y})'}."
        )
        tail = {"diff": f"            out[k] = {x}.get(k, 0) - {y}.get(k, 0)\n"}.get(
            p["op"], f"            out[k] = {x}[k] if k in {x} else {y}[k]\n"
        )
        body = (
            f"    out = {{}}\n    for k in list({x}) + [k for k in {y} if k not in {x}]:\n"
            f"        if k in {x} and k in {y}:\n            a_val, b_val = {x}[k], {y}[k]\n"
            f"            out[k] = {expr}\n        else:\n{tail}    return out\n"
        )
    else:
        desc = (
            f"Return a dict with only the keys present in both `{x}` and `{y}`, each mapped "
            f"to `{expr}` where a_val = {x}[key] and b_val = {y}[key]."
        )
        body = (
            f"    out = {{}}\n    for k in {x}:\n        if k in {y}:\n"
            f"            a_val, b_val = {x}[k], {y}[k]\n            out[k] = {expr}\n"
            f"    return out\n"
        )
    wrong = (
        f"    return {{**{y}, **{x}}}\n"
        if p["op"] == "second"
        else f"    return {{**{x}, **{y}}}\n"
    )
    ks = WORDS[:8]
    cases = [
        (
            {k: rng.randint(1, 9) for k in rng.sample(ks, 4)},
            {k: rng.randint(1, 9) for k in rng.sample(ks, 4)},
        )
        for _ in range(3)
    ]
    cases += [({}, {}), ({"k": 2, "j": 7}, {"k": 5, "m": 1})]
    return Spec(
        f"def {p['func']}({x}: dict[str, int], {y}: dict[str, int]) -> dict[str, int]:",
        desc,
        body,
        wrong,
        cases,
    )


# ---------------------------------------------------------------------------- math


DIGIT_OPS = {
    "sum": ("the sum", "sum(digits)"),
    "product": ("the product", "prod"),
    "max": ("the largest", "max(digits)"),
    "count_nonzero": ("the number of non-zero", "sum(1 for d in digits if d)"),
}


@family(
    "math",
    func=("digit_stat", "digits_reduce", "base_digits_value", "fold_digits"),
    arg=("n", "number", "value"),
    base=tuple(range(2, 17)),
    op=tuple(DIGIT_OPS),
)
def digits_in_base(p, rng):
    a, b = p["arg"], p["base"]
    what, expr = DIGIT_OPS[p["op"]]
    noun = "" if p["op"] == "count_nonzero" else " of the"
    desc = (
        f"Return {what}{noun} digits of the non-negative integer `{a}` written in base {b} "
        "(0 has the single digit 0)."
    )
    prod = "    prod = 1\n    for d in digits:\n        prod *= d\n" if p["op"] == "product" else ""
    template = (
        f"    digits = []\n    m = {a}\n    while True:\n        digits.append(m % {{b}})\n"
        f"        m //= {{b}}\n        if m == 0:\n            break\n{prod}    return {expr}\n"
    )
    cases = [(rng.randint(b, 5000),) for _ in range(3)] + [(0,), (b - 1,), (b * b + 1,), (987654,)]
    return Spec(
        f"def {p['func']}({a}: int) -> int:",
        desc,
        template.format(b=b),
        template.format(b=b + 1),
        cases,
    )


PRIME_FILTERS = (None, (4, 1), (4, 3), (6, 1), (6, 5), (10, 1), (10, 3), (10, 7), (10, 9))


@family(
    "math",
    func=("primes_{mode}", "{mode}_of_primes", "prime_{mode}"),
    arg=(("lo", "hi"), ("start", "stop"), ("low", "high")),
    mode=("count", "list", "sum", "largest"),
    filter=PRIME_FILTERS,
)
def primes(p, rng):
    lo, hi = p["arg"]
    f = p["filter"]
    which = "primes" if f is None else f"primes p with p % {f[0]} == {f[1]}"
    what = {
        "count": f"the number of {which}",
        "list": f"the ascending list of {which}",
        "sum": f"the sum of {which}",
        "largest": f"the largest of the {which} (None if there is none)",
    }
    desc = f"Return {what[p['mode']]} in the inclusive range [{lo}, {hi}]."
    cond = "" if f is None else f" and p % {f[0]} == {f[1]}"
    ret = {
        "count": "len(found)",
        "list": "found",
        "sum": "sum(found)",
        "largest": "found[-1] if found else None",
    }[p["mode"]]
    template = (
        f"    def is_prime(n):\n        if n < 2:\n            return False\n"
        f"        for d in range(2, int(n ** 0.5){{extra}}):\n            if n % d == 0:\n"
        f"                return False\n        return True\n"
        f"    found = [p for p in range({lo}, {hi}{{extra}}) if is_prime(p){cond}]\n"
        f"    return {ret}\n"
    )
    # an upper bound that is itself a matching prime, so an exclusive bound is caught
    edge = next(
        q
        for q in range(7, 200)
        if all(q % d for d in range(2, q)) and (f is None or q % f[0] == f[1])
    )
    start = rng.randint(0, 40)
    cases = [(start, start + rng.randint(10, 60)), (0, 1), (20, 10), (1, 50), (2, edge), (360, 370)]
    rtype = {"list": "list[int]", "largest": "int | None"}.get(p["mode"], "int")
    name = p["func"].format(mode=p["mode"])
    return Spec(
        f"def {name}({lo}: int, {hi}: int) -> {rtype}:",
        desc,
        template.format(extra=" + 1"),
        template.format(extra=""),
        cases,
    )


@family(
    "math",
    func=("sum_multiples", "multiples_total", "add_multiples", "multiple_sum"),
    arg=("limit", "n", "bound"),
    pair=tuple(itertools.combinations(range(2, 16), 2)),
    inclusive=(False, True),
)
def sum_of_multiples(p, rng):
    a, (x, y) = p["arg"], p["pair"]
    rng_text = f"1 <= k <= {a}" if p["inclusive"] else f"1 <= k < {a}"
    desc = f"Return the sum of all integers k with {rng_text} that are divisible by {x} or by {y}."
    template = f"    return sum(k for k in range(1, {a}{{plus}}) if k % {x} == 0 or k % {y} == 0)\n"
    plus, wrong_plus = (" + 1", "") if p["inclusive"] else ("", " + 1")
    cases = [(rng.randint(20, 300),), (0,), (x,), (y,), (x * y,), (1000,)]
    return Spec(
        f"def {p['func']}({a}: int) -> int:",
        desc,
        template.format(plus=plus),
        template.format(plus=wrong_plus),
        cases,
    )


@family(
    "math",
    func=("nth_term", "sequence_value", "recurrence", "series_term"),
    arg=("n", "index", "k"),
    a0=(0, 1, 2, 3),
    a1=(1, 2, 3),
    c=(1, 2, 3),
    mod=(None, 1000, 97, 1_000_000_007),
)
def linear_recurrence(p, rng):
    a = p["arg"]
    c, mod = p["c"], p["mod"]
    rec = "t(i - 1) + t(i - 2)" if c == 1 else f"t(i - 1) + {c} * t(i - 2)"
    desc = (
        f"A sequence starts t(0) = {p['a0']}, t(1) = {p['a1']} and continues t(i) = {rec}. "
        f"Return t({a}) for {a} >= 0" + ("." if mod is None else f", modulo {mod}.")
    )
    step = "cur + prev" if c == 1 else f"cur + {c} * prev"
    if mod is not None:
        step = f"({step}) % {mod}"
    template = (
        f"    prev, cur = {p['a0']}, {p['a1']}\n    for _ in range({a}{{off}}):\n"
        f"        prev, cur = cur, {step}\n    return prev\n"
    )
    cases = [(rng.randint(5, 40),), (0,), (1,), (2,), (90,)]
    return Spec(
        f"def {p['func']}({a}: int) -> int:",
        desc,
        template.format(off=""),
        template.format(off=" + 1"),
        cases,
    )


@family(
    "math",
    func=("to_base", "int_to_base", "convert_base", "format_in_base"),
    arg=("n", "number", "value"),
    base=tuple(range(2, 17)),
    width=(0, 4, 8),
)
def to_base(p, rng):
    a, b, w = p["arg"], p["base"], p["width"]
    pad = "" if w == 0 else f", left-padded with zeros to at least {w} digits"
    desc = (
        f"Return the integer `{a}` written in base {b} using the digits 0-9 and then "
        f"uppercase A-F{pad}. A negative number gets a leading '-' before its digits."
    )
    template = (
        f"    digits = '0123456789ABCDEF'\n    m = abs({a})\n    out = ''\n    while True:\n"
        f"        out = {{join}}\n        m //= {b}\n        if m == 0:\n            break\n"
        f"    out = out.rjust({w}, '0')\n    return '-' + out if {a} < 0 else out\n"
    )
    cases = [(rng.randint(b * b, 10_000),), (0,), (-rng.randint(b + 1, 999),), (b,), (b**5 - 1,)]
    return Spec(
        f"def {p['func']}({a}: int) -> str:",
        desc,
        template.format(join=f"digits[m % {b}] + out"),
        template.format(join=f"out + digits[m % {b}]"),
        cases,
    )


@family(
    "math",
    func=("{op}_all", "{op}_of_list", "list_{op}"),
    arg=("nums", "values", "xs"),
    op=("gcd", "lcm"),
    empty=(0, 1, None),
    skip_zero=(False, True),
)
def gcd_lcm(p, rng):
    a, op = p["arg"], p["op"]
    name = p["func"].format(op=op)
    full = {"gcd": "greatest common divisor", "lcm": "least common multiple"}[op]
    skip = " Zeros in the list are ignored." if p["skip_zero"] else ""
    desc = (
        f"Return the {full} of the integers in `{a}` (always non-negative), or "
        f"{p['empty']!r} when there are no numbers to combine.{skip}"
    )
    filt = f"[x for x in {a} if x != 0]" if p["skip_zero"] else f"list({a})"
    step = (
        "math.gcd(acc, x)"
        if op == "gcd"
        else "abs(acc * x) // math.gcd(acc, x) if acc and x else 0"
    )
    body = (
        f"    vals = {filt}\n    if not vals:\n        return {p['empty']!r}\n"
        f"    acc = abs(vals[0])\n"
        f"    for x in vals[1:]:\n        acc = {step}\n    return acc\n"
    )
    wrong = (
        f"    vals = {filt}\n    if not vals:\n        return {p['empty']!r}\n"
        "    return abs(vals[0])\n"
    )
    cases = [([rng.choice((2, 3, 4, 6)) * rng.randint(1, 6) for _ in range(4)],) for _ in range(2)]
    cases += [([],), ([0, 12, 18],), ([-4, 6],), ([7, 0],), ([8, 12, 20],)]
    return Spec(
        f"def {name}({a}: list[int]) -> int | None:",
        desc,
        body,
        wrong,
        cases,
        imports="import math\n\n\n",
    )


# ------------------------------------------------------------------------- parsing


@family(
    "parsing",
    func=("parse_pairs", "parse_settings", "parse_query", "read_assignments"),
    arg=("text", "s", "line"),
    pair_sep=(";", ",", "&", "|"),
    kv_sep=("=", ":"),
    as_int=(True, False),
    keep=("last", "first"),
)
def parse_kv(p, rng):
    a, ps, ks = p["arg"], p["pair_sep"], p["kv_sep"]
    vtype = "int" if p["as_int"] else "str"
    desc = (
        f"Parse `{a}`, a list of key{ks}value pairs separated by {ps!r}, into a dict. Keys "
        f"and values are stripped of surrounding whitespace; values are converted to {vtype}; "
        f"empty pieces are skipped; when a key repeats, the {p['keep']} value wins."
    )
    conv = "int(value)" if p["as_int"] else "value"
    first = "        if key in out:\n            continue\n" if p["keep"] == "first" else ""
    template = (
        f"    out = dict()\n    for part in {a}.split({ps!r}):\n        if not part.strip():\n"
        f"            continue\n        key, _, value = part.partition({ks!r})\n"
        f"{{strip}}{first}        out[key] = {conv}\n    return out\n"
    )
    strip = "        key, value = key.strip(), value.strip()\n"
    keys = rng.sample(WORDS[:15], 3)
    text = f" {ps} ".join(f"{k}{ks}{rng.randint(0, 99)}" for k in keys + [keys[0]])
    cases = [(text,), ("",), (f"x{ks}1{ps}{ps}y {ks} 22 {ps} x{ks}3",), (f"alpha{ks}7",)]
    return Spec(
        f"def {p['func']}({a}: str) -> dict[str, {vtype}]:",
        desc,
        template.format(strip=strip),
        template.format(strip=""),
        cases,
    )


RPN_OPS = {"+": "a + b", "-": "a - b", "*": "a * b", "//": "a // b", "%": "a % b"}
# Every operator set has a non-commutative operator, so swapped operands are caught.
RPN_OP_SETS = tuple(
    ops
    for n in (2, 3, 4, 5)
    for ops in itertools.combinations(RPN_OPS, n)
    if set(ops) & {"-", "//", "%"}
)


def _rpn_expr(rng: random.Random, ops: tuple[str, ...], depth: int) -> list[str]:
    if depth == 0:
        return [str(rng.randint(1, 9))]
    op = rng.choice(ops)
    right = [str(rng.randint(1, 9))] if op in ("//", "%") else _rpn_expr(rng, ops, depth - 1)
    return _rpn_expr(rng, ops, depth - 1) + right + [op]


@family(
    "parsing",
    func=("eval_rpn", "rpn", "evaluate_postfix", "postfix_value"),
    arg=("tokens", "expr", "program"),
    ops=RPN_OP_SETS,
    as_string=(False, True),
)
def rpn(p, rng):
    a, ops = p["arg"], p["ops"]
    source = f"{a}.split()" if p["as_string"] else a
    kind = "a string of space-separated tokens" if p["as_string"] else "a list of tokens"
    desc = (
        f"Evaluate the reverse Polish (postfix) expression `{a}`, given as {kind}. Tokens are "
        f"non-negative integers or one of the operators {' '.join(ops)} (integer arithmetic, "
        "// and % as in Python). Return the value left on the stack."
    )
    branches = "".join(
        f"        {'if' if i == 0 else 'elif'} tok == {op!r}:\n"
        f"            stack.append({RPN_OPS[op]})\n"
        for i, op in enumerate(ops)
    )
    template = (
        f"    stack = []\n    for tok in {source}:\n        if tok.isdigit():\n"
        f"            stack.append(int(tok))\n            continue\n        {{pop}}\n"
        f"{branches}    return stack[-1]\n"
    )
    pop = "b = stack.pop()\n        a = stack.pop()"
    wrong_pop = "a = stack.pop()\n        b = stack.pop()"
    noncomm = next(op for op in ops if op in ("-", "//", "%"))
    exprs = [_rpn_expr(rng, ops, d) for d in (1, 2, 3)]
    exprs += [["9", "4", noncomm], ["8", "3", noncomm, "2", ops[0]], ["42"]]
    cases = [(" ".join(e),) if p["as_string"] else (e,) for e in exprs]
    atype = "str" if p["as_string"] else "list[str]"
    return Spec(
        f"def {p['func']}({a}: {atype}) -> int:",
        desc,
        template.format(pop=pop),
        template.format(pop=wrong_pop),
        cases,
    )


DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@family(
    "parsing",
    func=("parse_duration", "duration_value", "duration_total", "read_duration"),
    arg=("text", "spec", "s"),
    units=tuple("".join(c) for n in (2, 3, 4) for c in itertools.combinations("dhms", n)),
    out=("seconds", "minutes", "milliseconds"),
)
def duration(p, rng):
    a, units = p["arg"], p["units"]
    names = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    listed = ", ".join(f"'{u}' ({names[u]})" for u in units)
    conv = {"seconds": "total", "minutes": "total // 60", "milliseconds": "total * 1000"}[p["out"]]
    desc = (
        f"`{a}` is a duration written as numbers followed by unit letters, e.g. "
        f"'{''.join(f'{i + 1}{u}' for i, u in enumerate(units))}', using only the units {listed}, "
        f"in any order and possibly repeated. Return the total duration in whole {p['out']}"
        + (" (rounded down)." if p["out"] == "minutes" else ".")
    )
    factors = {u: DURATION_UNITS[u] for u in units}
    body = (
        f"    factors = {factors!r}\n    total = 0\n"
        f"    for number, unit in re.findall(r'(\\d+)([{units}])', {a}):\n"
        f"        total += int(number) * factors[unit]\n    return {conv}\n"
    )
    wrong = (
        f"    total = 0\n    for number, unit in re.findall(r'(\\d+)([{units}])', {a}):\n"
        f"        total += int(number)\n    return {conv}\n"
    )
    cases = [
        "".join(f"{rng.randint(1, 59)}{u}" for u in rng.sample(units, len(units))) for _ in range(3)
    ]
    cases += ["", f"90{units[-1]}", f"1{units[0]}1{units[0]}"]
    return Spec(
        f"def {p['func']}({a}: str) -> int:",
        desc,
        body,
        wrong,
        [(c,) for c in cases],
        imports="import re\n\n\n",
    )


BRACKETS = ("()", "[]", "{}", "<>")


@family(
    "parsing",
    func=("is_balanced", "brackets_ok", "check_nesting", "balanced"),
    arg=("text", "s", "code"),
    pairs=tuple("".join(c) for n in (1, 2, 3, 4) for c in itertools.combinations(BRACKETS, n)),
    others=("ignored", "invalid"),
)
def brackets(p, rng):
    a, pairs = p["arg"], p["pairs"]
    listed = " ".join(pairs[i : i + 2] for i in range(0, len(pairs), 2))
    rule = (
        "Any other character is ignored."
        if p["others"] == "ignored"
        else "Any other character makes the string invalid (return False)."
    )
    desc = f"Return True if the brackets {listed} in `{a}` are balanced and properly nested. {rule}"
    closing = {pairs[i + 1]: pairs[i] for i in range(0, len(pairs), 2)}
    other = "            continue\n" if p["others"] == "ignored" else "            return False\n"
    body = (
        f"    closing = {closing!r}\n    opening = set(closing.values())\n    stack = []\n"
        f"    for ch in {a}:\n        if ch in opening:\n            stack.append(ch)\n"
        f"        elif ch in closing:\n            if not stack or stack.pop() != closing[ch]:\n"
        f"                return False\n        else:\n{other}    return not stack\n"
    )
    wrong = (
        f"    closing = {closing!r}\n"
        f"    return sum({a}.count(c) for c in closing) == "
        f"sum({a}.count(o) for o in closing.values())\n"
    )
    o1, c1 = pairs[0], pairs[1]
    o2, c2 = pairs[-2], pairs[-1]
    cases = [
        (o1 + o2 + c2 + c1,),
        (c1 + o1,),
        ("",),
        (o1 + o2 + c1 + c2,),
        (o1 * 3 + c1 * 2,),
        (o1 + "x" + c1,),
        ("".join(rng.choice(pairs) for _ in range(8)),),
    ]
    return Spec(f"def {p['func']}({a}: str) -> bool:", desc, body, wrong, cases)


CSV_AGGS = {
    "sum": ("the sum", "sum(vals)", "0"),
    "max": ("the largest", "max(vals)", "None"),
    "min": ("the smallest", "min(vals)", "None"),
    "count_positive": ("the number of positive", "sum(1 for v in vals if v > 0)", "0"),
}


@family(
    "parsing",
    func=("column_stat", "aggregate_column", "csv_column_value", "table_column"),
    arg=("text", "table", "csv_text"),
    delim=(",", ";", "\t", "|"),
    column=(0, 1, 2, 3),
    header=(True, False),
    agg=tuple(CSV_AGGS),
)
def csv_column(p, rng):
    a, d, col = p["arg"], p["delim"], p["column"]
    what, expr, empty = CSV_AGGS[p["agg"]]
    hdr = (
        "The first line is a header and is skipped." if p["header"] else "There is no header line."
    )
    desc = (
        f"`{a}` holds lines of integer fields separated by {d!r}. {hdr} Return {what} of the "
        f"values in column {col} (0-based), or {empty} when there are no data rows. Blank lines "
        "are ignored."
    )
    template = (
        f"    rows = [line for line in {a}.splitlines() if line.strip()]\n"
        f"    vals = [int(row.split({d!r})[{col}]) for row in rows[{{skip}}:]]\n"
        f"    if not vals:\n        return {empty}\n    return {expr}\n"
    )
    skip, wrong_skip = ("1", "0") if p["header"] else ("0", "1")

    def table(n_rows: int) -> str:
        lines = [d.join(f"c{i}" for i in range(4))] if p["header"] else []
        lines += [d.join(str(rng.randint(-50, 99)) for _ in range(4)) for _ in range(n_rows)]
        return "\n".join(lines) + "\n"

    cases = [(table(rng.randint(2, 5)),) for _ in range(3)] + [(table(0),), (table(1) + "\n\n",)]
    rtype = "int | None" if empty == "None" else "int"
    return Spec(
        f"def {p['func']}({a}: str) -> {rtype}:",
        desc,
        template.format(skip=skip),
        template.format(skip=wrong_skip),
        cases,
    )


# ----------------------------------------------------------------------- recursion


@family(
    "recursion",
    func=("count_ways", "stair_paths", "climb", "step_combinations"),
    arg=("n", "steps", "height"),
    moves=tuple(c for k in (2, 3) for c in itertools.combinations(range(1, 6), k)),
)
def climb_stairs(p, rng):
    a, moves = p["arg"], p["moves"]
    desc = (
        f"A staircase has `{a}` steps. Each move climbs exactly one of {list(moves)} steps. "
        f"Return the number of distinct ordered sequences of moves reaching the top exactly "
        f"(1 for {a} == 0)."
    )
    template = (
        f"    from functools import lru_cache\n\n    @lru_cache(maxsize=None)\n"
        f"    def ways(k):\n        if k == 0:\n            return 1\n"
        f"        return sum(ways(k - s) for s in {moves!r} if s {{op}} k)\n"
        f"    return ways({a})\n"
    )
    cases = [(rng.randint(5, 25),), (0,), (1,), (moves[0],), (moves[-1],), (30,)]
    return Spec(
        f"def {p['func']}({a}: int) -> int:",
        desc,
        template.format(op="<="),
        template.format(op="<"),
        cases,
    )


@family(
    "recursion",
    func=("count_combinations", "subset_ways", "ways_to_pick", "choose_count"),
    arg=("nums", "values", "xs"),
    size=(2, 3, 4),
    cmp=("==", "<=", ">="),
)
def combos_sum(p, rng):
    a, k, op = p["arg"], p["size"], p["cmp"]
    desc = (
        f"Return how many ways there are to choose {k} elements of `{a}` at distinct positions "
        f"(order does not matter) whose sum is {op} `target`."
    )
    body = (
        f"    def count(start, left, total):\n        if left == 0:\n"
        f"            return 1 if total {op} target else 0\n"
        f"        return sum(count(i + 1, left - 1, total + {a}[i])\n"
        f"                   for i in range(start, len({a})))\n"
        f"    return count(0, {k}, 0)\n"
    )
    wrong = (
        f"    def count(start, left, total):\n        if left == 0:\n"
        f"            return 1 if total {op} target else 0\n"
        f"        return sum(count(i, left - 1, total + {a}[i]) for i in range(start, len({a})))\n"
        f"    return count(0, {k}, 0)\n"
    )
    xs = _ints(rng, rng.randint(k + 2, 7), 1, 9)
    cases = [
        (xs, sum(xs[:k])),
        (_ints(rng, 6, 0, 5), 2 * k),
        ([], 0),
        ([1] * (k + 1), k),
        ([5, 1, 4, 2, 3], 6),
    ]
    return Spec(f"def {p['func']}({a}: list[int], target: int) -> int:", desc, body, wrong, cases)


@family(
    "recursion",
    func=("count_strings", "count_words_without_runs", "safe_strings", "run_limited_strings"),
    arg=("n", "length", "size"),
    alphabet=(2, 3, 4),
    max_run=(1, 2, 3, 4),
)
def no_long_runs(p, rng):
    a, m, r = p["arg"], p["alphabet"], p["max_run"]
    desc = (
        f"Return how many strings of length `{a}` over an alphabet of {m} letters contain no "
        f"run of more than {r} equal consecutive letters (1 for length 0)."
    )
    template = (
        f"    from functools import lru_cache\n\n    @lru_cache(maxsize=None)\n"
        f"    def ways(left, run):\n        if left == 0:\n            return 1\n"
        f"        total = ({m} - 1) * ways(left - 1, 1)\n        if run < {{limit}}:\n"
        f"            total += ways(left - 1, run + 1)\n        return total\n"
        f"    if {a} == 0:\n        return 1\n    return {m} * ways({a} - 1, 1)\n"
    )
    cases = [(rng.randint(4, 12),), (0,), (1,), (r,), (r + 1,), (20,)]
    return Spec(
        f"def {p['func']}({a}: int) -> int:",
        desc,
        template.format(limit=r),
        template.format(limit=r + 1),
        cases,
    )


@family(
    "recursion",
    func=("nesting_score", "depth_sum", "weighted_depth", "tree_depth_value"),
    arg=("data", "items", "tree"),
    mode=("max_depth", "weighted_sum"),
    base=(0, 1),
)
def nesting_depth(p, rng):
    a, base = p["arg"], p["base"]
    intro = (
        f"`{a}` is a list whose elements are integers or nested lists. The top-level list "
        f"has depth {base}, a list inside it depth {base + 1}, and so on."
    )
    if p["mode"] == "max_depth":
        desc = f"{intro} Return the largest depth of any list (empty lists included)."
        body = (
            f"    def depth(seq, d):\n        best = d\n        for x in seq:\n"
            f"            if isinstance(x, list):\n"
            f"                best = max(best, depth(x, d + 1))\n"
            f"        return best\n    return depth({a}, {{base}})\n"
        )
    else:
        desc = (
            f"{intro} Return the sum of every integer multiplied by the depth of the list "
            "holding it."
        )
        body = (
            f"    def total(seq, d):\n        s = 0\n        for x in seq:\n"
            f"            s += total(x, d + 1) if isinstance(x, list) else x * d\n"
            f"        return s\n"
            f"    return total({a}, {{base}})\n"
        )
    cases = [(_nested(rng, 3),) for _ in range(3)] + [([],), ([1, [2, [3, []]]],), ([[[[5]]], 1],)]
    return Spec(
        f"def {p['func']}({a}: list) -> int:",
        desc,
        body.format(base=base),
        body.format(base=base + 1),
        cases,
    )


# ------------------------------------------------------------------------- sorting


INT_SORT_KEYS = {
    "abs": ("absolute value", "abs(x)"),
    "digit_sum": ("sum of decimal digits (ignoring the sign)", "sum(int(c) for c in str(abs(x)))"),
    "last_digit": ("last decimal digit (ignoring the sign)", "abs(x) % 10"),
    "set_bits": ("number of 1 bits in its absolute value", "bin(abs(x)).count('1')"),
    **{f"mod_{m}": (f"remainder modulo {m}", f"x % {m}") for m in range(3, 10)},
}


@family(
    "sorting",
    func=("sort_custom", "order_numbers", "arrange", "sorted_by_rule"),
    arg=("nums", "values", "xs"),
    key=tuple(INT_SORT_KEYS),
    descending=(False, True),
    tie=("stable", "value"),
)
def sort_ints_by_key(p, rng):
    a = p["arg"]
    what, expr = INT_SORT_KEYS[p["key"]]
    way = "descending" if p["descending"] else "ascending"
    tie = (
        "Elements with equal keys keep their input order."
        if p["tie"] == "stable"
        else f"Elements with equal keys are ordered by their value, also {way}."
    )
    desc = f"Return `{a}` sorted by each number's {what}, {way}. {tie}"
    key = f"lambda x: {expr}" if p["tie"] == "stable" else f"lambda x: ({expr}, x)"
    body = f"    return sorted({a}, key={key}, reverse={p['descending']})\n"
    wrong = f"    return sorted({a}, reverse={p['descending']})\n"
    cases = [(_ints(rng, rng.randint(5, 9), -40, 40),) for _ in range(3)] + [
        ([],),
        ([19, -4, 7, 31, 12, 8],),
    ]
    return Spec(f"def {p['func']}({a}: list[int]) -> list[int]:", desc, body, wrong, cases)


STR_SORT_KEYS = {
    "length": ("length", "len(w)"),
    "vowels": ("number of vowels (aeiou)", "sum(c in 'aeiou' for c in w)"),
    "last_char": ("last character (the empty string sorts first)", "w[-1:]"),
    "reversed": ("reversed spelling", "w[::-1]"),
    "distinct": ("number of distinct characters", "len(set(w))"),
}


@family(
    "sorting",
    func=("sort_words", "order_strings", "rank_words", "arrange_words"),
    arg=("words", "names", "items"),
    key=tuple(STR_SORT_KEYS),
    descending=(False, True),
    tie=("stable", "alphabetical"),
)
def sort_strings_by_key(p, rng):
    a = p["arg"]
    what, expr = STR_SORT_KEYS[p["key"]]
    way = "descending" if p["descending"] else "ascending"
    tie = (
        "Words with equal keys keep their input order."
        if p["tie"] == "stable"
        else f"Words with equal keys are ordered alphabetically, also {way}."
    )
    desc = f"Return the lowercase words `{a}` sorted by {what}, {way}. {tie}"
    key = f"lambda w: {expr}" if p["tie"] == "stable" else f"lambda w: ({expr}, w)"
    body = f"    return sorted({a}, key={key}, reverse={p['descending']})\n"
    wrong = f"    return sorted({a}, reverse={p['descending']})\n"
    cases = [(rng.sample(WORDS, rng.randint(4, 8)),) for _ in range(3)]
    cases += [([],), (["bb", "a", "ccc", "dd", "e"],)]
    return Spec(f"def {p['func']}({a}: list[str]) -> list[str]:", desc, body, wrong, cases)


@family(
    "sorting",
    func=("merge_sorted", "merge_lists", "combine_sorted", "interleave_sorted"),
    arg=(("a", "b"), ("left", "right"), ("first", "second")),
    descending=(False, True),
    dedupe=(False, True),
    limit=(None, 3, 5, 10),
)
def merge_sorted(p, rng):
    x, y = p["arg"]
    way = "descending" if p["descending"] else "ascending"
    lim = "" if p["limit"] is None else f" Return at most the first {p['limit']} elements."
    dd = " Each value appears only once in the result." if p["dedupe"] else ""
    desc = (
        f"`{x}` and `{y}` are each sorted in {way} order. Merge them into one list sorted in "
        f"{way} order without calling sort.{dd}{lim}"
    )
    cmp = ">=" if p["descending"] else "<="
    add = (
        "        if not out or out[-1] != v:\n            out.append(v)\n"
        if p["dedupe"]
        else "        out.append(v)\n"
    )
    cut = "out" if p["limit"] is None else f"out[:{p['limit']}]"
    body = (
        f"    i = j = 0\n    out = []\n    while i < len({x}) or j < len({y}):\n"
        f"        if j == len({y}) or (i < len({x}) and {x}[i] {cmp} {y}[j]):\n"
        f"            v = {x}[i]\n            i += 1\n        else:\n            v = {y}[j]\n"
        f"            j += 1\n{add}    return {cut}\n"
    )
    wrong = f"    return ({x} + {y}){'' if p['limit'] is None else '[:' + str(p['limit']) + ']'}\n"

    def sorted_list() -> list[int]:
        return sorted(_ints(rng, rng.randint(2, 7), -9, 30), reverse=p["descending"])

    cases = [(sorted_list(), sorted_list()) for _ in range(3)]
    cases += [
        ([], []),
        (sorted([5, 1, 9], reverse=p["descending"]), sorted([1, 2, 9, 4], reverse=p["descending"])),
    ]
    return Spec(
        f"def {p['func']}({x}: list[int], {y}: list[int]) -> list[int]:", desc, body, wrong, cases
    )


# --------------------------------------------------------------------------- dates


def _iso_plus(iso: str, days: int) -> str:
    return (datetime.date.fromisoformat(iso) + datetime.timedelta(days=days)).isoformat()


@family(
    "dates",
    func=("add_days", "shift_date", "date_after", "move_date"),
    arg=("date_str", "day", "iso_date"),
    unit=("days", "weeks", "business_days"),
    output=("iso", "weekday", "day_of_year", "month_name"),
)
def date_shift(p, rng):
    a = p["arg"]
    unit = {
        "days": "calendar days",
        "weeks": "weeks",
        "business_days": "business days (Monday to Friday; each Saturday and Sunday is skipped)",
    }[p["unit"]]
    out = {
        "iso": ("the resulting date as 'YYYY-MM-DD'", "d.isoformat()", "str"),
        "weekday": (
            "the English weekday name of the resulting date",
            f"{WEEKDAYS!r}[d.weekday()]",
            "str",
        ),
        "day_of_year": (
            "the day of the year (1-366) of the resulting date",
            "d.timetuple().tm_yday",
            "int",
        ),
        "month_name": (
            "the English month name of the resulting date",
            f"{MONTHS!r}[d.month - 1]",
            "str",
        ),
    }
    what, expr, rtype = out[p["output"]]
    desc = (
        f"`{a}` is a date 'YYYY-MM-DD'. Move it forward by `n` {unit} (n >= 0) and return {what}."
    )
    if p["unit"] == "business_days":
        move = (
            "    left = {n}\n    while left > 0:\n        d += timedelta(days=1)\n"
            "        if d.weekday() < 5:\n            left -= 1\n"
        )
    else:
        move = f"    d += timedelta({p['unit']}={{n}})\n"
    template = f"    d = date.fromisoformat({a})\n{move}    return {expr}\n"

    def rand_date() -> str:
        return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"

    cases = [(rand_date(), rng.randint(1, 400)) for _ in range(3)]
    cases += [("2024-02-28", 1), ("2023-12-29", 0), ("2021-01-01", 3), ("2020-12-31", 60)]
    return Spec(
        f"def {p['func']}({a}: str, n: int) -> {rtype}:",
        desc,
        template.format(n="n"),
        template.format(n="n - 1"),
        cases,
        imports="from datetime import date, timedelta\n\n\n",
    )


@family(
    "dates",
    func=("count_days", "days_between", "date_span_count", "span_days"),
    arg=(("start", "end"), ("begin", "finish"), ("first", "last")),
    what=("all", "business", *WEEKDAYS),
    inclusive=(True, False),
)
def days_between(p, rng):
    s, e = p["arg"]
    what = {"all": "days", "business": "weekdays (Monday to Friday)"}.get(
        p["what"], f"{p['what']}s"
    )
    span = (
        f"from `{s}` up to and including `{e}`"
        if p["inclusive"]
        else f"from `{s}` up to but excluding `{e}`"
    )
    desc = f"`{s}` and `{e}` are dates 'YYYY-MM-DD' with {s} <= {e}. Count the {what} {span}."
    if p["what"] in WEEKDAYS:
        test = f"d.weekday() == {WEEKDAYS.index(p['what'])}"
    else:
        test = "True" if p["what"] == "all" else "d.weekday() < 5"
    template = (
        f"    d = date.fromisoformat({s})\n    stop = date.fromisoformat({e})\n    count = 0\n"
        f"    while d {{cmp}} stop:\n        if {test}:\n            count += 1\n"
        f"        d += timedelta(days=1)\n    return count\n"
    )
    cmp, wrong_cmp = ("<=", "<") if p["inclusive"] else ("<", "<=")

    def rand_date(year: int) -> str:
        return f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"

    start = rand_date(rng.randint(2000, 2025))
    cases = [(start, _iso_plus(start, rng.randint(5, 90)))]
    # ends on a day that is counted (2024-01-01 is a Monday), so the end bound matters
    end_weekday = WEEKDAYS.index(p["what"]) if p["what"] in WEEKDAYS else 2
    cases += [
        ("2024-01-01", _iso_plus("2024-01-01", 7 + end_weekday)),
        ("2024-02-26", "2024-03-04"),
        ("2023-06-10", "2023-06-10"),
        ("2021-12-27", "2022-01-09"),
    ]
    return Spec(
        f"def {p['func']}({s}: str, {e}: str) -> int:",
        desc,
        template.format(cmp=cmp),
        template.format(cmp=wrong_cmp),
        cases,
        imports="from datetime import date, timedelta\n\n\n",
    )


# ---------------------------------------------------------------------------- bits


BIT_OPS = {
    "set": ("with bit {k} set to 1", "x | (1 << {k})", "int"),
    "clear": ("with bit {k} cleared to 0", "x & ~(1 << {k})", "int"),
    "toggle": ("with bit {k} flipped", "x ^ (1 << {k})", "int"),
    "test": ("True if bit {k} is 1", "(x >> {k}) & 1 == 1", "bool"),
}


@family(
    "bits",
    func=("bit_operation", "apply_bit_rule", "bit_rule", "adjust_bits"),
    arg=("x", "value", "flags"),
    op=tuple(BIT_OPS),
    k=tuple(range(16)),
)
def bit_op(p, rng):
    a, k = p["arg"], p["k"]
    what, expr, rtype = BIT_OPS[p["op"]]
    desc = (
        f"Bits are numbered from 0 (least significant). For the non-negative integer `{a}`, "
        f"return {a} {what.format(k=k)}" + ("." if rtype == "int" else " (else False).")
    )
    template = "    return " + expr.replace("x", a) + "\n"
    cases = [(rng.randint(0, 1 << 17),) for _ in range(3)] + [
        (0,),
        ((1 << 17) - 1,),
        (1 << k,),
        (1 << (k + 1),),
    ]
    return Spec(
        f"def {p['func']}({a}: int) -> {rtype}:",
        desc,
        template.format(k=k),
        template.format(k=k + 1),
        cases,
    )


@family(
    "bits",
    func=("bit_stat", "bits_summary", "count_bits", "bit_profile"),
    arg=("x", "value", "word"),
    bit=("1", "0"),
    width=(8, 12, 16, 24, 32),
    op=("count", "parity", "longest_run"),
)
def bit_count(p, rng):
    a, w, b = p["arg"], p["width"], p["bit"]
    what = {
        "count": f"the number of {b} bits",
        "parity": f"the parity (0 or 1) of the number of {b} bits",
        "longest_run": f"the length of the longest run of consecutive {b} bits",
    }[p["op"]]
    desc = (
        f"Write the integer `{a}` (0 <= {a} < 2**{w}) as exactly {w} binary digits. Return {what}."
    )
    other = "0" if b == "1" else "1"
    ret = {
        "count": f"bits.count({b!r})",
        "parity": f"bits.count({b!r}) % 2",
        "longest_run": f"max((len(r) for r in bits.split({other!r})), default=0)",
    }[p["op"]]
    template = f"    bits = format({a}, '0{{w}}b')[-{{w}}:]\n    return {ret}\n"
    cases = [(rng.randrange(1 << w),) for _ in range(3)] + [
        (0,),
        ((1 << w) - 1,),
        (1 << (w - 1),),
        (5,),
    ]
    return Spec(
        f"def {p['func']}({a}: int) -> int:",
        desc,
        template.format(w=w),
        template.format(w=w - 1),
        cases,
    )


@family(
    "bits",
    func=("reverse_bits", "mirror_bits", "bit_reverse", "flip_bit_order"),
    arg=("x", "value", "n"),
    width=tuple(range(4, 33)),
    as_string=(False, True),
)
def reverse_bits(p, rng):
    a, w = p["arg"], p["width"]
    out = "as a string of exactly {w} '0'/'1' characters" if p["as_string"] else "as an integer"
    desc = (
        f"Write `{a}` (0 <= {a} < 2**{w}) as exactly {w} bits, reverse their order and return the "
        f"result {out.format(w=w)}."
    )
    conv = "rev" if p["as_string"] else "int(rev, 2)"
    body = f"    rev = format({a}, '0{w}b')[::-1]\n    return {conv}\n"
    wrong = f"    rev = format({a}, 'b')[::-1]\n    return {conv}\n"
    cases = [(rng.randrange(1 << w),) for _ in range(3)] + [
        (0,),
        (1,),
        ((1 << w) - 1,),
        (1 << (w - 1),),
    ]
    return Spec(
        f"def {p['func']}({a}: int) -> {'str' if p['as_string'] else 'int'}:",
        desc,
        body,
        wrong,
        cases,
    )


# -------------------------------------------------------------------------- matrix


MATRIX_OPS = {
    "rotate_cw": ("rotate it 90 degrees clockwise", "[list(row) for row in zip(*m[::-1])]"),
    "rotate_ccw": (
        "rotate it 90 degrees counter-clockwise",
        "[list(row) for row in zip(*m)][::-1]",
    ),
    "transpose": ("transpose it", "[list(row) for row in zip(*m)]"),
    "flip_h": ("mirror it left to right", "[row[::-1] for row in m]"),
    "flip_v": ("mirror it top to bottom", "m[::-1]"),
}


@family(
    "matrix",
    func=("transform_grid", "apply_matrix_op", "grid_transform", "matrix_steps"),
    arg=("grid", "matrix", "m"),
    op=tuple(MATRIX_OPS),
    times=(1, 2, 3),
)
def matrix_transform(p, rng):
    a, t = p["arg"], p["times"]
    what, expr = MATRIX_OPS[p["op"]]
    desc = (
        f"`{a}` is a rectangular matrix given as a list of rows. {what.capitalize()}, "
        f"{'once' if t == 1 else f'{t} times in a row'}, and return the new matrix as a list "
        "of lists (an empty matrix stays empty)."
    )
    template = (
        f"    m = [list(row) for row in {a}]\n    if not m:\n        return []\n"
        f"    for _ in range({{t}}):\n        m = {expr}\n    return m\n"
    )

    def matrix(r: int, c: int) -> list[list[int]]:
        return [[rng.randint(0, 9) for _ in range(c)] for _ in range(r)]

    cases = [(matrix(rng.randint(2, 4), rng.randint(2, 4)),) for _ in range(2)]
    cases += [([],), ([[1, 2, 3]],), ([[1, 2], [3, 4], [5, 6]],)]
    return Spec(
        f"def {p['func']}({a}: list[list[int]]) -> list[list[int]]:",
        desc,
        template.format(t=t),
        template.format(t=t - 1 if t > 1 else 2),
        cases,
    )
