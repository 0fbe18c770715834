"""A near-duplicate corpus with known ground truth, for the MinHash dedup benchmark.

../shared/data holds about a million words of real prose, far from the ~40M that 200k
documents of 80-600 words take, so the originals are assembled: the real texts (Wikipedia
articles, a Gutenberg book, web pages, the UDHR, e-mails, LaTeX sources) are cut into
non-overlapping passages of whole sentences, passages that repeat earlier text are dropped,
and each original joins 4+ passages drawn from anywhere in the pool. No two originals share
more than one passage, and none is over 35% of an original, which keeps the 5-gram Jaccard
of two originals near 0.2 at most (0.195 for 500 originals against all 160k at 200k
documents; `--verify N` measures it): they are distinct.

A `duplicate_rate` share of the documents are then planted near-duplicates of an original:
exact copies, or 2-15% of the words deleted, replaced or inserted in a few spans, sometimes
with a header or footer line, as boilerplate changes between copies of a page on the web.
Scattered single-word edits would break up to five shingles each (15% of them leaves a
Jaccard near 0.3, which no MinHash dedup is meant to find), hence the spans; the exact
5-gram Jaccard of every duplicate with its original is recorded.

    python benchmarks/minhash_corpus.py OUT_DIR [--documents 200000] [--verify 300]

Writes OUT_DIR/corpus-XXXXX.jsonl ({"id", "text"}) and OUT_DIR/truth.json; `score_removals`
scores a dedup's removed ids against that truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (which inspect,
# linecache and traceback import) for every script run from this folder: the folder leaves
# the import path before anything else is imported, and siblings import as `benchmarks.*`.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks")]

import argparse  # noqa: E402
import bisect  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable, Iterator, Mapping  # noqa: E402

from benchmarks.ccnet import email_body  # noqa: E402
from stages.books import strip_gutenberg  # noqa: E402
from stages.html import html_to_text  # noqa: E402
from stages.wikipedia import read_wiki_dump  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
NGRAM = 5
DOCUMENT_WORDS = (80, 600)  # an original's length, drawn log-uniformly
PASSAGE_WORDS = (15, 160)  # a passage's length in the pool, drawn log-uniformly
MIN_PASSAGES = 4  # per original, each a different stretch of real text
PASSAGE_SLACK = 0.5  # a passage may be this much shorter or longer than wanted at first
MAX_PASSAGE_SHARE = 0.35  # of an original's words, for its longest passage
NOVELTY = 0.8  # a passage enters the pool only if this share of its 5-grams is new
MAX_MEAN_WORD = 15.0  # characters; longer "words" are unsegmented scripts (Chinese, Thai)
EDIT_SHARE = (0.02, 0.15)  # of an edited duplicate's words
EXACT_SHARE = 0.1  # of duplicates
BOILERPLATE_SHARE = 0.3  # of edited duplicates: a header or footer line
NEW_CLUSTER_SHARE = 0.75  # a duplicate starts a new cluster, else joins an existing one
JACCARD_BANDS = (0.6, 0.7, 0.8, 0.9)  # lower edges of the bands recall is reported in

_PUNCTUATION = re.compile(r"[^\w\s]|_")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"\S+\s*")


# --- 5-gram Jaccard ----------------------------------------------------------------------


def word_ngrams(text: str, n: int = NGRAM) -> set[str]:
    """Word n-grams of the text lowercased, punctuation deleted, as stages/minhash.py
    shingles it: the Jaccard the dedup is meant to estimate."""
    words = _PUNCTUATION.sub("", text.lower()).split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# --- real text ---------------------------------------------------------------------------


def _latex_prose(source: str) -> str:
    """LaTeX with its comment lines dropped: the rest (markup included) is what a crawl of
    arXiv sources sees."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))


