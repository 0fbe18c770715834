"""CCNet's text normalisation and its global line (paragraph) dedup.

CCNet (Wenzek et al. 2020, "Deduplication" in the pipeline section) removes every paragraph,
i.e. every "\\n"-separated line, that appears in more than one document of a snapshot;
LLaMA (Touvron et al. 2023, §2.1) keeps this step for its English CommonCrawl. The
functions here return exactly what cc_net 1.0.0's `text_normalizer.normalize_for_dedup`,
`text_normalizer.normalize` and `dedup.compute_hashes` return (the tests compare them line
by line on real text and on every code point), only faster: ASCII lines take a bytes fast
path, other lines run cc_net's regular expressions once per line.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.document import Document
from pipeline.stats import Stats
from stages.base import GlobalStage, Params, register_stage

# cc_net's UNICODE_PUNCT: typographic and full-width punctuation and its ASCII form.
# "１" (full-width one) is in cc_net's table too, but digits become "0" before punctuation
# is touched, so it only matters when `numbers` is off.
UNICODE_PUNCT: dict[str, str] = {
    **dict.fromkeys("，、", ","),
    "。": ".",
    **dict.fromkeys("„”“«»１」「《》", '"'),
    **dict.fromkeys("´’", "'"),
    **dict.fromkeys("∶：", ":"),
    "？": "?",
    "！": "!",
    "（": "(",
    "）": ")",
    "；": ";",
    **dict.fromkeys("–━►", "-"),
    "—": " - ",
    "．": ". ",
    "～": "~",
    "…": "...",
    "〈": "<",
    "〉": ">",
    "【": "[",
    "】": "]",
    "％": "%",
}

# cc_net's non-printing characters: C0 controls, DEL and C1 controls.
_CONTROL = "".join(map(chr, [*range(32), *range(127, 160)]))

_DIGIT = re.compile(r"\d")  # Unicode category Nd, exactly as cc_net's DIGIT_RE
_PUNCT = re.compile(f"[{re.escape(''.join(UNICODE_PUNCT))}]")
_CONTROL_RE = re.compile(f"[{re.escape(_CONTROL)}]")
_PUNCT_OR_CONTROL = re.compile(f"[{re.escape(''.join(UNICODE_PUNCT) + _CONTROL)}]")
_PUNCT_OR_CONTROL_BUT_NEWLINE = re.compile(
    f"[{re.escape(''.join(UNICODE_PUNCT) + _CONTROL.replace(chr(10), ''))}]"
)

# ASCII fast paths: on ASCII text, NFD and the Unicode punctuation table change nothing, so
# the normalisations reduce to lowercasing, ASCII digits -> "0" and dropping controls.
_ASCII_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_ASCII_CONTROL = bytes([*range(32), 127])
_ASCII_CONTROL_BUT_NEWLINE = _ASCII_CONTROL.replace(b"\n", b"")

_sha1 = hashlib.sha1


def normalize_for_dedup(line: str) -> str:
    """The form cc_net hashes a line by (`text_normalizer.normalize_for_dedup`): stripped,
    lowercased, every Unicode digit -> "0", CCNet's punctuation and control chars removed.

    Accents stay: cc_net's dedup form keeps them although the paper says it strips them.
    """
    line = line.strip()
    if line.isascii():
        return line.encode("ascii").lower().translate(_ASCII_DIGITS, _ASCII_CONTROL).decode("ascii")
    return _dedup_form_unicode(line)


def _dedup_form_unicode(stripped: str) -> str:
    return _PUNCT_OR_CONTROL.sub("", _DIGIT.sub("0", stripped.lower()))


def _dedup_forms(text: str) -> list[bytes]:
    """UTF-8 of `normalize_for_dedup` of every "\\n"-separated line of `text`.

    Lines go in bulk: a whole ASCII document in one pass of bytes operations, else each
    ASCII line by bytes operations and all other lines joined through one pass of each
    regex. Joining is exact: "\\n" is neither cased nor case-ignorable, so `lower()` (final
    sigma) sees no context across it, and no rule matches or produces it.
    """
    lines = [line.strip() for line in text.split("\n")]
    if text.isascii():  # O(1) in CPython
        joined = "\n".join(lines).encode("ascii").lower()
        return joined.translate(_ASCII_DIGITS, _ASCII_CONTROL_BUT_NEWLINE).split(b"\n")
    forms: list[bytes] = []
    unicode_at = []
    for i, line in enumerate(lines):
        if line.isascii():
            forms.append(line.encode("ascii").lower().translate(_ASCII_DIGITS, _ASCII_CONTROL))
        else:
            forms.append(b"")
            unicode_at.append(i)
    if unicode_at:  # else the only non-ASCII characters were stripped whitespace
        joined = "\n".join([lines[i] for i in unicode_at]).lower()
        unicode_forms = _PUNCT_OR_CONTROL_BUT_NEWLINE.sub("", _DIGIT.sub("0", joined)).split("\n")
        for i, form in zip(unicode_at, unicode_forms, strict=True):
            forms[i] = form.encode("utf-8")
    return forms


def line_hashes(text: str) -> np.ndarray:
    """One uint64 per "\\n"-separated line: the first 8 bytes (little-endian) of the SHA-1 of
    its `normalize_for_dedup` form, as cc_net's `dedup.compute_hashes`.

    An empty text has no lines (cc_net returns None for it).
    """
    if not text:
        return np.empty(0, np.uint64)
    digests = b"".join([_sha1(form).digest()[:8] for form in _dedup_forms(text)])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@functools.cache
def _combining_marks() -> tuple[re.Pattern[str], frozenset[str]]:
    """The code points of category Mn, the accents NFD splits off (cc_net's strip_accents):
    a character class for the BMP, a set for the astral planes.

    `re` matches a BMP-only class by table lookup but scans the ranges of a class that
    reaches past U+FFFF one by one (50x slower), hence the split. Built on first use (a
    scan of all code points, ~0.1 s), not at import.
    """
    marks = [cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Mn"]
    bmp = [cp for cp in marks if cp <= 0xFFFF]
    ranges, start = [], bmp[0]
    for previous, current in zip(bmp, [*bmp[1:], -1], strict=True):
        if current != previous + 1:
            ranges.append(re.escape(chr(start)) + "-" + re.escape(chr(previous)))
            start = current
    astral = frozenset(chr(cp) for cp in marks if cp > 0xFFFF)
    return re.compile(f"[{''.join(ranges)}]"), astral


def _strip_accents(line: str) -> str:
    """NFD without combining marks, as cc_net's strip_accents (which always returns NFD)."""
    bmp_marks, astral_marks = _combining_marks()
    line = bmp_marks.sub("", unicodedata.normalize("NFD", line))
    return _ASTRAL.sub(lambda m: "" if m.group() in astral_marks else m.group(), line)


def _ascii_punct(match: re.Match[str]) -> str:
    return UNICODE_PUNCT[match.group()]


def normalize(
    line: str,
    accent: bool = True,
    case: bool = True,
    numbers: bool = True,
    punct: Literal[0, 1, 2] = 1,
) -> str:
    """The normalisation CCNet's language models are trained and scored on
    (`text_normalizer.normalize`, same arguments and defaults).

    Stripped; lowercased (`case`); NFD without combining marks (`accent`); Unicode digits
    -> "0" (`numbers`); CCNet's punctuation replaced by ASCII (`punct=1`) or removed
    (`punct=2`); control chars removed. Like cc_net, it expects one line: newlines inside
    are control chars and vanish.
    """
    line = line.strip()
    if not line:
        return line
    if line.isascii():
        ascii_line = line.encode("ascii")
        if case:
            ascii_line = ascii_line.lower()
        digits = _ASCII_DIGITS if numbers else None
        return ascii_line.translate(digits, _ASCII_CONTROL).decode("ascii")
    if case:
        line = line.lower()
    if accent:
        line = _strip_accents(line)
    if numbers:
        line = _DIGIT.sub("0", line)
    if punct == 1:
        line = _PUNCT.sub(_ascii_punct, line)
    elif punct == 2:
        line = _PUNCT.sub("", line)
    return _CONTROL_RE.sub("", line)


# --- the global dedup -------------------------------------------------------------------

SORT_SLICES = 16  # `repeated_keys` sorts 1/16 of a partition at a time
_BLOCK_ROWS = 1 << 16


def _blocks(keys: pa.ChunkedArray | pa.Array | np.ndarray) -> Iterator[np.ndarray]:
    """Zero-copy numpy views of at most `_BLOCK_ROWS` keys each."""
    chunks = keys.chunks if isinstance(keys, pa.ChunkedArray) else [keys]
    for chunk in chunks:
        values = chunk if isinstance(chunk, np.ndarray) else chunk.to_numpy(zero_copy_only=False)
        for start in range(0, len(values), _BLOCK_ROWS):
            yield values[start : start + _BLOCK_ROWS]


def repeated_keys(
    keys: pa.ChunkedArray | pa.Array | np.ndarray, slices: int = SORT_SLICES
) -> tuple[np.ndarray, int]:
    """The keys that occur at least twice (sorted, uint64), and how many distinct keys.

    Sorting the whole column would copy it (8 bytes a row on top of the input); this sorts
    one of `slices` equal key sub-ranges at a time, so the extra memory is about
    2 x 8 / `slices` bytes a row. Hashes are uniform, so the sub-ranges are even.
    """
    empty = np.empty(0, np.uint64)
    if len(keys) == 0:
        return empty, 0
    lo = min(int(block.min()) for block in _blocks(keys))
    hi = max(int(block.max()) for block in _blocks(keys))
    width = -(-(hi - lo + 1) // slices)
    found, distinct = [], 0
    for first in range(lo, hi + 1, width):
        low, high = np.uint64(first), np.uint64(min(first + width - 1, hi))
        part = np.concatenate([b[(b >= low) & (b <= high)] for b in _blocks(keys)])
        part.sort()
        same = part[1:] == part[:-1]
        distinct += part.size - int(np.count_nonzero(same))
        found.append(np.unique(part[1:][same]))
    return (np.concatenate(found) if found else empty), distinct


def contains(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Membership of each value in a sorted key array, by binary search: no hash set, and
    no per-call sort of the (large) key array as `np.isin` would do."""
    if sorted_keys.size == 0:
        return np.zeros(values.shape, bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), sorted_keys.size - 1)
    return sorted_keys[at] == values


def remove_duplicate_lines(text: str, duplicates: np.ndarray) -> tuple[str, int]:
    """`text` without the lines whose hash is in `duplicates` (sorted), and without the
    later copies of a line repeated inside it; returns the text and the lines removed.

    As cc_net's `DuplicatesRemover.do` + `finalize_doc`: a line seen in several documents
    goes from all of them (no first copy kept), a repeat within one keeps its first copy.
    Lines that normalise to "" (blank lines) share one hash and are treated alike.
    """
    hashes = line_hashes(text)
    if hashes.size == 0:
        return text, 0
    duplicated = contains(duplicates, hashes).tolist()
    values = hashes.tolist()
    if not any(duplicated) and len(set(values)) == len(values):
        return text, 0
    lines = text.split("\n")
    kept, seen = [], set()
    for line, value, is_duplicate in zip(lines, values, duplicated, strict=True):
        if not is_duplicate and value not in seen:
            kept.append(line)
        seen.add(value)
    return "\n".join(kept), len(lines) - len(kept)


def _sorted_keys(decisions: pa.Table) -> np.ndarray:
    """The duplicate hashes of every partition as one sorted array."""
    if "key" not in decisions.column_names or decisions.num_rows == 0:
        return np.empty(0, np.uint64)
    keys = decisions.column("key").to_numpy()
    if not bool(np.all(keys[1:] >= keys[:-1])):  # partitions arrive in key order; be sure
        keys = np.sort(keys)
    return keys


class LineDedupParams(Params):
    min_length: int = Field(
        300,
        ge=0,
        description=(
            "Drop documents shorter than this many characters after dedup "
            "(cc_net's min_len, checked after dedup instead of before; 0: off)."
        ),
    )


@register_stage
class LineDedup(GlobalStage):
    """CCNet's paragraph dedup over a whole source: a line found in two or more documents is
    removed from every one of them, a line repeated inside one document keeps its first
    copy; exactly cc_net's two-pass dedup (`dedup.HashesCollector` then
    `DuplicatesRemover`, which `deduplicate_two_pass` calls "what is done in the paper").

    Unlike cc_net, which finds duplicates within groups of shards, the reduce sees every
    shard of the source, and `min_length` is checked after dedup rather than before:
    documents left empty or shorter are dropped (`ccnet_dedup:empty`, `:too_short`).
    """

    name = "ccnet_dedup"
    Params = LineDedupParams

    def keys(self, docs: Iterator[Document], stats: Stats) -> pa.Table:
        """Each document's distinct line hashes: only `key`, so the reduce holds 8 bytes
        (+4 for the executor's `shard`) per (document, line) pair."""
        per_doc = [np.unique(line_hashes(doc.text)) for doc in docs]
        hashes = np.concatenate(per_doc) if per_doc else np.empty(0, np.uint64)
        return pa.table({"key": pa.array(hashes, pa.uint64())})

    def decide(self, keys: pa.Table, stats: Stats) -> pa.Table:
        """Hashes in two or more documents, sorted; global, so no `shard` column."""
        repeated, distinct = repeated_keys(keys.column("key"))
        stats.count(f"{self.name}:distinct_hashes", distinct)
        return pa.table({"key": pa.array(repeated, pa.uint64())})

    def apply(
        self, docs: Iterator[Document], decisions: pa.Table, stats: Stats
    ) -> Iterator[Document]:
        duplicates = _sorted_keys(decisions)
        for doc in docs:
            text, removed = remove_duplicate_lines(doc.text, duplicates)
            stats.count(f"{self.name}:lines_in", doc.text.count("\n") + 1 if doc.text else 0)
            if removed:
                stats.count(f"{self.name}:lines_removed", removed)
                removed_bytes = len(doc.text.encode("utf-8")) - len(text.encode("utf-8"))
                stats.count(f"{self.name}:bytes_removed", removed_bytes)
            if not text.strip():
                stats.drop(f"{self.name}:empty")
            elif len(text) < self.params.min_length:
                stats.drop(f"{self.name}:too_short")
            elif removed:
                yield Document(doc.id, text, doc.source, doc.meta)
            else:
                yield doc
