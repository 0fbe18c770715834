"""Builds Common Crawl WET and WARC files from real web pages, for tests and sample manifests.

The bytes follow what Common Crawl publishes since 2020 (e.g. CC-MAIN-2024-33): a
`warcinfo` record first, then one record per page with the header fields in CC's order,
`WARC-Identified-Content-Language` included; CRLF line ends in headers, an empty line,
the block, then CRLF CRLF; each record its own gzip member. Ids, dates and digests are
derived from the page, so a build is byte-for-byte reproducible.

Each builder returns, per page record, what a correct reader must make of it: the
expected document fields, and `drop` (None when the record must come out as a
document, else the reason it must be counted under).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zstandard

from stages.html import html_to_text

CRAWL = "CC-MAIN-2024-33"
SEGMENT = "1722640353668.0"
WET_NAME = "CC-MAIN-20240802234508-20240803024508-00000.warc.wet.gz"
WARC_NAME = "CC-MAIN-20240802234508-20240803024508-00000.warc.gz"
BASE_URL = "https://example.com/pages/"
CORRUPTIONS = ("truncated_gzip", "bad_length", "garbage_between_records")
# How far off the damaged Content-Lengths of `corrupt="bad_length"` are, in bytes.
LENGTH_ERROR = 64
GARBAGE = (
    b"\x00\x17 stray bytes: not a WARC record\r\nHTTP/1.1 200 OK\r\n\r\n"
    + bytes(range(256))
    + b"\r\n\r\n"
)


def crawl_path(root: Path, file_name: str = WET_NAME, kind: str = "wet") -> Path:
    """Where Common Crawl keeps such a file: `crawl-data/<crawl>/segments/<id>/<kind>/`."""
    return root / "crawl-data" / CRAWL / "segments" / SEGMENT / kind / file_name


def block_digest(block: bytes) -> str:
    """`WARC-Block-Digest` as Common Crawl writes it: SHA-1 in base32."""
    return "sha1:" + base64.b32encode(hashlib.sha1(block).digest()).decode("ascii")


def record_uuid(*parts: str) -> str:
    """A stable UUID for a record, from what identifies it."""
    return str(uuid.UUID(bytes=hashlib.sha1("\0".join(parts).encode()).digest()[:16], version=4))


def warc_record(
    headers: Sequence[tuple[str, str]], block: bytes, version: str = "WARC/1.0"
) -> bytes:
    """One record: version line, the header fields in the given order, empty line, block,
    CRLF CRLF. `Content-Length` is written as given, so a test can make it lie."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"{version}\r\n{head}\r\n".encode() + block + b"\r\n\r\n"


@functools.cache
def page_text(page: Path) -> str:
    """What the WET extractor would keep of a page: here, Resiliparse's main content."""
    return html_to_text(page.read_bytes())


def page_url(page: Path) -> str:
    return BASE_URL + page.name


def _date(index: int) -> str:
    return f"2024-08-03T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z"


