"""The checks of the validate stage, in order, and the dedup state kept across rounds.

Per sample: secret detection on every string (fail-closed: reason ``secret``, every
string masked in the rejected record), schema, tests present (``no_tests``), length
limits (``too_long``), normalisation, exact dedup (``duplicate``), near-duplicate
removal (``near_duplicate``). Length limits run before the dedup steps so oversized
samples never reach the expensive ones.

Dedup state (exact hashes + the MinHash-LSH index) is persisted per round as
``state/validate_index_round_N.pkl`` and holds only accepted samples of rounds <= N.
Round N starts from the newest snapshot of an earlier round and catches up from the
clean files of any rounds after it, so re-running round N never sees its own earlier
(partial) additions, and a missing snapshot is rebuilt from ``data/clean_round_*.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..io import iter_jsonl, write_bytes_atomic
from .neardup import NearDupIndex
from .normalize import normalize_sample
from .secrets import find_secrets, mask_secrets

STRING_FIELDS = ("id", "task_id", "task_source", "instruction", "prompt", "completion",
                 "test", "entry_point", "teacher")
REQUIRED_FIELDS = STRING_FIELDS + ("round", "metadata")
MAX_CHARS = {"instruction": 8_000, "prompt": 16_000, "completion": 16_000, "test": 32_000}
REJECT_REASONS = ("secret", "schema", "no_tests", "too_long", "duplicate", "near_duplicate")
SNAPSHOT_VERSION = 1
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFINES_CHECK = re.compile(r"^\s*def\s+check\s*\(", re.M)


def _strings(value: object, out: list[str]) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            out.append(str(key))
            _strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)
    return out


def mask_value(value: object) -> object:
    """A JSON value with every secret in every string (and key) masked."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {mask_secrets(str(k)): mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    return value


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
    if not _IDENTIFIER.fullmatch(sample["entry_point"]):
        return "schema", "entry_point is not an identifier"
    if test is None or not test.strip() or not _DEFINES_CHECK.search(test):
        return "no_tests", "test does not define check(candidate)"
    return None


def exact_key(sample: dict) -> bytes:
    text = sample["instruction"] + "\x00" + sample["completion"]
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def neardup_text(sample: dict) -> str:
    return sample["prompt"] + "\n" + sample["completion"]


@dataclass
class DedupState:
    """Exact hashes and the near-duplicate index of accepted samples."""

    exact: set[bytes] = field(default_factory=set)
    index: NearDupIndex = field(default_factory=NearDupIndex)

    def add(self, key: str, sample: dict, signature=None) -> None:
        self.exact.add(exact_key(sample))
        if signature is None:
            signature = self.index.signature(neardup_text(sample))
        self.index.add(key, signature)


def _snapshot_path(state_dir: Path, round: int) -> Path:
    return state_dir / f"validate_index_round_{round}.pkl"


def _snapshot_rounds(state_dir: Path) -> list[int]:
    rounds = []
    for path in state_dir.glob("validate_index_round_*.pkl"):
        suffix = path.stem.rsplit("_", 1)[-1]
        if suffix.isdigit():
            rounds.append(int(suffix))
    return sorted(rounds)


def sample_key(sample: dict) -> str:
    return f"{sample['round']}:{sample['id']}"


def load_state(state_dir: Path, data_dir: Path, round: int) -> DedupState:
    """The dedup state of every accepted sample of rounds before ``round``."""
    state, start = DedupState(), 1
    for earlier in reversed([r for r in _snapshot_rounds(state_dir) if r < round]):
        try:
            payload = pickle.loads(_snapshot_path(state_dir, earlier).read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
            continue  # unreadable: fall back to an older snapshot or the clean files
        if isinstance(payload, dict) and payload.get("version") == SNAPSHOT_VERSION:
            state = DedupState(payload["exact"], payload["index"])
            start = earlier + 1
            break
    for earlier in range(start, round):
        clean = data_dir / f"clean_round_{earlier}.jsonl"
        if clean.exists():
            for sample in iter_jsonl(clean):
                state.add(sample_key(sample), sample)
    return state


def save_state(state_dir: Path, round: int, state: DedupState) -> None:
    payload = {"version": SNAPSHOT_VERSION, "round": round, "exact": state.exact,
               "index": state.index}
    write_bytes_atomic(_snapshot_path(state_dir, round),
                       pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    # Keep the previous round's snapshot (a re-run of this round starts from it).
    for old in _snapshot_rounds(state_dir):
        if old < round - 1:
            _snapshot_path(state_dir, old).unlink(missing_ok=True)


class Validator:
    """Applies the checks to one sample at a time, updating the dedup state."""

    def __init__(self, state: DedupState) -> None:
        self.state = state
        self.rejected = Counter()

    def check_line(self, line: str) -> tuple[dict, str | None]:
        """(record, reject_reason) for one raw JSONL line; reason None = clean."""
        try:
            sample = json.loads(line)
        except json.JSONDecodeError:
            sample = None
        if not isinstance(sample, dict):
            masked = mask_secrets(line.rstrip("\n"))
            reason = "secret" if masked != line.rstrip("\n") else "schema"
            return self._reject({"raw": masked[:2000]}, reason, "line is not a JSON object")
        return self.check(sample)

    def check(self, sample: dict) -> tuple[dict, str | None]:
        # Secrets first, over every string of the sample, whatever its shape.
        findings = find_secrets("\n\n".join(_strings(sample, [])))
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
        clean = normalize_sample(sample)
        if exact_key(clean) in self.state.exact:
            return self._reject(clean, "duplicate", None)
        signature = self.state.index.signature(neardup_text(clean))
        match = self.state.index.find(signature)
        if match is not None:
            record = dict(clean)
            record["duplicate_of"] = match[0]
            return self._reject(record, "near_duplicate", f"similarity {match[1]:.2f}")
        self.state.add(sample_key(clean), clean, signature)
        return clean, None

    def _reject(self, record: dict, reason: str, detail: str | None) -> tuple[dict, str]:
        self.rejected[reason] += 1
        record["reject_reason"] = reason
        if detail:
            record["reject_detail"] = detail
        return record, reason
