"""Engine throughput: read JSONL.zst -> lines_normalize -> Parquet, with 1 and 2 workers.

The corpus is ~100 MB of real text built from ../shared/data (web pages, e-mails, LaTeX,
the UDHR in 65 languages, a Gutenberg book, source code), repeated with distinct ids
until it reaches the target size, and split into equal JSONL.zst shards.

    python benchmarks/engine.py [--mb 100] [--shards 16] [--repeat 3] [--work DIR]

Each setting runs `--repeat` times and the fastest run is reported, as timeit does:
the slower runs measure whatever else the machine was doing.
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
import threading  # noqa: E402
import time  # noqa: E402

import psutil  # noqa: E402
import zstandard  # noqa: E402

from pipeline.executor import connect  # noqa: E402
from pipeline.manifest import parse_manifest  # noqa: E402
from pipeline.runner import run_pipeline  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
TEXT_GLOBS = [
    "web/html/*.html",
    "web/email/*/*",
    "latex/*/*.tex",
    "multilingual/udhr/*.html",
    "books/*.txt",
    "code/repos/*/*.py",
    "code/repos/*/*.h",
]


def real_texts() -> list[str]:
    texts = []
    for pattern in TEXT_GLOBS:
        for path in sorted(SHARED.glob(pattern)):
            if path.is_file():
                texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    if not texts:
        sys.exit(f"no sample data under {SHARED}: clone llamix beside ../shared")
    return texts


def build_corpus(work: Path, target_mb: int, shards: int) -> tuple[int, int]:
    """Writes the shards once (cached); returns (documents, text bytes)."""
    stamp = work / "corpus.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        if info["target_mb"] == target_mb and info["shards"] == shards:
            return info["documents"], info["bytes"]
    texts = real_texts()
    target = target_mb * 1_000_000
    records: list[bytes] = []
    size = 0
    copy = 0
    while size < target:
        for n, text in enumerate(texts):
            records.append(json.dumps({"text": text, "id": f"c{copy}-{n}"}).encode() + b"\n")
            size += len(text.encode())
        copy += 1
    (work / "in").mkdir(parents=True, exist_ok=True)
    compressor = zstandard.ZstdCompressor(level=3)
    for shard in range(shards):
        payload = b"".join(records[shard::shards])
        (work / "in" / f"shard-{shard:03d}.jsonl.zst").write_bytes(compressor.compress(payload))
    stamp.write_text(
        json.dumps(
            {"target_mb": target_mb, "shards": shards, "documents": len(records), "bytes": size}
        )
    )
    return len(records), size


class PeakMemory:
    """Samples the RSS of this process and every descendant (the Ray workers)."""

    def __init__(self) -> None:
        self.peak_total = 0
        self.peak_process = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.peak_process = max(self.peak_process, rss)
            self.peak_total = max(self.peak_total, total)
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(work: Path, workers: int) -> dict[str, float]:
    spec = {
        "output": str(work / f"out-{workers}"),
        "sources": {
            "bench": {
                "reader": {"type": "jsonl", "id_field": "id"},
                "inputs": [str(work / "in" / "*.jsonl.zst")],
                "stages": [{"stage": "lines_normalize"}],
            }
        },
    }
    start = time.perf_counter()
    with PeakMemory() as memory:
        result = run_pipeline(parse_manifest(spec), workers=workers, fresh=True, progress=False)
    seconds = time.perf_counter() - start
    read = result.stats["sources"]["bench"]["steps"][0]["stats"]
    return {
        "workers": workers,
        "documents": read["docs_out"],
        "mb": read["bytes_out"] / 1e6,
        "seconds": seconds,
        "docs_per_s": read["docs_out"] / seconds,
        "mb_per_s": read["bytes_out"] / 1e6 / seconds,
        "peak_rss_total_mb": memory.peak_total / 1e6,
        "peak_rss_process_mb": memory.peak_process / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="corpus size in MB of text")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting; the best counts")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-engine")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results" / "engine.json"
    )
    args = parser.parse_args()

    documents, size = build_corpus(args.work, args.mb, args.shards)
    print(f"corpus: {documents} documents, {size / 1e6:.1f} MB of real text, {args.shards} shards")
    connect(None, 2)
    measure(args.work, 2)  # warm-up: worker processes start, imports load
    rows = [
        min((measure(args.work, workers) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        for workers in (1, 2)
    ]
    scaling = rows[0]["seconds"] / rows[1]["seconds"]

    header = f"{'pass':<44} {'workers':>7} {'docs/s':>9} {'MB/s':>7} {'s':>7}"
    print(f"\n{header} {'peak RSS all / one':>22}")
    for row in rows:
        print(
            f"{'read jsonl.zst -> lines_normalize -> parquet':<44} {row['workers']:>7} "
            f"{row['docs_per_s']:>9.0f} {row['mb_per_s']:>7.1f} {row['seconds']:>7.1f} "
            f"{row['peak_rss_total_mb']:>12.0f} / {row['peak_rss_process_mb']:>5.0f} MB"
        )
    cpus = os.cpu_count()
    print(f"\nscaling 2 workers vs 1: {scaling:.2f}x (target >= 1.7x on 2 cores; {cpus} CPUs here)")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(
        json.dumps({"engine": rows, "scaling_2_vs_1": scaling}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
