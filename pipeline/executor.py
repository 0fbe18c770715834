"""Runs a plan on Ray: one task per (step, shard), pipelined, resumable, retried.

A shard flows to its next step as soon as it is written; only global stages wait for
every shard of the step before them. At most `workers` tasks are in flight, so
`--workers` caps parallelism on a laptop and on a cluster alike. A task whose worker
dies is retried by Ray; because every output is written atomically and named by its
inputs, a retry, a resumed run and an uninterrupted run give the same bytes.
"""

from __future__ import annotations

import heapq
import logging
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.inputs import InputFile
from pipeline.io import join
from pipeline.plan import Plan, Step
from pipeline.tasks import (
    Task,
    execute,
    input_fingerprint,
    load_record,
    record_matches,
)

TASK_RETRIES = 3


class TaskFailed(RuntimeError):
    """A task raised an error (a bug, a bad model), or its worker died on every retry."""


def build_tasks(plan: Plan) -> list[Task]:
    """Every task of the plan, dependencies first."""
    tasks: list[Task] = []
    for source in plan.inputs:
        upstream: list[Task] = []
        for step in plan.steps_of(source):
            if step.is_read:
                current = [_read_task(step, i, f) for i, f in enumerate(plan.inputs[source])]
            elif step.is_global:
                current = _global_tasks(step, upstream)
            elif step.is_sink:
                current = [
                    _stage_task(step, i, upstream[i], phase="sink") for i in range(step.shards)
                ]
            else:
                current = [_stage_task(step, i, upstream[i]) for i in range(step.shards)]
            tasks += current
            upstream = current[-step.shards :] if step.shards else []
    return tasks


def _read_task(step: Step, shard: int, input_file: InputFile) -> Task:
    return Task(
        id=f"{step.label}/part-{shard:05d}",
        step=step,
        phase="read",
        index=shard,
        done_path=step.done_record(shard),
        input_file=input_file,
    )


def _stage_task(step: Step, shard: int, upstream: Task, phase: str = "stage", **extra: Any) -> Task:
    return Task(
        id=f"{step.label}/part-{shard:05d}",
        step=step,
        phase=phase,  # type: ignore[arg-type]
        index=shard,
        done_path=step.done_record(shard),
        deps=(upstream.id, *extra.pop("more_deps", ())),
        extra={"input_part": _output_of(upstream), **extra},
    )


def _output_of(task: Task) -> str:
    return task.step.part(task.index)


def _global_tasks(step: Step, upstream: list[Task]) -> list[Task]:
    stage = step.component
    partitions: int = stage.partitions  # type: ignore[attr-defined]
    map_root = join(step.directory, "_map")
    reduce_root = join(step.directory, "_reduce")
    maps = [
        Task(
            id=f"{step.label}/map/part-{shard:05d}",
            step=step,
            phase="map",
            index=shard,
            done_path=join(map_root, "_done", f"part-{shard:05d}.json"),
            deps=(upstream[shard].id,),
            extra={
                "input_part": _output_of(upstream[shard]),
                "map_dir": join(map_root, f"part-{shard:05d}"),
            },
        )
        for shard in range(step.shards)
    ]
    reduces = [
        Task(
            id=f"{step.label}/reduce/p-{p:05d}",
            step=step,
            phase="reduce",
            index=p,
            done_path=join(reduce_root, "_done", f"p-{p:05d}.json"),
            deps=tuple(m.id for m in maps),
            extra={
                "map_parts": [join(m.extra["map_dir"], f"p-{p:05d}.parquet") for m in maps],
                "decisions": join(reduce_root, f"p-{p:05d}.parquet"),
            },
        )
        for p in range(partitions)
    ]
    resolves: list[Task] = []
    if stage.needs_resolve:  # type: ignore[attr-defined]
        resolve_root = join(step.directory, "_resolve")
        resolves = [
            Task(
                id=f"{step.label}/resolve",
                step=step,
                phase="resolve",
                index=0,
                done_path=join(resolve_root, "_done", "part-00000.json"),
                deps=tuple(r.id for r in reduces),
                extra={
                    "decision_parts": [r.extra["decisions"] for r in reduces],
                    "input_parts": [_output_of(u) for u in upstream],
                    "decisions": join(resolve_root, "decisions.parquet"),
                },
            )
        ]
    deciders = resolves or reduces
    applies = [
        _stage_task(
            step,
            shard,
            upstream[shard],
            phase="apply",
            more_deps=[d.id for d in deciders],
            decision_parts=[d.extra["decisions"] for d in deciders],
        )
        for shard in range(step.shards)
    ]
    return [*maps, *reduces, *resolves, *applies]


