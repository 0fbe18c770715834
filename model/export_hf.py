"""`llamix export-hf CKPT DIR`: a checkpoint as a Hugging Face Llama model directory.

Writes `config.json` and safetensors (sharded past 5 GB, with the usual index) under the
names `transformers.LlamaForCausalLM` loads, plus the tokenizer's `tokenizer.model`.
Our RoPE rotates adjacent pairs of a head (Meta's layout); Hugging Face rotates the two
halves of it, so the rows of wq and wk are permuted per head (the permutation of
transformers' `convert_llama_weights_to_hf.py`), which gives the same logits.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from model.config import ModelConfig
from model.generate import load_model

SHARD_BYTES = 5 * 2**30  # transformers' default max_shard_size


def permute_for_hf(weight: Tensor, heads: int) -> Tensor:
    """Rows of one head go from pair-interleaved (2i, 2i + 1) to half-split (i, i + d/2)."""
    rows, dim = weight.shape
    head_dim = rows // heads
    return weight.view(heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(rows, dim)


def hf_state_dict(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    names = {
        "attention.wq": "self_attn.q_proj",
        "attention.wk": "self_attn.k_proj",
        "attention.wv": "self_attn.v_proj",
        "attention.wo": "self_attn.o_proj",
        "feed_forward.w1": "mlp.gate_proj",
        "feed_forward.w3": "mlp.up_proj",
        "feed_forward.w2": "mlp.down_proj",
        "attention_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    out = {
        "model.embed_tokens.weight": state["tok_embeddings.weight"],
        "model.norm.weight": state["norm.weight"],
        "lm_head.weight": state["output.weight"],
    }
    for i in range(config.n_layers):
        for ours, theirs in names.items():
            weight = state[f"layers.{i}.{ours}.weight"]
            if ours == "attention.wq":
                weight = permute_for_hf(weight, config.n_heads)
            elif ours == "attention.wk":
                weight = permute_for_hf(weight, config.kv_heads)
            out[f"model.layers.{i}.{theirs}.weight"] = weight
    return out


def hf_config(config: ModelConfig, dtype: torch.dtype, bos_id: int, eos_id: int) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        # transformers 4.x reads rope_theta, 5.x rope_parameters.
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def export_hf(checkpoint: str | Path, out: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    model, run = load_model(checkpoint)
    config = model.config
    tensors = {
        name: t.to(dtype).contiguous()
        for name, t in hf_state_dict(model.state_dict(), config).items()
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = run["dataset"]["tokenizer"]
    (out / "config.json").write_text(
        json.dumps(hf_config(config, dtype, tokenizer["bos_id"], tokenizer["eos_id"]), indent=2)
        + "\n"
    )
    _write_safetensors(tensors, out)
    if Path(tokenizer["model"]).is_file():
        shutil.copyfile(tokenizer["model"], out / "tokenizer.model")
    return out


def _write_safetensors(tensors: dict[str, Tensor], out: Path) -> None:
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], out / "model.safetensors", metadata=metadata)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, out / filename, metadata=metadata)
        weight_map.update(dict.fromkeys(shard, filename))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def export_command(args: argparse.Namespace) -> int:
    """`llamix export-hf` (arguments from model/commands.py)."""
    out = export_hf(args.checkpoint, args.out, getattr(torch, args.dtype))
    print(f"Hugging Face model written to {out}")
    return 0
