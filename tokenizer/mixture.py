"""Mixture accounting: how many tokens each source gives to a training budget, and how many
passes over its data that takes.

LLaMA (Touvron et al. 2023, Table 1) samples each source with a fixed proportion, so for a
budget of N tokens source i contributes p_i x N tokens, which is p_i x N / T_i epochs over
its T_i available tokens: Wikipedia and Books are read about 2.4 times, GitHub 0.64 times.
A source too small for its weight would be read more often than intended; the plan says so.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline.figures import pyplot
from pipeline.io import atomic_write_bytes, join, read_json
from stages.base import register_command


class MixtureRow(NamedTuple):
    proportion: float
    epochs: float


# Table 1 of the LLaMA paper: sampling proportion and epochs when training on 1.4T tokens.
LLAMA_MIXTURE: dict[str, MixtureRow] = {
    "commoncrawl": MixtureRow(0.670, 1.10),
    "c4": MixtureRow(0.150, 1.06),
    "github": MixtureRow(0.045, 0.64),
    "wikipedia": MixtureRow(0.045, 2.45),
    "books": MixtureRow(0.045, 2.23),
    "arxiv": MixtureRow(0.025, 1.06),
    "stackexchange": MixtureRow(0.020, 1.03),
}
LLAMA_TRAINING_TOKENS = 1_400_000_000_000

# Epochs equal to the allowed ones up to float rounding are not "too many".
EPOCH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SourcePlan:
    source: str
    proportion: float  # the weight, normalised over all sources
    available_tokens: int
    tokens: int  # tokens this source contributes to the budget
    epochs: float  # tokens / available_tokens; inf when a weighted source has none
    max_epochs: float | None  # the most passes allowed; None: no limit

    @property
    def too_small(self) -> bool:
        if self.epochs == math.inf:
            return True
        limit = self.max_epochs
        return limit is not None and self.epochs > limit * (1 + EPOCH_TOLERANCE)


@dataclass(frozen=True)
class MixturePlan:
    budget_tokens: int
    sources: dict[str, SourcePlan]  # in the order of the weights
    warnings: list[str]


def plan_mixture(
    weights: Mapping[str, float],
    available_tokens: Mapping[str, int],
    budget_tokens: int,
    max_epochs: Mapping[str, float] | None = None,
    *,
    epoch_cap: float | None = None,
) -> MixturePlan:
    """Splits `budget_tokens` by the normalised weights and counts the epochs that implies.

    A source warns when its epochs exceed `max_epochs[source]` (the manifest's) or
    `epoch_cap` (one limit for every source), or when it has weight but no tokens.
    """
    max_epochs = max_epochs or {}
    _check_sources(weights, available_tokens, "available_tokens")
    if unknown := sorted(set(max_epochs) - set(weights)):
        raise ValueError(f"max_epochs names sources without a weight: {unknown}")
    if budget_tokens <= 0:
        raise ValueError(f"budget_tokens must be positive, got {budget_tokens}")
    total = _total_weight(weights)

    sources: dict[str, SourcePlan] = {}
    warnings: list[str] = []
    for source, weight in weights.items():
        available = available_tokens[source]
        if available < 0:
            raise ValueError(f"available_tokens[{source!r}] is negative: {available}")
        proportion = weight / total
        drawn = proportion * budget_tokens
        epochs = drawn / available if available else (math.inf if drawn else 0.0)
        limits = [x for x in (max_epochs.get(source), epoch_cap) if x is not None]
        plan = SourcePlan(
            source, proportion, available, round(drawn), epochs, min(limits, default=None)
        )
        sources[source] = plan
        if plan.too_small:
            warnings.append(_warning(plan))
    return MixturePlan(budget_tokens, sources, warnings)


def _warning(plan: SourcePlan) -> str:
    if plan.available_tokens == 0:
        return (
            f"{plan.source}: weight {plan.proportion:.1%} asks for {_count(plan.tokens)} tokens "
            "but the source has none: add its data or set its weight to 0"
        )
    return (
        f"{plan.source}: too small for weight {plan.proportion:.1%}: "
        f"{_count(plan.tokens)} tokens from {_count(plan.available_tokens)} available is "
        f"{plan.epochs:.2f} epochs, more than the {plan.max_epochs:.2f} allowed: "
        "add data, lower its weight or allow more epochs"
    )


def effective_proportions(
    weights: Mapping[str, float], epochs: Mapping[str, float], tokens: Mapping[str, int]
) -> dict[str, float]:
    """The share of training tokens each source really gets when it is read for `epochs`
    passes over its `tokens`: tokens_i x epochs_i / sum_j tokens_j x epochs_j. A source of
    weight 0 is not read, whatever its epochs. This is what dataset.json records as the
    effective sampling proportion, to compare with the weights asked for.
    """
    _check_sources(weights, epochs, "epochs")
    _check_sources(weights, tokens, "tokens")
    _total_weight(weights)
    read = {s: tokens[s] * epochs[s] if weights[s] > 0 else 0.0 for s in weights}
    total = sum(read.values())
    if total <= 0:
        raise ValueError("no tokens would be read: every weighted source is empty")
    return {source: count / total for source, count in read.items()}


def format_table(plan: MixturePlan) -> str:
    """The plan as a plain-text table for the CLI; `!` marks a source too small for its weight."""
    header = ("source", "weight", "available", "in budget", "epochs", "allowed", "")
    rows = [
        (
            p.source,
            f"{p.proportion:.1%}",
            _count(p.available_tokens),
            _count(p.tokens),
            f"{p.epochs:.2f}",
            "-" if p.max_epochs is None else f"{p.max_epochs:.2f}",
            "!" if p.too_small else "",
        )
        for p in plan.sources.values()
    ]
    available = sum(p.available_tokens for p in plan.sources.values())
    rows.append(("total", "100.0%", _count(available), _count(plan.budget_tokens), "", "", ""))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    lines = [line(header), *(line(row) for row in rows)]
    lines += [f"! {warning}" for warning in plan.warnings]
    return "\n".join(lines)


def mixture_figure(plan: MixturePlan) -> Any:
    """Two bar charts, sampling proportion and epochs per source; sources too small for their
    weight in red, the allowed epochs as black ticks."""
    plt = pyplot()
    entries = list(plan.sources.values())
    names = [p.source for p in entries]
    colors = ["#c44" if p.too_small else "#4a7ab5" for p in entries]
    rows = range(len(entries))

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.45 * len(entries) + 1.6), sharey=True)
    bars = left.barh(rows, [100 * p.proportion for p in entries], color=colors)
    left.bar_label(bars, fmt="%.1f%%", fontsize=8)
    left.set_yticks(rows, names)
    left.invert_yaxis()
    left.set_xlabel("sampling proportion (%)")

    finite = [p.epochs if math.isfinite(p.epochs) else 0.0 for p in entries]
    bars = right.barh(rows, finite, color=colors)
    labels = [f"{e:.2f}" if math.isfinite(e) else "no data" for e in (p.epochs for p in entries)]
    right.bar_label(bars, labels, fontsize=8)
    for row, p in zip(rows, entries, strict=True):
        if p.max_epochs is not None:
            right.plot([p.max_epochs] * 2, [row - 0.4, row + 0.4], color="black")
    right.set_xlabel("epochs")
    for ax in (left, right):
        ax.margins(x=0.15)  # room for the bar labels
    fig.suptitle(f"Mixture for {_count(plan.budget_tokens)} training tokens")
    fig.tight_layout()
    return fig


def _check_sources(weights: Mapping[str, float], other: Mapping[str, Any], name: str) -> None:
    if set(weights) != set(other):
        missing, extra = sorted(set(weights) - set(other)), sorted(set(other) - set(weights))
        raise ValueError(
            f"{name} must cover the weighted sources: missing {missing}, extra {extra}"
        )


def _total_weight(weights: Mapping[str, float]) -> float:
    if negative := sorted(s for s, w in weights.items() if w < 0):
        raise ValueError(f"negative mixture weights: {negative}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("mixture weights sum to 0: give at least one source a weight")
    return total


def _count(n: float) -> str:
    """1.40T, 938.0B, 12.3M, 950: token counts a person can compare at a glance."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.{2 if suffix == 'T' else 1}f}{suffix}"
    return f"{n:.0f}"


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="a run directory with dataset/dataset.json (`llamix tokenize`)")
    parser.add_argument(
        "--tokens",
        type=float,
        default=LLAMA_TRAINING_TOKENS,
        help="training budget in tokens (default: LLaMA's 1.4e12)",
    )
    parser.add_argument("--epoch-cap", type=float, help="warn above this many epochs of any source")


@register_command(
    "mixture", "tokens and epochs per source for a training budget, from dataset.json", _configure
)
def _mixture_command(args: argparse.Namespace) -> int:
    dataset = read_json(join(args.out, "dataset", "dataset.json"))
    sources = dataset["sources"]
    plan = plan_mixture(
        {s: e["weight"] for s, e in sources.items()},
        {s: e["tokens"] for s, e in sources.items()},
        int(args.tokens),
        {s: e["epochs"] for s, e in sources.items()},
        epoch_cap=args.epoch_cap,
    )
    print(format_table(plan))
    figure = join(args.out, "report", "figures", "mixture.png")
    buffer = io.BytesIO()
    mixture_figure(plan).savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(figure, buffer.getvalue())
    print(f"chart written to {figure} (shown by `llamix report`)", file=sys.stderr)
    return 0
