"""llamix on real Ray clusters started with `ray start`, the way a user runs one.

The embedded Ray of the other tests hides what a cluster exposes: the driver joins over
the network, presents the cluster's auth token, and tasks run in processes of other
nodes that read and write the same output directory. These tests start real clusters,
token authentication on, and hold their output to the embedded run's.

Nothing here uses the machine's own network address: the one-node cluster lives on
127.0.0.1, the two-node cluster on a private subnet inside network namespaces this module
creates and deletes. Every process started here leads a process group of its own that is
killed at teardown, pass or fail. `ray stop` is never used: it kills every Ray on the
machine, other people's test runs included.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import output_digest

pytestmark = pytest.mark.cluster

RAY = str(Path(sys.executable).parent / "ray")
LLAMIX = [sys.executable, "-m", "pipeline.cli"]
FINAL_STEPS = ("web/03-exact_dedup", "books/02-exact_dedup")
STARTED = "Ray runtime started."
STARTUP_TIMEOUT_S = 60
DRIVER_TIMEOUT_S = 120

# The two-node cluster's subnet exists only inside its own two namespaces.
HEAD_IP, WORKER_IP, PREFIX = "10.213.7.1", "10.213.7.2", 24
NAMESPACED_GCS_PORT = 6379  # free by construction: the namespace is new and ours alone


# --- environment -------------------------------------------------------------------------


def ray_env(home: Path, token: str | None, **extra: str) -> dict[str, str]:
    """The environment of a node or driver: nothing Ray-related inherited, HOME empty.

    An empty HOME means no `~/.ray/auth_token` is found by accident: the token, when
    given, comes from `RAY_AUTH_TOKEN` alone. Usage stats stay off (no network calls
    beyond the cluster), and a SIGTERMed node stops at once instead of draining for 30 s.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAY_") and k not in ("LLAMIX_NODE_IP", "HOME")
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
    )
    if token is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    env.update(extra)
    return env


def loopback_env(home: Path, token: str | None, **extra: str) -> dict[str, str]:
    """Keeps a `ray start` node on 127.0.0.1 wherever it would look up the machine's
    address. The driver needs no such help: llamix keeps a loopback `--address` on
    loopback by itself, which the tests check by not setting this for it."""
    return ray_env(home, token, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **extra)


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes ---------------------------------------------------------------------------


def kill_group(process: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """SIGTERM the group's leader (which stops its children), then SIGKILL the group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_members(process.pid), f"processes of group {process.pid} survived SIGKILL"


def group_members(pgid: int) -> list[int]:
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                members.append(pid)
    return members


@dataclass
class Node:
    """A `ray start --block` process: it stays in the foreground and leads its group."""

    process: subprocess.Popen[bytes]
    log: Path
    temp_dir: Path

    def wait_started(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while STARTED not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None:
                pytest.fail(f"ray start exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"ray start not up after {STARTUP_TIMEOUT_S} s:\n{self.tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            kill_group(self.process)
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_node(
    args: Sequence[str], env: dict[str, str], log: Path, prefix: Sequence[str] = ()
) -> Node:
    """Starts a node with a temp dir of its own, a short name directly under /tmp.

    Ray can put two raylets in one temp dir (it numbers their sockets as it finds them
    taken), but its own dir keeps each node's logs apart, stays out of the /tmp/ray of
    other Ray runs on the machine, and goes at teardown. Short, because Ray's Unix socket
    paths inside it must stay under 107 characters.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="llamix-", dir="/tmp"))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*prefix, RAY, "start", "--block", f"--temp-dir={temp_dir}", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Node(process, log, temp_dir)


@dataclass
class DriverResult:
    returncode: int
    output: str
    sockets: set[str]  # "name laddr -> raddr" of every inet socket seen while it ran


