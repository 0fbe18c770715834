"""Quality filters for web text: C4's heuristics and LLaMA's Wikipedia-reference classifier.

- `c4_filters`: the line and page rules that built C4 (Raffel et al. 2020, section 2.2),
  with the thresholds of the reference implementation, TensorFlow Datasets'
  `tensorflow_datasets/text/c4_utils.py` (`clean_page`). LLaMA used C4 as one source.
- `wiki_reference_classifier`: LLaMA's CommonCrawl quality filter (Touvron et al. 2023,
  section 2): a linear classifier of pages used as references in Wikipedia vs randomly
  sampled pages, discarding pages not classified as references. Trained by
  `llamix classifier train`; the stage keeps p(reference) >= 0.25 by default, the
  threshold RedPajama's reproduction of this filter used.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.document import Document
from pipeline.stats import Stats
from stages.base import ManifestPath, Params, Stage, register_command, register_stage
from stages.corpus import read_corpus

# ---------------------------------------------------------------------------------------
# C4

POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)  # TFDS _POLICY_SUBSTRINGS
ELLIPSIS = "..."
_POLICY = re.compile("|".join(re.escape(s) for s in POLICY_SUBSTRINGS))
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")  # TFDS citation_regex
# A sentence ends at a run of end marks (and closing quotes or brackets) followed by
# space and a word that does not start in lower case: "e.g. this" is one sentence.
_SENTENCE_BREAK = re.compile(r"[.!?]+[\"'”’)\]]*\s+(?![a-z])")


class C4FiltersParams(Params):
    """TFDS `c4_utils.py` defaults unless said otherwise; each rule has an off switch."""

    end_marks: tuple[str, ...] = Field(
        (".", "?", "!", '"', "'", "”", "’"),
        description="Keep only lines ending in one of these (and not in '...'). TFDS: "
        '. ? ! " only; the straight single quote (as datatrove) and the typographic closing '
        "quotes are added for modern pages. Empty: off.",
    )
    min_words_per_line: int = Field(
        5, ge=0, description="Remove lines with fewer words (TFDS _MIN_WORDS_PER_LINE; 0: off)."
    )
    max_word_length: int | None = Field(
        1000,
        gt=0,
        description="Remove lines with a longer word (TFDS _MAX_WORD_LENGTH; null: off).",
    )
    min_sentences: int = Field(
        3,
        ge=0,
        description="Drop pages with fewer sentences left (TFDS _MIN_NUM_SENTENCES; 0: off).",
    )
    remove_citations: bool = Field(
        True, description='Strip "[1]", "[edit]", "[citation needed]" from lines (TFDS).'
    )
    filter_javascript: bool = Field(True, description='Remove lines containing "javascript".')
    filter_policy: bool = Field(
        True, description='Remove lines with policy text ("terms of use", "uses cookies"...).'
    )
    filter_lorem_ipsum: bool = Field(True, description='Drop pages containing "lorem ipsum".')
    filter_curly_bracket: bool = Field(True, description='Drop pages containing "{" (likely code).')


@dataclass(frozen=True)
class C4Verdict:
    """What the C4 rules made of one page."""

    text: str | None  # the kept lines, "\n"-joined; None when the page is dropped
    reason: str | None  # why the page is dropped: lorem_ipsum, curly_bracket, ...
    lines: Counter[str] = field(default_factory=Counter)  # "kept" or the removing rule
    citations: int = 0  # citation markers stripped from kept or examined lines


def count_sentences(line: str) -> int:
    """Sentences in a line, by end marks. TFDS counts with NLTK's punkt, which llamix
    does not ship; this differs on abbreviations followed by a capital ("Mr. Smith")."""
    return 1 + len(_SENTENCE_BREAK.findall(line))


def clean_c4_page(text: str, params: C4FiltersParams | None = None) -> C4Verdict:
    """TFDS `clean_page`, rule for rule and in its order, per stripped line:

    1. a word longer than `max_word_length`: line removed (`too_long_word`);
    2. citation markers stripped;
    3. no end mark, or ends in "...": line removed (`no_terminal_punct`);
    4. fewer than `min_words_per_line` words: line removed (`too_few_words`);
    5. "lorem ipsum": page dropped (`lorem_ipsum`);
    6. "javascript": line removed (`javascript`);
    7. "{": page dropped (`curly_bracket`);
    8. policy text: line removed (`policy`).

    Rules 5-8 see only lines that survived 1-4, as in TFDS: a "{" on a code line without
    an end mark removes the line, not the page. Then a page with fewer than
    `min_sentences` sentences in its kept lines is dropped (`too_few_sentences`).
    Not here: C4's bad-words page filter, its English-only langdetect filter (see
    `langid`) and its three-sentence-span dedup.
    """
    p = params if params is not None else C4FiltersParams()
    lines: Counter[str] = Counter()
    kept: list[str] = []
    citations = 0
    sentences = 0
    for raw in text.splitlines():
        line = raw.strip()
        if (
            p.max_word_length is not None
            and len(line) > p.max_word_length
            and max(map(len, line.split())) > p.max_word_length
        ):
            lines["too_long_word"] += 1
            continue
        if p.remove_citations and "[" in line:
            line, stripped = _CITATION.subn("", line)
            citations += stripped
        if p.end_marks and (not line.endswith(p.end_marks) or line.endswith(ELLIPSIS)):
            lines["no_terminal_punct"] += 1
            continue
        if p.min_words_per_line and len(line.split()) < p.min_words_per_line:
            lines["too_few_words"] += 1
            continue
        lower = line.lower()
        if p.filter_lorem_ipsum and "lorem ipsum" in lower:
            return C4Verdict(None, "lorem_ipsum", lines, citations)
        if p.filter_javascript and "javascript" in lower:
            lines["javascript"] += 1
            continue
        if p.filter_curly_bracket and "{" in line:
            return C4Verdict(None, "curly_bracket", lines, citations)
        if p.filter_policy and _POLICY.search(lower):
            lines["policy"] += 1
            continue
        if p.min_sentences:
            sentences += count_sentences(line)
        kept.append(line)
        lines["kept"] += 1
    if sentences < p.min_sentences:
        return C4Verdict(None, "too_few_sentences", lines, citations)
    joined = "\n".join(kept).strip()
    return C4Verdict(joined, None if joined else "empty", lines, citations)


@register_stage
class C4Filters(Stage):
    """C4's heuristics (Raffel et al. 2020, section 2.2; TFDS `c4_utils.clean_page`).

    Both edits and drops, as C4 did: it removes lines (counted per rule as
    `c4_filters:lines_removed_<rule>`, kept ones as `c4_filters:lines_kept`) and drops
    whole pages (`c4_filters:lorem_ipsum`, `c4_filters:curly_bracket`,
    `c4_filters:too_few_sentences`, and `c4_filters:empty` when nothing is left with the
    sentence rule off). See `clean_c4_page` for the rules.
    """

    name = "c4_filters"
    Params = C4FiltersParams

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        for doc in docs:
            verdict = clean_c4_page(doc.text, self.params)
            for outcome, count in verdict.lines.items():
                rule = "lines_kept" if outcome == "kept" else f"lines_removed_{outcome}"
                stats.count(f"{self.name}:{rule}", count)
            if verdict.citations:
                stats.count(f"{self.name}:citations_removed", verdict.citations)
            if verdict.text is None or verdict.reason is not None:
                stats.drop(f"{self.name}:{verdict.reason}")
                continue
            if verdict.text != doc.text:
                stats.count(f"{self.name}:documents_edited")
            yield Document(doc.id, verdict.text, doc.source, doc.meta)


# ---------------------------------------------------------------------------------------
# Wikipedia-reference classifier

# The labels of RedPajama's released classifier, so either model works with the stage.
REFERENCE_LABEL = "__label__wiki"
RANDOM_LABEL = "__label__cc"
SCORE_BUCKETS = 20  # the `wiki_reference_score` histogram's buckets are 0.05 wide


def classifier_text(text: str) -> str:
    """What fastText sees, in training and scoring alike: lowercased, newlines made
    spaces, every whitespace run collapsed to one space (fastText splits words on spaces
    and reads one line per example)."""
    return " ".join(text.lower().split())


def reference_scores(model: Any, texts: Sequence[str]) -> list[float]:
    """p(reference) of each text, in one fastText call; 0.0 for a text with no words."""
    prepared = [classifier_text(text) for text in texts]
    scores = [0.0] * len(texts)
    indices = [i for i, text in enumerate(prepared) if text]
    if not indices:
        return scores
    # List predict only: fastText 0.9.3's single-string predict fails under NumPy 2.
    labels, probs = model.predict([prepared[i] for i in indices], k=-1)
    for i, names, values in zip(indices, labels, probs, strict=True):
        by_label = dict(zip(names, (float(v) for v in values), strict=True))
        scores[i] = min(max(by_label.get(REFERENCE_LABEL, 0.0), 0.0), 1.0)
    return scores


def _score_bucket(score: float) -> str:
    index = min(math.floor(score * SCORE_BUCKETS + 1e-9), SCORE_BUCKETS - 1)
    return f"{index / SCORE_BUCKETS:.2f}"


class WikiReferenceParams(Params):
    model: ManifestPath = Field(
        description="fastText model from `llamix classifier train` (labels __label__wiki "
        "and __label__cc, as RedPajama's)."
    )
    threshold: float = Field(
        0.25, ge=0, le=1, description="Keep documents with p(reference) >= this (RedPajama)."
    )
    batch_size: int = Field(256, gt=0, description="Documents per fastText predict call.")


def load_reference_model(path: str) -> Any:
    model_path = Path(path).expanduser()
    if not model_path.is_file():
        raise FileNotFoundError(
            f"wiki reference model not found at {model_path}: set "
            "wiki_reference_classifier.model to a model from `llamix classifier train`"
        )
    import fasttext

    model = fasttext.load_model(str(model_path))
    if REFERENCE_LABEL not in model.get_labels():
        raise ValueError(
            f"{model_path} has labels {model.get_labels()}, not {REFERENCE_LABEL}: train it "
            "with `llamix classifier train`"
        )
    return model


@register_stage
class WikiReferenceClassifier(Stage):
    """Keeps pages that look like Wikipedia references (LLaMA section 2, CommonCrawl).

    Meta: `wiki_reference_score` = p(reference). Drops `wiki_reference_classifier:
    below_threshold`. Histogram `wiki_reference_score` in 0.05 buckets, of every
    document seen, with the threshold marked.
    """

    name = "wiki_reference_classifier"
    Params = WikiReferenceParams

    def __init__(self, params: WikiReferenceParams | None = None) -> None:
        super().__init__(params)
        self._model: Any = None

    def setup(self) -> None:
        self._model = load_reference_model(self.params.model)

    def __getstate__(self) -> dict[str, Any]:
        # A fastText model is a C++ object: it is loaded in each worker, never shipped.
        return {**self.__dict__, "_model": None}

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        if self._model is None:
            self.setup()
        threshold = self.params.threshold
        stats.mark("wiki_reference_score", "threshold", threshold)
        while batch := list(islice(docs, self.params.batch_size)):
            scores = reference_scores(self._model, [doc.text for doc in batch])
            for doc, score in zip(batch, scores, strict=True):
                stats.histogram("wiki_reference_score", _score_bucket(score))
                if score < threshold:
                    stats.drop(f"{self.name}:below_threshold")
                    continue
                meta = {**doc.meta, "wiki_reference_score": round(score, 4)}
                yield Document(doc.id, doc.text, doc.source, meta)


class ClassifierTraining(Params):
    """fastText hyper-parameters: a linear model over words and bigrams with 10 hidden
    units, as in fastText's classification paper (Joulin et al. 2017); epoch and lr are
    fastText's supervised defaults. One thread, so a seed gives the same model bytes."""

    epoch: int = Field(5, gt=0, description="Passes over the training examples.")
    lr: float = Field(0.1, gt=0, description="Learning rate.")
    word_ngrams: int = Field(2, ge=1, description="Longest word n-gram used as a feature.")
    dim: int = Field(10, gt=0, description="Size of the hidden layer.")
    bucket: int = Field(
        2_000_000, gt=0, description="Hash buckets of n-grams; the model is ~4*dim*bucket bytes."
    )
    min_count: int = Field(1, gt=0, description="Ignore words seen fewer times.")
    seed: int = Field(0, ge=0, description="Seeds the sampling, the shuffle and fastText.")
    max_per_class: int | None = Field(
        None, gt=0, description="Examples per class at most; null: as many as both classes have."
    )


