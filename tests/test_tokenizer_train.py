"""`llamix tokenizer train`: the mixture sample, SentencePiece with the LLaMA settings, and
the HF export, on the real text of ../shared/data and on small runs made here."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest
import sentencepiece
import yaml
from sentencepiece import sentencepiece_model_pb2 as sp_model
from tokenizers import Tokenizer

from pipeline.cli import main
from pipeline.document import Document
from pipeline.io import write_parquet
from pipeline.manifest import ManifestError, TokenizerSpec, parse_manifest
from pipeline.runner import run_pipeline
from stages.html import html_to_text
from stages.wikipedia import read_wiki_dump
from tokenizer.sample import draw_sample, sentences_of, source_budgets
from tokenizer.train import train_from_run, train_tokenizer

# The multilingual texts need ~3,000 pieces for characters alone at coverage 0.99995.
VOCAB = 4000


def _shared_texts(data: Path) -> dict[str, list[str]]:
    wiki = data / "wikipedia"
    return {
        "wikipedia": [
            d.text
            for dump in ("enwiki-shortened.xml.bz2", "bgwiki-shortened-utf16.xml.bz2")
            for d in read_wiki_dump(str(wiki / dump))
        ],
        "html": [html_to_text(p.read_bytes()) for p in sorted((data / "web/html").glob("*.html"))],
        "latex": [p.read_text(errors="replace") for p in sorted((data / "latex").rglob("*.tex"))],
        "code": [
            p.read_text(errors="replace")
            for p in sorted((data / "code/repos").rglob("*"))
            if p.is_file()
        ],
        "udhr": [
            html_to_text(p.read_bytes(), main_content=False)
            for p in sorted((data / "multilingual/udhr").glob("*.html"))
        ],
    }


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> dict[str, list[str]]:
    return _shared_texts(shared_data)


@pytest.fixture(scope="module")
def trained(texts: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer for the module, trained on every shared-data text."""
    out = tmp_path_factory.mktemp("tokenizer")
    every = [text for kind in sorted(texts) for text in texts[kind]]
    train_tokenizer(every, out, TokenizerSpec(vocab_size=VOCAB))
    return out


@pytest.fixture(scope="module")
def sp(trained: Path) -> sentencepiece.SentencePieceProcessor:
    return sentencepiece.SentencePieceProcessor(model_file=str(trained / "tokenizer.model"))


def test_trainer_spec_holds_every_llama_setting(trained: Path) -> None:
    proto = sp_model.ModelProto()
    proto.ParseFromString((trained / "tokenizer.model").read_bytes())
    spec, normalizer = proto.trainer_spec, proto.normalizer_spec
    assert spec.model_type == sp_model.TrainerSpec.BPE
    assert spec.vocab_size == VOCAB == len(proto.pieces)
    assert spec.character_coverage == pytest.approx(0.99995)
    assert spec.split_digits and spec.byte_fallback
    assert spec.allow_whitespace_only_pieces and spec.split_by_unicode_script
    assert spec.max_sentencepiece_length == 16
    assert (spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id) == (0, 1, 2, -1)
    assert spec.num_threads == os.cpu_count()
    assert normalizer.name == "identity"
    assert normalizer.add_dummy_prefix and not normalizer.remove_extra_whitespaces
    assert [p.piece for p in proto.pieces[:3]] == ["<unk>", "<s>", "</s>"]


def test_digits_are_always_single_pieces(
    trained: Path, sp: sentencepiece.SentencePieceProcessor
) -> None:
    pieces = sp.encode("12345 and 2024", out_type=str)
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("123452024")
    vocab = [line.split("\t")[0] for line in (trained / "tokenizer.vocab").read_text().splitlines()]
    with_digits = [p for p in vocab if any(c in "0123456789" for c in p)]
    assert sorted(p for p in with_digits if not p.startswith("<0x")) == list("0123456789")


@pytest.mark.parametrize("text", ["🦙", "𠜎"])  # an emoji; a CJK Extension B character
def test_unknown_characters_round_trip_through_byte_pieces(
    sp: sentencepiece.SentencePieceProcessor, text: str
) -> None:
    pieces = sp.encode(text, out_type=str)
    assert pieces == ["▁"] + [f"<0x{b:02X}>" for b in text.encode("utf-8")]
    assert sp.decode(sp.encode(text)) == text


def test_decode_inverts_encode_on_every_shared_document(
    texts: dict[str, list[str]], sp: sentencepiece.SentencePieceProcessor
) -> None:
    for kind, docs in texts.items():
        decoded = sp.decode(sp.encode(docs))
        assert [i for i, (a, b) in enumerate(zip(docs, decoded, strict=True)) if a != b] == [], kind


@pytest.mark.parametrize(
    "text", [" leading", "  two leading", "trailing  ", "a\tb\n\nc", "\n", "", " ", "  "]
)
def test_whitespace_round_trips_exactly(
    sp: sentencepiece.SentencePieceProcessor, text: str
) -> None:
    assert sp.decode(sp.encode(text)) == text


