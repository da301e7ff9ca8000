"""The ``parsing`` task families."""

from __future__ import annotations

import itertools
import random

from .common import WORDS
from .registry import Spec, family


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
    return Spec.from_template(
        f"def {p['func']}({a}: str) -> dict[str, {vtype}]:",
        desc, template, cases, strip=(strip, ""),
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
    return Spec.from_template(
        f"def {p['func']}({a}: {atype}) -> int:", desc, template, cases, pop=(pop, wrong_pop)
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
    return Spec.from_template(
        f"def {p['func']}({a}: str) -> {rtype}:", desc, template, cases, skip=(skip, wrong_skip)
    )
