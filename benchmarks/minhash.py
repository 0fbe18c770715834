"""MinHash near-dedup at scale: llamix's `minhash_dedup` next to datatrove's 4-stage MinHash.

Builds (once, into --work) a corpus of at least 200k documents from real text with a known
rate of planted near-duplicates (benchmarks/minhash_corpus.py), then runs, on the same
JSONL shards with the same banding (bands x rows, 5-gram word shingles, 64-bit hashes):

- llamix: read -> `minhash_dedup` through `run_pipeline` on an embedded Ray with
  `--workers` workers, without verification (as datatrove) and with it;
- datatrove 0.10.1: `MinhashDedupSignature` -> `Buckets` -> `Cluster` -> `Filter` on
  `LocalPipelineExecutor` with the same number of workers, inside a venv of its own
  (benchmarks/minhash_datatrove_side.py; datatrove never enters llamix's venv). Its
  words are split on whitespace as ours are; `--datatrove-tokenizer spacy` times its
  default English tokenizer instead, which dominates its run.

It prints, per llamix phase, documents/s (corpus documents over the phase's wall time,
first task start to last task end) and the peak RSS of its largest task; the end-to-end
wall time of each side (llamix's includes its read step, not Ray's start-up, reported
apart); precision and recall against the planted truth; and the ratio of datatrove's
time to ours. Results go to benchmarks/results/minhash.json.

    python benchmarks/minhash.py [--documents 200000] [--workers 2] [--work DIR]
                                 [--skip-datatrove] [--skip-verify]
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (which inspect,
# linecache and traceback import) for every script run from this folder: the folder leaves
# the import path before anything else is imported, and siblings import as `benchmarks.*`.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks")]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import stages  # noqa: E402,F401  (registers every stage)
from benchmarks.ccnet import datatrove_python  # noqa: E402
from benchmarks.minhash_corpus import build_corpus, score_removals  # noqa: E402
from pipeline.executor import connect  # noqa: E402
from pipeline.io import iter_parquet, read_json  # noqa: E402
from pipeline.manifest import parse_manifest  # noqa: E402
from pipeline.runner import run_pipeline  # noqa: E402
from stages.minhash import RECALL_WEIGHTS, lsh_params  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
THRESHOLD = 0.8
PHASES = {"map": "_map", "reduce": "_reduce", "resolve": "_resolve", "apply": "."}


def ensure_corpus(work: Path, documents: int) -> tuple[Path, dict[str, Any]]:
    corpus = work / "corpus"
    summary_path = corpus / "truth.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("documents") == documents:
            return corpus, summary
    print(f"building a {documents}-document corpus in {corpus} (once)", flush=True)
    started = time.perf_counter()
    build_corpus(SHARED, corpus, documents=documents)
    print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    return corpus, json.loads(summary_path.read_text())


def phase_figures(step: Path, documents: int) -> dict[str, dict[str, Any]]:
    """Per phase, from the completion records: tasks, wall time, docs/s, peak RSS per task."""
    figures = {}
    for phase, folder in PHASES.items():
        records = [read_json(str(p)) for p in sorted((step / folder / "_done").glob("*.json"))]
        if not records:
            continue
        wall = max(r["finished_at"] for r in records) - min(r["started_at"] for r in records)
        peaks = [r["peak_rss_bytes"] for r in records]
        figures[phase] = {
            "tasks": len(records),
            "wall_seconds": round(wall, 2),
            "docs_per_s": round(documents / wall) if wall else None,
            "peak_rss_mb_max": round(max(peaks) / 2**20),
            "peak_rss_mb_per_task": [round(p / 2**20) for p in peaks],
        }
    return figures


def run_llamix(
    corpus: Path, out: Path, workers: int, bands: int, rows: int, verify: bool, summary: dict
) -> dict[str, Any]:
    spec = {
        "output": str(out),
        "sources": {
            "bench": {
                "reader": {"type": "jsonl", "id_field": "id"},
                "inputs": [str(corpus / "corpus-*.jsonl")],
                "stages": [
                    {
                        "stage": "minhash_dedup",
                        "threshold": THRESHOLD,
                        "bands": bands,
                        "rows": rows,
                        "verify": verify,
                    }
                ],
            }
        },
    }
    started = time.perf_counter()
    run_pipeline(parse_manifest(spec), workers=workers, fresh=True, progress=False)
    seconds = time.perf_counter() - started
    step = out / "sources" / "bench" / "01-minhash_dedup"
    kept = {d.id for p in sorted(step.glob("part-*.parquet")) for d in iter_parquet(str(p))}
    all_ids = {
        json.loads(line)["id"]
        for shard in sorted(corpus.glob("corpus-*.jsonl"))
        for line in shard.open()
    }
    documents = len(all_ids)
    return {
        "total_seconds": round(seconds, 2),
        "docs_per_s": round(documents / seconds),
        "phases": phase_figures(step, documents),
        "quality": score_removals(all_ids - kept, summary["truth"], summary["jaccard"]),
    }


def run_datatrove(
    corpus: Path, work: Path, workers: int, bands: int, rows: int, tokenizer: str
) -> dict:
    python = datatrove_python(ROOT / "out" / "bench-ccnet" / "datatrove-venv")
    command = [
        str(python),
        str(ROOT / "benchmarks" / "minhash_datatrove_side.py"),
        str(corpus),
        "--work",
        str(work),
        "--bands",
        str(bands),
        "--rows",
        str(rows),
        "--workers",
        str(workers),
        "--tokenizer",
        tokenizer,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"datatrove's side failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-minhash")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument("--skip-verify", action="store_true", help="skip llamix's verify run")
    parser.add_argument(
        "--datatrove-tokenizer",
        dest="tokenizer",
        choices=("whitespace", "spacy"),
        default="whitespace",
        help="datatrove's word splitting: on whitespace as llamix does (the comparable "
        "setting), or its default spaCy English tokenizer (about 10x slower)",
    )
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: the benchmark builds its corpus from ../shared/data")

    corpus, summary = ensure_corpus(args.work, args.documents)
    bands, rows = lsh_params(THRESHOLD, 128, RECALL_WEIGHTS)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    started = time.perf_counter()
    connect(None, args.workers)
    results: dict[str, Any] = {
        "documents": summary["documents"],
        "corpus_mb": round(summary["bytes"] / 1e6, 1),
        "duplicate_rate": summary["duplicate_rate"],
        "threshold": THRESHOLD,
        "bands": bands,
        "rows": rows,
        "workers": args.workers,
        "ray_start_seconds": round(time.perf_counter() - started, 2),
        "llamix": {},
    }
    runs = [False] if args.skip_verify else [False, True]
    for verify in runs:
        label = "verify" if verify else "no_verify"
        print(f"llamix minhash_dedup ({label}) ...", flush=True)
        results["llamix"][label] = run_llamix(
            corpus, args.work / f"llamix-{label}", args.workers, bands, rows, verify, summary
        )
    if not args.skip_datatrove:
        print("datatrove MinHash (4 stages) ...", flush=True)
        theirs = run_datatrove(
            corpus, args.work / "datatrove-work", args.workers, bands, rows, args.tokenizer
        )
        removed = theirs.pop("removed_ids")
        theirs["quality"] = score_removals(removed, summary["truth"], summary["jaccard"])
        results["datatrove"] = theirs
        results["speedup_vs_datatrove"] = round(
            theirs["total_seconds"] / results["llamix"]["no_verify"]["total_seconds"], 2
        )
    print_table(results)
    out = ROOT / "benchmarks" / "results" / "minhash.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\n{results['documents']} documents, {results['corpus_mb']} MB, "
        f"{results['duplicate_rate']:.0%} planted near-duplicates; threshold {THRESHOLD}, "
        f"{results['bands']} bands x {results['rows']} rows, {results['workers']} workers "
        f"(Ray start {results['ray_start_seconds']} s, not counted)"
    )
    print(f"{'run':<22} {'phase':<10} {'docs/s':>9} {'wall s':>7} {'peak RSS/task MB':>17}")
    for label, run in results["llamix"].items():
        for phase, fig in run["phases"].items():
            print(
                f"{'llamix ' + label:<22} {phase:<10} {fig['docs_per_s'] or 0:>9} "
                f"{fig['wall_seconds']:>7} {fig['peak_rss_mb_max']:>17}"
            )
    if "datatrove" in results:
        for stage, fig in results["datatrove"]["stages"].items():
            print(
                f"{'datatrove':<22} {stage:<10} {round(fig['docs_per_s']):>9} "
                f"{fig['seconds']:>7.1f} {'':>17}"
            )
    print(
        f"\n{'run':<22} {'total s':>8} {'precision':>9} {'recall':>7} "
        f"{'recall J>=0.8':>13} {'recall J<0.8':>12}"
    )
    rows = [(f"llamix {k}", v) for k, v in results["llamix"].items()]
    if "datatrove" in results:
        rows.append(("datatrove", results["datatrove"]))
    for label, run in rows:
        q = run["quality"]
        above, below = _recall_split(q["recall_by_jaccard"])
        print(
            f"{label:<22} {run['total_seconds']:>8.1f} {q['precision']:>9.3f} "
            f"{q['recall']:>7.3f} {above:>13.3f} {below:>12.3f}"
        )
    if "speedup_vs_datatrove" in results:
        print(f"\nllamix (no verify) is {results['speedup_vs_datatrove']}x datatrove end to end")


def _recall_split(by_jaccard: dict[str, dict[str, int]]) -> tuple[float, float]:
    """Recall over planted pairs at or above the threshold, and below it (which a
    verifying run rightly leaves alone)."""
    above = [v for k, v in by_jaccard.items() if k.startswith(">=") and float(k[2:]) >= THRESHOLD]
    below = [v for v in by_jaccard.values() if v not in above]
    found = [
        sum(v["found"] for v in group) / max(sum(v["pairs"] for v in group), 1)
        for group in (above, below)
    ]
    return found[0], found[1]


if __name__ == "__main__":
    main()