def conversion_headers(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The header fields of a WET `conversion` record, in Common Crawl's order."""
    return [
        ("WARC-Type", "conversion"),
        ("WARC-Target-URI", record["url"]),
        ("WARC-Date", record["date"]),
        ("WARC-Record-ID", f"<urn:uuid:{record['id']}>"),
        ("WARC-Refers-To", f"<urn:uuid:{record['refers_to']}>"),
        ("WARC-Block-Digest", record["digest"]),
        ("WARC-Identified-Content-Language", record["language"]),
        ("Content-Type", "text/plain"),
        ("Content-Length", str(record["length"])),
    ]


def wet_records(pages: Sequence[Path]) -> list[dict[str, Any]]:
    """The conversion record of each page, as the dict a reader's document must match."""
    records = []
    for index, page in enumerate(pages):
        text = page_text(page)
        body = text.encode("utf-8")
        records.append(
            {
                "id": record_uuid("conversion", page.name),
                "refers_to": record_uuid("response", page.name),
                "url": page_url(page),
                "date": _date(index),
                "digest": block_digest(body),
                "language": "eng",
                "length": len(body),
                "text": text,
                "drop": None if text.strip() else "wet:empty",
            }
        )
    return records


def warcinfo(file_name: str, date: str, *, wet: bool) -> bytes:
    fields = [
        "Software-Info: ia-web-commons.1.1.10-SNAPSHOT-20240716094130",
        "Extracted-Date: Sun, 04 Aug 2024 13:27:57 GMT",
        "robots: checked via crawler-commons 1.5-SNAPSHOT "
        "(https://github.com/crawler-commons/crawler-commons)",
        f"isPartOf: {CRAWL}",
        "operator: Common Crawl Admin (info@commoncrawl.org)",
        "description: Wide crawl of the web for August 2024",
        "publisher: Common Crawl",
    ]
    if not wet:
        fields = fields[2:]
    body = "".join(f"{field}\r\n" for field in fields).encode()
    return warc_record(
        [
            ("WARC-Type", "warcinfo"),
            ("WARC-Date", date),
            ("WARC-Filename", file_name),
            ("WARC-Record-ID", f"<urn:uuid:{record_uuid('warcinfo', file_name)}>"),
            ("Content-Type", "application/warc-fields"),
            ("Content-Length", str(len(body))),
        ],
        body,
    )


def build_wet(
    pages: Sequence[Path], out: Path, *, corrupt: str | None = None
) -> list[dict[str, Any]]:
    """Writes a WET file of one conversion record per page to `out` and returns the records.

    `out` ending in `.gz` gives one gzip member per record (as Common Crawl), `.zst` one
    zstd frame per record, anything else plain bytes. `corrupt` damages the file:

    - `"truncated_gzip"` (`.gz` only): the file stops halfway through the member of the
      middle page; that record and all after it are lost (`drop="read:truncated_gzip"`).
    - `"bad_length"`: the `Content-Length` of an early page (the first after the first
      with over 4 * LENGTH_ERROR bytes of text) is LENGTH_ERROR bytes too long, that of
      the middle one (or the next long enough) as much too short (`drop="wet:bad_length"`).
    - `"garbage_between_records"`: stray bytes (GARBAGE) after the first third of the
      pages; every record survives, one `wet:garbage` is counted.

    Returns, per page in order: id, url, date, digest, language, length, text,
    refers_to, and drop (None: the reader must yield it as a document).
    """
    if corrupt not in (None, *CORRUPTIONS):
        raise ValueError(f"corrupt must be one of {CORRUPTIONS} or None, not {corrupt!r}")
    if corrupt == "truncated_gzip" and out.suffix != ".gz":
        raise ValueError(f"corrupt='truncated_gzip' needs a .gz output, not {out.name}")
    records = wet_records(pages)
    middle = len(records) // 2
    long = [i for i, record in enumerate(records) if record["length"] > 4 * LENGTH_ERROR]
    length_errors = {
        next(i for i in long if i >= 1): LENGTH_ERROR,
        next(i for i in long if i >= middle): -LENGTH_ERROR,
    }
    members = [warcinfo(out.name, _date(0), wet=True)]
    for index, record in enumerate(records):
        headers = conversion_headers(record)
        if corrupt == "bad_length" and index in length_errors:
            headers[-1] = ("Content-Length", str(record["length"] + length_errors[index]))
            record["drop"] = "wet:bad_length"
        members.append(warc_record(headers, record["text"].encode("utf-8")))
        if corrupt == "garbage_between_records" and index == len(records) // 3:
            members.append(GARBAGE)
    data = _encode_members(members, out)
    if corrupt == "truncated_gzip":
        # cut the member of the middle page (its index is middle + 1: warcinfo is first)
        before = sum(len(m) for m in data[: middle + 1])
        data = [*data[: middle + 1], data[middle + 1][: len(data[middle + 1]) // 2]]
        assert sum(len(m) for m in data) > before
        for record in records[middle:]:
            record["drop"] = "read:truncated_gzip"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(data))
    return records


def _encode_members(members: list[bytes], out: Path) -> list[bytes]:
    if out.suffix == ".gz":
        return [gzip.compress(member, mtime=0) for member in members]
    if out.suffix in (".zst", ".zstd"):
        compressor = zstandard.ZstdCompressor()
        return [compressor.compress(member) for member in members]
    return members


# Responses a crawl holds besides HTML pages; a WARC reader must skip them as not HTML.
NOT_HTML = (
    ("robots.txt", "text/plain", b"User-agent: *\nDisallow: /private/\n"),
    ("logo.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)),
    ("data.json", "application/json", b'{"pages": 154, "note": "<html> in JSON"}'),
)


def http_response(body: bytes, content_type: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """An HTTP/1.1 200 response as Common Crawl stores it (payload decoded)."""
    fields = [
        ("Date", "Sat, 03 Aug 2024 00:00:00 GMT"),
        ("Content-Type", content_type),
        *extra,
        ("Content-Length", str(len(body))),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body


def response_headers(
    url: str, date: str, record_id: str, block: bytes, payload: bytes, payload_type: str
) -> list[tuple[str, str]]:
    """The header fields of a WARC `response` record, in Common Crawl's order."""
    return [
        ("WARC-Type", "response"),
        ("WARC-Date", date),
        ("WARC-Record-ID", f"<urn:uuid:{record_id}>"),
        ("Content-Length", str(len(block))),
        ("Content-Type", "application/http; msgtype=response"),
        ("WARC-Warcinfo-ID", f"<urn:uuid:{record_uuid('warcinfo', WARC_NAME)}>"),
        ("WARC-Concurrent-To", f"<urn:uuid:{record_uuid('request', url)}>"),
        ("WARC-IP-Address", "93.184.215.14"),
        ("WARC-Target-URI", url),
        ("WARC-Payload-Digest", block_digest(payload)),
        ("WARC-Block-Digest", block_digest(block)),
        ("WARC-Identified-Payload-Type", payload_type),
    ]


def build_warc(pages: Sequence[Path], out: Path) -> list[dict[str, Any]]:
    """Writes a WARC file of the pages as crawled to `out` (`.gz`: a member per record).

    Per page: a `request`, the `response` holding the page's real HTML (`text/html;
    charset=utf-8`) and a `metadata` record, as in a Common Crawl WARC; then one
    response per NOT_HTML entry. Returns one dict per response in order: id, url, date,
    digest (of the payload), content_type, status, text (the main text of the page), and
    drop (None, `warc:not_html`, or `warc:empty` for a page without main text).
    """
    members = [warcinfo(out.name, _date(0), wet=False)]
    records: list[dict[str, Any]] = []
    responses = [(page_url(page), "text/html; charset=utf-8", page.read_bytes()) for page in pages]
    responses += [(BASE_URL + name, kind, body) for name, kind, body in NOT_HTML]
    for index, (url, content_type, payload) in enumerate(responses):
        date = _date(index)
        request = f"GET /{url.split('/', 3)[3]} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode()
        members.append(
            warc_record(
                [
                    ("WARC-Type", "request"),
                    ("WARC-Date", date),
                    ("WARC-Record-ID", f"<urn:uuid:{record_uuid('request', url)}>"),
                    ("Content-Length", str(len(request))),
                    ("Content-Type", "application/http; msgtype=request"),
                    ("WARC-Target-URI", url),
                ],
                request,
            )
        )
        record_id = record_uuid("response", url.removeprefix(BASE_URL))
        block = http_response(payload, content_type)
        members.append(
            warc_record(
                response_headers(url, date, record_id, block, payload, content_type.split(";")[0]),
                block,
            )
        )
        metadata = f"fetchTimeMs: {100 + index}\r\n".encode()
        members.append(
            warc_record(
                [
                    ("WARC-Type", "metadata"),
                    ("WARC-Date", date),
                    ("WARC-Record-ID", f"<urn:uuid:{record_uuid('metadata', url)}>"),
                    ("WARC-Refers-To", f"<urn:uuid:{record_id}>"),
                    ("Content-Type", "application/warc-fields"),
                    ("Content-Length", str(len(metadata))),
                    ("WARC-Target-URI", url),
                ],
                metadata,
            )
        )
        html = content_type.startswith("text/html")
        text = html_to_text(payload.decode("utf-8")) if html else None
        records.append(
            {
                "id": record_id,
                "url": url,
                "date": date,
                "digest": block_digest(payload),
                "content_type": content_type,
                "status": 200,
                "text": text,
                "drop": None if text else "warc:empty" if html else "warc:not_html",
            }
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(_encode_members(members, out)))
    return records
