"""datatrove's side of the MinHash benchmark: its four dedup stages, timed one by one.

Runs inside the benchmark's datatrove venv (never llamix's), on the JSONL shards that
benchmarks/minhash_corpus.py writes:

    DATATROVE_VENV/bin/python benchmarks/minhash_datatrove_side.py CORPUS_DIR --work DIR \
        [--bands 9 --rows 13] [--workers 2]

datatrove 0.10.1's `MinhashDedupSignature` -> `MinhashDedupBuckets` -> `MinhashDedupCluster`
-> `MinhashDedupFilter` (datatrove.pipeline.dedup.minhash), each a `LocalPipelineExecutor`
run of its own as datatrove's examples/minhash_deduplication.py chains them: signatures and
the filter in `--workers` tasks over the shards (both must split the shards the same way:
the .remove files index documents per task), buckets in one task per band, clusters in one.
The config matches llamix's minhash_dedup: word 5-grams, bands x rows = 128 hashes, 64-bit
xxhash, text lowercased with punctuation gone; `--norm datatrove` keeps datatrove's own
normalisation (digits folded to 0, diacritics stripped) instead.

Prints one JSON object on stdout: versions, config, per stage seconds and docs/s (wall
clock, process start-up included, as a user of the executor pays it), the end-to-end time,
the ids the filter removed (from its exclusion writer) and how many it kept.
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
import contextlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import version  # noqa: E402

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.dedup.minhash import (  # noqa: E402
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader  # noqa: E402
from datatrove.pipeline.writers import JsonlWriter  # noqa: E402
from datatrove.utils.hashing import HashConfig  # noqa: E402
from datatrove.utils.text import TextNormConfig  # noqa: E402
from datatrove.utils.word_tokenizers import WordTokenizer  # noqa: E402

SHARD_GLOB = "corpus-*.jsonl"  # minhash_corpus.py's shards; its truth.json sits beside them


class WhitespaceTokenizer(WordTokenizer):
    """Words split on whitespace, as llamix shingles them: with `--tokenizer whitespace` the
    timing shows datatrove's MinHash without the spaCy tokenizer it uses for English (most
    of its signature time), the text being normalised and punctuation-free already."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        raise NotImplementedError("MinHash signatures only split words")


def minhash_config(bands: int, rows: int, norm: str) -> MinhashConfig:
    """Word 5-grams, `bands` buckets of `rows` hashes, 64-bit xxhash; with norm="llamix" only
    the normalisation llamix applies (lowercase, punctuation out, whitespace collapsed)."""
    text = (
        TextNormConfig(norm_numbers=False, norm_unicode_diacritics=False)
        if norm == "llamix"
        else TextNormConfig()
    )
    return MinhashConfig(
        n_grams=5,
        num_buckets=bands,
        hashes_per_bucket=rows,
        seed=1,
        norm_config=text,
        hash_config=HashConfig(precision=64, hash_fc="xxhash"),
    )


def count_documents(corpus: Path) -> int:
    total = 0
    for shard in sorted(corpus.glob(SHARD_GLOB)):
        with open(shard, "rb") as lines:
            total += sum(1 for _ in lines)
    return total


