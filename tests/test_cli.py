"""The `llamix` command as a user types it: run, --until, status, report, --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

LLAMIX = [sys.executable, "-m", "pipeline.cli"]


def llamix(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LLAMIX, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [[], ["run"], ["plan"], ["status"], ["report"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = llamix(*command, "--help")
    assert result.returncode == 0
    assert "usage: llamix" in result.stdout


def test_until_then_status_then_full_run_then_report(shared_data: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "output": "out",
                "sources": {
                    "web": {
                        "reader": "text",
                        "inputs": [str(shared_data / "web" / "html" / "[a-c]*.html")],
                        "stages": [
                            {"stage": "length_filter", "min_chars": 100},
                            {"stage": "lines_normalize"},
                            {"stage": "exact_dedup"},
                        ],
                    }
                },
            }
        )
    )
    out = tmp_path / "out"

    partial = llamix(
        "run", str(manifest), "--until", "lines_normalize", "--workers", "1", "--quiet"
    )
    assert partial.returncode == 0, partial.stderr
    assert (out / "sources/web/02-lines_normalize/_done").is_dir()
    assert not (out / "sources/web/03-exact_dedup").exists()

    status = llamix("status", str(out))
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.startswith("  ")}
    assert lines["02-lines_normalize"].endswith("done")
    assert "0/" in lines["03-exact_dedup"]

    full = llamix("run", str(manifest), "--quiet")
    assert full.returncode == 0, full.stderr
    assert "web/03-exact_dedup" in full.stdout
    assert "reused from earlier runs" in full.stdout

    report = llamix("report", str(out))
    assert report.returncode == 0, report.stderr
    assert (out / "report" / "index.html").stat().st_size > 10_000


def test_status_of_a_directory_without_a_run_is_a_clear_error(tmp_path: Path) -> None:
    result = llamix("status", str(tmp_path))
    assert result.returncode == 2
    assert "holds no llamix run" in result.stderr
