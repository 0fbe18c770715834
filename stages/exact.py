"""Exact document dedup across the whole corpus: one copy of each normalised text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from pipeline.document import Document
from pipeline.stats import Stats
from stages.base import GlobalStage, Params, register_stage


class ExactDedupParams(Params):
    lowercase: bool = Field(False, description="Treat texts differing only in case as equal.")


def normalized_digest(text: str, lowercase: bool = False) -> bytes:
    """16-byte BLAKE2b of the text with whitespace runs collapsed (and case folded)."""
    canonical = " ".join(text.split())
    if lowercase:
        canonical = canonical.lower()
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).digest()


def duplicate_rows(keys: pa.Table) -> pa.Table:
    """Every (shard, row) whose digest was seen on a document with a smaller id.

    Keeping the smallest id makes the keeper a property of the data alone.
    """
    ordered = keys.sort_by([("digest", "ascending"), ("doc_id", "ascending")])
    digests = ordered.column("digest").to_numpy(zero_copy_only=False)
    repeated = np.zeros(len(digests), dtype=bool)
    repeated[1:] = digests[1:] == digests[:-1]
    mask = pa.array(repeated)
    return pa.table(
        {
            "shard": pc.filter(ordered.column("shard"), mask),
            "row": pc.filter(ordered.column("row"), mask),
        }
    )


@register_stage
class ExactDedup(GlobalStage):
    """Keeps one document per normalised text (the smallest id); drops the rest."""

    name = "exact_dedup"
    Params = ExactDedupParams

    def keys(self, docs: Iterator[Document], stats: Stats) -> pa.Table:
        digests, doc_ids = [], []
        for doc in docs:
            digests.append(normalized_digest(doc.text, self.params.lowercase))
            doc_ids.append(doc.id)
        return pa.table(
            {
                "key": pa.array([int.from_bytes(d[:8], "big") for d in digests], pa.uint64()),
                "row": pa.array(range(len(digests)), pa.int64()),
                "digest": pa.array(digests, pa.binary(16)),
                "doc_id": pa.array(doc_ids, pa.string()),
            }
        )

    def decide(self, keys: pa.Table, stats: Stats) -> pa.Table:
        return duplicate_rows(keys)

    def apply(
        self, docs: Iterator[Document], decisions: pa.Table, stats: Stats
    ) -> Iterator[Document]:
        drop = set(decisions.column("row").to_pylist())
        for row, doc in enumerate(docs):
            if row in drop:
                stats.drop(f"{self.name}:duplicate")
            else:
                yield doc
