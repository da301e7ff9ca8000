"""Near-duplicate detection with MinHash-LSH, kept across rounds.

A sample's fingerprint is the set of its token 3-shingles. Two samples are near
duplicates when the exact Jaccard similarity of their shingle sets is at least
``THRESHOLD``: a copy with 10% of its tokens edited keeps about (1 - 3*0.1)/(1 + 3*0.1)
= 0.54 of its 3-shingles, so 0.5 catches copies edited up to ~10% while random
code written for a different purpose stays far below it.

Candidates come from MinHash-LSH over one-permutation MinHash signatures (each shingle
hashed once into one of ``NUM_BINS`` bins, the minimum kept per bin, empty bins filled
from the next non-empty one), banded ``BANDS`` x ``ROWS``: a pair at Jaccard 0.5 shares a
band with probability about 1 - (1 - 0.5^3)^42 = 0.996. LSH only proposes; the exact Jaccard
decides, so the signature's estimation error never merges or splits a pair by itself.

Everything is computed for a batch of texts at once with numpy (tokenising, hashing,
shingling, signatures), because per-token Python work dominated the validate stage.
Hashes are derived from fixed constants (never Python's salted ``hash``), so an index
persisted in one process answers the same in another.

Tokens: runs of ASCII letters, digits, ``_`` and non-ASCII characters, and single ASCII
punctuation characters; ASCII whitespace separates. Each text's token sequence starts
with ``SHINGLE_SIZE - 1`` begin markers, so a text shorter than a shingle still has one.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SHINGLE_SIZE = 3
THRESHOLD = 0.5
NUM_BINS = 128
BANDS, ROWS = 42, 3
CHUNK_BYTES = 1 << 20
FORMAT_VERSION = 2

# The same token definition as the numpy tokeniser below, for callers that want tokens.
_TOKEN = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff]+|[^A-Za-z0-9_\t\n\x0b\x0c\r \x80-\U0010ffff]")

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_TOKEN_BASE = 0x100000001B3  # odd, so it has an inverse mod 2^64
_TOKEN_BASE_INVERSE = pow(_TOKEN_BASE, -1, 1 << 64)
_BEGIN_MARKER = _U64(0x5EED0F7E57A2B1C9)
_EMPTY = np.uint32(0xFFFFFFFF)
_BIN_BITS = NUM_BINS.bit_length() - 1  # NUM_BINS is a power of two

# Byte classes: 0 whitespace, 1 word (identifier characters and UTF-8 bytes), 2 punctuation.
_BYTE_CLASS = np.full(256, 2, dtype=np.uint8)
_BYTE_CLASS[list(b" \t\n\r\x0b\x0c")] = 0
_BYTE_CLASS[list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")] = 1
_BYTE_CLASS[0x80:] = 1
# A fixed random 64-bit value per byte (the token hash's alphabet); whitespace adds 0.
_BYTE_VALUE = np.frombuffer(hashlib.shake_256(b"heidi-neardup-bytes").digest(256 * 8),
                            dtype="<u8").astype(np.uint64)
_BYTE_VALUE[_BYTE_CLASS == 0] = 0


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _mix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (murmur3 fmix64) so hashes are well spread."""
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> _U64(33))


class _Powers:
    """B^i and B^-i mod 2^64 for i < n, grown on demand (shared by all batches)."""

    def __init__(self) -> None:
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < n:
            size = max(n, 2 * len(self.up))
            self.up = np.concatenate(([_U64(1)], np.cumprod(np.full(size - 1, _TOKEN_BASE,
                                                                   dtype=np.uint64))))
            self.down = np.concatenate(([_U64(1)], np.cumprod(np.full(size - 1, _TOKEN_BASE_INVERSE,
                                                                     dtype=np.uint64))))
        return self.up[:n], self.down[:n]


_powers = _Powers()


@dataclass
class Sketch:
    """A text's shingle hashes (uint32, possibly repeated) and its LSH band keys
    (``BANDS`` uint64 values; meaningless when the text has no shingles)."""

    shingles: np.ndarray
    bands: np.ndarray

    @property
    def empty(self) -> bool:
        return self.shingles.size == 0


