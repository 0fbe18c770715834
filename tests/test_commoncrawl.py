"""The `wet` and `warc` readers, on Common Crawl files built from the real sample pages."""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import pytest
from wet_fixture import (
    GARBAGE,
    NOT_HTML,
    build_warc,
    build_wet,
    conversion_headers,
    crawl_path,
    http_response,
    response_headers,
    warc_record,
    warcinfo,
    wet_records,
)

from pipeline.document import Document
from pipeline.io import CorruptInput
from pipeline.manifest import ManifestError, parse_manifest
from pipeline.runner import run_pipeline
from pipeline.stats import Stats
from stages.commoncrawl import (
    iter_warc_records,
    read_warc,
    read_wet,
    record_id,
    segment_of,
    split_http,
)
from stages.html import html_to_text

Records = list[dict[str, Any]]


@pytest.fixture(scope="module")
def pages(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "web" / "html").glob("*.html"))


@pytest.fixture(scope="module")
def wet(pages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Records]:
    out = crawl_path(tmp_path_factory.mktemp("wet"))
    return out, build_wet(pages, out)


@pytest.fixture(scope="module")
def warc(pages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Records]:
    out = crawl_path(tmp_path_factory.mktemp("warc"), "crawl.warc.gz", "warc")
    return out, build_warc(pages, out)


@pytest.fixture(scope="module")
def warc_read(warc: tuple[Path, Records]) -> tuple[list[Document], Stats]:
    """The WARC read once (HTML to text is the slow part) for the tests that inspect it."""
    return read(warc[0], read_warc)


def read(path: Path, reader: Any = read_wet, **params: Any) -> tuple[list[Document], Stats]:
    """Every document and the stats; a `CorruptInput` raised after the last document is
    counted in `stats.drops` under its reason, as the engine counts it."""
    stats = Stats()
    docs = []
    try:
        for doc in reader(str(path), stats, **params):
            docs.append(doc)
    except CorruptInput as err:
        stats.drop(err.reason)
    return docs, stats


def kept(records: Records) -> Records:
    return [r for r in records if r["drop"] is None]


def wet_file(path: Path, members: list[bytes]) -> Path:
    """A WET file of the given records, each its own gzip member."""
    path.write_bytes(b"".join(gzip.compress(m, mtime=0) for m in members))
    return path


def conversion(record: dict[str, Any]) -> bytes:
    return warc_record(conversion_headers(record), record["text"].encode("utf-8"))


@pytest.fixture(scope="module")
def three(pages: list[Path]) -> Records:
    """Three real pages with text, for hand-made files around one damaged record."""
    return [r for r in wet_records(pages[:8]) if r["drop"] is None][:3]


# --- WET on the real pages ----------------------------------------------------------------


def test_every_conversion_record_is_a_document_with_its_exact_text_and_meta(
    wet: tuple[Path, Records],
) -> None:
    path, records = wet
    docs, _ = read(path)
    assert [d.id for d in docs] == [r["id"] for r in kept(records)]
    for doc, record in zip(docs, kept(records), strict=True):
        assert doc.text == record["text"]
        assert doc.source == "commoncrawl"
        assert doc.meta == {
            "url": record["url"],
            "date": record["date"],
            "digest": record["digest"],
            "length": record["length"],
            "language": "eng",
            "segment": "1722640353668.0",
        }


def test_warcinfo_is_counted_and_is_not_a_document(wet: tuple[Path, Records]) -> None:
    _, stats = read(wet[0])
    assert stats.counters == {"wet:warcinfo_records": 1}


def test_page_without_text_is_dropped_as_empty(wet: tuple[Path, Records]) -> None:
    path, records = wet
    assert [r["url"] for r in records if r["drop"]] == ["https://example.com/pages/copyright.html"]
    _, stats = read(path)
    assert stats.drops == {"wet:empty": 1}


@pytest.mark.parametrize("suffix", [".warc.wet", ".warc.wet.zst"])
def test_plain_and_zstd_files_read_like_gzip(
    suffix: str, pages: list[Path], wet: tuple[Path, Records], tmp_path: Path
) -> None:
    records = build_wet(pages, tmp_path / f"CC-MAIN-x{suffix}")
    docs, stats = read(tmp_path / f"CC-MAIN-x{suffix}")
    assert [(d.id, d.text) for d in docs] == [(d.id, d.text) for d in read(wet[0])[0]]
    assert [d.id for d in docs] == [r["id"] for r in kept(records)]
    assert stats.drops == {"wet:empty": 1}


