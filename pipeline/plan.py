"""From a manifest to an ordered list of steps, each with a key and its shards.

A step's key hashes its component's name and parameters and the key of the step before
it; a shard's completion record also carries the fingerprint of the exact input it read.
Rerun a manifest and finished shards are skipped; change a parameter and only the steps
from there on rerun.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pipeline.inputs import InputFile, digest, expand_inputs, file_stamp
from pipeline.io import filesystem, join
from pipeline.manifest import Run, Source
from stages.base import Component, GlobalStage, Reader, Sink, path_fields


@dataclass(frozen=True)
class Step:
    source: str
    number: int
    name: str
    component: Component
    key: str
    directory: str
    shards: int

    @property
    def label(self) -> str:
        return f"{self.source}/{self.number:02d}-{self.name}"

    @property
    def is_read(self) -> bool:
        return isinstance(self.component, Reader)

    @property
    def is_global(self) -> bool:
        return isinstance(self.component, GlobalStage)

    @property
    def is_sink(self) -> bool:
        return isinstance(self.component, Sink)

    def part(self, shard: int) -> str:
        return join(self.directory, f"part-{shard:05d}.parquet")

    def prefix(self, shard: int) -> str:
        """Where a sink writes a shard's outputs (it picks the suffixes)."""
        return join(self.directory, f"part-{shard:05d}")

    def done_record(self, shard: int) -> str:
        return join(self.directory, "_done", f"part-{shard:05d}.json")


@dataclass(frozen=True)
class Plan:
    run: Run
    output: str
    steps: tuple[Step, ...]
    inputs: dict[str, tuple[InputFile, ...]]

    def steps_of(self, source: str) -> list[Step]:
        return [s for s in self.steps if s.source == source]

    def final_step(self, source: str) -> Step:
        return self.steps_of(source)[-1]


def build_plan(run: Run, output: str | None = None, *, list_remote: bool = True) -> Plan:
    """`list_remote=False` leaves remote globs unlisted, for an offline look at the plan."""
    out = output or run.output
    steps: list[Step] = []
    inputs: dict[str, tuple[InputFile, ...]] = {}
    for source in run.sources.values():
        files = expand_inputs(source.inputs, list_remote=list_remote)
        inputs[source.name] = files
        steps += _source_steps(source, out, len(files))
    return Plan(run=run, output=out, steps=tuple(steps), inputs=inputs)


def _source_steps(source: Source, output: str, shards: int) -> list[Step]:
    base = join(output, "sources", source.name)
    components: list[Component] = [source.reader, *source.stages]
    steps: list[Step] = []
    key = digest("source", source.name)
    for number, component in enumerate(components):
        name = "read" if number == 0 else component.name
        key = digest(
            key,
            component.name,
            component.params.model_dump(mode="json"),
            _model_stamps(component),
        )
        steps.append(
            Step(
                source=source.name,
                number=number,
                name=name,
                component=component,
                key=key,
                directory=join(base, f"{number:02d}-{name}"),
                shards=shards,
            )
        )
    return steps


def _model_stamps(component: Component) -> dict[str, Any]:
    """Size and modification stamps of the files a component's path parameters name.

    A retrained model at the same path changes the step's key, so the step reruns.
    """
    stamps: dict[str, Any] = {}
    for name in path_fields(component.params):
        path = getattr(component.params, name)
        if path is None:
            continue
        fs, inner = filesystem(path)
        if fs.isdir(inner):
            files = sorted(p for p in fs.find(inner) if fs.isfile(p))
            stamps[name] = [(os.path.relpath(p, inner), file_stamp(fs.info(p))) for p in files]
        elif fs.exists(inner):
            stamps[name] = file_stamp(fs.info(inner))
    return stamps


def with_sink(plan: Plan, sink: Sink, name: str, root: str) -> Plan:
    """The plan with `sink` after every source's last step, writing to `OUT/root/<source>`.

    Its key chains from the last step's, so new documents upstream or a new sink
    parameter (a retrained tokenizer) rerun it, and nothing else.
    """
    steps = list(plan.steps)
    for source in plan.inputs:
        last = plan.final_step(source)
        params = sink.params.model_dump(mode="json")
        steps.append(
            Step(
                source=source,
                number=last.number + 1,
                name=name,
                component=sink,
                key=digest(last.key, name, params, _model_stamps(sink)),
                directory=join(plan.output, root, source),
                shards=last.shards,
            )
        )
    return Plan(run=plan.run, output=plan.output, steps=tuple(steps), inputs=plan.inputs)


def select_until(plan: Plan, until: str) -> Plan:
    """Keeps, per source, the steps up to and including the one named `until`.

    `until` is a stage name (`exact_dedup`), a numbered step (`02-exact_dedup`) or one
    step of one source (`web/02-exact_dedup`).
    """
    kept: list[Step] = []
    matched = False
    for source in plan.inputs:
        steps = plan.steps_of(source)
        cut = next(
            (i for i, s in enumerate(steps) if until in (s.name, s.label, s.label.split("/")[1])),
            None,
        )
        if cut is None and "/" in until:
            continue
        matched |= cut is not None
        kept += steps if cut is None else steps[: cut + 1]
    if not matched:
        names = sorted({s.name for s in plan.steps})
        raise ValueError(f"--until {until!r} names no step; steps are: {', '.join(names)}")
    return Plan(run=plan.run, output=plan.output, steps=tuple(kept), inputs=plan.inputs)
