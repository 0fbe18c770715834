"""Near-duplicate documents by MinHash LSH: the core functions, and the `minhash_dedup` stage.

Follows the LLaMA recipe as rebuilt by RedPajama / SlimPajama: normalise (lowercase, no
punctuation, collapsed whitespace), shingle into word 5-grams, MinHash with 128
permutations (datasketch's default `affine32` scheme and seed), band the signature as
`datasketch.MinHashLSH` would, optionally verify candidate pairs by exact Jaccard, and
keep one document per connected component.

Everything is vectorised over 64-bit integers: a shingle is a hash of its word hashes, a
signature is a column-wise minimum of datasketch's permutations, a band key is a hash of
a band's rows. The distributed stage and the in-process `near_duplicate_clusters` call
the same functions, so what the tests measure is what a cluster run does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property, lru_cache
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from pydantic import Field, model_validator

from pipeline.document import Document
from pipeline.stats import Stats
from stages.base import GlobalStage, Params, register_stage

# Unicode punctuation and symbols (`\w` keeps letters/digits in every script; `_` is `\w`).
_PUNCTUATION = re.compile(r"[^\w\s]|_")
# MinHashLSH's defaults: false positives and false negatives weigh the same.
DATASKETCH_WEIGHTS = (0.5, 0.5)
# Clustering favours recall: verification removes false positives, nothing restores a miss.
# (0.5, 0.5) puts the S-curve's midpoint above the threshold (P(candidate | J=0.8) = 0.40
# for 128 permutations); (0.05, 0.95) gives 0.95 at J=0.8.
RECALL_WEIGHTS = (0.05, 0.95)
# Texts are normalised and shingled this many characters at a time (cut at whitespace),
# and signatures take their minimum over this many shingles at a time, so a 100 MB book
# never holds its word list or a (shingles x permutations) matrix whole.
_BLOCK_CHARS = 1 << 20
_BLOCK_SHINGLES = 1 << 13
_WORD_CACHE_LIMIT = 1 << 20

_U64 = np.uint64
_U32 = np.uint32
_FMIX64 = (_U64(33), _U64(0xFF51AFD7ED558CCD), _U64(33), _U64(0xC4CEB9FE1A85EC53), _U64(33))
_FMIX32 = (_U32(16), _U32(0x85EBCA6B), _U32(13), _U32(0xC2B2AE35), _U32(16))


def _fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: an avalanching bijection (overflow is the modulus)."""
    return _fmix(values, _FMIX64)


def _fmix(values: np.ndarray, constants: tuple[np.integer, ...]) -> np.ndarray:
    s1, m1, s2, m2, s3 = constants
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


@lru_cache(maxsize=64)
def _odd_constants(count: int, salt: str) -> np.ndarray:
    """`count` fixed odd 64-bit multipliers, the same in every process."""
    seed = int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), "little")
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.integers(0, 1 << 63, count, dtype=_U64) * _U64(2) + _U64(1)


def normalize_for_shingles(text: str) -> str:
    """Lowercased, punctuation deleted, whitespace runs collapsed to one space.

    SlimPajama's MinHash preprocessing (`to_minhash.py`): trivial formatting differences
    must not make two copies of a page look different.
    """
    return " ".join(_PUNCTUATION.sub("", text.lower()).split())


_WORD_HASHES: dict[str, int] = {}


def _word_hashes(words: list[str]) -> np.ndarray:
    """A 64-bit BLAKE2b of every word, memoised: word frequencies are Zipfian, so almost
    every lookup hits, and hashing stays deterministic across processes (unlike `hash`)."""
    cache = _WORD_HASHES
    if len(cache) > _WORD_CACHE_LIMIT:
        cache.clear()
    values = list(map(cache.get, words))
    try:
        return np.array(values, dtype=_U64)
    except TypeError:  # words not seen before: their None does not convert
        for word in set(words).difference(cache):
            digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
            cache[word] = int.from_bytes(digest, "little")
        return np.array(list(map(cache.get, words)), dtype=_U64)