def test_parse_does_not_depend_on_where_the_stream_is_cut(
    pages: list[Path], tmp_path: Path
) -> None:
    path = tmp_path / "small.warc.wet"
    build_wet(pages[:6], path, corrupt="garbage_between_records")
    data = path.read_bytes()
    whole = list(iter_warc_records([data], Stats(), "wet"))
    assert len(whole) == 7
    for size in (1, 3, 10, 4093):
        stats = Stats()
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert list(iter_warc_records(chunks, stats, "wet")) == whole, size
        assert stats.drops == {"wet:garbage": 1}


def test_fastwarc_reads_the_same_records_and_verifies_every_digest(
    wet: tuple[Path, Records],
) -> None:
    """An independent WARC parser agrees: the fixture is well-formed WARC, digests included."""
    warc = pytest.importorskip("fastwarc.warc")
    path, _ = wet
    with open(path, "rb") as stream:
        theirs = [
            (r.record_id.strip("<>").removeprefix("urn:uuid:"), r.reader.read())
            for r in warc.ArchiveIterator(stream, record_types=warc.WarcRecordType.conversion)
            if r.verify_block_digest()
        ]
    ours = list(iter_warc_records([gzip.decompress(path.read_bytes())], Stats(), "wet"))
    assert theirs == [(record_id(r.headers), r.block) for r in ours if r.type == "conversion"]
    assert len(theirs) == 154


# --- header fields by name -------------------------------------------------------------------


def test_header_fields_are_found_by_name_in_any_order_beside_unknown_ones(
    three: Records, tmp_path: Path
) -> None:
    rng = random.Random(7)
    members = []
    for record in three:
        headers = [*conversion_headers(record), ("X-Crawler-Unknown", "kept apart")]
        rng.shuffle(headers)
        members.append(warc_record(headers, record["text"].encode()))
    docs, stats = read(wet_file(tmp_path / "shuffled.warc.wet.gz", members))
    assert [(d.id, d.text, d.meta["url"], d.meta["length"]) for d in docs] == [
        (r["id"], r["text"], r["url"], r["length"]) for r in three
    ]
    assert stats.drops == {}


def test_header_names_are_case_insensitive(three: Records, tmp_path: Path) -> None:
    headers = [(name.upper(), value) for name, value in conversion_headers(three[0])]
    member = warc_record(headers, three[0]["text"].encode())
    docs, _ = read(wet_file(tmp_path / "upper.warc.wet.gz", [member]))
    assert [(d.id, d.meta["url"], d.meta["language"]) for d in docs] == [
        (three[0]["id"], three[0]["url"], "eng")
    ]


def test_title_is_kept_when_a_record_has_one(three: Records, tmp_path: Path) -> None:
    headers = [*conversion_headers(three[0]), ("Title", "About these documents")]
    path = wet_file(
        tmp_path / "title.warc.wet.gz", [warc_record(headers, three[0]["text"].encode())]
    )
    docs, _ = read(path)
    assert docs[0].meta["title"] == "About these documents"
    assert "title" not in read(wet_file(tmp_path / "plain.gz", [conversion(three[1])]))[0][0].meta


def test_record_without_record_id_is_named_by_file_and_record_index(
    three: Records, tmp_path: Path
) -> None:
    headers = [h for h in conversion_headers(three[1]) if h[0] != "WARC-Record-ID"]
    members = [
        warcinfo("w.warc.wet.gz", "2024-08-03T00:00:00Z", wet=True),
        conversion(three[0]),
        warc_record(headers, three[1]["text"].encode()),
    ]
    path = wet_file(tmp_path / "w.warc.wet.gz", members)
    assert [d.id for d in read(path)[0]] == [three[0]["id"], "w.warc.wet.gz:2"]
    assert [d.id for d in read_wet(str(path), name="web/w")][1] == "web/w:2"


def test_record_id_loses_its_urn_wrapping() -> None:
    assert record_id({"warc-record-id": "<urn:uuid:0d9a-42>"}) == "0d9a-42"
    assert record_id({"warc-record-id": "<urn:sha1:ABC>"}) == "urn:sha1:ABC"
    assert record_id({}) is None


def test_segment_is_the_crawl_segment_else_the_file_name() -> None:
    cc = "s3://commoncrawl/crawl-data/CC-MAIN-2024-33/segments/1722640353668.0/wet/x.warc.wet.gz"
    assert segment_of(cc) == "1722640353668.0"
    assert segment_of("/data/dumps/CC-MAIN-2019-09-00000.warc.wet.gz") == (
        "CC-MAIN-2019-09-00000.warc.wet.gz"
    )


