"""The HTML report: a page with the funnel and drop-reason plots embedded as PNGs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from pipeline.io import atomic_write_json
from pipeline.report import write_report


def stats() -> dict:
    def step(name: str, docs_in: int, docs_out: int, drops: dict[str, int]) -> dict:
        counts = {"docs_in": docs_in, "docs_out": docs_out, "bytes_in": 0, "bytes_out": 0}
        return {"step": name, "stats": {**counts, "seconds": 0.1, "drops": drops, "counters": {}}}

    return {
        "manifest_hash": "ab" * 32,
        "output": "/tmp/out",
        "sources": {
            "web": {
                "inputs": 3,
                "steps": [
                    step("00-read", 10, 9, {"read:invalid_json": 1}),
                    step("01-exact_dedup", 9, 7, {"exact_dedup:duplicate": 2}),
                ],
            }
        },
    }


def test_report_embeds_two_decodable_png_plots(tmp_path: Path) -> None:
    atomic_write_json(str(tmp_path / "stats.json"), stats())
    page = Path(write_report(str(tmp_path)))
    html = page.read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) == 2
    for image in images:
        assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")
    assert "web/01-exact_dedup" in html


def test_stage_histograms_get_their_own_plots(tmp_path: Path) -> None:
    data = stats()
    step = data["sources"]["web"]["steps"][1]["stats"]
    step["histograms"] = {"language": {"en": 5, "de": 2}, "log10_perplexity": {"2.1": 3, "2.4": 4}}
    step["marks"] = {"log10_perplexity": {"head": 2.2, "tail": 2.35}}
    atomic_write_json(str(tmp_path / "stats.json"), data)
    html = Path(write_report(str(tmp_path))).read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "web/01-exact_dedup: language" in html


def test_report_without_a_run_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="llamix run"):
        write_report(str(tmp_path))
