"""C4's heuristics, and the Wikipedia-reference classifier trained and scored on real text."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.document import Document
from pipeline.io import write_parquet
from pipeline.stats import Stats
from stages.html import html_to_text
from stages.langid import default_model_path
from stages.quality import (
    RANDOM_LABEL,
    REFERENCE_LABEL,
    C4Filters,
    C4FiltersParams,
    WikiReferenceClassifier,
    WikiReferenceParams,
    balanced_examples,
    classifier_text,
    clean_c4_page,
    count_sentences,
    load_reference_model,
    reference_scores,
    train_reference_classifier,
)
from stages.wikipedia import read_wiki_dump

GOOD = [
    "The first sentence of this page is long enough to keep.",
    "A second line also ends the way a sentence should end!",
    "Does a third line that asks a question count as well?",
]
NOT_PYTHON_DOCS = {
    "apache.html",
    "fivethirtyeight-article.html",
    "mozilla.org.firefox.developer.html",
    "scam.html",
}
MIN_WORDS = 20  # shorter pages (index pages, empty mails) say nothing about either class
# Small and fast on a few hundred pages; production defaults are ClassifierTraining's.
TEST_HYPER = {"epoch": 10, "lr": 0.5, "bucket": 100_000, "dim": 10, "seed": 0}


def page(*lines: str) -> str:
    return "\n".join(lines)


def run_c4(texts: list[str], **params: object) -> tuple[list[Document], Stats]:
    stats = Stats()
    docs = (Document(str(i), text, "test", {}) for i, text in enumerate(texts))
    return list(C4Filters(C4FiltersParams(**params)).process(docs, stats)), stats


# ------------------------------------------------------------------------------- C4


def test_defaults_are_the_tfds_c4_utils_constants() -> None:
    p = C4FiltersParams()
    assert (p.min_words_per_line, p.min_sentences, p.max_word_length) == (5, 3, 1000)
    assert {".", "?", "!", '"'} <= set(p.end_marks)


def test_a_clean_page_keeps_every_line() -> None:
    verdict = clean_c4_page(page(*GOOD))
    assert verdict.reason is None
    assert verdict.text == page(*GOOD)
    assert verdict.lines == {"kept": 3}


def test_lines_without_terminal_punctuation_are_removed() -> None:
    verdict = clean_c4_page(page("Home | About | Contact us today", *GOOD, "Share this page on"))
    assert verdict.text == page(*GOOD)
    assert verdict.lines["no_terminal_punct"] == 2


def test_lines_ending_in_an_ellipsis_are_removed() -> None:
    verdict = clean_c4_page(page(*GOOD, "And then the story went on and on..."))
    assert verdict.text == page(*GOOD)
    assert verdict.lines["no_terminal_punct"] == 1


def test_closing_quotes_end_a_line_unless_end_marks_are_tfds_only() -> None:
    quoted = "She said that the meeting would start “at noon”"
    assert clean_c4_page(page(*GOOD, quoted)).lines["kept"] == 4
    tfds = C4FiltersParams(end_marks=(".", "?", "!", '"'))
    assert clean_c4_page(page(*GOOD, quoted), tfds).lines["no_terminal_punct"] == 1


def test_lines_with_fewer_than_five_words_are_removed() -> None:
    verdict = clean_c4_page(page("Read more here.", *GOOD, "Four words only here."))
    assert verdict.text == page(*GOOD)
    assert verdict.lines["too_few_words"] == 2


def test_lines_with_a_word_over_1000_characters_are_removed() -> None:
    long_line = f"This line carries a {'x' * 1001} word inside."
    edge_line = f"This line carries a {'x' * 1000} word inside."
    verdict = clean_c4_page(page(long_line, edge_line, *GOOD))
    assert verdict.lines == {"too_long_word": 1, "kept": 4}


def test_javascript_notices_are_removed() -> None:
    notice = "Please enable JavaScript in your browser to view this site."
    verdict = clean_c4_page(page(notice, *GOOD))
    assert verdict.text == page(*GOOD)
    assert verdict.lines["javascript"] == 1


@pytest.mark.parametrize(
    "policy",
    [
        "By using this site you agree to our Terms of Use.",
        "Read our privacy policy before you sign up here.",
        "This website uses cookies to improve your experience.",
        "We use cookies to give you the best service online.",
    ],
)
def test_policy_lines_are_removed(policy: str) -> None:
    verdict = clean_c4_page(page(*GOOD, policy))
    assert verdict.text == page(*GOOD)
    assert verdict.lines["policy"] == 1


def test_citation_markers_are_stripped_from_kept_lines() -> None:
    verdict = clean_c4_page(
        page("Paris is the capital of France.[1]", *GOOD[1:], GOOD[0] + "[edit]")
    )
    assert verdict.text == page("Paris is the capital of France.", *GOOD[1:], GOOD[0])
    assert verdict.citations == 2


def test_lorem_ipsum_drops_the_page() -> None:
    verdict = clean_c4_page(page(*GOOD, "Lorem ipsum dolor sit amet, consectetur adipiscing."))
    assert (verdict.text, verdict.reason) == (None, "lorem_ipsum")


def test_a_curly_bracket_drops_the_page() -> None:
    verdict = clean_c4_page(page(*GOOD, "The function body starts with { and ends there."))
    assert (verdict.text, verdict.reason) == (None, "curly_bracket")


def test_a_curly_bracket_on_a_removed_line_does_not_drop_the_page() -> None:
    # TFDS checks "{" only on lines that passed the end-mark and length rules.
    verdict = clean_c4_page(page("function main() {", *GOOD, "}"))
    assert verdict.reason is None
    assert verdict.text == page(*GOOD)


def test_pages_with_fewer_than_three_sentences_are_dropped() -> None:
    verdict = clean_c4_page(page(*GOOD[:2]))
    assert (verdict.text, verdict.reason) == (None, "too_few_sentences")
    assert clean_c4_page(" ".join(GOOD[:3])).reason is None  # three sentences on one line


def test_sentences_are_counted_by_end_marks_not_abbreviations() -> None:
    assert count_sentences("One sentence here. Another one there! A third?") == 3
    assert count_sentences("It costs 3.5 dollars, e.g. the price of a sandwich.") == 1
    assert count_sentences('He said "stop." Then he left.') == 2


def test_every_rule_can_be_switched_off() -> None:
    noisy = page(
        "no end mark",
        "Short one.",
        "Please enable javascript to continue reading.",
        "Read the privacy policy before you continue.",
        "Here comes a { curly bracket in a line.",
        "Lorem ipsum dolor sit amet, consectetur adipiscing.",
        f"A {'y' * 1200} long word sits in this line.",
    )
    off = C4FiltersParams(
        end_marks=(),
        min_words_per_line=0,
        max_word_length=None,
        min_sentences=0,
        remove_citations=False,
        filter_javascript=False,
        filter_policy=False,
        filter_lorem_ipsum=False,
        filter_curly_bracket=False,
    )
    verdict = clean_c4_page(noisy, off)
    assert verdict.reason is None
    assert verdict.text == noisy


def test_stage_counts_each_line_rule_and_names_each_page_drop() -> None:
    texts = [
        page("Menu", *GOOD, "Please enable JavaScript to use this website."),
        page(*GOOD, "Lorem ipsum dolor sit amet, consectetur adipiscing."),
        page(*GOOD, "This line has a { bracket and it ends here."),
        page(GOOD[0]),
        page(*GOOD),
    ]
    kept, stats = run_c4(texts)
    assert [d.id for d in kept] == ["0", "4"]
    assert kept[0].text == page(*GOOD)
    assert stats.drops == {
        "c4_filters:lorem_ipsum": 1,
        "c4_filters:curly_bracket": 1,
        "c4_filters:too_few_sentences": 1,
    }
    assert stats.counters["c4_filters:lines_removed_no_terminal_punct"] == 1
    assert stats.counters["c4_filters:lines_removed_javascript"] == 1
    assert stats.counters["c4_filters:documents_edited"] == 1
    assert stats.counters["c4_filters:lines_kept"] == 3 + 3 + 3 + 1 + 3


def test_nothing_left_is_dropped_as_empty_when_the_sentence_rule_is_off() -> None:
    kept, stats = run_c4(["no end mark here", page(*GOOD)], min_sentences=0)
    assert [d.id for d in kept] == ["1"]
    assert stats.drops == {"c4_filters:empty": 1}


def test_every_line_kept_from_real_pages_obeys_the_line_rules(shared_data: Path) -> None:
    pages = sorted((shared_data / "web" / "html").glob("*.html"))
    texts = [html_to_text(p.read_bytes()) for p in pages]
    kept, stats = run_c4(texts)
    params = C4FiltersParams()
    for doc in kept:
        for line in doc.text.split("\n"):
            assert line.endswith(params.end_marks) and not line.endswith("...")
            assert len(line.split()) >= 5
            assert "javascript" not in line.lower()
            assert "{" not in line
    lines_in = sum(len(t.splitlines()) for t in texts)
    lines_seen = sum(n for name, n in stats.counters.items() if name.startswith("c4_filters:line"))
    assert lines_seen <= lines_in
    assert len(kept) + stats.dropped == len(texts)
    assert stats.drops["c4_filters:too_few_sentences"] > 0
    assert 0 < len(kept) < len(texts)
    print(f"\nC4 on {len(texts)} real pages: {len(kept)} kept, drops {dict(stats.drops)}")


# --------------------------------------------------------- Wikipedia-reference classifier


def email_body(raw: bytes) -> str:
    """The body of a raw e-mail: everything after the first blank line."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return text.split("\n\n", 1)[1] if "\n\n" in text else ""


