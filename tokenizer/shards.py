"""Token shards in Megatron-LM's indexed-dataset layout: `<prefix>.bin` + `<prefix>.idx`.

Megatron-LM (megatron/core/datasets/indexed_dataset.py: `_IndexWriter`, `_IndexReader`,
`IndexedDatasetBuilder`), NeMo and GPT-NeoX read this layout, so a llamix dataset trains
there without conversion. Checked against megatron-core 0.16.1: its `IndexedDatasetBuilder`
writes byte-identical files for the same documents, and its `IndexedDataset` reads ours.

`.bin`: the token ids of every document back to back, little-endian, in the index's dtype.

`.idx`, all little-endian:

    9 bytes   magic  b"MMIDIDX\\x00\\x00"
    u64       version, always 1
    u8        dtype code: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64,
              7 float32, 8 uint16
    u64       sequence count S
    u64       document-index count, which is D + 1 for D documents: Megatron writes
              `len(document_indices)` and its builder starts that list at [0]
    int32[S]  sequence lengths, in tokens
    int64[S]  sequence pointers: byte offset of each sequence in the .bin
    int64[D+1] document indices: document d is sequences [idx[d], idx[d+1]); starts at 0,
              ends at S

llamix writes one sequence per document, as Megatron's `preprocess_data.py` does without
`--split-sentences`, so the document indices are 0, 1, ..., D. An empty document is a
sequence of length 0: document i stays sequence i. The reader accepts any contiguous file
Megatron writes, several sequences per document included.

Tokens are uint16 while every id fits (vocabulary of at most 65,536, LLaMA's is 32,000),
else int32: half the disk and page cache for the common case. (Megatron's
`DType.optimal_dtype` switches at 65,500; readers take the dtype from the header, so both
read either file.)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipeline.io import AtomicWriter, filesystem, join, temporary_name

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype("u1"),
    2: np.dtype("i1"),
    3: np.dtype("<i2"),
    4: np.dtype("<i4"),
    5: np.dtype("<i8"),
    6: np.dtype("<f8"),
    7: np.dtype("<f4"),
    8: np.dtype("<u2"),
}
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequences, document indices
DEFAULT_TARGET_BYTES = 1 << 30
MAX_SEQUENCE_TOKENS = (1 << 31) - 1  # sequence lengths are int32


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id of the vocabulary fits in it, else int32."""
    if not 0 < vocab_size <= MAX_SEQUENCE_TOKENS:
        raise ValueError(f"vocab_size {vocab_size} must be in [1, 2**31 - 1]")
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<i4")


def dtype_code(dtype: np.dtype) -> int:
    return next(code for code, known in DTYPE_CODES.items() if known == dtype)


class TokenShardWriter(AtomicWriter):
    """Streams documents into `<prefix>.bin`; writes `<prefix>.idx` on close.

    Both files are written under temporary names and renamed on a clean close, the .bin
    first: a reader that finds the .idx finds a complete .bin. Only one length per document
    stays in memory, never the tokens.
    """

    def __init__(self, prefix: str, vocab_size: int) -> None:
        self.prefix = prefix
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self._fs, inner = filesystem(prefix)
        self._fs.makedirs(self._fs._parent(inner), exist_ok=True)
        self._bin, self._idx = f"{inner}.bin", f"{inner}.idx"
        self._bin_tmp = temporary_name(self._bin)
        self._handle: BinaryIO = self._fs.open(self._bin_tmp, "wb")
        self._lengths: list[int] = []
        self.documents = 0
        self.tokens = 0

    @property
    def bin_bytes(self) -> int:
        return self.tokens * self.dtype.itemsize

    def add_document(self, tokens: np.ndarray | Sequence[int], doc_id: str | None = None) -> None:
        """Appends one document; `doc_id` only names it in the error for a bad token id."""
        ids = np.asarray(tokens)
        name = doc_id if doc_id is not None else f"document {self.documents}"
        if ids.ndim != 1:
            raise ValueError(f"{name} of {self.prefix}: tokens must be 1-D, got shape {ids.shape}")
        if ids.size:
            if ids.dtype.kind not in "iu":
                raise ValueError(f"{name} of {self.prefix}: token ids must be integers")
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= self.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(
                    f"{name} of {self.prefix}: token id {bad} outside the vocabulary "
                    f"[0, {self.vocab_size}): was it encoded with another tokenizer?"
                )
            if ids.size > MAX_SEQUENCE_TOKENS:
                raise ValueError(f"{name} of {self.prefix}: {ids.size} tokens overflow int32")
        self._handle.write(ids.astype(self.dtype, copy=False).tobytes())
        self._lengths.append(ids.size)
        self.documents += 1
        self.tokens += ids.size

    def close(self) -> None:
        self._handle.close()
        lengths = np.array(self._lengths, dtype="<i4")
        ends = np.cumsum(lengths, dtype="<i8") * self.dtype.itemsize
        pointers = np.concatenate([np.zeros(1, "<i8"), ends[:-1]]) if lengths.size else ends
        document_indices = np.arange(lengths.size + 1, dtype="<i8")
        header = HEADER.pack(
            MAGIC, VERSION, dtype_code(self.dtype), lengths.size, document_indices.size
        )
        idx_tmp = temporary_name(self._idx)
        with self._fs.open(idx_tmp, "wb") as handle:
            for part in (header, lengths.tobytes(), pointers.tobytes(), document_indices.tobytes()):
                handle.write(part)
        self._fs.mv(self._bin_tmp, self._bin)
        self._fs.mv(idx_tmp, self._idx)

    def abort(self) -> None:
        self._handle.close()
        self._fs.rm(self._bin_tmp)