def balanced_examples(
    positives: Iterable[str], negatives: Iterable[str], seed: int, max_per_class: int | None
) -> tuple[list[str], dict[str, int]]:
    """fastText training lines, as many references as random pages, shuffled.

    The negatives are a uniform sample of their whole stream (reservoir sampling), so
    crawl shards need not fit in memory; texts with no words are skipped. Returns the
    lines and the counts read and used per class.
    """
    rng = random.Random(seed)
    pos = [t for t in map(classifier_text, positives) if t]
    cap = len(pos) if max_per_class is None else min(len(pos), max_per_class)
    neg, seen = _reservoir((t for t in map(classifier_text, negatives) if t), cap, rng)
    n = min(len(pos), len(neg))
    chosen_pos = rng.sample(pos, n) if len(pos) > n else pos
    chosen_neg = rng.sample(neg, n) if len(neg) > n else neg
    lines = [f"{REFERENCE_LABEL} {t}" for t in chosen_pos]
    lines += [f"{RANDOM_LABEL} {t}" for t in chosen_neg]
    rng.shuffle(lines)
    counts = {"positives_read": len(pos), "negatives_read": seen, "per_class": n}
    return lines, counts


def _reservoir(items: Iterable[str], size: int, rng: random.Random) -> tuple[list[str], int]:
    """Algorithm R: a uniform sample of `size` items of a stream, and the stream's length."""
    sample: list[str] = []
    seen = 0
    for seen, item in enumerate(items, start=1):
        if len(sample) < size:
            sample.append(item)
        else:
            slot = rng.randrange(seen)
            if slot < size:
                sample[slot] = item
    return sample, seen


