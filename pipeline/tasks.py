"""One unit of work: a (step, shard) pair, or a phase of a global stage. Runs without Ray.

The executor ships a `Task` to a Ray worker and calls `execute` there; tests call it
directly. Every task writes its outputs under temporary names, renames them, and only
then writes its completion record: a record on disk means the outputs are whole.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.document import Document
from pipeline.inputs import InputFile, digest
from pipeline.io import (
    CorruptInput,
    ParquetShardWriter,
    atomic_write_bytes,
    atomic_write_json,
    filesystem,
    iter_parquet,
    join,
    read_json,
)
from pipeline.plan import Step
from pipeline.stats import Stats, Stopwatch
from stages.base import Component, GlobalStage, Reader, Sink, Stage, in_shard_order

Phase = Literal["read", "stage", "map", "reduce", "resolve", "apply", "sink"]


@dataclass(frozen=True)
class Task:
    id: str
    step: Step
    phase: Phase
    index: int  # the shard, or for `reduce` the partition
    done_path: str
    deps: tuple[str, ...] = ()
    input_file: InputFile | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return digest(self.step.key, self.phase)


def input_fingerprint(task: Task, dep_outputs: list[str]) -> str:
    """What the task reads, as a hash: the input file's stamp, or its dependencies' outputs."""
    if task.input_file is not None:
        return digest(task.input_file.name, task.input_file.fingerprint)
    return digest(*dep_outputs)


def output_fingerprint(task: Task, input_fp: str) -> str:
    """Outputs are a pure function of the task's key and its input, so this names them."""
    return digest(task.key, input_fp)


def record_matches(record: dict[str, Any] | None, task: Task, input_fp: str) -> bool:
    return record is not None and record.get("key") == task.key and record.get("input") == input_fp


def load_record(task: Task) -> dict[str, Any] | None:
    fs, inner = filesystem(task.done_path)
    if not fs.exists(inner):
        return None
    try:
        return read_json(task.done_path)
    except ValueError:
        return None


_PREPARED: dict[str, Component] = {}


def prepared(step: Step) -> Component:
    """The step's component with `setup()` done, once per worker process."""
    component = _PREPARED.get(step.key)
    if component is None:
        component = step.component
        component.setup()
        _PREPARED[step.key] = component
    return component


