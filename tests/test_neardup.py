"""Near-duplicate detection: edited copies are caught, distinct tasks are not merged."""

from __future__ import annotations

import random

import numpy as np

from heidi_engine.validation.neardup import NearDupIndex, shingle_hashes, tokenize

WORDS = ("count", "total", "value", "item", "row", "name", "word", "score", "left", "right",
         "node", "key", "index", "size", "limit", "step", "chunk", "pair", "acc", "best")
STATEMENTS = (
    "{a} = 0\nfor {b} in {p}:\n    {a} += {b} * {n}",
    "{a} = [{b} for {b} in {p} if {b} % {n} == 0]",
    "{a} = sorted({p}, key=lambda {b}: -{b})[:{n}]",
    "if not {p}:\n    return {n}",
    "{a} = {{}}\nfor {b} in {p}:\n    {a}[{b}] = {a}.get({b}, 0) + 1",
    "while {a} > {n}:\n    {a} //= 2",
    "{a} = ''.join(reversed(str({p})))",
    "{a} = max({p}, default={n})",
    "{a} = set()\nfor {b} in {p}:\n    if {b} in {a}:\n        return {b}\n    {a}.add({b})",
    "{a} = [{p}[i:i + {n}] for i in range(0, len({p}), {n})]",
    "{a} = sum(1 for {b} in {p} if str({b}).isdigit())",
    "try:\n    {a} = int({p})\nexcept (TypeError, ValueError):\n    {a} = {n}",
    "{a} = {p}.strip().lower().split()",
    "{a}, {b} = 0, 1\nfor _ in range({n}):\n    {a}, {b} = {b}, {a} + {b}",
    "{a} = any({b} < 0 for {b} in {p})",
    "{a} = dict(zip({p}, range({n})))",
    "{a} = [x ** {n} for x in {p}]",
    "{a} = {p}[::-1] == {p}",
    "{a} = bin({n}).count('1')",
    "{a} = math.gcd({n}, len({p}))",
    "{a} = [row[:] for row in {p}]\n{a}.sort(reverse=True)",
    "{a} = collections.Counter({p}).most_common({n})",
    "{a} = len(set({p})) == len({p})",
    "{a} = ' '.join(w.capitalize() for w in str({p}).split())",
    "for {b} in range(len({p}) - 1):\n    if {p}[{b}] > {p}[{b} + 1]:\n        return False",
)


def distinct_function(rng: random.Random, index: int) -> str:
    """A function built from a random choice and order of statement templates."""
    name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{index}"
    param = rng.choice(("xs", "items", "data", "values", "text", "seq"))
    body = []
    for template in rng.sample(STATEMENTS, rng.randrange(3, 6)):
        a, b = rng.sample(WORDS, 2)
        stmt = template.format(a=a, b=b, p=param, n=rng.randrange(2, 50))
        body.extend("    " + line for line in stmt.splitlines())
    body.append(f"    return {rng.choice(WORDS)}")
    doc = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 14)))
    return f'def {name}({param}):\n    """{doc.capitalize()}."""\n' + "\n".join(body) + "\n"


def edited_copy(rng: random.Random, text: str, fraction: float) -> str:
    """``text`` with ``fraction`` of its tokens substituted, deleted or inserted."""
    tokens = tokenize(text)
    vocabulary = list(set(tokens)) + list(WORDS)
    for _ in range(int(len(tokens) * fraction)):
        position = rng.randrange(len(tokens))
        operation = rng.choice(("substitute", "delete", "insert"))
        if operation == "substitute":
            tokens[position] = rng.choice(vocabulary)
        elif operation == "delete" and len(tokens) > 1:
            del tokens[position]
        else:
            tokens.insert(position, rng.choice(vocabulary))
    return " ".join(tokens)


def test_edited_copies_are_caught():
    rng = random.Random(5)
    index = NearDupIndex()
    originals = [distinct_function(rng, i) for i in range(300)]
    for i, text in enumerate(originals):
        index.add(f"orig-{i}", index.signature(text))
    caught = 0
    for i, text in enumerate(originals):
        copy = edited_copy(rng, text, rng.uniform(0.0, 0.10))
        match = index.find(index.signature(copy))
        caught += match is not None and match[0] == f"orig-{i}"
    assert caught / len(originals) >= 0.95, caught


def test_distinct_tasks_are_not_merged():
    rng = random.Random(9)
    index = NearDupIndex()
    merged = 0
    texts = [distinct_function(rng, i) for i in range(600)]
    for i, text in enumerate(texts):
        signature = index.signature(text)
        merged += index.find(signature) is not None
        index.add(f"t-{i}", signature)
    assert merged / len(texts) <= 0.01, merged


def test_distinct_procedural_families_are_not_merged():
    from heidi_engine.tasks import procedural

    index = NearDupIndex()
    merged = 0
    seen_families = set()
    for task in procedural.generate(3, 400):
        family = task.metadata.get("family")
        if family in seen_families:
            continue
        seen_families.add(family)
        signature = index.signature(task.prompt + task.canonical_solution)
        merged += index.find(signature) is not None
        index.add(task.task_id, signature)
    assert len(seen_families) >= 20
    assert merged / len(seen_families) <= 0.01


def test_exact_copy_and_whitespace_variant_are_identical_signatures():
    rng = random.Random(1)
    index = NearDupIndex()
    text = distinct_function(rng, 0)
    assert np.array_equal(index.signature(text), index.signature(" ".join(tokenize(text))))


def test_signatures_are_stable_and_the_index_round_trips(tmp_path):
    rng = random.Random(2)
    index = NearDupIndex()
    text = distinct_function(rng, 0)
    signature = index.signature(text)
    index.add("a", signature)
    restored = NearDupIndex.from_bytes(index.to_bytes())
    assert np.array_equal(restored.signature(text), signature)
    assert restored.find(signature) == ("a", 1.0)
    assert len(restored) == 1


def test_empty_and_tiny_texts():
    index = NearDupIndex()
    assert shingle_hashes("").size == 0
    assert shingle_hashes("x").size == 1
    index.add("empty", index.signature(""))
    assert index.find(index.signature("def f(): pass")) is None
