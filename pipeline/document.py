"""The one record every step reads and writes, and its Arrow form on disk."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        # JSON text rather than a struct: stages add meta keys freely, and a struct
        # column would force every shard of a step to agree on one schema.
        pa.field("meta", pa.string(), nullable=False),
    ]
)


@dataclass(slots=True)
class Document:
    """A document as it flows through the pipeline.

    `id` is derived from the input (file path + record index, or the record's own id),
    never from time or worker, so that dedup keepers and output order are reproducible.
    """

    id: str
    text: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


def documents_to_table(docs: Iterable[Document]) -> pa.Table:
    ids, texts, sources, metas = [], [], [], []
    for doc in docs:
        ids.append(doc.id)
        texts.append(doc.text)
        sources.append(doc.source)
        metas.append(json.dumps(doc.meta, ensure_ascii=False, sort_keys=True))
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(texts, pa.large_string()),
            pa.array(sources, pa.string()),
            pa.array(metas, pa.string()),
        ],
        schema=SCHEMA,
    )


def table_to_documents(table: pa.Table | pa.RecordBatch) -> Iterator[Document]:
    columns = [table.column(name).to_pylist() for name in SCHEMA.names]
    for doc_id, text, source, meta in zip(*columns, strict=True):
        yield Document(doc_id, text, source, json.loads(meta))
