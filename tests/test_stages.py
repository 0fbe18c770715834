"""The three engine stages as pure functions, without Ray."""

from __future__ import annotations

import pyarrow as pa

from pipeline.document import Document
from pipeline.stats import Stats
from stages.exact import ExactDedup, duplicate_rows, normalized_digest
from stages.text import LengthFilter, LinesNormalize, normalize_lines


def docs(*texts: str) -> list[Document]:
    return [Document(f"d{i}", t, "s", {}) for i, t in enumerate(texts)]


def test_length_filter_drops_outside_bounds_with_reasons() -> None:
    stage = LengthFilter(LengthFilter.Params(min_chars=3, max_chars=5))
    stats = Stats()
    kept = list(stage.process(iter(docs("ab", "abc", "abcde", "abcdef")), stats))
    assert [d.text for d in kept] == ["abc", "abcde"]
    assert stats.drops == {"length_filter:too_short": 1, "length_filter:too_long": 1}


def test_normalize_lines_strips_and_collapses_blank_runs() -> None:
    assert normalize_lines("  a  \n\n\n\n b\t\n \n c \n\n") == "a\n\nb\n\nc"
    assert normalize_lines("one\r\ntwo") == "one\ntwo"


def test_lines_normalize_drops_documents_left_empty() -> None:
    stats = Stats()
    out = list(LinesNormalize().process(iter(docs(" x ", " \n\n \n")), stats))
    assert [d.text for d in out] == ["x"]
    assert stats.drops == {"lines_normalize:empty": 1}


def test_exact_digest_ignores_whitespace_layout_only() -> None:
    assert normalized_digest("a  b\nc") == normalized_digest(" a b c ")
    assert normalized_digest("A b") != normalized_digest("a b")
    assert normalized_digest("A b", lowercase=True) == normalized_digest("a b", lowercase=True)


def test_duplicate_rows_keep_the_smallest_id_whatever_the_order() -> None:
    keys = pa.table(
        {
            "digest": pa.array([b"x" * 16, b"y" * 16, b"x" * 16, b"x" * 16], pa.binary(16)),
            "doc_id": ["b", "c", "a", "z"],
            "shard": pa.array([0, 0, 1, 2], pa.int64()),
            "row": pa.array([5, 6, 7, 8], pa.int64()),
        }
    )
    dropped = duplicate_rows(keys).to_pylist()
    assert sorted((r["shard"], r["row"]) for r in dropped) == [(0, 5), (2, 8)]


def test_exact_dedup_in_process_matches_the_distributed_contract() -> None:
    stats = Stats()
    out = list(ExactDedup().process(iter(docs("same", "other", " same ", "same")), stats))
    assert [d.id for d in out] == ["d0", "d1"]
    assert stats.drops == {"exact_dedup:duplicate": 2}
