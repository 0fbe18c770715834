"""The tokenizer's training sample: lines drawn from each source by the mixture weights.

Each source gets `weight / sum(weights) * size` of the sample (characters or lines). Its
documents are ranked by a keyed hash of their id, and the sample takes them in that
order until the source's share is full (the last one cut at a line). A document's rank
depends only on its id and the seed, so the sample is the same whatever the number of
workers, the shard order or the reading order. A worker keeps only the lowest-ranked
documents of its shard that could still be chosen: memory is about twice the sample,
plus, per worker, at most one shard's text or twice its source's share, the smaller.

SentencePiece's "sentences" are lines: a document gives its non-blank lines, each cut at
spaces into pieces of at most `max_sentence_length` UTF-8 bytes, since SentencePiece
skips a longer line whole.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow.parquet as pq

from pipeline.io import filesystem

Unit = Literal["chars", "sentences"]
Key = tuple[int, str, tuple[str, ...]]  # (rank, id, lines): the total order of the sample


def sentences_of(text: str, max_bytes: int) -> Iterator[str]:
    """The non-blank lines of `text`, long ones cut into pieces of at most `max_bytes`."""
    for line in text.split("\n"):
        if not line.strip():
            continue
        if len(line) * 4 <= max_bytes or len(line.encode("utf-8")) <= max_bytes:
            yield line
        else:
            yield from _cut(line.encode("utf-8"), max_bytes)


def _cut(data: bytes, max_bytes: int) -> Iterator[str]:
    """Cuts at the last space of each `max_bytes` window, dropping that space (the next
    piece's dummy prefix stands for it); a window without a space is cut between two
    characters."""
    while len(data) > max_bytes:
        end = data.rfind(b" ", 0, max_bytes + 1)
        if end > 0:
            head, data = data[:end], data[end + 1 :]
        else:
            end = max_bytes
            while data[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte: step back
                end -= 1
            head, data = data[:end], data[end:]
        if head.strip():
            yield head.decode("utf-8")
    if data.strip():
        yield data.decode("utf-8")


def rank(seed: int, doc_id: str) -> int:
    """A document's place in its source's sampling order: a keyed 64-bit hash of its id."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "big"))
    return int.from_bytes(digest.digest(), "big")


@dataclass(frozen=True)
class Candidate:
    """A document that may be in the sample, with its lines and its size in the unit."""

    rank: int
    doc_id: str
    lines: tuple[str, ...]
    size: int

    @property
    def key(self) -> Key:
        # Ties (two documents with one id) are broken by content, never by arrival order.
        return (self.rank, self.doc_id, self.lines)


@dataclass
class Reservoir:
    """The lowest-ranked documents whose sizes add up to at least `budget`.

    Candidates pile up until they hold twice the budget, then are sorted and cut back to
    the budget; `threshold` is then the key past which nothing can be chosen any more.
    Merging two reservoirs of the same source gives the reservoir of both inputs.
    """

    budget: int
    unit: Unit
    held: list[Candidate] = field(default_factory=list)
    total: int = 0
    threshold: Key | None = None
    documents_read: int = 0

    def wants(self, doc_rank: int) -> bool:
        """Whether a document of this rank could still be chosen (cheap: no text needed)."""
        return self.threshold is None or doc_rank <= self.threshold[0]

    def offer(self, doc_rank: int, doc_id: str, text: str, max_bytes: int) -> None:
        lines = tuple(sentences_of(text, max_bytes))
        if not lines:
            return
        size = len(lines) if self.unit == "sentences" else sum(map(len, lines))
        candidate = Candidate(doc_rank, doc_id, lines, size)
        if self.threshold is not None and candidate.key > self.threshold:
            return
        self.held.append(candidate)
        self.total += size
        if self.total >= 2 * self.budget:
            self._prune()

    def merge(self, other: Reservoir) -> None:
        self.held += other.held
        self.total += other.total
        self.documents_read += other.documents_read
        self._prune()

    def _prune(self) -> None:
        self.held.sort(key=lambda c: c.key)
        total = 0
        for index, candidate in enumerate(self.held):
            total += candidate.size
            if total >= self.budget:
                del self.held[index + 1 :]
                self.threshold = candidate.key
                break
        self.total = total

    def chosen(self) -> list[tuple[str, tuple[str, ...]]]:
        """The sample's documents as (id, lines), in rank order; the last one cut at the
        line that fills the budget."""
        self._prune()
        out: list[tuple[str, tuple[str, ...]]] = []
        total = 0
        for candidate in self.held:
            lines: list[str] = []
            for line in candidate.lines:
                lines.append(line)
                total += 1 if self.unit == "sentences" else len(line)
                if total >= self.budget:
                    break
            out.append((candidate.doc_id, tuple(lines)))
            if total >= self.budget:
                break
        return out


def sample_shard(
    path: str,
    budget: int,
    unit: Unit,
    seed: int,
    max_bytes: int,
    threshold: Key | None = None,
    batch_rows: int = 1024,
) -> Reservoir:
    """The candidates of one Parquet shard (columns `id` and `text`). A document ranked
    past `threshold` (the source's cut so far) or out of reach within the shard is skipped
    without its text being decoded."""
    reservoir = Reservoir(budget, unit, threshold=threshold)
    fs, inner = filesystem(path)
    with fs.open(inner, "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(
            batch_size=batch_rows, columns=["id", "text"]
        ):
            texts = batch.column("text")
            for row, doc_id in enumerate(batch.column("id").to_pylist()):
                reservoir.documents_read += 1
                doc_rank = rank(seed, doc_id)
                if reservoir.wants(doc_rank):
                    reservoir.offer(doc_rank, doc_id, texts[row].as_py(), max_bytes)
    return reservoir


@dataclass(frozen=True)
class SourceSample:
    """One source's part of the sample and what it was asked for."""

    name: str
    weight: float
    budget: int
    unit: Unit
    shards: int
    documents_read: int
    documents: tuple[tuple[str, tuple[str, ...]], ...]

    def stats(self) -> dict[str, Any]:
        lines = [line for _, doc in self.documents for line in doc]
        drawn = len(lines) if self.unit == "sentences" else sum(map(len, lines))
        return {
            "weight": self.weight,
            "budget": self.budget,
            "unit": self.unit,
            "shards": self.shards,
            "documents_read": self.documents_read,
            "documents": len(self.documents),
            "lines": len(lines),
            "chars": sum(map(len, lines)),
            "bytes": sum(len(line.encode("utf-8")) for line in lines),
            # A source smaller than its share gives all it has; the rest is not
            # redistributed, so the sample's proportions stay honest.
            "exhausted": drawn < self.budget,
        }


@dataclass(frozen=True)
class MixtureSample:
    sources: tuple[SourceSample, ...]

    def sentences(self) -> Iterator[str]:
        """Every line of the sample: sources by name, documents by rank."""
        for source in self.sources:
            for _, lines in source.documents:
                yield from lines

    def stats(self) -> dict[str, Any]:
        per_source = {s.name: s.stats() for s in self.sources}
        totals = {
            key: sum(s[key] for s in per_source.values())
            for key in ("documents", "lines", "chars", "bytes")
        }
        return {"sources": per_source, **totals}


def source_budgets(weights: Mapping[str, float], size: int) -> dict[str, int]:
    """Each source's share of `size`, by its weight over the sum of the weights."""
    total = sum(weights.values())
    return {name: max(1, round(size * weight / total)) for name, weight in weights.items()}


def draw_sample(
    shards: Mapping[str, Sequence[str]],
    weights: Mapping[str, float],
    size: int,
    unit: Unit = "chars",
    *,
    seed: int = 0,
    max_sentence_bytes: int = 4192,
    workers: int = 1,
    on_shard: Callable[[str, str], None] | None = None,
) -> MixtureSample:
    """Draws `size` characters (or lines) from the Parquet `shards` of each source.

    One task per shard on `workers` processes; each task starts from its source's cut so
    far, which only spares work: the sample does not depend on `workers` or on the order
    tasks finish. `on_shard(source, path)` is called as each shard is merged, for progress.
    """
    budgets = source_budgets(weights, size)
    merged = {name: Reservoir(budgets[name], unit) for name in shards}

    def arguments(name: str, path: str) -> tuple[Any, ...]:
        return (path, budgets[name], unit, seed, max_sentence_bytes, merged[name].threshold)

    tasks = [(name, path) for name in sorted(shards) for path in shards[name]]
    for name, path, reservoir in _shard_results(tasks, arguments, workers):
        merged[name].merge(reservoir)
        if on_shard is not None:
            on_shard(name, path)
    return MixtureSample(
        tuple(
            SourceSample(
                name=name,
                weight=weights[name],
                budget=budgets[name],
                unit=unit,
                shards=len(shards[name]),
                documents_read=merged[name].documents_read,
                documents=tuple(merged[name].chosen()),
            )
            for name in sorted(shards)
        )
    )


def _shard_results(
    tasks: list[tuple[str, str]],
    arguments: Callable[[str, str], tuple[Any, ...]],
    workers: int,
) -> Iterator[tuple[str, str, Reservoir]]:
    """Runs `sample_shard` per task, in order, at most `workers` ahead of the caller,
    so each task is built from the thresholds its predecessors tightened. Workers are
    spawned, not forked: a forked copy of a process running Ray or PyTorch is not safe."""
    if workers <= 1:
        for name, path in tasks:
            yield name, path, sample_shard(*arguments(name, path))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        queue: deque[tuple[str, str, Future[Reservoir]]] = deque()
        for name, path in tasks:
            queue.append((name, path, pool.submit(sample_shard, *arguments(name, path))))
            if len(queue) >= workers:
                done_name, done_path, future = queue.popleft()
                yield done_name, done_path, future.result()
        while queue:
            done_name, done_path, future = queue.popleft()
            yield done_name, done_path, future.result()
