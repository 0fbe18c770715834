"""Counters every task fills in and the run merges: documents, bytes, drop reasons, time."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Samples are for a person to read in the report, so a long list is cut, not merged whole.
SAMPLE_LIMIT = 50


@dataclass
class Stats:
    """What one task (or, merged, one step) did.

    For every step `docs_in == docs_out + sum(drops.values())`. Stages call `drop()` with
    a `stage:reason` name; readers also count unreadable files and records there, so
    nothing disappears without a named reason.
    """

    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    drops: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    histograms: dict[str, Counter[str]] = field(default_factory=dict)
    marks: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: dict[str, list[Any]] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.drops[reason] += count

    def count(self, name: str, amount: int = 1) -> None:
        """Free-form counters a stage wants in the report (e.g. `ccnet:lines_removed`)."""
        self.counters[name] += amount

    def histogram(self, name: str, bucket: str | float, amount: int = 1) -> None:
        """Counts one observation in a named histogram, which the report plots.

        Buckets are the caller's choice (a language code, a rounded log-perplexity), so
        histograms merge across tasks by plain addition.
        """
        self.histograms.setdefault(name, Counter())[str(bucket)] += amount

    def mark(self, histogram: str, label: str, value: float) -> None:
        """A labelled value the report draws on a histogram (e.g. a perplexity cutoff)."""
        self.marks.setdefault(histogram, {})[label] = value

    def sample(self, name: str, item: Any) -> None:
        """A JSON-able example the report lists (e.g. a cluster of near-duplicate ids)."""
        items = self.samples.setdefault(name, [])
        if len(items) < SAMPLE_LIMIT:
            items.append(item)

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def merge(self, other: Stats) -> Stats:
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.drops.update(other.drops)
        return self.merge_findings(other)

    def merge_findings(self, other: Stats) -> Stats:
        """Time, counters, histograms, marks and samples, but not the document counts: a
        global stage's map and reduce phases see the step's documents again."""
        self.seconds += other.seconds
        self.counters.update(other.counters)
        for name, buckets in other.histograms.items():
            self.histograms.setdefault(name, Counter()).update(buckets)
        for name, labels in other.marks.items():
            self.marks.setdefault(name, {}).update(labels)
        for name, items in other.samples.items():
            for item in items:
                self.sample(name, item)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "docs_in": self.docs_in,
            "docs_out": self.docs_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 6),
            "drops": dict(sorted(self.drops.items())),
            "counters": dict(sorted(self.counters.items())),
            "histograms": {
                name: dict(sorted(buckets.items()))
                for name, buckets in sorted(self.histograms.items())
            },
            "marks": {name: dict(sorted(m.items())) for name, m in sorted(self.marks.items())},
            "samples": dict(sorted(self.samples.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        return cls(
            docs_in=data["docs_in"],
            docs_out=data["docs_out"],
            bytes_in=data["bytes_in"],
            bytes_out=data["bytes_out"],
            seconds=data["seconds"],
            drops=Counter(data["drops"]),
            counters=Counter(data.get("counters", {})),
            histograms={k: Counter(v) for k, v in data.get("histograms", {}).items()},
            marks={k: dict(v) for k, v in data.get("marks", {}).items()},
            samples={k: list(v) for k, v in data.get("samples", {}).items()},
        )


class Stopwatch:
    """Adds the wall time of a `with` block to `stats.seconds`."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stats.seconds += time.perf_counter() - self._start
