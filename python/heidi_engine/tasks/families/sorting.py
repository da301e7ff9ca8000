"""The ``sorting`` task families."""

from __future__ import annotations

from .common import WORDS, random_ints
from .registry import Spec, family


def _sort_by_key(
    p: dict, keys: dict[str, tuple[str, str]], var: str, items: str, ties: str, subject: str
) -> tuple[str, str, str]:
    """Description, reference body and buggy body of "sort ``p['arg']`` by the key
    ``keys[p['key']]``" (its text and its expression in ``var``). Equal keys keep their
    input order, or are ordered ``ties`` (the items' own order, the same way)."""
    a = p["arg"]
    what, expr = keys[p["key"]]
    way = "descending" if p["descending"] else "ascending"
    tie = (
        f"{items} with equal keys keep their input order."
        if p["tie"] == "stable"
        else f"{items} with equal keys are ordered {ties}, also {way}."
    )
    desc = f"Return {subject.format(a=a, what=what)}, {way}. {tie}"
    key = f"lambda {var}: {expr}" if p["tie"] == "stable" else f"lambda {var}: ({expr}, {var})"
    body = f"    return sorted({a}, key={key}, reverse={p['descending']})\n"
    wrong = f"    return sorted({a}, reverse={p['descending']})\n"
    return desc, body, wrong


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
    desc, body, wrong = _sort_by_key(
        p, INT_SORT_KEYS, "x", "Elements", "by their value", "`{a}` sorted by each number's {what}"
    )
    cases = [(random_ints(rng, rng.randint(5, 9), -40, 40),) for _ in range(3)] + [
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
    desc, body, wrong = _sort_by_key(
        p, STR_SORT_KEYS, "w", "Words", "alphabetically",
        "the lowercase words `{a}` sorted by {what}",
    )
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
        return sorted(random_ints(rng, rng.randint(2, 7), -9, 30), reverse=p["descending"])

    cases = [(sorted_list(), sorted_list()) for _ in range(3)]
    cases += [
        ([], []),
        (sorted([5, 1, 9], reverse=p["descending"]), sorted([1, 2, 9, 4], reverse=p["descending"])),
    ]
    return Spec(
        f"def {p['func']}({x}: list[int], {y}: list[int]) -> list[int]:", desc, body, wrong, cases
    )
