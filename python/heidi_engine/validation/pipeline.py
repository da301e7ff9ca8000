"""The checks of the validate stage, in order, and the dedup state kept across rounds.

Per sample: secret detection on every string (fail-closed: reason ``secret``, every
string masked in the rejected record), schema, tests present (``no_tests``), length
limits (``too_long``), decontamination against the held-out tasks (``contaminated``, see
:mod:`.contamination`), normalisation, exact dedup (``duplicate``), near-duplicate
removal (``near_duplicate``). Length limits run before the dedup steps so oversized
samples never reach the expensive ones.

Lines are checked in batches: the per-sample checks run first, then the near-duplicate
sketches of the batch's surviving samples are computed together (numpy), then the dedup
decisions are taken in line order, so a sample is compared with every accepted sample
before it, in this batch or earlier.

Near-duplicate text: the sample's task and answer, ``prompt`` (or ``instruction`` when
there is no prompt code: otherwise the instruction only restates the prompt) +
``completion`` + ``test``. Tests carry the expected values that tell tasks of one family
apart. Procedural task ids are the generator's parameter choices, so two samples of
different procedural tasks are distinct by construction and never near duplicates of
each other (their texts can be closer than a 10%-edited copy: a family's tasks share
their template and differ in a constant or a name).

Dedup state (exact hashes + the MinHash-LSH index) is persisted per round as
``state/validate_index_round_N.npz`` (plain numpy arrays, never a pickle) and holds only
accepted samples of rounds <= N.
Round N starts from the newest snapshot of an earlier round and catches up from the
clean files of any rounds after it, so re-running round N never sees its own earlier
(partial) additions, and a missing snapshot is rebuilt from ``data/clean_round_*.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HeidiError
from ..io import iter_jsonl, write_bytes_atomic
from ..run_layout import DATA_NAME, VALIDATE_INDEX_NAME, rounds_present
from ..tasks.model import has_runnable_tests, is_entry_point
from ..tasks.procedural import is_procedural_id
from .contamination import HeldOutIndex
from .neardup import NearDupIndex, load_npz, save_npz, sketch_texts
from .normalize import normalize_sample
from .secrets import SecretFinding, find_secrets_many, mask_secrets, mask_value
from .secrets import json_strings as _strings

STRING_FIELDS = ("id", "task_id", "task_source", "instruction", "prompt", "completion",
                 "test", "entry_point", "teacher")
REQUIRED_FIELDS = STRING_FIELDS + ("round", "metadata")
MAX_CHARS = {"instruction": 8_000, "prompt": 16_000, "completion": 16_000, "test": 32_000}
REJECT_REASONS = ("secret", "schema", "no_tests", "too_long", "contaminated", "duplicate",
                  "near_duplicate")
SNAPSHOT_VERSION = 3
EXACT_KEY_BYTES = 16
BATCH_SIZE = 256


def schema_problem(sample: dict) -> tuple[str, str] | None:
    """(reason, detail) if the sample breaks the schema of SPEC §8, else None."""
    test = sample.get("test")
    for name in REQUIRED_FIELDS:
        if name == "test" and (test is None or test == ""):
            continue  # reported as no_tests below
        if name not in sample:
            return "schema", f"missing field {name!r}"
    for name in STRING_FIELDS:
        if name in sample and sample[name] is not None and not isinstance(sample[name], str):
            return "schema", f"field {name!r} must be a string"
        if name != "test" and sample.get(name) is None:
            return "schema", f"field {name!r} must be a string"
    if not isinstance(sample["round"], int) or isinstance(sample["round"], bool):
        return "schema", "field 'round' must be an integer"
    if not isinstance(sample["metadata"], dict):
        return "schema", "field 'metadata' must be an object"
    for name in ("id", "task_id", "instruction"):
        if not sample[name].strip():
            return "schema", f"field {name!r} is empty"
    if not sample["completion"].strip():
        return "schema", "empty completion"
    if not is_entry_point(sample["entry_point"]):
        return "schema", "entry_point is not an identifier"
    if not has_runnable_tests(sample):
        return "no_tests", "test does not define check(candidate)"
    return None


def exact_key(sample: dict) -> bytes:
    text = sample["instruction"] + "\x00" + sample["completion"]
    return hashlib.blake2b(text.encode("utf-8"), digest_size=EXACT_KEY_BYTES).digest()


def neardup_text(sample: dict) -> str:
    task = sample["prompt"] if sample["prompt"].strip() else sample["instruction"]
    return task + "\n" + sample["completion"] + "\n" + sample["test"]


def task_identity(sample: dict) -> str | None:
    """The task id when it names a distinct task by construction (procedural), else None.
    Teacher samples 1, 2, ... of a task (``metadata.sample``) are identities of their own,
    so the distinct answers a task was sampled for are not near duplicates of each other."""
    task_id = sample.get("task_id")
    if not isinstance(task_id, str) or not is_procedural_id(task_id):
        return None
    metadata = sample.get("metadata")
    index = metadata.get("sample") if isinstance(metadata, dict) else None
    if isinstance(index, int) and not isinstance(index, bool) and index > 0:
        return f"{task_id}#{index}"
    return task_id


@dataclass
class DedupState:
    """Exact hashes and the near-duplicate index of accepted samples."""

    exact: set[bytes] = field(default_factory=set)
    index: NearDupIndex = field(default_factory=NearDupIndex)

    def add_all(self, samples: list[dict]) -> None:
        """Index accepted samples (e.g. an earlier round's clean file)."""
        for start in range(0, len(samples), BATCH_SIZE):
            batch = samples[start:start + BATCH_SIZE]
            screen = self.index.screen(sketch_texts([neardup_text(s) for s in batch]),
                                       [task_identity(s) for s in batch])
            for row, sample in enumerate(batch):
                self.exact.add(exact_key(sample))
                screen.add(row, sample_key(sample))
            screen.commit()


class SnapshotError(HeidiError, ValueError):
    """A dedup snapshot in ``state/`` is corrupt or not ours."""


def _snapshot_path(state_dir: Path, round: int) -> Path:
    return state_dir / VALIDATE_INDEX_NAME.format(round=round)


def _snapshot_rounds(state_dir: Path) -> list[int]:
    return rounds_present(state_dir, VALIDATE_INDEX_NAME)


def sample_key(sample: dict) -> str:
    return f"{sample['round']}:{sample['id']}"


def read_snapshot(path: Path) -> DedupState | None:
    """The state saved in ``path``; None for a snapshot of another version (rebuilt from
    the clean files). A corrupt or foreign file raises SnapshotError naming it. Only plain
    arrays are read (no pickle), so nothing in the file can run code."""
    try:
        arrays = load_npz(path.read_bytes())
        version = arrays.get("snapshot_version")
        if (not isinstance(version, np.ndarray) or version.dtype.kind != "i"
                or version.shape != (1,)):
            raise ValueError("no snapshot_version")
        if int(version[0]) != SNAPSHOT_VERSION:
            return None
        exact = arrays.get("exact")
        if (not isinstance(exact, np.ndarray) or exact.dtype != np.uint8 or exact.ndim != 2
                or exact.shape[1] != EXACT_KEY_BYTES):
            raise ValueError("bad exact hashes")
        index = NearDupIndex.from_arrays(arrays, prefix="index_")
    except OSError as exc:
        raise SnapshotError(f"{path}: unreadable dedup snapshot ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise SnapshotError(f"{path}: not a valid dedup snapshot ({exc}); delete it to rebuild "
                            "it from the clean files") from None
    return DedupState({bytes(row) for row in exact}, index)


def load_state(state_dir: Path, data_dir: Path, round: int) -> DedupState:
    """The dedup state of every accepted sample of rounds before ``round``."""
    state, start = DedupState(), 1
    for earlier in reversed([r for r in _snapshot_rounds(state_dir) if r < round]):
        restored = read_snapshot(_snapshot_path(state_dir, earlier))
        if restored is not None:
            state = restored
            start = earlier + 1
            break
    for earlier in range(start, round):
        clean = data_dir / DATA_NAME.format(kind="clean", round=earlier)
        if clean.exists():
            state.add_all(list(iter_jsonl(clean)))
    return state


def save_state(state_dir: Path, round: int, state: DedupState) -> None:
    exact = np.frombuffer(b"".join(sorted(state.exact)), dtype=np.uint8).reshape(
        len(state.exact), EXACT_KEY_BYTES)
    arrays = {"snapshot_version": np.array([SNAPSHOT_VERSION], dtype=np.int64),
              "round": np.array([round], dtype=np.int64), "exact": exact,
              **state.index.to_arrays(prefix="index_")}
    write_bytes_atomic(_snapshot_path(state_dir, round), save_npz(arrays))
    # Keep the previous round's snapshot (a re-run of this round starts from it).
    for old in _snapshot_rounds(state_dir):
        if old < round - 1:
            _snapshot_path(state_dir, old).unlink(missing_ok=True)


class Validator:
    """Applies the checks to samples in line order, updating the dedup state."""

    def __init__(self, state: DedupState, held_out: HeldOutIndex | None = None) -> None:
        self.state = state
        self.held_out = held_out
        self.rejected = Counter()

    def check_lines(self, lines: list[str]) -> list[tuple[dict, str | None]]:
        """(record, reject_reason) for each raw JSONL line, in order; reason None = clean."""
        results: list[tuple[dict, str | None]] = []
        for start in range(0, len(lines), BATCH_SIZE):
            results.extend(self._check_batch(lines[start:start + BATCH_SIZE]))
        return results

    def _check_batch(self, lines: list[str]) -> list[tuple[dict, str | None]]:
        samples: list[dict | None] = []
        for line in lines:
            try:
                sample = json.loads(line)
            except json.JSONDecodeError:
                sample = None
            samples.append(sample if isinstance(sample, dict) else None)
        # Secrets first, over every string of the sample, whatever its shape.
        texts = ["\n\n".join(_strings(sample, [])) for sample in samples if sample is not None]
        findings = iter(zip(texts, find_secrets_many(texts)))
        checked = []
        for line, sample in zip(lines, samples):
            if sample is None:
                masked = mask_secrets(line.rstrip("\n"))
                reason = "secret" if masked != line.rstrip("\n") else "schema"
                checked.append(self._reject({"raw": masked[:2000]}, reason,
                                            "line is not a JSON object"))
            else:
                checked.append(self._check_sample(sample, *next(findings)))
        return self._decide(checked)

    def _check_sample(self, sample: dict, text: str,
                      findings: list[SecretFinding]) -> tuple[dict, str | None]:
        """The checks before dedup (``text``: all the sample's strings, joined): a rejected
        record, or the normalised sample and None."""
        if findings:
            record = mask_value(sample)
            record["secret_kinds"] = sorted({f.kind for f in findings})
            return self._reject(record, "secret", None)
        problem = schema_problem(sample)
        if problem is not None:
            return self._reject(dict(sample), *problem)
        for name, limit in MAX_CHARS.items():
            if len(sample[name]) > limit:
                return self._reject(dict(sample), "too_long", f"{name} longer than {limit} chars")
        if self.held_out is not None:
            contamination = self.held_out.match(sample)
            if contamination is not None:
                return self._reject(dict(sample), "contaminated", contamination)
        return normalize_sample(sample, containing=text), None

    def _decide(self, checked: list[tuple[dict, str | None]]) -> list[tuple[dict, str | None]]:
        """Exact and near-duplicate decisions, in order, for samples that passed so far."""
        pending = [i for i, (_, reason) in enumerate(checked) if reason is None]
        samples = [checked[i][0] for i in pending]
        state = self.state
        screen = state.index.screen(sketch_texts([neardup_text(s) for s in samples]),
                                    [task_identity(s) for s in samples])
        results = list(checked)
        for row, (i, clean) in enumerate(zip(pending, samples)):
            exact = exact_key(clean)
            if exact in state.exact:
                results[i] = self._reject(clean, "duplicate", None)
                continue
            match = screen.find(row)
            if match is not None:
                record = dict(clean)
                record["duplicate_of"] = match[0]
                results[i] = self._reject(record, "near_duplicate", f"similarity {match[1]:.2f}")
                continue
            state.exact.add(exact)
            screen.add(row, sample_key(clean))
        screen.commit()
        return results

    def _reject(self, record: dict, reason: str, detail: str | None) -> tuple[dict, str]:
        self.rejected[reason] += 1
        record["reject_reason"] = reason
        if detail:
            record["reject_detail"] = detail
        return record, reason
