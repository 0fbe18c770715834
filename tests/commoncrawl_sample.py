"""Prepares `manifests/commoncrawl-sample.yaml`: its WET input and its models.

From ../shared/data: two real-format WET files of the sample web pages (two shards, so
line dedup works across tasks), a KenLM/SentencePiece pair and calibrated cutoffs from
the Wikipedia sample (`llamix lm train`), and a Wikipedia-reference classifier with
Wikipedia as positives and e-mails as negatives (`llamix classifier train`).

    python tests/commoncrawl_sample.py [ROOT]     # ROOT: where out/ goes (default: repo)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wet_fixture import build_wet, crawl_path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
LLAMIX = [sys.executable, "-m", "pipeline.cli"]
WET_FILES = (
    "CC-MAIN-20240802234508-20240803024508-00000.warc.wet.gz",
    "CC-MAIN-20240802234508-20240803024508-00001.warc.wet.gz",
)


def prepare(root: Path, shared: Path = SHARED, vocab_size: int = 8000) -> None:
    samples = root / "out" / "samples"
    pages = sorted((shared / "web" / "html").glob("*.html"))
    crawl_text = []
    for half, name in enumerate(WET_FILES):
        records = build_wet(
            pages[half :: len(WET_FILES)], crawl_path(samples / "commoncrawl", name)
        )
        crawl_text += [{"text": r["text"]} for r in records if r["drop"] is None]
    wiki = str(shared / "wikipedia" / "enwiki-shortened.xml.bz2")
    models = samples / "models"
    # CCNet's cutoffs are percentiles of the crawl's perplexities, not of Wikipedia's.
    calibration = samples / "calibration.jsonl"
    calibration.write_text("".join(json.dumps(doc) + "\n" for doc in crawl_text))
    _llamix(
        "lm",
        "train",
        wiki,
        "--out",
        str(models / "lm"),
        "--language",
        "en",
        "--vocab-size",
        str(vocab_size),
    )
    _llamix("lm", "calibrate", str(calibration), "--models", str(models / "lm"), "--language", "en")
    emails = [str(shared / "web" / "email" / d) for d in ("spam-1", "easy-ham-1")]
    _llamix(
        "classifier",
        "train",
        "--positives",
        wiki,
        "--negatives",
        *emails,
        "--out",
        str(models / "wiki_reference.bin"),
        "--epoch",
        "10",
        "--lr",
        "0.5",
    )


def _llamix(*args: str) -> None:
    subprocess.run([*LLAMIX, *args], check=True, cwd=REPO)


if __name__ == "__main__":
    prepare(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO)