def test_warc_1_1_records_are_read(three: Records, tmp_path: Path) -> None:
    member = warc_record(conversion_headers(three[0]), three[0]["text"].encode(), "WARC/1.1")
    docs, stats = read(wet_file(tmp_path / "v11.warc.wet.gz", [member]))
    assert [d.id for d in docs] == [three[0]["id"]]
    assert stats.drops == {}


def test_version_line_inside_a_text_does_not_split_its_record(
    three: Records, tmp_path: Path
) -> None:
    record = dict(three[0], text="About WARC files.\nWARC/1.0\nWARC-Type: conversion\n\nEnd.")
    record["length"] = len(record["text"].encode())
    docs, stats = read(
        wet_file(tmp_path / "v.warc.wet.gz", [conversion(record), conversion(three[1])])
    )
    assert [d.text for d in docs] == [record["text"], three[1]["text"]]
    assert stats.drops == {}


# --- damaged files ---------------------------------------------------------------------------


def test_truncated_gzip_keeps_every_record_before_the_break(
    pages: list[Path], tmp_path: Path
) -> None:
    path = crawl_path(tmp_path)
    records = build_wet(pages, path, corrupt="truncated_gzip")
    docs, stats = read(path)
    assert [d.id for d in docs] == [r["id"] for r in kept(records)]
    assert [d.text for d in docs] == [r["text"] for r in kept(records)]
    assert 70 < len(docs) < 80
    assert stats.drops == {"read:truncated_gzip": 1, "wet:empty": 1}


def test_wrong_content_lengths_skip_exactly_the_damaged_records(
    pages: list[Path], tmp_path: Path
) -> None:
    path = crawl_path(tmp_path)
    records = build_wet(pages, path, corrupt="bad_length")
    docs, stats = read(path)
    assert [d.id for d in docs] == [r["id"] for r in kept(records)]
    assert [d.text for d in docs] == [r["text"] for r in kept(records)]
    assert stats.drops == {"wet:bad_length": 2, "wet:empty": 1}


def test_garbage_between_records_is_counted_and_loses_no_record(
    pages: list[Path], tmp_path: Path
) -> None:
    path = crawl_path(tmp_path)
    records = build_wet(pages, path, corrupt="garbage_between_records")
    assert GARBAGE in gzip.decompress(path.read_bytes())
    docs, stats = read(path)
    assert [d.id for d in docs] == [r["id"] for r in kept(records)]
    assert len(docs) == 153
    assert stats.drops == {"wet:garbage": 1, "wet:empty": 1}


def test_length_that_swallows_whole_records_is_a_bad_length(three: Records, tmp_path: Path) -> None:
    """The separator after the claimed block looks right, but the next record's version
    line lies inside it."""
    swallowed = conversion(three[1])
    # body, its CRLF CRLF, then the next record but for its own CRLF CRLF
    greedy = dict(three[0], length=three[0]["length"] + len(swallowed))
    body = three[0]["text"].encode()
    members = [warc_record(conversion_headers(greedy), body), swallowed, conversion(three[2])]
    data = b"".join(members)
    claimed_end = data.index(body) + greedy["length"]
    assert data[claimed_end : claimed_end + 4] == b"\r\n\r\n"
    docs, stats = read(wet_file(tmp_path / "greedy.warc.wet.gz", members))
    assert [d.id for d in docs] == [three[1]["id"], three[2]["id"]]
    assert stats.drops == {"wet:bad_length": 1}


def test_records_with_bare_line_feeds_are_read(three: Records, tmp_path: Path) -> None:
    # the bodies hold no CR, so only the framing changes
    members = [conversion(r).replace(b"\r\n", b"\n") for r in three]
    docs, stats = read(wet_file(tmp_path / "lf.warc.wet.gz", members))
    assert [(d.id, d.text) for d in docs] == [(r["id"], r["text"]) for r in three]
    assert stats.drops == {}


def _no_blank_line(member: bytes) -> bytes:
    return member.replace(b"\r\n\r\n", b"\r\n", 1)


def _bad_number(member: bytes) -> bytes:
    head, _, rest = member.partition(b"Content-Length: ")
    return head + b"Content-Length: 12a" + rest[rest.index(b"\r\n") :]


