"""Specifications for the MinHash near-dedup core, measured on planted duplicates of real text."""

from __future__ import annotations

import random
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from planted import base_texts, chain_of_near_duplicates, variant

from stages import minhash
from stages.minhash import (
    MinHasher,
    band_keys,
    bucket_pairs,
    jaccard,
    link,
    lsh_params,
    near_duplicate_clusters,
    normalize_for_shingles,
    shingles,
)

# ---------------------------------------------------------------- unit behaviour


def test_normalisation_lowercases_drops_punctuation_and_collapses_whitespace() -> None:
    assert normalize_for_shingles("  Hello,   World!\n\tIt's\u2014fine_now. ") == (
        "hello world itsfinenow"
    )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_formatting_only_differences_give_the_same_shingles() -> None:
    assert _same(
        shingles("The cat, sat on the MAT today!"), shingles("the  cat sat on\nthe mat today")
    )


def test_text_shorter_than_ngram_gives_one_shingle_of_all_its_words() -> None:
    assert len(shingles("three short words")) == 1
    assert _same(shingles("three short words"), shingles("Three, short words."))
    assert not _same(shingles("three short words"), shingles("three short"))
    assert len(shingles("")) == 0 and len(shingles(" ,;! ")) == 0


def test_shingles_are_distinct_sorted_64_bit_hashes_of_word_ngrams() -> None:
    grams = shingles("a b c d e f g a b c d e", ngram=5)
    assert grams.dtype == np.uint64 and len(grams) == 7  # "a b c d e" twice counts once
    assert (np.diff(grams.astype(np.float64)) > 0).all()
    assert not _same(shingles("a b c d e f"), shingles("f e d c b a"))  # order matters


def test_long_texts_are_shingled_block_by_block_with_nothing_lost_at_the_seams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(3)
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "eps,"]) for _ in range(5000))
    whole = shingles(text)
    monkeypatch.setattr(minhash, "_BLOCK_CHARS", 97)
    assert len(list(minhash.shingle_hashes(text))) > 100
    assert _same(shingles(text), whole)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_lsh_params_match_datasketch_minhashlsh(threshold: float, num_perm: int) -> None:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert lsh_params(threshold, num_perm) == (lsh.b, lsh.r)
    recall_heavy = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))
    assert lsh_params(threshold, num_perm, (0.05, 0.95)) == (recall_heavy.b, recall_heavy.r)


def test_signature_equals_datasketch_minhash_with_the_same_seed() -> None:
    grams = shingles("the quick brown fox jumps over the lazy dog again and again " * 50)
    reference = MinHash(num_perm=128, seed=7, hashfunc=lambda h: h & 0xFFFFFFFF)
    reference.update_batch(grams.tolist())
    assert _same(MinHasher(128, seed=7).signature(grams), reference.hashvalues)
    assert not _same(MinHasher(128, seed=8).signature(grams), reference.hashvalues)


def test_signature_streams_blocks_and_ignores_shingle_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grams = shingles(" ".join(f"w{i}" for i in range(20_000)))
    hasher = MinHasher(64)
    first = hasher.signature(grams)
    monkeypatch.setattr(minhash, "_BLOCK_SHINGLES", 100)
    assert _same(hasher.signature(iter([grams[::-1][:5000], grams[::-1][5000:]])), first)


def test_band_keys_are_equal_for_equal_bands_and_differ_between_bands() -> None:
    sig = MinHasher().signature(shingles("one two three four five six seven eight nine ten"))
    other = sig.copy()
    other[-1] += np.uint32(1)
    keys = band_keys(np.stack([sig, other]), 16, 8)
    assert keys.shape == (2, 16)
    assert _same(keys[0, :-1], keys[1, :-1]) and keys[0, -1] != keys[1, -1]
    same_values = np.zeros((1, 16), dtype=np.uint64)
    assert len(set(band_keys(same_values, 2, 8)[0].tolist())) == 2


def test_jaccard_of_hash_sets() -> None:
    a, b = np.array([1, 2, 3], np.uint64), np.array([2, 3, 4], np.uint64)
    assert jaccard(a, b) == 0.5
    assert jaccard(a[:0], b[:0]) == 1.0
    assert jaccard(a[:1], b[:0]) == 0.0