def real_texts(shared_data: Path) -> list[tuple[str, str]]:
    """(kind, text) of every prose document in the sample data, in a fixed order."""
    if not shared_data.is_dir():
        sys.exit(f"no sample data under {shared_data}: clone llamix beside ../shared")
    texts: list[tuple[str, str]] = []
    for dump in sorted(shared_data.glob("wikipedia/*.xml.bz2")):
        texts += [("wikipedia", doc.text) for doc in read_wiki_dump(str(dump))]
    for book in sorted(shared_data.glob("books/*.txt")):
        texts.append(("book", strip_gutenberg(book.read_text(encoding="utf-8"))))
    for kind, pattern in (("web", "web/html/*.html"), ("udhr", "multilingual/udhr/*.html")):
        texts += [(kind, html_to_text(p.read_bytes())) for p in sorted(shared_data.glob(pattern))]
    mails = sorted(shared_data.glob("web/email/*/*"))
    texts += [("email", email_body(p.read_bytes())) for p in mails]
    for tex in sorted(shared_data.glob("latex/*/*.tex")):
        texts.append(("latex", _latex_prose(tex.read_text(encoding="utf-8", errors="replace"))))
    return [(kind, text) for kind, text in texts if text.strip()]


# --- the passage pool --------------------------------------------------------------------


def _sentences(text: str) -> Iterator[str]:
    """Sentences with the separator that followed them (a line break or a space), so that
    passages keep the text's line structure; over-long "sentences" (tables, lists without
    stops) are cut every PASSAGE_WORDS[1] words."""
    for line in text.splitlines():
        parts = [part for part in _SENTENCE_END.split(line.strip()) if part]
        for i, sentence in enumerate(parts):
            end = "\n" if i == len(parts) - 1 else " "
            words = sentence.split()
            step = PASSAGE_WORDS[1]
            for start in range(0, len(words), step):
                piece = " ".join(words[start : start + step])
                yield piece + (end if start + step >= len(words) else " ")


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def passage_pool(texts: list[tuple[str, str]], rng: random.Random) -> list[str]:
    """Non-overlapping runs of whole sentences, each of a length drawn from PASSAGE_WORDS.

    A passage whose 5-grams are mostly in the pool already (spam sent twice, quoted mail,
    navigation text shared by web pages) is dropped: two originals holding copies of it
    would be near-duplicates nobody planted.
    """
    seen: set[str] = set()
    pool: list[str] = []

    def admit(sentences: list[str]) -> None:
        text = "".join(sentences).strip()
        words = text.split()
        if sum(map(len, words)) > MAX_MEAN_WORD * len(words):
            return
        grams = word_ngrams(text)
        if not grams or len(grams - seen) < NOVELTY * len(grams):
            return
        seen.update(grams)
        pool.append(text)

    for _, text in texts:
        current: list[str] = []
        words, wanted = 0, _log_uniform(rng, *PASSAGE_WORDS)
        for sentence in _sentences(text):
            current.append(sentence)
            words += len(sentence.split())
            if words >= wanted:
                admit(current)
                current, words, wanted = [], 0, _log_uniform(rng, *PASSAGE_WORDS)
        if words >= PASSAGE_WORDS[0]:
            admit(current)
    return pool


# --- originals ---------------------------------------------------------------------------


