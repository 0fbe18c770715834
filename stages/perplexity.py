"""CCNet's quality signal: perplexity under a Wikipedia language model, and its buckets.

CCNet (Wenzek et al. 2020, "LM filtering") scores every document with a 5-gram KenLM model
trained on Wikipedia in the document's language, over SentencePiece pieces of the
normalised text, and splits each language at the 30th and 60th percentile of perplexity
into head, middle and tail. LLaMA (Touvron et al. 2023, §2.1) filters its CommonCrawl
with this n-gram model; RedPajama keeps the head and the middle. This module is that
scorer (`perplexity`), the split (`perplexity_bucket`) and the tools that build a model
pair from a reference corpus and calibrate it (`llamix lm train`, `llamix lm calibrate`).

Model directory (CCNet's published layout, so its models load unchanged):

    {lang}.sp.model      SentencePiece model (the LM's tokenizer)
    {lang}.arpa.bin      KenLM binary model over the pieces
    {lang}.cutoffs.json  calibration: perplexity percentiles 0..100 (written by lm train)
    {lang}.lm.json       how the pair was trained (written by lm train)
    cutoff.csv           the same percentiles in cc_net's data/cutoff.csv layout
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from pipeline.document import Document
from pipeline.io import (
    CorruptInput,
    compression_of,
    read_jsonl,
    read_parquet_records,
    read_text_file,
)
from pipeline.stats import Stats
from stages.base import ManifestPath, Params, Stage, register_command, register_stage
from stages.ccnet import normalize
from stages.wikipedia import read_wiki_dump

SP_SUFFIX = ".sp.model"
LM_SUFFIX = ".arpa.bin"
CUTOFFS_SUFFIX = ".cutoffs.json"
TRAINING_SUFFIX = ".lm.json"
CUTOFF_CSV = "cutoff.csv"
PERCENTILES = range(101)  # written to {lang}.cutoffs.json; cutoff.csv keeps 0..99 as cc_net
UNSCORED = "all"  # cc_net's bucket for a document it has no cutoffs for
CCNET_MODELS_URL = "http://dl.fbaipublicfiles.com/cc_net/lm/"

# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------


def model_files(models: Path, language: str) -> tuple[Path, Path]:
    """(SentencePiece model, KenLM binary) of `language` in a model directory."""
    return models / f"{language}{SP_SUFFIX}", models / f"{language}{LM_SUFFIX}"


def model_languages(models: Path) -> list[str]:
    """Languages with both files of the pair in `models`."""
    return sorted(
        p.name.removesuffix(LM_SUFFIX)
        for p in models.glob(f"*{LM_SUFFIX}")
        if (models / (p.name.removesuffix(LM_SUFFIX) + SP_SUFFIX)).is_file()
    )


@dataclass
class LanguageModel:
    """One language's SentencePiece + KenLM pair."""

    language: str
    sp: Any  # sentencepiece.SentencePieceProcessor
    lm: Any  # kenlm.Model

    @classmethod
    def load(cls, models: Path | str, language: str) -> LanguageModel:
        import kenlm
        import sentencepiece

        sp_path, lm_path = model_files(Path(models), language)
        for path in (sp_path, lm_path):
            if not path.is_file():
                present = ", ".join(model_languages(Path(models))) or "none"
                raise FileNotFoundError(
                    f"no {path.name} in {models} (languages there: {present}): train one with "
                    f"`llamix lm train --language {language} --out {models} ...` or download "
                    f"CCNet's ({CCNET_MODELS_URL}{path.name})"
                )
        config = kenlm.Config()
        # cc_net's DocLM uses load method 2, POPULATE_OR_READ: mmap and fault every page in.
        config.load_method = kenlm.LoadMethod.POPULATE_OR_READ
        return cls(
            language,
            sentencepiece.SentencePieceProcessor(model_file=str(sp_path)),
            kenlm.Model(str(lm_path), config),
        )


def perplexity(log10_probability: float, tokens: int) -> float:
    """`10 ** (-log10 p / tokens)`, cc_net's `perplexity.pp`."""
    return 10.0 ** (-log10_probability / tokens)


def tokenized_lines(model: LanguageModel, text: str) -> list[str]:
    """The lines the LM sees: each "\\n"-separated line normalised (cc_net's
    `text_normalizer.normalize`), empty ones skipped, the rest as SentencePiece pieces
    joined by spaces. Lines are normalised one by one: `normalize` removes control
    characters, newlines included, so normalising a whole document would merge its lines.
    """
    lines = [n for n in map(normalize, text.split("\n")) if n]
    if not lines:
        return []
    return [" ".join(pieces) for pieces in model.sp.encode(lines, out_type=str)]


