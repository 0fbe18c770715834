"""The tokenize step on the engine: token shards of real text, dataset.json, determinism, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import yaml

from pipeline.cli import main
from pipeline.document import Document
from pipeline.manifest import parse_manifest
from pipeline.stats import Stats
from stages.wikipedia import read_wiki_dump
from tokenizer.encode import TokenizeParams, TokenizeSink, _chunks, tokenize
from tokenizer.shards import TokenShardReader


@pytest.fixture(scope="module")
def reference_model(shared_data: Path) -> str:
    """A real 32k SentencePiece BPE with byte fallback (Mistral's), as LLaMA's is."""
    return str(shared_data / "tokenizers" / "mistral-bpe-32k.model")


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sources of real text, three JSONL shards each."""
    root = tmp_path_factory.mktemp("tokenize-corpus")
    wiki = [
        d.text for d in read_wiki_dump(str(shared_data / "wikipedia" / "enwiki-shortened.xml.bz2"))
    ]
    code = [p.read_text() for p in sorted((shared_data / "code" / "repos" / "click").glob("*.py"))]
    for name, texts in (("wiki", wiki), ("code", code)):
        (root / name).mkdir()
        for shard in range(3):
            with (root / name / f"part-{shard}.jsonl").open("w") as out:
                for n, text in enumerate(texts[shard::3]):
                    out.write(json.dumps({"id": f"{name}-{shard}-{n}", "text": text}) + "\n")
    return root


def _spec(corpus: Path) -> dict:
    return {
        "output": "out",
        "sources": {
            name: {"reader": {"type": "jsonl", "id_field": "id"}, "inputs": [str(corpus / name)]}
            for name in ("wiki", "code")
        },
        "mixture": {"wiki": {"weight": 3.0, "epochs": 2.0}, "code": {"weight": 1.0}},
    }


def _shard_bytes(out: Path) -> dict[str, bytes]:
    root = out / "dataset"
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.suffix in (".bin", ".idx")
    }


def test_shards_hold_every_document_framed_by_bos_and_eos(
    corpus: Path, reference_model: str, tmp_path: Path, ray_local: None
) -> None:
    dataset = tokenize(
        parse_manifest(_spec(corpus)),
        reference_model,
        output=str(tmp_path),
        workers=2,
        progress=False,
    )
    sp = spm.SentencePieceProcessor(model_file=reference_model)
    assert dataset["dtype"] == "uint16" and dataset["tokenizer"]["vocab_size"] == 32000
    texts = {
        json.loads(line)["id"]: json.loads(line)["text"]
        for path in sorted(corpus.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    }
    for source in ("wiki", "code"):
        entry = dataset["sources"][source]
        assert len(entry["shards"]) == 3
        readers = [TokenShardReader(str(tmp_path / "dataset" / s)) for s in entry["shards"]]
        assert sum(len(r) for r in readers) == entry["documents"]
        assert sum(r.num_tokens for r in readers) == entry["tokens"]
        expected = sorted(
            (i for i in texts if i.startswith(source)),
            key=lambda i: (i.split("-")[1], int(i.split("-")[2])),
        )
        got = [r.document(d) for r in readers for d in range(len(r))]
        for doc_id, tokens in zip(expected, got, strict=True):
            assert tokens[0] == sp.bos_id() and tokens[-1] == sp.eos_id()
            assert tokens[1:-1].tolist() == sp.encode(texts[doc_id])
    shares = {s: e["effective_proportion"] for s, e in dataset["sources"].items()}
    wiki, code = (dataset["sources"][s]["tokens"] for s in ("wiki", "code"))
    assert shares["wiki"] == pytest.approx(2 * wiki / (2 * wiki + code))
    assert dataset["sources"]["wiki"]["weight"] == 3.0
    written = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert written == dataset


def test_same_bytes_with_one_and_two_workers_and_after_a_lost_shard(
    corpus: Path, reference_model: str, tmp_path: Path, ray_local: None
) -> None:
    run = parse_manifest(_spec(corpus))
    tokenize(run, reference_model, output=str(tmp_path / "one"), workers=1, progress=False)
    tokenize(run, reference_model, output=str(tmp_path / "two"), workers=2, progress=False)
    reference = _shard_bytes(tmp_path / "one")
    assert reference and reference == _shard_bytes(tmp_path / "two")

    # A run killed mid-step: one shard's record and files gone, another's record only.
    dataset = tmp_path / "two" / "dataset"
    shutil.rmtree(dataset / "wiki" / "part-00001")
    (dataset / "wiki" / "_done" / "part-00001.json").unlink()
    (dataset / "code" / "_done" / "part-00002.json").unlink()
    tokenize(run, reference_model, output=str(tmp_path / "two"), workers=2, progress=False)
    assert _shard_bytes(tmp_path / "two") == reference


def test_long_documents_are_encoded_in_chunks_cut_at_line_breaks(
    reference_model: str, shared_data: Path
) -> None:
    book = (shared_data / "books" / "botchan.txt").read_text(encoding="utf-8-sig")
    pieces = list(_chunks(book, 10_000))
    assert "".join(pieces) == book and len(pieces) > 10
    assert all(len(p) <= 10_000 and p.endswith("\n") for p in pieces[:-1])

    sink = TokenizeSink(TokenizeParams(model=reference_model, chunk_chars=10_000))
    sink.setup()
    sp = spm.SentencePieceProcessor(model_file=reference_model)
    (tokens,) = sink._encode([Document("b", book, "books")])
    assert tokens == [t for piece in pieces for t in sp.encode(piece)]
    short = Document("s", "A short text, 123.", "books")
    assert sink._encode([short]) == [sp.encode(short.text)]


def test_write_returns_what_it_wrote(reference_model: str, tmp_path: Path) -> None:
    sink = TokenizeSink(TokenizeParams(model=reference_model, add_bos=False))
    sink.setup()
    stats = Stats()
    docs = [Document(str(n), f"document number {n}", "s") for n in range(5)]
    result = sink.write(iter(docs), str(tmp_path / "part-00000"), stats)
    assert result["documents"] == 5 and stats.docs_out == 5
    assert result["text_bytes"] == sum(len(d.text) for d in docs)
    (prefix,) = result["shards"]
    reader = TokenShardReader(prefix)
    assert reader.num_tokens == result["tokens"] == stats.counters["tokenize:tokens"]
    assert all(int(reader.document(i)[-1]) == 2 for i in range(5))
    assert np.all(reader.document(0)[:-1] != 1)


def test_tokenize_and_mixture_commands(
    corpus: Path,
    reference_model: str,
    tmp_path: Path,
    ray_local: None,
    capsys: pytest.CaptureFixture,
) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({**_spec(corpus), "output": str(tmp_path / "out")}))
    assert main(["tokenize", str(manifest), "--workers", "2", "--quiet"]) == 2  # no tokenizer yet
    assert "llamix tokenizer train" in capsys.readouterr().err
    args = ["tokenize", str(manifest), "--model", reference_model, "--workers", "2", "--quiet"]
    assert main(args) == 0
    assert "wiki" in capsys.readouterr().out
    assert main(["mixture", str(tmp_path / "out"), "--tokens", "1e6"]) == 0
    table = capsys.readouterr().out
    assert "wiki" in table and "code" in table and "!" in table  # 1e6 tokens: wiki too small
    assert (tmp_path / "out" / "report" / "figures" / "mixture.png").stat().st_size > 1000
