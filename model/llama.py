"""LLaMA (Touvron et al. 2023, §2.2): a pre-norm transformer with RMSNorm, SwiGLU and RoPE.

No biases, untied input and output embeddings, attention through
`scaled_dot_product_attention(is_causal=True)`: on CUDA the flash, cuDNN or memory-efficient
kernel (never the math one), on CPU whatever PyTorch picks. Parameter names follow Meta's
reference `model.py`, so its checkpoints load unchanged.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from model.config import ModelConfig

FUSED_ATTENTION = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
]


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin, each (seq_len, head_dim // 2) in fp32: real tables, since complex
    tensors break torch.compile. Layout: frequency i = theta^(-2i / head_dim) rotates the
    adjacent pair (x[2i], x[2i + 1]), as Meta's complex view of a head does. Hugging Face
    rotates (x[i], x[i + head_dim / 2]) instead; `export_hf` permutes wq and wk for it."""
    freqs = theta ** -(torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), freqs)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotates each pair of x (batch, seq, heads, head_dim) by its position's angle, in fp32."""
    even, odd = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[:, None], sin[:, None]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(
            x
        ) * self.weight


class KVCache:
    """Keys and values of one layer for generation: a prompt fills it from position 0, then
    one token at a time (so `is_causal` is right: it is only used when the query is the whole
    prefix)."""

    def __init__(self, batch: int, config: ModelConfig, max_len: int, like: Tensor) -> None:
        shape = (batch, config.kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.v = torch.zeros_like(self.k)
        self.pos = 0

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.pos and k.shape[2] > 1:
            raise ValueError("a KV cache takes a prompt at position 0, then single tokens")
        end = self.pos + k.shape[2]
        self.k[:, :, self.pos : end], self.v[:, :, self.pos : end] = k, v
        self.pos = end
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.kv_heads, c.head_dim
        self.wq = nn.Linear(c.dim, c.n_heads * c.head_dim, bias=False)
        self.wk = nn.Linear(c.dim, c.kv_heads * c.head_dim, bias=False)
        self.wv = nn.Linear(c.dim, c.kv_heads * c.head_dim, bias=False)
        self.wo = nn.Linear(c.n_heads * c.head_dim, c.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None) -> Tensor:
        b, t, _ = x.shape
        q = apply_rope(self.wq(x).view(b, t, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(self.wk(x).view(b, t, self.n_kv_heads, self.head_dim), cos, sin)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v)
        if self.n_kv_heads != self.n_heads:  # GQA: each key/value head serves a query group
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        return self.wo(y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    """SwiGLU (Shazeer 2020): w2(silu(w1 x) * w3 x)."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.w2 = nn.Linear(c.hidden_dim, c.dim, bias=False)
        self.w3 = nn.Linear(c.dim, c.hidden_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, c: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.attention, self.feed_forward = Attention(c), FeedForward(c)
        self.attention_norm = RMSNorm(c.dim, c.norm_eps)
        self.ffn_norm = RMSNorm(c.dim, c.norm_eps)
        # torchtitan's depth init: output projections shrink with depth, keeping the
        # residual stream's variance in check (its `depth_init=True`).
        self.depth_std = 0.02 / math.sqrt(2 * (layer_id + 1))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None = None) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, cache)
        return h + self.feed_forward(self.ffn_norm(h))

    def init_weights(self) -> None:
        for norm in (self.attention_norm, self.ffn_norm):
            nn.init.ones_(norm.weight)
        a, f = self.attention, self.feed_forward
        for linear in (a.wq, a.wk, a.wv, f.w1):
            nn.init.trunc_normal_(linear.weight, std=0.02)
        for linear in (a.wo, f.w2, f.w3):
            nn.init.trunc_normal_(linear.weight, std=self.depth_std)


class Llama(nn.Module):
    """Builds on any device, `meta` included: then `to_empty(device=...)` and `init_weights()`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        half = (config.max_seq_len, config.head_dim // 2)
        self.register_buffer("rope_cos", torch.empty(half), persistent=False)
        self.register_buffer("rope_sin", torch.empty(half), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        c = self.config
        cos, sin = rope_tables(c.head_dim, c.max_seq_len, c.rope_theta)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)
        nn.init.normal_(self.tok_embeddings.weight)
        for layer in self.layers:
            # Reached through wrappers (activation checkpointing, compile) when they are on.
            next(m for m in layer.modules() if isinstance(m, Block)).init_weights()
        nn.init.ones_(self.norm.weight)
        std = c.dim**-0.5
        nn.init.trunc_normal_(self.output.weight, std=std, a=-3 * std, b=3 * std)

    def forward(self, tokens: Tensor, caches: list[KVCache] | None = None) -> Tensor:
        """Logits (batch, seq, vocab) for tokens (batch, seq)."""
        start = caches[0].pos if caches else 0
        cos = self.rope_cos[start : start + tokens.shape[1]]
        sin = self.rope_sin[start : start + tokens.shape[1]]
        h = self.tok_embeddings(tokens)
        # Entered here, outside the compiled blocks: inside them it defeats compile caching.
        fused = sdpa_kernel(FUSED_ATTENTION) if h.is_cuda else contextlib.nullcontext()
        with fused:
            for i, layer in enumerate(self.layers):
                h = layer(h, cos, sin, caches[i] if caches else None)
        return self.output(self.norm(h))

    def num_flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token, forward and backward: 6·N + 12·L·d·T.

        N counts every parameter but the token embedding (a lookup, not a matmul; the
        output projection counts); 12·L·d·T is attention's QKᵀ and AV, counted over the
        full T×T square without halving for causality, as PaLM (App. B) and torchtitan do.
        """
        n = sum(p.numel() for p in self.parameters()) - self.tok_embeddings.weight.numel()
        return 6 * n + 12 * self.config.n_layers * self.config.dim * seq_len
