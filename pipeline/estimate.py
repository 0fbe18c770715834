"""`llamix estimate`: the whole run of a manifest on paper, before renting a cluster.

Data processing is priced from the per-core throughput the benchmarks measured
(`benchmarks/results/throughput.json`, built from the other result files by
`collect_throughput`); training from the trainer's own FLOPs per token
(`Llama.num_flops_per_token`) at an assumed MFU. Nothing reads the manifest's inputs.

Assumptions, each printed with the table:
- A source's size is what `--input-tb` says, else its disk size in LLaMA Table 1 (the
  data *after* processing, so the processing hours are a lower bound: raw Common Crawl WET
  of five dumps is several times larger). Every step of a source processes that size.
- Steps pack perfectly on the cluster's cores: wall hours = core-hours / cores.
- A step without a benchmark of at least 1 MB runs at `DEFAULT_MB_PER_S` per core and is
  flagged `unmeasured`; its memory is the engine's measured per-process peak.
- Each step writes Parquet (zstd) of about `PARQUET_RATIO` of its text; token shards are
  uint16, 2 bytes a token, at the benchmarked bytes per token.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.manifest import Run, load_manifest
from stages.base import register_command

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT = ROOT / "benchmarks" / "results" / "throughput.json"

# LLaMA Table 1, "Disk size" column, in GB.
PAPER_SOURCE_GB = {
    "commoncrawl": 3300.0,
    "c4": 783.0,
    "github": 328.0,
    "wikipedia": 83.0,
    "books": 85.0,
    "arxiv": 92.0,
    "stackexchange": 78.0,
}
# Dense bf16 tensor-core peak per GPU (NVIDIA data sheets, without sparsity).
GPU_PEAK_FLOPS = {"a100": 312e12, "h100": 989e12, "h200": 989e12}
# LLaMA Table 15: GPU-hours on A100-80GB, and §2.4/Table 1 tokens trained on.
PAPER_TRAINING = {
    "llama-7b": (82_432, 1.0e12),
    "llama-13b": (135_168, 1.0e12),
    "llama-33b": (530_432, 1.4e12),
    "llama-65b": (1_022_362, 1.4e12),
}
PAPER_GPU = "a100"
DEFAULT_MB_PER_S = 2.0  # per core; slower than every measured stage but perplexity's 6
PARQUET_RATIO = 0.35  # zstd Parquet bytes per byte of text
TOKEN_BYTES = 2  # uint16 token ids: the vocabulary fits
MIN_BENCH_MB = 1.0  # below this a benchmark measures task overhead, not throughput


@dataclass(frozen=True)
class Cluster:
    nodes: int
    cpus: int  # per node
    gpus: int  # per node
    gpu: str

    @property
    def cores(self) -> int:
        return self.nodes * self.cpus

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus


def parse_cluster(text: str) -> Cluster:
    """`nodes=64,cpus=64,gpus=8,gpu=h100`; omitted keys keep these defaults."""
    values: dict[str, Any] = {"nodes": 1, "cpus": 64, "gpus": 8, "gpu": "a100"}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in values:
            raise ValueError(f"--cluster: {item!r} is not one of nodes=, cpus=, gpus=, gpu=")
        if key == "gpu":
            if value.lower() not in GPU_PEAK_FLOPS:
                raise ValueError(f"--cluster: gpu must be one of {', '.join(GPU_PEAK_FLOPS)}")
            values[key] = value.lower()
        elif not value.isdigit() or int(value) < 1:
            raise ValueError(f"--cluster: {key} must be a positive integer, not {value!r}")
        else:
            values[key] = int(value)
    return Cluster(**values)


def collect_throughput(results: Path) -> dict[str, Any]:
    """Per-core MB/s and peak memory per component, from the benchmark result files.

    ccnet.json runs each CCNet/C4 stage on one core (the slowest variant of a stage
    counts); engine.json's 1-worker run is JSONL read + lines_normalize + Parquet write and
    gives every step's baseline memory; minhash.json's verified run is divided by its
    workers; sources.json rows count only from `MIN_BENCH_MB`; tokenize.json gives the
    encoder's MB/s and the bytes per token.
    """
    components: dict[str, dict[str, Any]] = {}

    def add(name: str, mb_per_s: float, rss: float | None, origin: str) -> None:
        old = components.get(name)
        if old is None or mb_per_s < old["mb_per_s_per_core"]:
            components[name] = {
                "mb_per_s_per_core": round(mb_per_s, 3),
                "peak_rss_mb": None if rss is None else round(rss),
                "measured_by": origin,
            }

    ccnet = _load(results / "ccnet.json")
    for row in ccnet.get("rows", []):
        add(row["stage"].split()[0], row["mb_per_s"], None, f"ccnet.json: {row['stage']}")
    engine = _load(results / "engine.json")
    single = next(r for r in engine["engine"] if r["workers"] == 1)
    for name in ("jsonl", "lines_normalize"):
        add(name, single["mb_per_s"], single["peak_rss_process_mb"], "engine.json: 1 worker")
    minhash = _load(results / "minhash.json")
    verified = minhash["llamix"]["verify"]
    rss = max(p["peak_rss_mb_max"] for p in verified["phases"].values())
    mb_per_s = minhash["corpus_mb"] / (verified["total_seconds"] * minhash["workers"])
    add("minhash_dedup", mb_per_s, rss, f"minhash.json: verify, {minhash['workers']} workers")
    sources = _load(results / "sources.json")
    for source, rows in sources.get("sources", {}).items():
        for row in rows:
            if row["mb_in"] >= MIN_BENCH_MB:
                name = row["component"].removeprefix("reader ")
                add(name, row["mb_per_s"], sources.get("peak_rss_mb"), f"sources.json: {source}")
    tokenize = _load(results / "tokenize.json")
    bytes_per_token = tokenize["compression"]["llamix_bytes_per_token"]
    encoder = next(v for k, v in tokenize["encoders"].items() if k.startswith("llamix"))
    add("tokenize", encoder["tokens_per_s"] * bytes_per_token / 1e6, None, "tokenize.json")
    return {
        "about": "MB/s per core and peak RSS per task; built by pipeline.estimate."
        "collect_throughput from the other files here; read by `llamix estimate`",
        "bytes_per_token": bytes_per_token,
        "baseline_peak_rss_mb": round(single["peak_rss_process_mb"]),
        "components": dict(sorted(components.items())),
    }


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass(frozen=True)
class StepEstimate:
    source: str
    step: str
    mb: float
    mb_per_s_per_core: float
    measured: bool
    peak_rss_mb: float

    @property
    def core_hours(self) -> float:
        return self.mb / self.mb_per_s_per_core / 3600


@dataclass(frozen=True)
class TrainingEstimate:
    preset: str
    flops_per_token: int
    tokens: int
    gpus: int
    gpu: str
    mfu: float

    @property
    def total_flops(self) -> float:
        return self.flops_per_token * self.tokens

    @property
    def tokens_per_gpu_s(self) -> float:
        return GPU_PEAK_FLOPS[self.gpu] * self.mfu / self.flops_per_token

    @property
    def gpu_hours(self) -> float:
        return self.tokens / self.tokens_per_gpu_s / 3600

    @property
    def days(self) -> float:
        return self.gpu_hours / self.gpus / 24


def flops_per_token(preset: str, seq_len: int, vocab_size: int | None = None) -> int:
    """The trainer's count (6·N + attention), from the model built on the meta device."""
    import torch

    from model.config import preset as model_preset
    from model.llama import Llama

    config = model_preset(preset)
    if vocab_size is not None:
        config = dataclasses.replace(config, vocab_size=vocab_size)
    with torch.device("meta"):
        return Llama(config).num_flops_per_token(seq_len)