def _word_blocks(text: str) -> Iterator[list[str]]:
    """The normalised words of `text`, a block of about `_BLOCK_CHARS` characters at a time.

    Blocks end at whitespace, so no word is cut; normalisation works per character, so
    block-wise normalisation equals normalising the whole text.
    """
    start = 0
    while start < len(text):
        end = min(start + _BLOCK_CHARS, len(text))
        if end < len(text):
            space = text.rfind(" ", start, end)
            cut = max(space, text.rfind("\n", start, end))
            end = cut + 1 if cut > start else end
        words = _PUNCTUATION.sub("", text[start:end].lower()).split()
        if words:
            yield words
        start = end


def shingle_hashes(text: str, ngram: int = 5) -> Iterator[np.ndarray]:
    """64-bit hashes of the word `ngram`-grams of the normalised text, block by block.

    An n-gram's hash mixes its word hashes, each weighted by a per-position odd constant,
    so word order matters. A text of fewer than `ngram` words yields one shingle of all
    its words (as SlimPajama does), so short documents can still be deduplicated; an
    empty text yields nothing.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    weights = _odd_constants(ngram, "shingle")
    carry = np.empty(0, dtype=_U64)
    emitted = False
    for words in _word_blocks(text):
        hashes = np.concatenate([carry, _word_hashes(words)])
        count = len(hashes) - ngram + 1
        if count > 0:
            mixed = np.zeros(count, dtype=_U64)
            for position in range(ngram):
                mixed += hashes[position : position + count] * weights[position]
            yield _fmix64(mixed)
            emitted = True
        carry = hashes[-(ngram - 1) :] if ngram > 1 else hashes[:0]
    if not emitted and len(carry):
        short = np.sum(carry * weights[: len(carry)], dtype=_U64) + _U64(len(carry))
        yield _fmix64(np.array([short], dtype=_U64))


def shingles(text: str, ngram: int = 5) -> np.ndarray:
    """The shingle set of a text: its sorted, distinct n-gram hashes."""
    blocks = list(shingle_hashes(text, ngram))
    return np.unique(np.concatenate(blocks)) if blocks else np.empty(0, dtype=_U64)


class MinHasher:
    """Signatures with datasketch's default (`affine32`) permutations for a given seed.

    `MinHash(hashfunc=low 32 bits of the shingle hash).update_batch` does exactly this
    per document (MurmurHash finaliser, then `a * h + b` modulo 2**32, then a minimum per
    permutation); doing it here covers a block of shingles in one (permutations x
    shingles) matrix instead of a Python call per shingle. 32-bit values halve the
    memory traffic of the step that dominates signing. A test checks the two agree.
    """

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self.num_perm = num_perm
        self.a = np.asarray(a, dtype=_U32)[:, None]
        self.b = np.asarray(b, dtype=_U32)[:, None]

    def signature(self, blocks: Iterator[np.ndarray] | np.ndarray) -> np.ndarray:
        """The `num_perm` minimum hash values (uint32); all ones for no shingles."""
        if isinstance(blocks, np.ndarray):
            blocks = iter([blocks])
        out = np.full(self.num_perm, np.iinfo(_U32).max, dtype=_U32)
        for block in blocks:
            for start in range(0, len(block), _BLOCK_SHINGLES):
                low = (block[start : start + _BLOCK_SHINGLES] & _U64(0xFFFFFFFF)).astype(_U32)
                permuted = _fmix(low, _FMIX32)[None, :] * self.a
                permuted += self.b
                np.minimum(out, permuted.min(axis=1), out=out)
        return out

    def text_signature(self, text: str, ngram: int = 5) -> tuple[np.ndarray, bool]:
        """The signature of a text's shingles, and whether it had any."""
        blocks = shingle_hashes(text, ngram)
        first = next(blocks, None)
        if first is None:
            return np.full(self.num_perm, np.iinfo(_U32).max, dtype=_U32), False
        return self.signature(chain([first], blocks)), True