def _token_hashes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start offset, 64-bit hash) of every token of a UTF-8 byte array."""
    classes = _BYTE_CLASS[data]
    word = classes == 1
    starts_mask = classes != 0
    starts_mask[1:] &= ~(word[1:] & word[:-1])  # a word byte after a word byte continues it
    starts = np.flatnonzero(starts_mask)
    if starts.size == 0:
        return starts, np.zeros(0, dtype=np.uint64)
    up, down = _powers.upto(len(data))
    with np.errstate(over="ignore"):
        # Polynomial hash sum(v[i] * B^i) over each token's bytes, from segment sums taken
        # at absolute positions and shifted back by the token's start (B^-start). A
        # segment runs to the next token's start; whitespace in it adds 0. (Shingle
        # hashes are mixed afterwards, so token hashes need no finaliser of their own.)
        sums = np.add.reduceat(_BYTE_VALUE[data] * up, starts)
        hashes = sums * down[starts]
    return starts, hashes


def sketch_texts(texts: Sequence[str]) -> list[Sketch]:
    """Shingles and LSH band keys of every text, computed together (in chunks of about
    ``CHUNK_BYTES``, which bounds the memory the numpy arrays take)."""
    encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
    sketches: list[Sketch] = []
    start = size = 0
    for end, data in enumerate(encoded, 1):
        size += len(data) + 1
        if size >= CHUNK_BYTES or end == len(encoded):
            sketches.extend(_sketch_chunk(encoded[start:end]))
            start, size = end, 0
    return sketches


def _sketch_chunk(encoded: list[bytes]) -> list[Sketch]:
    n = len(encoded)
    lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=n)
    text_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    # Texts are joined with a newline, so no token spans two texts.
    data = np.frombuffer(b"\n".join(encoded) + b"\n", dtype=np.uint8)
    token_starts, token_hashes = _token_hashes(data)
    first_token = np.searchsorted(token_starts, text_starts, side="left")
    tokens_per_text = np.diff(np.append(first_token, len(token_starts)))
    # Begin markers: SHINGLE_SIZE - 1 of them in front of each text's first token.
    markers = SHINGLE_SIZE - 1
    owner = np.repeat(np.arange(n), tokens_per_text + markers)
    token_owner = np.repeat(np.arange(n), tokens_per_text)
    hashes = np.full(len(owner), _BEGIN_MARKER, dtype=np.uint64)
    hashes[np.arange(len(token_hashes)) + markers * (token_owner + 1)] = token_hashes
    n_windows = len(hashes) - SHINGLE_SIZE + 1
    with np.errstate(over="ignore"):
        combined = hashes[:n_windows].copy()
        for offset in range(1, SHINGLE_SIZE):
            combined = combined * _GOLDEN + hashes[offset:offset + n_windows]
        shingles = _mix64(combined)
    valid = owner[:n_windows] == owner[SHINGLE_SIZE - 1:]
    shingles, shingle_owner = shingles[valid], owner[:n_windows][valid]
    values = (shingles & _MASK32).astype(np.uint32)
    bins = (shingles >> _U64(64 - _BIN_BITS)).astype(np.int64)  # the top bits pick the bin
    signatures = np.full(n * NUM_BINS, _EMPTY, dtype=np.uint32)
    np.minimum.at(signatures, shingle_owner * NUM_BINS + bins, values)
    signatures = _densify(signatures.reshape(n, NUM_BINS))
    bands = _band_keys(signatures)
    bounds = np.searchsorted(shingle_owner, np.arange(n + 1), side="left")
    return [Sketch(values[bounds[i]:bounds[i + 1]], bands[i]) for i in range(n)]


def _densify(signatures: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next non-empty bin to its right (circularly), offset
    by the distance, so similar texts still agree on those bins."""
    empty = signatures == _EMPTY
    rows = np.flatnonzero(empty.any(axis=1) & ~empty.all(axis=1))
    source = signatures[rows]
    missing = empty[rows]
    # Empty runs are short (a few bins), so try distance 1, 2, ... on the rows that
    # still have gaps, rather than locating every donor at once.
    for distance in range(1, NUM_BINS):
        todo = np.flatnonzero(missing.any(axis=1))
        if todo.size == 0:
            break
        donor = np.roll(source[todo], -distance, axis=1)
        usable = missing[todo] & (donor != _EMPTY)
        with np.errstate(over="ignore"):
            donated = donor + np.uint32(distance) * np.uint32(0x9E3779B1)
        rows_todo = rows[todo]
        signatures[rows_todo] = np.where(usable, donated, signatures[rows_todo])
        missing[todo] &= ~usable
    return signatures


def _band_keys(signatures: np.ndarray) -> np.ndarray:
    """One 64-bit key per band of ROWS bins (the band number mixed in)."""
    grouped = signatures[:, :BANDS * ROWS].reshape(len(signatures), BANDS, ROWS).astype(np.uint64)
    with np.errstate(over="ignore"):
        keys = np.arange(BANDS, dtype=np.uint64) * _GOLDEN
        for row in range(ROWS):
            keys = _mix64(keys ^ grouped[:, :, row])
    return keys


