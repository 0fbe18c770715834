"""Readers, writers and the streams under them: real files, real codecs, real fsspec."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.document import Document
from pipeline.io import (
    OVERSIZE,
    CorruptInput,
    iter_lines,
    iter_parquet,
    read_jsonl,
    read_parquet_records,
    read_text_file,
    write_jsonl_zst,
    write_parquet,
)
from pipeline.stats import Stats


def jsonl(count: int, words: int = 20) -> bytes:
    return b"".join(
        json.dumps({"text": f"document {i} " + "word " * words, "n": i}).encode() + b"\n"
        for i in range(count)
    )


def read_all(path: Path, **kwargs: object) -> tuple[list[Document], Stats]:
    stats = Stats()
    docs = []
    try:
        docs.extend(read_jsonl(str(path), "f", "src", stats, **kwargs))  # type: ignore[arg-type]
    except CorruptInput as err:
        stats.drop(err.reason)
    return docs, stats


def test_jsonl_plain_gzip_and_zstd_read_the_same(tmp_path: Path) -> None:
    data = jsonl(50)
    (tmp_path / "a.jsonl").write_bytes(data)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    results = [read_all(tmp_path / name)[0] for name in ("a.jsonl", "a.jsonl.gz", "a.jsonl.zst")]
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 50
    assert results[0][3].id == "f:3"
    assert results[0][3].meta == {"n": 3}


def test_multi_member_gzip_and_multi_frame_zstd_are_read_through(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress(jsonl(5)) + gzip.compress(jsonl(7)))
    compressor = zstandard.ZstdCompressor()
    (tmp_path / "m.jsonl.zst").write_bytes(
        compressor.compress(jsonl(5)) + compressor.compress(jsonl(7))
    )
    assert len(read_all(tmp_path / "m.jsonl.gz")[0]) == 12
    assert len(read_all(tmp_path / "m.jsonl.zst")[0]) == 12


def test_bz2_streams_are_read_through_and_their_defects_named(tmp_path: Path) -> None:
    data = jsonl(20000)  # several 900 kB bz2 blocks: a cut stream still yields whole ones
    (tmp_path / "a.jsonl.bz2").write_bytes(bz2.compress(data) + bz2.compress(jsonl(2)))
    assert len(read_all(tmp_path / "a.jsonl.bz2")[0]) == 20002
    payload = bz2.compress(data)
    (tmp_path / "t.jsonl.bz2").write_bytes(payload[: len(payload) // 2])
    docs, stats = read_all(tmp_path / "t.jsonl.bz2")
    assert stats.drops == {"read:truncated_bz2": 1} and 0 < len(docs) < 20000
    (tmp_path / "g.jsonl.bz2").write_bytes(payload + b"not bz2 at all")
    docs, stats = read_all(tmp_path / "g.jsonl.bz2")
    assert stats.drops == {"read:corrupt_bz2": 1} and len(docs) == 20000


def test_truncated_gzip_keeps_complete_lines_and_counts_the_break(tmp_path: Path) -> None:
    data = gzip.compress(jsonl(2000))
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) * 7 // 10])
    docs, stats = read_all(tmp_path / "t.jsonl.gz")
    assert stats.drops == {"read:truncated_gzip": 1}
    assert 1000 < len(docs) < 2000
    assert [d.id for d in docs] == [f"f:{i}" for i in range(len(docs))]


def test_zstd_with_garbage_appended_keeps_every_record_of_the_frame(tmp_path: Path) -> None:
    payload = zstandard.ZstdCompressor().compress(jsonl(2000))
    (tmp_path / "g.jsonl.zst").write_bytes(payload + b"\x00garbage after the frame" * 40)
    docs, stats = read_all(tmp_path / "g.jsonl.zst")
    assert stats.drops == {"read:corrupt_zstd": 1}
    assert len(docs) == 2000


def test_truncated_zstd_is_detected(tmp_path: Path) -> None:
    payload = zstandard.ZstdCompressor().compress(jsonl(2000))
    (tmp_path / "t.jsonl.zst").write_bytes(payload[: len(payload) // 2])
    docs, stats = read_all(tmp_path / "t.jsonl.zst")
    assert stats.drops == {"read:truncated_zstd": 1}
    assert 0 < len(docs) < 2000


def test_bad_records_are_skipped_each_under_its_reason(tmp_path: Path) -> None:
    lines = [
        b'{"text": "good one"}',
        b"{not json",
        b'{"title": "no text field"}',
        b'{"text": "bad \xff\xfe utf8"}',
        b"[1, 2, 3]",
        b"",
        b'{"text": 42}',
        b'{"text": "good two"}',
    ]
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    docs, stats = read_all(tmp_path / "bad.jsonl")
    assert [d.text for d in docs] == ["good one", "good two"]
    assert stats.drops == {
        "read:invalid_json": 1,
        "read:missing_text": 2,
        "read:invalid_utf8": 1,
        "read:not_an_object": 1,
    }


def test_huge_single_line_is_skipped_without_holding_it(tmp_path: Path) -> None:
    big = b'{"text": "' + b"x" * (50 << 20) + b'"}'
    (tmp_path / "huge.jsonl").write_bytes(b'{"text": "before"}\n' + big + b'\n{"text": "after"}\n')
    docs, stats = read_all(tmp_path / "huge.jsonl", max_document_bytes=16 << 20)
    assert [d.text for d in docs] == ["before", "after"]
    assert stats.drops == {"read:document_too_large": 1}
    assert [d.id for d in docs] == ["f:0", "f:2"]


def test_line_limit_applies_across_chunk_boundaries(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_bytes(b"a\n" + b"b" * 100 + b"\nc\n" + b"d" * 50 + b"\nlast")
    assert list(iter_lines(str(tmp_path / "x.txt"), 60)) == [
        b"a",
        OVERSIZE,
        b"c",
        b"d" * 50,
        b"last",
    ]


def test_empty_file_is_counted(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "empty.txt").write_bytes(b"")
    docs, stats = read_all(tmp_path / "empty.jsonl")
    assert docs == [] and stats.drops == {"read:empty_file": 1}
    text_stats = Stats()
    assert list(read_text_file(str(tmp_path / "empty.txt"), "e", "s", text_stats)) == []
    assert text_stats.drops == {"read:empty_file": 1}


def test_text_file_is_one_document_with_a_size_limit(tmp_path: Path) -> None:
    (tmp_path / "book.txt.gz").write_bytes(gzip.compress("Ünïcode book\n".encode() * 10))
    stats = Stats()
    (doc,) = read_text_file(str(tmp_path / "book.txt.gz"), "books/book.txt.gz", "b", stats)
    assert doc.text.startswith("Ünïcode book") and doc.id == "books/book.txt.gz"
    assert (
        list(read_text_file(str(tmp_path / "book.txt.gz"), "x", "b", stats, max_document_bytes=20))
        == []
    )
    assert stats.drops == {"read:document_too_large": 1}


def test_parquet_roundtrip_keeps_text_and_meta(tmp_path: Path) -> None:
    docs = [
        Document(f"d{i}", f"text {i} ✓", "s", {"score": i / 3, "tags": ["a"]}) for i in range(3000)
    ]
    path = tmp_path / "part.parquet"
    assert write_parquet(str(path), docs) == 3000
    assert list(iter_parquet(str(path))) == docs
    assert pq.ParquetFile(path).metadata.row_group(0).column(1).compression == "ZSTD"
    assert not list(tmp_path.glob("*.tmp-*"))


def test_external_parquet_rows_become_documents(tmp_path: Path) -> None:
    import pyarrow as pa

    pq.write_table(
        pa.table({"content": ["a", None, "c"], "url": ["u1", "u2", "u3"]}), tmp_path / "x.parquet"
    )
    stats = Stats()
    docs = list(
        read_parquet_records(str(tmp_path / "x.parquet"), "x", "s", stats, text_field="content")
    )
    assert [(d.id, d.text, d.meta) for d in docs] == [
        ("x:0", "a", {"url": "u1"}),
        ("x:2", "c", {"url": "u3"}),
    ]
    assert stats.drops == {"read:missing_text": 1}


def test_jsonl_zst_writer_roundtrips_through_the_reader(tmp_path: Path) -> None:
    docs = [Document(f"d{i}", f"text {i}", "s", {"k": i}) for i in range(100)]
    write_jsonl_zst(str(tmp_path / "out.jsonl.zst"), docs)
    back, _ = read_all(tmp_path / "out.jsonl.zst", id_field="id")
    assert [(d.id, d.text, d.meta["meta"]) for d in back] == [(d.id, d.text, d.meta) for d in docs]


def test_fsspec_memory_filesystem_works_like_local_paths() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/llamix-test/in.jsonl.gz", gzip.compress(jsonl(10)))
    stats = Stats()
    docs = list(read_jsonl("memory://llamix-test/in.jsonl.gz", "m", "s", stats))
    assert len(docs) == 10
    write_parquet("memory://llamix-test/out/part-00000.parquet", docs)
    assert list(iter_parquet("memory://llamix-test/out/part-00000.parquet")) == docs
    assert fs.ls("/llamix-test/out", detail=False) == ["/llamix-test/out/part-00000.parquet"]
    fs.rm("/llamix-test", recursive=True)


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def broken() -> object:
        yield Document("a", "fine", "s", {})
        raise RuntimeError("stage bug")

    with pytest.raises(RuntimeError):
        write_parquet(str(tmp_path / "part.parquet"), broken())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
