"""Near-duplicate detection: edited copies are caught, distinct tasks are not merged."""

from __future__ import annotations

import json
import random

import numpy as np
from heidi_engine.io import read_jsonl
from heidi_engine.prompts import teacher_instruction
from heidi_engine.stages import generate, validate
from heidi_engine.tasks import procedural
from heidi_engine.validation import neardup
from heidi_engine.validation.neardup import (
    THRESHOLD,
    NearDupIndex,
    jaccard,
    sketch_text,
    sketch_texts,
    tokenize,
)
from heidi_engine.validation.pipeline import DedupState, Validator, load_state, save_state

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
    for i, sketch in enumerate(sketch_texts(originals)):
        index.add(f"orig-{i}", sketch)
    copies = [edited_copy(rng, text, rng.uniform(0.0, 0.10)) for text in originals]
    caught = 0
    for i, sketch in enumerate(sketch_texts(copies)):
        match = index.find(sketch)
        caught += match is not None and match[0] == f"orig-{i}"
    assert caught / len(originals) >= 0.95, caught


def test_copies_with_ten_percent_edits_are_mostly_caught():
    """The threshold is derived from the 10% definition; check it at the edge itself."""
    rng = random.Random(6)
    index = NearDupIndex()
    originals = [distinct_function(rng, i) for i in range(300)]
    for i, sketch in enumerate(sketch_texts(originals)):
        index.add(f"orig-{i}", sketch)
    copies = [edited_copy(rng, text, 0.10) for text in originals]
    caught = sum(index.find(sketch) is not None for sketch in sketch_texts(copies))
    assert caught / len(originals) >= 0.95, caught


def test_distinct_tasks_are_not_merged():
    rng = random.Random(9)
    index = NearDupIndex()
    merged = 0
    texts = [distinct_function(rng, i) for i in range(600)]
    for i, sketch in enumerate(sketch_texts(texts)):
        merged += index.find(sketch) is not None
        index.add(f"t-{i}", sketch)
    assert merged / len(texts) <= 0.01, merged


def procedural_samples(seed: int, n: int) -> list[dict]:
    """Procedural tasks answered with their reference solutions, as the generate stage
    writes them."""
    return [
        {"id": f"p{i}", "task_id": task.task_id, "task_source": "procedural",
         "instruction": teacher_instruction(task), "prompt": task.prompt,
         "completion": task.canonical_solution, "test": task.test,
         "entry_point": task.entry_point, "teacher": "reference", "round": 1,
         "metadata": dict(task.metadata)}
        for i, task in enumerate(procedural.generate(seed, n, split="train"))
    ]


def validate_samples(samples: list[dict], state: DedupState | None = None) -> list[str | None]:
    validator = Validator(state or DedupState())
    return [reason for _, reason in validator.check_lines([json.dumps(s) for s in samples])]


def test_distinct_procedural_tasks_are_not_merged():
    samples = procedural_samples(11, 300)
    assert len({s["metadata"]["family"] for s in samples}) == len(procedural.families())
    reasons = validate_samples(samples)
    assert reasons.count("near_duplicate") / len(samples) <= 0.01, reasons.count("near_duplicate")
    assert reasons.count(None) == len(samples)


def edited_sample(rng: random.Random, sample: dict, fraction: float, **changes) -> dict:
    copy = dict(sample, id=sample["id"] + "-copy", **changes)
    for name in ("prompt", "completion", "test"):
        copy[name] = edited_copy(rng, sample[name], fraction) + "\n"
    return copy


def test_edited_copies_of_procedural_samples_are_caught():
    """A copy of an accepted sample is caught whether it names the same task or comes
    from another source; only different procedural tasks are told apart by their ids."""
    rng = random.Random(12)
    samples = procedural_samples(12, 200)
    state = DedupState()
    assert validate_samples(samples, state).count(None) == len(samples)
    same_task = [edited_sample(rng, s, rng.uniform(0.0, 0.10)) for s in samples]
    other_source = [edited_sample(rng, s, rng.uniform(0.0, 0.10), task_id=f"file/{s['id']}",
                                  task_source="file") for s in samples]
    for copies in (same_task, other_source):
        reasons = validate_samples(copies, state)
        # Edits that break a copy's check() get it rejected earlier (no_tests).
        reached = reasons.count("near_duplicate") + reasons.count(None)
        assert reached >= 0.8 * len(copies)
        assert reasons.count("near_duplicate") / reached >= 0.95, reasons.count(None)
        # Nothing was added: the next batch of copies still meets only the originals.
        assert len(state.index) == len(samples)