@dataclass
class Outcome:
    """What happened to every task: its record, and whether this run executed it."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: set[str] = field(default_factory=set)
    reused: set[str] = field(default_factory=set)


def connect(address: str | None, workers: int | None) -> int:
    """Joins the cluster at `address` (or RAY_ADDRESS), else starts an embedded Ray.

    Returns how many tasks to keep in flight: `workers`, or by default every CPU of the
    cluster (of this machine, for the embedded Ray). The embedded Ray listens on loopback
    only and starts no dashboard: on Linux Ray otherwise advertises, and listens on, the
    machine's network address.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address or _is_loopback(address):
        _keep_on_loopback()
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        else:
            ray.init(
                num_cpus=workers or os.cpu_count() or 1,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
    return workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)


def _is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _keep_on_loopback() -> None:
    """Stops Ray from replacing 127.0.0.1 by the machine's address.

    Without it, an embedded Ray listens on every interface, and a driver given
    `--address 127.0.0.1:PORT` connects to the machine's address instead. Ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when it is imported; the processes it spawns
    inherit the variable, but a Ray imported before this call has read it already, so
    its constant is set as well.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray" in sys.modules:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def run_tasks(
    tasks: list[Task],
    workers: int | None,
    address: str | None = None,
    progress: Callable[[Task, dict[str, Any], bool], None] | None = None,
) -> Outcome:
    """Schedules the tasks on Ray, respecting dependencies and the cap on tasks in flight.

    Ray is started (or joined) only when a task actually has to run: a rerun of a
    finished manifest reads completion records and returns in a moment.
    """
    import ray

    remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)(
        _execute_remote
    )
    by_id = {t.id: t for t in tasks}
    order = {t.id: n for n, t in enumerate(tasks)}
    waiting = {t.id: len(t.deps) for t in tasks}
    dependents: dict[str, list[str]] = defaultdict(list)
    for t in tasks:
        for dep in t.deps:
            dependents[dep].append(t.id)
    ready = [(order[t.id], t.id) for t in tasks if not t.deps]
    heapq.heapify(ready)
    outcome = Outcome()
    in_flight: dict[Any, Task] = {}
    run_id = uuid.uuid4().hex[:12]
    cap = workers or 1  # until Ray is connected and can tell how many CPUs there are
    connected = False

    def finish(task: Task, record: dict[str, Any], reused: bool) -> None:
        outcome.records[task.id] = record
        (outcome.reused if reused else outcome.executed).add(task.id)
        if progress:
            progress(task, record, reused)
        for child in dependents[task.id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (order[child], child))

    while ready or in_flight:
        while ready and len(in_flight) < cap:
            _, task_id = heapq.heappop(ready)
            task = by_id[task_id]
            input_fp = input_fingerprint(task, [outcome.records[d]["output"] for d in task.deps])
            record = load_record(task)
            if record is not None and record_matches(record, task, input_fp):
                finish(task, record, reused=True)
                continue
            if not connected:
                cap, connected = connect(address, workers), True
            in_flight[remote.remote(task, input_fp, run_id)] = task
        if not in_flight:
            continue
        done, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done:
            task = in_flight.pop(ref)
            try:
                record = ray.get(ref)
            except ray.exceptions.RayError as err:
                for other in in_flight:
                    ray.cancel(other)
                raise TaskFailed(f"task {task.id} failed:\n{err}") from None
            finish(task, record, reused=False)
    return outcome


def _execute_remote(task: Task, input_fp: str, run_id: str) -> dict[str, Any]:
    return execute(task, input_fp, run_id)


def progress_printer(plan: Plan, tasks: list[Task]) -> Callable[[Task, dict[str, Any], bool], None]:
    """One bar per step on a terminal; one line per finished step in logs."""
    from tqdm import tqdm

    totals: dict[str, int] = defaultdict(int)
    for t in tasks:
        totals[t.step.label] += 1
    interactive = sys.stderr.isatty()
    bars: dict[str, Any] = {}
    counts: dict[str, int] = defaultdict(int)
    started = time.perf_counter()

    def report(task: Task, record: dict[str, Any], reused: bool) -> None:
        label = task.step.label
        counts[label] += 1
        if interactive:
            if label not in bars:
                bars[label] = tqdm(
                    total=totals[label], desc=label, unit="task", position=len(bars), leave=True
                )
            bars[label].update(1)
        elif counts[label] == totals[label]:
            elapsed = time.perf_counter() - started
            print(f"[{elapsed:7.1f}s] {label}: {totals[label]} tasks done", file=sys.stderr)

    return report