MALFORMED = {
    "no_blank_line_after_headers": _no_blank_line,
    "non_numeric_content_length": _bad_number,
    "missing_version_line": lambda m: m.removeprefix(b"WARC/1.0\r\n"),
    "missing_warc_type": lambda m: m.replace(b"WARC-Type: conversion\r\n", b""),
    "header_line_without_colon": lambda m: m.replace(b"Content-Type", b"Content Type"),
}


@pytest.mark.parametrize("damage", MALFORMED)
def test_malformed_record_is_skipped_and_the_next_one_read(
    damage: str, three: Records, tmp_path: Path
) -> None:
    members = [conversion(three[0]), MALFORMED[damage](conversion(three[1])), conversion(three[2])]
    docs, stats = read(wet_file(tmp_path / "m.warc.wet.gz", members))
    assert [d.id for d in docs] == [three[0]["id"], three[2]["id"]]
    assert stats.drops == {"wet:malformed_header": 1}


def test_length_beyond_the_end_of_the_file_is_a_bad_length(three: Records, tmp_path: Path) -> None:
    last = dict(three[1], length=three[1]["length"] + 1000)
    body = three[1]["text"].encode()
    members = [conversion(three[0]), warc_record(conversion_headers(last), body)]
    docs, stats = read(wet_file(tmp_path / "long.warc.wet.gz", members))
    assert [d.id for d in docs] == [three[0]["id"]]
    assert stats.drops == {"wet:bad_length": 1}


@pytest.mark.parametrize(
    ("policy", "texts", "drops"),
    [
        ("skip", ["x"], {"wet:invalid_utf8": 1}),
        ("replace", ["caf\ufffd", "x"], {}),
    ],
)
def test_invalid_utf8_is_skipped_or_replaced_as_configured(
    policy: str, texts: list[str], drops: dict[str, int], three: Records, tmp_path: Path
) -> None:
    members = []
    for body in (b"caf\xe9", b"x"):
        record = dict(three[0], length=len(body), id=f"id-{len(members)}")
        members.append(warc_record(conversion_headers(record), body))
    docs, stats = read(wet_file(tmp_path / "u.warc.wet.gz", members), invalid_utf8=policy)
    assert [d.text for d in docs] == texts
    assert stats.drops == drops


def test_record_over_the_size_limit_is_skipped_as_too_large(three: Records, tmp_path: Path) -> None:
    path = wet_file(tmp_path / "big.warc.wet.gz", [conversion(r) for r in three])
    limit = sorted(r["length"] for r in three)[1]
    docs, stats = read(path, max_document_bytes=limit)
    assert sorted(len(d.text.encode()) for d in docs) == sorted(r["length"] for r in three)[:2]
    assert stats.drops == {"read:document_too_large": 1}


# --- WARC ------------------------------------------------------------------------------------


def test_warc_html_responses_become_their_main_text(
    warc: tuple[Path, Records], warc_read: tuple[list[Document], Stats]
) -> None:
    _, records = warc
    docs, _ = warc_read
    assert [d.id for d in docs] == [r["id"] for r in kept(records)]
    assert len(docs) == 153
    for doc, record in zip(docs, kept(records), strict=True):
        assert doc.text == record["text"]
        assert doc.meta == {
            "url": record["url"],
            "date": record["date"],
            "digest": record["digest"],
            "content_type": "text/html; charset=utf-8",
            "status": 200,
            "segment": "1722640353668.0",
        }


def test_warc_drops_non_html_responses(
    warc: tuple[Path, Records], warc_read: tuple[list[Document], Stats]
) -> None:
    _, records = warc
    assert [r["url"].rsplit("/", 1)[1] for r in records if r["drop"] == "warc:not_html"] == [
        name for name, _, _ in NOT_HTML
    ]
    _, stats = warc_read
    assert stats.drops == {"warc:not_html": len(NOT_HTML), "warc:empty": 1}


def test_warc_counts_request_and_metadata_records_without_dropping_them(
    warc: tuple[Path, Records], warc_read: tuple[list[Document], Stats]
) -> None:
    _, records = warc
    _, stats = warc_read
    assert stats.counters == {
        "warc:warcinfo_records": 1,
        "warc:request_records": len(records),
        "warc:metadata_records": len(records),
    }


def _response_file(path: Path, block: bytes, payload_type: str = "text/html") -> Path:
    headers = response_headers(
        "https://example.com/p", "2024-08-03T00:00:00Z", "r1", block, block, payload_type
    )
    return wet_file(path, [warc_record(headers, block)])


PAGE = "<html><body><article><h1>Café</h1><p>{}</p></article></body></html>"
SENTENCE = "Déjà vu à la carte: the crème brûlée was naïve, señor. " * 4