def score_lines(model: LanguageModel, lines: Iterable[str]) -> tuple[float, int]:
    """(sum of log10 p, number of scored tokens) over tokenised lines.

    As cc_net's `DocLM.do`: each line is a sentence with <s> and </s> (kenlm's defaults),
    so it counts its pieces plus one for </s>.
    """
    log10_probability, tokens = 0.0, 0
    for line in lines:
        log10_probability += model.lm.score(line)
        tokens += len(line.split()) + 1
    return log10_probability, tokens


def document_perplexity(model: LanguageModel, text: str) -> float | None:
    """Perplexity of a document under its language's model; None when it has no words."""
    lines = tokenized_lines(model, text)
    if not lines:
        return None
    return perplexity(*score_lines(model, lines))


def log_bucket(value: float) -> float:
    """Histogram bucket of a perplexity: log10, one decimal (0.1 decades wide)."""
    return round(math.log10(max(value, 1e-9)), 1)


def mark_value(value: float) -> float:
    """A cutoff on the same log10 axis as `log_bucket`."""
    return round(math.log10(max(value, 1e-9)), 3)


class ModelCache:
    """Language models of a directory, loaded on first use, once per worker process."""

    def __init__(self, models: str) -> None:
        self.directory = Path(models)
        self._loaded: dict[str, LanguageModel | None] = {}

    def check(self) -> None:
        if not self.directory.is_dir():
            raise FileNotFoundError(
                f"perplexity models directory {self.directory} does not exist: train one "
                f"with `llamix lm train --out {self.directory} ...` or download CCNet's "
                f"{{lang}}.sp.model and {{lang}}.arpa.bin from {CCNET_MODELS_URL}"
            )

    def require(self, language: str) -> LanguageModel:
        model = self.get(language)
        if model is None:
            return LanguageModel.load(self.directory, language)  # raises, saying what to do
        return model

    def get(self, language: str | None) -> LanguageModel | None:
        if not language:
            return None
        if language not in self._loaded:
            sp_path, lm_path = model_files(self.directory, language)
            present = sp_path.is_file() and lm_path.is_file()
            self._loaded[language] = (
                LanguageModel.load(self.directory, language) if present else None
            )
        return self._loaded[language]


class LanguageChoice(Params):
    language: str | None = Field(
        None, description="Score every document as this language, whatever its meta says."
    )
    default_language: str | None = Field(
        None,
        description="Language of documents without meta.language (from langid); "
        "null: such documents are not scored.",
    )

    def language_of(self, doc: Document) -> str | None:
        return self.language or doc.meta.get("language") or self.default_language


class PerplexityParams(LanguageChoice):
    models: ManifestPath = Field(
        description="Directory of {lang}.sp.model + {lang}.arpa.bin pairs (CCNet's layout)."
    )
    field: str = Field("perplexity", description="Meta key the perplexity is written to.")


@register_stage
class Perplexity(Stage):
    """Writes each document's perplexity under its language's Wikipedia model.

    Score: CCNet's `DocLM` (see `tokenized_lines`, `score_lines`), rounded to one decimal
    as cc_net does. Language: `language` if set, else meta.language, else
    `default_language`. A document whose language has no model, or that has no words, is
    kept unscored and counted (`perplexity:no_model:<lang>`, `perplexity:no_text`): the
    bucket step decides what happens to it. Histogram `perplexity`: log10 buckets.
    """

    name = "perplexity"
    Params = PerplexityParams

    def __init__(self, params: PerplexityParams | None = None) -> None:
        super().__init__(params)
        self._models: ModelCache | None = None

    def setup(self) -> None:
        p = self.params
        self._models = ModelCache(p.models)
        self._models.check()
        for language in (p.language, p.default_language):
            if language:
                self._models.require(language)

    def __getstate__(self) -> dict[str, Any]:
        # KenLM and SentencePiece models are C++ objects: loaded in each worker, not shipped.
        return {**self.__dict__, "_models": None}

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        if self._models is None:
            self.setup()
        assert self._models is not None
        p = self.params
        for doc in docs:
            language = p.language_of(doc)
            model = self._models.get(language)
            if model is None:
                stats.count(f"{self.name}:no_model:{language or 'none'}")
                yield doc
                continue
            value = document_perplexity(model, doc.text)
            if value is None:
                stats.count(f"{self.name}:no_text")
                yield doc
                continue
            stats.histogram("perplexity", log_bucket(value))
            yield Document(doc.id, doc.text, doc.source, {**doc.meta, p.field: round(value, 1)})


# ---------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------


class Cutoff(Params):
    head_max: float = Field(gt=0, description="Perplexity below this: head.")
    middle_max: float = Field(gt=0, description="Below this (and not head): middle; else tail.")

    @model_validator(mode="after")
    def _ordered(self) -> Cutoff:
        if self.middle_max < self.head_max:
            raise ValueError("middle_max must be at least head_max")
        return self