def sketch_text(text: str) -> Sketch:
    return sketch_texts([text])[0]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sets given as sorted unique arrays."""
    if a.size == 0 or b.size == 0:
        return 0.0
    common = np.intersect1d(a, b, assume_unique=True).size
    return common / (a.size + b.size - common)


def _expand(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indices ``starts[k] .. starts[k] + counts[k] - 1`` for every k, concatenated."""
    ends = np.cumsum(counts)
    return np.repeat(starts - ends + counts, counts) + np.arange(ends[-1] if ends.size else 0)


class _BandIndex:
    """LSH buckets as sorted (band key, position) arrays, probed with ``searchsorted`` for
    a whole batch at once. Inserted entries wait in ``pending`` until the next probe (an
    index nobody probes, like the procedural one in a procedural run, is never sorted);
    they then become a sorted segment, merged into the one before it while that one is
    at most twice its size, so there are O(log n) segments and each entry is re-sorted
    O(log n) times."""

    def __init__(self) -> None:
        self.segments: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []

    def __bool__(self) -> bool:
        return bool(self.segments or self.pending)

    def insert(self, bands: np.ndarray, positions: np.ndarray) -> None:
        if len(positions):
            self.pending.append((bands.ravel(), np.repeat(positions, bands.shape[1])))

    def _flush(self) -> None:
        if not self.pending:
            return
        keys = np.concatenate([keys for keys, _ in self.pending])
        owners = np.concatenate([owners for _, owners in self.pending])
        self.pending = []
        order = np.argsort(keys, kind="stable")
        self.segments.append((keys[order], owners[order]))
        while len(self.segments) > 1 and len(self.segments[-2][0]) <= 2 * len(self.segments[-1][0]):
            (keys_a, owners_a), (keys_b, owners_b) = self.segments[-2:]
            keys, owners = np.concatenate((keys_a, keys_b)), np.concatenate((owners_a, owners_b))
            order = np.argsort(keys, kind="stable")
            self.segments[-2:] = [(keys[order], owners[order])]

    def probe(self, bands: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, position) for every indexed position sharing a band with ``bands[i]``
        (reported as ``rows[i]``); pairs may repeat."""
        self._flush()
        keys = bands.ravel()
        key_rows = np.repeat(rows, bands.shape[1])
        found_rows, found_positions = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for segment_keys, segment_owners in self.segments:
            low = np.searchsorted(segment_keys, keys, side="left")
            counts = np.searchsorted(segment_keys, keys, side="right") - low
            hit = counts > 0
            if hit.any():
                low, counts = low[hit], counts[hit]
                found_rows.append(np.repeat(key_rows[hit], counts))
                found_positions.append(segment_owners[_expand(low, counts)])
        return np.concatenate(found_rows), np.concatenate(found_positions)


class NearDupIndex:
    """Accepted samples' shingle sets and the LSH over their signatures; saved as plain
    numpy arrays (:meth:`to_arrays`, :meth:`to_bytes`), never pickled.

    ``identity`` (optional, per sample) names a task whose distinctness is known by
    construction: two samples with different identities are never near duplicates. So
    entries with an identity live in their own LSH buckets, which only queries without
    one consult; a query with an identity checks the entries of the same identity
    directly (a handful at most) and the LSH of entries without one.

    Samples are screened in batches (:meth:`screen`): the LSH probes of a batch, and the
    band collisions between its own samples, are computed with numpy before the
    decisions are taken one sample at a time, in order.
    """

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self.version = FORMAT_VERSION
        self.keys: list[str] = []
        self.shingles: list[np.ndarray] = []
        self.sorted: list[bool] = []
        self.positions: dict[str, int] = {}
        self.anonymous = _BandIndex()
        self.identified = _BandIndex()
        self.by_identity: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def unique_shingles(self, position: int) -> np.ndarray:
        # Sets are made unique lazily: only candidates of an exact check ever need it.
        if not self.sorted[position]:
            self.shingles[position] = np.unique(self.shingles[position])
            self.sorted[position] = True
        return self.shingles[position]

    def screen(self, sketches: Sequence[Sketch], identities: Sequence[str | None]) -> Screen:
        return Screen(self, sketches, identities)

    def find(self, sketch: Sketch, identity: str | None = None) -> tuple[str, float] | None:
        """The most similar indexed key at or above the threshold, with its similarity."""
        return self.screen([sketch], [identity]).find(0)

    def add(self, key: str, sketch: Sketch, identity: str | None = None) -> None:
        screen = self.screen([sketch], [identity])
        screen.add(0, key)
        screen.commit()

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The index as plain numpy arrays (no objects: saved and loaded without pickle)."""
        n = len(self.keys)
        identity_of = [""] * n
        has_identity = np.zeros(n, dtype=bool)
        for identity, positions in self.by_identity.items():
            for position in positions:
                identity_of[position] = identity
                has_identity[position] = True
        lengths = np.fromiter((len(a) for a in self.shingles), dtype=np.int64, count=n)
        arrays = {
            "version": np.array([self.version], dtype=np.int64),
            "threshold": np.array([self.threshold], dtype=np.float64),
            "keys": np.array(self.keys, dtype=np.str_).reshape(n),
            "shingle_offsets": np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
            "shingles": (np.concatenate(self.shingles) if n else np.zeros(0)).astype(np.uint32),
            "sorted": np.array(self.sorted, dtype=bool).reshape(n),
            "identities": np.array(identity_of, dtype=np.str_).reshape(n),
            "has_identity": has_identity,
        }
        for name, buckets in (("anonymous", self.anonymous), ("identified", self.identified)):
            arrays[f"{name}_segment_lengths"] = np.array([len(k) for k, _ in buckets.segments],
                                                         dtype=np.int64)
            for part, pairs in (("segment", buckets.segments), ("pending", buckets.pending)):
                arrays[f"{name}_{part}_keys"] = np.concatenate(
                    [np.zeros(0, dtype=np.uint64)] + [k for k, _ in pairs]).astype(np.uint64)
                arrays[f"{name}_{part}_owners"] = np.concatenate(
                    [np.zeros(0, dtype=np.int64)] + [o for _, o in pairs]).astype(np.int64)
        return {prefix + key: value for key, value in arrays.items()}

    @staticmethod
    def from_arrays(arrays, prefix: str = "") -> NearDupIndex:
        """Rebuild an index from :meth:`to_arrays`; ValueError names what is wrong."""

        def get(key: str, kind: str, ndim: int = 1) -> np.ndarray:
            if prefix + key not in arrays:
                raise ValueError(f"missing array {prefix + key!r}")
            value = arrays[prefix + key]
            if not isinstance(value, np.ndarray) or value.dtype.kind != kind or value.ndim != ndim:
                raise ValueError(f"array {prefix + key!r} has the wrong type or shape")
            return value

        version = get("version", "i")
        if version.shape != (1,) or int(version[0]) != FORMAT_VERSION:
            raise ValueError(f"index format {version.tolist()} is not {FORMAT_VERSION}")
        threshold = get("threshold", "f")
        keys, offsets = get("keys", "U"), get("shingle_offsets", "i")
        shingles, flags = get("shingles", "u"), get("sorted", "b")
        identities, has_identity = get("identities", "U"), get("has_identity", "b")
        n = len(keys)
        if (threshold.shape != (1,) or not 0 < float(threshold[0]) <= 1 or shingles.itemsize != 4
                or len(offsets) != n + 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0)
                or offsets[-1] != len(shingles) or len(flags) != n or len(identities) != n
                or len(has_identity) != n or len(set(keys.tolist())) != n):
            raise ValueError("inconsistent index arrays")
        index = NearDupIndex(float(threshold[0]))
        index.keys = keys.tolist()
        index.positions = {key: position for position, key in enumerate(index.keys)}
        index.shingles = [shingles[offsets[i]:offsets[i + 1]].astype(np.uint32) for i in range(n)]
        index.sorted = flags.tolist()
        for position in np.flatnonzero(has_identity).tolist():
            index.by_identity.setdefault(str(identities[position]), []).append(position)
        for name, buckets in (("anonymous", index.anonymous), ("identified", index.identified)):
            lengths = get(f"{name}_segment_lengths", "i")
            parts = {}
            for part in ("segment", "pending"):
                part_keys = get(f"{name}_{part}_keys", "u")
                owners = get(f"{name}_{part}_owners", "i")
                if (part_keys.itemsize != 8 or len(part_keys) != len(owners)
                        or (len(owners) and (owners.min() < 0 or owners.max() >= n))):
                    raise ValueError(f"inconsistent {name} buckets")
                parts[part] = (part_keys, owners)
            if np.any(lengths < 0) or int(lengths.sum()) != len(parts["segment"][0]):
                raise ValueError(f"inconsistent {name} buckets")
            bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
            segment_keys, segment_owners = parts["segment"]
            buckets.segments = [(segment_keys[a:b], segment_owners[a:b])
                                for a, b in zip(bounds, bounds[1:])]
            buckets.pending = [parts["pending"]] if len(parts["pending"][0]) else []
        return index

    def to_bytes(self) -> bytes:
        """An ``.npz`` archive of :meth:`to_arrays`."""
        return save_npz(self.to_arrays())

    @staticmethod
    def from_bytes(data: bytes) -> NearDupIndex:
        return NearDupIndex.from_arrays(load_npz(data))