def test_texts_of_distinct_procedural_tasks_can_be_closer_than_edited_copies():
    """Why procedural task ids decide: text similarity alone cannot separate a family's
    tasks (same template, a constant changed) from copies with 10% of tokens edited."""
    samples = procedural_samples(13, 120)
    sketches = sketch_texts([s["prompt"] + s["completion"] + s["test"] for s in samples])
    sets = [np.unique(s.shingles) for s in sketches]
    closest = max(jaccard(sets[i], sets[j]) for i in range(len(sets)) for j in range(i))
    assert closest >= THRESHOLD


def test_default_rounds_keep_their_samples(out_dir, clean_env, capsys):
    """Three rounds at the defaults (procedural tasks, reference teacher,
    SAMPLES_PER_ROUND samples) lose nothing to near-duplicate removal."""
    from heidi_engine._py.config import Config

    per_round = Config().samples_per_round
    clean_env.setenv("OUT_DIR", str(out_dir))
    clean_env.setenv("HEIDI_FSYNC", "0")
    argv = ["--out-dir", str(out_dir), "--round"]
    for round_ in (1, 2, 3):
        assert generate.main([*argv, str(round_)]) == 0
        assert validate.main([*argv, str(round_)]) == 0
        raw = read_jsonl(out_dir / "data" / f"raw_round_{round_}.jsonl")
        clean = read_jsonl(out_dir / "data" / f"clean_round_{round_}.jsonl")
        rejected = read_jsonl(out_dir / "data" / f"rejected_round_{round_}.jsonl")
        assert len(raw) == per_round
        assert len(clean) >= per_round * 0.96, [r["reject_reason"] for r in rejected]
        assert not [r for r in rejected if r["reject_reason"] == "near_duplicate"]
    capsys.readouterr()


def test_whitespace_variant_has_identical_sketch():
    rng = random.Random(1)
    text = distinct_function(rng, 0)
    first, second = sketch_text(text), sketch_text(" ".join(tokenize(text)))
    assert np.array_equal(np.unique(first.shingles), np.unique(second.shingles))
    assert np.array_equal(first.bands, second.bands)


def test_batch_and_single_sketches_agree():
    rng = random.Random(3)
    texts = [distinct_function(rng, i) for i in range(5)] + ["", "x", "caf\u00e9 = 1"]
    for text, sketch in zip(texts, sketch_texts(texts)):
        alone = sketch_text(text)
        assert np.array_equal(alone.shingles, sketch.shingles)
        assert np.array_equal(alone.bands, sketch.bands)


def test_shingles_follow_the_token_definition():
    # Tokens: identifier runs (non-ASCII included) and single punctuation characters; two
    # begin markers make each text's first shingles.
    text = "r\u00e9sum\u00e9 = f(x)  # 2"
    assert tokenize(text) == ["r\u00e9sum\u00e9", "=", "f", "(", "x", ")", "#", "2"]
    assert sketch_text(text).shingles.size == len(tokenize(text))


def test_signatures_are_stable_and_the_index_round_trips():
    rng = random.Random(2)
    index = NearDupIndex()
    text = distinct_function(rng, 0)
    sketch = sketch_text(text)
    index.add("a", sketch)
    restored = NearDupIndex.from_bytes(index.to_bytes())
    again = sketch_text(text)
    assert np.array_equal(again.shingles, sketch.shingles)
    assert np.array_equal(again.bands, sketch.bands)
    assert restored.find(again) == ("a", 1.0)
    assert len(restored) == 1


def test_different_identities_are_never_merged():
    rng = random.Random(4)
    index = NearDupIndex()
    sketch = sketch_text(distinct_function(rng, 0))
    index.add("a", sketch, "proc/family/1")
    assert index.find(sketch, "proc/family/2") is None
    assert index.find(sketch, "proc/family/1") == ("a", 1.0)
    assert index.find(sketch) == ("a", 1.0)


