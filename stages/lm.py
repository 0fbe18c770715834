"""Building CCNet's language models: `llamix lm train` and `llamix lm calibrate`.

A model pair is a SentencePiece unigram model and a 5-gram KenLM model over its pieces,
trained on a reference corpus (Wikipedia, as CCNet and LLaMA do) with the real `lmplz`
and `build_binary`, then calibrated: perplexity percentiles over a sample give the
head/middle/tail cutoffs that `perplexity_bucket` reads. The directory layout is the one
`stages.perplexity` documents (CCNet's, so its published models load unchanged).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.stats import Stats
from stages.base import register_command
from stages.ccnet import normalize
from stages.corpus import read_corpus
from stages.perplexity import (
    CUTOFF_CSV,
    CUTOFFS_SUFFIX,
    LM_SUFFIX,
    PERCENTILES,
    SP_SUFFIX,
    TRAINING_SUFFIX,
    LanguageModel,
    atomic_write_text,
    document_perplexity,
    model_files,
    read_cutoff_csv,
    write_cutoff_csv,
)

# ---------------------------------------------------------------------------------------
# Training: `llamix lm train`
# ---------------------------------------------------------------------------------------

_VOCAB_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\).*?<= (\d+)", re.S)


def kenlm_binary(name: str) -> Path:
    """`lmplz` / `build_binary`, built from the kenlm sdist into the virtualenv."""
    path = Path(sys.executable).parent / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(
            f"KenLM's {name} not found at {path}: run `make setup`, which builds lmplz and "
            "build_binary from the kenlm source distribution"
        )
    return path


def train_sentencepiece(
    corpus: Path,
    model: Path,
    vocab_size: int,
    *,
    sentences: int = 1_000_000,
    seed: int = 0,
    threads: int = 1,
) -> int:
    """A unigram SentencePiece model as cc_net's Makefile trains it
    (`--model_type=unigram --character_coverage=0.9995`). Returns the vocabulary size used.

    Rule for small corpora: SentencePiece refuses a vocabulary larger than the corpus
    supports and names the largest it can reach ("Please set it to a value <= N"); we
    retry with that N (cc_net's Makefile retries with a fixed 40000 instead).
    At most `sentences` lines, sampled with `seed` (cc_net: the openings of 1M articles).
    One thread by default, and lines fed from an iterator so that no temporary path is
    recorded in the model: the same corpus and seed give the same model bytes.
    """
    import sentencepiece

    size = vocab_size
    for _ in range(4):
        sentencepiece.set_random_generator_seed(seed)
        written = io.BytesIO()
        try:
            with open(corpus, encoding="utf-8") as lines:
                sentencepiece.SentencePieceTrainer.train(
                    sentence_iterator=(line.rstrip("\n") for line in lines),
                    model_writer=written,
                    vocab_size=size,
                    model_type="unigram",
                    character_coverage=0.9995,
                    num_threads=threads,
                    input_sentence_size=sentences,
                    shuffle_input_sentence=True,
                    max_sentence_length=1 << 14,
                    minloglevel=2,
                )
        except RuntimeError as err:
            too_high = _VOCAB_TOO_HIGH.search(str(err))
            if too_high is None:
                raise
            bound = int(too_high.group(2))
            size = bound if bound < size else size // 2
            continue
        model.write_bytes(written.getvalue())
        return size
    raise RuntimeError(f"SentencePiece could not train on {corpus} with vocab <= {vocab_size}")


def run_lmplz(corpus: Path, arpa: Path, order: int, memory: str, temp: Path) -> bool:
    """KenLM's `lmplz -o ORDER -S MEMORY` over a tokenised corpus. Returns whether it needed
    `--discount_fallback`: on a tiny corpus the Kneser-Ney discounts cannot be estimated
    and lmplz says so; we then rerun with the fallback (cc_net always passes it)."""
    command = [
        str(kenlm_binary("lmplz")),
        "-o", str(order),
        "-S", memory,
        "-T", str(temp),
        "--skip_symbols",  # a literal <s> in text is text, not a sentence boundary
    ]  # fmt: skip
    for fallback in (False, True):
        with open(corpus, "rb") as stdin, open(arpa, "wb") as stdout:
            done = subprocess.run(
                [*command, *(["--discount_fallback"] if fallback else [])],
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                check=False,
            )
        if done.returncode == 0:
            return fallback
        message = done.stderr.decode("utf-8", "replace")
        if fallback or "discount_fallback" not in message:
            raise RuntimeError(f"lmplz failed ({done.returncode}): {message[-2000:]}")
    raise AssertionError("unreachable")


def run_build_binary(arpa: Path, binary: Path) -> None:
    """`build_binary` with its defaults (probing hash tables), as cc_net's Makefile."""
    done = subprocess.run(
        [str(kenlm_binary("build_binary")), str(arpa), str(binary)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace")
        raise RuntimeError(f"build_binary failed ({done.returncode}): {message[-2000:]}")


def calibrate(
    model: LanguageModel,
    documents: Iterable[str],
    *,
    head_percentile: int = 30,
    middle_percentile: int = 60,
    max_documents: int = 10_000,
) -> dict[str, Any]:
    """Perplexity percentiles 0..100 of a sample of documents: CCNet's cutoffs are the
    30th and 60th percentiles of each language's documents (cc_net `data/cutoff.csv`)."""
    values = [
        v
        for v in (document_perplexity(model, text) for text in islice(documents, max_documents))
        if v is not None
    ]
    if not values:
        raise ValueError("no calibration document has any text to score")
    table = np.percentile(np.asarray(values, dtype=np.float64), list(PERCENTILES))
    percentiles = {str(p): round(float(v), 1) for p, v in zip(PERCENTILES, table, strict=True)}
    return {
        "language": model.language,
        "documents": len(values),
        "head_percentile": head_percentile,
        "middle_percentile": middle_percentile,
        "head_max": percentiles[str(head_percentile)],
        "middle_max": percentiles[str(middle_percentile)],
        "median": percentiles["50"],
        "percentiles": percentiles,
    }


def write_calibration(models: Path, record: dict[str, Any]) -> None:
    """`{lang}.cutoffs.json`, and the language's column of `cutoff.csv` (cc_net's format)."""
    language = record["language"]
    atomic_write_text(
        models / f"{language}{CUTOFFS_SUFFIX}", json.dumps(record, indent=2, sort_keys=True)
    )
    csv_path = models / CUTOFF_CSV
    table = read_cutoff_csv(csv_path) if csv_path.is_file() else {}
    table[language] = {int(k): v for k, v in record["percentiles"].items() if int(k) < 100}
    write_cutoff_csv(csv_path, table)


def train_language_model(
    documents: Iterable[str],
    out_dir: Path | str,
    lang: str,
    *,
    vocab_size: int = 65536,
    order: int = 5,
    memory: str = "4G",
    calibration: Iterable[str] | None = None,
    holdout_every: int = 20,
    calibration_documents: int = 10_000,
    head_percentile: int = 30,
    middle_percentile: int = 60,
    sp_sentences: int = 1_000_000,
    seed: int = 0,
    threads: int = 1,
) -> dict[str, Any]:
    """Trains `{lang}.sp.model` + `{lang}.arpa.bin` on a reference corpus (CCNet: Wikipedia)
    and calibrates their cutoffs; returns what it did (also written to `{lang}.lm.json`).

    As cc_net's Makefile: each line normalised (`normalize`), a unigram SentencePiece model
    on those lines, then `lmplz -o 5` on their pieces and `build_binary`. Calibration: the
    perplexity percentiles of `calibration` documents, or when none are given, of every
    `holdout_every`-th reference document, held out of training (at most
    `calibration_documents`). CCNet's cutoffs are percentiles of the *crawl*: for them pass
    a sample of the corpus to be filtered (or run `llamix lm calibrate` later). Files
    appear only once complete; a failure leaves the directory as it was.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".lm-train-{lang}-", dir=out))
    seconds: dict[str, float] = {}

    def timed(step: str, tick: float) -> float:
        now = time.perf_counter()
        seconds[step] = round(now - tick, 3)
        return now

    try:
        corpus, pieces, arpa = work / "normalized.txt", work / "pieces.txt", work / "lm.arpa"
        sp_model, lm_model = model_files(work, lang)
        hold_out = holdout_every if calibration is None else 0
        counts, held_out = _write_corpus(documents, corpus, hold_out, calibration_documents)
        if counts["lines"] == 0:
            raise ValueError(f"no text to train the {lang} language model on")
        tick = timed("read_and_normalize", started)
        used_vocab = train_sentencepiece(
            corpus, sp_model, vocab_size, sentences=sp_sentences, seed=seed, threads=threads
        )
        tick = timed("sentencepiece", tick)
        counts["tokens"] = _encode_corpus(corpus, sp_model, pieces)
        tick = timed("encode", tick)
        fallback = run_lmplz(pieces, arpa, order, memory, work)
        tick = timed("lmplz", tick)
        run_build_binary(arpa, lm_model)
        tick = timed("build_binary", tick)

        if calibration is not None:
            sample, kind = calibration, "given calibration documents"
        elif held_out:
            sample, kind = held_out, f"held-out reference documents (every {holdout_every}th)"
        else:
            sample, kind = _lines_of(corpus), "training lines (too few documents to hold out)"
        cutoffs = calibrate(
            LanguageModel.load(work, lang),
            sample,
            head_percentile=head_percentile,
            middle_percentile=middle_percentile,
            max_documents=calibration_documents,
        )
        cutoffs["sample"] = kind
        timed("calibrate", tick)

        for path in (sp_model, lm_model):
            os.replace(path, out / path.name)
        write_calibration(out, cutoffs)
        seconds["total"] = round(time.perf_counter() - started, 3)
        record = {
            "language": lang,
            "files": {"sentencepiece": sp_model.name, "kenlm": lm_model.name},
            "sha256": {path.name: _sha256(out / path.name) for path in (sp_model, lm_model)},
            "vocab_size": used_vocab,
            "vocab_size_requested": vocab_size,
            "order": order,
            "discount_fallback": fallback,
            "corpus": counts,
            "calibration": {k: v for k, v in cutoffs.items() if k != "percentiles"},
            "sp_sentences": sp_sentences,
            "seed": seed,
            "seconds": seconds,
        }
        atomic_write_text(out / f"{lang}{TRAINING_SUFFIX}", json.dumps(record, indent=2))
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_corpus(
    documents: Iterable[str], corpus: Path, holdout_every: int, max_held_out: int
) -> tuple[dict[str, int], list[str]]:
    """Writes the normalised non-empty lines of the training documents, one per line;
    returns counts and the held-out documents (every `holdout_every`-th; 0: none)."""
    counts = {"documents": 0, "lines": 0, "characters": 0}
    held_out: list[str] = []
    with open(corpus, "w", encoding="utf-8") as handle:
        for index, text in enumerate(documents):
            if (
                holdout_every
                and index % holdout_every == holdout_every - 1
                and len(held_out) < max_held_out
            ):
                held_out.append(text)
                continue
            counts["documents"] += 1
            for line in map(normalize, text.split("\n")):
                if line:
                    handle.write(line + "\n")
                    counts["lines"] += 1
                    counts["characters"] += len(line)
    return counts, held_out


def _encode_corpus(corpus: Path, sp_model: Path, pieces: Path, batch: int = 4096) -> int:
    """Writes each line of `corpus` as SentencePiece pieces joined by spaces (lmplz's input)."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_model))
    tokens = 0
    with open(corpus, encoding="utf-8") as src, open(pieces, "w", encoding="utf-8") as dst:
        while lines := [line.rstrip("\n") for line in islice(src, batch)]:
            for encoded in sp.encode(lines, out_type=str):
                tokens += len(encoded)
                dst.write(" ".join(encoded) + "\n")
    return tokens


def _lines_of(corpus: Path) -> Iterator[str]:
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Reading a reference corpus, and the commands
# ---------------------------------------------------------------------------------------


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        help="reference corpus: Wikipedia dumps (.xml[.bz2]), JSONL/Parquet (e.g. a "
        "wikipedia source's step output) or text files; directories and globs work",
    )
    parser.add_argument("--out", required=True, help="model directory to write into")
    parser.add_argument("--language", required=True, help="language code, e.g. en")
    parser.add_argument("--vocab-size", type=int, default=65536, help="SentencePiece vocab")
    parser.add_argument("--order", type=int, default=5, help="n-gram order (CCNet: 5)")
    parser.add_argument(
        "--memory", default="4G", help="lmplz -S: sorting memory, e.g. 4G or 20%% (of RAM)"
    )
    parser.add_argument(
        "--sp-sentences",
        type=int,
        default=1_000_000,
        help="train SentencePiece on at most this many lines, sampled with --seed",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="SentencePiece threads (1: reproducible bytes)"
    )
    parser.add_argument(
        "--calibration",
        nargs="+",
        help="documents to take the cutoff percentiles over, ideally a sample of the corpus "
        "to filter (default: every 20th reference document, held out of training)",
    )
    _add_percentile_arguments(parser)
    parser.add_argument("--text-field", default="text", help="text field of JSONL/Parquet")
    parser.add_argument("--max-documents", type=int, help="read at most this many documents")
    parser.add_argument("--seed", type=int, default=0, help="SentencePiece sampling seed")


def _add_percentile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--head-percentile", type=int, default=30, help="(CCNet: 30)")
    parser.add_argument("--middle-percentile", type=int, default=60, help="(CCNet: 60)")
    parser.add_argument(
        "--calibration-documents",
        type=int,
        default=10_000,
        help="score at most this many calibration documents",
    )


@register_command(
    "lm train",
    "train a SentencePiece + 5-gram KenLM pair (CCNet's perplexity model) and its cutoffs",
    _configure_train,
)
def train_command(args: argparse.Namespace) -> int:
    stats = Stats()
    documents: Iterable[str] = read_corpus(args.inputs, stats, args.text_field)
    if args.max_documents is not None:
        documents = islice(documents, args.max_documents)
    calibration = (
        read_corpus(args.calibration, stats, args.text_field) if args.calibration else None
    )
    try:
        record = train_language_model(
            documents,
            args.out,
            args.language,
            vocab_size=args.vocab_size,
            order=args.order,
            memory=args.memory,
            calibration=calibration,
            calibration_documents=args.calibration_documents,
            head_percentile=args.head_percentile,
            middle_percentile=args.middle_percentile,
            sp_sentences=args.sp_sentences,
            seed=args.seed,
            threads=args.threads,
        )
    except RuntimeError as err:  # lmplz or build_binary failed: say so, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    corpus, cal = record["corpus"], record["calibration"]
    print(
        f"trained {args.out}/{args.language}{SP_SUFFIX} (vocab {record['vocab_size']}) and "
        f"{args.language}{LM_SUFFIX} ({record['order']}-gram) on {corpus['documents']} "
        f"documents, {corpus['lines']} lines, {corpus['tokens']} pieces "
        f"in {record['seconds']['total']:.1f}s"
    )
    print(
        f"cutoffs over {cal['documents']} {cal['sample']}: head < {cal['head_max']}, "
        f"middle < {cal['middle_max']} (percentiles {cal['head_percentile']}/"
        f"{cal['middle_percentile']}; median {cal['median']})"
    )
    _print_skipped(stats)
    return 0


def _configure_calibrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="a sample of the corpus to filter")
    parser.add_argument("--models", required=True, help="model directory (CCNet's layout)")
    parser.add_argument("--language", required=True, help="language code, e.g. en")
    _add_percentile_arguments(parser)
    parser.add_argument("--text-field", default="text", help="text field of JSONL/Parquet")


@register_command(
    "lm calibrate",
    "write {lang}.cutoffs.json + cutoff.csv: perplexity percentiles of a corpus sample",
    _configure_calibrate,
)
def calibrate_command(args: argparse.Namespace) -> int:
    stats = Stats()
    model = LanguageModel.load(args.models, args.language)
    record = calibrate(
        model,
        read_corpus(args.inputs, stats, args.text_field),
        head_percentile=args.head_percentile,
        middle_percentile=args.middle_percentile,
        max_documents=args.calibration_documents,
    )
    record["sample"] = ", ".join(args.inputs)
    write_calibration(Path(args.models), record)
    print(
        f"{args.language}: head < {record['head_max']}, middle < {record['middle_max']} over "
        f"{record['documents']} documents; written to {args.models}/{args.language}"
        f"{CUTOFFS_SUFFIX} and {CUTOFF_CSV}"
    )
    _print_skipped(stats)
    return 0


def _print_skipped(stats: Stats) -> None:
    if stats.drops:
        print(f"skipped: {dict(sorted(stats.drops.items()))}")
