"""The trainer's `llamix` commands, registered without importing torch.

The CLI builds every subcommand's parser at start-up; importing torch there would add
seconds to `llamix run`. Each command imports its module only when it runs.
"""

from __future__ import annotations

import argparse

from stages.base import register_command

# TrainConfig fields the command line can override: (type, help).
TRAIN_FLAGS: dict[str, tuple[type, str]] = {
    "preset": (str, "model size: tiny, 125m, 350m, 1b, 7b, 13b, 33b, 65b"),
    "steps": (int, "optimizer steps of the whole run (the cosine schedule spans them)"),
    "seq_len": (int, "tokens per training sequence"),
    "batch_tokens": (int, "global batch in tokens, rounded to whole micro-batches"),
    "micro_batch": (int, "sequences per device per forward pass"),
    "learning_rate": (float, "peak learning rate (default: the preset's)"),
    "warmup_steps": (int, "linear warmup steps"),
    "weight_decay": (float, "AdamW weight decay on matrices"),
    "seed": (int, "initialisation and data seed"),
    "vocab_size": (int, "model vocabulary (default: the preset's 32000)"),
    "activation_checkpointing": (str, "none, selective (recompute element-wise ops) or full"),
    "parallelism": (str, "auto (FSDP for 1B+ on CUDA, else DDP), ddp or fsdp"),
    "checkpoint_every": (int, "steps between checkpoints"),
    "keep_last": (int, "checkpoints kept"),
    "log_every": (int, "steps between log lines"),
    "eval_every": (int, "steps between evaluations (0: only at the end)"),
    "eval_windows": (int, "held-out windows per source"),
}


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest YAML (its `train:` section)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--dataset", help="token dataset directory (default: OUT/dataset)")
    parser.add_argument("--out", help="checkpoints and metrics.jsonl (default: OUT/train)")
    parser.add_argument("--until", type=int, help="stop after this step (default: --steps)")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile each block (default: on for CUDA)",
    )
    for name, (kind, text) in TRAIN_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, help=text)


def configure_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a step-* checkpoint, or a train --out (its latest)")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--tokenizer", help="tokenizer.model (default: the dataset's)")
    parser.add_argument("--device", help="default: cuda when available, else cpu")


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a step-* checkpoint, or a train --out (its latest)")
    parser.add_argument("out", help="the Hugging Face model directory to write")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")


@register_command("train", "train a LLaMA model on the manifest's token dataset", configure_train)
def _train(args: argparse.Namespace) -> int:
    from model.train import train_command

    return train_command(args)


@register_command("generate", "continue a prompt with a trained checkpoint", configure_generate)
def _generate(args: argparse.Namespace) -> int:
    from model.generate import generate_command

    return generate_command(args)


@register_command(
    "export-hf", "write a checkpoint as a Hugging Face Llama model directory", configure_export
)
def _export(args: argparse.Namespace) -> int:
    from model.export_hf import export_command

    return export_command(args)
