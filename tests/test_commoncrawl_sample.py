"""`manifests/commoncrawl-sample.yaml`: the whole CCNet chain on a real-format WET file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from commoncrawl_sample import prepare

from pipeline.manifest import parse_manifest
from pipeline.report import write_report
from pipeline.runner import RunResult, run_pipeline

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "commoncrawl-sample.yaml"


@pytest.fixture(scope="module")
def sample_run(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory, ray_local: None
) -> tuple[RunResult, Path]:
    root = tmp_path_factory.mktemp("ccnet-sample")
    prepare(root, shared_data)
    run = parse_manifest(
        yaml.safe_load(MANIFEST.read_text()), path=str(MANIFEST), base_dir=str(root / "manifests")
    )
    return run_pipeline(run, workers=2, progress=False), root / "out" / "commoncrawl-sample"


def steps(result: RunResult) -> dict[str, dict]:
    return {s["step"]: s["stats"] for s in result.stats["sources"]["commoncrawl"]["steps"]}


def test_every_stage_of_the_chain_runs_and_accounts_for_its_documents(sample_run) -> None:
    result, _ = sample_run
    by_step = steps(result)
    assert list(by_step) == [
        "00-read",
        "01-ccnet_dedup",
        "02-langid",
        "03-perplexity",
        "04-perplexity_bucket",
        "05-wiki_reference_classifier",
    ]
    previous = None
    for stats in by_step.values():
        assert stats["docs_in"] == stats["docs_out"] + sum(stats["drops"].values())
        assert previous is None or stats["docs_in"] == previous
        previous = stats["docs_out"]
    assert by_step["00-read"]["docs_out"] == 153  # 154 pages; one has no main text
    assert by_step["01-ccnet_dedup"]["counters"]["ccnet_dedup:lines_removed"] > 0
    assert by_step["04-perplexity_bucket"]["drops"].get("perplexity_bucket:tail", 0) > 0
    assert 0 < by_step["05-wiki_reference_classifier"]["docs_out"] < 153


def test_kept_documents_carry_every_signal_in_meta(sample_run) -> None:
    _, out = sample_run
    final = out / "sources" / "commoncrawl" / "05-wiki_reference_classifier"
    rows = [
        row
        for part in sorted(final.glob("part-*.parquet"))
        for row in pq.read_table(part).to_pylist()
    ]
    assert rows
    for row in rows:
        meta = json.loads(row["meta"])
        assert meta["language"] == "en" and meta["language_score"] >= 0.5
        assert meta["bucket"] in ("head", "middle")
        assert meta["perplexity"] > 0 and meta["wiki_reference_score"] >= 0.25
        assert meta["url"].startswith("https://")


def test_report_shows_languages_perplexity_with_cutoffs_and_the_funnel(sample_run) -> None:
    result, out = sample_run
    by_step = steps(result)
    assert by_step["02-langid"]["histograms"]["language"]
    assert by_step["03-perplexity"]["histograms"]["perplexity"]
    assert set(by_step["04-perplexity_bucket"]["marks"]["perplexity"]) == {"head", "middle"}
    html = Path(write_report(str(out))).read_text()
    assert "Documents per step" in html
    assert "commoncrawl/02-langid: language" in html
    assert "commoncrawl/03-perplexity: perplexity" in html