def save_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, read without pickle (object arrays refused).
    Raises ValueError for anything that is not such an archive."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"not a numpy .npz archive of plain arrays ({exc})") from None


class Screen:
    """One batch's candidates: ``find`` and ``add`` each row in order, then ``commit``
    once (until then, accepted rows are seen by later rows of this batch only)."""

    def __init__(self, index: NearDupIndex, sketches: Sequence[Sketch],
                 identities: Sequence[str | None]) -> None:
        self.index = index
        self.sketches = sketches
        self.identities = identities
        self.earlier: list[set[int]] = [set() for _ in sketches]  # indexed positions
        self.in_batch: list[list[int]] = [[] for _ in sketches]  # earlier rows of the batch
        self.accepted: dict[int, int] = {}  # row -> position
        live = np.array([not sketch.empty for sketch in sketches], dtype=bool)
        if not live.any():
            return
        bands = np.stack([sketch.bands for sketch in sketches])
        anonymous = np.array([identity is None for identity in identities], dtype=bool)
        for buckets, rows in ((index.anonymous, np.flatnonzero(live)),
                              (index.identified, np.flatnonzero(live & anonymous))):
            if rows.size and buckets:
                found_rows, found_positions = buckets.probe(bands[rows], rows)
                for row, position in zip(found_rows.tolist(), found_positions.tolist()):
                    self.earlier[row].add(position)
        self._pair_within_batch(bands, live, identities)

    def _pair_within_batch(self, bands: np.ndarray, live: np.ndarray,
                           identities: Sequence[str | None]) -> None:
        rows = np.flatnonzero(live)
        if rows.size < 2:
            return
        keys = bands[rows].ravel()
        key_rows = np.repeat(rows, bands.shape[1])
        order = np.argsort(keys, kind="stable")  # rows stay ascending within a key
        keys, key_rows = keys[order], key_rows[order]
        run_start = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        start_of = np.repeat(run_start, np.diff(np.append(run_start, len(keys))))
        earlier_count = np.arange(len(keys)) - start_of
        later = np.repeat(key_rows, earlier_count)
        earlier = key_rows[_expand(start_of, earlier_count)]
        # Different identities never match; a shared identity is checked in ``find``.
        codes = {identity: n for n, identity in enumerate(dict.fromkeys(identities)) if identity}
        code = np.array([codes.get(identity, -1) for identity in identities])
        keep = (later != earlier) & ((code[later] < 0) | (code[earlier] < 0))
        for row, other in set(zip(later[keep].tolist(), earlier[keep].tolist())):
            self.in_batch[row].append(other)

    def find(self, row: int) -> tuple[str, float] | None:
        """The best match of the row among accepted samples (indexed or earlier rows)."""
        index = self.index
        candidates = set(self.earlier[row])
        candidates.update(self.accepted[other] for other in self.in_batch[row]
                          if other in self.accepted)
        identity = self.identities[row]
        if identity is not None:
            candidates.update(index.by_identity.get(identity, ()))
        if not candidates:
            return None
        query = np.unique(self.sketches[row].shingles)
        best: tuple[str, float] | None = None
        for position in sorted(candidates):
            score = jaccard(query, index.unique_shingles(position))
            if score >= index.threshold and (best is None or score > best[1]):
                best = (index.keys[position], score)
        return best

    def add(self, row: int, key: str) -> None:
        """Accept the row under ``key`` (its bands reach the LSH at :meth:`commit`)."""
        index = self.index
        if key in index.positions:
            return
        position = len(index.keys)
        index.positions[key] = position
        index.keys.append(key)
        index.shingles.append(self.sketches[row].shingles)
        index.sorted.append(False)
        identity = self.identities[row]
        if identity is not None:
            index.by_identity.setdefault(identity, []).append(position)
        self.accepted[row] = position

    def commit(self) -> None:
        rows = [row for row in self.accepted if not self.sketches[row].empty]
        for anonymous in (True, False):
            chosen = [row for row in rows if (self.identities[row] is None) == anonymous]
            if chosen:
                buckets = self.index.anonymous if anonymous else self.index.identified
                buckets.insert(np.stack([self.sketches[row].bands for row in chosen]),
                               np.array([self.accepted[row] for row in chosen], dtype=np.int64))