M_PERTURB = -6  # glibc mallopt(): fill each allocation with the complement of this byte


@contextmanager
def _zeroed_allocations() -> Iterator[None]:
    """Makes fastText 0.9.3's training deterministic, and stops its random "Encountered NaN".

    Its `DenseMatrix::uniform` initialises only the first tenth of the input matrix when
    thread < 10, and 0.9.3 allocates that matrix uninitialised (`AlignedVector`), so the
    other nine tenths are whatever the allocator hands back: stale floats, sometimes NaN.
    glibc's M_PERTURB=0xFF fills every allocation with zeros, the contents 0.9.2's
    `std::vector` gave those rows. Elsewhere a no-op (large allocations come zeroed from
    mmap there).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        yield
        return
    mallopt(M_PERTURB, 0xFF)
    try:
        yield
    finally:
        mallopt(M_PERTURB, 0)


def train_reference_classifier(
    positives: Iterable[str], negatives: Iterable[str], out_path: str | Path, **hyper: Any
) -> Path:
    """Trains the reference-vs-random classifier and writes it to `out_path`.

    `hyper` are `ClassifierTraining` fields. The hyper-parameters, example counts and the
    model's sha256 go to `<out_path>.json` beside it.
    """
    import fasttext

    params = ClassifierTraining(**hyper)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines, counts = balanced_examples(positives, negatives, params.seed, params.max_per_class)
    if counts["per_class"] == 0:
        raise ValueError(
            f"cannot train: {counts['positives_read']} reference and "
            f"{counts['negatives_read']} random documents with text (both are needed)"
        )
    examples = out.with_name(f"{out.name}.train.tmp")
    partial = out.with_name(f"{out.name}.tmp")
    started = time.perf_counter()
    try:
        examples.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with _zeroed_allocations():
            model = fasttext.train_supervised(
                input=str(examples),
                epoch=params.epoch,
                lr=params.lr,
                wordNgrams=params.word_ngrams,
                dim=params.dim,
                bucket=params.bucket,
                minCount=params.min_count,
                seed=params.seed,
                loss="softmax",
                thread=1,
                verbose=0,
            )
        model.save_model(str(partial))
        partial.replace(out)
    except RuntimeError as err:
        if "NaN" not in str(err):
            raise
        raise ValueError(f"training diverged ({err}): lower the learning rate (lr)") from err
    finally:
        examples.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    record = {
        "model": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "labels": {"reference": REFERENCE_LABEL, "random": RANDOM_LABEL},
        "hyper_parameters": {**params.model_dump(), "thread": 1, "loss": "softmax"},
        "examples": counts,
        "preprocessing": "lowercase; newlines to spaces; whitespace runs collapsed",
        "seconds": round(time.perf_counter() - started, 3),
    }
    out.with_name(f"{out.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--positives",
        nargs="+",
        required=True,
        help="reference pages (pages cited by Wikipedia): Wikipedia dumps, JSONL, Parquet or "
        "text files, directories or globs",
    )
    parser.add_argument(
        "--negatives",
        nargs="+",
        required=True,
        help="crawl shards to sample random pages from, in the same formats",
    )
    parser.add_argument(
        "--out", required=True, help="model file to write; its record goes to OUT.json"
    )
    parser.add_argument("--text-field", default="text", help="text field of JSONL/Parquet")
    for name, spec in ClassifierTraining.model_fields.items():
        kind = float if spec.annotation is float else int
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=spec.default,
            help=f"{spec.description} (default: {spec.default})",
        )


@register_command(
    "classifier train",
    "train the Wikipedia-reference classifier (fastText) for wiki_reference_classifier",
    _configure_train,
)
def train_command(args: argparse.Namespace) -> int:
    stats = Stats()
    hyper = {name: getattr(args, name) for name in ClassifierTraining.model_fields}
    out = train_reference_classifier(
        read_corpus(args.positives, stats, args.text_field),
        read_corpus(args.negatives, stats, args.text_field),
        args.out,
        **hyper,
    )
    record = json.loads(out.with_name(f"{out.name}.json").read_text())
    examples = record["examples"]
    print(
        f"trained {out} on {examples['per_class']} reference and {examples['per_class']} "
        f"random pages (read {examples['positives_read']} and {examples['negatives_read']}) "
        f"in {record['seconds']:.1f}s"
    )
    if stats.drops:
        print(f"skipped: {dict(stats.drops)}")
    return 0