def split(texts: list[str], held_out: float = 0.3) -> tuple[list[str], list[str]]:
    shuffled = list(texts)
    random.Random(0).shuffle(shuffled)
    cut = int(len(shuffled) * held_out)
    return shuffled[cut:], shuffled[:cut]


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    above = (positives[:, None] > negatives[None, :]).mean()
    ties = (positives[:, None] == negatives[None, :]).mean()
    return float(above + ties / 2)


@pytest.fixture(scope="module")
def corpus(shared_data: Path) -> dict[str, list[str]]:
    dump = shared_data / "wikipedia" / "enwiki-shortened.xml.bz2"
    wiki = [doc.text for doc in read_wiki_dump(str(dump))]
    docs = [
        html_to_text(p.read_bytes())
        for p in sorted((shared_data / "web" / "html").glob("*.html"))
        if p.name not in NOT_PYTHON_DOCS
    ]
    mails = [
        email_body(p.read_bytes())
        for folder in ("spam-1", "easy-ham-1")
        for p in sorted((shared_data / "web" / "email" / folder).iterdir())
    ]
    corpus = {"wiki": wiki, "docs": docs, "mails": mails}
    return {
        name: [t for t in texts if len(t.split()) >= MIN_WORDS] for name, texts in corpus.items()
    }


