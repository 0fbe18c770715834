"""The engine end to end on real text, on the embedded Ray: counts, dedup, determinism, resume."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
import zstandard
from conftest import output_digest

from pipeline.cli import plan_table
from pipeline.io import read_json
from pipeline.manifest import load_manifest, parse_manifest
from pipeline.runner import RunResult, run_pipeline

PLANTED = 6


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real web pages and book, plus planted copies under names that sort last."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "web").mkdir()
    (root / "books").mkdir()
    pages = sorted((shared_data / "web" / "html").glob("*.html"))
    for page in pages:
        shutil.copy(page, root / "web" / page.name)
    for page in pages[:: len(pages) // PLANTED][:PLANTED]:
        shutil.copy(page, root / "web" / f"zz-copy-{page.name}")
    book = shared_data / "books" / "botchan.txt"
    shutil.copy(book, root / "books" / book.name)
    shutil.copy(book, root / "books" / "zz-copy-botchan.txt")
    return root


def manifest(corpus: Path, **dedup: object) -> dict:
    return {
        "output": "out",
        "sources": {
            "web": {
                "reader": "text",
                "inputs": [str(corpus / "web" / "*.html")],
                "stages": [
                    {"stage": "length_filter", "min_chars": 3000},
                    {"stage": "lines_normalize"},
                    {"stage": "exact_dedup", **dedup},
                ],
            },
            "books": {
                "reader": "text",
                "inputs": [str(corpus / "books")],
                "stages": [{"stage": "lines_normalize"}, {"stage": "exact_dedup", **dedup}],
            },
        },
    }


def run(corpus: Path, out: Path, workers: int = 2, **dedup: object) -> RunResult:
    return run_pipeline(
        parse_manifest(manifest(corpus, **dedup)),
        output=str(out),
        workers=workers,
        progress=False,
    )


def final_ids(out: Path, step: str) -> set[str]:
    ids = set()
    for part in sorted((out / step).glob("part-*.parquet")):
        ids.update(pq.read_table(part, columns=["id"]).column("id").to_pylist())
    return ids


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    out = tmp_path_factory.mktemp("reference")
    run(corpus, out, workers=2)
    return out


def test_every_step_accounts_for_every_document(reference: Path) -> None:
    stats = read_json(str(reference / "stats.json"))
    for source in stats["sources"].values():
        previous_out = None
        for step in source["steps"]:
            s = step["stats"]
            assert s["docs_in"] == s["docs_out"] + sum(s["drops"].values()), step["step"]
            if previous_out is not None:
                assert s["docs_in"] == previous_out, step["step"]
            previous_out = s["docs_out"]
    assert stats["sources"]["web"]["steps"][0]["stats"]["docs_in"] == 154 + PLANTED


def _planted(base: Path, step: str = "02-lines_normalize") -> set[str]:
    return {i for i in final_ids(base, step) if i.startswith("zz-copy-")}


def test_exact_dedup_removes_exactly_the_planted_copies(reference: Path) -> None:
    for source, before, after in [
        ("web", "02-lines_normalize", "03-exact_dedup"),
        ("books", "01-lines_normalize", "02-exact_dedup"),
    ]:
        base = reference / "sources" / source
        removed = final_ids(base, before) - final_ids(base, after)
        planted = _planted(base, before)
        assert removed == planted
        assert planted
        dedup = read_json(str(base / after / "_done" / "part-00000.json"))
        assert dedup["key"]
    web = read_json(str(reference / "stats.json"))["sources"]["web"]["steps"][3]["stats"]
    assert web["drops"] == {"exact_dedup:duplicate": len(_planted(reference / "sources" / "web"))}
    assert final_ids(reference / "sources" / "books", "02-exact_dedup") == {"botchan.txt"}


def test_output_is_identical_with_one_and_two_workers(
    corpus: Path, reference: Path, tmp_path: Path
) -> None:
    run(corpus, tmp_path, workers=1)
    for step in ("web/03-exact_dedup", "books/02-exact_dedup"):
        assert output_digest(tmp_path / "sources" / step) == output_digest(
            reference / "sources" / step
        )


def test_rerun_reuses_every_finished_task(corpus: Path, tmp_path: Path) -> None:
    first = run(corpus, tmp_path)
    second = run(corpus, tmp_path)
    assert second.executed == frozenset()
    assert second.reused == first.executed


def test_parameter_change_reruns_only_the_steps_that_depend_on_it(
    corpus: Path, tmp_path: Path
) -> None:
    run(corpus, tmp_path)
    changed = run(corpus, tmp_path, lowercase=True)
    rerun_steps = {"/".join(task_id.split("/")[:2]) for task_id in changed.executed}
    assert rerun_steps == {"web/03-exact_dedup", "books/02-exact_dedup"}


def test_bad_inputs_are_counted_and_nothing_else_is_lost(tmp_path: Path, ray_local: None) -> None:
    data = tmp_path / "data"
    data.mkdir()
    good = [json.dumps({"text": f"good document {i}"}).encode() for i in range(40)]
    (data / "a-good.jsonl").write_bytes(b"\n".join(good[:10]) + b"\n")
    truncated = gzip.compress(b"\n".join(good[10:20]) + b"\n")
    (data / "b-truncated.jsonl.gz").write_bytes(truncated[:-12])
    zst = zstandard.ZstdCompressor().compress(b"\n".join(good[20:30]) + b"\n")
    (data / "c-garbage.jsonl.zst").write_bytes(zst + b"\x00\x01 not zstd at all" * 8)
    (data / "d-mixed.jsonl").write_bytes(
        b"\n".join(
            [
                good[30],
                b"{this is not json",
                b'{"title": "a record without text"}',
                b'{"text": "invalid \xc3\x28 utf-8"}',
                b'{"text": "' + b"y" * (50 << 20) + b'"}',
                *good[31:40],
            ]
        )
        + b"\n"
    )
    (data / "e-empty.jsonl").write_bytes(b"")
    spec = {
        "output": str(tmp_path / "out"),
        "sources": {
            "bad": {
                "reader": "jsonl",
                "inputs": [str(data / "*.jsonl*"), str(data / "f-does-not-exist.jsonl")],
                "stages": [{"stage": "exact_dedup"}],
            }
        },
    }
    result = run_pipeline(parse_manifest(spec), workers=2, progress=False)
    read = result.stats["sources"]["bad"]["steps"][0]["stats"]
    assert read["drops"] == {
        "read:truncated_gzip": 1,
        "read:corrupt_zstd": 1,
        "read:invalid_json": 1,
        "read:missing_text": 1,
        "read:invalid_utf8": 1,
        "read:document_too_large": 1,
        "read:empty_file": 1,
        "read:missing_path": 1,
    }
    texts = {
        doc["text"]
        for part in (tmp_path / "out" / "sources" / "bad" / "01-exact_dedup").glob("*.parquet")
        for doc in pq.read_table(part).to_pylist()
    }
    expected = {json.loads(g)["text"] for g in good[:10] + good[20:40]}
    assert expected <= texts
    # The truncated gzip keeps every complete line decoded before the break.
    assert len(texts - expected) >= 1
    assert texts <= {json.loads(g)["text"] for g in good}


def test_plan_lists_every_step_with_its_state(corpus: Path, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(manifest(corpus)))
    table = plan_table(load_manifest(path), str(tmp_path / "out"))
    for label in ("00-read", "01-length_filter", "02-lines_normalize", "03-exact_dedup"):
        assert label in table
    assert "0/160 tasks done" in table


def test_fsspec_urls_give_the_same_output_as_local_paths(
    corpus: Path, reference: Path, tmp_path: Path
) -> None:
    spec = manifest(corpus)
    for source in spec["sources"].values():
        source["inputs"] = [f"file://{p}" for p in source["inputs"]]
    run_pipeline(parse_manifest(spec), output=f"file://{tmp_path}", workers=2, progress=False)
    for step in ("web/03-exact_dedup", "books/02-exact_dedup"):
        assert output_digest(tmp_path / "sources" / step) == output_digest(
            reference / "sources" / step
        )
