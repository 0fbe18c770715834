"""Near-duplicate document clusters by MinHash LSH: the pure core of fuzzy dedup.

Follows the LLaMA recipe as rebuilt by RedPajama / SlimPajama: normalise (lowercase, no
punctuation, collapsed whitespace), shingle into word 5-grams, MinHash with 128
permutations, band the signature as `datasketch.MinHashLSH` would, and keep the smallest
id of every connected component of (optionally verified) candidate pairs. The
distributed stage that maps this over a corpus comes later.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping

import numpy as np
from datasketch import MinHash
from datasketch.lsh import _optimal_param

# Unicode punctuation and symbols (`\w` keeps letters/digits in every script; `_` is `\w`).
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_WORD = re.compile(r"\S+")
# MinHashLSH's defaults: false positives and false negatives weigh the same.
DATASKETCH_WEIGHTS = (0.5, 0.5)
# Clustering favours recall: verification removes false positives, nothing restores a miss.
# (0.5, 0.5) puts the S-curve's midpoint above the threshold (P(candidate | J=0.8) = 0.40
# for 128 permutations); (0.05, 0.95) gives 0.95 at J=0.8.
RECALL_WEIGHTS = (0.05, 0.95)


def normalize_for_shingles(text: str) -> str:
    """Lowercased, punctuation deleted, whitespace runs collapsed to one space.

    SlimPajama's MinHash preprocessing (`to_minhash.py`): trivial formatting differences
    must not make two copies of a page look different.
    """
    return " ".join(_PUNCTUATION.sub("", text.lower()).split())


def _shingle_hash(gram: str) -> bytes:
    return hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()


def shingles(text: str, ngram: int = 5) -> set[bytes]:
    """8-byte BLAKE2b hashes of the word `ngram`-grams of the normalised text.

    Hashed while streaming over the words, so a long document never holds its n-gram
    strings at once. A text of fewer than `ngram` words yields one shingle of all its
    words (as SlimPajama does), so short documents can still be deduplicated; an empty
    text yields none.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    window: deque[str] = deque(maxlen=ngram)
    out: set[bytes] = set()
    for match in _WORD.finditer(normalize_for_shingles(text)):
        window.append(match.group())
        if len(window) == ngram:
            out.add(_shingle_hash(" ".join(window)))
    if not out and window:
        out.add(_shingle_hash(" ".join(window)))
    return out


def _uint64(shingle_hash: bytes) -> int:
    return int.from_bytes(shingle_hash, "little")


def signature(shingle_hashes: Iterable[bytes], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """The `num_perm` MinHash values of a shingle set, as a uint64 array.

    The shingles are already 64-bit hashes, so they feed datasketch's `affine64` scheme
    directly; its permutations derive from `seed` alone, so every process agrees.
    """
    minhash = MinHash(num_perm=num_perm, seed=seed, hashfunc=_uint64, scheme="affine64")
    minhash.update_batch(list(shingle_hashes))
    return np.asarray(minhash.hashvalues, dtype=np.uint64)


def lsh_params(
    threshold: float, num_perm: int, weights: tuple[float, float] = DATASKETCH_WEIGHTS
) -> tuple[int, int]:
    """(bands, rows) minimising the weighted (false positive, false negative) probability
    mass around `threshold`: exactly what `datasketch.MinHashLSH(weights=...)` picks."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    bands, rows = _optimal_param(threshold, num_perm, *weights)
    return int(bands), int(rows)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> list[int]:
    """One 64-bit hash per band of `rows` signature values; equal band, equal hash."""
    if bands * rows > len(sig):
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} values, got {len(sig)}")
    values = np.ascontiguousarray(sig, dtype=np.uint64)
    return [
        int.from_bytes(
            hashlib.blake2b(values[b * rows : (b + 1) * rows].tobytes(), digest_size=8).digest(),
            "little",
        )
        for b in range(bands)
    ]


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; two empty sets count as identical (1.0)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class _Components:
    """Union-find whose root is always the smallest id, so the keeper needs no pass."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.parent = {i: i for i in ids}

    def find(self, x: str) -> str:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo


def near_duplicate_clusters(
    texts: Mapping[str, str],
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    verify: bool = True,
    weights: tuple[float, float] = RECALL_WEIGHTS,
) -> dict[str, str]:
    """Every document id mapped to its cluster's keeper, the smallest id (itself if unique).

    Candidates share a band hash in at least one band (LSH, Leskovec et al., MMDS ch. 3);
    with `verify` a candidate pair counts only if the exact Jaccard of its shingle sets
    reaches `threshold`, removing LSH false positives. Clusters are connected components,
    so near-duplicate chains collapse to one keeper as in SlimPajama's `generate_connected
    _components.py`. Banding uses `lsh_params(threshold, num_perm, weights)`, recall-heavy
    by default. The result depends on the texts alone, not on their order.
    """
    bands, rows = lsh_params(threshold, num_perm, weights)
    ids = sorted(texts)
    sets = {i: shingles(texts[i], ngram) for i in ids}
    buckets: dict[tuple[int, int], list[str]] = defaultdict(list)
    for i in ids:
        for band, h in enumerate(band_hashes(signature(sets[i], num_perm), bands, rows)):
            buckets[(band, h)].append(i)

    components = _Components(ids)
    checked: set[tuple[str, str]] = set()
    for members in buckets.values():
        if len(members) < 2:
            continue
        if not verify:
            for other in members[1:]:
                components.union(members[0], other)
            continue
        for x, a in enumerate(members):
            for b in members[x + 1 :]:
                if (a, b) in checked:
                    continue
                checked.add((a, b))
                if components.find(a) != components.find(b) and (
                    jaccard(sets[a], sets[b]) >= threshold
                ):
                    components.union(a, b)
    return {i: components.find(i) for i in ids}
