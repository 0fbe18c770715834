"""A bad manifest is refused before anything runs, with the path of every bad field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.manifest import ManifestError, load_manifest, parse_manifest
from stages.exact import ExactDedup
from stages.text import LengthFilter

GOOD = {
    "output": "out",
    "sources": {
        "web": {
            "reader": {"type": "jsonl", "text_field": "content"},
            "inputs": ["data/*.jsonl.zst"],
            "stages": [
                {"stage": "length_filter", "min_chars": 10, "max_chars": 1000},
                {"stage": "lines_normalize"},
                {"stage": "exact_dedup"},
            ],
        },
        "books": {"reader": "text", "inputs": ["books/"]},
    },
    "mixture": {"web": {"weight": 0.8}, "books": {"weight": 0.2, "epochs": 2}},
    "tokenizer": {"vocab_size": 4000},
}


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    return caught.value.problems


def test_a_good_manifest_builds_its_components(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    run = load_manifest(path)
    web = run.sources["web"]
    assert isinstance(web.stages[0], LengthFilter) and web.stages[0].params.max_chars == 1000
    assert isinstance(web.stages[2], ExactDedup)
    assert web.reader.params.text_field == "content"
    assert web.inputs == (str(tmp_path / "data/*.jsonl.zst"),)
    assert run.output == str(tmp_path / "out")
    assert run.manifest.mixture["books"].epochs == 2


def test_manifest_hash_changes_with_any_parameter() -> None:
    changed = {**GOOD, "tokenizer": {"vocab_size": 8000}}
    assert parse_manifest(GOOD).hash == parse_manifest(GOOD).hash
    assert parse_manifest(GOOD).hash != parse_manifest(changed).hash


def test_misspelled_key_wrong_type_and_missing_field_are_all_reported() -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sources"]["web"]["input"] = data["sources"]["web"].pop("inputs")  # misspelled
    data["sources"]["web"]["stages"][0]["min_chars"] = "ten"  # wrong type
    del data["output"]  # missing
    problems = problems_of(data)
    assert "output: required field is missing" in problems
    assert "sources.web.input: unknown field; did you mean 'inputs'?" in problems
    assert "sources.web.inputs: required field is missing" in problems
    assert any(
        p.startswith("sources.web.stages[0].min_chars: Input should be a valid integer")
        for p in problems
    )


def test_stage_parameter_bounds_name_the_stage_position() -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sources"]["web"]["stages"][0].update(min_chars=100, max_chars=10)
    data["sources"]["web"]["stages"][2]["lowercas"] = True
    problems = problems_of(data)
    assert any(
        p.startswith("sources.web.stages[0]: ") and "max_chars must be at least" in p
        for p in problems
    )
    assert "sources.web.stages[2].lowercas: unknown field; did you mean 'lowercase'?" in problems


def test_unknown_stage_and_reader_suggest_the_registered_name() -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sources"]["web"]["stages"][1]["stage"] = "line_normalize"
    data["sources"]["books"]["reader"] = "txt"
    problems = problems_of(data)
    unknown = "sources.web.stages[1].stage: unknown stage 'line_normalize'"
    assert f"{unknown}; did you mean 'lines_normalize'?" in problems
    assert "sources.books.reader.type: unknown reader 'txt'; did you mean 'text'?" in problems


def test_mixture_must_name_declared_sources_with_positive_weights() -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["mixture"]["wiki"] = {"weight": 0.1}
    data["mixture"]["web"]["weight"] = 0
    problems = problems_of(data)
    assert "mixture.web.weight: Input should be greater than 0" in problems
    data["mixture"]["web"]["weight"] = 0.5
    assert any("mixture names sources that are not declared: wiki" in p for p in problems_of(data))


def test_source_names_are_checked() -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sources"]["Web Pages"] = data["sources"].pop("web")
    data["mixture"] = {}
    assert any(p.startswith("sources.Web Pages") for p in problems_of(data))


def test_cli_refuses_a_bad_manifest_before_starting_ray(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sources"]["web"]["stagez"] = data["sources"]["web"].pop("stages")
    data["sources"]["books"]["inputs"] = "books/"
    del data["output"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    code = (
        "import sys; from pipeline.cli import main; code = main(sys.argv[1:]); "
        "print('ray' in sys.modules); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "run", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "sources.web.stagez: unknown field; did you mean 'stages'?" in result.stderr
    assert "sources.books.inputs: Input should be a valid list" in result.stderr
    assert "output: required field is missing" in result.stderr
    assert result.stdout.strip() == "False"
    assert not (tmp_path / "out").exists()


def test_missing_and_malformed_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest file not found"):
        load_manifest(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("sources: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(tmp_path / "bad.yaml")


def test_path_parameters_resolve_relative_to_the_manifest(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sources"]["web"]["stages"].append(
        {"stage": "perplexity_bucket", "models": "models/lm", "keep": ["head"]}
    )
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    bucket = load_manifest(path).sources["web"].stages[-1]
    assert bucket.params.models == str(tmp_path / "models" / "lm")
    assert parse_manifest(data, base_dir="/elsewhere").sources["web"].stages[-1].params.models == (
        "/elsewhere/models/lm"
    )
