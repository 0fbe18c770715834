"""The `minhash_dedup` stage: in process, and on the engine's four phases over real text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from planted import base_texts, chain_of_near_duplicates, variant

from pipeline.document import Document
from pipeline.io import iter_parquet, read_json
from pipeline.manifest import ManifestError, parse_manifest
from pipeline.report import write_report
from pipeline.runner import run_pipeline
from pipeline.stats import Stats
from stages.base import STAGES
from stages.minhash import MinHashDedup, MinHashDedupParams, near_duplicate_clusters

BOILERPLATE = ("Project Gutenberg", "PROJECT GUTENBERG", "*** START", "*** END", "Gutenberg-tm")


def _dedup(docs: list[Document], **params: object) -> tuple[list[Document], Stats]:
    stats = Stats()
    stage = MinHashDedup(MinHashDedupParams(**params))
    return list(stage.process(iter(docs), stats)), stats


def test_stage_is_registered_and_bands_need_rows() -> None:
    assert STAGES["minhash_dedup"] is MinHashDedup
    spec = {
        "output": "out",
        "sources": {
            "books": {
                "reader": "books",
                "inputs": ["books/*.txt"],
                "stages": [{"stage": "minhash_dedup", "bands": 10}],
            }
        },
    }
    with pytest.raises(ManifestError, match=r"sources\.books\.stages\[0\].*rows"):
        parse_manifest(spec)
    spec["sources"]["books"]["stages"][0]["rows"] = 20  # type: ignore[index]
    with pytest.raises(ManifestError, match="exceeds num_perm"):
        parse_manifest(spec)


def test_chain_of_near_duplicates_ends_in_one_cluster_with_one_keeper(shared_data: Path) -> None:
    a, b, c = chain_of_near_duplicates(shared_data)
    docs = [Document("c", c, "s"), Document("a", a, "s"), Document("b", b, "s")]
    kept, stats = _dedup(docs)
    assert [d.id for d in kept] == ["a"]
    assert kept[0].meta == {"minhash_cluster": "a", "minhash_cluster_size": 3}
    assert stats.drops == {"minhash_dedup:near_duplicate": 2}
    assert stats.histograms["minhash_dedup:cluster_size"] == {"3": 1}


def test_keeper_is_the_highest_meta_field_then_the_smallest_id(shared_data: Path) -> None:
    a, b, c = chain_of_near_duplicates(shared_data)
    docs = [
        Document("a", a, "s", {"quality_score": 0.2}),
        Document("b", b, "s", {"quality_score": 0.9}),
        Document("c", c, "s", {}),
    ]
    kept, _ = _dedup(docs, keeper_field="quality_score")
    assert [(d.id, d.meta["minhash_cluster"]) for d in kept] == [("b", "b")]
    tied = [Document(d.id, d.text, "s", {"quality_score": 0.5}) for d in docs]
    assert [d.id for d in _dedup(tied, keeper_field="quality_score")[0]] == ["a"]


def test_stage_agrees_with_near_duplicate_clusters_on_planted_text(shared_data: Path) -> None:
    rng = random.Random(5)
    texts: dict[str, str] = {}
    for base_id, text in list(base_texts(shared_data).items())[::3]:
        texts[f"{base_id}/0"] = text
        texts[f"{base_id}/1"] = variant(text, rng)
    texts["empty"] = " ... "
    docs = [Document(i, t, "s") for i, t in texts.items()]
    kept, stats = _dedup(docs)
    clusters = near_duplicate_clusters(texts)
    assert sorted(d.id for d in kept) == sorted(i for i, keeper in clusters.items() if i == keeper)
    assert stats.counters["minhash_dedup:no_shingles"] == 1
    assert stats.dropped == len(texts) - len(kept) > 0


# ---------------------------------------------------------------- on the engine


def _write_shards(texts: dict[str, str], root: Path, shards: int) -> None:
    root.mkdir(parents=True)
    items = sorted(texts.items())
    random.Random(0).shuffle(items)
    for shard in range(shards):
        with (root / f"part-{shard}.jsonl").open("w") as out:
            for doc_id, text in items[shard::shards]:
                out.write(json.dumps({"id": doc_id, "text": text}) + "\n")


@pytest.fixture(scope="module")
def planted_shards(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(11)
    texts: dict[str, str] = {}
    for base_id, text in base_texts(shared_data).items():
        texts[f"{base_id}/0"] = text
        for v in range(1, 3):
            texts[f"{base_id}/{v}"] = variant(text, rng)
    root = tmp_path_factory.mktemp("planted") / "in"
    _write_shards(texts, root, shards=5)
    return root


def _planted_manifest(inputs: Path) -> dict:
    return {
        "output": "out",
        "sources": {
            "web": {
                "reader": {"type": "jsonl", "id_field": "id"},
                "inputs": [str(inputs / "*.jsonl")],
                "stages": [{"stage": "minhash_dedup", "threshold": 0.8}],
            }
        },
    }


def _parts(out: Path) -> list[bytes]:
    step = out / "sources" / "web" / "01-minhash_dedup"
    return [p.read_bytes() for p in sorted(step.glob("part-*.parquet"))]


def test_same_bytes_with_one_and_two_workers_and_across_runs(
    planted_shards: Path, tmp_path: Path, ray_local: None
) -> None:
    outputs = {}
    for name, workers in (("one", 1), ("two", 2), ("again", 2)):
        out = tmp_path / name
        run_pipeline(
            parse_manifest(_planted_manifest(planted_shards)),
            output=str(out),
            workers=workers,
            progress=False,
        )
        outputs[name] = _parts(out)
    assert len(outputs["one"]) == 5
    assert outputs["one"] == outputs["two"] == outputs["again"]

    texts = {
        json.loads(line)["id"]: json.loads(line)["text"]
        for part in sorted(planted_shards.glob("*.jsonl"))
        for line in part.read_text().splitlines()
    }
    clusters = near_duplicate_clusters(texts)
    stats = read_json(str(tmp_path / "one" / "stats.json"))
    step = stats["sources"]["web"]["steps"][1]["stats"]
    kept = len(texts) - step["drops"]["minhash_dedup:near_duplicate"]
    assert kept == sum(i == keeper for i, keeper in clusters.items())
    sizes = step["histograms"]["minhash_dedup:cluster_size"]
    assert (
        sum(int(size) * n for size, n in sizes.items()) - sum(sizes.values()) == len(texts) - kept
    )
    largest = step["samples"]["minhash_dedup:largest_clusters"]
    assert largest[0]["size"] == max(int(s) for s in sizes)
    assert all(clusters[m] == sample["keeper"] for sample in largest for m in sample["members"])

    page = Path(write_report(str(tmp_path / "one"))).read_text()
    assert "minhash_dedup:largest_clusters" in page and largest[0]["keeper"] in page


def test_resolve_phase_records_its_memory_and_keepers_carry_their_cluster(
    planted_shards: Path, tmp_path: Path, ray_local: None
) -> None:
    out = tmp_path / "out"
    run_pipeline(
        parse_manifest(_planted_manifest(planted_shards)),
        output=str(out),
        workers=2,
        progress=False,
    )
    step = out / "sources" / "web" / "01-minhash_dedup"
    record = read_json(str(step / "_resolve" / "_done" / "part-00000.json"))
    assert record["peak_rss_bytes"] > 0
    assert record["stats"]["counters"]["minhash_dedup:pairs_verified"] > 0
    kept = [d for p in sorted(step.glob("part-*.parquet")) for d in iter_parquet(str(p))]
    clustered = [d for d in kept if "minhash_cluster" in d.meta]
    assert clustered and all(d.meta["minhash_cluster"] == d.id for d in clustered)
    assert all(d.meta["minhash_cluster_size"] >= 2 for d in clustered)


# ---------------------------------------------------------------- books


def _edited_copies(book: str, rng: random.Random) -> dict[str, str]:
    """Botchan as distributed, and copies as a re-release would differ: re-wrapped lines,
    a rewritten passage, typos, a different Gutenberg header."""
    lines = book.split("\r\n")
    rewrapped = "\n".join(" ".join(lines[i : i + 2]) for i in range(0, len(lines), 2))
    words = book.split(" ")
    start = rng.randrange(len(words) // 2)
    passage = [*words[:start], *rng.sample(words, 300), *words[start + 300 :]]
    typos = list(words)
    for pos in rng.sample(range(len(typos)), 40):
        typos[pos] = typos[pos][::-1]
    header = book.replace(
        "*** START OF THE PROJECT GUTENBERG EBOOK",
        "The Project Gutenberg Etext, re-released.\r\n*** START OF THIS PROJECT GUTENBERG EBOOK",
    )
    return {
        "botchan-0.txt": book,
        "botchan-1.txt": rewrapped,
        "botchan-2.txt": " ".join(passage),
        "botchan-3.txt": " ".join(typos),
        "botchan-4.txt": header,
    }


def test_books_keep_one_copy_of_botchan_without_gutenberg_boilerplate(
    shared_data: Path, tmp_path: Path, ray_local: None
) -> None:
    book = (shared_data / "books" / "botchan.txt").read_bytes().decode("utf-8")
    books = tmp_path / "books"
    books.mkdir()
    for name, text in _edited_copies(book, random.Random(8868)).items():
        (books / name).write_text(text, encoding="utf-8")
    other = next(iter(base_texts(shared_data).values()))
    with (books / "more.jsonl").open("w") as out:
        out.write(json.dumps({"text": other}) + "\n")
    spec = {
        "output": str(tmp_path / "out"),
        "sources": {
            "books": {
                "reader": "books",
                "inputs": [str(books)],
                "stages": [
                    {"stage": "gutenberg_strip"},
                    {"stage": "minhash_dedup", "threshold": 0.9},
                ],
            }
        },
    }
    result = run_pipeline(parse_manifest(spec), workers=2, progress=False)
    step = tmp_path / "out" / "sources" / "books" / "02-minhash_dedup"
    kept = [d for p in sorted(step.glob("part-*.parquet")) for d in iter_parquet(str(p))]
    assert sorted(d.id for d in kept) == ["botchan-0.txt", "more.jsonl:0"]
    botchan = next(d for d in kept if d.id == "botchan-0.txt")
    assert botchan.meta["minhash_cluster"] == "botchan-0.txt"
    assert botchan.meta["minhash_cluster_size"] == 5
    for phrase in BOILERPLATE:
        assert all(phrase not in d.text for d in kept)
    drops = result.stats["sources"]["books"]["steps"][2]["stats"]["drops"]
    assert drops == {"minhash_dedup:near_duplicate": 4}