def compose_originals(pool: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` documents of MIN_PASSAGES+ passages each, no two sharing more than one.

    A document of T words in m passages takes passages of about T/m words, drawn from the
    whole pool, so sources and topics mix; none longer than MAX_PASSAGE_SHARE * T, so one
    shared passage keeps two documents' Jaccard near 0.2 at most. A passage that already
    sits in a document with one of this document's passages is redrawn; where that keeps
    happening (lengths in demand), the band of lengths drawn from widens.
    """
    order = sorted(range(len(pool)), key=lambda i: len(pool[i].split()))
    lengths = [len(pool[i].split()) for i in order]
    holders: list[list[int]] = [[] for _ in pool]  # passage -> documents holding it
    documents: list[str] = []
    for doc in range(count):
        target = _log_uniform(rng, *DOCUMENT_WORDS)
        size = target / rng.randint(MIN_PASSAGES, MIN_PASSAGES + 2)
        cap = bisect.bisect_right(lengths, MAX_PASSAGE_SHARE * target)
        low = min(bisect.bisect_left(lengths, size * (1 - PASSAGE_SLACK)), cap - 1)
        high = min(bisect.bisect_right(lengths, size * (1 + PASSAGE_SLACK)), cap)
        chosen: list[int] = []
        neighbours: set[int] = set()
        words, rejected = 0, 0
        while words < target or len(chosen) < MIN_PASSAGES:
            passage = order[rng.randrange(low, high)]
            if passage in chosen or neighbours.intersection(holders[passage]):
                rejected += 1
                if rejected % 50 == 0:
                    if low == 0 and high == cap and rejected > 20 * len(pool):
                        raise RuntimeError(
                            f"cannot compose original {doc}: the passage pool ({len(pool)}) "
                            "is too small for this many documents; lower `documents`"
                        )
                    width = high - low
                    low, high = max(0, low - width), min(cap, high + width // 2)
                continue
            chosen.append(passage)
            neighbours.update(holders[passage])
            words += len(pool[passage].split())
        for passage in chosen:
            holders[passage].append(doc)
        documents.append("\n\n".join(pool[p] for p in chosen))
    return documents


# --- planted duplicates ------------------------------------------------------------------

_HEADERS = (
    "Posted on {date} by {name}",
    "Last updated: {date}",
    "{site} | {word} {word2}",
    "From: {name} <{word}@{site}>",
)
_FOOTERS = (
    "Share this: Facebook Twitter Email",
    "Copyright © {year} {site}. All rights reserved.",
    "Originally published at https://{site}/{word}-{word2}",
    "Comments are closed.",
    "Read more from {name} at {site}",
)


def _boilerplate(rng: random.Random, vocabulary: list[str], templates: tuple[str, ...]) -> str:
    def word() -> str:
        return _PUNCTUATION.sub("", rng.choice(vocabulary)).lower() or "news"

    return rng.choice(templates).format(
        date=f"{rng.randint(2005, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        year=rng.randint(2005, 2024),
        name=f"{word().title()} {word().title()}",
        site=f"{word()}.{rng.choice(('com', 'org', 'net', 'co.uk'))}",
        word=word(),
        word2=word(),
    )


def near_duplicate(text: str, rng: random.Random, vocabulary: list[str]) -> tuple[str, str]:
    """A planted near-duplicate of `text` and how it was made (`exact`, or `edit N% in K
    spans` plus `+header`/`+footer`): spans of words deleted, replaced by or preceded by
    real words from `vocabulary`, whitespace kept."""
    if rng.random() < EXACT_SHARE:
        return text, "exact"
    tokens = _TOKEN.findall(text)
    words = len(tokens)
    share = EDIT_SHARE[0] + (EDIT_SHARE[1] - EDIT_SHARE[0]) * rng.random() ** 2
    edits = max(1, round(share * words))
    spans = rng.randint(1, max(1, min(4, edits // 3)))
    cuts = sorted(rng.sample(range(1, edits), spans - 1)) if spans > 1 else []
    lengths = [b - a for a, b in zip([0, *cuts], [*cuts, edits], strict=True)]
    # Back to front, so earlier positions stay valid.
    starts = sorted((rng.randrange(len(tokens)) for _ in lengths), reverse=True)
    for start, length in zip(starts, lengths, strict=True):
        operation = rng.choice(("delete", "replace", "insert"))
        end = min(start + length, len(tokens))
        fresh = [rng.choice(vocabulary) + " " for _ in range(length)]
        if operation == "delete":
            del tokens[start:end]
        elif operation == "replace":
            tokens[start:end] = fresh[: end - start]
        else:
            tokens[start:start] = fresh
    how = f"edit {round(100 * edits / words)}% in {spans} spans"
    text = "".join(tokens).strip()
    if rng.random() < BOILERPLATE_SHARE:
        if rng.random() < 0.5:
            text = _boilerplate(rng, vocabulary, _HEADERS) + "\n\n" + text
            how += " +header"
        else:
            text = text + "\n\n" + _boilerplate(rng, vocabulary, _FOOTERS)
            how += " +footer"
    return text, how


# --- the corpus --------------------------------------------------------------------------


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        f"p{q:02d}": round(ordered[min(len(ordered) - 1, len(ordered) * q // 100)], 4)
        for q in (1, 5, 10, 25, 50, 75, 90)
    }


def build_corpus(
    shared_data: Path,
    out_dir: Path,
    documents: int = 200_000,
    duplicate_rate: float = 0.2,
    shards: int = 8,
    seed: int = 0,
) -> dict:
    """Writes `out_dir/corpus-XXXXX.jsonl` ({"id", "text"}) and `out_dir/truth.json`, and
    returns the summary written there.

    `truth` maps every planted duplicate's id to its original's; `jaccard` holds their
    exact 5-gram Jaccard and `edits` how each was made. A cluster of an original and k
    duplicates should lose exactly k documents. Ids (`doc-0000123`) are a random permutation
    independent of file order, and duplicates land in any shard. Same seed, same corpus.
    """
    if not 0 <= duplicate_rate < 1:
        raise ValueError(f"duplicate_rate must be in [0, 1), got {duplicate_rate}")
    start = time.perf_counter()
    rng = random.Random(seed)
    texts = real_texts(shared_data)
    pool = passage_pool(texts, rng)
    vocabulary = [word for passage in pool[::7] for word in passage.split()]

    planted = round(documents * duplicate_rate)
    originals = compose_originals(pool, documents - planted, rng)
    fresh = list(range(len(originals)))
    rng.shuffle(fresh)
    sources: list[int] = []  # the original of each duplicate
    for _ in range(planted):
        if not sources or (fresh and rng.random() < NEW_CLUSTER_SHARE):
            sources.append(fresh.pop())
        else:
            sources.append(rng.choice(sources))
    duplicates = [near_duplicate(originals[source], rng, vocabulary) for source in sources]

    bodies = originals + [text for text, _ in duplicates]
    ids = [f"doc-{n:07d}" for n in rng.sample(range(len(bodies)), len(bodies))]
    truth: dict[str, str] = {}
    similarity: dict[str, float] = {}
    edits: dict[str, str] = {}
    grams: dict[int, set[str]] = {}
    for offset, (source, (text, how)) in enumerate(zip(sources, duplicates, strict=True)):
        dup_id = ids[len(originals) + offset]
        if source not in grams:
            grams[source] = word_ngrams(originals[source])
        truth[dup_id] = ids[source]
        similarity[dup_id] = round(jaccard(word_ngrams(text), grams[source]), 4)
        edits[dup_id] = how

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("corpus-*.jsonl"):
        stale.unlink()
    order = rng.sample(range(len(bodies)), len(bodies))
    size = 0
    per_shard = -(-len(order) // shards)
    for shard in range(shards):
        with open(out_dir / f"corpus-{shard:05d}.jsonl", "w", encoding="utf-8") as out:
            for index in order[shard * per_shard : (shard + 1) * per_shard]:
                record = {"id": ids[index], "text": bodies[index]}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                size += len(bodies[index].encode("utf-8"))

    values = list(similarity.values())
    words = [len(text.split()) for text in originals]
    summary = {
        "documents": len(bodies),
        "bytes": size,
        "shards": shards,
        "seed": seed,
        "originals": len(originals),
        "planted_duplicates": planted,
        "duplicate_rate": planted / len(bodies) if bodies else 0.0,
        "clusters": len(set(sources)),
        "exact_copies": sum(how == "exact" for how in edits.values()),
        "jaccard_at_least_0.8": sum(v >= 0.8 for v in values) / len(values) if values else 0.0,
        "jaccard_quantiles": _quantiles(values),
        "original_words": {"min": min(words), "mean": sum(words) / len(words), "max": max(words)},
        "pool": {
            "real_texts": len(texts),
            "passages": len(pool),
            "words": sum(len(passage.split()) for passage in pool),
        },
        "seconds": round(time.perf_counter() - start, 2),
        "truth": truth,
        "jaccard": similarity,
        "edits": edits,
    }
    (out_dir / "truth.json").write_text(json.dumps(summary) + "\n", encoding="utf-8")
    return summary


# --- scoring a dedup against the truth ---------------------------------------------------


def score_removals(
    removed: Iterable[str], truth: Mapping[str, str], jaccard: Mapping[str, float]
) -> dict:
    """Precision and recall of a dedup's removed ids, counted per cluster.

    A cluster (an original and its k planted duplicates) should lose exactly k documents,
    whichever of them stays: up to k removals in it are right, any beyond that (the whole
    cluster gone) and any removal outside clusters are false positives. Recall by Jaccard
    band uses the clusters of one duplicate, where "found" is unambiguous.
    """
    removed = set(removed)
    clusters: dict[str, list[str]] = {}
    for duplicate, original in truth.items():
        clusters.setdefault(original, []).append(duplicate)
    correct = 0
    over_removed = 0
    for original, duplicates in clusters.items():
        lost = sum(doc in removed for doc in [original, *duplicates])
        correct += min(lost, len(duplicates))
        over_removed += max(0, lost - len(duplicates))
    members = set(truth) | set(clusters)
    outside = len(removed - members)
    bands: dict[str, list[int]] = {}
    for original, duplicates in clusters.items():
        if len(duplicates) == 1:
            found = original in removed or duplicates[0] in removed
            similarity = jaccard[duplicates[0]]
            edges = [edge for edge in JACCARD_BANDS if similarity >= edge]
            band = f">={edges[-1]}" if edges else f"<{JACCARD_BANDS[0]}"
            bands.setdefault(band, [0, 0])[0] += found
            bands[band][1] += 1
    return {
        "removed": len(removed),
        "planted": len(truth),
        "correct": correct,
        "false_positives": outside + over_removed,
        "precision": correct / len(removed) if removed else 1.0,
        "recall": correct / len(truth) if truth else 1.0,
        "recall_by_jaccard": {
            band: {"found": found, "pairs": pairs, "recall": found / pairs}
            for band, (found, pairs) in sorted(bands.items())
        },
    }


# --- checking that originals are distinct ------------------------------------------------


def original_overlap(out_dir: Path, sample: int = 300, seed: int = 0) -> dict[str, float]:
    """Exact 5-gram Jaccard of `sample` random originals with their closest other original
    in the whole corpus (an inverted index of the sample's 5-grams, scanned by every other
    original): the claim that originals are not near-duplicates of one another, checked."""
    truth = json.loads((out_dir / "truth.json").read_text(encoding="utf-8"))["truth"]
    texts: dict[str, str] = {}
    for shard in sorted(out_dir.glob("corpus-*.jsonl")):
        with open(shard, encoding="utf-8") as lines:
            for record in map(json.loads, lines):
                if record["id"] not in truth:
                    texts[record["id"]] = record["text"]
    ids = sorted(texts)
    chosen = random.Random(seed).sample(ids, min(sample, len(ids)))
    sets = {doc_id: word_ngrams(texts[doc_id]) for doc_id in chosen}
    index: dict[str, list[str]] = {}
    for doc_id, grams in sets.items():
        for gram in grams:
            index.setdefault(gram, []).append(doc_id)
    best = dict.fromkeys(chosen, 0.0)
    for other in ids:
        other_grams = word_ngrams(texts[other])
        shared: dict[str, int] = {}
        for gram in other_grams:
            for doc_id in index.get(gram, ()):
                shared[doc_id] = shared.get(doc_id, 0) + 1
        for doc_id, common in shared.items():
            if doc_id != other:
                union = len(sets[doc_id]) + len(other_grams) - common
                best[doc_id] = max(best[doc_id], common / union)
    values = sorted(best.values())
    return {
        "sampled": len(values),
        "max": values[-1],
        "p99": values[len(values) * 99 // 100],
        "median": values[len(values) // 2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--duplicate-rate", type=float, default=0.2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared-data", type=Path, default=SHARED)
    parser.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="also check N random originals against every other original (exact Jaccard)",
    )
    args = parser.parse_args()
    summary = build_corpus(
        args.shared_data, args.out_dir, args.documents, args.duplicate_rate, args.shards, args.seed
    )
    shown = {k: v for k, v in summary.items() if k not in ("truth", "jaccard", "edits")}
    if args.verify:
        shown["original_overlap"] = original_overlap(args.out_dir, args.verify, args.seed)
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