def test_u2581_is_the_one_character_that_does_not_round_trip(
    sp: sentencepiece.SentencePieceProcessor,
) -> None:
    assert sp.decode(sp.encode("a▁b")) == "a b"


def test_hf_tokenizer_json_gives_sentencepiece_ids(
    trained: Path, texts: dict[str, list[str]], sp: sentencepiece.SentencePieceProcessor
) -> None:
    hf = Tokenizer.from_file(str(trained / "hf" / "tokenizer.json"))
    for kind, docs in texts.items():
        expected = sp.encode(docs)
        got = [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]
        assert [i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b] == [], kind
        assert hf.decode_batch(got, skip_special_tokens=False) == docs
    assert hf.encode("hi 🦙").ids == [1, *sp.encode("hi 🦙")]  # BOS, as LlamaTokenizerFast


def test_hf_reads_literal_special_token_strings_as_the_special_tokens(
    trained: Path, sp: sentencepiece.SentencePieceProcessor
) -> None:
    hf = Tokenizer.from_file(str(trained / "hf" / "tokenizer.json"))
    assert 1 in hf.encode("a <s> b", add_special_tokens=False).ids
    assert 1 not in sp.encode("a <s> b")  # SentencePiece: plain text


def test_hf_files_are_what_llama_tokenizer_reads(trained: Path) -> None:
    hf = trained / "hf"
    assert (hf / "tokenizer.model").read_bytes() == (trained / "tokenizer.model").read_bytes()
    config = json.loads((hf / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer"
    assert (config["bos_token"], config["eos_token"], config["unk_token"]) == (
        "<s>",
        "</s>",
        "<unk>",
    )
    assert config["pad_token"] is None and config["add_bos_token"] and not config["add_eos_token"]
    assert sorted(config["added_tokens_decoder"]) == ["0", "1", "2"]
    special = json.loads((hf / "special_tokens_map.json").read_text())
    assert {k: v["content"] for k, v in special.items()} == {
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "eos_token": "</s>",
    }


def test_info_records_settings_input_and_sha256(trained: Path) -> None:
    info = json.loads((trained / "tokenizer-info.json").read_text())
    model = (trained / "tokenizer.model").read_bytes()
    assert info["sha256"] == hashlib.sha256(model).hexdigest()
    assert info["vocab_size"] == VOCAB
    assert info["trainer_options"]["split_digits"] is True
    assert info["trainer_options"]["num_threads"] == os.cpu_count()
    assert info["input"]["documents"] == 465 and info["input"]["chars"] > 5_000_000
    assert info["special_tokens"]["pad"] is None
    assert len((trained / "tokenizer.vocab").read_text().splitlines()) == VOCAB


# ---------------------------------------------------------------------------------------
# Options and the sample (no shared data)
# ---------------------------------------------------------------------------------------


def _manifest(tmp_path: Path, tokenizer: dict[str, object]) -> dict[str, object]:
    return {
        "output": str(tmp_path / "out"),
        "sources": {"web": {"reader": "jsonl", "inputs": ["web.jsonl"]}},
        "tokenizer": tokenizer,
    }


def test_any_sentencepiece_option_passes_through_and_typos_are_refused(tmp_path: Path) -> None:
    spec = TokenizerSpec(options={"num_sub_iterations": 4, "user_defined_symbols": ["<tab>"]})
    assert spec.options["num_sub_iterations"] == 4
    with pytest.raises(ManifestError, match=r"did you mean 'max_sentencepiece_length'"):
        parse_manifest(_manifest(tmp_path, {"options": {"max_sentencepiece_lenght": 8}}))
    with pytest.raises(ManifestError, match=r"options\.vocab_size: set tokenizer\.vocab_size"):
        parse_manifest(_manifest(tmp_path, {"options": {"vocab_size": 8}}))
    with pytest.raises(ManifestError, match=r"options\.num_sub_iterations"):
        parse_manifest(_manifest(tmp_path, {"options": {"num_sub_iterations": "many"}}))
    with pytest.raises(ManifestError, match="not both"):
        parse_manifest(_manifest(tmp_path, {"sample_chars": 10, "sample_sentences": 10}))


def test_lines_are_non_blank_and_cut_at_spaces_to_the_byte_limit() -> None:
    text = "first line\n\n   \n" + "word " * 10 + "\nlast"
    assert list(sentences_of(text, 20)) == [
        "first line",
        "word word word word",
        "word word word word",
        "word word ",
        "last",
    ]
    cyrillic = "я" * 25  # 50 bytes, no space: cut between characters, never inside one
    assert list(sentences_of(cyrillic, 11)) == ["я" * 5] * 5


SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "gu", "zo", "ri"]


def _prose(rng: random.Random, lines: int) -> str:
    return "\n".join(
        " ".join(
            "".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(rng.randint(3, 12))
        )
        for _ in range(lines)
    )


def _write_source(root: Path, name: str, shards: int, docs: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for shard in range(shards):
        path = root / name / f"part-{shard:05d}.parquet"
        write_parquet(
            str(path),
            (
                Document(f"{name}/{shard}/{i}", _prose(rng, rng.randint(1, 20)), name)
                for i in range(docs)
            ),
        )
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def fake_shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    root = tmp_path_factory.mktemp("shards")
    return {
        "big": _write_source(root, "big", shards=4, docs=150, seed=1),
        "small": _write_source(root, "small", shards=2, docs=150, seed=2),
    }


def test_sample_is_the_same_for_any_worker_count_and_shard_order(
    fake_shards: dict[str, list[str]],
) -> None:
    weights = {"big": 1.0, "small": 1.0}
    one = draw_sample(fake_shards, weights, 60_000, seed=7, workers=1)
    reordered = {name: list(reversed(paths)) for name, paths in fake_shards.items()}
    two = draw_sample(reordered, weights, 60_000, seed=7, workers=2)
    assert one == two
    assert list(one.sentences()) == list(two.sentences())
    other_seed = draw_sample(fake_shards, weights, 60_000, seed=8, workers=1)
    assert list(other_seed.sentences()) != list(one.sentences())


def test_sample_follows_the_weights(fake_shards: dict[str, list[str]]) -> None:
    sample = draw_sample(fake_shards, {"big": 3.0, "small": 1.0}, 80_000)
    stats = sample.stats()["sources"]
    assert source_budgets({"big": 3.0, "small": 1.0}, 80_000) == {"big": 60_000, "small": 20_000}
    for name, budget in (("big", 60_000), ("small", 20_000)):
        # Whole lines: a source overshoots its share by less than one line.
        assert budget <= stats[name]["chars"] < budget + 200
        assert not stats[name]["exhausted"]
        assert stats[name]["documents_read"] == len(fake_shards[name]) * 150


def test_a_source_smaller_than_its_share_gives_everything_and_says_so(
    fake_shards: dict[str, list[str]],
) -> None:
    stats = draw_sample(fake_shards, {"big": 1.0, "small": 1.0}, 10_000_000).stats()
    assert stats["sources"]["small"]["exhausted"]
    assert stats["sources"]["small"]["documents"] == 300


def test_sample_size_in_sentences_counts_lines(fake_shards: dict[str, list[str]]) -> None:
    sample = draw_sample(fake_shards, {"big": 1.0, "small": 1.0}, 500, "sentences")
    assert [s.stats()["lines"] for s in sample.sources] == [250, 250]


def test_cli_trains_on_a_run_by_its_mixture(tmp_path: Path, ray_local: None) -> None:
    rng = random.Random(0)
    for name in ("alpha", "beta"):
        with open(tmp_path / f"{name}.jsonl", "w") as handle:
            for _ in range(120):
                handle.write(json.dumps({"text": _prose(rng, 8)}) + "\n")
    spec = {
        "output": "out",
        "sources": {
            name: {"reader": "jsonl", "inputs": [f"{name}.jsonl"]} for name in ("alpha", "beta")
        },
        "mixture": {"alpha": {"weight": 0.75}, "beta": {"weight": 0.25}},
        "tokenizer": {"vocab_size": 500, "sample_chars": 40_000},
    }
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(spec))
    assert main(["tokenizer", "train", str(manifest), "--quiet"]) == 2  # not run yet
    run = parse_manifest(spec, path=str(manifest), base_dir=str(tmp_path))
    run_pipeline(run, workers=2, progress=False)
    assert main(["tokenizer", "train", str(manifest), "--quiet", "--vocab-size", "400"]) == 0

    info = json.loads((tmp_path / "out" / "tokenizer" / "tokenizer-info.json").read_text())
    assert info["vocab_size"] == 400 and info["manifest_hash"] == run.hash
    sample = info["sample"]["sources"]
    assert 30_000 <= sample["alpha"]["chars"] < 30_200
    assert 10_000 <= sample["beta"]["chars"] < 10_200
    assert info["input"]["lines"] == info["sample"]["lines"]
    spec_400 = TokenizerSpec(vocab_size=400, sample_chars=40_000)
    again = train_from_run(run, out_dir=str(tmp_path / "again"), spec=spec_400, workers=1)
    assert Path(again).read_bytes() == (tmp_path / "out/tokenizer/tokenizer.model").read_bytes()


def test_a_normalisation_hf_cannot_replay_skips_the_export_and_says_why(tmp_path: Path) -> None:
    prose = _prose(random.Random(3), 400)
    spec = TokenizerSpec(vocab_size=300, normalization_rule_name="nfkc")
    train_tokenizer([prose], tmp_path, spec)
    info = json.loads((tmp_path / "tokenizer-info.json").read_text())
    assert info["hf"] == {"files": [], "skipped": info["hf"]["skipped"]}
    assert "nfkc" in info["hf"]["skipped"] and not (tmp_path / "hf").exists()
