"""Throughput of every reader and stage of the source manifests, on one core, no Ray.

For each manifest (default: the GitHub, ArXiv, Wikipedia and StackExchange ones under
manifests/, which read ../shared/data or the repo's fixtures), each source's reader runs
over its inputs, then each stage's `process` over the previous one's output, in this
process, after `setup()`: the same code a Ray task runs, minus Parquet and scheduling.
Each measurement is the best of `--repeat` runs. It prints documents/s and MB/s in (the
text a stage receives) per component, and the process's peak RSS.

    python benchmarks/sources.py [--repeat 3] [MANIFEST ...]
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
import contextlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402

import stages  # noqa: E402,F401  (registers every stage)
from benchmarks.timing import best_of  # noqa: E402
from pipeline.document import Document  # noqa: E402
from pipeline.inputs import expand_inputs  # noqa: E402
from pipeline.io import CorruptInput  # noqa: E402
from pipeline.manifest import Source, load_manifest  # noqa: E402
from pipeline.stats import Stats  # noqa: E402

MANIFESTS = ("github", "arxiv", "wikipedia", "stackexchange")


def read_source(source: Source) -> list[Document]:
    docs: list[Document] = []
    stats = Stats()
    for file in expand_inputs(source.inputs):
        with contextlib.suppress(CorruptInput):  # keeps what was read before the break
            docs.extend(source.reader.read(file.path, file.name, source.name, stats))
    return docs


def measure(name: str, docs_in: list[Document], seconds: float, docs_out: int) -> dict:
    size = sum(len(d.text.encode("utf-8")) for d in docs_in)
    return {
        "component": name,
        "docs_in": len(docs_in),
        "docs_out": docs_out,
        "mb_in": round(size / 1e6, 3),
        "docs_per_s": round(len(docs_in) / seconds) if seconds else None,
        "mb_per_s": round(size / 1e6 / seconds, 2) if seconds else None,
    }


def bench_source(source: Source, repeat: int) -> list[dict]:
    source.reader.setup()
    seconds, docs = best_of(repeat, lambda: read_source(source))
    read = measure(f"reader {source.reader.name}", docs, seconds, len(docs))
    read["docs_in"] = len(expand_inputs(source.inputs))  # files, for a reader
    rows = [read]
    for stage in source.stages:
        stage.setup()
        current = docs
        seconds, out = best_of(repeat, lambda s=stage, d=current: list(s.process(iter(d), Stats())))
        rows.append(measure(stage.name, current, seconds, len(out)))
        docs = out
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", nargs="*", help="default: the source manifests")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    paths = args.manifests or [str(ROOT / "manifests" / f"{name}.yaml") for name in MANIFESTS]
    results: dict[str, list[dict]] = {}
    print(f"{'source':<14} {'component':<28} {'docs in':>8} {'out':>7} {'docs/s':>9} {'MB/s':>7}")
    for path in paths:
        run = load_manifest(path)
        for name, source in run.sources.items():
            results[name] = bench_source(source, args.repeat)
            for row in results[name]:
                print(
                    f"{name:<14} {row['component']:<28} {row['docs_in']:>8} {row['docs_out']:>7} "
                    f"{row['docs_per_s'] or 0:>9} {row['mb_per_s'] or 0:>7}"
                )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak_mb:.0f} MB")
    out = ROOT / "benchmarks" / "results" / "sources.json"
    out.write_text(json.dumps({"sources": results, "peak_rss_mb": round(peak_mb)}, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
