"""Common Crawl readers: `wet` (the crawl's extracted text) and `warc` (raw HTML responses).

Both stand on one streaming WARC record parser (ISO 28500: a `WARC/1.0` line, named
header fields, an empty line, `Content-Length` bytes of block, CRLF CRLF). Fields are
looked up by name, never by position: cc_net's `parse_doc` reads `headers[8]` as the
length, so every record of a post-2020 crawl, which added
`WARC-Identified-Content-Language`, fails its parse and is silently lost.

A damaged record costs only itself: it is counted under a named reason and the parser
resynchronises at the next line that is a `WARC/1.0` (or `WARC/1.1`) version line. The
file is read in bounded chunks (`pipeline.io.decompressed_chunks`), held one record at a
time, and scanned with bytes searches, never byte by byte in Python.
"""

from __future__ import annotations

import codecs
import posixpath
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from resiliparse.parse.encoding import bytes_to_str, detect_encoding, map_encoding_to_html5

from pipeline.document import Document
from pipeline.io import DEFAULT_MAX_DOCUMENT_BYTES, CorruptInput, decompressed_chunks
from pipeline.stats import Stats
from stages.base import Reader, ReaderParams, register_reader
from stages.html import html_to_text

# A header block longer than this has lost its terminating empty line.
MAX_HEADER_BYTES = 64 << 10
# The buffer drops the bytes it has parsed once they exceed this.
_COMPACT_BYTES = 1 << 20

# A version line: the only thing a record may start with, and where resync stops.
_VERSION = re.compile(rb"WARC/1\.[01]\r?\n")
_VERSION_LINE = re.compile(rb"^WARC/1\.[01]\r?\n", re.MULTILINE)
_VERSION_BYTES = len(b"WARC/1.0\r\n")
_BLANK_RUN = re.compile(rb"[\r\n]*")
_SEGMENT = re.compile(r"(?:^|/)segments/([^/]+)/")


@dataclass(frozen=True, slots=True)
class WarcRecord:
    """One well-formed record: header fields by lower-cased name, and the block bytes."""

    index: int  # position in the file, counting every record that had a version line
    headers: dict[str, str]
    block: bytes

    @property
    def type(self) -> str:
        return self.headers["warc-type"]


