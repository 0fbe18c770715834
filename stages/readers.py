"""The generic input formats: JSON lines, Parquet, and one document per text file."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from pipeline.document import Document
from pipeline.io import read_jsonl, read_parquet_records, read_text_file
from pipeline.stats import Stats
from stages.base import Reader, ReaderParams, register_reader


class RecordParams(ReaderParams):
    text_field: str = Field("text", description="The field that holds the document text.")
    id_field: str | None = Field(
        None,
        description="A field holding a stable record id; default: file path + record index.",
    )


@register_reader
class JsonlReader(Reader):
    """JSON lines, plain or `.gz` / `.zst`; other fields of each record go to `meta`."""

    name = "jsonl"
    Params = RecordParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        p = self.params
        return read_jsonl(
            path,
            doc_id,
            source,
            stats,
            text_field=p.text_field,
            id_field=p.id_field,
            max_document_bytes=p.max_document_bytes,
        )


@register_reader
class ParquetReader(Reader):
    """Rows of a Parquet file; other columns go to `meta`."""

    name = "parquet"
    Params = RecordParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        p = self.params
        return read_parquet_records(
            path, doc_id, source, stats, text_field=p.text_field, id_field=p.id_field
        )


@register_reader
class TextReader(Reader):
    """One document per file (a book, a page, a source file), plain or compressed."""

    name = "text"

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        return read_text_file(
            path, doc_id, source, stats, max_document_bytes=self.params.max_document_bytes
        )
