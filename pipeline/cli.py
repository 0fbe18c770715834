"""The `llamix` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pipeline.manifest import ManifestError, Run, load_manifest

# Packages whose import registers `llamix` subcommands through `stages.base.register_command`.
COMMAND_PACKAGES = ("stages", "tokenizer", "model.commands", "pipeline.estimate")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except ManifestError as err:
        print(f"error: invalid manifest {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConnectionError as err:
        print(f"error: could not join the Ray cluster: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamix",
        description="Rebuild the LLaMA data mixture from a manifest, on a laptop or a Ray cluster.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a manifest (resumes what is already done)")
    run.add_argument("manifest", help="the manifest YAML")
    run.add_argument("--out", help="output directory (default: the manifest's `output`)")
    run.add_argument(
        "--workers",
        type=_positive,
        help="tasks in flight at once (default: every CPU of the Ray cluster)",
    )
    run.add_argument(
        "--address",
        help="join this Ray cluster (default: $RAY_ADDRESS, else an embedded loopback Ray)",
    )
    run.add_argument(
        "--until", help="stop after this step (e.g. exact_dedup or web/02-exact_dedup)"
    )
    run.add_argument("--fresh", action="store_true", help="delete earlier outputs first")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(command=_run)

    plan = commands.add_parser("plan", help="print every step, its key, and what is done")
    plan.add_argument("manifest")
    plan.add_argument("--out", help="output directory (default: the manifest's `output`)")
    plan.set_defaults(command=_plan)

    status = commands.add_parser("status", help="progress of a run directory")
    status.add_argument("out", help="a run's output directory")
    status.set_defaults(command=_status)

    report = commands.add_parser("report", help="write OUT/report/index.html from OUT/stats.json")
    report.add_argument("out", help="a run's output directory")
    report.set_defaults(command=_report)
    _add_stage_commands(commands)
    return parser


def _add_stage_commands(commands: Any) -> None:
    """Subcommands that stage families and tools register (`llamix lm train`, ...)."""
    for package in COMMAND_PACKAGES:
        importlib.import_module(package)  # importing a package registers its commands
    from stages.base import COMMANDS

    groups: dict[str, Any] = {}
    for name, command in sorted(COMMANDS.items()):
        group, _, verb = name.partition(" ")
        if verb:
            if group not in groups:
                holder = commands.add_parser(group, help=f"{group} tools")
                groups[group] = holder.add_subparsers(required=True, metavar="ACTION")
            parser = groups[group].add_parser(verb, help=command.help)
        else:
            parser = commands.add_parser(name, help=command.help)
        command.configure(parser)
        parser.set_defaults(command=command.run)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _run(args: argparse.Namespace) -> int:
    from pipeline.executor import TaskFailed
    from pipeline.runner import run_pipeline

    run = load_manifest(args.manifest)
    try:
        result = run_pipeline(
            run,
            output=args.out,
            workers=args.workers,
            address=args.address,
            until=args.until,
            fresh=args.fresh,
            progress=not args.quiet,
        )
    except TaskFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary_table(result.stats))
    print(
        f"\n{len(result.executed)} tasks run, {len(result.reused)} reused from earlier runs; "
        f"stats in {result.plan.output}/stats.json"
    )
    return 0


def _plan(args: argparse.Namespace) -> int:
    print(plan_table(load_manifest(args.manifest), args.out, list_remote=False))
    return 0


def _status(args: argparse.Namespace) -> int:
    from pipeline.runner import load_recorded_run

    print(plan_table(load_recorded_run(args.out), args.out))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report

    page = write_report(args.out)
    print(f"report written to {page}")
    return 0


def plan_table(run: Run, output: str | None, *, list_remote: bool = True) -> str:
    from pipeline.executor import build_tasks
    from pipeline.inputs import UNLISTED
    from pipeline.plan import build_plan
    from pipeline.tasks import completed

    plan = build_plan(run, output, list_remote=list_remote)
    tasks = build_tasks(plan)
    done = completed(tasks)
    total: Counter[str] = Counter(t.step.label for t in tasks)
    finished: Counter[str] = Counter(t.step.label for t in tasks if t.id in done)
    lines = [f"manifest {run.path} (hash {run.hash[:12]}), output {plan.output}"]
    for source, files in plan.inputs.items():
        missing = sum(f.missing for f in files)
        remote = sum(f.fingerprint == UNLISTED for f in files)
        note = f", {missing} missing" if missing else ""
        note += f", {remote} remote patterns not listed" if remote else ""
        lines.append(f"\n{source}: {len(files)} input files{note}")
        previous = "input files"
        for step in plan.steps_of(source):
            state = (
                "done"
                if finished[step.label] == total[step.label]
                else (f"{finished[step.label]}/{total[step.label]} tasks done")
            )
            kind = "global" if step.is_global else ("read" if step.is_read else "shard")
            lines.append(
                f"  {step.number:02d}-{step.name:<20} {kind:<6} key {step.key}  "
                f"in: {previous:<24} {state}"
            )
            previous = f"{step.number:02d}-{step.name}"
    return "\n".join(lines)


def summary_table(stats: dict[str, Any]) -> str:
    rows = [f"{'step':<34} {'docs in':>10} {'docs out':>10} {'MB out':>9} {'sec':>8}  drops"]
    for source, entry in stats["sources"].items():
        for step in entry["steps"]:
            s = step["stats"]
            drops = ", ".join(
                f"{k}={v}" for k, v in sorted(s["drops"].items(), key=lambda x: -x[1])
            )
            rows.append(
                f"{source + '/' + step['step']:<34} {s['docs_in']:>10} {s['docs_out']:>10} "
                f"{s['bytes_out'] / 1e6:>9.2f} {s['seconds']:>8.1f}  {drops}"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
