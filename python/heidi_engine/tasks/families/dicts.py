"""The ``dicts`` task families."""

from __future__ import annotations

from .common import WORDS, random_ints
from .registry import Spec, family

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
    return Spec.from_template(
        f"def {p['func']}({a}: str) -> list[str]:", desc, template, cases, key=(key, wrong_key)
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
    order, fix = {
        "input": ("in input order", ""),
        "ascending": ("sorted ascending", "\n    for k in groups:\n        groups[k].sort()"),
        "descending": (
            "sorted descending",
            "\n    for k in groups:\n        groups[k].sort(reverse=True)",
        ),
    }[p["order"]]
    desc = (
        f"Group the numbers of `{a}` by {what}: return a dict mapping each key to the list "
        f"of numbers with that key, {order}."
    )
    body = (
        f"    groups = {{}}\n    for x in {a}:\n"
        f"        groups.setdefault({expr}, []).append(x){fix}\n"
        "    return groups\n"
    )
    wrong = (
        f"    groups = {{}}\n    for x in {a}:\n        groups[{expr}] = [x]\n    return groups\n"
    )
    cases = [(random_ints(rng, rng.randint(6, 12), -150, 150),) for _ in range(3)] + [
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
