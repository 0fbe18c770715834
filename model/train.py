"""`llamix train MANIFEST`: trains a LLaMA model on the token dataset a manifest produced.

One process on a CPU or a GPU, or many under `torchrun` (`torchrun --nproc_per_node 8 -m
model.train MANIFEST`). The loop reads as its steps; each step lives in a function below:

- parallelism: DDP for small models; FSDP2 (`fully_shard` per block, then the root) with
  bf16 parameters and fp32 gradient reduction for 1B+ models on CUDA (and on request on
  CPUs, in fp32); `torch.compile` per block (on by default on CUDA); activation
  checkpointing none / selective / full;
- precision: bf16 autocast on GPU (FSDP2 casts itself), fp32 on CPU;
- batches: gradient accumulation up to the global batch in tokens; every rank reads its
  own slice of the step's windows (`model.data`), so results do not depend on the rank
  count beyond float reduction order;
- checkpoints (`torch.distributed.checkpoint`): model, optimizer, scheduler, step, tokens
  seen, data state and every rank's RNG; the last K are kept; `--resume` continues
  exactly where the latest one stopped;
- logs: `OUT/metrics.jsonl` and the console: loss, lr, grad norm, tokens/s per device,
  MFU against the device's bf16 peak, peak memory; eval loss and perplexity per source.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import resource
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from model.commands import TRAIN_FLAGS
from model.config import ADAM_BETAS, ADAM_EPS, ModelConfig, TrainConfig
from model.data import Dataset, MixtureSampler, load_dataset
from model.llama import Llama

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
CHECKPOINT_CONFIG = "config.json"  # beside each checkpoint: what resume, generate, export read
FSDP_FROM_PARAMS = 1_000_000_000  # `parallelism: auto` shards models this large

# Dense bf16 peak FLOP/s by device name; the first match wins. Unknown devices get no MFU.
PEAK_BF16_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
)


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_runtime() -> Runtime:
    """Joins the process group when torchrun started us (NCCL on GPUs, gloo on CPUs)."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else None
    if device is not None:
        torch.cuda.set_device(device)
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if not dist.is_initialized():
        return Runtime(0, 1, device or torch.device("cpu"))
    return Runtime(dist.get_rank(), dist.get_world_size(), device or torch.device("cpu"))


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


# ---------------------------------------------------------------------------------------
# The model on its devices
# ---------------------------------------------------------------------------------------

# Selective checkpointing keeps what is costly to recompute (matmuls, attention) and
# recomputes the element-wise rest (norms, RoPE, SwiGLU gating): Korthikanti et al. 2022.
_aten = torch.ops.aten
_SAVED_OPS = {
    _aten.mm.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
}


def _keep_matmuls(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def choose_parallelism(config: TrainConfig, rt: Runtime, params: int) -> str:
    """single (one process, no wrapper), ddp or fsdp."""
    if not dist.is_initialized():
        if config.parallelism == "fsdp":
            raise ValueError("parallelism fsdp runs under torchrun")
        return "single"
    if config.parallelism == "auto":
        return "fsdp" if rt.device.type == "cuda" and params >= FSDP_FROM_PARAMS else "ddp"
    return config.parallelism


def build_model(
    model_config: ModelConfig, config: TrainConfig, rt: Runtime
) -> tuple[nn.Module, Llama, str]:
    """(the module to call, the Llama inside it, the parallelism): built on `meta`, wrapped
    for checkpointing, compile and sharding as torchtitan orders them, then materialised
    and initialised from the seed on the training device."""
    with torch.device("meta"):
        model = Llama(model_config)
    strategy = choose_parallelism(config, rt, sum(p.numel() for p in model.parameters()))
    compile_blocks = rt.device.type == "cuda" if config.compile is None else config.compile
    for i, block in enumerate(model.layers):
        if config.activation_checkpointing != "none":
            context = (
                {"context_fn": partial(create_selective_checkpoint_contexts, _keep_matmuls)}
                if config.activation_checkpointing == "selective"
                else {}
            )
            block = checkpoint_wrapper(block, preserve_rng_state=False, **context)
        if compile_blocks:
            block = torch.compile(block, fullgraph=True)
        model.layers[i] = block
    if strategy == "fsdp":
        # bf16 compute with fp32 gradient reduction on GPUs; CPUs (tests) stay in fp32.
        low = torch.bfloat16 if rt.device.type == "cuda" else None
        policy = MixedPrecisionPolicy(param_dtype=low, reduce_dtype=torch.float32)
        for i, block in enumerate(model.layers):
            # The last block's parameters are needed again at once by the backward pass.
            fully_shard(block, mp_policy=policy, reshard_after_forward=i < len(model.layers) - 1)
        fully_shard(model, mp_policy=policy)
    model.to_empty(device=rt.device)
    torch.manual_seed(config.seed)
    model.init_weights()
    if strategy == "ddp":
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        return (
            DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False),
            model,
            strategy,
        )
    return model, model, strategy


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW (§2.3); weight decay only on matrices, never on norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.peak_lr, betas=ADAM_BETAS, eps=ADAM_EPS)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warmup to the peak, then a cosine down to `min_lr_ratio` of it at the last step."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine


