"""The ``recursion`` task families."""

from __future__ import annotations

import itertools
import random

from .common import random_ints
from .registry import Spec, family

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
    return Spec.from_template(
        f"def {p['func']}({a}: list) -> list:", desc, template, cases, limit=(limit, wrong_limit)
    )


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
    return Spec.from_template(
        f"def {p['func']}({a}: int) -> int:", desc, template, cases, op=("<=", "<")
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
    xs = random_ints(rng, rng.randint(k + 2, 7), 1, 9)
    cases = [
        (xs, sum(xs[:k])),
        (random_ints(rng, 6, 0, 5), 2 * k),
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
    return Spec.from_template(
        f"def {p['func']}({a}: int) -> int:", desc, template, cases, limit=(r, r + 1)
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
