"""The ``math`` task families."""

from __future__ import annotations

import itertools

from .registry import Spec, family

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
    return Spec.from_template(
        f"def {p['func']}({a}: int) -> int:", desc, template, cases, b=(b, b + 1)
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
    return Spec.from_template(
        f"def {name}({lo}: int, {hi}: int) -> {rtype}:", desc, template, cases, extra=(" + 1", "")
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
    return Spec.from_template(
        f"def {p['func']}({a}: int) -> int:", desc, template, cases, plus=(plus, wrong_plus)
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
    return Spec.from_template(
        f"def {p['func']}({a}: int) -> int:", desc, template, cases, off=("", " + 1")
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
    return Spec.from_template(
        f"def {p['func']}({a}: int) -> str:",
        desc, template, cases, join=(f"digits[m % {b}] + out", f"out + digits[m % {b}]"),
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