class _Window:
    """The unparsed bytes of a stream, refilled on demand and trimmed as records pass.

    Indices into `data` stay valid until `compact()` or `seek_version()`. A `CorruptInput`
    from the stream ends it like EOF and is kept in `error`, so that every complete record
    before the defect is still parsed; the caller raises it afterwards.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.data = bytearray()
        self.pos = 0
        self.ended = False
        self.error: CorruptInput | None = None

    def more(self) -> bool:
        """Appends the next chunk; False once the stream has ended."""
        while not self.ended:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.ended = True
            except CorruptInput as err:
                self.error = err
                self.ended = True
            else:
                if chunk:
                    self.data += chunk
                    return True
        return False

    def have(self, end: int) -> bool:
        """Whether `data` reaches index `end`, reading as needed."""
        while len(self.data) < end:
            if not self.more():
                return False
        return True

    def find(self, needle: bytes, start: int, limit: int) -> int:
        """Index of `needle` in `data[start:limit]`, reading as needed; -1 when absent."""
        while True:
            end = min(len(self.data), limit)
            found = self.data.find(needle, start, end)
            if found >= 0:
                return found
            if end >= limit or not self.more():
                return -1
            start = max(start, end - len(needle) + 1)

    def skip_blank_lines(self) -> None:
        while True:
            self.pos = _BLANK_RUN.match(self.data, self.pos).end()
            if self.pos < len(self.data) or not self.more():
                return

    def compact(self) -> None:
        if self.pos >= _COMPACT_BYTES:
            del self.data[: self.pos]
            self.pos = 0

    def seek_version(self, start: int) -> bool:
        """Moves `pos` to the next version line that begins a line at or after `start`.

        Returns False at the end of the stream. What it passes is discarded as it goes,
        so megabytes of garbage cost no memory.
        """
        while True:
            match = _VERSION_LINE.search(self.data, start)
            if match:
                self.pos = match.start()
                return True
            # Keep the byte before a possible partial version line: it says whether
            # that line starts a line.
            keep_from = max(0, min(start - 1, len(self.data) - _VERSION_BYTES - 1))
            del self.data[:keep_from]
            start -= keep_from
            if not self.more():
                self.pos = len(self.data)
                return False


def iter_warc_records(
    chunks: Iterable[bytes],
    stats: Stats,
    prefix: str,
    *,
    max_record_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> Iterator[WarcRecord]:
    """The well-formed records of a WARC stream, in order; the damaged ones are counted.

    Drop reasons (`prefix` is the reader's name): `<prefix>:malformed_header` (no empty
    line ends the headers, a line that is not `Name: value`, no `WARC-Type`, a missing or
    non-numeric `Content-Length`, a record without its version line), `<prefix>:bad_length`
    (the block is not followed by CRLF CRLF and the next record, or contains a record
    boundary: the `WARC/1.0` line appears at the wrong place), `<prefix>:garbage` (bytes
    between records that are no record), and `read:document_too_large`. After each, the
    parser resumes at the next version line. A `CorruptInput` from `chunks` is raised
    after the last complete record; the record it cut short is not counted twice.
    """
    window = _Window(iter(chunks))
    index = 0
    while True:
        window.compact()
        window.skip_blank_lines()
        start = window.pos
        if start >= len(window.data):
            break
        window.have(start + _VERSION_BYTES)
        version = _VERSION.match(window.data, start)
        if version is None:
            lost_version = window.data.startswith(b"WARC", start)
            if window.seek_version(start + 1) or window.error is None:
                stats.drop(f"{prefix}:{'malformed_header' if lost_version else 'garbage'}")
            continue
        record_index = index
        index += 1
        eol = b"\r\n" if version.group().endswith(b"\r\n") else b"\n"
        blank = eol + eol
        fields_start = version.end()
        header_end = window.find(blank, fields_start - len(eol), fields_start + MAX_HEADER_BYTES)
        if header_end < 0:
            # no empty line: headers run on into the body, or the stream was cut short
            if window.seek_version(start + 1) or window.error is None:
                stats.drop(f"{prefix}:malformed_header")
            continue
        raw_headers = bytes(window.data[fields_start:header_end])
        headers = _parse_headers(raw_headers)
        length = headers.get("content-length", "") if headers else ""
        # (a version line among the fields has no colon: _parse_headers refuses it)
        if headers is None or "warc-type" not in headers or not _is_number(length):
            window.seek_version(start + 1)
            stats.drop(f"{prefix}:malformed_header")
            continue
        block_start = header_end + len(blank)
        block_end = block_start + int(length)
        if block_end - block_start > max_record_bytes:
            window.seek_version(block_start)
            stats.drop("read:document_too_large")
            continue
        if not _block_fits(window, block_start, block_end, blank):
            if window.seek_version(block_start) or window.error is None:
                stats.drop(f"{prefix}:bad_length")
            continue
        with memoryview(window.data) as view:  # one copy, not two
            block = bytes(view[block_start:block_end])
        window.pos = min(block_end + len(blank), len(window.data))
        yield WarcRecord(record_index, headers, block)
    if window.error is not None:
        raise window.error


def _is_number(value: str) -> bool:
    """ASCII digits only: `int()` would also take "+5", " 5", "5_000" and "٥"."""
    return value.isascii() and value.isdigit()


def _block_fits(window: _Window, block_start: int, block_end: int, blank: bytes) -> bool:
    """Whether `Content-Length` is the true length of the block.

    True when the block is followed by the record separator and holds no record boundary
    (separator + version line) itself. A stream that ends right after the block, or in
    its separator, still fits: only the separator is missing.
    """
    data = window.data
    if window.have(block_end + len(blank)):
        if not data.startswith(blank, block_end):
            return False
    elif len(data) < block_end or not blank.startswith(bytes(data[block_end:])):
        return False
    boundary = data.find(blank + b"WARC/1.", block_start, block_end)
    while boundary >= 0:
        if _VERSION.match(data, boundary + len(blank)):
            return False
        boundary = data.find(blank + b"WARC/1.", boundary + 1, block_end)
    return True


def _parse_headers(raw: bytes) -> dict[str, str] | None:
    """`Name: value` lines by lower-cased name (names are case-insensitive); the first of a
    repeated name wins; a line starting with white space continues the one before."""
    headers: dict[str, str] = {}
    last = ""
    for line in raw.decode("utf-8", "replace").split("\n"):
        if line[:1] in (" ", "\t") and last:
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or " " in name or "\t" in name:
            return None
        last = name.lower()
        if last not in headers:
            headers[last] = value.strip()
    return headers


def record_id(headers: dict[str, str]) -> str | None:
    """The record's own id without its wrapping: `<urn:uuid:X>` gives `X`."""
    value = headers.get("warc-record-id", "").strip().removeprefix("<").removesuffix(">")
    return value.removeprefix("urn:uuid:") or None