def test_a_large_bucket_is_linked_in_linear_pairs() -> None:
    nodes = np.arange(1000, dtype=np.int64)
    keys = np.zeros(1000, dtype=np.uint64)
    pairs, large = bucket_pairs(keys, nodes, all_pairs=True, max_bucket=64)
    assert large == 1 and len(pairs) < 2000
    components = link(pairs, {n: n for n in range(1000)}, None)
    assert set(components.clusters()) == {0} and len(components.clusters()[0]) == 1000
    small, large = bucket_pairs(keys[:10], nodes[:10], all_pairs=True, max_bucket=64)
    assert large == 0 and len(small) == 45


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def planted(shared_data: Path) -> dict[str, str]:
    """Each real document plus three edited copies of it."""
    rng = random.Random(8868)
    corpus: dict[str, str] = {}
    for base_id, text in base_texts(shared_data).items():
        corpus[f"{base_id}/0"] = text
        for v in range(1, 4):
            corpus[f"{base_id}/{v}"] = variant(text, rng)
    return corpus


@pytest.fixture(scope="module")
def exact_jaccards(planted: dict[str, str]) -> dict[tuple[str, str], float]:
    """Ground truth: exact Jaccard of every pair sharing a shingle (others are 0)."""
    sets = {i: shingles(t) for i, t in planted.items()}
    return {
        (a, b): jaccard(sets[a], sets[b])
        for a, b in combinations(sorted(sets), 2)
        if len(np.intersect1d(sets[a], sets[b], assume_unique=True))
    }


def _components(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, str]:
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = sorted((find(a), find(b)))
        parent[rb] = ra
    return {i: find(i) for i in ids}


def _pairs(clusters: dict[str, str]) -> set[tuple[str, str]]:
    members: dict[str, list[str]] = {}
    for doc, keeper in clusters.items():
        members.setdefault(keeper, []).append(doc)
    return {pair for group in members.values() for pair in combinations(sorted(group), 2)}


def _precision_recall(
    planted: dict[str, str],
    exact: dict[tuple[str, str], float],
    threshold: float,
    verify: bool,
) -> tuple[float, float]:
    """Pairwise agreement of the clusters with the components of the exact-Jaccard graph."""
    truth = _pairs(_components(sorted(planted), [p for p, j in exact.items() if j >= threshold]))
    found = _pairs(near_duplicate_clusters(planted, threshold=threshold, verify=verify))
    hits = len(truth & found)
    return hits / max(len(found), 1), hits / max(len(truth), 1)


def test_precision_and_recall_on_planted_near_duplicates(
    planted: dict[str, str], exact_jaccards: dict[tuple[str, str], float]
) -> None:
    results = {}
    for threshold in (0.7, 0.8, 0.9):
        for verify in (True, False):
            results[threshold, verify] = _precision_recall(
                planted, exact_jaccards, threshold, verify
            )
    n_true = {t: sum(j >= t for j in exact_jaccards.values()) for t in (0.7, 0.8, 0.9)}
    print(f"\n{len(planted)} documents, pairs with exact J >= t: {n_true}")
    print(f"{'threshold':>9} {'verify':>6} {'precision':>9} {'recall':>6}")
    for (threshold, verify), (precision, recall) in results.items():
        print(f"{threshold:>9} {verify!s:>6} {precision:>9.3f} {recall:>6.3f}")
    assert n_true[0.8] >= 50, "the planted corpus must hold enough true pairs to measure"
    precision, recall = results[0.8, True]
    assert precision >= 0.95 and recall >= 0.95
    assert results[0.8, False][1] >= 0.9


def test_near_duplicate_chain_collapses_to_one_keeper(shared_data: Path) -> None:
    a, b, c = chain_of_near_duplicates(shared_data)
    sa, sb, sc = shingles(a), shingles(b), shingles(c)
    assert jaccard(sa, sb) >= 0.8 and jaccard(sb, sc) >= 0.8
    assert jaccard(sa, sc) < 0.8

    assert near_duplicate_clusters({"a": a, "b": b, "c": c}) == {"a": "a", "b": "a", "c": "a"}
    assert near_duplicate_clusters({"a": a, "c": c}) == {"a": "a", "c": "c"}


def test_every_document_is_mapped_and_unique_ones_keep_themselves(
    planted: dict[str, str],
) -> None:
    clusters = near_duplicate_clusters(planted)
    assert clusters.keys() == planted.keys()
    assert all(keeper <= doc and clusters[keeper] == keeper for doc, keeper in clusters.items())
    assert near_duplicate_clusters({"x": "alone here", "y": "something else entirely"}) == {
        "x": "x",
        "y": "y",
    }


def test_clusters_are_the_same_twice_and_under_shuffled_input(planted: dict[str, str]) -> None:
    first = near_duplicate_clusters(planted)
    assert near_duplicate_clusters(planted) == first
    items = list(planted.items())
    random.Random(1).shuffle(items)
    assert near_duplicate_clusters(dict(items)) == first
