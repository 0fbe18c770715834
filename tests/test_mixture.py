"""Mixture accounting, checked against the LLaMA paper's Table 1."""

from __future__ import annotations

import io
import math

import pytest

from tokenizer.mixture import (
    LLAMA_MIXTURE,
    LLAMA_TRAINING_TOKENS,
    effective_proportions,
    format_table,
    mixture_figure,
    plan_mixture,
)

PAPER_WEIGHTS = {source: row.proportion for source, row in LLAMA_MIXTURE.items()}
PAPER_EPOCHS = {source: row.epochs for source, row in LLAMA_MIXTURE.items()}
# Table 1 lists disk sizes, not tokens; the tokens it implies are p_i x 1.4T / epochs_i.
PAPER_TOKENS = {
    source: round(LLAMA_TRAINING_TOKENS * row.proportion / row.epochs)
    for source, row in LLAMA_MIXTURE.items()
}


def test_table_1_proportions_sum_to_one() -> None:
    assert math.isclose(sum(PAPER_WEIGHTS.values()), 1.0)


def test_plan_reproduces_the_papers_epochs() -> None:
    plan = plan_mixture(PAPER_WEIGHTS, PAPER_TOKENS, LLAMA_TRAINING_TOKENS)

    for source, row in LLAMA_MIXTURE.items():
        entry = plan.sources[source]
        assert entry.epochs == pytest.approx(row.epochs, abs=1e-6)
        assert entry.tokens == round(row.proportion * LLAMA_TRAINING_TOKENS)
    assert plan.warnings == []


def test_the_papers_own_epochs_as_limits_raise_no_warning() -> None:
    plan = plan_mixture(PAPER_WEIGHTS, PAPER_TOKENS, LLAMA_TRAINING_TOKENS, PAPER_EPOCHS)
    assert plan.warnings == []
    assert not any(entry.too_small for entry in plan.sources.values())


def test_weights_are_normalised() -> None:
    plan = plan_mixture({"a": 3, "b": 1}, {"a": 1000, "b": 1000}, 400)
    assert plan.sources["a"].proportion == 0.75
    assert plan.sources["a"].tokens == 300
    assert plan.sources["b"].epochs == 0.1


def test_a_source_too_small_for_its_weight_warns_with_its_numbers() -> None:
    tokens = dict(PAPER_TOKENS, wikipedia=PAPER_TOKENS["wikipedia"] // 2)
    plan = plan_mixture(PAPER_WEIGHTS, tokens, LLAMA_TRAINING_TOKENS, PAPER_EPOCHS)

    assert [entry.source for entry in plan.sources.values() if entry.too_small] == ["wikipedia"]
    (warning,) = plan.warnings
    assert warning.startswith("wikipedia:")
    assert "4.90 epochs" in warning
    assert "2.45 allowed" in warning


def test_a_global_cap_applies_to_every_source() -> None:
    plan = plan_mixture(PAPER_WEIGHTS, PAPER_TOKENS, LLAMA_TRAINING_TOKENS, epoch_cap=2.0)
    assert sorted(w.split(":")[0] for w in plan.warnings) == ["books", "wikipedia"]
    assert plan.sources["books"].max_epochs == 2.0


def test_a_manifest_limit_tighter_than_the_cap_wins() -> None:
    plan = plan_mixture(
        PAPER_WEIGHTS, PAPER_TOKENS, LLAMA_TRAINING_TOKENS, {"github": 0.5}, epoch_cap=4.0
    )
    assert [w.split(":")[0] for w in plan.warnings] == ["github"]
    assert plan.sources["c4"].max_epochs == 4.0


def test_a_weighted_source_without_tokens_warns() -> None:
    plan = plan_mixture({"web": 0.9, "books": 0.1}, {"web": 10**9, "books": 0}, 10**8)

    assert plan.sources["books"].epochs == math.inf
    assert plan.sources["books"].too_small
    (warning,) = plan.warnings
    assert warning.startswith("books:")
    assert "has none" in warning


def test_an_unweighted_source_without_tokens_is_fine() -> None:
    plan = plan_mixture({"web": 1.0, "books": 0.0}, {"web": 10**9, "books": 0}, 10**8)
    assert plan.sources["books"].epochs == 0.0
    assert plan.warnings == []


@pytest.mark.parametrize(
    ("weights", "tokens", "budget", "match"),
    [
        ({"a": 1.0}, {"b": 10}, 10, "missing \\['a'\\], extra \\['b'\\]"),
        ({"a": -1.0, "b": 2.0}, {"a": 1, "b": 1}, 10, "negative"),
        ({"a": 0.0}, {"a": 1}, 10, "sum to 0"),
        ({"a": 1.0}, {"a": 1}, 0, "budget_tokens"),
    ],
)
def test_bad_inputs_are_refused(
    weights: dict[str, float], tokens: dict[str, int], budget: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        plan_mixture(weights, tokens, budget)


def test_effective_proportions_of_the_paper_are_its_proportions() -> None:
    shares = effective_proportions(PAPER_WEIGHTS, PAPER_EPOCHS, PAPER_TOKENS)
    assert math.isclose(sum(shares.values()), 1.0)
    for source, row in LLAMA_MIXTURE.items():
        assert shares[source] == pytest.approx(row.proportion, abs=1e-9)


def test_effective_proportions_follow_tokens_times_epochs() -> None:
    shares = effective_proportions(
        {"web": 1, "wiki": 1, "empty": 1, "off": 0},
        {"web": 1.0, "wiki": 3.0, "empty": 2.0, "off": 5.0},
        {"web": 700, "wiki": 100, "empty": 0, "off": 1000},
    )
    assert shares == {"web": 0.7, "wiki": 0.3, "empty": 0.0, "off": 0.0}
    assert math.isclose(sum(shares.values()), 1.0)


def test_effective_proportions_need_some_tokens() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        effective_proportions({"a": 1.0}, {"a": 1.0}, {"a": 0})


def test_table_lists_every_source_and_flags_the_small_one() -> None:
    tokens = dict(PAPER_TOKENS, books=0)
    plan = plan_mixture(PAPER_WEIGHTS, tokens, LLAMA_TRAINING_TOKENS, PAPER_EPOCHS)
    table = format_table(plan)
    lines = table.splitlines()

    assert lines[0].split() == [
        "source",
        "weight",
        "available",
        "in",
        "budget",
        "epochs",
        "allowed",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(LLAMA_MIXTURE) <= set(rows)
    assert rows["commoncrawl"].split()[1:6] == ["67.0%", "852.7B", "938.0B", "1.10", "1.10"]
    assert rows["books"].endswith("!")
    assert not rows["c4"].endswith("!")
    assert rows["total"].split()[3] == "1.40T"
    assert lines[-1].startswith("! books:")


def test_figure_draws_one_bar_per_source_in_each_panel() -> None:
    plan = plan_mixture(
        PAPER_WEIGHTS, dict(PAPER_TOKENS, arxiv=0), LLAMA_TRAINING_TOKENS, PAPER_EPOCHS
    )
    fig = mixture_figure(plan)
    proportions, epochs = fig.axes

    assert len(proportions.patches) == len(epochs.patches) == len(LLAMA_MIXTURE)
    assert [t.get_text() for t in proportions.get_yticklabels()] == list(LLAMA_MIXTURE)
    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert png.getvalue().startswith(b"\x89PNG")