def timed(run: Callable[[], object]) -> float:
    """Wall-clock seconds of one executor run; datatrove's logging (and anything a stage
    prints) goes to stderr, so stdout carries only the result."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        run()
    return time.perf_counter() - start


def run_stages(
    corpus: Path, work: Path, config: MinhashConfig, workers: int, tokenizer: str
) -> tuple[dict[str, float], Path, Path]:
    """The four stages in order, on a fresh `work` (a finished task left there would make
    datatrove skip it); returns seconds per stage and the kept and removed folders."""
    shutil.rmtree(work, ignore_errors=True)
    signatures, buckets, clusters = work / "signatures", work / "buckets", work / "clusters"
    kept, removed, logs = work / "kept", work / "removed", work / "logs"
    shards = len(list(corpus.glob(SHARD_GLOB)))
    if shards < workers:
        sys.exit(f"{corpus} has {shards} shards for {workers} workers: write more shards")

    def reader() -> JsonlReader:
        return JsonlReader(str(corpus), glob_pattern=SHARD_GLOB, compression=None)

    executors = {
        "signature": LocalPipelineExecutor(
            pipeline=[
                reader(),
                MinhashDedupSignature(
                    output_folder=str(signatures),
                    config=config,
                    language=WhitespaceTokenizer() if tokenizer == "whitespace" else "eng",
                ),
            ],
            tasks=workers,
            workers=workers,
            logging_dir=str(logs / "signature"),
        ),
        "buckets": LocalPipelineExecutor(
            pipeline=[
                MinhashDedupBuckets(
                    input_folder=str(signatures), output_folder=str(buckets), config=config
                )
            ],
            tasks=config.num_buckets,  # datatrove needs a multiple of num_buckets tasks
            workers=workers,
            logging_dir=str(logs / "buckets"),
        ),
        "cluster": LocalPipelineExecutor(
            pipeline=[
                MinhashDedupCluster(
                    input_folder=str(buckets), output_folder=str(clusters), config=config
                )
            ],
            tasks=1,  # union-find over every pair: one task by design
            logging_dir=str(logs / "cluster"),
        ),
        "filter": LocalPipelineExecutor(
            pipeline=[
                reader(),
                MinhashDedupFilter(
                    input_folder=str(clusters),
                    exclusion_writer=JsonlWriter(str(removed), compression=None),
                ),
                JsonlWriter(str(kept), compression=None),
            ],
            tasks=workers,
            workers=workers,
            logging_dir=str(logs / "filter"),
        ),
    }
    seconds = {name: timed(executor.run) for name, executor in executors.items()}
    return seconds, kept, removed


def ids_in(folder: Path) -> list[str]:
    """Document ids in the JSONL files a JsonlWriter left in `folder` (none if it wrote
    nothing)."""
    ids: list[str] = []
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as lines:
            ids += [json.loads(line)["id"] for line in lines]
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="folder of corpus-XXXXX.jsonl shards")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (emptied)")
    parser.add_argument("--bands", type=int, default=9, help="num_buckets")
    parser.add_argument("--rows", type=int, default=13, help="hashes_per_bucket")
    parser.add_argument("--workers", type=int, default=2, help="tasks and processes")
    parser.add_argument(
        "--norm",
        choices=("llamix", "datatrove"),
        default="llamix",
        help="text normalisation before shingling: llamix's, or datatrove's default",
    )
    parser.add_argument(
        "--tokenizer",
        choices=("spacy", "whitespace"),
        default="spacy",
        help="word splitting: datatrove's for English (spaCy), or llamix's (whitespace)",
    )
    parser.add_argument("--keep-work", action="store_true", help="leave --work in place")
    args = parser.parse_args()

    config = minhash_config(args.bands, args.rows, args.norm)
    documents = count_documents(args.corpus)
    seconds, kept, removed = run_stages(
        args.corpus, args.work, config, args.workers, args.tokenizer
    )
    removed_ids = ids_in(removed)
    kept_count = len(ids_in(kept))
    if not args.keep_work:
        shutil.rmtree(args.work, ignore_errors=True)
    packages = ("datatrove", "numpy", "xxhash", "spacy")
    result = {
        "versions": {"python": platform.python_version()}
        | {name: version(name) for name in packages},
        "config": {
            "n_grams": config.n_grams,
            "bands": config.num_buckets,
            "rows": config.hashes_per_bucket,
            "hashes": config.num_buckets * config.hashes_per_bucket,
            "hash": str(config.hash_config),
            "norm": args.norm,
            "tokenizer": args.tokenizer,
            "workers": args.workers,
        },
        "documents": documents,
        "stages": {
            name: {"seconds": s, "docs_per_s": documents / s} for name, s in seconds.items()
        },
        "total_seconds": sum(seconds.values()),
        "removed_ids": removed_ids,
        "kept": kept_count,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