def segment_of(path: str) -> str:
    """The crawl segment a file belongs to: `<id>` of a `segments/<id>/` path component
    (Common Crawl's layout), else the file name. cc_net's `cc_segment` is the whole path
    from `crawl-data/`; the id is what groups files, the document id names the record."""
    match = _SEGMENT.search(path)
    return match.group(1) if match else posixpath.basename(path.rstrip("/"))


# ---------------------------------------------------------------------------------------
# WET


def read_wet(
    path: str,
    stats: Stats | None = None,
    *,
    name: str | None = None,
    source: str = "commoncrawl",
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    invalid_utf8: Literal["skip", "replace"] = "skip",
) -> Iterator[Document]:
    """One document per `conversion` record of a WET file (`.gz`, `.zst` or plain).

    The text is the record body exactly (CC's extractor writes UTF-8; cc_net would move
    its first line to `title`, we keep it). `warcinfo` and other non-document records
    are counted as `wet:<type>_records`. Drops: the parser's (see `iter_warc_records`),
    `wet:invalid_utf8` (unless `invalid_utf8="replace"`) and `wet:empty`. `name` prefixes
    ids of records without `WARC-Record-ID` (default: the file name). A compressed stream
    that breaks raises `CorruptInput` after its last complete record.
    """
    stats = stats if stats is not None else Stats()
    name = name or posixpath.basename(path)
    segment = segment_of(path)
    errors = "strict" if invalid_utf8 == "skip" else "replace"
    records = iter_warc_records(
        decompressed_chunks(path), stats, "wet", max_record_bytes=max_document_bytes
    )
    for record in records:
        if record.type != "conversion":
            stats.count(f"wet:{record.type}_records")
            continue
        try:
            text = record.block.decode("utf-8", errors)
        except UnicodeDecodeError:
            stats.drop("wet:invalid_utf8")
            continue
        if not text or text.isspace():
            stats.drop("wet:empty")
            continue
        headers = record.headers
        meta = {
            "url": headers.get("warc-target-uri"),
            "date": headers.get("warc-date"),
            "digest": headers.get("warc-block-digest"),
            "length": int(headers["content-length"]),
            "segment": segment,
        }
        for key, field in (("title", "title"), ("language", "warc-identified-content-language")):
            if field in headers:
                meta[key] = headers[field]
        doc_id = record_id(headers) or f"{name}:{record.index}"
        yield Document(doc_id, text, source, meta)


class WetParams(ReaderParams):
    invalid_utf8: Literal["skip", "replace"] = Field(
        "skip",
        description="A body that is not UTF-8 is corrupt (CC writes UTF-8): skip it as "
        "wet:invalid_utf8, or keep it with U+FFFD for the bad bytes.",
    )


@register_reader
class WetReader(Reader):
    """Common Crawl WET files: the crawl's own text extraction, one document per page
    (CCNet's input, LLaMA section 2 "English CommonCrawl")."""

    name = "wet"
    Params = WetParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        p = self.params
        assert isinstance(p, WetParams)
        return read_wet(
            path,
            stats,
            name=doc_id,
            source=source,
            max_document_bytes=p.max_document_bytes,
            invalid_utf8=p.invalid_utf8,
        )


# ---------------------------------------------------------------------------------------
# WARC

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


