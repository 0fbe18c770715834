"""Failures mid-run change nothing in the result: a dying worker, a killed driver."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faulty
import psutil
import pytest
import ray
import yaml
from conftest import output_digest

from pipeline.io import read_json
from pipeline.manifest import parse_manifest
from pipeline.runner import run_pipeline

ray.cloudpickle.register_pickle_by_value(faulty)

LLAMIX = [sys.executable, "-m", "pipeline.cli"]


def web_manifest(shared_data: Path, output: Path, extra_stage: dict | None = None) -> dict:
    stages = [{"stage": "lines_normalize"}, {"stage": "length_filter", "min_chars": 500}]
    if extra_stage:
        stages.append(extra_stage)
    stages.append({"stage": "exact_dedup"})
    return {
        "output": str(output),
        "sources": {
            "web": {
                "reader": "text",
                "inputs": [str(shared_data / "web" / "html" / "*.html")],
                "stages": stages,
            }
        },
    }


def test_a_worker_that_dies_mid_task_is_retried_to_the_same_result(
    shared_data: Path, tmp_path: Path, ray_local: None
) -> None:
    marker = tmp_path / "crashed"
    crash = {"stage": "crash_once", "doc_id": "faq_library.html", "marker": str(marker)}
    spec = web_manifest(shared_data, tmp_path / "faulty", crash)
    result = run_pipeline(parse_manifest(spec), workers=2, progress=False)
    assert marker.exists(), "the worker never crashed: the test exercised nothing"

    calm = {**crash, "doc_id": "no-such-document"}
    reference = run_pipeline(
        parse_manifest(web_manifest(shared_data, tmp_path / "calm", calm)),
        workers=2,
        progress=False,
    )
    final = "sources/web/04-exact_dedup"
    assert output_digest(tmp_path / "faulty" / final) == output_digest(tmp_path / "calm" / final)
    pages = sorted(p.name for p in (shared_data / "web" / "html").glob("*.html"))
    shard = pages.index(crash["doc_id"])
    retried = read_json(
        str(tmp_path / f"faulty/sources/web/03-crash_once/_done/part-{shard:05d}.json")
    )
    assert retried["pid"] != int(marker.read_text()), "the crashed attempt wrote the record"
    assert (
        result.stats["sources"]["web"]["steps"][3]["stats"]["docs_in"]
        == (reference.stats["sources"]["web"]["steps"][3]["stats"]["docs_in"])
    )


def done_records(out: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in out.glob("sources/*/*/_done/*.json")}


def test_killing_the_driver_then_rerunning_gives_the_uninterrupted_result(
    shared_data: Path, tmp_path: Path, ray_local: None
) -> None:
    reference = tmp_path / "reference"
    run_pipeline(parse_manifest(web_manifest(shared_data, reference)), workers=2, progress=False)

    out = tmp_path / "resumed"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(web_manifest(shared_data, out)))
    command = [*LLAMIX, "run", str(path), "--workers", "1", "--quiet"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("sources/web/02-*/_done/*.json"))) < 20:
        assert driver.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    ray_processes = {p: p.name() for p in psutil.Process(driver.pid).children(recursive=True)}
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    core = [p for p, name in ray_processes.items() if not name.endswith("Agent")]
    _, alive = psutil.wait_procs(core, timeout=60)
    assert not alive, f"Ray processes outlived their driver: {alive}"
    # Ray's side agents notice their raylet is gone only after a while; don't wait for it.
    for agent in set(ray_processes) - set(core):
        with contextlib.suppress(psutil.NoSuchProcess):
            agent.kill()

    before = done_records(out)
    assert not (out / "sources/web/04-exact_dedup/_done").exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = done_records(out)
    assert {p: after[p] for p in before} == before, "finished shards were redone"
    assert len(after) > len(before)
    final = "sources/web/04-exact_dedup"
    assert output_digest(out / final) == output_digest(reference / final)


@pytest.mark.parametrize("probe_every", [0.1])
def test_embedded_ray_listens_on_loopback_only_and_has_no_dashboard(
    shared_data: Path, tmp_path: Path, probe_every: float
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(web_manifest(shared_data, tmp_path / "out")))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen(
        [*LLAMIX, "run", str(path), "--workers", "1", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    listening: dict[str, set[str]] = {}
    try:
        while driver.poll() is None:
            root = psutil.Process(driver.pid)
            for proc in [root, *root.children(recursive=True)]:
                try:
                    name = proc.name()
                    for conn in proc.net_connections(kind="inet"):
                        if conn.status == psutil.CONN_LISTEN:
                            listening.setdefault(name, set()).add(conn.laddr.ip)
                except psutil.Error:
                    continue
            time.sleep(probe_every)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
    assert driver.returncode == 0
    assert {"gcs_server", "raylet"} <= set(listening), f"saw only {sorted(listening)}"
    addresses = set().union(*listening.values())
    loopback = {a for a in addresses if a.startswith(("127.", "::ffff:127.")) or a == "::1"}
    assert addresses == loopback, f"Ray listened beyond loopback: {listening}"
    assert not any("dashboard" in name.lower() for name in listening)
