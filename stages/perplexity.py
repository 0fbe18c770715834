"""CCNet's quality signal: perplexity under a Wikipedia language model, and its buckets.

CCNet (Wenzek et al. 2020, "LM filtering") scores every document with a 5-gram KenLM model
trained on Wikipedia in the document's language, over SentencePiece pieces of the
normalised text, and splits each language at the 30th and 60th percentile of perplexity
into head, middle and tail. LLaMA (Touvron et al. 2023, §2.1) filters its CommonCrawl
with this n-gram model; RedPajama keeps the head and the middle. This module is that
scorer (`perplexity`) and the split (`perplexity_bucket`); `stages.lm` builds and
calibrates the model pairs (`llamix lm train`, `llamix lm calibrate`).

Model directory (CCNet's published layout, so its models load unchanged):

    {lang}.sp.model      SentencePiece model (the LM's tokenizer)
    {lang}.arpa.bin      KenLM binary model over the pieces
    {lang}.cutoffs.json  calibration: perplexity percentiles 0..100 (written by lm train)
    {lang}.lm.json       how the pair was trained (written by lm train)
    cutoff.csv           the same percentiles in cc_net's data/cutoff.csv layout
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.document import Document
from pipeline.io import atomic_write_bytes
from pipeline.stats import Stats
from stages.base import ManifestPath, Params, Stage, register_stage
from stages.ccnet import normalize

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
    atomic_write_text(path, buffer.getvalue())


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
                if language not in marked:
                    marked.add(language)
                    for label, cut in (("head", cutoff.head_max), ("middle", cutoff.middle_max)):
                        stats.mark("perplexity", self._mark_label(language, label), mark_value(cut))
                if bucket not in keep:
                    stats.drop(f"{self.name}:{bucket}")
                    continue
            yield Document(doc.id, doc.text, doc.source, {**doc.meta, "bucket": bucket})


def atomic_write_text(path: Path, text: str) -> None:
    """Model-directory files are replaced whole: a reader never sees half a table."""
    atomic_write_bytes(str(path), (text if text.endswith("\n") else text + "\n").encode())
