"""Books: a reader for book collections, and Project Gutenberg boilerplate removal.

LLaMA (Touvron et al. 2023, §2.1) trains on Project Gutenberg books; like the other sources,
the distribution's own header, footer and licence are not the book and are removed. The
markers are the ones Gutenberg has used over the years, as collected by Gutenberg cleaning
tools (the `gutenberg` package's `strip_headers` lists); this is an independent, stricter
implementation: markers must start a line, and only the credit line directly after the start
marker is taken, never a "Produced by" found elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.document import Document
from pipeline.io import compression_of
from pipeline.stats import Stats
from stages.base import Reader, Stage, register_reader, register_stage
from stages.readers import JsonlReader, RecordParams, TextReader

_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")

# The line that ends the header: everything up to and including it is boilerplate. Old
# files end their header with the small print instead of a START line.
_START = re.compile(
    r"""\s*(?:
        \*{3}\s*START\ OF\ (?:THE|THIS)\ PROJECT\ GUTENBERG
      | \*{3}\s*START\ OF\ THE\ COPYRIGHTED\ PROJECT\ GUTENBERG
      | \*END\*?\s*THE\ SMALL\ PRINT
    )""",
    re.I | re.X,
)

# The line that starts the footer: it and everything after it is boilerplate. The "End of
# ... Project Gutenberg" sentence comes before the *** END line in most files, and alone in
# some old ones.
_END = re.compile(
    r"""\s*(?:
        \*{3}\s*END\ OF\ (?:THE|THIS)\ PROJECT\ GUTENBERG
      | \*{3}\s*END\ OF\ THE\ COPYRIGHTED\ PROJECT\ GUTENBERG
      | End\ of\ (?:the\ |this\ )?Project\ Gutenberg
      | Ende\ dieses\ Projekt?\ Gutenberg
      | Fin\ de\ Project\ Gutenberg
    )""",
    re.I | re.X,
)

# Production credits that open the text right after the start marker.
_CREDIT = re.compile(
    r"""\s*(?:
        Produced\ by
      | (?:This\ )?E-?text\ was\ (?:prepared|produced)\ by
      | E-text\ prepared\ by
      | This\ eBook\ was\ prepared\ by
      | Transcribed\ from\ .*\ by
    )""",
    re.I | re.X,
)
# A credit runs to the next blank line when that comes within this many lines; files whose
# blank lines were squeezed out lose only the credit line itself, never the book.
_MAX_CREDIT_LINES = 4

# Licence inserted inside the text of some editions (the Shakespeare complete works).
_LEGALESE_START = re.compile(r"\s*<<THIS ELECTRONIC VERSION OF", re.I)
_LEGALESE_END = re.compile(r".*SERVICE THAT CHARGES FOR DOWNLOAD", re.I)


def _markers(lines: list[str]) -> tuple[int | None, int | None]:
    """Index of the last start marker before the footer, and of the footer's first line."""
    start = None
    for i, line in enumerate(lines):
        if _END.match(line):
            return start, i
        if _START.match(line):
            start = i
    return start, None


def _credit_length(lines: list[str]) -> int:
    """How many of the first lines are a production credit (0 when there is none)."""
    if not lines or not _CREDIT.match(lines[0]):
        return 0
    for i, line in enumerate(lines[: _MAX_CREDIT_LINES + 1]):
        if not line.strip():
            return i
    return 1


def _without_legalese(lines: list[str]) -> list[str]:
    """Removes each in-text licence block; an unclosed one is kept, not the rest of the book."""
    kept: list[str] = []
    block: list[str] | None = None
    for line in lines:
        if block is None and _LEGALESE_START.match(line):
            block = [line]
        elif block is not None:
            block.append(line)
            if _LEGALESE_END.match(line):
                block = None
        else:
            kept.append(line)
    return kept + (block or [])


def _trim_blank(lines: list[str]) -> list[str]:
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    last = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip()), -1)
    return lines[first : last + 1]


def gutenberg_parts(text: str) -> tuple[str, bool, bool]:
    """The book's text, whether a header was removed, whether a footer was removed.

    Text without markers comes back unchanged; otherwise the text between the markers, less
    the production credit and in-text licence, with the book's lines kept byte for byte
    (only surrounding blank lines and the final line break go)."""
    lines = text.splitlines(keepends=True)
    start, end = _markers(lines)
    if start is None and end is None:
        return text, False, False
    body = lines[(start + 1 if start is not None else 0) : end]
    if start is not None:
        body = _trim_blank(body)
        body = body[_credit_length(body) :]
    body = _trim_blank(_without_legalese(body))
    return "".join(body).rstrip("\r\n"), start is not None, end is not None


def strip_gutenberg(text: str) -> str:
    """Removes Project Gutenberg's header, footer and licence; other text is unchanged."""
    return gutenberg_parts(text)[0]


@register_stage
class GutenbergStrip(Stage):
    """Strips Project Gutenberg boilerplate; books left empty drop as `gutenberg_strip:empty`."""

    name = "gutenberg_strip"

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        """A mapper that also counts the headers and footers it removed."""
        for doc in docs:
            text, header, footer = gutenberg_parts(doc.text)
            if header:
                stats.count(f"{self.name}:header_removed")
            if footer:
                stats.count(f"{self.name}:footer_removed")
            if text:
                yield Document(doc.id, text, doc.source, doc.meta)
            else:
                stats.drop(f"{self.name}:empty")


@register_reader
class BooksReader(Reader):
    """One book per plain-text file (Gutenberg's `.txt`), or a JSON-lines file of books
    (Books3-style dumps), plain or compressed; the suffix decides which."""

    name = "books"
    Params = RecordParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        stem = path.rsplit(".", 1)[0] if compression_of(path) else path
        as_records = JsonlReader if stem.endswith(_JSONL_SUFFIXES) else TextReader
        return as_records(self.params).read(path, doc_id, source, stats)