def implied_mfu(preset: str, seq_len: int = 2048) -> float:
    """MFU on A100s of the paper's reported run (65B: 380 tokens/s/GPU), by our FLOP count."""
    gpu_hours, tokens = PAPER_TRAINING[preset]
    tokens_per_gpu_s = tokens / (gpu_hours * 3600)
    return tokens_per_gpu_s * flops_per_token(preset, seq_len) / GPU_PEAK_FLOPS[PAPER_GPU]


def estimate_steps(
    run: Run, sizes_mb: dict[str, float], throughput: dict[str, Any]
) -> list[StepEstimate]:
    """One row per (source, step), the tokenizer's encoding included."""
    known = throughput["components"]
    baseline = throughput["baseline_peak_rss_mb"]
    rows = []
    for name, source in run.sources.items():
        for component in (source.reader, *source.stages, "tokenize"):
            step = component if isinstance(component, str) else component.name
            measured = known.get(step)
            rows.append(
                StepEstimate(
                    source=name,
                    step=step,
                    mb=sizes_mb[name],
                    mb_per_s_per_core=measured["mb_per_s_per_core"]
                    if measured
                    else DEFAULT_MB_PER_S,
                    measured=measured is not None,
                    peak_rss_mb=(measured or {}).get("peak_rss_mb") or baseline,
                )
            )
    return rows


