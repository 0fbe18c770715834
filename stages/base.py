"""What a stage is, and the registry that maps manifest names to stage classes.

A stage declares its parameters as a pydantic model (validated before anything runs),
loads heavy models once per worker process in `setup()`, and transforms a stream of
documents. Stages never touch files or Ray: the executor does. The engine finds stages
only through this registry, never by importing one by name.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.document import Document
from pipeline.io import DEFAULT_MAX_DOCUMENT_BYTES
from pipeline.stats import Stats


class _RelativeToManifest:
    """Marks a parameter that names a file or directory (a model, a cutoff table)."""


# A path parameter: relative paths are resolved against the manifest's directory, like
# `inputs`, so a manifest runs the same from any working directory.
ManifestPath = Annotated[str, _RelativeToManifest()]


def path_fields(params: BaseModel) -> list[str]:
    """Names of the parameters declared as `ManifestPath` (or `ManifestPath | None`)."""
    names = []
    for name, field in type(params).model_fields.items():
        annotations = [field.annotation, *typing.get_args(field.annotation)]
        markers = list(field.metadata)
        for annotation in annotations:
            if typing.get_origin(annotation) is Annotated:
                markers += list(annotation.__metadata__)
        if any(isinstance(m, _RelativeToManifest) for m in markers):
            names.append(name)
    return names


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

    - `keys(docs)` runs per shard and returns a table with a `key` (uint64) column plus
      whatever the decision needs (e.g. `row`, the document's position in the shard).
      The executor adds `shard` (int32) and splits rows into partitions by `key` range.
    - `decide(keys)` runs once per partition, on the keys of that partition from every
      shard. Memory is bounded by the partition, not the corpus. It returns either
      per-shard decisions (a table with a `shard` column: each shard's `apply` gets its
      own rows) or global ones (no `shard` column, e.g. a set of duplicate hashes: every
      `apply` gets the decisions of all partitions, concatenated in partition order,
      which is ascending `key` range order).
    - `resolve(decisions, documents, stats)`, for stages that set `needs_resolve`, runs
      once over every partition's decisions (e.g. candidate pairs -> clusters) and
      returns per-shard decisions; `documents(shard)` re-reads a shard's input when the
      decision needs text (exact-Jaccard checks).
    - `apply(docs, decisions, stats)` runs per shard.

    Decisions must depend only on the data (e.g. keep the smallest id), never on
    scheduling, so any number of workers gives the same bytes.
    """

    partitions: ClassVar[int] = 16
    needs_resolve: ClassVar[bool] = False

    def keys(self, docs: Iterator[Document], stats: Stats) -> pa.Table:
        raise NotImplementedError

    def decide(self, keys: pa.Table, stats: Stats) -> pa.Table:
        raise NotImplementedError

    def resolve(
        self,
        decisions: pa.Table,
        documents: Callable[[int], Iterator[Document]],
        stats: Stats,
    ) -> pa.Table:
        raise NotImplementedError

    def apply(
        self, docs: Iterator[Document], decisions: pa.Table, stats: Stats
    ) -> Iterator[Document]:
        raise NotImplementedError

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        """In-process run over one stream, for tests and small corpora: same code path."""
        materialised = list(docs)
        keys = self.keys(iter(materialised), stats)
        keys = keys.append_column("shard", pa.array([0] * keys.num_rows, pa.int32()))
        decisions = self.decide(keys, stats)
        if self.needs_resolve:
            decisions = self.resolve(decisions, lambda _shard: iter(materialised), stats)
        return self.apply(iter(materialised), in_shard_order(decisions), stats)


def in_shard_order(decisions: pa.Table) -> pa.Table:
    """Per-shard decisions sorted by (shard, row), so each apply reads one contiguous run
    and sees its rows in document order; global decisions stay as `decide` made them."""
    if "shard" not in decisions.column_names:
        return decisions
    order = [c for c in ("shard", "row") if c in decisions.column_names]
    return decisions.sort_by([(column, "ascending") for column in order])


class Sink(Component):
    """Writes a source's final documents in a format of its own (token shards), one
    output per shard, instead of the Parquet a stage's documents go to.

    The engine appends a sink after a source's last step when a tool asks for it (e.g.
    `llamix tokenize`), and runs it like any other step: one task per shard, resumable,
    retried, its completion record holding the summary `write` returns.
    """

    def write(self, docs: Iterator[Document], prefix: str, stats: Stats) -> dict[str, Any]:
        """Writes the shard's outputs under `prefix` (atomically) and returns a JSON-able
        summary of them (file names, counts) for the caller to collect."""
        raise NotImplementedError


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


@dataclass(frozen=True)
class Command:
    """A `llamix` subcommand that a stage family adds, e.g. `llamix lm train`.

    The CLI builds its parser from this registry, so stage families bring their own
    tools (model training, calibration) without the engine importing them by name.
    """

    name: str  # "lm train": a group and a verb, or a single word
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


STAGES: dict[str, type[Stage]] = {}
READERS: dict[str, type[Reader]] = {}
COMMANDS: dict[str, Command] = {}

C = TypeVar("C", bound=type[Component])


def register_stage(cls: C) -> C:
    return _register(STAGES, cls)


def register_reader(cls: C) -> C:
    return _register(READERS, cls)


def register_command(
    name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Decorates the function that runs a subcommand; `configure` adds its arguments."""

    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in COMMANDS:
            raise ValueError(f"two commands are registered as {name!r}")
        COMMANDS[name] = Command(name, help, configure, run)
        return run

    return decorate


def _register(table: dict[str, Any], cls: C) -> C:
    if cls.name in table and table[cls.name] is not cls:
        raise ValueError(f"two components are registered as {cls.name!r}")
    table[cls.name] = cls
    return cls
