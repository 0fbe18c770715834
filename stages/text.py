"""Source-agnostic text stages: a length filter and line normalisation."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from pipeline.document import Document
from stages.base import Filter, Mapper, Params, register_stage


class LengthParams(Params):
    min_chars: int = Field(0, ge=0, description="Drop documents shorter than this (0: off).")
    max_chars: int | None = Field(
        None, gt=0, description="Drop documents longer than this (null: off)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> LengthParams:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError("max_chars must be at least min_chars")
        return self


@register_stage
class LengthFilter(Filter):
    """Drops documents outside [min_chars, max_chars] characters."""

    name = "length_filter"
    Params = LengthParams

    def keep(self, doc: Document) -> bool | str:
        size = len(doc.text)
        if size < self.params.min_chars:
            return "too_short"
        if self.params.max_chars is not None and size > self.params.max_chars:
            return "too_long"
        return True


_BLANK_RUN = re.compile(r"\n{3,}")


def normalize_lines(text: str) -> str:
    """Strips every line and collapses runs of blank lines to one: the layout noise of
    HTML-to-text and PDF extraction, removed before anything hashes or scores lines."""
    stripped = "\n".join(line.strip() for line in text.splitlines())
    return _BLANK_RUN.sub("\n\n", stripped).strip("\n")


@register_stage
class LinesNormalize(Mapper):
    """Strips lines and collapses blank-line runs; documents left empty are dropped."""

    name = "lines_normalize"

    def map(self, doc: Document) -> Document:
        return Document(doc.id, normalize_lines(doc.text), doc.source, doc.meta)
