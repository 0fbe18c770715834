"""The trainer: the mixture sampler, learning, exact resume, DDP, checkpoints, export."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sentencepiece as spm
import torch
from safetensors.torch import load_file

from model import export_hf
from model.config import TrainConfig
from model.data import MixtureSampler, load_dataset
from model.generate import load_model
from model.train import METRICS, checkpoints, train
from pipeline.cli import main
from tokenizer.shards import TokenShardWriter

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 512
WEIGHTS = {"books": 0.6, "code": 0.3, "latex": 0.1}
# Small enough that 200 steps take seconds on one core.
TINY = {"preset": "tiny", "vocab_size": VOCAB, "seq_len": 64, "eval_windows": 4}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny model is fastest on one thread, above all on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_dataset(
    root: Path, documents: dict[str, list[list[int]]], tokenizer: bytes | None = None
) -> Path:
    """Token shards and dataset.json as the tokenize step writes them."""
    root.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        (root / "tokenizer.model").write_bytes(tokenizer)
    sources = {}
    for name, docs in documents.items():
        with TokenShardWriter(str(root / name / "part-00000"), VOCAB) as writer:
            for doc in docs:
                writer.add_document(doc)
        sources[name] = {
            "documents": len(docs),
            "tokens": sum(map(len, docs)),
            "text_bytes": 0,
            "shards": [f"{name}/part-00000"],
            "weight": WEIGHTS[name],
            "epochs": 1.0,
            "effective_proportion": WEIGHTS[name],
        }
    dataset = {
        "manifest_hash": "test",
        "tokenizer": {
            "model": "tokenizer.model",
            "sha256": hashlib.sha256(tokenizer or b"").hexdigest(),
            "vocab_size": VOCAB,
            "bos_id": 1,
            "eos_id": 2,
        },
        "dtype": "uint16",
        "sources": sources,
    }
    (root / "dataset.json").write_text(json.dumps(dataset))
    return root


@pytest.fixture(scope="module")
def random_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random token documents: for what does not depend on the text."""
    rng = np.random.default_rng(0)
    documents = {
        name: [[1, *rng.integers(3, VOCAB, rng.integers(20, 300)).tolist(), 2] for _ in range(40)]
        for name in WEIGHTS
    }
    return write_dataset(tmp_path_factory.mktemp("random"), documents)


