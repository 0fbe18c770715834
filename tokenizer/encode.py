"""The tokenize step: every source's final documents -> Megatron token shards + dataset.json.

`llamix tokenize MANIFEST` runs the manifest's plan (finished steps are reused, as in
`llamix run`), then one `tokenize` task per processed shard on Ray: documents are
encoded in batches with SentencePiece, framed with BOS/EOS, and written as `.bin`/`.idx`
shards under `OUT/dataset/<source>/part-XXXXX/`. The step is keyed by the tokenizer
file's stamp and its parameters, so it is resumable and reruns only when they change.
`OUT/dataset/dataset.json` then says what is in the shards and in what proportions.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import sentencepiece as spm
from pydantic import Field

from pipeline.document import Document
from pipeline.executor import build_tasks, progress_printer, run_tasks
from pipeline.io import atomic_write_json, join
from pipeline.manifest import Run, load_manifest
from pipeline.plan import Plan, build_plan, with_sink
from pipeline.stats import Stats
from stages.base import ManifestPath, Params, Sink, register_command
from tokenizer.mixture import effective_proportions
from tokenizer.shards import DEFAULT_TARGET_BYTES, ShardSetWriter, token_dtype

DATASET_DIR = "dataset"
DATASET_FILE = "dataset.json"


class TokenizeParams(Params):
    model: ManifestPath = Field(description="The SentencePiece `tokenizer.model`.")
    add_bos: bool = Field(True, description="Start every document with BOS.")
    add_eos: bool = Field(True, description="End every document with EOS.")
    target_shard_bytes: int = Field(
        DEFAULT_TARGET_BYTES, gt=0, description="Start a new .bin once one reaches this size."
    )
    batch_documents: int = Field(256, gt=0, description="Documents per encode call.")
    chunk_chars: int = Field(
        1 << 22,
        gt=0,
        description="Longer documents are encoded this many characters at a time, cut "
        "after a line break, so memory stays flat.",
    )
    num_threads: int = Field(
        1, ge=1, description="SentencePiece threads per task (Ray already runs one per CPU)."
    )


class TokenizeSink(Sink):
    """Encodes one processed shard into token shards; returns what it wrote."""

    name: ClassVar[str] = "tokenize"
    Params = TokenizeParams

    def setup(self) -> None:
        self.processor = spm.SentencePieceProcessor(model_file=self.params.model)

    def write(self, docs: Iterator[Document], prefix: str, stats: Stats) -> dict[str, Any]:
        p = self.params
        sp = self.processor
        head = [sp.bos_id()] if p.add_bos else []
        tail = [sp.eos_id()] if p.add_eos else []
        if -1 in head + tail:
            raise ValueError(f"{p.model} defines no BOS/EOS id; set add_bos/add_eos to false")
        text_bytes = 0
        with ShardSetWriter(prefix, sp.vocab_size(), p.target_shard_bytes) as writer:
            while batch := list(islice(docs, p.batch_documents)):
                for doc, tokens in zip(batch, self._encode(batch), strict=True):
                    writer.add_document(head + tokens + tail, doc.id)
                    text_bytes += len(doc.text.encode("utf-8"))
                stats.docs_out += len(batch)
        stats.count("tokenize:tokens", writer.tokens)
        stats.bytes_out += text_bytes
        return {
            "documents": writer.documents,
            "tokens": writer.tokens,
            "text_bytes": text_bytes,
            "shards": writer.prefixes,
        }

    def _encode(self, batch: list[Document]) -> list[list[int]]:
        """One batched encode call for the batch's short texts; long ones chunk by chunk."""
        limit = self.params.chunk_chars
        short = [doc.text for doc in batch if len(doc.text) <= limit]
        encoded = iter(self.processor.encode(short, num_threads=self.params.num_threads))
        out = []
        for doc in batch:
            if len(doc.text) <= limit:
                out.append(next(encoded))
            else:
                chunks = self.processor.encode(list(_chunks(doc.text, limit)), num_threads=1)
                out.append([token for chunk in chunks for token in chunk])
        return out