def bucket_of(value: float | None, cutoff: Cutoff | None) -> str:
    """cc_net's `PerplexityBucket.get_bucket`: head below the first cutoff, middle below
    the second, else tail (both bounds exclusive); "all" without a score or cutoffs."""
    if value is None or value < 0 or cutoff is None:
        return UNSCORED
    if value < cutoff.head_max:
        return "head"
    if value < cutoff.middle_max:
        return "middle"
    return "tail"


def read_cutoff_csv(path: str | Path) -> dict[str, dict[int, float]]:
    """cc_net's `data/cutoff.csv`: a header `,de,it,...`, then one row per percentile
    (`30,190,120,...`). Returns language -> percentile -> perplexity."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or len(rows[0]) < 2:
        raise ValueError(f"{path} is not a cutoff table: expected a header ',<lang>,<lang>...'")
    languages = [name.strip() for name in rows[0][1:]]
    table: dict[str, dict[int, float]] = {language: {} for language in languages}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(languages) + 1:
            raise ValueError(f"{path}:{number}: {len(row)} fields, the header has {len(rows[0])}")
        percentile = int(float(row[0]))
        for language, value in zip(languages, row[1:], strict=True):
            if value.strip():  # a language may lack some percentiles
                table[language][percentile] = float(value)
    return table


def write_cutoff_csv(path: Path, table: dict[str, dict[int, float]]) -> None:
    """The inverse of `read_cutoff_csv`, rows 0..99 as cc_net ships it."""
    languages = sorted(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", *languages])
    for percentile in range(100):
        writer.writerow(
            [percentile, *(_csv_number(table[lang].get(percentile)) for lang in languages)]
        )
    _atomic_write_text(path, buffer.getvalue())


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def cutoffs_from_table(
    table: dict[str, dict[int, float]], head_percentile: int, middle_percentile: int, where: str
) -> dict[str, Cutoff]:
    cutoffs = {}
    for language, by_percentile in table.items():
        missing = [p for p in (head_percentile, middle_percentile) if p not in by_percentile]
        if missing:
            raise ValueError(f"{where} has no percentile {missing[0]} for {language}")
        cutoffs[language] = Cutoff(
            head_max=max(by_percentile[head_percentile], 1e-9),
            middle_max=max(by_percentile[middle_percentile], by_percentile[head_percentile], 1e-9),
        )
    return cutoffs


def read_calibration(models: Path) -> dict[str, dict[int, float]]:
    """Percentile tables of every `{lang}.cutoffs.json` in a model directory."""
    table = {}
    for path in sorted(models.glob(f"*{CUTOFFS_SUFFIX}")):
        record = json.loads(path.read_text())
        language = record.get("language") or path.name.removesuffix(CUTOFFS_SUFFIX)
        table[language] = {int(k): float(v) for k, v in record["percentiles"].items()}
    return table


Bucket = Literal["head", "middle", "tail"]


class BucketParams(LanguageChoice):
    cutoffs: dict[str, Cutoff] | None = Field(
        None, description="Explicit cutoffs per language: {en: {head_max, middle_max}}."
    )
    cutoff_csv: ManifestPath | None = Field(
        None, description="A table in cc_net's data/cutoff.csv format (percentile x language)."
    )
    models: ManifestPath | None = Field(
        None, description="A model directory whose {lang}.cutoffs.json (lm train) hold them."
    )
    head_percentile: int = Field(
        30, ge=0, le=100, description="With cutoff_csv/models: head is below this percentile."
    )
    middle_percentile: int = Field(
        60, ge=0, le=100, description="With cutoff_csv/models: middle is below this one."
    )
    keep: tuple[Bucket, ...] = Field(
        ("head", "middle"), description="Buckets to keep; RedPajama kept head and middle."
    )
    keep_unscored: bool = Field(
        True,
        description="Keep documents without a perplexity or without cutoffs for their "
        "language (bucket 'all'); false: drop them as perplexity_bucket:unscored.",
    )
    field: str = Field("perplexity", description="Meta key the perplexity is read from.")

    @model_validator(mode="after")
    def _one_source(self) -> BucketParams:
        given = [n for n in ("cutoffs", "cutoff_csv", "models") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of cutoffs, cutoff_csv or models")
        if self.middle_percentile < self.head_percentile:
            raise ValueError("middle_percentile must be at least head_percentile")
        return self


@register_stage
class PerplexityBucket(Stage):
    """Splits documents into head/middle/tail at perplexity cutoffs (cc_net's
    `PerplexityBucket`); keeps the buckets in `keep`, drops the others as
    `perplexity_bucket:<bucket>`.

    Meta: `bucket`. Histograms: `perplexity` (log10, as the scoring step) with the
    cutoffs drawn as marks ("head"/"middle", or "<lang> head" when several languages have
    cutoffs), and `perplexity_bucket`. Unscored documents go to bucket "all" and are
    counted (`perplexity_bucket:unscored`), kept unless `keep_unscored` is false.
    """

    name = "perplexity_bucket"
    Params = BucketParams

    def __init__(self, params: BucketParams | None = None) -> None:
        super().__init__(params)
        self._cutoffs: dict[str, Cutoff] | None = None

    def setup(self) -> None:
        p = self.params
        if p.cutoffs is not None:
            cutoffs = dict(p.cutoffs)
        elif p.cutoff_csv is not None:
            if not Path(p.cutoff_csv).is_file():
                raise FileNotFoundError(
                    f"perplexity_bucket.cutoff_csv: no file {p.cutoff_csv} (cc_net ships "
                    "one as cc_net/data/cutoff.csv; `llamix lm train` writes one)"
                )
            table = read_cutoff_csv(p.cutoff_csv)
            cutoffs = cutoffs_from_table(
                table, p.head_percentile, p.middle_percentile, p.cutoff_csv
            )
        else:
            assert p.models is not None
            table = read_calibration(Path(p.models))
            if not table:
                raise FileNotFoundError(
                    f"perplexity_bucket.models: no *{CUTOFFS_SUFFIX} in {p.models}: run "
                    f"`llamix lm calibrate --models {p.models} ...` on a sample of the corpus"
                )
            cutoffs = cutoffs_from_table(table, p.head_percentile, p.middle_percentile, p.models)
        if p.language and p.language not in cutoffs:
            raise ValueError(
                f"perplexity_bucket.language is {p.language} but the cutoffs cover only "
                f"{', '.join(sorted(cutoffs))}"
            )
        self._cutoffs = cutoffs

    def _mark_label(self, language: str, bucket: str) -> str:
        assert self._cutoffs is not None
        single = self.params.language is not None or len(self._cutoffs) == 1
        return bucket if single else f"{language} {bucket}"

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        if self._cutoffs is None:
            self.setup()
        assert self._cutoffs is not None
        p = self.params
        keep = set(p.keep)
        marked: set[str] = set()
        for doc in docs:
            language = p.language_of(doc)
            cutoff = self._cutoffs.get(language) if language else None
            value = doc.meta.get(p.field)
            value = float(value) if isinstance(value, int | float) else None
            bucket = bucket_of(value, cutoff)
            stats.histogram("perplexity_bucket", bucket)
            if bucket == UNSCORED:
                stats.count(f"{self.name}:unscored")
                if not p.keep_unscored:
                    stats.drop(f"{self.name}:unscored")
                    continue
            else:
                assert value is not None and cutoff is not None and language is not None
                stats.histogram("perplexity", log_bucket(value))
                if language not in marked:
                    marked.add(language)
                    for label, cut in (("head", cutoff.head_max), ("middle", cutoff.middle_max)):
                        stats.mark("perplexity", self._mark_label(language, label), mark_value(cut))
                if bucket not in keep:
                    stats.drop(f"{self.name}:{bucket}")
                    continue
            yield Document(doc.id, doc.text, doc.source, {**doc.meta, "bucket": bucket})


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
    _atomic_write_text(
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
        _atomic_write_text(out / f"{lang}{TRAINING_SUFFIX}", json.dumps(record, indent=2))
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# Reading a reference corpus, and the commands
# ---------------------------------------------------------------------------------------


def read_corpus(patterns: Sequence[str], stats: Stats, text_field: str = "text") -> Iterator[str]:
    """Texts of files, directories or globs: MediaWiki dumps (`.xml[.bz2]`, through the
    wikipedia reader), JSON lines and Parquet (`text_field`; a llamix step's output), and
    anything else as one plain-text document per file. Names starting with "_" or "."
    (a step's `_done` records) are skipped; an unreadable file counts its reason in
    `stats` after the documents read before the break, as in a pipeline's read step."""
    from pipeline.plan import expand_inputs  # the plan imports every stage module

    files = expand_inputs(patterns)
    missing = [f.path for f in files if f.missing]
    if missing:
        raise FileNotFoundError(f"no such input: {', '.join(missing)}")
    for file in files:
        if any(part.startswith(("_", ".")) for part in Path(file.name).parts):
            continue
        codec = compression_of(file.path)
        kind = file.path.rsplit(".", 1)[0] if codec else file.path
        if kind.endswith(".xml"):
            docs = read_wiki_dump(file.path, stats=stats)
        elif kind.endswith((".jsonl", ".json", ".ndjson")):
            docs = read_jsonl(file.path, file.name, "", stats, text_field=text_field)
        elif kind.endswith(".parquet"):
            docs = read_parquet_records(file.path, file.name, "", stats, text_field=text_field)
        else:
            docs = read_text_file(file.path, file.name, "", stats)
        try:
            for doc in docs:
                yield doc.text
        except CorruptInput as err:
            stats.drop(err.reason)


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