def batch_shape(config: TrainConfig, world: int) -> tuple[int, int]:
    """(global batch in sequences, accumulation steps): the tokens asked for, rounded to a
    whole number of micro-batches on every rank."""
    per_pass = config.micro_batch * world
    accumulation = max(1, round(config.batch_tokens / (config.seq_len * per_pass)))
    return accumulation * per_pass, accumulation


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints (their config.json is written last), oldest first."""
    found = (out / CHECKPOINTS).glob(f"step-*/{CHECKPOINT_CONFIG}")
    return sorted(p.parent for p in found if p.parent.name.removeprefix("step-").isdigit())


def latest_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or the latest one in a training output directory."""
    path = Path(path)
    if (path / CHECKPOINT_CONFIG).is_file():
        return path
    found = checkpoints(path) or checkpoints(path.parent)
    if not found:
        raise FileNotFoundError(
            f"no checkpoint at {path}: pass a step-* directory or a train --out"
        )
    return found[-1]


def read_checkpoint_config(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / CHECKPOINT_CONFIG).read_text())


@contextlib.contextmanager
def quiet_single_process() -> Iterator[None]:
    """DCP warns on every single-process save and load, which is how we mean to use it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled")
        yield


def _rng_states(rt: Runtime) -> list[dict[str, Tensor | None]]:
    mine = {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(rt.device) if rt.device.type == "cuda" else None,
    }
    if not dist.is_initialized():
        return [mine]
    states: list[Any] = [None] * rt.world
    dist.all_gather_object(states, mine)
    return states


def save_checkpoint(
    out: Path,
    run: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: MixtureSampler,
    rt: Runtime,
    keep_last: int,
) -> Path:
    """Writes `step-NNNNNNNN` under a temporary name, renames it when complete, prunes."""
    final = out / CHECKPOINTS / f"step-{run['step']:08d}"
    partial_dir = final.with_name(final.name + ".partial")
    if rt.main:
        shutil.rmtree(partial_dir, ignore_errors=True)
        partial_dir.mkdir(parents=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    train_state = {
        "step": run["step"],
        "tokens": run["tokens"],
        "scheduler": scheduler.state_dict(),
        "data": sampler.state_dict(),
        "rng": _rng_states(rt),
    }
    blob = io.BytesIO()
    torch.save(train_state, blob)
    blob.seek(0)
    state = {"model": model_state, "optim": optim_state, "train": blob}
    with quiet_single_process():
        dcp.save(state, checkpoint_id=partial_dir, no_dist=not dist.is_initialized())
    if rt.main:
        (partial_dir / CHECKPOINT_CONFIG).write_text(json.dumps(run, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        partial_dir.rename(final)
        for old in checkpoints(out)[:-keep_last]:
            shutil.rmtree(old)
    _barrier()
    return final


def load_checkpoint(
    checkpoint: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: MixtureSampler,
    rt: Runtime,
) -> dict[str, Any]:
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state, "train": io.BytesIO()}
    with quiet_single_process():
        dcp.load(state, checkpoint_id=checkpoint, no_dist=not dist.is_initialized())
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )
    state["train"].seek(0)
    train_state = torch.load(state["train"], weights_only=False)
    scheduler.load_state_dict(train_state["scheduler"])
    sampler.load_state_dict(train_state["data"])
    rng = train_state["rng"]
    if len(rng) == rt.world:  # with another rank count, the data is exact but RNG is not
        torch.set_rng_state(rng[rt.rank]["cpu"])
        if rng[rt.rank]["cuda"] is not None and rt.device.type == "cuda":
            torch.cuda.set_rng_state(rng[rt.rank]["cuda"], rt.device)
    return train_state


def check_same_run(saved: dict[str, Any], run: dict[str, Any], checkpoint: Path) -> None:
    """A checkpoint continues only the run that wrote it: same model, seed and batches."""
    problems = [
        f"model.{k}: {saved['model'].get(k)!r} there, {v!r} here"
        for k, v in run["model"].items()
        if saved["model"].get(k) != v
    ]
    for key in ("seed", "seq_len"):
        if saved["train"][key] != run["train"][key]:
            problems.append(
                f"train.{key}: {saved['train'][key]!r} there, {run['train'][key]!r} here"
            )
    if saved["global_batch"] != run["global_batch"]:
        problems.append(
            f"global batch: {saved['global_batch']} sequences there, {run['global_batch']} here"
        )
    if problems:
        raise ValueError(
            f"checkpoint {checkpoint} is from another configuration ({'; '.join(problems)}): "
            "train with its settings, or start afresh in another --out"
        )


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    dataset_dir: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    until: int | None = None,
) -> Path | None:
    """Trains to step `until` (default: `config.steps`; the schedule always spans
    `config.steps`); returns the last checkpoint (None when checkpoints are off)."""
    if until is not None and until < 1:
        raise ValueError(f"--until must be at least 1, got {until}")
    rt = init_runtime()
    try:
        return _train(config, load_dataset(dataset_dir), Path(out), rt, resume, until)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(
    config: TrainConfig,
    dataset: Dataset,
    out: Path,
    rt: Runtime,
    resume: bool,
    until: int | None,
) -> Path | None:
    model_config = config.model_config()
    if dataset.tokenizer.vocab_size > model_config.vocab_size:
        raise ValueError(
            f"the dataset's tokenizer has {dataset.tokenizer.vocab_size} pieces but preset "
            f"{config.preset} embeds {model_config.vocab_size}: pass --vocab-size "
            f"{dataset.tokenizer.vocab_size} (or more), or tokenize with a smaller vocabulary"
        )
    found = checkpoints(out)
    if found and not resume:
        raise ValueError(
            f"{out} holds checkpoints of an earlier run: pass --resume to continue it, "
            "or choose another --out"
        )
    global_batch, accumulation = batch_shape(config, rt.world)
    sampler = MixtureSampler(
        dataset,
        config.seq_len,
        global_batch,
        seed=config.seed,
        rank=rt.rank,
        world=rt.world,
        eval_windows=config.eval_windows,
    )
    module, model, strategy = build_model(model_config, config, rt)
    optimizer = build_optimizer(module, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, config=config))
    run: dict[str, Any] = {
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(config),
        "global_batch": global_batch,
        "dataset": {
            "root": str(dataset.root.resolve()),
            "manifest_hash": dataset.manifest_hash,
            "tokenizer": {
                **dataclasses.asdict(dataset.tokenizer),
                "model": str(dataset.tokenizer.model.resolve()),
            },
        },
        "step": 0,
        "tokens": 0,
    }
    if found:
        check_same_run(read_checkpoint_config(found[-1]), run, found[-1])
        state = load_checkpoint(found[-1], module, optimizer, scheduler, sampler, rt)
        run.update(step=state["step"], tokens=state["tokens"])
    metrics = out / METRICS
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
        _keep_metrics_until(metrics, run["step"])
    stop = min(until or config.steps, config.steps)
    tokens_per_step = global_batch * config.seq_len
    params = sum(p.numel() for p in model.parameters())
    _say(
        rt,
        f"training {config.preset}: {params / 1e6:.1f}M parameters, {strategy} on "
        f"{rt.world} x {rt.device.type}; global batch {global_batch} x {config.seq_len} = "
        f"{tokens_per_step:,} tokens ({accumulation} accumulation steps of {config.micro_batch} "
        f"per rank); steps {run['step']} -> {stop} of {config.steps}",
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if rt.device.type == "cuda" and strategy != "fsdp"
        else contextlib.nullcontext()
    )
    meter = Meter(rt, tokens_per_step, model.num_flops_per_token(config.seq_len))
    last_checkpoint = found[-1] if found else None
    while run["step"] < stop:
        windows = _to_device(sampler.next_batch(), rt.device)
        loss, grad_norm, lr = train_step(
            module, optimizer, scheduler, windows, config, accumulation, strategy, autocast
        )
        run["step"] += 1
        run["tokens"] += tokens_per_step
        meter.add(loss)
        step = run["step"]
        if step % config.log_every == 0 or step == stop:
            _log(rt, metrics, meter.record(step, lr, grad_norm, run["tokens"]))
        paused = time.perf_counter()
        due = (config.eval_every and step % config.eval_every == 0) or step == config.steps
        if config.eval_windows and due:
            losses = evaluate(module, sampler, config, rt, autocast)
            _log(rt, metrics, _eval_record(step, losses, sampler))
        if config.checkpoint_every and (step % config.checkpoint_every == 0 or step == stop):
            last_checkpoint = save_checkpoint(
                out, run, module, optimizer, scheduler, sampler, rt, config.keep_last
            )
        meter.pause(time.perf_counter() - paused)  # eval and checkpoints are not training time
    return last_checkpoint


def train_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    windows: Tensor,
    config: TrainConfig,
    accumulation: int,
    strategy: str,
    autocast: contextlib.AbstractContextManager,
) -> tuple[Tensor, Tensor, float]:
    """One optimizer step over this rank's windows, in micro-batches: (mean loss on this
    rank, global grad norm before clipping, learning rate used)."""
    step_loss = torch.zeros((), device=windows.device)
    for micro in range(accumulation):
        chunk = windows[micro * config.micro_batch : (micro + 1) * config.micro_batch]
        with _grad_sync(module, strategy, micro == accumulation - 1), autocast:
            logits = module(chunk[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), chunk[:, 1:].flatten())
            (loss / accumulation).backward()
        step_loss += loss.detach() / accumulation
    grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss, grad_norm, lr


class Meter:
    """Loss and throughput since the last log line; syncs the device only when it logs."""

    def __init__(self, rt: Runtime, tokens_per_step: int, flops_per_token: int) -> None:
        self.rt, self.tokens_per_step, self.flops_per_token = rt, tokens_per_step, flops_per_token
        self.peak = peak_flops(rt.device)
        self.loss = torch.zeros((), device=rt.device)
        self.steps, self.start = 0, time.perf_counter()

    def add(self, loss: Tensor) -> None:
        self.loss += loss
        self.steps += 1

    def pause(self, seconds: float) -> None:
        self.start += seconds

    def record(self, step: int, lr: float, grad_norm: Tensor, tokens: int) -> dict[str, Any]:
        loss = _mean_over_ranks(self.loss, self.rt) / self.steps
        rate = (
            self.tokens_per_step / self.rt.world * self.steps / (time.perf_counter() - self.start)
        )
        record = {
            "kind": "train",
            "step": step,
            "loss": loss,
            "lr": lr,
            "grad_norm": _full(grad_norm).item(),
            "tokens": tokens,
            "tokens_per_s_per_device": rate,
            "mfu": self.flops_per_token * rate / self.peak if self.peak else None,
            "peak_memory_gib": _peak_memory_gib(self.rt.device),
        }
        self.loss.zero_()
        self.steps, self.start = 0, time.perf_counter()
        return record


def _to_device(windows: np.ndarray, device: torch.device) -> Tensor:
    batch = torch.from_numpy(windows)
    if device.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


def _grad_sync(module: nn.Module, strategy: str, sync: bool) -> contextlib.AbstractContextManager:
    """Gradients are reduced across ranks only on the last micro-batch of a step."""
    if strategy == "ddp" and not sync:
        return module.no_sync()
    if strategy == "fsdp":
        module.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    module: nn.Module,
    sampler: MixtureSampler,
    config: TrainConfig,
    rt: Runtime,
    autocast: contextlib.AbstractContextManager,
) -> dict[str, float]:
    """Mean loss per source over its held-out windows, across all ranks."""
    losses = {}
    for index, name in enumerate(sampler.names):
        windows, weights = sampler.eval_batch(index)
        total = torch.zeros(2, device=rt.device, dtype=torch.float64)
        for start in range(0, len(windows), config.micro_batch):
            chunk = torch.from_numpy(windows[start : start + config.micro_batch]).to(rt.device)
            weight = torch.from_numpy(weights[start : start + config.micro_batch]).to(rt.device)
            with autocast:
                logits = module(chunk[:, :-1])
            per_window = F.cross_entropy(
                logits.float().transpose(1, 2), chunk[:, 1:], reduction="none"
            ).mean(1)
            total += torch.stack([(per_window * weight).sum(), weight.sum()]).double()
        if dist.is_initialized():
            dist.all_reduce(total)
        losses[name] = (total[0] / total[1]).item()
    return losses


def _eval_record(step: int, losses: dict[str, float], sampler: MixtureSampler) -> dict[str, Any]:
    """Per-source loss and perplexity, and their mixture-weighted mean (what the training
    loss estimates)."""
    weights = np.diff(sampler.cumulative, prepend=0)
    mean = float(np.dot(weights, [losses[n] for n in sampler.names]))
    return {
        "kind": "eval",
        "step": step,
        "eval_loss": mean,
        "eval_perplexity": math.exp(mean),
        "sources": {n: {"loss": v, "perplexity": math.exp(v)} for n, v in losses.items()},
    }


def _mean_over_ranks(value: Tensor, rt: Runtime) -> float:
    value = value.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(value)
    return value.item() / rt.world


def _full(tensor: Tensor) -> Tensor:
    """The whole value of a (possibly sharded, FSDP2) tensor."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _peak_memory_gib(device: torch.device) -> float:
    """Peak allocated GPU memory; on CPU the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _log(rt: Runtime, metrics: Path, record: dict[str, Any]) -> None:
    if not rt.main:
        return
    with metrics.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    if record["kind"] == "eval":
        per_source = ", ".join(f"{n} {v['loss']:.3f}" for n, v in record["sources"].items())
        _say(
            rt,
            f"eval step {record['step']}: loss {record['eval_loss']:.4f} "
            f"(ppl {record['eval_perplexity']:.2f}; {per_source})",
        )
        return
    mfu = f"{record['mfu']:.1%}" if record["mfu"] is not None else "n/a"
    _say(
        rt,
        f"step {record['step']:>7} | loss {record['loss']:.4f} | lr {record['lr']:.2e} | "
        f"grad {record['grad_norm']:.3f} | {record['tokens_per_s_per_device']:,.0f} tok/s/dev | "
        f"MFU {mfu} | mem {record['peak_memory_gib']:.2f} GiB",
    )


def _keep_metrics_until(metrics: Path, step: int) -> None:
    """A resumed run redoes the steps after its checkpoint: their old lines go."""
    if not metrics.exists():
        return
    lines = [line for line in metrics.read_text().splitlines() if json.loads(line)["step"] <= step]
    metrics.write_text("".join(line + "\n" for line in lines))


def _say(rt: Runtime, message: str) -> None:
    if rt.main:
        print(message, flush=True)


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------


def train_command(args: argparse.Namespace) -> int:
    """`llamix train` / `python -m model.train` (arguments from model/commands.py)."""
    from pipeline.manifest import TrainSpec, load_manifest

    run = load_manifest(args.manifest)
    overrides = {name: getattr(args, name) for name in TRAIN_FLAGS}
    config = TrainConfig.from_spec(
        run.manifest.train or TrainSpec(), compile=args.compile, **overrides
    )
    dataset = args.dataset or os.path.join(run.output, "dataset")
    checkpoint = train(
        config,
        dataset,
        args.out or os.path.join(run.output, "train"),
        resume=args.resume,
        until=args.until,
    )
    if checkpoint is not None and int(os.environ.get("RANK", 0)) == 0:
        print(f"last checkpoint: {checkpoint}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m model.train` (what torchrun launches): exactly `llamix train`."""
    from pipeline.cli import main as llamix

    return llamix(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