def estimate_training(run: Run, cluster: Cluster, mfu: float) -> TrainingEstimate | None:
    train = run.manifest.train
    if train is None:
        return None
    vocab = train.vocab_size or (
        run.manifest.tokenizer.vocab_size if run.manifest.tokenizer else None
    )
    return TrainingEstimate(
        preset=train.preset,
        flops_per_token=flops_per_token(train.preset, train.seq_len, vocab),
        tokens=train.steps * train.batch_tokens,
        gpus=cluster.total_gpus,
        gpu=cluster.gpu,
        mfu=mfu,
    )


def source_sizes_mb(run: Run, given_tb: dict[str, float]) -> dict[str, float]:
    sizes = {}
    for name in run.sources:
        if name in given_tb:
            sizes[name] = given_tb[name] * 1e6
        elif name in PAPER_SOURCE_GB:
            sizes[name] = PAPER_SOURCE_GB[name] * 1e3
        else:
            raise ValueError(f"no size for source {name!r}: pass --input-tb {name}=TB")
    return sizes


def render(
    run: Run,
    cluster: Cluster,
    steps: list[StepEstimate],
    training: TrainingEstimate | None,
    throughput: dict[str, Any],
) -> str:
    lines = [
        f"estimate for {run.path} on {cluster.nodes} nodes x {cluster.cpus} cores "
        f"({cluster.cores} cores), {cluster.gpus} x {cluster.gpu.upper()} per node",
        "",
        f"{'step':<42} {'input GB':>9} {'MB/s/core':>10} {'core-h':>10} {'wall h':>8} "
        f"{'peak MB/task':>12}",
    ]
    for s in steps:
        flag = "" if s.measured else "  unmeasured"
        lines.append(
            f"{s.source + '/' + s.step:<42} {s.mb / 1e3:>9,.0f} {s.mb_per_s_per_core:>10.2f} "
            f"{s.core_hours:>10,.0f} {s.core_hours / cluster.cores:>8.2f} "
            f"{s.peak_rss_mb:>12,.0f}{flag}"
        )
    core_hours = sum(s.core_hours for s in steps)
    lines.append(
        f"{'data processing, all steps':<42} {'':>9} {'':>10} {core_hours:>10,.0f} "
        f"{core_hours / cluster.cores:>8.2f} {max(s.peak_rss_mb for s in steps):>12,.0f}"
    )

    bytes_per_token = throughput["bytes_per_token"]
    sizes = {s.source: s.mb for s in steps}
    step_counts = {name: sum(s.source == name for s in steps) - 1 for name in sizes}
    input_tb = sum(sizes.values()) / 1e6
    parquet_tb = sum(PARQUET_RATIO * mb * step_counts[n] for n, mb in sizes.items()) / 1e6
    tokens = {n: mb * 1e6 / bytes_per_token for n, mb in sizes.items()}
    token_tb = sum(tokens.values()) * TOKEN_BYTES / 1e12
    lines += [
        "",
        f"storage: input {input_tb:,.2f} TB; intermediate Parquet {parquet_tb:,.2f} TB "
        f"({PARQUET_RATIO} x text per step); token shards {token_tb:,.2f} TB "
        f"({sum(tokens.values()) / 1e9:,.0f}B tokens at {bytes_per_token} bytes/token, "
        f"{TOKEN_BYTES} bytes each)",
    ]

    if training is not None:
        lines += [
            "",
            f"{'source':<16} {'tokens (B)':>11} {'trained (B)':>12} {'epochs':>7} {'manifest':>9}",
        ]
        for name, mix in run.manifest.mixture.items():
            need = mix.weight * training.tokens
            lines.append(
                f"{name:<16} {tokens[name] / 1e9:>11,.1f} {need / 1e9:>12,.1f} "
                f"{need / tokens[name]:>7.2f} {mix.epochs:>9.2f}"
            )
        t = training
        lines += [
            "",
            f"training {t.preset}: {t.tokens / 1e12:.3f}T tokens x {t.flops_per_token:.3e} "
            f"FLOPs/token = {t.total_flops:.3e} FLOPs",
            f"  at MFU {t.mfu:.3f} of {GPU_PEAK_FLOPS[t.gpu] / 1e12:.0f} TFLOP/s "
            f"({t.gpu.upper()} bf16): {t.tokens_per_gpu_s:,.0f} tokens/s/GPU",
            f"  {t.gpu_hours:,.0f} GPU-hours = {t.gpu_hours / 24:,.0f} GPU-days; "
            f"{t.days:,.1f} days on {t.gpus:,} GPUs",
        ]
        if t.preset in PAPER_TRAINING:
            paper_hours, paper_tokens = PAPER_TRAINING[t.preset]
            paper_rate = paper_tokens / (paper_hours * 3600)
            lines.append(
                f"  paper: {paper_hours:,} GPU-hours on A100-80GB for "
                f"{paper_tokens / 1e12:.1f}T tokens ({paper_rate:,.0f} tokens/s/GPU; "
                f"{paper_hours / 24:,.0f} GPU-days, {paper_hours / 2048 / 24:.1f} days on 2,048): "
                f"implied MFU "
                f"{implied_mfu(t.preset, run.manifest.train.seq_len):.3f}"
            )
    lines += [
        "",
        "assumptions: source sizes are --input-tb or LLaMA Table 1's post-processing disk "
        "sizes (a lower bound for the raw input); every step of a source processes that "
        f"size; perfect packing on all cores; unmeasured steps at {DEFAULT_MB_PER_S} MB/s/core.",
    ]
    return "\n".join(lines)