def test_empty_and_tiny_texts():
    index = NearDupIndex()
    assert sketch_text("").shingles.size == 0
    assert sketch_text("x").shingles.size == 1
    index.add("empty", sketch_text(""))
    assert index.find(sketch_text("def f(): pass")) is None
    assert index.find(sketch_text("")) is None


def test_large_inputs_are_sketched_in_chunks(monkeypatch):
    rng = random.Random(8)
    texts = [distinct_function(rng, i) for i in range(40)]
    whole = sketch_texts(texts)
    monkeypatch.setattr(neardup, "CHUNK_BYTES", 1000)  # a few texts per chunk
    chunked = sketch_texts(texts)
    for a, b in zip(whole, chunked, strict=True):
        assert np.array_equal(a.shingles, b.shingles) and np.array_equal(a.bands, b.bands)


def test_copies_within_one_batch_and_after_a_restore_are_caught():
    rng = random.Random(10)
    samples = procedural_samples(14, 30)
    copies = [edited_sample(rng, s, 0.05, task_id=f"file/{s['id']}", task_source="file")
              for s in samples[:10]]
    state = DedupState()
    # Originals and their copies in one batch: copies meet originals accepted just before.
    reasons = validate_samples(samples + copies, state)
    assert reasons[:30] == [None] * 30
    assert reasons[30:].count("near_duplicate") >= 9
    # The index survives its .npz form (as in the per-round snapshot) and still finds them.
    restored = DedupState(state.exact, NearDupIndex.from_bytes(state.index.to_bytes()))
    again = [dict(c, id=c["id"] + "-again") for c in copies]
    assert validate_samples(again, restored).count("near_duplicate") >= 9


def test_hashes_are_pinned():
    """Persisted indexes depend on these values: changing the hashing needs a new
    FORMAT_VERSION (old snapshots are then rebuilt from the clean files)."""
    sketch = sketch_text("def f(x):\n    return x + 1\n")
    assert np.sort(sketch.shingles).tolist()[:4] == [43197727, 279564083, 474519370, 680250311]
    assert sketch.bands[:2].tolist() == [16402159136058501940, 8983857375853871866]


def test_snapshots_are_plain_arrays_and_bad_files_are_clear_errors(tmp_path, capsys):
    import pickle
    import zipfile

    import pytest
    from heidi_engine.validation.pipeline import SnapshotError

    state_dir, data_dir = tmp_path / "state", tmp_path / "data"
    samples = procedural_samples(3, 12)
    state = DedupState()
    validate_samples(samples, state)
    save_state(state_dir, 1, state)
    snapshot = state_dir / "validate_index_round_1.npz"
    with zipfile.ZipFile(snapshot) as archive:  # numpy arrays only: no object, no pickle
        for name in archive.namelist():
            with archive.open(name) as member:
                header = member.read(128)
            assert header.startswith(b"\x93NUMPY") and b"'O'" not in header and b"|O" not in header
    restored = load_state(state_dir, data_dir, 2)
    assert restored.exact == state.exact and len(restored.index) == len(state.index)
    again = [dict(s, id=s["id"] + "-again", round=2) for s in samples]
    assert set(validate_samples(again, restored)) <= {"duplicate", "near_duplicate"}

    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('ran')" % str(tmp_path / "pwned"),))

    good = snapshot.read_bytes()
    foreign = {
        "a pickle": pickle.dumps({"version": 3, "index": Boom()}),
        "garbage": b"not an archive",
        "truncated": good[: len(good) // 2],
        "an npz of object arrays": neardup.save_npz({"snapshot_version": np.array([3]),
                                                    "exact": np.array([Boom()], dtype=object)}),
        "missing arrays": neardup.save_npz({"snapshot_version": np.array([3])}),
    }
    for label, data in foreign.items():
        snapshot.write_bytes(data)
        with pytest.raises(SnapshotError, match="validate_index_round_1.npz") as info:
            load_state(state_dir, data_dir, 2)
        assert "\n" not in str(info.value), label
        assert not (tmp_path / "pwned").exists(), label
    # Through the stage: a one-line error, exit 1, nothing written.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw_round_2.jsonl").write_text(json.dumps(samples[0]) + "\n")
    assert validate.main(["--round", "2", "--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("validate: error: ") and "validate_index_round_1.npz" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "data" / "clean_round_2.jsonl").exists()
