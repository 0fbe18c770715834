"""datatrove's side of benchmarks/ccnet.py: times its filters on the same corpus, one core.

Runs inside the benchmark's own datatrove venv (never llamix's), started by ccnet.py:

    DATATROVE_VENV/bin/python benchmarks/datatrove_side.py CORPUS.jsonl --lid-model lid.176.ftz \
        --filters langid c4_filters

Prints one JSON object: per filter asked for, documents, MB, the best of `--repeat` runs
(seconds, docs/s, MB/s) and the ids it kept, so the caller can check that both sides
agree; and `versions` of the packages timed. Each filter runs through `BaseFilter.run`,
the loop a datatrove pipeline executes (with its per-document statistics), over Documents
built before the clock starts.
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
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import version  # noqa: E402

from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import C4QualityFilter, LanguageFilter  # noqa: E402
from datatrove.pipeline.filters.base_filter import BaseFilter  # noqa: E402
from fasttext.FastText import _FastText  # noqa: E402


def read_corpus(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as lines:
        return [(record["id"], record["text"]) for record in map(json.loads, lines)]


def time_filter(
    make: Callable[[], BaseFilter], corpus: list[tuple[str, str]], repeat: int
) -> dict[str, object]:
    """Best of `repeat` runs of a fresh filter over fresh Documents (C4 rewrites doc.text)."""
    size = sum(len(text.encode("utf-8")) for _, text in corpus)
    best = float("inf")
    kept: list[str] = []
    for _ in range(repeat):
        step = make()
        docs = [Document(text=text, id=doc_id) for doc_id, text in corpus]
        start = time.perf_counter()
        out = [doc.id for doc in step.run(iter(docs))]
        seconds = time.perf_counter() - start
        if seconds < best:
            best, kept = seconds, out
    return {
        "docs": len(corpus),
        "mb": size / 1e6,
        "seconds": best,
        "docs_per_s": len(corpus) / best,
        "mb_per_s": size / 1e6 / best,
        "kept": len(kept),
        "kept_ids": kept,
    }


def language_filter(model_path: str, languages: list[str] | None, threshold: float) -> BaseFilter:
    """LanguageFilter (ft176) with the local lid.176 model injected: left alone, its first
    prediction downloads lid.176.bin from dl.fbaipublicfiles.com
    (`FastTextLID.model` calls `cached_asset_path_or_download` while `_model` is None)."""
    step = LanguageFilter(languages=languages, language_threshold=threshold, backend="ft176")
    step.model._model = _FastText(model_path)
    return step


def c4_filter(min_words: int, min_sentences: int) -> BaseFilter:
    step = C4QualityFilter(min_words_per_line=min_words, min_num_sentences=min_sentences)
    # The first sentence split loads spaCy's English pipeline: a one-off, kept off the clock.
    step.filter(Document(text="A warm-up line, five words. And two sentences.", id="warm-up"))
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", help="JSONL with `id` and `text` per line")
    parser.add_argument("--lid-model", required=True, help="lid.176.bin or lid.176.ftz")
    parser.add_argument("--languages", nargs="*", default=["en"], help="none: every language")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--c4-min-words", type=int, default=3, help="min_words_per_line")
    parser.add_argument("--c4-min-sentences", type=int, default=5, help="min_num_sentences")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--filters",
        nargs="+",
        choices=("langid", "c4_filters", "c4_filters_no_sentence_rule"),
        default=["langid", "c4_filters", "c4_filters_no_sentence_rule"],
    )
    args = parser.parse_args()

    languages = args.languages or None
    filters: dict[str, Callable[[], BaseFilter]] = {
        "langid": lambda: language_filter(args.lid_model, languages, args.threshold),
        "c4_filters": lambda: c4_filter(args.c4_min_words, args.c4_min_sentences),
        # The line rules alone: without the sentence rule, spaCy never runs.
        "c4_filters_no_sentence_rule": lambda: c4_filter(args.c4_min_words, -1),
    }
    corpus = read_corpus(args.corpus)
    results: dict[str, object] = {
        name: time_filter(filters[name], corpus, args.repeat) for name in args.filters
    }
    packages = ("datatrove", "fasttext-numpy2-wheel", "numpy", "spacy")
    results["versions"] = {name: version(name) for name in packages}
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
