"""One reduced manifest through every command, as a user chains them: processed sources,
a tokenizer, token shards, a trained `tiny` model, a generated sample and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main


def test_a_manifest_goes_from_real_text_to_a_trained_model_and_a_report(
    shared_data: Path, tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    manifest = tmp_path / "demo.yaml"
    spec = {
        "output": str(out),
        "sources": {
            "wikipedia": {
                "reader": {"type": "wikipedia", "languages": ["en"]},
                "inputs": [str(shared_data / "wikipedia" / "enwiki-shortened.xml.bz2")],
                "stages": [{"stage": "length_filter", "min_chars": 200}, {"stage": "exact_dedup"}],
            },
            "books": {
                "reader": "books",
                "inputs": [str(shared_data / "books" / "botchan.txt")],
                "stages": [
                    {"stage": "gutenberg_strip"},
                    {"stage": "minhash_dedup", "threshold": 0.9},
                ],
            },
        },
        "mixture": {"wikipedia": {"weight": 4.5, "epochs": 2.45}, "books": {"weight": 4.5}},
        "tokenizer": {"vocab_size": 1000, "num_threads": 2},
        "train": {
            "preset": "tiny",
            "seq_len": 64,
            "batch_tokens": 1024,
            "micro_batch": 8,
            "steps": 30,
            "warmup_steps": 3,
            "eval_every": 0,
            "eval_windows": 2,
            "checkpoint_every": 30,
            "log_every": 10,
        },
    }
    manifest.write_text(yaml.safe_dump(spec))

    assert main(["run", str(manifest), "--workers", "2", "--quiet"]) == 0
    assert main(["tokenizer", "train", str(manifest), "--quiet"]) == 0
    assert main(["tokenize", str(manifest), "--workers", "2", "--quiet"]) == 0
    dataset = json.loads((out / "dataset" / "dataset.json").read_text())
    assert dataset["tokenizer"]["vocab_size"] == 1000
    assert all(dataset["sources"][s]["tokens"] > 1000 for s in ("wikipedia", "books"))

    assert main(["train", str(manifest)]) == 0
    metrics = [
        json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses and losses[-1] < losses[0]

    capsys.readouterr()
    prompt = ["generate", str(out / "train"), "--prompt", "The", "--max-new-tokens", "8"]
    assert main(prompt) == 0
    assert capsys.readouterr().out.startswith("The")

    assert main(["mixture", str(out), "--tokens", "1e6"]) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report" / "index.html").read_text()
    for title in ("Documents per step", "Drop reasons", "mixture"):  # mixture: a tool's figure
        assert f"<h2>{title}</h2>" in page