class PeakMemory:
    """The largest resident set size of this process while a `with` block runs.

    Sampled by a thread every `interval` seconds: Ray reuses worker processes, so the
    kernel's lifetime maximum (`ru_maxrss`) would report the worst task so far instead.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        process = psutil.Process()
        while True:
            self.peak = max(self.peak, process.memory_info().rss)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def execute(task: Task, input_fp: str, run_id: str) -> dict[str, Any]:
    """Runs one task to completion and writes its record; returns the record."""
    stats = Stats()
    started = time.time()
    result: dict[str, Any] | None = None
    with Stopwatch(stats), PeakMemory() as memory:
        component = prepared(task.step)
        if task.phase == "read":
            assert isinstance(component, Reader) and task.input_file is not None
            _run_read(task, component, task.input_file, stats)
        elif task.phase == "stage":
            assert isinstance(component, Stage)
            _write_shard(task, component.process(_counted(_upstream(task), stats), stats), stats)
        elif task.phase == "map":
            assert isinstance(component, GlobalStage)
            _run_map(task, component, stats)
        elif task.phase == "reduce":
            assert isinstance(component, GlobalStage)
            _run_reduce(task, component, stats)
        elif task.phase == "resolve":
            assert isinstance(component, GlobalStage)
            _run_resolve(task, component, stats)
        elif task.phase == "sink":
            assert isinstance(component, Sink)
            docs = _counted(_upstream(task), stats)
            result = component.write(docs, task.step.prefix(task.index), stats)
        else:
            assert isinstance(component, GlobalStage)
            _run_apply(task, component, stats)
    record = {
        "task": task.id,
        "key": task.key,
        "input": input_fp,
        "output": output_fingerprint(task, input_fp),
        "stats": stats.to_dict(),
        "run_id": run_id,
        "started_at": started,
        "finished_at": time.time(),
        "host": socket.gethostname(),
        "node_ip": os.environ.get("LLAMIX_NODE_IP") or _node_ip(),
        "pid": os.getpid(),
        "peak_rss_bytes": memory.peak,
    }
    if result is not None:
        record["result"] = result
    atomic_write_json(task.done_path, record)
    return record


def _node_ip() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:
        pass
    return "local"


def _upstream(task: Task) -> Iterator[Document]:
    return iter_parquet(task.extra["input_part"])


def _counted(docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
    for doc in docs:
        stats.docs_in += 1
        stats.bytes_in += len(doc.text.encode("utf-8"))
        yield doc


def _write_shard(task: Task, docs: Iterator[Document], stats: Stats) -> None:
    with ParquetShardWriter(task.step.part(task.index)) as writer:
        for doc in docs:
            writer.write(doc)
    stats.docs_out += writer.documents
    stats.bytes_out += writer.text_bytes


def _run_read(task: Task, reader: Reader, source_file: InputFile, stats: Stats) -> None:
    def documents() -> Iterator[Document]:
        if source_file.missing:
            stats.drop("read:missing_path")
            return
        try:
            yield from reader.read(source_file.path, source_file.name, task.step.source, stats)
        except CorruptInput as err:
            stats.drop(err.reason)
        except FileNotFoundError:
            stats.drop("read:missing_path")
        except OSError:
            stats.drop("read:unreadable_file")

    _write_shard(task, documents(), stats)
    stats.docs_in = stats.docs_out + stats.dropped
    stats.bytes_in = stats.bytes_out


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """Splits the uint64 key space into `partitions` equal ranges."""
    return ((keys >> np.uint64(32)) * np.uint64(partitions)) >> np.uint64(32)


def _run_map(task: Task, stage: GlobalStage, stats: Stats) -> None:
    keys = stage.keys(_counted(_upstream(task), stats), stats)
    keys = keys.append_column("shard", pa.array(np.full(keys.num_rows, task.index, np.int32)))
    parts = partition_of(keys.column("key").to_numpy(), stage.partitions)
    for partition in range(stage.partitions):
        chunk = keys.filter(pa.array(parts == partition))
        _write_table(join(task.extra["map_dir"], f"p-{partition:05d}.parquet"), chunk)
    stats.docs_out = stats.docs_in


def _run_reduce(task: Task, stage: GlobalStage, stats: Stats) -> None:
    tables = [_read_table(path) for path in task.extra["map_parts"]]
    if not tables:  # a source without input files
        _write_table(task.extra["decisions"], pa.table({"shard": pa.array([], pa.int32())}))
        return
    keys = pa.concat_tables(tables)
    stats.count(f"{stage.name}:keys", keys.num_rows)
    decisions = in_shard_order(stage.decide(keys, stats))
    stats.count(f"{stage.name}:decisions", decisions.num_rows)
    _write_table(task.extra["decisions"], decisions)


def _run_resolve(task: Task, stage: GlobalStage, stats: Stats) -> None:
    decisions = pa.concat_tables(
        [_read_table(path) for path in task.extra["decision_parts"]], promote_options="default"
    )
    inputs = task.extra["input_parts"]
    resolved = stage.resolve(decisions, lambda shard: iter_parquet(inputs[shard]), stats)
    stats.count(f"{stage.name}:decisions", resolved.num_rows)
    _write_table(task.extra["decisions"], in_shard_order(resolved))


def _run_apply(task: Task, stage: GlobalStage, stats: Stats) -> None:
    """Reads this shard's decisions, or every decision when they are not per shard."""
    parts = []
    for path in task.extra["decision_parts"]:
        fs, inner = filesystem(path)
        per_shard = "shard" in pq.read_schema(inner, filesystem=fs).names
        parts.append(_read_table(path, [("shard", "=", task.index)] if per_shard else None))
    decisions = pa.concat_tables(parts)
    _write_shard(task, stage.apply(_counted(_upstream(task), stats), decisions, stats), stats)


def _write_table(path: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _read_table(path: str, filters: list[tuple[str, str, Any]] | None = None) -> pa.Table:
    fs, inner = filesystem(path)
    return pq.read_table(inner, filesystem=fs, filters=filters)


def completed(tasks: list[Task]) -> dict[str, dict[str, Any]]:
    """The records of tasks already done for the current plan, without running anything.

    A task counts as done only if its record matches its key and the outputs of its
    dependencies as they are now, so a changed parameter upstream shows as not done.
    """
    outputs: dict[str, str] = {}
    done: dict[str, dict[str, Any]] = {}
    for task in tasks:
        if any(dep not in outputs for dep in task.deps):
            continue
        input_fp = input_fingerprint(task, [outputs[d] for d in task.deps])
        record = load_record(task)
        if record_matches(record, task, input_fp):
            assert record is not None
            outputs[task.id] = output_fingerprint(task, input_fp)
            done[task.id] = record
    return done
