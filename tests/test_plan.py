"""Planning: inputs become sorted shards with stable names; keys chain step to step."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.inputs import expand_inputs
from pipeline.manifest import parse_manifest
from pipeline.plan import build_plan, select_until


def tree(root: Path) -> None:
    for name in ("b/2.txt", "b/1.txt", "a/x.txt", "a/deep/y.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def test_inputs_are_sorted_and_named_relative_to_their_common_root(tmp_path: Path) -> None:
    tree(tmp_path)
    files = expand_inputs([str(tmp_path / "b" / "*.txt"), str(tmp_path / "a")])
    assert [f.name for f in files] == ["a/deep/y.txt", "a/x.txt", "b/1.txt", "b/2.txt"]
    assert not any(f.missing for f in files)


def test_a_path_that_matches_nothing_is_kept_as_a_missing_input(tmp_path: Path) -> None:
    tree(tmp_path)
    files = expand_inputs([str(tmp_path / "a" / "x.txt"), str(tmp_path / "nope.txt")])
    assert [(f.name, f.missing) for f in files] == [("x.txt", False), ("nope.txt", True)]


def test_fingerprint_follows_the_file_content_stamp(tmp_path: Path) -> None:
    tree(tmp_path)
    (before,) = expand_inputs([str(tmp_path / "a" / "x.txt")])
    (tmp_path / "a" / "x.txt").write_text("changed, and longer")
    (after,) = expand_inputs([str(tmp_path / "a" / "x.txt")])
    assert before.fingerprint != after.fingerprint


def manifest(root: Path, min_chars: int = 1, lowercase: bool = False) -> dict:
    return {
        "output": str(root / "out"),
        "sources": {
            "s": {
                "reader": "text",
                "inputs": [str(root / "a")],
                "stages": [
                    {"stage": "length_filter", "min_chars": min_chars},
                    {"stage": "lines_normalize"},
                    {"stage": "exact_dedup", "lowercase": lowercase},
                ],
            }
        },
    }


def test_a_parameter_changes_its_step_key_and_every_later_one(tmp_path: Path) -> None:
    tree(tmp_path)
    base = [s.key for s in build_plan(parse_manifest(manifest(tmp_path))).steps]
    early = [s.key for s in build_plan(parse_manifest(manifest(tmp_path, min_chars=5))).steps]
    late = [s.key for s in build_plan(parse_manifest(manifest(tmp_path, lowercase=True))).steps]
    assert early[0] == base[0] and all(e != b for e, b in zip(early[1:], base[1:], strict=True))
    assert late[:3] == base[:3] and late[3] != base[3]


def test_steps_are_numbered_directories_under_the_output(tmp_path: Path) -> None:
    tree(tmp_path)
    plan = build_plan(parse_manifest(manifest(tmp_path)))
    assert [s.label for s in plan.steps] == [
        "s/00-read",
        "s/01-length_filter",
        "s/02-lines_normalize",
        "s/03-exact_dedup",
    ]
    assert plan.steps[1].part(3) == f"{tmp_path}/out/sources/s/01-length_filter/part-00003.parquet"
    assert plan.final_step("s").is_global


def test_until_cuts_each_source_after_the_named_step(tmp_path: Path) -> None:
    tree(tmp_path)
    plan = build_plan(parse_manifest(manifest(tmp_path)))
    assert [s.name for s in select_until(plan, "lines_normalize").steps] == [
        "read",
        "length_filter",
        "lines_normalize",
    ]
    assert len(select_until(plan, "s/01-length_filter").steps) == 2
    with pytest.raises(ValueError, match="names no step"):
        select_until(plan, "minhash")


def test_a_retrained_model_changes_the_key_of_the_step_that_uses_it(tmp_path: Path) -> None:
    tree(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    (models / "en.cutoffs.json").write_text("{}")
    spec = manifest(tmp_path)
    spec["sources"]["s"]["stages"].append({"stage": "perplexity_bucket", "models": str(models)})
    before = [s.key for s in build_plan(parse_manifest(spec)).steps]
    (models / "en.cutoffs.json").write_text('{"retrained": true}')
    after = [s.key for s in build_plan(parse_manifest(spec)).steps]
    assert before[:4] == after[:4] and before[4] != after[4]