def _size(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        size = float(value)
    except ValueError:
        size = math.nan
    if not sep or not size > 0:
        raise argparse.ArgumentTypeError(f"expected SOURCE=TB with TB > 0, not {text!r}")
    return name, size


def _mfu(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("MFU is a fraction in (0, 1]")
    return value


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest YAML (its inputs are not read)")
    parser.add_argument(
        "--cluster",
        type=parse_cluster,
        default=parse_cluster("nodes=1"),
        help="e.g. 'nodes=64,cpus=64,gpus=8,gpu=h100' (cpus and gpus per node; "
        "gpu one of a100, h100, h200)",
    )
    parser.add_argument(
        "--input-tb",
        type=_size,
        action="append",
        default=[],
        metavar="SOURCE=TB",
        help="a source's input size (repeatable); default: LLaMA Table 1's disk size",
    )
    parser.add_argument("--mfu", type=_mfu, default=0.4, help="model FLOPs utilisation")
    parser.add_argument(
        "--throughput", type=Path, default=THROUGHPUT, help="per-stage throughput JSON"
    )


@register_command(
    "estimate", "predict a manifest's hours, memory, storage and GPU-days", _configure
)
def run(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    throughput = json.loads(args.throughput.read_text())
    sizes = source_sizes_mb(manifest, dict(args.input_tb))
    steps = estimate_steps(manifest, sizes, throughput)
    training = estimate_training(manifest, args.cluster, args.mfu)
    print(render(manifest, args.cluster, steps, training, throughput))
    return 0


if __name__ == "__main__":
    # Rebuilds throughput.json after a benchmark run: python -m pipeline.estimate
    THROUGHPUT.write_text(json.dumps(collect_throughput(THROUGHPUT.parent), indent=2) + "\n")
