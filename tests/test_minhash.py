"""Specifications for the MinHash near-dedup core, measured on planted duplicates of real text."""

from __future__ import annotations

import math
import random
import re
from itertools import combinations
from pathlib import Path

import pytest
from datasketch import MinHashLSH

from stages.html import html_to_text
from stages.minhash import (
    band_hashes,
    jaccard,
    lsh_params,
    near_duplicate_clusters,
    normalize_for_shingles,
    shingles,
    signature,
)
from stages.wikipedia import read_wiki_dump

HEADERS = [
    "Home | About | Contact | Login",
    "Skip to main content. Menu Search",
    "Advertisement: subscribe now for unlimited access",
]
FOOTERS = [
    "Copyright 2024 Example Media Group. All rights reserved. Privacy policy. Terms of use.",
    "Share this article on Facebook Twitter LinkedIn Email Print",
    "This page was last edited on 3 March 2023 at 12:04 and is cached by a mirror site.",
]


# ---------------------------------------------------------------- unit behaviour


def test_normalisation_lowercases_drops_punctuation_and_collapses_whitespace() -> None:
    assert normalize_for_shingles("  Hello,   World!\n\tIt's\u2014fine_now. ") == (
        "hello world itsfinenow"
    )


def test_formatting_only_differences_give_the_same_shingles() -> None:
    assert shingles("The cat, sat on the MAT today!") == shingles("the  cat sat on\nthe mat today")


def test_text_shorter_than_ngram_gives_one_shingle_of_all_its_words() -> None:
    assert len(shingles("three short words")) == 1
    assert shingles("three short words") == shingles("Three, short words.")
    assert shingles("three short words") != shingles("three short")
    assert shingles("") == set()


def test_shingles_are_word_ngrams_hashed_to_8_bytes() -> None:
    grams = shingles("a b c d e f g", ngram=5)
    assert len(grams) == 3
    assert all(isinstance(g, bytes) and len(g) == 8 for g in grams)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_lsh_params_match_datasketch_minhashlsh(threshold: float, num_perm: int) -> None:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert lsh_params(threshold, num_perm) == (lsh.b, lsh.r)
    recall_heavy = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))
    assert lsh_params(threshold, num_perm, (0.05, 0.95)) == (recall_heavy.b, recall_heavy.r)


def test_signature_is_a_fixed_function_of_the_shingles() -> None:
    grams = shingles("the quick brown fox jumps over the lazy dog again and again")
    first = signature(grams)
    assert first.shape == (128,)
    assert (first == signature(set(sorted(grams, reverse=True)))).all()
    assert (first != signature(grams, seed=2)).any()


def test_band_hashes_give_one_hash_per_band_equal_for_equal_bands() -> None:
    a = signature(shingles("one two three four five six seven eight nine ten"))
    b = a.copy()
    b[-1] += 1
    ha, hb = band_hashes(a, 16, 8), band_hashes(b, 16, 8)
    assert len(ha) == 16
    assert ha[:-1] == hb[:-1] and ha[-1] != hb[-1]


def test_jaccard_of_sets() -> None:
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1}, set()) == 0.0


# ---------------------------------------------------------------- real data


def _botchan_chapters(shared_data: Path) -> list[str]:
    book = (shared_data / "books" / "botchan.txt").read_text(encoding="utf-8-sig")
    body = book.split("*** START OF")[1].split("*** END OF")[0]
    return [c for c in re.split(r"\nCHAPTER [IVXL]+\.?\n", body)[1:] if len(c.split()) > 100]


def _base_texts(shared_data: Path) -> dict[str, str]:
    """Real documents of 100 to 4,000 words: Wikipedia, Python docs pages, Botchan."""
    bases: dict[str, str] = {}
    wiki = shared_data / "wikipedia" / "enwiki-shortened.xml.bz2"
    for doc in read_wiki_dump(str(wiki)):
        if 100 <= len(doc.text.split()) <= 4000 and len(bases) < 30:
            bases[f"wiki-{doc.id}"] = doc.text
    pages = 0
    for path in sorted((shared_data / "web" / "html").glob("*.html")):
        text = html_to_text(path.read_bytes())
        if 100 <= len(text.split()) <= 4000 and pages < 30:
            bases[f"html-{path.stem}"] = text
            pages += 1
    for n, chapter in enumerate(_botchan_chapters(shared_data)):
        bases[f"botchan-{n:02d}"] = chapter
    return bases


def _edit_words(text: str, rate: float, rng: random.Random) -> str:
    """Delete, insert or replace `rate` of the words, keeping line structure.

    Edits fall in one to three contiguous runs (a rewritten passage) or, a third of the
    time, scattered word by word, which damages up to five shingles per edit.
    """
    lines = [line.split() for line in text.split("\n")]
    n_words = sum(map(len, lines))
    vocab = text.split() or ["word"]
    budget = max(1, round(rate * n_words))
    if rng.random() < 1 / 3:
        edited = set(rng.sample(range(n_words), min(budget, n_words)))
    else:
        edited = set()
        runs = rng.randint(1, 3)
        for _ in range(runs):
            start = rng.randrange(n_words)
            edited.update(range(start, min(n_words, start + budget // runs)))
    op = rng.choice(("delete", "insert", "replace"))
    out_lines, index = [], 0
    for words in lines:
        out = []
        for word in words:
            if index not in edited:
                out.append(word)
            elif op == "insert":
                out += [word, rng.choice(vocab)]
            elif op == "replace":
                out.append(rng.choice(vocab))
            index += 1
        out_lines.append(" ".join(out))
    return "\n".join(out_lines)


def _variant(text: str, rng: random.Random) -> str:
    """A planted near-duplicate: 2-30% (log-uniform) word edits, maybe reordered
    paragraphs and added boilerplate."""
    text = _edit_words(text, math.exp(rng.uniform(math.log(0.02), math.log(0.30))), rng)
    paragraphs = [p for p in text.split("\n") if p.strip()]
    if len(paragraphs) > 2 and rng.random() < 0.5:
        i, j = rng.sample(range(len(paragraphs)), 2)
        paragraphs[i], paragraphs[j] = paragraphs[j], paragraphs[i]
    if rng.random() < 0.5:
        paragraphs = [rng.choice(HEADERS), *paragraphs, rng.choice(FOOTERS)]
    return "\n".join(paragraphs)


@pytest.fixture(scope="module")
def planted(shared_data: Path) -> dict[str, str]:
    """Each real document plus three edited copies of it."""
    rng = random.Random(8868)
    corpus: dict[str, str] = {}
    for base_id, text in _base_texts(shared_data).items():
        corpus[f"{base_id}/0"] = text
        for v in range(1, 4):
            corpus[f"{base_id}/{v}"] = _variant(text, rng)
    return corpus


@pytest.fixture(scope="module")
def exact_jaccards(planted: dict[str, str]) -> dict[tuple[str, str], float]:
    """Ground truth: exact Jaccard of every pair sharing a shingle (others are 0)."""
    sets = {i: shingles(t) for i, t in planted.items()}
    return {
        (a, b): jaccard(sets[a], sets[b])
        for a, b in combinations(sorted(sets), 2)
        if not sets[a].isdisjoint(sets[b])
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
    words = " ".join(_botchan_chapters(shared_data)[0].split()[:400]).split()
    b_words = list(words)
    for k, pos in enumerate(range(20, 400, 80)):
        b_words[pos] = f"planted{k}"
    c_words = list(b_words)
    for k, pos in enumerate(range(60, 400, 80)):
        c_words[pos] = f"edited{k}"
    a, b, c = " ".join(words), " ".join(b_words), " ".join(c_words)
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
