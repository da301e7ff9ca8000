"""Validation throughput (MB/s of raw JSONL on one core) on a realistic corpus.

The corpus: procedural tasks answered with their reference solutions, in the sample
schema, with ~1% carrying a secret, ~5% exact and ~5% near duplicates. Baseline,
measured in the same run: a straightforward implementation of the same checks (every
secret regex over every field, line-by-line normalisation, SHA-256, regex tokens,
datasketch ``MinHash.update`` per shingle and ``MinHashLSH``, exact Jaccard of Python
sets on the candidates, the same procedural-identity rule).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time

from datasketch import MinHash, MinHashLSH

from heidi_engine.tasks import procedural
from heidi_engine.validation import secrets as secret_rules
from heidi_engine.validation.neardup import SHINGLE_SIZE, THRESHOLD, tokenize
from heidi_engine.validation.pipeline import (
    MAX_CHARS,
    DedupState,
    Validator,
    neardup_text,
    schema_problem,
    task_identity,
)

N_SAMPLES = 3000
N_BASELINE = 300
REPEATS = 2
NUM_PERM = 128
FAKE_KEY = "AKIA" + "Q7RZ2M4X6W3V5T7Y"


def corpus(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    tasks = procedural.generate(seed, n)
    rows = []
    for i, task in enumerate(tasks):
        completion = task.canonical_solution
        roll = rng.random()
        if roll < 0.01:
            completion = f"    aws_key = '{FAKE_KEY}'\n" + completion
        elif roll < 0.06 and rows:
            rows.append(dict(rows[rng.randrange(len(rows))], id=f"s{i}"))
            continue
        elif roll < 0.11 and rows:
            base = rows[rng.randrange(len(rows))]
            rows.append(dict(base, id=f"s{i}", instruction=base["instruction"] + " Be concise.",
                             completion=base["completion"].replace("return", "return ", 1)))
            continue
        rows.append({"id": f"s{i}", "task_id": task.task_id, "task_source": "procedural",
                     "instruction": "Complete the following Python function.\n\n" + task.prompt,
                     "prompt": task.prompt, "completion": completion, "test": task.test,
                     "entry_point": task.entry_point, "teacher": "reference", "round": 1,
                     "metadata": dict(task.metadata)})
    return [json.dumps(r) + "\n" for r in rows]


class StraightforwardValidator:
    """The same checks written the obvious way, for comparison."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.lsh = MinHashLSH(threshold=0.4, num_perm=NUM_PERM)
        self.accepted: dict[int, tuple[set[str], str | None]] = {}
        self.assignment = re.compile(
            r"[\w.\-]*(?:password|passwd|pwd|secret|token|api_?key|access_?key|auth)[\w.\-]*"
            r"\s*[=:]\s*['\"]([^'\"\n]{8,})['\"]", re.I)

    def has_secret(self, sample: dict) -> bool:
        texts = [v for v in sample.values() if isinstance(v, str)]
        texts += [str(v) for v in sample.get("metadata", {}).values()]
        for text in texts:
            for rule in secret_rules._RULES:
                for match in rule.pattern.finditer(text):
                    value = match.group(rule.group)
                    if value and (rule.check is None or rule.check(value)):
                        return True
            for match in self.assignment.finditer(text):
                if secret_rules.looks_random(match.group(1), min_length=8, min_entropy=2.5):
                    return True
        return False

    @staticmethod
    def normalize(text: str) -> str:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").split("\n")
        out = []
        for i, line in enumerate(lines):
            stripped = line.rstrip() if i < len(lines) - 1 else line
            indent = len(stripped) - len(stripped.lstrip(" \t"))
            out.append(stripped[:indent].expandtabs(4) + stripped[indent:])
        return "\n".join(out)

    def check_line(self, key: int, line: str) -> str | None:
        sample = json.loads(line)
        if self.has_secret(sample):
            return "secret"
        problem = schema_problem(sample)
        if problem:
            return problem[0]
        if any(len(sample[name]) > limit for name, limit in MAX_CHARS.items()):
            return "too_long"
        for name in ("prompt", "completion", "test"):
            sample[name] = self.normalize(sample[name])
        text = sample["instruction"] + "\0" + sample["completion"]
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in self.seen:
            return "duplicate"
        tokens = ["\x02"] * (SHINGLE_SIZE - 1) + tokenize(neardup_text(sample))
        shingles = {" ".join(tokens[i:i + SHINGLE_SIZE])
                    for i in range(len(tokens) - SHINGLE_SIZE + 1)}
        minhash = MinHash(num_perm=NUM_PERM)
        for shingle in shingles:
            minhash.update(shingle.encode())
        identity = task_identity(sample)
        for other in self.lsh.query(minhash):
            other_shingles, other_identity = self.accepted[other]
            if identity is not None and other_identity is not None and other_identity != identity:
                continue
            if len(shingles & other_shingles) / len(shingles | other_shingles) >= THRESHOLD:
                return "near_duplicate"
        self.seen.add(digest)
        self.accepted[key] = (shingles, identity)
        self.lsh.insert(key, minhash)
        return None



def run(report) -> None:
    lines = corpus(N_SAMPLES)
    size_mb = sum(len(line.encode()) for line in lines) / 1e6
    baseline_lines = lines[:N_BASELINE]
    baseline_mb = sum(len(line.encode()) for line in baseline_lines) / 1e6
    # Best of REPEATS for both (fresh state each time): the machine is shared and busy.
    ours = theirs = 0.0
    for _ in range(REPEATS):
        validator = Validator(DedupState())
        started = time.process_time()
        reasons = [reason for _, reason in validator.check_lines(lines)]
        ours = max(ours, size_mb / (time.process_time() - started))
        baseline = StraightforwardValidator()
        started = time.process_time()
        baseline_reasons = [baseline.check_line(i, line) for i, line in enumerate(baseline_lines)]
        theirs = max(theirs, baseline_mb / (time.process_time() - started))
    agree = sum(a == b for a, b in zip(reasons[:N_BASELINE], baseline_reasons)) / N_BASELINE
    print(f"  corpus {len(lines)} samples, {size_mb:.1f} MB; rejected "
          f"{sum(r is not None for r in reasons)}; verdicts agree with baseline on {agree:.0%}")
    report.add("validation throughput per core", ours, "MB/s",
               baseline_name="straightforward python", baseline_value=theirs,
               target=">= 20 MB/s per core", met=ours >= 20)
