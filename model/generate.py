"""`llamix generate CKPT --prompt ...`: text from a trained checkpoint.

Greedy decoding at temperature 0; otherwise sampling at a temperature, within the smallest
set of tokens whose probability reaches `top_p` (nucleus sampling, Holtzman et al. 2020).
The prompt is run once, then each new token attends to the keys and values cached for the
tokens before it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
import torch.distributed.checkpoint as dcp
from torch import Tensor

from model.config import ModelConfig
from model.llama import KVCache, Llama
from model.train import latest_checkpoint, quiet_single_process, read_checkpoint_config


def load_model(checkpoint: str | Path, device: str = "cpu") -> tuple[Llama, dict[str, Any]]:
    """The trained model in fp32 and the run description saved beside it. Reads only the
    model's tensors from the checkpoint, in one process, whatever wrote it."""
    path = latest_checkpoint(checkpoint)
    run = read_checkpoint_config(path)
    with torch.device(device):
        model = Llama(ModelConfig(**run["model"]))
    state = {"model": model.state_dict()}
    with quiet_single_process():
        dcp.load(state, checkpoint_id=path, no_dist=True)
    model.load_state_dict(state["model"])
    return model.eval(), run


def next_token(
    logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> int:
    """One token id from the logits (vocab,) of the last position."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(descending=True)
    # Keep a token while the mass before it is below top_p: the first one always stays.
    keep = sorted_probs.cumsum(0) - sorted_probs < top_p
    sorted_probs = sorted_probs * keep
    choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
    return int(order[choice])


@torch.no_grad()
def generate(
    model: Llama,
    prompt: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """The new tokens after `prompt`, stopping early at `eos_id`."""
    limit = model.config.max_seq_len
    if not 0 < len(prompt) < limit:
        raise ValueError(f"the prompt has {len(prompt)} tokens; the model takes 1 to {limit - 1}")
    max_new_tokens = min(max_new_tokens, limit - len(prompt))
    weight = model.output.weight
    caches = [KVCache(1, model.config, len(prompt) + max_new_tokens, weight) for _ in model.layers]
    logits = model(torch.tensor([prompt], device=weight.device), caches)[0, -1]
    tokens: list[int] = []
    for _ in range(max_new_tokens):
        token = next_token(logits, temperature, top_p, generator)
        tokens.append(token)
        if token == eos_id or len(tokens) == max_new_tokens:
            break
        logits = model(torch.tensor([[token]], device=weight.device), caches)[0, -1]
    return tokens


def generate_command(args: argparse.Namespace) -> int:
    """`llamix generate` (arguments from model/commands.py)."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, run = load_model(args.checkpoint, device)
    tokenizer_path = args.tokenizer or run["dataset"]["tokenizer"]["model"]
    if not Path(tokenizer_path).is_file():
        raise FileNotFoundError(f"tokenizer {tokenizer_path} not found: pass --tokenizer")
    tokenizer = spm.SentencePieceProcessor(model_file=tokenizer_path)
    prompt = [tokenizer.bos_id(), *tokenizer.encode(args.prompt)]
    generator = torch.Generator(device).manual_seed(args.seed)
    tokens = generate(
        model,
        prompt,
        args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        eos_id=tokenizer.eos_id(),
        generator=generator,
    )
    sys.stdout.write(tokenizer.decode(prompt[1:] + tokens) + "\n")
    return 0
