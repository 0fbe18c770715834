"""The training data: `dataset.json` and a weighted, resumable sampler over its token shards.

Each source's shards are read as one token stream (documents back to back, each framed
by BOS/EOS as the tokenize step wrote them), and a training sequence is a window of
`seq_len + 1` tokens at a uniform position in one source, the source drawn by its mixture
weight: packed sequences across document boundaries, as LLaMA and Megatron's GPT
datasets train. The last `eval_windows * (seq_len + 1)` tokens of every source are held
out for evaluation and never sampled.

Window j of step s is a pure function of (seed, s, j): the global batch of a step is the
same for any number of ranks, rank r reads its own slice of it (disjoint from the other
ranks'), and the sampler's whole state is the next step, so a resumed run continues
exactly. `.bin` files are memory-mapped on first use and only a few stay open.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokenizer.shards import TokenShardReader

DATASET_FILE = "dataset.json"
OPEN_SHARDS = 8  # memory maps kept open per source


@dataclass(frozen=True)
class Tokenizer:
    model: Path
    sha256: str
    vocab_size: int
    bos_id: int
    eos_id: int


@dataclass(frozen=True)
class Source:
    name: str
    shards: tuple[Path, ...]  # prefixes of .bin/.idx pairs
    weight: float


@dataclass(frozen=True)
class Dataset:
    """What `dataset.json` says; paths resolved against its directory."""

    root: Path
    manifest_hash: str
    tokenizer: Tokenizer
    dtype: np.dtype
    sources: dict[str, Source]


def load_dataset(directory: str | Path) -> Dataset:
    root = Path(directory)
    path = root / DATASET_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no {DATASET_FILE} in {root}: run `llamix tokenize MANIFEST` to write the token "
            "shards, or pass --dataset DIR"
        )
    raw = json.loads(path.read_text())
    tok = raw["tokenizer"]
    sources = {
        name: Source(
            name,
            tuple(root / prefix for prefix in entry["shards"]),
            float(entry["weight"]),
        )
        for name, entry in raw["sources"].items()
    }
    tokenizer = Tokenizer(
        root / tok["model"],  # an absolute path stays as it is
        tok["sha256"],
        int(tok["vocab_size"]),
        int(tok["bos_id"]),
        int(tok["eos_id"]),
    )
    return Dataset(root, raw["manifest_hash"], tokenizer, np.dtype(raw["dtype"]), sources)


class TokenStream:
    """One source's shards as one flat token array, read through a few lazy memory maps."""

    def __init__(self, shards: tuple[Path, ...], dtype: np.dtype) -> None:
        self.paths: list[Path] = []
        sizes = []
        for prefix in shards:
            reader = TokenShardReader(str(prefix))  # validates the index against the .bin
            if reader.dtype != dtype:
                raise ValueError(f"{prefix}: tokens are {reader.dtype}, dataset.json says {dtype}")
            self.paths.append(Path(f"{prefix}.bin"))
            sizes.append(reader.num_tokens)
        self.dtype = dtype
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._open: OrderedDict[int, np.memmap] = OrderedDict()

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream as int64, across shard boundaries."""
        parts = []
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < stop:
            end = min(stop, int(self.starts[shard + 1]))
            base = int(self.starts[shard])
            parts.append(self._shard(shard)[start - base : end - base])
            start, shard = end, shard + 1
        return np.concatenate(parts).astype(np.int64)

    def _shard(self, i: int) -> np.memmap:
        if i in self._open:
            self._open.move_to_end(i)
        else:
            self._open[i] = np.memmap(self.paths[i], dtype=self.dtype, mode="r")
            if len(self._open) > OPEN_SHARDS:
                self._open.popitem(last=False)
        return self._open[i]


class MixtureSampler:
    """Global batches of `global_batch` windows per step; this rank reads its slice."""

    def __init__(
        self,
        dataset: Dataset,
        seq_len: int,
        global_batch: int,
        *,
        seed: int,
        rank: int = 0,
        world: int = 1,
        eval_windows: int = 16,
    ) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} does not split over {world} ranks")
        weighted = {n: s for n, s in dataset.sources.items() if s.weight > 0}
        if not weighted:
            raise ValueError(f"{dataset.root}: no source has a positive weight")
        self.dataset, self.seq_len, self.global_batch = dataset, seq_len, global_batch
        self.seed, self.rank, self.world = seed, rank, world
        self.eval_windows = eval_windows
        self.names = list(weighted)
        self.streams = [TokenStream(s.shards, dataset.dtype) for s in weighted.values()]
        held_out = eval_windows * (seq_len + 1)
        for name, stream in zip(self.names, self.streams, strict=True):
            if len(stream) < held_out + seq_len + 1:
                raise ValueError(
                    f"source {name} has {len(stream)} tokens, fewer than {held_out + seq_len + 1} "
                    f"({eval_windows} held-out windows and one training window of "
                    f"{seq_len + 1}): add data, shorten seq_len or lower eval_windows"
                )
        self.positions = np.array([len(s) - held_out - seq_len for s in self.streams])
        weights = np.array([s.weight for s in weighted.values()])
        self.cumulative = np.cumsum(weights / weights.sum())
        self.step = 0

    def plan(self, step: int, indices: range) -> tuple[np.ndarray, np.ndarray]:
        """(source index, start) of windows `indices` of a step's global batch. One stream
        of draws per (seed, step); window j takes draws 2j and 2j + 1 of it, so a window
        does not depend on how the batch is cut."""
        draws = np.random.default_rng([self.seed, step]).random((indices.stop, 2))[indices]
        sources = np.minimum(
            np.searchsorted(self.cumulative, draws[:, 0], side="right"), len(self.names) - 1
        )
        starts = (draws[:, 1] * self.positions[sources]).astype(np.int64)
        return sources, starts

    def batch(self, step: int) -> np.ndarray:
        """This rank's windows of a step: (global_batch / world, seq_len + 1) int64."""
        per_rank = self.global_batch // self.world
        indices = range(self.rank * per_rank, (self.rank + 1) * per_rank)
        sources, starts = self.plan(step, indices)
        return np.stack(
            [
                self.streams[s].read(int(o), int(o) + self.seq_len + 1)
                for s, o in zip(sources, starts, strict=True)
            ]
        )

    def next_batch(self) -> np.ndarray:
        windows = self.batch(self.step)
        self.step += 1
        return windows

    def eval_batch(self, source: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's share of a source's held-out windows and a 0/1 weight per window:
        every rank gets the same count (padding has weight 0), so sharded models run the
        same number of forward passes on every rank."""
        per_rank = -(-self.eval_windows // self.world)
        indices = np.arange(per_rank) * self.world + self.rank
        valid = indices < self.eval_windows
        stream = self.streams[source]
        first = len(stream) - self.eval_windows * (self.seq_len + 1)
        windows = [
            stream.read(first + i * (self.seq_len + 1), first + (i + 1) * (self.seq_len + 1))
            for i in np.where(valid, indices, 0)
        ]
        return np.stack(windows), valid.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "global_batch": self.global_batch,
            "manifest_hash": self.dataset.manifest_hash,
            "weights": dict(
                zip(self.names, np.diff(self.cumulative, prepend=0).tolist(), strict=True)
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues where the saved sampler stopped; refuses one over other data or windows."""
        mine = self.state_dict()
        changed = [k for k in mine if k != "step" and state.get(k) != mine[k]]
        if changed:
            diffs = ", ".join(f"{k}: {state.get(k)!r} -> {mine[k]!r}" for k in changed)
            raise ValueError(f"the checkpoint's data differs from this run's ({diffs})")
        self.step = int(state["step"])
