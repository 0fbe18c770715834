"""What a stage is, and the registry that maps manifest names to stage classes.

A stage declares its parameters as a pydantic model (validated before anything runs),
loads heavy models once per worker process in `setup()`, and transforms a stream of
documents. Stages never touch files or Ray: the executor does. The engine finds stages
only through this registry, never by importing one by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.document import Document
from pipeline.io import DEFAULT_MAX_DOCUMENT_BYTES
from pipeline.stats import Stats


class Params(BaseModel):
    """Base of every stage's and reader's parameters: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """Shared by stages and readers: a registered name, validated params, a setup hook."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def setup(self) -> None:
        """Loads models; called once per worker process, before the first shard."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class Stage(Component):
    """Transforms a stream of documents; the most general shape of a stage."""

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        raise NotImplementedError


class Filter(Stage):
    """Keeps or drops each document whole; never edits text."""

    def keep(self, doc: Document) -> bool | str:
        """True to keep; otherwise False or the short drop reason (without the stage prefix)."""
        raise NotImplementedError

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        for doc in docs:
            verdict = self.keep(doc)
            if verdict is True:
                yield doc
            else:
                stats.drop(f"{self.name}:{verdict or 'filtered'}")


class Mapper(Stage):
    """Rewrites each document; a mapper that empties a document drops it with a reason."""

    def map(self, doc: Document) -> Document:
        raise NotImplementedError

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        for doc in docs:
            mapped = self.map(doc)
            if mapped.text:
                yield mapped
            else:
                stats.drop(f"{self.name}:empty")


class GlobalStage(Stage):
    """A decision that needs the whole corpus (dedup), run as map -> reduce -> apply.

    - `keys(docs)` runs per shard and returns a table with at least a `key` (uint64)
      column and a `row` (int64, the document's position in the shard) column. The
      executor adds `shard` and splits rows into partitions by `key` range.
    - `decide(keys)` runs once per partition, on all keys of that partition from every
      shard, and returns the decisions: a table with `shard` and `row` columns plus
      whatever `apply` needs. Memory is bounded by the partition, not the corpus.
    - `apply(docs, decisions, stats)` runs per shard with the decisions for that shard.

    Decisions must depend only on the data (e.g. keep the smallest id), never on
    scheduling, so any number of workers gives the same bytes.
    """

    partitions: ClassVar[int] = 16

    def keys(self, docs: Iterator[Document], stats: Stats) -> pa.Table:
        raise NotImplementedError

    def decide(self, keys: pa.Table, stats: Stats) -> pa.Table:
        raise NotImplementedError

    def apply(
        self, docs: Iterator[Document], decisions: pa.Table, stats: Stats
    ) -> Iterator[Document]:
        raise NotImplementedError

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        """In-process run over one stream, for tests and small corpora: same code path."""
        materialised = list(docs)
        keys = self.keys(iter(materialised), stats)
        keys = keys.append_column("shard", pa.array([0] * keys.num_rows, pa.int64()))
        return self.apply(iter(materialised), self.decide(keys, stats), stats)


class ReaderParams(Params):
    max_document_bytes: int = Field(
        DEFAULT_MAX_DOCUMENT_BYTES,
        gt=0,
        description="Records larger than this are skipped as read:document_too_large.",
    )


class Reader(Component):
    """Turns one input file into documents; counts what it cannot read instead of failing.

    A reader raises `pipeline.io.CorruptInput` when the rest of a file is unreadable; the
    executor counts its reason and keeps the documents read before the break.
    """

    Params: ClassVar[type[Params]] = ReaderParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        """`doc_id` is the file's stable name (relative path); records append their index."""
        raise NotImplementedError


STAGES: dict[str, type[Stage]] = {}
READERS: dict[str, type[Reader]] = {}

C = TypeVar("C", bound=type[Component])


def register_stage(cls: C) -> C:
    return _register(STAGES, cls)


def register_reader(cls: C) -> C:
    return _register(READERS, cls)


def _register(table: dict[str, Any], cls: C) -> C:
    if cls.name in table and table[cls.name] is not cls:
        raise ValueError(f"two components are registered as {cls.name!r}")
    table[cls.name] = cls
    return cls