def run_driver(
    command: Sequence[str],
    env: dict[str, str],
    log: Path,
    watch_groups: Sequence[int] = (),
) -> DriverResult:
    """Runs a driver in its own group; with `watch_groups`, samples the sockets of those
    groups' processes and of the driver's, for as long as it runs."""
    sockets: set[str] = set()
    with log.open("wb") as out:
        driver = subprocess.Popen(
            command,
            env=env,
            cwd=log.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + DRIVER_TIMEOUT_S
        while driver.poll() is None:
            if watch_groups:
                sockets |= inet_sockets([*watch_groups, driver.pid])
            if time.monotonic() > deadline:
                pytest.fail(f"driver still running after {DRIVER_TIMEOUT_S} s: {command}")
            time.sleep(0.3)
    finally:
        kill_group(driver, grace_s=5)
    return DriverResult(driver.returncode, log.read_text(errors="replace"), sockets)


def inet_sockets(pgids: Sequence[int]) -> set[str]:
    """Every bound inet socket of the processes of these groups and their descendants."""
    procs: dict[int, psutil.Process] = {}
    for pid in psutil.pids():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(pid) in pgids:
                proc = psutil.Process(pid)
                for p in [proc, *proc.children(recursive=True)]:
                    procs[p.pid] = p
    found = set()
    for proc in procs.values():
        with contextlib.suppress(psutil.Error):
            name = proc.name()
            for conn in proc.net_connections(kind="inet"):
                if not conn.laddr or conn.laddr.port == 0:
                    continue
                remote = f"{conn.raddr.ip}:{conn.raddr.port}" if conn.raddr else "*"
                found.add(f"{name} {conn.laddr.ip}:{conn.laddr.port} -> {remote}")
    return found


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def off_loopback(sockets: set[str]) -> set[str]:
    """The sockets whose local or remote address is not loopback."""
    bad = set()
    for entry in sockets:
        _, local, _, remote = entry.split(" ")
        ips = [local.rsplit(":", 1)[0]] + ([remote.rsplit(":", 1)[0]] if remote != "*" else [])
        if not all(is_loopback(ip) for ip in ips):
            bad.add(entry)
    return bad


# --- outputs -----------------------------------------------------------------------------


def final_digests(out: Path) -> dict[str, str]:
    digests = {}
    for step in FINAL_STEPS:
        step_dir = out / "sources" / step
        assert list(step_dir.glob("part-*.parquet")), f"{step_dir} holds no output"
        digests[step] = output_digest(step_dir)
    return digests


def node_ips(out: Path) -> Counter[str]:
    """How many tasks ran on each Ray node, from the completion records."""
    records = (out / "sources").rglob("_done/*.json")
    return Counter(json.loads(path.read_text())["node_ip"] for path in records)


def llamix_run(manifest: Path, out: Path, *args: str) -> list[str]:
    return [*LLAMIX, "run", str(manifest), "--out", str(out), "--quiet", *args]


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def manifest(shared_data: Path, workdir: Path) -> Path:
    """Two sources: 154 web pages (154 shards a step, plenty to spread) and one book."""
    path = workdir / "m.yaml"
    sources = {
        "web": {
            "reader": "text",
            "inputs": [str(shared_data / "web" / "html" / "*.html")],
            "stages": [
                {"stage": "length_filter", "min_chars": 200},
                {"stage": "lines_normalize"},
                {"stage": "exact_dedup"},
            ],
        },
        "books": {
            "reader": "text",
            "inputs": [str(shared_data / "books")],
            "stages": [{"stage": "lines_normalize"}, {"stage": "exact_dedup"}],
        },
    }
    path.write_text(yaml.safe_dump({"output": "out", "sources": sources}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def embedded_digests(manifest: Path, workdir: Path) -> dict[str, str]:
    """The reference: the same manifest on an embedded Ray with two workers."""
    out = workdir / "embedded"
    env = ray_env(workdir / "home-embedded", token=None)
    result = run_driver(llamix_run(manifest, out, "--workers", "2"), env, workdir / "embedded.log")
    assert result.returncode == 0, result.output
    return final_digests(out)


@pytest.fixture(scope="module")
def token() -> str:
    """A fresh cluster token, made as `ray get-auth-token --generate` makes one."""
    return secrets.token_hex(32)


@dataclass
class LoopbackCluster:
    address: str
    node: Node


@pytest.fixture(scope="module")
def loopback_cluster(workdir: Path, token: str) -> Iterator[LoopbackCluster]:
    """One `ray start --head` node on 127.0.0.1, token auth on, stopped at teardown."""
    port = free_loopback_port()
    node = start_node(
        [
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--include-dashboard=false",
            "--num-cpus=2",
        ],
        loopback_env(workdir / "home", token),
        workdir / "loopback-head.log",
    )
    try:
        node.wait_started()
        yield LoopbackCluster(f"127.0.0.1:{port}", node)
    finally:
        node.stop()


@dataclass
class Namespaces:
    head: str
    worker: str


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


def delete_namespace(name: str) -> None:
    """Kills what still runs in the namespace (only ours: its name is ours), deletes it."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in pids.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "delete", name)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    """Two network namespaces joined by a veth pair, HEAD_IP and WORKER_IP on its ends.

    Deleted at teardown, pass or fail: deleting a namespace deletes its end of the veth
    pair, and with it the other end. Skipped only where namespaces cannot be made.
    """
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (`ip netns add`)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed")
    suffix = secrets.token_hex(3)
    ns = Namespaces(head=f"llamix-h-{suffix}", worker=f"llamix-w-{suffix}")
    with contextlib.ExitStack() as cleanup:
        added = subprocess.run(["ip", "netns", "add", ns.head], capture_output=True, text=True)
        if added.returncode != 0:
            pytest.skip(f"`ip netns add` failed: {added.stderr.strip()}")
        cleanup.callback(delete_namespace, ns.head)
        ip("netns", "add", ns.worker)
        cleanup.callback(delete_namespace, ns.worker)
        head_end, worker_end = f"lxh{suffix}", f"lxw{suffix}"  # interface names: 15 chars
        ip("-n", ns.head, "link", "add", head_end, "type", "veth", "peer", "name", worker_end)
        ip("-n", ns.head, "link", "set", worker_end, "netns", ns.worker)
        for name, end, address in (
            (ns.head, head_end, HEAD_IP),
            (ns.worker, worker_end, WORKER_IP),
        ):
            ip("-n", name, "addr", "add", f"{address}/{PREFIX}", "dev", end)
            ip("-n", name, "link", "set", end, "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield ns


@dataclass
class TwoNodeCluster:
    address: str
    env: dict[str, str]  # for the driver: the nodes' token
    in_head: list[str]  # runs a command in the head's namespace
    worker: Node


@pytest.fixture
def two_node_cluster(
    namespaces: Namespaces, tmp_path: Path, token: str
) -> Iterator[TwoNodeCluster]:
    """A head in one namespace, a worker node in the other, one CPU each, token auth on.

    Both stop at teardown, pass or fail, before their namespaces go.
    """
    env = ray_env(tmp_path / "home", token)
    in_head = ["ip", "netns", "exec", namespaces.head]
    address = f"{HEAD_IP}:{NAMESPACED_GCS_PORT}"
    with contextlib.ExitStack() as cleanup:
        head = start_node(
            [
                "--head",
                f"--node-ip-address={HEAD_IP}",
                f"--port={NAMESPACED_GCS_PORT}",
                "--include-dashboard=false",
                "--num-cpus=1",
            ],
            env,
            tmp_path / "head.log",
            prefix=in_head,
        )
        cleanup.callback(head.stop)
        head.wait_started()
        worker = start_node(
            [f"--address={address}", f"--node-ip-address={WORKER_IP}", "--num-cpus=1"],
            env,
            tmp_path / "worker.log",
            prefix=["ip", "netns", "exec", namespaces.worker],
        )
        cleanup.callback(worker.stop)
        worker.wait_started()
        yield TwoNodeCluster(address, env, in_head, worker)


# --- tests -------------------------------------------------------------------------------


def test_single_node_cluster_on_loopback_matches_the_embedded_run(
    loopback_cluster: LoopbackCluster,
    manifest: Path,
    embedded_digests: dict[str, str],
    workdir: Path,
    token: str,
) -> None:
    """`llamix run --address` joins a `ray start` cluster and writes what an embedded run
    writes. While it runs, no socket of the cluster or the driver leaves loopback: on Linux
    Ray otherwise advertises, and listens on, the machine's network address."""
    out = workdir / "loopback"
    result = run_driver(
        llamix_run(manifest, out, "--address", loopback_cluster.address, "--workers", "2"),
        ray_env(workdir / "home", token),
        workdir / "loopback-driver.log",
        watch_groups=[loopback_cluster.node.process.pid],
    )

    assert result.returncode == 0, result.output
    assert final_digests(out) == embedded_digests
    assert set(node_ips(out)) == {"127.0.0.1"}
    assert {"gcs_server", "raylet"} <= {s.split(" ")[0] for s in result.sockets}, result.sockets
    assert not off_loopback(result.sockets), sorted(off_loopback(result.sockets))


@pytest.mark.parametrize("presented", ["no token", "another token"])
def test_loopback_cluster_refuses_a_driver_without_its_token(
    loopback_cluster: LoopbackCluster, manifest: Path, tmp_path: Path, presented: str
) -> None:
    """Token auth stays on: a driver that presents no token, or another cluster's, is
    refused before any task runs. (Two connection attempts, not Ray's twenty.)"""
    token = None if presented == "no token" else secrets.token_hex(32)
    env = ray_env(tmp_path / "home", token, RAY_NUM_REDIS_GET_RETRIES="2")
    out = tmp_path / "out"
    result = run_driver(
        llamix_run(manifest, out, "--address", loopback_cluster.address),
        env,
        tmp_path / "driver.log",
    )

    assert result.returncode != 0
    assert "InvalidAuthToken" in result.output, result.output
    assert not (out / "sources").exists()


def test_two_node_cluster_spreads_tasks_over_both_nodes_and_matches_the_embedded_run(
    two_node_cluster: TwoNodeCluster,
    manifest: Path,
    embedded_digests: dict[str, str],
    tmp_path: Path,
) -> None:
    """Tasks run on a second node, in processes that share only the filesystem with the
    driver, and the output is still the embedded run's. One CPU a node and four tasks in
    flight make the head's raylet spill work over to the worker node."""
    cluster = two_node_cluster
    out = tmp_path / "out"
    result = run_driver(
        [
            *cluster.in_head,
            *llamix_run(manifest, out, "--address", cluster.address, "--workers", "4"),
        ],
        cluster.env,
        tmp_path / "driver.log",
    )

    assert result.returncode == 0, f"{result.output}\n--- worker node:\n{cluster.worker.tail()}"
    tasks_by_node = node_ips(out)
    assert set(tasks_by_node) == {HEAD_IP, WORKER_IP}, tasks_by_node
    assert final_digests(out) == embedded_digests
