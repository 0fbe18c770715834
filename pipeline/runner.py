"""A whole run: plan, execute on Ray, merge every task's stats into `OUT/stats.json`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pipeline.executor import build_tasks, progress_printer, run_tasks
from pipeline.io import atomic_write_json, filesystem, join, read_json
from pipeline.manifest import Run, parse_manifest
from pipeline.plan import Plan, build_plan, select_until
from pipeline.stats import Stats
from pipeline.tasks import Task

RUN_RECORD = "run.json"
STATS_FILE = "stats.json"


@dataclass(frozen=True)
class RunResult:
    plan: Plan
    stats: dict[str, Any]
    executed: frozenset[str]
    reused: frozenset[str]


def run_pipeline(
    run: Run,
    *,
    output: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    until: str | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> RunResult:
    plan = build_plan(run, output)
    if until:
        plan = select_until(plan, until)
    if fresh:
        _remove_outputs(plan.output)
    _record_run(plan)
    tasks = build_tasks(plan)
    outcome = run_tasks(
        tasks, workers, address, progress_printer(plan, tasks) if progress else None
    )
    stats = summarize(plan, tasks, outcome.records)
    atomic_write_json(join(plan.output, STATS_FILE), stats)
    return RunResult(plan, stats, frozenset(outcome.executed), frozenset(outcome.reused))


def _remove_outputs(output: str) -> None:
    fs, inner = filesystem(output)
    for name in ("sources", STATS_FILE, "report"):
        path = join(inner, name)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _record_run(plan: Plan) -> None:
    """Keeps the manifest beside its outputs, so `status` and `report` need only OUT."""
    atomic_write_json(
        join(plan.output, RUN_RECORD),
        {
            "manifest_path": plan.run.path,
            "base_dir": plan.run.base_dir,
            "manifest": plan.run.manifest.model_dump(mode="json"),
            "manifest_hash": plan.run.hash,
        },
    )


def load_recorded_run(output: str) -> Run:
    path = join(output, RUN_RECORD)
    fs, inner = filesystem(path)
    if not fs.exists(inner):
        raise FileNotFoundError(f"{output} holds no llamix run ({RUN_RECORD} missing)")
    recorded = read_json(path)
    return parse_manifest(
        recorded["manifest"], path=recorded["manifest_path"], base_dir=recorded["base_dir"]
    )


# The phases of a global stage before `apply`, whose documents are the step's own again.
GLOBAL_PHASES = ("map", "reduce", "resolve")


def summarize(plan: Plan, tasks: list[Task], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per source, per step: the merged stats of its shards (and of its global phases)."""
    by_step: dict[str, dict[str, Stats]] = defaultdict(lambda: defaultdict(Stats))
    peak_rss: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for task in tasks:
        record = records.get(task.id)
        if record is not None:
            by_step[task.step.label][task.phase].merge(Stats.from_dict(record["stats"]))
            peak = peak_rss[task.step.label]
            peak[task.phase] = max(peak[task.phase], record.get("peak_rss_bytes", 0))
    sources: dict[str, Any] = {}
    for source in plan.inputs:
        steps = []
        for step in plan.steps_of(source):
            phases = by_step[step.label]
            main = Stats()
            for phase in ("read", "stage", "apply", "sink"):
                main.merge(phases.get(phase, Stats()))
            global_phases: dict[str, Any] = {}
            for phase in GLOBAL_PHASES if step.is_global else ():
                if phase in phases:
                    main.merge_findings(phases[phase])
                    global_phases[phase] = {
                        **phases[phase].to_dict(),
                        "peak_rss_bytes": peak_rss[step.label][phase],
                    }
            entry: dict[str, Any] = {
                "step": f"{step.number:02d}-{step.name}",
                "stage": step.component.name,
                "key": step.key,
                "directory": step.directory,
                "shards": step.shards,
                "stats": main.to_dict(),
            }
            if step.is_global:
                entry["phases"] = global_phases
            steps.append(entry)
        sources[source] = {"inputs": len(plan.inputs[source]), "steps": steps}
    return {
        "manifest_hash": plan.run.hash,
        "output": plan.output,
        "sources": sources,
    }
