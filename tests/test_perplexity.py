"""CCNet's perplexity filter: a real KenLM + SentencePiece pair trained on the Wikipedia
sample, scoring as cc_net does, cutoffs from cc_net's own table, and the buckets."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import cc_net
import pytest
from pydantic import ValidationError

from pipeline.document import Document
from pipeline.io import write_parquet
from pipeline.stats import Stats
from stages.base import STAGES
from stages.ccnet import normalize
from stages.corpus import read_corpus
from stages.lm import kenlm_binary, train_language_model
from stages.perplexity import (
    Cutoff,
    LanguageModel,
    Perplexity,
    PerplexityBucket,
    bucket_of,
    document_perplexity,
    log_bucket,
    perplexity,
    read_cutoff_csv,
    score_lines,
    tokenized_lines,
)
from stages.wikipedia import read_wiki_dump

LLAMIX = [sys.executable, "-m", "pipeline.cli"]
CC_NET_CUTOFFS = Path(cc_net.__file__).parent / "data" / "cutoff.csv"
KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"
# Small enough for a test on two cores, large enough for a real model of the sample.
FAST = {"vocab_size": 4000, "memory": "256M", "sp_sentences": 3000}


@pytest.fixture(scope="module")
def paragraphs(shared_data: Path) -> tuple[list[str], list[str]]:
    """Paragraphs of the English sample: (training 80%, held out: every 5th)."""
    dump = str(shared_data / "wikipedia" / "enwiki-shortened.xml.bz2")
    lines = [line for doc in read_wiki_dump(dump) for line in doc.text.split("\n")]
    return [p for i, p in enumerate(lines) if i % 5], lines[::5]


@pytest.fixture(scope="module")
def trained(paragraphs, tmp_path_factory) -> tuple[Path, dict]:
    train, _ = paragraphs
    models = tmp_path_factory.mktemp("lm")
    return models, train_language_model(train, models, "en", **FAST)


@pytest.fixture(scope="module")
def english(trained) -> LanguageModel:
    return LanguageModel.load(trained[0], "en")


@pytest.fixture(scope="module")
def spam(shared_data: Path) -> list[str]:
    """Bodies of the spam e-mails: everything after the first blank line."""
    bodies = []
    for path in sorted((shared_data / "web" / "email" / "spam-1").iterdir()):
        raw = path.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
        bodies.append(raw.partition("\n\n")[2])
    return bodies


def docs(*items: tuple[str, dict]) -> Iterator[Document]:
    return iter(Document(f"d{i}", text, "s", meta) for i, (text, meta) in enumerate(items))


# --- training ---------------------------------------------------------------------------


def test_lm_train_command_builds_a_kenlm_binary_and_sentencepiece_model(
    shared_data: Path, tmp_path: Path
) -> None:
    dump = shared_data / "wikipedia" / "enwiki-shortened.xml.bz2"
    out = tmp_path / "models"
    result = subprocess.run(
        [*LLAMIX, "lm", "train", str(dump), "--out", str(out), "--language", "en",
         "--vocab-size", "2000", "--memory", "256M", "--sp-sentences", "2000"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "trained" in result.stdout and "head <" in result.stdout
    assert (out / "en.arpa.bin").read_bytes().startswith(KENLM_BINARY_MAGIC)
    model = LanguageModel.load(out, "en")
    assert model.sp.get_piece_size() == 2000
    assert model.lm.order == 5
    record = json.loads((out / "en.lm.json").read_text())
    assert record["corpus"]["documents"] == 106 - 5  # every 20th article held out
    assert record["calibration"]["documents"] == 5
    cutoffs = json.loads((out / "en.cutoffs.json").read_text())
    assert cutoffs["head_max"] == cutoffs["percentiles"]["30"] <= cutoffs["middle_max"]
    assert sorted(p.name for p in out.iterdir()) == [
        "cutoff.csv",
        "en.arpa.bin",
        "en.cutoffs.json",
        "en.lm.json",
        "en.sp.model",
    ]


def test_lm_commands_are_listed_in_help() -> None:
    result = subprocess.run([*LLAMIX, "lm", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "train" in result.stdout and "calibrate" in result.stdout


def test_training_records_what_it_built(trained) -> None:
    models, record = trained
    assert record["vocab_size"] == 4000
    assert record["order"] == 5
    assert record["corpus"]["lines"] > 8000
    assert set(record["sha256"]) == {"en.sp.model", "en.arpa.bin"}
    assert json.loads((models / "en.lm.json").read_text()) == record
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no work files left


def test_wikipedia_scores_lower_than_spam(paragraphs, english: LanguageModel, spam) -> None:
    _, held_out = paragraphs
    wiki = [v for v in (document_perplexity(english, p) for p in held_out) if v is not None]
    mail = [v for v in (document_perplexity(english, body) for body in spam) if v is not None]
    wiki_median, spam_median = statistics.median(wiki), statistics.median(mail)
    print(
        f"\nmedian perplexity: held-out Wikipedia paragraphs {wiki_median:.1f} "
        f"({len(wiki)}), spam e-mails {spam_median:.1f} ({len(mail)})"
    )
    assert wiki_median * 2 < spam_median


def test_small_corpus_shrinks_the_vocabulary_and_training_is_reproducible(
    paragraphs, tmp_path: Path
) -> None:
    train, _ = paragraphs
    small = train[:300]
    first = train_language_model(small, tmp_path / "a", "en", memory="256M")
    second = train_language_model(small, tmp_path / "b", "en", memory="256M")
    assert first["vocab_size"] < first["vocab_size_requested"] == 65536
    assert first["sha256"] == second["sha256"]


def test_tiny_corpus_falls_back_on_kenlm_discounts(paragraphs, tmp_path: Path) -> None:
    train, _ = paragraphs
    record = train_language_model(train[:5], tmp_path, "en", memory="256M")
    assert record["discount_fallback"] is True
    assert record["calibration"]["sample"].startswith("training lines")
    assert (tmp_path / "en.arpa.bin").read_bytes().startswith(KENLM_BINARY_MAGIC)


def test_reference_corpus_reads_dumps_jsonl_parquet_and_text(
    shared_data: Path, tmp_path: Path
) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n")
    write_parquet(str(tmp_path / "part-00000.parquet"), [Document("x", "from parquet", "s")])
    (tmp_path / "c.txt").write_text("from text")
    (tmp_path / "_done").mkdir()
    (tmp_path / "_done" / "part-00000.json").write_text("{}")
    dump = shared_data / "wikipedia" / "bgwiki-shortened-utf16.xml.bz2"
    texts = list(read_corpus([str(tmp_path), str(dump)], Stats()))
    dump_texts = [text for text in texts if text.startswith("Григорианският календар")]
    assert len(dump_texts) == 1 and len(texts) == 4
    # Files are read in path order; where the dump sorts depends on where ../shared lives.
    assert [text for text in texts if text not in dump_texts] == [
        "from jsonl",
        "from text",
        "from parquet",
    ]


def test_calibration_documents_replace_the_hold_out(paragraphs, spam, tmp_path: Path) -> None:
    train, _ = paragraphs
    record = train_language_model(train[:300], tmp_path, "en", calibration=spam, memory="256M")
    assert record["corpus"]["documents"] == 300
    assert record["calibration"]["sample"] == "given calibration documents"
    assert record["calibration"]["documents"] == len([s for s in spam if normalize(s)])


def test_missing_lmplz_says_to_run_make_setup(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(FileNotFoundError, match="make setup"):
        kenlm_binary("lmplz")


# --- scoring ------------------------------------------------------------------------------


def test_perplexity_formula_on_hand_computed_values() -> None:
    assert perplexity(-4.0, 2) == pytest.approx(100.0)
    assert perplexity(-3.0, 3) == pytest.approx(10.0)
    assert perplexity(0.0, 5) == 1.0


class FixedLM:
    """A stand-in KenLM that gives every sentence log10 p = -(tokens + 1)."""

    order = 5

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        return -float(len(sentence.split()) + 1)


def test_score_counts_pieces_plus_end_of_sentence() -> None:
    model = LanguageModel("xx", sp=None, lm=FixedLM())
    assert score_lines(model, ["▁a ▁b", "▁c"]) == (-5.0, 5)  # (2+1) + (1+1) tokens
    assert perplexity(*score_lines(model, ["▁a ▁b", "▁c"])) == pytest.approx(10.0)


def test_lines_are_normalised_one_by_one_and_empty_ones_skipped(english: LanguageModel) -> None:
    lines = tokenized_lines(english, "The CAT sat in 1999.\n\n   \nÉté à Paris")
    assert len(lines) == 2
    assert "".join(lines[0].split()).replace("▁", "") == "thecatsatin0000."
    assert "".join(lines[1].split()).replace("▁", "") == "eteaparis"


@pytest.fixture
def cc_net_perplexity(monkeypatch):
    """cc_net.perplexity imports pandas for its cutoff table only: a stub lets the
    scoring classes load without it."""
    monkeypatch.setitem(sys.modules, "pandas", types.ModuleType("pandas"))
    monkeypatch.delitem(sys.modules, "cc_net.perplexity", raising=False)
    from cc_net import perplexity as reference

    return reference


def test_scores_match_cc_net_doclm(cc_net_perplexity, trained, english, paragraphs, spam) -> None:
    models, _ = trained
    _, held_out = paragraphs
    texts = held_out[:40] + [s for s in spam[:40] if s.strip()]
    # cc_net's pipeline: SentencePiece on the normalised text, then DocLM on the pieces.
    sp = cc_net_perplexity.MultiSentencePiece(
        {"en": models / "en.sp.model"}, field="raw", output_field="tokenized", normalize=True
    )
    lm = cc_net_perplexity.DocLM({"en": models / "en.arpa.bin"}, field="tokenized", normalize=False)
    compared = 0
    with sp, lm:
        for text in texts:
            ours = tokenized_lines(english, text)
            if not ours:
                continue
            # One line at a time, as DocLM with normalize=True scores them.
            lines = text.split("\n")
            theirs = [sp({"raw": line, "language": "en"})["tokenized"] for line in lines]
            assert [t for t in theirs if t] == ours
            scored = lm({"tokenized": "\n".join(ours), "language": "en"})
            assert scored["perplexity"] == round(document_perplexity(english, text), 1)
            compared += 1
    assert compared > 50


# --- the perplexity stage -------------------------------------------------------------------


def test_perplexity_stage_writes_meta_and_a_log_histogram(trained, paragraphs) -> None:
    models, _ = trained
    _, held_out = paragraphs
    stage = Perplexity(Perplexity.Params(models=str(models)))
    stats = Stats()
    out = list(stage.process(docs((held_out[0], {"language": "en"})), stats))
    value = out[0].meta["perplexity"]
    assert value == round(document_perplexity(LanguageModel.load(models, "en"), held_out[0]), 1)
    assert stats.histograms["perplexity"] == {str(log_bucket(value)): 1}
    assert math.isclose(float(next(iter(stats.histograms["perplexity"]))), math.log10(value),
                        abs_tol=0.051)  # fmt: skip


def test_documents_without_a_model_are_kept_unscored_and_counted(trained) -> None:
    models, _ = trained
    stage = Perplexity(Perplexity.Params(models=str(models)))
    stats = Stats()
    items = [("Der Hund bellt.", {"language": "de"}), ("No language here.", {})]
    out = list(stage.process(docs(*items), stats))
    assert [d.meta for d in out] == [{"language": "de"}, {}]
    assert stats.counters == {"perplexity:no_model:de": 1, "perplexity:no_model:none": 1}
    assert not stats.drops


def test_default_and_fixed_language_choose_the_model(trained) -> None:
    models, _ = trained
    by_default = Perplexity(Perplexity.Params(models=str(models), default_language="en"))
    fixed = Perplexity(Perplexity.Params(models=str(models), language="en"))
    text = "The city is the capital of the region."
    a = list(by_default.process(docs((text, {}), (text, {"language": "de"})), Stats()))
    b = list(fixed.process(docs((text, {"language": "de"})), Stats()))
    assert "perplexity" in a[0].meta and "perplexity" not in a[1].meta
    assert b[0].meta["perplexity"] == a[0].meta["perplexity"]


def test_missing_models_directory_says_how_to_get_one(tmp_path: Path) -> None:
    stage = Perplexity(Perplexity.Params(models=str(tmp_path / "none")))
    with pytest.raises(FileNotFoundError, match="llamix lm train"):
        stage.setup()
    fixed = Perplexity(Perplexity.Params(models=str(tmp_path), language="en"))
    with pytest.raises(FileNotFoundError, match=r"en\.sp\.model"):
        fixed.setup()


def test_stages_are_registered() -> None:
    assert STAGES["perplexity"] is Perplexity
    assert STAGES["perplexity_bucket"] is PerplexityBucket


# --- cutoffs and buckets ------------------------------------------------------------------


def test_reads_cc_net_cutoff_csv() -> None:
    table = read_cutoff_csv(CC_NET_CUTOFFS)
    header, *rows = CC_NET_CUTOFFS.read_text().splitlines()
    languages = header.split(",")[1:]
    assert list(table) == languages and len(languages) == 48
    assert all(sorted(table[lang]) == list(range(100)) for lang in languages)
    by_percentile = {int(r.split(",")[0]): r.split(",")[1:] for r in rows}
    en = languages.index("en")
    assert table["en"][30] == float(by_percentile[30][en])
    assert table["en"][60] == float(by_percentile[60][en])
    assert table["en"][30] < table["en"][60]


def test_bucket_stage_uses_cc_net_percentiles_30_and_60() -> None:
    table = read_cutoff_csv(CC_NET_CUTOFFS)
    stage = PerplexityBucket(PerplexityBucket.Params(cutoff_csv=str(CC_NET_CUTOFFS)))
    stage.setup()
    assert stage._cutoffs is not None
    assert stage._cutoffs["en"] == Cutoff(head_max=table["en"][30], middle_max=table["en"][60])
    assert stage._cutoffs["de"] == Cutoff(head_max=table["de"][30], middle_max=table["de"][60])


@pytest.mark.parametrize(
    ("value", "bucket"),
    [(0.0, "head"), (99.9, "head"), (100.0, "middle"), (199.9, "middle"), (200.0, "tail"),
     (5e4, "tail"), (None, "all"), (-1.0, "all")],
)  # fmt: skip
def test_buckets_at_the_cutoffs(value: float | None, bucket: str) -> None:
    assert bucket_of(value, Cutoff(head_max=100, middle_max=200)) == bucket


def test_bucket_stage_keeps_head_and_middle_and_marks_the_cutoffs() -> None:
    params = PerplexityBucket.Params(cutoffs={"en": {"head_max": 100, "middle_max": 200}})
    stats = Stats()
    items = [("a", {"language": "en", "perplexity": p}) for p in (50.0, 100.0, 150.0, 200.0)]
    out = list(PerplexityBucket(params).process(docs(*items), stats))
    assert [d.meta["bucket"] for d in out] == ["head", "middle", "middle"]
    assert stats.drops == {"perplexity_bucket:tail": 1}
    assert stats.marks["perplexity"] == {
        "head": 2.0,
        "middle": pytest.approx(math.log10(200), 1e-3),
    }
    assert stats.histograms["perplexity_bucket"] == {"head": 1, "middle": 2, "tail": 1}


def test_bucket_stage_keeps_what_it_is_told() -> None:
    params = PerplexityBucket.Params(
        cutoffs={"en": {"head_max": 100, "middle_max": 200}}, keep=["head"]
    )
    stats = Stats()
    items = [("a", {"language": "en", "perplexity": p}) for p in (50.0, 150.0, 250.0)]
    out = list(PerplexityBucket(params).process(docs(*items), stats))
    assert [d.meta["perplexity"] for d in out] == [50.0]
    assert stats.drops == {"perplexity_bucket:middle": 1, "perplexity_bucket:tail": 1}


def test_marks_name_the_language_when_several_have_cutoffs() -> None:
    params = PerplexityBucket.Params(cutoff_csv=str(CC_NET_CUTOFFS))
    stats = Stats()
    items = [("a", {"language": lang, "perplexity": 1.0}) for lang in ("en", "de")]
    list(PerplexityBucket(params).process(docs(*items), stats))
    assert set(stats.marks["perplexity"]) == {"en head", "en middle", "de head", "de middle"}


def test_unscored_documents_go_to_bucket_all(trained) -> None:
    params = PerplexityBucket.Params(cutoffs={"en": {"head_max": 100, "middle_max": 200}})
    items = [("a", {"language": "de", "perplexity": 10.0}), ("b", {"language": "en"})]
    stats = Stats()
    out = list(PerplexityBucket(params).process(docs(*items), stats))
    assert [d.meta["bucket"] for d in out] == ["all", "all"]
    assert stats.counters == {"perplexity_bucket:unscored": 2}
    strict = params.model_copy(update={"keep_unscored": False})
    stats = Stats()
    assert list(PerplexityBucket(strict).process(docs(*items), stats)) == []
    assert stats.drops == {"perplexity_bucket:unscored": 2}


def test_bucket_stage_reads_the_calibration_lm_train_wrote(trained) -> None:
    models, record = trained
    stage = PerplexityBucket(PerplexityBucket.Params(models=str(models)))
    stage.setup()
    cutoffs = json.loads((models / "en.cutoffs.json").read_text())
    assert stage._cutoffs == {
        "en": Cutoff(head_max=cutoffs["percentiles"]["30"], middle_max=cutoffs["percentiles"]["60"])
    }
    assert record["calibration"]["head_max"] == cutoffs["head_max"]
    csv_table = read_cutoff_csv(models / "cutoff.csv")
    assert csv_table["en"][30] == cutoffs["percentiles"]["30"]
    from_csv = PerplexityBucket(PerplexityBucket.Params(cutoff_csv=str(models / "cutoff.csv")))
    from_csv.setup()
    assert from_csv._cutoffs == stage._cutoffs


def test_bucket_params_need_exactly_one_source_of_cutoffs() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        PerplexityBucket.Params()
    with pytest.raises(ValidationError, match="exactly one"):
        PerplexityBucket.Params(cutoff_csv="a.csv", models="m")
    with pytest.raises(ValidationError, match="middle_max"):
        PerplexityBucket.Params(cutoffs={"en": {"head_max": 300, "middle_max": 200}})


def test_lm_calibrate_command_takes_cutoffs_from_a_corpus_sample(
    trained, shared_data: Path, tmp_path: Path
) -> None:
    models, record = trained
    for name in ("en.sp.model", "en.arpa.bin"):
        (tmp_path / name).write_bytes((models / name).read_bytes())
    sample = shared_data / "web" / "email" / "spam-1"
    result = subprocess.run(
        [*LLAMIX, "lm", "calibrate", str(sample), "--models", str(tmp_path), "--language", "en"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cutoffs = json.loads((tmp_path / "en.cutoffs.json").read_text())
    assert cutoffs["sample"] == str(sample)
    assert cutoffs["head_max"] > record["calibration"]["head_max"]  # spam reads worse
    assert "read:invalid_utf8" in result.stdout  # undecodable mails are counted, not fatal
    assert read_cutoff_csv(tmp_path / "cutoff.csv")["en"][60] == cutoffs["middle_max"]