def split_http(block: bytes) -> HttpResponse | None:
    """Status line, header fields and body of an HTTP response block; None if malformed."""
    crlf, lf = block.find(b"\r\n\r\n"), block.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        end, body_start = crlf, crlf + 4
    elif lf >= 0:
        end, body_start = lf, lf + 2
    else:
        return None
    status_line, _, raw = block[:end].partition(b"\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    headers = _parse_headers(raw) if raw.strip() else {}
    if headers is None:
        return None
    return HttpResponse(int(parts[1]), headers, block[body_start:])


def mime_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def decode_html(body: bytes, content_type: str) -> str:
    """The page as text: the charset of `Content-Type` when Python knows it (WHATWG
    labels, so `iso-8859-1` means windows-1252 as in browsers), else the page's
    `<meta charset>`, else detected; resiliparse falls back to UTF-8, then cp1252."""
    match = _CHARSET.search(content_type)
    encoding = None
    if match:
        try:
            codecs.lookup(match.group(1))
            encoding = map_encoding_to_html5(match.group(1))
        except LookupError:
            encoding = None
    if encoding is None:
        encoding = detect_encoding(body, from_html_meta=True)
    return bytes_to_str(body, encoding, errors="replace")


def decoded_payload(response: HttpResponse, max_bytes: int) -> bytes | str:
    """The body with HTTP transfer and content codings undone (Common Crawl stores it
    decoded, other crawlers often do not). Returns the drop reason as a str on failure."""
    body = response.body
    if "chunked" in response.headers.get("transfer-encoding", "").lower():
        dechunked = _dechunk(body)
        if dechunked is None:
            return "bad_transfer_encoding"
        body = dechunked
    coding = response.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        return "unsupported_content_encoding"
    # gzip header, or zlib header for deflate; raw deflate as the common mistake
    for wbits in (47, -zlib.MAX_WBITS):
        decoder = zlib.decompressobj(wbits)
        try:
            inflated = decoder.decompress(body, max_bytes + 1)
        except zlib.error:
            continue
        return inflated if len(inflated) <= max_bytes else "document_too_large"
    return "bad_content_encoding"


def _dechunk(body: bytes) -> bytes | None:
    """HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1) undone; None if malformed."""
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_field = body[pos:eol].partition(b";")[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            return None
        if size == 0:
            return bytes(out)
        if eol + 2 + size > len(body):
            return None
        out += body[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


def read_warc(
    path: str,
    stats: Stats | None = None,
    *,
    name: str | None = None,
    source: str = "commoncrawl",
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    main_content: bool = True,
) -> Iterator[Document]:
    """One document per HTML `response` record of a WARC file, its text extracted with
    `stages.html.html_to_text` (the re-extraction RefinedWeb and FineWeb prefer to WET).

    Non-response records (warcinfo, request, metadata, revisit) are no documents: they
    are counted as `warc:<type>_records`, not dropped. Drops: the parser's, plus
    `warc:not_http` (a response that is no HTTP message), `warc:malformed_http`,
    `warc:not_html` (by the HTTP `Content-Type`, else `WARC-Identified-Payload-Type`),
    `warc:bad_transfer_encoding`, `warc:bad_content_encoding`,
    `warc:unsupported_content_encoding`, `warc:empty` (no text extracted).
    """
    stats = stats if stats is not None else Stats()
    name = name or posixpath.basename(path)
    segment = segment_of(path)
    records = iter_warc_records(
        decompressed_chunks(path), stats, "warc", max_record_bytes=max_document_bytes
    )
    for record in records:
        headers = record.headers
        if record.type != "response":
            stats.count(f"warc:{record.type}_records")
            continue
        if not headers.get("content-type", "").lower().startswith("application/http"):
            stats.drop("warc:not_http")
            continue
        response = split_http(record.block)
        if response is None:
            stats.drop("warc:malformed_http")
            continue
        content_type = response.headers.get(
            "content-type", headers.get("warc-identified-payload-type", "")
        )
        if mime_type(content_type) not in _HTML_TYPES:
            stats.drop("warc:not_html")
            continue
        payload = decoded_payload(response, max_document_bytes)
        if isinstance(payload, str):
            stats.drop(f"{'read' if payload == 'document_too_large' else 'warc'}:{payload}")
            continue
        text = html_to_text(decode_html(payload, content_type), main_content=main_content)
        if not text:
            stats.drop("warc:empty")
            continue
        meta = {
            "url": headers.get("warc-target-uri"),
            "date": headers.get("warc-date"),
            "digest": headers.get("warc-payload-digest", headers.get("warc-block-digest")),
            "content_type": content_type,
            "status": response.status,
            "segment": segment,
        }
        if "warc-identified-content-language" in headers:
            meta["language"] = headers["warc-identified-content-language"]
        doc_id = record_id(headers) or f"{name}:{record.index}"
        yield Document(doc_id, text, source, meta)


class WarcParams(ReaderParams):
    main_content: bool = Field(
        True, description="Keep only the main content (menus, footers dropped); false: all text."
    )


@register_reader
class WarcReader(Reader):
    """Common Crawl (or any) WARC files: HTML responses turned into text."""

    name = "warc"
    Params = WarcParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        p = self.params
        assert isinstance(p, WarcParams)
        return read_warc(
            path,
            stats,
            name=doc_id,
            source=source,
            max_document_bytes=p.max_document_bytes,
            main_content=p.main_content,
        )
