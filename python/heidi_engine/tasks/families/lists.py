"""The ``lists`` task families."""

from __future__ import annotations

from .common import NAMES3, ordinal, random_ints
from .registry import Spec, family


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
    cases = [(random_ints(rng, rng.randint(2, 9)),) for _ in range(2)]
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
    cases = [(random_ints(rng, rng.randint(n + 1, 3 * n)),) for _ in range(2)]
    cases += [([],), (list(range(n)),), (list(range(2 * n + 1)),), ([5] * (n - 1),)]
    return Spec.from_template(
        f"def {p['func']}({a}: list[int]) -> list[list[int]]:",
        desc, template, cases, stop=(stop, wrong_stop),
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
    cases = [(random_ints(rng, rng.randint(3, 7), -5, 9),) for _ in range(3)] + [
        ([],),
        ([4],),
        ([3, -1, 2],),
    ]
    return Spec.from_template(
        f"def {p['func']}({a}: list[int]) -> list[int]:",
        desc, template, cases, src=(src, wrong_src),
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
    cases = [(random_ints(rng, rng.randint(5, 10), -30, 60),) for _ in range(2)]
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
    cases = [(random_ints(rng, rng.randint(g + 2, g + 7), -9, 20),) for _ in range(3)]
    cases += [([],), ([1] * g,), (list(range(g + 1)),)]
    return Spec.from_template(
        f"def {p['func']}({a}: list[int]) -> list[int]:",
        desc, template, cases, stop=(f"len({a}) - {g}", f"len({a}) - {g} - 1"),
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
        f"Return the {ordinal(k)} {which} {'distinct value' if p['distinct'] else 'element'} of "
        f"`{a}` (counting from 1{', duplicates counted once' if p['distinct'] else ''}), or None "
        "when there are not enough."
    )
    vals = f"sorted({'set(' + a + ')' if p['distinct'] else a}, reverse={p['largest']})"
    body = f"    vals = {vals}\n    return vals[{k - 1}] if len(vals) >= {k} else None\n"
    wrong = f"    vals = {vals}\n    return vals[{k}] if len(vals) > {k} else None\n"
    cases = [(random_ints(rng, rng.randint(k + 2, k + 8), -10, 10),) for _ in range(3)]
    cases += [([],), (list(range(k)),), ([3, 3, 3, 1, 1, 2, 2, 9, 9, 5],)]
    return Spec(f"def {p['func']}({a}: list[int]) -> int | None:", desc, body, wrong, cases)


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
