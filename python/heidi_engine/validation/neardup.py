"""Near-duplicate detection with MinHash-LSH (``datasketch``), kept across rounds.

A sample's fingerprint is the MinHash of the set of token k-shingles of its normalised
``prompt + completion``. Signatures use datasketch's ``affine32`` permutations
(``h -> a*h + b mod 2^32``), applied to all shingles of a text at once with numpy
instead of one Python call per shingle. ``MinHashLSH`` proposes candidates; a candidate
counts as a near duplicate only if the estimated Jaccard similarity of the two
signatures reaches the threshold (LSH alone would also return some pairs below it).

Shingle hashes must be stable across processes (the index is persisted), so tokens are
hashed with CRC32, never with Python's salted ``hash``.
"""

from __future__ import annotations

import pickle
import re
import zlib

import numpy as np
from datasketch import MinHash, MinHashLSH

NUM_PERM = 128
SHINGLE_SIZE = 2
THRESHOLD = 0.5
PERMUTATION_SEED = 1
FORMAT_VERSION = 1

# Identifier/number runs and single punctuation characters (ASCII classes: faster).
_TOKEN = re.compile(r"[A-Za-z0-9_]+|[^A-Za-z0-9_\s]")
_MASK32 = np.uint64(0xFFFFFFFF)


class _TokenHashes(dict):
    """token -> stable 32-bit hash, memoised (code reuses a small vocabulary)."""

    def __missing__(self, token: str) -> int:
        if len(self) > 1_000_000:
            self.clear()
        value = zlib.crc32(token.encode("utf-8"))
        self[token] = value
        return value


_token_hashes = _TokenHashes()


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _mix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (murmur3 fmix64) so shingle hashes are well spread."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def shingle_hashes(text: str, k: int = SHINGLE_SIZE) -> np.ndarray:
    """The distinct 32-bit hashes of the token k-shingles of ``text`` (uint32)."""
    tokens = tokenize(text)
    if not tokens:
        return np.zeros(0, dtype=np.uint32)
    ids = np.fromiter(map(_token_hashes.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
    if len(ids) < k:
        k = len(ids)
    combined = ids[: len(ids) - k + 1].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, k):
            combined = combined * np.uint64(0x100000001B3) + ids[offset: len(ids) - k + 1 + offset]
        mixed = _mix64(combined)
    return np.unique((mixed & _MASK32).astype(np.uint32))


class NearDupIndex:
    """Signatures of accepted samples plus the LSH over them; picklable."""

    def __init__(self, threshold: float = THRESHOLD, num_perm: int = NUM_PERM) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.version = FORMAT_VERSION
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.signatures: dict[str, np.ndarray] = {}
        template = MinHash(num_perm=num_perm, seed=PERMUTATION_SEED, scheme="affine32")
        self._permutations = template.permutations
        a, b = template.permutations
        self._a = a.astype(np.uint32).reshape(1, -1)
        self._b = b.astype(np.uint32).reshape(1, -1)

    def __len__(self) -> int:
        return len(self.signatures)

    def signature(self, text: str) -> np.ndarray:
        """The MinHash values (uint32, ``num_perm`` of them) of ``text``'s shingles."""
        hashes = shingle_hashes(text)
        if hashes.size == 0:
            return np.full(self.num_perm, 0xFFFFFFFF, dtype=np.uint32)
        with np.errstate(over="ignore"):
            permuted = hashes.reshape(-1, 1) * self._a + self._b  # wraps mod 2^32
        return permuted.min(axis=0)

    def _minhash(self, signature: np.ndarray) -> MinHash:
        # One MinHash carries each signature to the LSH (it only reads ``hashvalues``);
        # building a fresh object per sample would cost more than the LSH lookup.
        carrier = self.__dict__.get("_carrier")
        if carrier is None:
            carrier = self._carrier = MinHash(seed=PERMUTATION_SEED, hashvalues=signature,
                                              permutations=self._permutations, scheme="affine32")
        carrier.hashvalues = signature
        return carrier

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.count_nonzero(a == b)) / self.num_perm

    def find(self, signature: np.ndarray) -> tuple[str, float] | None:
        """The most similar indexed key at or above the threshold, with its similarity."""
        best: tuple[str, float] | None = None
        for key in self.lsh.query(self._minhash(signature)):
            score = self.similarity(signature, self.signatures[key])
            if score >= self.threshold and (best is None or score > best[1]):
                best = (key, score)
        return best

    def add(self, key: str, signature: np.ndarray) -> None:
        if key in self.signatures:
            return
        self.signatures[key] = signature
        self.lsh.insert(key, self._minhash(signature), check_duplication=False)

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(data: bytes) -> NearDupIndex:
        index = pickle.loads(data)
        if not isinstance(index, NearDupIndex) or getattr(index, "version", None) != FORMAT_VERSION:
            raise ValueError("not a near-duplicate index of this version")
        return index