def test_warc_decodes_with_the_charset_of_the_content_type(tmp_path: Path) -> None:
    block = http_response(
        PAGE.format(SENTENCE).encode("iso-8859-1"), "text/html; charset=ISO-8859-1"
    )
    docs, _ = read(_response_file(tmp_path / "l.warc.gz", block), read_warc)
    assert docs[0].text == f"Café\n\n{SENTENCE.strip()}"


def test_warc_without_http_charset_uses_the_page_meta_charset(tmp_path: Path) -> None:
    html = PAGE.format(SENTENCE).replace(
        "<html>", '<html><head><meta charset="windows-1252"></head>'
    )
    block = http_response(html.encode("cp1252"), "text/html")
    docs, _ = read(_response_file(tmp_path / "m.warc.gz", block), read_warc)
    assert docs[0].text == f"Café\n\n{SENTENCE.strip()}"


def test_warc_undoes_chunked_transfer_and_gzip_content_coding(tmp_path: Path) -> None:
    html = PAGE.format(SENTENCE).encode()
    gzipped = gzip.compress(html)
    chunked = (
        b"".join(
            b"%x\r\n%s\r\n" % (len(gzipped[i : i + 50]), gzipped[i : i + 50])
            for i in range(0, len(gzipped), 50)
        )
        + b"0\r\n\r\n"
    )
    block = http_response(
        chunked,
        "text/html; charset=utf-8",
        [("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")],
    )
    docs, _ = read(_response_file(tmp_path / "g.warc.gz", block), read_warc)
    assert docs[0].text == html_to_text(html.decode())


@pytest.mark.parametrize(
    ("coding", "reason"),
    [("br", "warc:unsupported_content_encoding"), ("gzip", "warc:bad_content_encoding")],
)
def test_warc_counts_a_body_it_cannot_decode(coding: str, reason: str, tmp_path: Path) -> None:
    body = b"\x8b\x1f not compressed at all " * 8
    block = http_response(body, "text/html", [("Content-Encoding", coding)])
    docs, stats = read(_response_file(tmp_path / "b.warc.gz", block), read_warc)
    assert docs == []
    assert stats.drops == {reason: 1}


def test_http_status_line_and_headers_are_split_off_the_body() -> None:
    response = split_http(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n<p>gone</p>\r\n\r\n"
    )
    assert response is not None
    assert (response.status, response.headers, response.body) == (
        404,
        {"content-type": "text/html"},
        b"<p>gone</p>\r\n\r\n",
    )
    assert split_http(b"<html>no status line</html>") is None


def test_reader_parameters_are_checked_by_the_manifest() -> None:
    source = {"reader": {"type": "wet", "invalid_utf8": "drop"}, "inputs": ["x.warc.wet.gz"]}
    with pytest.raises(ManifestError, match="invalid_utf8"):
        parse_manifest({"output": "out", "sources": {"cc": source}})


# --- the engine ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine_run(
    pages: list[Path], tmp_path_factory: pytest.TempPathFactory, ray_local: None
) -> tuple[dict[str, Any], Records, Records]:
    root = tmp_path_factory.mktemp("engine")
    clean = build_wet(pages, crawl_path(root / "in", "a-clean.warc.wet.gz"))
    cut = build_wet(pages, crawl_path(root / "in", "b-cut.warc.wet.gz"), corrupt="truncated_gzip")
    spec = {
        "output": str(root / "out"),
        "sources": {"cc": {"reader": "wet", "inputs": [str(root / "in")]}},
    }
    result = run_pipeline(parse_manifest(spec), workers=2, progress=False)
    return result.stats["sources"]["cc"]["steps"][0]["stats"], clean, cut


def test_engine_reads_one_document_per_conversion_record(
    engine_run: tuple[dict[str, Any], Records, Records],
) -> None:
    stats, clean, cut = engine_run
    intact = len(clean) + len(cut) - sum(r["drop"] == "read:truncated_gzip" for r in cut)
    assert stats["docs_in"] == intact + 1  # the truncated file counts its break once
    assert stats["docs_out"] == len(kept(clean)) + len(kept(cut))
    assert stats["counters"] == {"wet:warcinfo_records": 2}


def test_engine_counts_the_truncated_gzip_and_every_empty_page(
    engine_run: tuple[dict[str, Any], Records, Records],
) -> None:
    stats, _, _ = engine_run
    assert stats["drops"] == {"read:truncated_gzip": 1, "wet:empty": 2}
