"""`OUT/report/index.html`: what the run did, as plots a person can read in a minute."""

from __future__ import annotations

import base64
import html
import io
import itertools
from typing import Any

from pipeline.figures import pyplot
from pipeline.io import atomic_write_bytes, exists, filesystem, join, read_json
from pipeline.runner import STATS_FILE


def write_report(output: str) -> str:
    stats_path = join(output, STATS_FILE)
    if not exists(stats_path):
        raise FileNotFoundError(f"{stats_path} not found: run `llamix run` first")
    stats = read_json(stats_path)
    page = join(output, "report", "index.html")
    atomic_write_bytes(page, render(stats, tool_figures(output)).encode("utf-8"))
    return page


def tool_figures(output: str) -> list[tuple[str, bytes]]:
    """PNGs that other tools left in OUT/report/figures (`llamix mixture`'s chart), by name."""
    fs, inner = filesystem(join(output, "report", "figures"))
    if not fs.exists(inner):
        return []
    paths = sorted(p for p in fs.ls(inner, detail=False) if p.endswith(".png"))
    return [(p.rsplit("/", 1)[-1].removesuffix(".png"), fs.cat_file(p)) for p in paths]


def render(stats: dict[str, Any], figures: list[tuple[str, bytes]] | None = None) -> str:
    sections = [
        ("Documents per step", _img("Documents per step", funnel_figure(stats))),
        ("Drop reasons", _img("Drop reasons", drops_figure(stats))),
    ]
    for title, png in figures or []:
        encoded = base64.b64encode(png).decode("ascii")
        sections.append(
            (title, f"<img alt='{html.escape(title)}' src='data:image/png;base64,{encoded}'>")
        )
    for source, entry in stats["sources"].items():
        # A later step may mark an earlier one's histogram (bucket cutoffs on perplexity).
        marks: dict[str, dict[str, float]] = {}
        for step in entry["steps"]:
            for name, labels in step["stats"].get("marks", {}).items():
                marks.setdefault(name, {}).update(labels)
        for step in entry["steps"]:
            for name, buckets in step["stats"].get("histograms", {}).items():
                title = f"{source}/{step['step']}: {name}"
                figure = histogram_figure(title, buckets, marks.get(name))
                sections.append((title, _img(title, figure)))
            for name, items in step["stats"].get("samples", {}).items():
                sections.append((f"{source}/{step['step']}: {name}", samples_table(items)))
    body = "\n".join(f"<h2>{html.escape(title)}</h2>\n{fragment}" for title, fragment in sections)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>llamix report</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;"
        "text-align:right}td:first-child,th:first-child{text-align:left}</style></head><body>"
        f"<h1>llamix run</h1><p>manifest hash <code>{stats['manifest_hash'][:16]}</code>, "
        f"output <code>{html.escape(stats['output'])}</code></p>"
        f"{_table(stats)}{body}</body></html>"
    )


def samples_table(items: list[Any]) -> str:
    """Examples a stage kept for a person to read (e.g. the largest duplicate clusters)."""
    columns = list(dict.fromkeys(key for item in items if isinstance(item, dict) for key in item))
    if not columns:
        return "<ul>" + "".join(f"<li>{html.escape(str(item))}</li>" for item in items) + "</ul>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = [
        "".join(f"<td style='text-align:left'>{_cell(item.get(c, ''))}</td>" for c in columns)
        for item in items
    ]
    return f"<table><tr>{head}</tr>" + "".join(f"<tr>{row}</tr>" for row in rows) + "</table>"


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return html.escape(", ".join(map(str, value)))
    return html.escape(str(value))


def _img(title: str, figure: Any) -> str:
    return f"<img alt='{html.escape(title)}' src='data:image/png;base64,{_png(figure)}'>"


def _table(stats: dict[str, Any]) -> str:
    rows = ["<tr><th>step</th><th>docs in</th><th>docs out</th><th>MB out</th><th>s</th></tr>"]
    for source, entry in stats["sources"].items():
        for step in entry["steps"]:
            s = step["stats"]
            rows.append(
                f"<tr><td>{html.escape(source)}/{html.escape(step['step'])}</td>"
                f"<td>{s['docs_in']}</td><td>{s['docs_out']}</td>"
                f"<td>{s['bytes_out'] / 1e6:.2f}</td><td>{s['seconds']:.1f}</td></tr>"
            )
    return f"<table>{''.join(rows)}</table>"


def funnel_figure(stats: dict[str, Any]) -> Any:
    """One panel per source: documents in, then documents out of each step."""
    plt = pyplot()

    sources = list(stats["sources"].items())
    fig, axes = plt.subplots(len(sources), 1, figsize=(9, 2.6 * len(sources) + 0.6), squeeze=False)
    for ax, (source, entry) in zip(axes[:, 0], sources, strict=True):
        steps = entry["steps"]
        labels = ["input", *(step["step"] for step in steps)]
        first_in = steps[0]["stats"]["docs_in"] if steps else 0
        counts = [first_in, *(step["stats"]["docs_out"] for step in steps)]
        bars = ax.bar(range(len(counts)), counts, color="#4a7ab5")
        ax.bar_label(bars, fontsize=8)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(0, max(*counts, 1) * 1.18)
        ax.set_ylabel("documents")
        ax.set_title(source, fontsize=10, loc="left")
    fig.suptitle("Funnel: documents after each step")
    fig.tight_layout()
    return fig


def drops_figure(stats: dict[str, Any]) -> Any:
    plt = pyplot()

    totals: dict[str, int] = {}
    for source, entry in stats["sources"].items():
        for step in entry["steps"]:
            for reason, count in step["stats"]["drops"].items():
                totals[f"{source}: {reason}"] = totals.get(f"{source}: {reason}", 0) + count
    ordered = sorted(totals.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * len(ordered) + 1)))
    if ordered:
        ax.barh([name for name, _ in ordered], [count for _, count in ordered], color="#c44")
    else:
        ax.text(0.5, 0.5, "nothing was dropped", ha="center", va="center")
    ax.set_xlabel("documents dropped")
    ax.set_title("Drop reasons")
    fig.tight_layout()
    return fig


def histogram_figure(
    title: str, buckets: dict[str, int], marks: dict[str, float] | None = None
) -> Any:
    """Numeric buckets on a value axis (with marks as lines); named ones as sorted bars."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(9, 3.6))
    try:
        values = {float(k): v for k, v in buckets.items()}
    except ValueError:
        values = None
    if values is not None:
        xs = sorted(values)
        width = min((b - a for a, b in itertools.pairwise(xs)), default=1.0)
        ax.bar(xs, [values[x] for x in xs], width=width * 0.9, color="#4a7ab5")
        for n, (label, value) in enumerate(sorted((marks or {}).items(), key=lambda m: m[1])):
            ax.axvline(value, color="#c44", linestyle="--")
            ax.annotate(
                f"{label} {value:g}",
                (value, 0.92 - 0.1 * n),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color="#c44",
                xytext=(3, 0),
                textcoords="offset points",
            )
    else:
        top = sorted(buckets.items(), key=lambda kv: (-kv[1], kv[0]))[:40]
        ax.bar([k for k, _ in top], [v for _, v in top], color="#4a7ab5")
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.set_ylabel("documents")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _png(fig: Any) -> str:
    plt = pyplot()

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