@pytest.fixture(scope="module")
def text_dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real book, real code and real LaTeX, BPE-encoded with a tokenizer trained on them."""
    paragraphs = (shared_data / "books" / "botchan.txt").read_text().split("\n\n")
    texts = {
        "books": ["\n\n".join(paragraphs[i : i + 20]) for i in range(0, len(paragraphs), 20)],
        "code": [p.read_text() for p in sorted((shared_data / "code/repos/click").rglob("*.py"))],
        "latex": [
            p.read_text(errors="replace") for p in sorted((shared_data / "latex").glob("*/*.tex"))
        ][:20],
    }
    model = io.BytesIO()
    lines = [line for docs in texts.values() for doc in docs for line in doc.splitlines()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(line for line in lines if line.strip()),
        model_writer=model,
        vocab_size=VOCAB,
        model_type="bpe",
        byte_fallback=True,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    documents = {name: [[1, *ids, 2] for ids in sp.encode(docs)] for name, docs in texts.items()}
    return write_dataset(tmp_path_factory.mktemp("text"), documents, model.getvalue())


def read_metrics(out: Path, kind: str = "train") -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    return [r for r in records if r["kind"] == kind]


# --------------------------------------------------------------------------------------
# The sampler
# --------------------------------------------------------------------------------------


def test_sampled_source_proportions_match_the_mixture_weights(random_dataset: Path) -> None:
    sampler = MixtureSampler(load_dataset(random_dataset), 64, 100, seed=0, eval_windows=4)
    drawn = np.concatenate([sampler.plan(step, range(100))[0] for step in range(100)])
    shares = np.bincount(drawn, minlength=3) / drawn.size
    for name, share in zip(sampler.names, shares, strict=True):
        assert abs(share - WEIGHTS[name]) < 0.02


def test_ranks_read_disjoint_slices_of_the_same_global_batch(random_dataset: Path) -> None:
    dataset = load_dataset(random_dataset)
    whole = MixtureSampler(dataset, 64, 8, seed=3).batch(5)
    halves = [MixtureSampler(dataset, 64, 8, seed=3, rank=r, world=2).batch(5) for r in (0, 1)]
    np.testing.assert_array_equal(np.concatenate(halves), whole)
    assert whole.shape == (8, 65)
    assert not np.array_equal(halves[0], halves[1])


def test_windows_depend_on_seed_and_step_only(random_dataset: Path) -> None:
    dataset = load_dataset(random_dataset)
    first = MixtureSampler(dataset, 64, 4, seed=1)
    batches = [first.next_batch() for _ in range(3)]
    resumed = MixtureSampler(dataset, 64, 4, seed=1)
    resumed.load_state_dict({**first.state_dict(), "step": 2})
    np.testing.assert_array_equal(resumed.next_batch(), batches[2])
    other_seed = MixtureSampler(dataset, 64, 4, seed=2)
    assert not np.array_equal(other_seed.batch(0), batches[0])


def test_windows_are_real_stream_slices_that_avoid_the_held_out_tail(random_dataset: Path) -> None:
    sampler = MixtureSampler(load_dataset(random_dataset), 64, 50, seed=0, eval_windows=4)
    held_out = 4 * 65
    for step in range(20):
        sources, starts = sampler.plan(step, range(50))
        for source, start in zip(sources, starts, strict=True):
            assert start + 65 <= len(sampler.streams[source]) - held_out
    windows = sampler.batch(0)
    sources, starts = sampler.plan(0, range(50))
    flat = {i: np.concatenate([s.read(0, len(s))]) for i, s in enumerate(sampler.streams)}
    for window, source, start in zip(windows, sources, starts, strict=True):
        np.testing.assert_array_equal(window, flat[source][start : start + 65])


def test_eval_windows_are_the_held_out_tail_split_over_ranks(random_dataset: Path) -> None:
    dataset = load_dataset(random_dataset)
    one = MixtureSampler(dataset, 64, 4, seed=0, eval_windows=3)
    windows, weights = one.eval_batch(0)
    stream = one.streams[0]
    np.testing.assert_array_equal(windows.reshape(-1), stream.read(len(stream) - 195, len(stream)))
    assert weights.tolist() == [1, 1, 1]
    ranks = [
        MixtureSampler(dataset, 64, 4, seed=0, rank=r, world=2, eval_windows=3) for r in (0, 1)
    ]
    (w0, m0), (w1, m1) = (r.eval_batch(0) for r in ranks)
    assert len(w0) == len(w1) == 2 and m0.tolist() == [1, 1] and m1.tolist() == [1, 0]
    np.testing.assert_array_equal(np.stack([w0[0], w1[0], w0[1]]), windows)


def test_a_source_too_small_for_its_windows_is_refused(random_dataset: Path) -> None:
    with pytest.raises(ValueError, match="fewer than"):
        MixtureSampler(load_dataset(random_dataset), 2048, 4, seed=0)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_on_text(text_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    config = TrainConfig(
        **TINY, batch_tokens=512, micro_batch=8, steps=200, warmup_steps=20, log_every=1
    )
    train(config, text_dataset, out)
    return out


def test_tiny_learns_real_text_in_200_steps(trained_on_text: Path) -> None:
    losses = [r["loss"] for r in read_metrics(trained_on_text)]
    assert len(losses) == 200
    assert losses[-1] < 0.7 * losses[0]
    evaluation = read_metrics(trained_on_text, "eval")[-1]
    assert set(evaluation["sources"]) == set(WEIGHTS)
    assert evaluation["eval_loss"] < 0.7 * losses[0]
    assert evaluation["eval_perplexity"] == pytest.approx(np.exp(evaluation["eval_loss"]))


def test_metrics_report_throughput_and_memory_but_no_mfu_on_cpu(trained_on_text: Path) -> None:
    record = read_metrics(trained_on_text)[-1]
    assert record["tokens"] == 200 * 512
    assert record["tokens_per_s_per_device"] > 0 and record["peak_memory_gib"] > 0
    assert record["mfu"] is None
    assert record["lr"] == pytest.approx(3e-3 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 179 / 180))))


def test_generate_continues_a_prompt_from_a_checkpoint(
    trained_on_text: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", str(trained_on_text), "--prompt", "I was", "--max-new-tokens", "12"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("I was") and len(text) > len("I was\n")


def small_run(**changes: Any) -> TrainConfig:
    settings = {
        **TINY,
        "batch_tokens": 256,
        "micro_batch": 2,
        "steps": 6,
        "warmup_steps": 2,
        "log_every": 1,
        "checkpoint_every": 100,
    }
    return TrainConfig(**{**settings, **changes})


def test_resume_is_bit_exact(random_dataset: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(small_run(), random_dataset, straight)
    train(small_run(), random_dataset, split, until=3)
    assert [p.name for p in checkpoints(split)] == ["step-00000003"]
    train(small_run(), random_dataset, split, resume=True)

    def exact(out: Path) -> list[tuple[Any, ...]]:
        return [(r["step"], r["loss"], r["lr"], r["grad_norm"]) for r in read_metrics(out)]

    assert exact(split) == exact(straight)
    assert len(exact(split)) == 6
    assert read_metrics(split, "eval") == read_metrics(straight, "eval")
    a, b = load_model(straight)[0].state_dict(), load_model(split)[0].state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_only_the_last_checkpoints_are_kept(random_dataset: Path, tmp_path: Path) -> None:
    train(small_run(checkpoint_every=1, keep_last=2, steps=4), random_dataset, tmp_path)
    assert [p.name for p in checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]


def test_a_checkpoint_from_another_config_is_refused(random_dataset: Path, tmp_path: Path) -> None:
    train(small_run(steps=2), random_dataset, tmp_path)
    with pytest.raises(ValueError, match=r"another configuration.*seq_len"):
        train(small_run(steps=4, seq_len=32), random_dataset, tmp_path, resume=True)
    with pytest.raises(ValueError, match="pass --resume"):
        train(small_run(steps=4), random_dataset, tmp_path)


def test_a_missing_dataset_json_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="llamix tokenize"):
        train(small_run(), tmp_path / "nowhere", tmp_path / "out")


def test_a_dataset_vocabulary_larger_than_the_model_is_refused(
    random_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"512 pieces.*--vocab-size 512"):
        train(small_run(vocab_size=256), random_dataset, tmp_path)


def torchrun(tmp_path: Path, dataset: Path, out: Path, *flags: str) -> str:
    """`python -m model.train` on two CPU processes (gloo), rendezvous on loopback only."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        json.dumps(
            {
                "output": str(tmp_path / "run"),
                "sources": {"text": {"reader": "text", "inputs": ["unused/*.txt"]}},
                "train": {"preset": "tiny", "seq_len": 64, "batch_tokens": 256, "steps": 4},
            }
        )
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "model.train"]
    command += [str(manifest), "--dataset", str(dataset), "--out", str(out), "--vocab-size"]
    command += ["512", "--warmup-steps", "2", "--log-every", "1", "--eval-windows", "4", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_same_training(out: Path, expected: Path) -> None:
    """Same losses and final weights up to float reduction order."""
    losses = [r["loss"] for r in read_metrics(out)]
    assert losses == pytest.approx([r["loss"] for r in read_metrics(expected)], rel=1e-5)
    a, b = load_model(out)[0].state_dict(), load_model(expected)[0].state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_two_process_ddp_matches_one_process(random_dataset: Path, tmp_path: Path) -> None:
    ddp = tmp_path / "ddp"
    assert "ddp on 2 x cpu" in torchrun(tmp_path, random_dataset, ddp, "--micro-batch", "2")
    single = tmp_path / "single"
    train(small_run(steps=4), random_dataset, single)  # 2 accumulation steps of 2 sequences
    assert_same_training(ddp, single)


def test_fsdp_on_two_processes_continues_a_one_process_checkpoint(
    random_dataset: Path, tmp_path: Path
) -> None:
    single, fsdp = tmp_path / "single", tmp_path / "fsdp"
    train(small_run(steps=4), random_dataset, single, until=2)
    shutil.copytree(single, fsdp)
    train(small_run(steps=4), random_dataset, single, resume=True)
    # Resharded on load, 2 accumulation steps of 1 sequence per rank, resharded on save.
    flags = ("--parallelism", "fsdp", "--micro-batch", "1", "--resume")
    assert "fsdp on 2 x cpu" in torchrun(tmp_path, random_dataset, fsdp, *flags)
    assert_same_training(fsdp, single)


def test_activation_checkpointing_changes_memory_not_results(
    random_dataset: Path, tmp_path: Path
) -> None:
    for mode in ("none", "selective", "full"):
        train(small_run(steps=2, activation_checkpointing=mode), random_dataset, tmp_path / mode)
    assert_same_training(tmp_path / "selective", tmp_path / "none")
    assert_same_training(tmp_path / "full", tmp_path / "none")


# --------------------------------------------------------------------------------------
# Hugging Face export
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(random_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("checkpoint")
    checkpoint = train(small_run(steps=2), random_dataset, out)
    assert checkpoint is not None
    target = tmp_path_factory.mktemp("hf")
    export_hf.export_hf(checkpoint, target, torch.float32)
    return checkpoint, target


def rotate_half_logits(
    weights: dict[str, torch.Tensor], config: dict, tokens: torch.Tensor
) -> torch.Tensor:
    """Hugging Face's Llama forward, written out: RoPE rotates the two halves of a head."""
    heads, kv_heads, dim = (
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["hidden_size"],
    )
    head_dim, eps = dim // heads, config["rms_norm_eps"]
    seq = tokens.shape[1]
    inv = 1.0 / config["rope_parameters"]["rope_theta"] ** (
        torch.arange(0, head_dim, 2).float() / head_dim
    )
    angles = torch.outer(torch.arange(seq).float(), inv).repeat(1, 2)
    cos, sin = angles.cos(), angles.sin()

    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        return torch.cat((-x[..., head_dim // 2 :], x[..., : head_dim // 2]), dim=-1)

    def norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    h = weights["model.embed_tokens.weight"][tokens]
    mask = torch.full((seq, seq), float("-inf")).triu(1)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = norm(h, weights[p + "input_layernorm.weight"])
        q = (
            (x @ weights[p + "self_attn.q_proj.weight"].T)
            .view(1, seq, heads, head_dim)
            .transpose(1, 2)
        )
        k = (
            (x @ weights[p + "self_attn.k_proj.weight"].T)
            .view(1, seq, kv_heads, head_dim)
            .transpose(1, 2)
        )
        v = (
            (x @ weights[p + "self_attn.v_proj.weight"].T)
            .view(1, seq, kv_heads, head_dim)
            .transpose(1, 2)
        )
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1)
        attention = torch.softmax(q @ k.transpose(-1, -2) / head_dim**0.5 + mask, dim=-1) @ v
        h = (
            h
            + attention.transpose(1, 2).reshape(1, seq, dim)
            @ weights[p + "self_attn.o_proj.weight"].T
        )
        x = norm(h, weights[p + "post_attention_layernorm.weight"])
        gate = torch.nn.functional.silu(x @ weights[p + "mlp.gate_proj.weight"].T)
        h = (
            h
            + (gate * (x @ weights[p + "mlp.up_proj.weight"].T))
            @ weights[p + "mlp.down_proj.weight"].T
        )
    return norm(h, weights["model.norm.weight"]) @ weights["lm_head.weight"].T


def test_export_gives_the_same_logits_under_the_hugging_face_rope_layout(
    exported: tuple[Path, Path],
) -> None:
    checkpoint, target = exported
    config = json.loads((target / "config.json").read_text())
    assert config["num_key_value_heads"] == 2 and config["intermediate_size"] == 192
    tokens = torch.randint(0, VOCAB, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = load_model(checkpoint)[0](tokens)
    theirs = rotate_half_logits(load_file(target / "model.safetensors"), config, tokens)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


def test_transformers_loads_the_export_and_gives_the_same_logits(
    exported: tuple[Path, Path],
) -> None:
    transformers = pytest.importorskip("transformers")
    checkpoint, target = exported
    hf = transformers.LlamaForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    tokens = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = load_model(checkpoint)[0](tokens)
        theirs = hf(tokens).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


def test_gpu_check_runs_its_cpu_smoke_test() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-smoke"],
        env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tiny eager" in done.stdout
    assert "dq" in done.stdout and "NO" not in done.stdout