class ShardSetWriter(AtomicWriter):
    """Writes `directory/part-00000`, `part-00001`, ... cutting a new shard once the current
    .bin reaches `target_bytes`. Documents are never split, so a shard may pass the target by
    one document; the cut points depend only on the documents, so the output is deterministic.
    """

    def __init__(
        self, directory: str, vocab_size: int, target_bytes: int = DEFAULT_TARGET_BYTES
    ) -> None:
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes}")
        self.directory = directory
        self.vocab_size = vocab_size
        self.target_bytes = target_bytes
        self.prefixes: list[str] = []
        self.documents = 0
        self.tokens = 0
        self._current: TokenShardWriter | None = None

    def add_document(self, tokens: np.ndarray | Sequence[int], doc_id: str | None = None) -> None:
        if self._current is None:
            prefix = join(self.directory, f"part-{len(self.prefixes):05d}")
            self._current = TokenShardWriter(prefix, self.vocab_size)
        before = self._current.tokens
        self._current.add_document(tokens, doc_id)
        self.documents += 1
        self.tokens += self._current.tokens - before
        if self._current.bin_bytes >= self.target_bytes:
            self._finish()

    def _finish(self) -> None:
        if self._current is not None:
            self._current.close()
            self.prefixes.append(self._current.prefix)
            self._current = None

    def close(self) -> list[str]:
        """Closes the open shard; returns every shard prefix written, in order (none when no
        document was added)."""
        self._finish()
        return self.prefixes

    def abort(self) -> None:
        if self._current is not None:
            self._current.abort()
            self._current = None


class TokenShardReader:
    """Memory-maps a local shard; documents come back as read-only views, nothing is copied.

    Accepts any contiguous Megatron file (several sequences per document included): a
    document is the token range from the start of its first sequence to the end of its last.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        idx_path, bin_path = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
        if not idx_path.exists() or not bin_path.exists():
            raise FileNotFoundError(
                f"{prefix}.idx/.bin not found: token shards are read from local disk; "
                "copy remote shards locally first"
            )
        with idx_path.open("rb") as handle:
            raw = handle.read(HEADER.size)
        if len(raw) < HEADER.size:
            raise ValueError(f"{idx_path}: truncated header, not a Megatron index")
        magic, version, code, sequences, doc_entries = HEADER.unpack(raw)
        if magic != MAGIC or version != VERSION or code not in DTYPE_CODES:
            raise ValueError(
                f"{idx_path}: not a Megatron MMIDIDX v1 index "
                f"(magic {magic!r}, version {version}, dtype code {code})"
            )
        self.dtype = DTYPE_CODES[code]
        index = np.memmap(idx_path, dtype=np.uint8, mode="r")
        if index.size < HEADER.size + 12 * sequences + 8 * doc_entries:
            raise ValueError(f"{idx_path}: truncated: shorter than its header promises")
        offset = HEADER.size
        sequence_lengths = np.frombuffer(index, "<i4", sequences, offset)
        offset += sequence_lengths.nbytes
        pointers = np.frombuffer(index, "<i8", sequences, offset)
        offset += pointers.nbytes
        document_indices = np.frombuffer(index, "<i8", doc_entries, offset)

        # Token offset of each sequence boundary; checks the .bin is laid out back to back.
        bounds = np.concatenate([[0], np.cumsum(sequence_lengths, dtype=np.int64)])
        if not np.array_equal(pointers, bounds[:-1] * self.dtype.itemsize):
            raise ValueError(f"{idx_path}: sequences are not contiguous in the .bin")
        if (
            doc_entries == 0
            or document_indices[0] != 0
            or document_indices[-1] != sequences
            or np.any(np.diff(document_indices) < 0)
        ):
            raise ValueError(f"{idx_path}: document indices do not span the sequences")
        self._starts = bounds[document_indices]  # token offset of each document boundary
        self.lengths = np.diff(self._starts)
        self.num_tokens = int(bounds[-1])

        if bin_path.stat().st_size != self.num_tokens * self.dtype.itemsize:
            raise ValueError(f"{bin_path}: size does not match its index {idx_path}")
        # np.memmap refuses an empty file; a shard of empty documents has one.
        self._tokens = (
            np.memmap(bin_path, dtype=self.dtype, mode="r")
            if self.num_tokens
            else np.empty(0, self.dtype)
        )

    def __len__(self) -> int:
        return self.lengths.size

    def document(self, i: int) -> np.ndarray:
        return self.tokens(i, 0, int(self.lengths[self._check(i)]))

    def tokens(self, i: int, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of document i: what a sampler reads for one window."""
        length = int(self.lengths[self._check(i)])
        if not 0 <= start <= stop <= length:
            raise IndexError(f"token range [{start}, {stop}) outside document {i} of {length}")
        base = int(self._starts[i])
        return self._tokens[base + start : base + stop]

    def _check(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"document {i} outside {self.prefix} of {len(self)} documents")
        return i
