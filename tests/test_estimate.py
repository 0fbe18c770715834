"""The paper's recipes (manifests/llama-*.yaml) and `llamix estimate` on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main

# Importing pipeline.estimate registers `llamix estimate` (until COMMAND_PACKAGES lists it).
from pipeline.estimate import (
    PAPER_TRAINING,
    THROUGHPUT,
    Cluster,
    collect_throughput,
    estimate_training,
    flops_per_token,
    implied_mfu,
    parse_cluster,
)
from pipeline.manifest import load_manifest

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
RECIPES = ["llama-7b", "llama-13b", "llama-33b", "llama-65b"]
TABLE_1 = {
    "commoncrawl": 0.67,
    "c4": 0.15,
    "github": 0.045,
    "wikipedia": 0.045,
    "books": 0.045,
    "arxiv": 0.025,
    "stackexchange": 0.02,
}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates_with_paper_mixture_and_batch(name: str) -> None:
    run = load_manifest(MANIFESTS / f"{name}.yaml")
    assert {k: v.weight for k, v in run.manifest.mixture.items()} == TABLE_1
    train = run.manifest.train
    assert train is not None and train.preset == name
    assert (train.batch_tokens, train.seq_len, train.warmup_steps) == (4_194_304, 2048, 2000)
    tokens = PAPER_TRAINING[name][1]
    assert 0 <= train.steps * train.batch_tokens - tokens < train.batch_tokens


def test_recipe_source_chains_are_the_papers() -> None:
    run = load_manifest(MANIFESTS / "llama-65b.yaml")
    chains = {n: [s.name for s in src.stages] for n, src in run.sources.items()}
    assert chains["commoncrawl"] == [
        "ccnet_dedup",
        "langid",
        "perplexity",
        "perplexity_bucket",
        "wiki_reference_classifier",
    ]
    assert chains["books"] == ["gutenberg_strip", "minhash_dedup"]
    assert run.sources["books"].stages[1].params.threshold == 0.9
    assert run.sources["stackexchange"].reader.params.top_sites == 28
    assert len(run.sources["wikipedia"].inputs) == 20
    crawls = {p.split("/")[4] for p in run.sources["commoncrawl"].inputs}
    assert len(crawls) == 5 and all(c[8:12] in "2017 2018 2019 2020" for c in crawls)


def test_throughput_json_is_built_from_the_benchmark_results() -> None:
    assert json.loads(THROUGHPUT.read_text()) == collect_throughput(THROUGHPUT.parent)


def test_cluster_spec_parses_and_refuses_unknown_keys() -> None:
    assert parse_cluster("nodes=64,cpus=64,gpus=8,gpu=h100") == Cluster(64, 64, 8, "h100")
    with pytest.raises(ValueError, match="gpu must be one of"):
        parse_cluster("gpu=v100")
    with pytest.raises(ValueError, match="not one of"):
        parse_cluster("ram=1")


def test_7b_flops_per_token_is_6n_plus_attention() -> None:
    # 6.74e9 parameters, 6.48e9 without the token embedding; attention 12·L·d·T.
    attention = 12 * 32 * 4096 * 2048
    n = (flops_per_token("llama-7b", 2048) - attention) / 6
    assert 6.4e9 < n < 6.8e9


def test_65b_gpu_days_at_the_papers_throughput_match_its_gpu_hours() -> None:
    run = load_manifest(MANIFESTS / "llama-65b.yaml")
    cluster = parse_cluster("nodes=256,gpus=8,gpu=a100")
    training = estimate_training(run, cluster, implied_mfu("llama-65b"))
    assert training is not None and training.gpus == 2048
    assert training.tokens_per_gpu_s == pytest.approx(380, rel=0.01)
    assert training.gpu_hours / 24 == pytest.approx(1_022_362 / 24, rel=0.05)
    assert training.days == pytest.approx(21, rel=0.05)


def test_estimate_command_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    manifest = str(MANIFESTS / "llama-65b.yaml")
    cluster = "nodes=64,cpus=64,gpus=8,gpu=h100"
    assert main(["estimate", manifest, "--cluster", cluster, "--input-tb", "arxiv=0.2"]) == 0
    out = capsys.readouterr().out
    assert "commoncrawl/perplexity" in out and "unmeasured" in out
    latex = next(line for line in out.splitlines() if line.startswith("arxiv/latex_clean"))
    assert latex.split()[1] == "200"  # GB, from --input-tb
    assert "GPU-days" in out and "implied MFU 0.4" in out and "storage:" in out


def test_estimate_refuses_a_source_without_a_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("output: out\nsources:\n  web: {reader: jsonl, inputs: [x.jsonl]}\n")
    assert main(["estimate", str(manifest)]) == 2
    assert "--input-tb web=TB" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["7b", "13b", "33b", "65b"])
def test_llamix_plan_accepts_the_paper_recipe_offline(
    size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = Path(__file__).resolve().parents[1] / "manifests" / f"llama-{size}.yaml"
    assert main(["plan", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "commoncrawl: 5 input files, 5 remote patterns not listed" in out
    assert "minhash_dedup" in out and "latex_clean" in out