def _chunks(text: str, limit: int) -> Iterator[str]:
    """Pieces of at most `limit` characters, cut after a line break where there is one.

    Each piece is encoded as SentencePiece encodes a separate text (with its dummy
    prefix), so tokens at a cut can differ from encoding the document whole; documents
    under `chunk_chars` (4M characters by default) never are cut.
    """
    start = 0
    while start < len(text):
        end = min(start + limit, len(text))
        if end < len(text):
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        yield text[start:end]
        start = end


def tokenize(
    run: Run,
    model: str,
    *,
    output: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Runs the plan and the tokenize step; writes and returns dataset.json."""
    sink = TokenizeSink(TokenizeParams(model=model, **params))
    plan = with_sink(build_plan(run, output), sink, sink.name, DATASET_DIR)
    tasks = build_tasks(plan)
    printer = progress_printer(plan, tasks) if progress else None
    outcome = run_tasks(tasks, workers, address, printer)
    results: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        if task.phase == "sink":
            results.setdefault(task.step.source, []).append(outcome.records[task.id]["result"])
    dataset = describe_dataset(plan, model, results)
    atomic_write_json(join(plan.output, DATASET_DIR, DATASET_FILE), dataset)
    return dataset


def describe_dataset(
    plan: Plan, model: str, results: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """dataset.json: the tokenizer, the dtype, and per source what its shards hold."""
    root = join(plan.output, DATASET_DIR)
    processor = spm.SentencePieceProcessor(model_file=model)
    vocab_size = processor.vocab_size()
    mixture = plan.run.manifest.mixture
    weights = {s: mixture[s].weight if s in mixture else 1.0 for s in results}
    epochs = {s: mixture[s].epochs if s in mixture else 1.0 for s in results}
    sources: dict[str, dict[str, Any]] = {}
    for source, parts in results.items():
        sources[source] = {
            "documents": sum(p["documents"] for p in parts),
            "tokens": sum(p["tokens"] for p in parts),
            "text_bytes": sum(p["text_bytes"] for p in parts),
            "shards": [os.path.relpath(s, root) for p in parts for s in p["shards"]],
            "weight": weights[source],
            "epochs": epochs[source],
        }
    tokens = {s: entry["tokens"] for s, entry in sources.items()}
    read = any(tokens[s] for s in sources if weights[s] > 0)
    shares = effective_proportions(weights, epochs, tokens) if read else dict.fromkeys(sources, 0.0)
    for source, share in shares.items():
        sources[source]["effective_proportion"] = share
    return {
        "manifest_hash": plan.run.hash,
        "tokenizer": {
            "model": os.path.abspath(model),
            "sha256": hashlib.sha256(Path(model).read_bytes()).hexdigest(),
            "vocab_size": vocab_size,
            "bos_id": processor.bos_id(),
            "eos_id": processor.eos_id(),
        },
        "dtype": token_dtype(vocab_size).name,
        "sources": sources,
    }


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest YAML")
    parser.add_argument("--out", help="run directory (default: the manifest's `output`)")
    parser.add_argument("--model", help="tokenizer.model (default: OUT/tokenizer/tokenizer.model)")
    parser.add_argument("--workers", type=int, help="tasks in flight (default: every CPU)")
    parser.add_argument("--address", help="join this Ray cluster (default: embedded Ray)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


@register_command(
    "tokenize",
    "encode every source's final documents into Megatron token shards + dataset.json",
    _configure,
)
def _tokenize_command(args: argparse.Namespace) -> int:
    run = load_manifest(args.manifest)
    output = args.out or run.output
    model = args.model or join(output, "tokenizer", "tokenizer.model")
    if not Path(model).exists():
        raise FileNotFoundError(f"{model} not found: run `llamix tokenizer train` or pass --model")
    spec = run.manifest.dataset
    params = {"add_bos": spec.add_bos, "add_eos": spec.add_eos} if spec else {}
    dataset = tokenize(
        run,
        model,
        output=output,
        workers=args.workers,
        address=args.address,
        progress=not args.quiet,
        **params,
    )
    for source, entry in dataset["sources"].items():
        print(
            f"{source:<16} {entry['documents']:>10} docs {entry['tokens']:>14} tokens "
            f"{len(entry['shards']):>4} shards  proportion {entry['effective_proportion']:.3f}"
        )
    print(f"dataset written to {join(output, DATASET_DIR, DATASET_FILE)}", file=sys.stderr)
    return 0
