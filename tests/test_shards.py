"""Token shards: Megatron-LM's MMIDIDX layout, checked by a reader written here from the spec."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest

from tokenizer.shards import ShardSetWriter, TokenShardReader, TokenShardWriter

LLAMA_VOCAB = 32_000


def megatron_read(prefix: Path) -> tuple[int, list[np.ndarray]]:
    """Reads a shard the way Megatron's _IndexReader does, independently of tokenizer.shards:
    the dtype code and every document's tokens."""
    idx = Path(f"{prefix}.idx")
    with idx.open("rb") as handle:
        assert handle.read(9) == b"MMIDIDX\x00\x00"
        (version,) = struct.unpack("<Q", handle.read(8))
        (code,) = struct.unpack("<B", handle.read(1))
        sequences, doc_entries = struct.unpack("<QQ", handle.read(16))
        lengths = np.fromfile(handle, dtype="<i4", count=sequences)
        pointers = np.fromfile(handle, dtype="<i8", count=sequences)
        doc_index = np.fromfile(handle, dtype="<i8", count=doc_entries)
        assert handle.read() == b""
    assert version == 1
    dtype = {8: np.dtype("<u2"), 4: np.dtype("<i4")}[code]
    data = np.fromfile(f"{prefix}.bin", dtype=dtype)
    docs = []
    for first, end in itertools.pairwise(doc_index):
        parts = [data[pointers[s] // dtype.itemsize :][: lengths[s]] for s in range(first, end)]
        docs.append(np.concatenate(parts) if parts else np.empty(0, dtype))
    return code, docs


def random_documents(count: int, vocab: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=rng.integers(0, 300)) for _ in range(count)]


def write(prefix: Path, docs: list[np.ndarray], vocab: int = LLAMA_VOCAB) -> TokenShardWriter:
    with TokenShardWriter(str(prefix), vocab) as writer:
        for doc in docs:
            writer.add_document(doc)
    return writer


def test_round_trip_through_the_reader(tmp_path: Path) -> None:
    docs = random_documents(200, LLAMA_VOCAB)
    writer = write(tmp_path / "part-00000", docs)
    reader = TokenShardReader(str(tmp_path / "part-00000"))

    assert len(reader) == writer.documents == 200
    assert reader.num_tokens == writer.tokens == sum(d.size for d in docs)
    assert reader.dtype == np.dtype("<u2")
    assert reader.lengths.tolist() == [d.size for d in docs]
    for i, doc in enumerate(docs):
        assert np.array_equal(reader.document(i), doc)


def test_an_independent_megatron_reader_sees_every_document(tmp_path: Path) -> None:
    docs = random_documents(300, LLAMA_VOCAB, seed=1)
    write(tmp_path / "shard", docs)

    code, read = megatron_read(tmp_path / "shard")

    assert code == 8  # uint16
    assert len(read) == len(docs)
    for mine, theirs in zip(docs, read, strict=True):
        assert np.array_equal(mine, theirs)


def test_a_vocabulary_beyond_uint16_is_written_as_int32(tmp_path: Path) -> None:
    vocab = 100_000
    docs = [*random_documents(50, vocab, seed=2), np.array([65_535, 65_536, vocab - 1])]
    write(tmp_path / "wide", docs, vocab=vocab)

    code, read = megatron_read(tmp_path / "wide")
    reader = TokenShardReader(str(tmp_path / "wide"))

    assert code == 4  # int32
    assert reader.dtype == np.dtype("<i4")
    assert (tmp_path / "wide.bin").stat().st_size == 4 * sum(d.size for d in docs)
    for i, doc in enumerate(docs):
        assert np.array_equal(read[i], doc)
        assert np.array_equal(reader.document(i), doc)


def test_the_largest_uint16_vocabulary_stays_uint16(tmp_path: Path) -> None:
    write(tmp_path / "edge", [np.array([0, 65_535])], vocab=65_536)
    assert megatron_read(tmp_path / "edge")[0] == 8


@pytest.mark.parametrize("bad", [LLAMA_VOCAB, -1, 10**9])
def test_an_id_outside_the_vocabulary_names_the_document(tmp_path: Path, bad: int) -> None:
    with TokenShardWriter(str(tmp_path / "bad"), LLAMA_VOCAB) as writer:
        writer.add_document([1, 2, 3])
        with pytest.raises(ValueError, match=rf"document 1 .*token id {bad}"):
            writer.add_document([5, bad, 7])
        with pytest.raises(ValueError, match=rf"web/42 .*token id {bad}"):
            writer.add_document(np.array([bad]), doc_id="web/42")
    # The refused documents left nothing behind: the shard holds the good one only.
    assert [d.tolist() for d in megatron_read(tmp_path / "bad")[1]] == [[1, 2, 3]]


def test_empty_documents_keep_their_place(tmp_path: Path) -> None:
    docs = [np.array([], dtype=np.int64), np.array([4, 5]), [], np.array([6])]
    write(tmp_path / "gaps", docs)
    reader = TokenShardReader(str(tmp_path / "gaps"))

    assert reader.lengths.tolist() == [0, 2, 0, 1]
    assert [reader.document(i).tolist() for i in range(4)] == [[], [4, 5], [], [6]]
    assert [d.tolist() for d in megatron_read(tmp_path / "gaps")[1]] == [[], [4, 5], [], [6]]


def test_a_shard_of_only_empty_documents_reads_back(tmp_path: Path) -> None:
    write(tmp_path / "blank", [[], []])
    reader = TokenShardReader(str(tmp_path / "blank"))
    assert (tmp_path / "blank.bin").stat().st_size == 0
    assert len(reader) == 2
    assert reader.num_tokens == 0
    assert reader.document(1).size == 0


def test_token_ranges_of_a_document(tmp_path: Path) -> None:
    write(tmp_path / "s", [np.arange(10), np.arange(100, 120)])
    reader = TokenShardReader(str(tmp_path / "s"))

    assert reader.tokens(1, 5, 9).tolist() == [105, 106, 107, 108]
    assert reader.tokens(0, 10, 10).size == 0
    with pytest.raises(IndexError):
        reader.tokens(0, 5, 11)
    with pytest.raises(IndexError):
        reader.document(2)


def test_idx_header_bytes_follow_megatron(tmp_path: Path) -> None:
    write(tmp_path / "h", [np.array([1, 2, 3]), np.array([], dtype=np.int64), np.array([9, 8])])
    raw = (tmp_path / "h.idx").read_bytes()

    expected = (
        b"MMIDIDX\x00\x00"  # magic
        + b"\x01\x00\x00\x00\x00\x00\x00\x00"  # version 1, u64 little-endian
        + b"\x08"  # dtype code 8: uint16
        + b"\x03\x00\x00\x00\x00\x00\x00\x00"  # 3 sequences
        + b"\x04\x00\x00\x00\x00\x00\x00\x00"  # 4 document indices: 3 documents + 1
        + b"\x03\x00\x00\x00"
        + b"\x00\x00\x00\x00"
        + b"\x02\x00\x00\x00"  # int32 lengths
        + (0).to_bytes(8, "little")
        + (6).to_bytes(8, "little")  # int64 byte pointers
        + (6).to_bytes(8, "little")
        + b"".join(i.to_bytes(8, "little") for i in range(4))  # int64 document indices 0..3
    )
    assert raw == expected
    assert (tmp_path / "h.bin").read_bytes() == bytes([1, 0, 2, 0, 3, 0, 9, 0, 8, 0])


def test_files_appear_only_on_a_clean_close(tmp_path: Path) -> None:
    writer = TokenShardWriter(str(tmp_path / "p"), LLAMA_VOCAB)
    writer.add_document([1, 2])
    assert not (tmp_path / "p.bin").exists()
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.bin", "p.idx"]

    with pytest.raises(RuntimeError), TokenShardWriter(str(tmp_path / "q"), LLAMA_VOCAB) as w:
        w.add_document([3])
        raise RuntimeError("encoder died")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.bin", "p.idx"]


def test_shard_set_rolls_over_at_the_target_size(tmp_path: Path) -> None:
    docs = random_documents(120, LLAMA_VOCAB, seed=3)
    target = 4_000  # bytes: 2,000 uint16 tokens, a dozen documents a shard
    with ShardSetWriter(str(tmp_path / "web"), LLAMA_VOCAB, target_bytes=target) as shards:
        for doc in docs:
            shards.add_document(doc)
    prefixes = shards.close()

    assert len(prefixes) > 3
    assert prefixes == [str(tmp_path / "web" / f"part-{i:05d}") for i in range(len(prefixes))]
    assert shards.documents == len(docs)
    assert shards.tokens == sum(d.size for d in docs)
    read = [doc for prefix in prefixes for doc in megatron_read(Path(prefix))[1]]
    assert all(np.array_equal(a, b) for a, b in zip(read, docs, strict=True))
    sizes = [Path(f"{p}.bin").stat().st_size for p in prefixes]
    # Every shard but the last reached the target, and passed it by less than one document.
    assert all(target <= size < target + 2 * 300 for size in sizes[:-1])


def test_shard_set_is_deterministic(tmp_path: Path) -> None:
    docs = random_documents(60, LLAMA_VOCAB, seed=4)
    outputs = []
    for run in ("a", "b"):
        with ShardSetWriter(str(tmp_path / run), LLAMA_VOCAB, target_bytes=3_000) as shards:
            for doc in docs:
                shards.add_document(doc)
        outputs.append(
            [Path(f"{p}.{ext}").read_bytes() for p in shards.close() for ext in ("bin", "idx")]
        )
    assert outputs[0] == outputs[1]


def test_shard_set_without_documents_writes_nothing(tmp_path: Path) -> None:
    with ShardSetWriter(str(tmp_path / "none"), LLAMA_VOCAB) as shards:
        pass
    assert shards.close() == []
    assert not (tmp_path / "none").exists()


def test_reader_refuses_a_file_that_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "x.idx").write_bytes(b"NOTANIDX" + bytes(40))
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="not a Megatron MMIDIDX"):
        TokenShardReader(str(tmp_path / "x"))


def test_reader_reads_several_sequences_per_document(tmp_path: Path) -> None:
    """Megatron's --split-sentences writes one sequence per sentence; a document is their run."""
    lengths = np.array([2, 1, 3], dtype="<i4")
    pointers = np.array([0, 4, 6], dtype="<i8")
    doc_index = np.array([0, 2, 3], dtype="<i8")
    header = b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 8, 3, 3)
    body = lengths.tobytes() + pointers.tobytes() + doc_index.tobytes()
    (tmp_path / "m.idx").write_bytes(header + body)
    np.array([1, 2, 3, 4, 5, 6], dtype="<u2").tofile(tmp_path / "m.bin")

    reader = TokenShardReader(str(tmp_path / "m"))
    assert [reader.document(i).tolist() for i in range(len(reader))] == [[1, 2, 3], [4, 5, 6]]
