"""Secret detection: recall, false positives and speed against Yelp's ``detect-secrets``.

Both detectors scan the same files in the same run: the generated corpora of
``tests/secrets_corpus.py`` (credentials in many formats and code shapes; clean code full
of look-alikes), one ``.py`` file per snippet. ``detect-secrets`` runs with its default
settings (every plugin, default filters) through ``SecretsCollection.scan_file``, the
call its ``scan`` command makes per file; ours reads the file and runs ``find_secrets``.

Scoring is lenient to the baseline: a planted secret counts as found by
``detect-secrets`` when it reports anything on a line of the secret (or of its key
block); ours must cover the secret's characters. A clean file with any report is a
false positive. Speed is files per second over both corpora, on one core.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from heidi_engine.validation.secrets import find_secrets  # noqa: E402
from secrets_corpus import clean_corpus, covers, secret_corpus  # noqa: E402

PER_FORMAT = 20
N_CLEAN = 800


def _secret_lines(fmt: str, value: str, code: str) -> set[int]:
    """1-based line numbers of the secret (from its key block's BEGIN line)."""
    start = code.index(value)
    if fmt.endswith("private_key"):
        start = code.rfind("-----BEGIN", 0, start)
    first = code.count("\n", 0, start) + 1
    last = code.count("\n", 0, code.index(value) + len(value)) + 1
    return set(range(first, last + 1))


def _write(folder: Path, texts: list[str], prefix: str) -> list[Path]:
    paths = []
    for i, text in enumerate(texts):
        path = folder / f"{prefix}_{i:05d}.py"
        path.write_text(text)
        paths.append(path)
    return paths


def _ours(paths: list[Path]) -> tuple[list[list[tuple[int, int]]], list[str], float]:
    started = time.perf_counter()
    texts, spans = [], []
    for path in paths:
        text = path.read_text()
        texts.append(text)
        spans.append([(f.start, f.end) for f in find_secrets(text)])
    return spans, texts, time.perf_counter() - started


def _theirs(paths: list[Path]) -> tuple[list[set[int]], float]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    lines = []
    with default_settings():
        started = time.perf_counter()
        for path in paths:
            collection = SecretsCollection()
            collection.scan_file(str(path))
            lines.append({secret.line_number for _, secret in collection})
        elapsed = time.perf_counter() - started
    return lines, elapsed


def run(report) -> None:
    positives = secret_corpus(seed=101, per_format=PER_FORMAT)
    negatives = clean_corpus(seed=202, n=N_CLEAN)
    n_formats = len({fmt for fmt, _, _ in positives})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pos_paths = _write(folder, [code for _, _, code in positives], "pos")
        neg_paths = _write(folder, negatives, "neg")
        paths = pos_paths + neg_paths
        _ours(paths[:50]), _theirs(paths[:50])  # warm both (imports, regex compiles)
        our_spans, texts, our_s = _ours(paths)
        their_lines, their_s = _theirs(paths)
    n_pos = len(positives)
    our_found = sum(covers(value, text, spans) for (_, value, _), text, spans
                    in zip(positives, texts, our_spans))
    their_found = sum(bool(lines & _secret_lines(fmt, value, code))
                      for (fmt, value, code), lines in zip(positives, their_lines))
    our_fp = sum(bool(spans) for spans in our_spans[n_pos:])
    their_fp = sum(bool(lines) for lines in their_lines[n_pos:])
    our_recall, their_recall = our_found / n_pos, their_found / n_pos
    our_fpr, their_fpr = our_fp / len(negatives), their_fp / len(negatives)
    print(f"   corpus: {n_pos} credentials in {n_formats} formats, {len(negatives)} clean files")
    report.add("secrets: recall", our_recall * 100, "%", baseline_name="detect-secrets",
               baseline_value=their_recall * 100, target=">= 99% and >= detect-secrets",
               met=our_recall >= 0.99 and our_recall >= their_recall)
    met_fp = our_fpr <= 0.01 and our_fp < their_fp
    if our_fp:
        report.add("secrets: false-positive rate", our_fpr * 100, "%", baseline_name="detect-secrets",
                   baseline_value=their_fpr * 100, higher_is_better=False,
                   target="<= 1% and a fraction of detect-secrets'", met=met_fp)
    else:  # a ratio against zero is undefined: the rates are printed side by side
        report.add("secrets: false-positive rate", 0.0, "%",
                   target="<= 1% and a fraction of detect-secrets'", met=met_fp)
        print(f"   detect-secrets false-positive rate: {their_fpr * 100:.2f}% ({their_fp} files)")
    report.add("secrets: false positives / detect-secrets'", our_fp / max(their_fp, 1), "x",
               higher_is_better=False, target="< 1", met=our_fp < their_fp)
    report.add("secrets: scan speed", len(paths) / our_s, "files/s", baseline_name="detect-secrets",
               baseline_value=len(paths) / their_s, target=">= 15x detect-secrets",
               met=their_s / our_s >= 15)
