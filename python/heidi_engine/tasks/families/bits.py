"""The ``bits`` task families."""

from __future__ import annotations

from .registry import Spec, family

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
    return Spec.from_template(
        f"def {p['func']}({a}: int) -> {rtype}:", desc, template, cases, k=(k, k + 1)
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
    return Spec.from_template(
        f"def {p['func']}({a}: int) -> int:", desc, template, cases, w=(w, w - 1)
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