def lsh_params(
    threshold: float, num_perm: int, weights: tuple[float, float] = DATASKETCH_WEIGHTS
) -> tuple[int, int]:
    """(bands, rows) minimising the weighted (false positive, false negative) probability
    mass around `threshold`: exactly what `datasketch.MinHashLSH(weights=...)` picks."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    bands, rows = _optimal_param(threshold, num_perm, *weights)
    return int(bands), int(rows)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit bucket key per (document, band); equal band values, equal key.

    `signatures` is (documents x permutations). The band's index is mixed into its key,
    so buckets of different bands never merge.
    """
    signatures = np.atleast_2d(signatures).astype(_U64)
    if bands * rows > signatures.shape[1]:
        raise ValueError(
            f"{bands} bands x {rows} rows need {bands * rows} values, got {signatures.shape[1]}"
        )
    weights = _odd_constants(rows, "band-rows")
    salts = _odd_constants(bands, "band-index")
    keys = np.empty((signatures.shape[0], bands), dtype=_U64)
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows]
        keys[:, band] = _fmix64((block * weights).sum(axis=1, dtype=_U64) + salts[band])
    return keys


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two sorted, distinct hash arrays; two empty sets count as 1.0."""
    if not len(a) and not len(b):
        return 1.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


def bucket_pairs(
    keys: np.ndarray, nodes: np.ndarray, all_pairs: bool, max_bucket: int = 64
) -> tuple[np.ndarray, int]:
    """Candidate pairs (first, second) of the nodes that share a bucket key.

    `nodes` must be listed best keeper first within each key (the caller sorts). Without
    verification a star from the bucket's first node links the whole bucket at a cost of
    one edge per member. With verification every pair in a bucket up to `max_bucket`
    members is a candidate; a larger bucket (boilerplate shared by thousands of pages)
    gets the star plus a chain, so its cost stays linear. Returns the pairs as an
    (n x 2) array, and how many buckets were that large.
    """
    empty = np.empty((0, 2), dtype=np.int64)
    if len(keys) < 2:
        return empty, 0
    order = np.argsort(keys, kind="stable")
    keys, nodes = keys[order], nodes[order]
    boundary = np.r_[True, keys[1:] != keys[:-1]]
    starts = np.flatnonzero(boundary)
    sizes = np.diff(np.r_[starts, len(keys)])
    group = np.cumsum(boundary) - 1
    first = starts[group]
    member = (sizes[group] >= 2) & (np.arange(len(keys)) != first)
    pairs = [np.stack([nodes[first[member]], nodes[member]], axis=1)]  # the stars
    large = 0
    if all_pairs:
        for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
            if size < 3:
                continue
            members = nodes[start : start + size]
            if size <= max_bucket:
                left, right = np.triu_indices(size - 1, k=1)
                pairs.append(np.stack([members[1:][left], members[1:][right]], axis=1))
            else:
                large += 1
                pairs.append(np.stack([members[1:-1], members[2:]], axis=1))
    joined = np.concatenate(pairs)
    return (np.unique(joined, axis=0) if len(joined) else empty), large


class Components:
    """Union-find whose root is always the best node by `rank` (lowest rank wins), so the
    keeper of every component is known without a second pass."""

    def __init__(self, rank: Mapping[int, Any]) -> None:
        self.rank = rank
        self.parent: dict[int, int] = {}

    def find(self, node: int) -> int:
        parent = self.parent
        root = node
        while parent.get(root, root) != root:
            root = parent[root]
        while node != root:
            parent[node], node = root, parent[node]
        return root

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        keep, lose = (ra, rb) if self.rank[ra] <= self.rank[rb] else (rb, ra)
        self.parent[lose] = keep
        return True

    def clusters(self) -> dict[int, list[int]]:
        """Keeper -> members (keeper included) of every component with two or more nodes."""
        out: dict[int, list[int]] = {}
        for node in self.parent:
            out.setdefault(self.find(node), []).append(node)
        return {root: sorted([root, *members]) for root, members in sorted(out.items())}


def link(
    pairs: np.ndarray,
    rank: Mapping[int, Any],
    similar: Callable[[int, int], bool] | None,
    stats: Stats | None = None,
) -> Components:
    """Connected components of the candidate pairs, checking each with `similar` if given.

    A pair whose ends are already connected is not checked: it cannot change a
    component, and the components are the same whatever order the pairs come in.
    """
    components = Components(rank)
    checked = rejected = 0
    for a, b in pairs.tolist():
        if components.find(a) == components.find(b):
            continue
        if similar is not None:
            checked += 1
            if not similar(a, b):
                rejected += 1
                continue
        components.union(a, b)
    if stats is not None and similar is not None:
        stats.count("minhash_dedup:pairs_verified", checked)
        stats.count("minhash_dedup:pairs_rejected", rejected)
    return components


def near_duplicate_clusters(
    texts: Mapping[str, str],
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    verify: bool = True,
    weights: tuple[float, float] = RECALL_WEIGHTS,
) -> dict[str, str]:
    """Every document id mapped to its cluster's keeper, the smallest id (itself if unique).

    Candidates share a band key in at least one band (LSH, Leskovec et al., MMDS ch. 3);
    with `verify` a candidate pair counts only if the exact Jaccard of its shingle sets
    reaches `threshold`, removing LSH false positives. Clusters are connected components,
    so near-duplicate chains collapse to one keeper as in SlimPajama's `generate_connected
    _components.py`. Banding uses `lsh_params(threshold, num_perm, weights)`, recall-heavy
    by default. The result depends on the texts alone, not on their order.
    """
    bands, rows = lsh_params(threshold, num_perm, weights)
    ids = sorted(texts)
    hasher = MinHasher(num_perm)
    signed = [(n, *hasher.text_signature(texts[i], ngram)) for n, i in enumerate(ids)]
    nodes = np.array([n for n, _, has in signed if has], dtype=np.int64)
    if len(nodes) == 0:
        return {i: i for i in ids}
    keys = band_keys(np.stack([sig for _, sig, has in signed if has]), bands, rows)
    pairs, _ = bucket_pairs(keys.ravel(), np.repeat(nodes, bands), all_pairs=verify)
    similar = None
    if verify:
        sets: dict[int, np.ndarray] = {}

        def shingle_set(node: int) -> np.ndarray:
            if node not in sets:
                sets[node] = shingles(texts[ids[node]], ngram)
            return sets[node]

        def similar(a: int, b: int) -> bool:
            return jaccard(shingle_set(a), shingle_set(b)) >= threshold

    components = link(pairs, {n: n for n in range(len(ids))}, similar)
    return {i: ids[components.find(n)] for n, i in enumerate(ids)}


class MinHashDedupParams(Params):
    threshold: float = Field(
        0.8,
        gt=0.0,
        lt=1.0,
        description="Jaccard similarity of 5-gram sets that counts as near-duplicate.",
    )
    num_perm: int = Field(128, ge=2, le=4096, description="MinHash permutations per document.")
    bands: int | None = Field(
        None, ge=1, description="LSH bands; with `rows`, overrides the choice from `threshold`."
    )
    rows: int | None = Field(None, ge=1, description="Signature values per band (with `bands`).")
    ngram: int = Field(5, ge=1, description="Words per shingle.")
    verify: bool = Field(
        True, description="Check candidate pairs by exact Jaccard before linking them."
    )
    keeper_field: str | None = Field(
        None,
        description="Keep the document with the highest value of this meta field in each "
        "cluster (ties and missing values: the smallest id); default: the smallest id.",
    )
    seed: int = Field(1, ge=0, description="Seed of datasketch's permutations.")
    max_bucket: int = Field(
        64, ge=2, description="Buckets larger than this are linked as a star and a chain."
    )
    sample_clusters: int = Field(
        20, ge=0, description="How many of the largest clusters the report lists with ids."
    )

    @model_validator(mode="after")
    def _bands_and_rows_together(self) -> MinHashDedupParams:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both `bands` and `rows`, or neither (`threshold` picks them)")
        if (
            self.bands is not None
            and self.rows is not None
            and self.bands * self.rows > self.num_perm
        ):
            raise ValueError(
                f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}"
            )
        return self

    def banding(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return lsh_params(self.threshold, self.num_perm, RECALL_WEIGHTS)


# A document is a node: its shard in the high bits, its row in the shard in the low ones.
_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1


@register_stage
class MinHashDedup(GlobalStage):
    """Keeps one document per cluster of near-duplicates (LLaMA's book-level dedup at 0.9).

    Four phases on the engine: `keys` signs each shard and emits one bucket key per band;
    `decide` turns each key-range partition's buckets into candidate pairs; `resolve`
    verifies the pairs and joins them into clusters (memory bounded by the candidate
    pairs, not the corpus); `apply` drops every member but the keeper, and writes the
    cluster's id and size into the keeper's meta.
    """

    name = "minhash_dedup"
    Params = MinHashDedupParams
    needs_resolve = True

    @cached_property
    def hasher(self) -> MinHasher:
        return MinHasher(self.params.num_perm, self.params.seed)

    def _priority(self, doc: Document) -> float:
        field = self.params.keeper_field
        value = doc.meta.get(field) if field else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            return float(value)
        return float("-inf") if field else 0.0

    def keys(self, docs: Iterator[Document], stats: Stats) -> pa.Table:
        bands, rows_per_band = self.params.banding()
        rows, ids, priorities, signatures = [], [], [], []
        for row, doc in enumerate(docs):
            signature, has_shingles = self.hasher.text_signature(doc.text, self.params.ngram)
            if not has_shingles:
                stats.count(f"{self.name}:no_shingles")
                continue
            rows.append(row)
            ids.append(doc.id)
            priorities.append(self._priority(doc))
            signatures.append(signature)
        if not signatures:
            return _bucket_table(np.empty(0, _U64), [], [], [], 1)
        keys = band_keys(np.stack(signatures), bands, rows_per_band)
        return _bucket_table(keys.ravel(), rows, ids, priorities, bands)

    def decide(self, keys: pa.Table, stats: Stats) -> pa.Table:
        """Candidate pairs of this partition's buckets, best keeper first in each pair."""
        ordered = keys.sort_by(
            [("key", "ascending"), ("priority", "descending"), ("doc_id", "ascending")]
        )
        nodes = _nodes(ordered)
        pairs, large = bucket_pairs(
            ordered.column("key").to_numpy(), nodes, self.params.verify, self.params.max_bucket
        )
        stats.count(f"{self.name}:large_buckets", large)
        stats.count(f"{self.name}:candidate_pairs", len(pairs))
        info = _node_info(ordered, nodes)
        ends = {"a": pairs[:, 0], "b": pairs[:, 1]}
        columns: dict[str, Any] = {}
        for end, end_nodes in ends.items():
            columns[end] = pa.array(end_nodes, pa.int64())
            columns[f"{end}_id"] = pa.array([info[n][1] for n in end_nodes.tolist()], pa.string())
            columns[f"{end}_priority"] = pa.array(
                [info[n][0] for n in end_nodes.tolist()], pa.float64()
            )
        return pa.table(columns)

    def resolve(
        self,
        candidates: pa.Table,
        documents: Callable[[int], Iterator[Document]],
        stats: Stats,
    ) -> pa.Table:
        """Clusters from every partition's candidate pairs; per-shard keep/drop decisions."""
        if candidates.num_rows == 0 or "a" not in candidates.column_names:
            return _decision_table([])
        rank: dict[int, tuple[float, str]] = {}
        for end in ("a", "b"):
            for node, doc_id, priority in zip(
                candidates.column(end).to_pylist(),
                candidates.column(f"{end}_id").to_pylist(),
                candidates.column(f"{end}_priority").to_pylist(),
                strict=True,
            ):
                rank[node] = (-priority, doc_id)
        pairs = np.unique(
            np.stack(
                [candidates.column("a").to_numpy(), candidates.column("b").to_numpy()], axis=1
            ),
            axis=0,
        )
        similar = self._verifier(sorted(rank), documents) if self.params.verify else None
        components = link(pairs, rank, similar, stats)
        clusters = components.clusters()
        for members in clusters.values():
            stats.histogram(f"{self.name}:cluster_size", len(members))
        largest = sorted(clusters.items(), key=lambda kv: (-len(kv[1]), rank[kv[0]][1]))
        for keeper, members in largest[: self.params.sample_clusters]:
            stats.sample(
                f"{self.name}:largest_clusters",
                {
                    "keeper": rank[keeper][1],
                    "size": len(members),
                    "members": [rank[m][1] for m in members[:10]],
                },
            )
        return _decision_table(
            [
                (member, rank[keeper][1], len(members), member == keeper)
                for keeper, members in clusters.items()
                for member in members
            ]
        )

    def _verifier(
        self, nodes: Sequence[int], documents: Callable[[int], Iterator[Document]]
    ) -> Callable[[int, int], bool]:
        """Exact Jaccard on the shingle sets of the candidate documents, read shard by shard."""
        wanted: dict[int, set[int]] = {}
        for node in nodes:
            wanted.setdefault(node >> _ROW_BITS, set()).add(node & _ROW_MASK)
        sets: dict[int, np.ndarray] = {}
        for shard, rows in sorted(wanted.items()):
            for row, doc in enumerate(documents(shard)):
                if row in rows:
                    sets[(shard << _ROW_BITS) | row] = shingles(doc.text, self.params.ngram)
        threshold = self.params.threshold
        return lambda a, b: jaccard(sets[a], sets[b]) >= threshold

    def apply(
        self, docs: Iterator[Document], decisions: pa.Table, stats: Stats
    ) -> Iterator[Document]:
        verdicts = dict(
            zip(
                decisions.column("row").to_pylist(),
                zip(
                    decisions.column("cluster").to_pylist(),
                    decisions.column("cluster_size").to_pylist(),
                    decisions.column("keep").to_pylist(),
                    strict=True,
                ),
                strict=True,
            )
        )
        for row, doc in enumerate(docs):
            verdict = verdicts.get(row)
            if verdict is None:
                yield doc
                continue
            cluster, size, keep = verdict
            if not keep:
                stats.drop(f"{self.name}:near_duplicate")
                continue
            doc.meta["minhash_cluster"] = cluster
            doc.meta["minhash_cluster_size"] = size
            yield doc


def _bucket_table(
    keys: np.ndarray, rows: list[int], ids: list[str], priorities: list[float], bands: int
) -> pa.Table:
    """One row per (document, band); a document's attributes repeat on each of its rows."""
    per_doc = np.repeat(np.arange(len(rows)), bands)
    return pa.table(
        {
            "key": pa.array(keys, pa.uint64()),
            "row": pa.array(np.asarray(rows, dtype=np.int64)[per_doc], pa.int64()),
            "doc_id": pa.array(ids, pa.string()).take(pa.array(per_doc)),
            "priority": pa.array(np.asarray(priorities, dtype=np.float64)[per_doc]),
        }
    )


def _nodes(table: pa.Table) -> np.ndarray:
    shard = table.column("shard").to_numpy().astype(np.int64)
    return (shard << _ROW_BITS) | table.column("row").to_numpy().astype(np.int64)


def _node_info(table: pa.Table, nodes: np.ndarray) -> dict[int, tuple[float, str]]:
    """Node -> (priority, doc id)."""
    return dict(
        zip(
            nodes.tolist(),
            zip(
                table.column("priority").to_numpy().tolist(),
                table.column("doc_id").to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )


def _decision_table(verdicts: list[tuple[int, str, int, bool]]) -> pa.Table:
    """(node, cluster keeper's id, cluster size, keep) as per-shard decisions."""
    nodes = np.asarray([v[0] for v in verdicts], dtype=np.int64)
    return pa.table(
        {
            "shard": pa.array((nodes >> _ROW_BITS).astype(np.int32), pa.int32()),
            "row": pa.array(nodes & _ROW_MASK, pa.int64()),
            "cluster": pa.array([v[1] for v in verdicts], pa.string()),
            "cluster_size": pa.array([v[2] for v in verdicts], pa.int64()),
            "keep": pa.array([v[3] for v in verdicts], pa.bool_()),
        }
    )
