"""Model presets and the training configuration.

The four paper models are Table 2 of Touvron et al. (2023): dimension, heads, layers and
learning rate. Their FFN width is `int(2 * 4 * dim / 3)` rounded up to a multiple of 256,
the rule of Meta's reference `model.py` (7B: 11008). `tiny` is for CPU tests; `125m`,
`350m` and `1b` are GPT-3-like small sizes for benchmarks and ablations.

Training defaults are the paper's (§2.3): AdamW with β1 = 0.9, β2 = 0.95, eps 1e-8 and
weight decay 0.1; a cosine schedule down to 10% of the peak after 2000 warmup steps;
gradient clipping at 1.0; a global batch given in tokens (4M in the paper).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

ADAM_BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class ModelConfig:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None  # fewer key/value heads than query heads: GQA
    vocab_size: int = 32000  # LLaMA's SentencePiece vocabulary
    multiple_of: int = 256
    norm_eps: float = 1e-6  # Meta's released params.json
    rope_theta: float = 10000.0
    max_seq_len: int = 2048  # length of the RoPE tables

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_heads} heads of even size")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads {self.n_heads} must be a multiple of n_kv_heads")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def hidden_dim(self) -> int:
        """SwiGLU width: 2/3 of 4·dim keeps the parameters of a 4·dim GELU MLP (§2.2)."""
        hidden = int(2 * 4 * self.dim / 3)
        return self.multiple_of * -(-hidden // self.multiple_of)


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        dim=64, n_layers=2, n_heads=4, n_kv_heads=2, multiple_of=32, max_seq_len=256
    ),
    "125m": ModelConfig(dim=768, n_layers=12, n_heads=12),
    "350m": ModelConfig(dim=1024, n_layers=24, n_heads=16),
    "1b": ModelConfig(dim=2048, n_layers=18, n_heads=16),
    "llama-7b": ModelConfig(dim=4096, n_layers=32, n_heads=32),
    "llama-13b": ModelConfig(dim=5120, n_layers=40, n_heads=40),
    "llama-33b": ModelConfig(dim=6656, n_layers=60, n_heads=52),
    "llama-65b": ModelConfig(dim=8192, n_layers=80, n_heads=64),
}

# Peak learning rates: Table 2 for the paper's models, GPT-3's (Table 2.1) for the small ones.
LEARNING_RATES: dict[str, float] = {
    "tiny": 3e-3,
    "125m": 6e-4,
    "350m": 3e-4,
    "1b": 3e-4,
    "llama-7b": 3e-4,
    "llama-13b": 3e-4,
    "llama-33b": 1.5e-4,
    "llama-65b": 1.5e-4,
}


def preset_name(name: str) -> str:
    """The canonical name: `7b` is `llama-7b`."""
    if name in PRESETS:
        return name
    if f"llama-{name}" in PRESETS:
        return f"llama-{name}"
    raise ValueError(f"unknown preset {name!r}: one of {', '.join(PRESETS)}")


def preset(name: str) -> ModelConfig:
    return PRESETS[preset_name(name)]


Parallelism = Literal["auto", "ddp", "fsdp"]
Checkpointing = Literal["none", "selective", "full"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run reads; the manifest's `train:` section plus CLI flags."""

    preset: str = "tiny"
    vocab_size: int | None = None  # None: the preset's; must cover the dataset's tokenizer
    seq_len: int = 2048
    batch_tokens: int = 4_000_000  # global batch; rounded to whole micro-batches
    micro_batch: int = 4  # sequences per device per forward pass
    steps: int = 1000
    learning_rate: float | None = None  # None: the preset's
    warmup_steps: int = 2000
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    compile: bool | None = None  # None: on for CUDA, off on CPU
    activation_checkpointing: Checkpointing = "none"
    parallelism: Parallelism = "auto"  # auto: FSDP for models of 1B+ parameters on CUDA
    checkpoint_every: int = 1000  # 0: none at all (benchmarks)
    keep_last: int = 3
    log_every: int = 10
    eval_every: int = 1000  # 0: only at the end
    eval_windows: int = 16  # held-out windows per source; 0: no held-out split, no eval

    def __post_init__(self) -> None:
        preset_name(self.preset)
        positive = ("seq_len", "batch_tokens", "micro_batch", "steps", "keep_last", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "eval_every", "eval_windows", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must not be negative, got {getattr(self, name)}")
        if self.activation_checkpointing not in ("none", "selective", "full"):
            raise ValueError("activation_checkpointing must be none, selective or full")
        if self.parallelism not in ("auto", "ddp", "fsdp"):
            raise ValueError("parallelism must be auto, ddp or fsdp")

    @property
    def peak_lr(self) -> float:
        return self.learning_rate or LEARNING_RATES[preset_name(self.preset)]

    def model_config(self) -> ModelConfig:
        base = preset(self.preset)
        return dataclasses.replace(
            base, vocab_size=self.vocab_size or base.vocab_size, max_seq_len=self.seq_len
        )

    @classmethod
    def from_spec(cls, spec: Any, **overrides: Any) -> TrainConfig:
        """From a manifest `train:` section (pipeline.manifest.TrainSpec); an unset
        learning_rate keeps the preset's, and overrides that are None are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in spec.model_dump().items() if k in fields}
        if "learning_rate" not in spec.model_fields_set:
            values.pop("learning_rate", None)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