@pytest.fixture(scope="module")
def splits(corpus: dict[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]:
    return {name: split(texts) for name, texts in corpus.items()}


@pytest.fixture(scope="module")
def model_path(
    splits: dict[str, tuple[list[str], list[str]]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    positives = splits["wiki"][0] + splits["docs"][0]
    out = tmp_path_factory.mktemp("classifier") / "wiki_reference.bin"
    return train_reference_classifier(positives, splits["mails"][0], out, **TEST_HYPER)


def test_the_sample_corpus_is_what_the_test_expects(corpus: dict[str, list[str]]) -> None:
    assert len(corpus["wiki"]) == 106  # of 206 pages: 99 redirects, 1 outside the articles
    assert 120 <= len(corpus["docs"]) <= 150  # of 150 pages; index pages are too short
    assert 480 <= len(corpus["mails"]) <= 500


def test_classifier_text_is_lowercase_on_one_line_with_single_spaces() -> None:
    assert classifier_text("  The Cat\n\nSAT\ton  the mat.\r\n") == "the cat sat on the mat."


def test_training_examples_are_balanced_shuffled_and_seeded() -> None:
    positives = [f"reference page {i}" for i in range(30)]
    negatives = [f"random page {i}" for i in range(200)] + ["", "  \n "]
    lines, counts = balanced_examples(positives, negatives, seed=7, max_per_class=None)
    labels = Counter(line.split(" ", 1)[0] for line in lines)
    assert labels == {REFERENCE_LABEL: 30, RANDOM_LABEL: 30}
    assert counts == {"positives_read": 30, "negatives_read": 200, "per_class": 30}
    assert lines[:10] != sorted(lines)[:10]
    assert balanced_examples(positives, negatives, 7, None)[0] == lines
    assert balanced_examples(positives, negatives, 8, None)[0] != lines
    capped, _ = balanced_examples(positives, negatives, 7, max_per_class=5)
    assert len(capped) == 10


def test_negatives_are_a_uniform_sample_of_their_stream() -> None:
    negatives = [f"page {i}" for i in range(100)]
    chosen: Counter[str] = Counter()
    for seed in range(400):
        lines, _ = balanced_examples(["a"] * 10, negatives, seed=seed, max_per_class=None)
        chosen.update(line for line in lines if line.startswith(RANDOM_LABEL))
    rates = np.array([chosen[f"{RANDOM_LABEL} page {i}"] / 400 for i in range(100)])
    assert abs(rates.mean() - 0.1) < 1e-9
    assert rates.min() > 0.03 and rates.max() < 0.2  # early and late items alike


def test_training_is_deterministic_for_a_seed(corpus: dict[str, list[str]], tmp_path: Path) -> None:
    positives, negatives = corpus["wiki"][:40], corpus["mails"][:80]
    small = {"epoch": 3, "bucket": 20_000, "dim": 8}
    first = train_reference_classifier(positives, negatives, tmp_path / "a.bin", **small)
    second = train_reference_classifier(positives, negatives, tmp_path / "b.bin", **small)
    assert first.read_bytes() == second.read_bytes()
    record = json.loads((tmp_path / "a.bin.json").read_text())
    assert record["hyper_parameters"] | small == record["hyper_parameters"]
    assert record["hyper_parameters"]["thread"] == 1
    assert record["examples"]["per_class"] == 40
    assert not list(tmp_path.glob("*tmp*"))


def test_held_out_references_outscore_held_out_emails(
    model_path: Path, splits: dict[str, tuple[list[str], list[str]]]
) -> None:
    model = load_reference_model(str(model_path))
    positives = np.array(reference_scores(model, splits["wiki"][1] + splits["docs"][1]))
    negatives = np.array(reference_scores(model, splits["mails"][1]))
    auc = roc_auc(positives, negatives)
    print(
        f"\nwiki reference classifier: held-out ROC-AUC {auc:.3f} ({len(positives)} "
        f"references: Wikipedia + Python docs; {len(negatives)} e-mails)"
    )
    assert auc >= 0.9


def test_stage_keeps_scores_above_threshold_and_records_the_histogram(
    model_path: Path, splits: dict[str, tuple[list[str], list[str]]]
) -> None:
    held_out = splits["wiki"][1] + splits["mails"][1] + ["", "   "]
    stage = WikiReferenceClassifier(WikiReferenceParams(model=str(model_path)))
    stats = Stats()
    docs = [Document(str(i), text, "test", {"k": 1}) for i, text in enumerate(held_out)]
    kept = list(stage.process(iter(docs), stats))
    assert all(d.meta["wiki_reference_score"] >= 0.25 and d.meta["k"] == 1 for d in kept)
    assert len(kept) + stats.drops["wiki_reference_classifier:below_threshold"] == len(docs)
    assert set(stats.drops) == {"wiki_reference_classifier:below_threshold"}
    histogram = stats.histograms["wiki_reference_score"]
    assert sum(histogram.values()) == len(docs)
    assert histogram["0.00"] >= 2  # the empty documents score 0
    assert set(histogram) <= {f"{i / 20:.2f}" for i in range(20)}
    assert stats.marks["wiki_reference_score"] == {"threshold": 0.25}
    kept_wiki = sum(int(d.id) < len(splits["wiki"][1]) for d in kept)
    assert kept_wiki >= 0.8 * len(splits["wiki"][1])


def test_missing_model_error_names_the_parameter(tmp_path: Path) -> None:
    stage = WikiReferenceClassifier(WikiReferenceParams(model=str(tmp_path / "nope.bin")))
    with pytest.raises(FileNotFoundError, match=r"wiki_reference_classifier\.model"):
        stage.setup()


def test_a_model_without_the_reference_label_is_refused() -> None:
    language_model = default_model_path()  # lid.176: labels are languages
    assert language_model is not None
    with pytest.raises(ValueError, match="__label__wiki"):
        load_reference_model(str(language_model))


def test_cli_trains_from_jsonl_text_files_and_parquet_shards(
    corpus: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = tmp_path / "refs"
    (refs / "pages").mkdir(parents=True)
    (refs / "wiki.jsonl").write_text(
        "\n".join(json.dumps({"text": t}) for t in corpus["wiki"][:30]) + "\n"
    )
    for i, text in enumerate(corpus["docs"][:20]):
        (refs / "pages" / f"{i}.txt").write_text(text)
    crawl = tmp_path / "crawl"
    write_parquet(
        str(crawl / "part-00000.parquet"),
        (Document(str(i), t, "cc", {}) for i, t in enumerate(corpus["mails"])),
    )
    (crawl / "_done").mkdir()
    (crawl / "_done" / "part-00000.json").write_text('{"not": "a document"}')
    out = tmp_path / "model" / "wiki_reference.bin"
    argv = ["classifier", "train", "--positives", str(refs), "--negatives", str(crawl)]
    argv += ["--out", str(out), "--epoch", "3", "--bucket", "20000", "--dim", "8"]
    assert main(argv) == 0
    assert "trained" in capsys.readouterr().out
    record = json.loads(out.with_name("wiki_reference.bin.json").read_text())
    assert record["examples"] == {
        "positives_read": 50,
        "negatives_read": len(corpus["mails"]),
        "per_class": 50,
    }
    assert record["hyper_parameters"]["epoch"] == 3
    assert load_reference_model(str(out)).get_labels()


def test_cli_refuses_inputs_that_do_not_exist(tmp_path: Path) -> None:
    argv = ["classifier", "train", "--positives", str(tmp_path / "none.jsonl")]
    argv += ["--negatives", str(tmp_path), "--out", str(tmp_path / "m.bin")]
    assert main(argv) == 2
