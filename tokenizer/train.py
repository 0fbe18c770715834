"""`llamix tokenizer train`: SentencePiece BPE with the LLaMA settings, and its HF export.

LLaMA (paper section 2.1) trained a SentencePiece BPE model with digits split and byte
fallback for unknown UTF-8 characters; the defaults of `TokenizerSpec` are the trainer
settings recorded in LLaMA's own `tokenizer.model`. The training sample is drawn from a
run's final shards by the mixture weights (`tokenizer.sample`) and streamed to
SentencePiece line by line: no corpus file is written.

Outputs, in the tokenizer directory (default `OUT/tokenizer`):
`tokenizer.model` and `tokenizer.vocab` (SentencePiece's files), `hf/` (a `tokenizer.json`
that gives SentencePiece's ids, with `tokenizer_config.json` and
`special_tokens_map.json` for transformers' LlamaTokenizer(Fast)), and
`tokenizer-info.json` (settings, sample statistics, the model's sha256), written last.

Round trip: with identity normalisation and `remove_extra_whitespaces: false`,
`decode(encode(text)) == text` for any text, leading and repeated spaces included (the
decoder removes exactly the one dummy-prefix space it added). The one exception is
U+2581 "▁" itself, SentencePiece's whitespace symbol, which decodes as a space. The HF
tokenizer gives SentencePiece's ids except where the text holds a special token's
literal string (`<s>`, `</s>`, `<unk>`): like Llama-2's tokenizer.json, it reads that as
the special token, where SentencePiece encodes it as text.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sentencepiece
import tokenizers
from sentencepiece import sentencepiece_model_pb2 as sp_model
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

from pipeline.executor import build_tasks
from pipeline.io import atomic_write_bytes, atomic_write_json, join
from pipeline.manifest import Run, TokenizerSpec, load_manifest
from pipeline.plan import build_plan
from pipeline.tasks import completed
from stages.base import register_command
from tokenizer.sample import draw_sample, sentences_of

MODEL_FILE = "tokenizer.model"
VOCAB_FILE = "tokenizer.vocab"
INFO_FILE = "tokenizer-info.json"
HF_DIR = "hf"

# TokenizerSpec fields that are llamix's, not SentencePiece trainer flags.
_NOT_FLAGS = {"seed", "sample_chars", "sample_sentences", "options", "num_threads"}

# SentencePiece piece types (sentencepiece_model.proto).
_UNKNOWN, _CONTROL, _USER_DEFINED = 2, 3, 4


def trainer_options(spec: TokenizerSpec) -> dict[str, Any]:
    """The SentencePiece trainer flags of `spec`: its typed fields, then `options`.

    Threads default to every CPU. The pieces and scores do not depend on the thread
    count, but the model file records it, so pin `num_threads` for identical bytes
    across machines.
    """
    flags = spec.model_dump(exclude=_NOT_FLAGS)
    flags["num_threads"] = spec.num_threads or os.cpu_count() or 1
    return {**flags, **spec.options}


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | Path,
    spec: TokenizerSpec | None = None,
    *,
    info: dict[str, Any] | None = None,
    progress: bool = False,
) -> str:
    """Trains on every line of `texts` (documents or lines) and writes the tokenizer
    directory; returns the path of `tokenizer.model`. `info` (e.g. the sample's
    statistics) is recorded in `tokenizer-info.json`. With `progress`, SentencePiece
    logs its progress on stderr."""
    spec = spec or TokenizerSpec()
    out = str(out_dir)
    tally = {"documents": 0, "lines": 0, "chars": 0}
    options = {"minloglevel": 0 if progress else 2, **trainer_options(spec)}
    sentencepiece.set_random_generator_seed(spec.seed)
    written = io.BytesIO()
    started = time.perf_counter()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=_counted(texts, spec.max_sentence_length, tally),
            model_writer=written,
            **options,
        )
    except RuntimeError as err:
        if tally["lines"] == 0:
            raise ValueError("no text to train the tokenizer on: every line is blank") from err
        raise
    trained = time.perf_counter()
    model_bytes = written.getvalue()
    proto = sp_model.ModelProto()
    proto.ParseFromString(model_bytes)
    atomic_write_bytes(join(out, MODEL_FILE), model_bytes)
    atomic_write_bytes(join(out, VOCAB_FILE), vocab_text(proto).encode("utf-8"))
    unsupported = hf_unsupported(proto)
    hf_files = [] if unsupported else export_hf(proto, model_bytes, join(out, HF_DIR))
    if unsupported and progress:
        print(f"no HF export: {unsupported}", file=sys.stderr)
    record = {
        "model": MODEL_FILE,
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "vocab_size": len(proto.pieces),
        "special_tokens": _special_pieces(proto),
        "trainer_options": options,
        "spec": spec.model_dump(mode="json"),
        "input": tally,
        "hf": {"files": hf_files, "skipped": unsupported},
        "versions": {
            "sentencepiece": sentencepiece.__version__,
            "tokenizers": tokenizers.__version__,
        },
        **(info or {}),
        "seconds": {
            **(info or {}).get("seconds", {}),
            "train": round(trained - started, 3),
            "export": round(time.perf_counter() - trained, 3),
        },
    }
    atomic_write_json(join(out, INFO_FILE), record)
    return join(out, MODEL_FILE)


def _counted(texts: Iterable[str], max_bytes: int, tally: dict[str, int]) -> Iterator[str]:
    for text in texts:
        tally["documents"] += 1
        for line in sentences_of(text, max_bytes):
            tally["lines"] += 1
            tally["chars"] += len(line)
            yield line


def vocab_text(proto: sp_model.ModelProto) -> str:
    """`tokenizer.vocab` as `spm_train` writes it: `piece<TAB>score` a line."""
    if not proto.trainer_spec.vocabulary_output_piece_score:
        return "".join(f"{p.piece}\n" for p in proto.pieces)
    return "".join(f"{p.piece}\t{p.score:g}\n" for p in proto.pieces)


def _special_pieces(proto: sp_model.ModelProto) -> dict[str, Any]:
    """`{"unk": {"id": 0, "piece": "<unk>"}, ..., "pad": None}` for the four SentencePiece ids."""
    spec = proto.trainer_spec
    ids = {"unk": spec.unk_id, "bos": spec.bos_id, "eos": spec.eos_id, "pad": spec.pad_id}
    return {
        name: {"id": i, "piece": proto.pieces[i].piece} if i >= 0 else None
        for name, i in ids.items()
    }


# ---------------------------------------------------------------------------------------
# The Hugging Face export
# ---------------------------------------------------------------------------------------


def hf_unsupported(proto: sp_model.ModelProto) -> str | None:
    """Why `hf_tokenizer` would not reproduce this model's ids, or None: it replays only
    SentencePiece's plain whitespace handling, which is what LLaMA uses."""
    normalizer = proto.normalizer_spec
    if proto.trainer_spec.model_type != sp_model.TrainerSpec.BPE:
        return "only BPE models are exported"
    if normalizer.name != "identity":
        return f"normalization_rule_name {normalizer.name!r} (only identity is exported)"
    if normalizer.remove_extra_whitespaces or not normalizer.escape_whitespaces:
        return "remove_extra_whitespaces or escape_whitespaces differ from LLaMA's"
    if proto.trainer_spec.treat_whitespace_as_suffix:
        return "treat_whitespace_as_suffix is set"
    return None


def hf_tokenizer(proto: sp_model.ModelProto) -> Tokenizer:
    """The model as transformers' LlamaConverter builds it (legacy mode, the form of
    Llama-2's published tokenizer.json): a byte-fallback BPE over the same pieces, whose
    merges are every split of a piece into two pieces, ranked by the piece's score; "▁"
    prepended (the dummy prefix) and spaces replaced by "▁" before it."""
    pieces = proto.pieces
    vocab = {p.piece: i for i, p in enumerate(pieces)}
    ranked: list[tuple[float, int, int, int, str, str]] = []
    for index, piece in enumerate(pieces):
        for cut in range(1, len(piece.piece)):
            left, right = piece.piece[:cut], piece.piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-piece.score, index, vocab[left], vocab[right], left, right))
    ranked.sort()
    tokenizer = Tokenizer(
        models.BPE(
            vocab,
            [(left, right) for *_, left, right in ranked],
            unk_token=pieces[proto.trainer_spec.unk_id].piece,
            fuse_unk=True,
            byte_fallback=proto.trainer_spec.byte_fallback,
        )
    )
    dummy_prefix = proto.normalizer_spec.add_dummy_prefix
    tokenizer.normalizer = normalizers.Sequence(
        ([normalizers.Prepend("▁")] if dummy_prefix else []) + [normalizers.Replace(" ", "▁")]
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if dummy_prefix else [])
    )
    tokenizer.add_tokens(
        [
            AddedToken(p.piece, normalized=False, special=p.type != _USER_DEFINED)
            for p in pieces
            if p.type in (_UNKNOWN, _CONTROL, _USER_DEFINED)
        ]
    )
    bos = proto.trainer_spec.bos_id
    if bos >= 0:  # LlamaTokenizerFast's default: BOS before each sequence, no EOS
        token = pieces[bos].piece
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{token} $A", pair=f"{token} $A {token}:1 $B:1", special_tokens=[(token, bos)]
        )
    return tokenizer


def export_hf(proto: sp_model.ModelProto, model_bytes: bytes, hf_dir: str) -> list[str]:
    """Writes `tokenizer.json`, `tokenizer.model`, `tokenizer_config.json` and
    `special_tokens_map.json`, the files transformers' LlamaTokenizer(Fast) reads."""
    special = _special_pieces(proto)

    def token(name: str) -> str | None:
        entry = special[name]
        return entry["piece"] if entry else None

    def added(piece: str, is_special: bool) -> dict[str, Any]:
        return {
            "content": piece,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": is_special,
        }

    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": special["bos"] is not None,
        "add_eos_token": False,
        **{f"{name}_token": token(name) for name in ("bos", "eos", "unk", "pad")},
        "legacy": True,
        "clean_up_tokenization_spaces": False,
        "sp_model_kwargs": {},
        "added_tokens_decoder": {
            str(i): added(p.piece, p.type != _USER_DEFINED)
            for i, p in enumerate(proto.pieces)
            if p.type in (_UNKNOWN, _CONTROL, _USER_DEFINED)
        },
    }
    special_map = {
        f"{name}_token": {k: v for k, v in added(entry["piece"], True).items() if k != "special"}
        for name, entry in special.items()
        if entry is not None
    }
    files = {
        "tokenizer.json": hf_tokenizer(proto).to_str(pretty=True).encode("utf-8"),
        MODEL_FILE: model_bytes,
        "tokenizer_config.json": (json.dumps(config, indent=2) + "\n").encode("utf-8"),
        "special_tokens_map.json": (json.dumps(special_map, indent=2) + "\n").encode("utf-8"),
    }
    for name, data in files.items():
        atomic_write_bytes(join(hf_dir, name), data)
    return [f"{HF_DIR}/{name}" for name in files]


# ---------------------------------------------------------------------------------------
# From a run: the final shards, the mixture weights, and the command
# ---------------------------------------------------------------------------------------


def mixture_weights(run: Run) -> dict[str, float]:
    """Each source's weight: its `mixture` entry's, or 1.0 for a source without one (so
    a manifest without a mixture samples every source equally)."""
    mixture = run.manifest.mixture
    return {name: mixture[name].weight if name in mixture else 1.0 for name in run.sources}


def final_shards(run: Run, output: str | None = None) -> dict[str, list[str]]:
    """The Parquet shards of each source's last step; refuses a run whose last steps are
    not done for the manifest as it is now (a missing shard, or one from old parameters)."""
    plan = build_plan(run, output)
    tasks = build_tasks(plan)
    done = completed(tasks)
    finals = {plan.final_step(source).label for source in plan.inputs}
    shards: dict[str, list[str]] = {source: [] for source in plan.inputs}
    missing: list[str] = []
    for task in tasks:
        if task.step.label in finals and task.phase in ("read", "stage", "apply"):
            shards[task.step.source].append(task.step.part(task.index))
            if task.id not in done:
                missing.append(task.id)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} final shard(s) of {plan.output} are not done ({missing[0]}, ...): "
            f"run `llamix run {run.path}` first"
        )
    return shards


def train_from_run(
    run: Run,
    *,
    output: str | None = None,
    out_dir: str | None = None,
    spec: TokenizerSpec | None = None,
    workers: int = 1,
    progress: bool = False,
) -> str:
    """Samples a run's final shards by the mixture weights and trains on the sample; the
    tokenizer goes to `out_dir` (default `OUT/tokenizer`). Returns the model's path."""
    spec = spec or run.manifest.tokenizer or TokenizerSpec()
    started = time.perf_counter()
    shards = final_shards(run, output)
    weights = mixture_weights(run)
    unit, size = spec.sample_size
    total = sum(map(len, shards.values()))
    if progress:
        print(
            f"sampling {size:,} {unit} from {total} shards of {len(shards)} sources",
            file=sys.stderr,
        )
    merged = 0

    def report(source: str, path: str) -> None:
        nonlocal merged
        merged += 1
        if progress:
            print(f"  [{merged}/{total}] {source}: {path}", file=sys.stderr)

    sample = draw_sample(
        shards,
        weights,
        size,
        unit,
        seed=spec.seed,
        max_sentence_bytes=spec.max_sentence_length,
        workers=workers,
        on_shard=report,
    )
    stats = sample.stats()
    if progress:
        for name, entry in stats["sources"].items():
            print(
                f"  {name}: {entry['documents']:,} documents, {entry['lines']:,} lines, "
                f"{entry['chars']:,} chars (weight {entry['weight']:g}"
                f"{', exhausted' if entry['exhausted'] else ''})",
                file=sys.stderr,
            )
    run_dir = output or run.output
    info = {
        "manifest": run.path,
        "manifest_hash": run.hash,
        "run": run_dir,
        "sample": stats,
        "seconds": {"sample": round(time.perf_counter() - started, 3)},
    }
    target = out_dir or join(run_dir, "tokenizer")
    return train_tokenizer(sample.sentences(), target, spec, info=info, progress=progress)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest YAML (its `tokenizer:` section)")
    parser.add_argument("--out", help="the run directory (default: the manifest's `output`)")
    parser.add_argument("--tokenizer-dir", help="where the tokenizer goes (default: OUT/tokenizer)")
    parser.add_argument("--vocab-size", type=int, help="override tokenizer.vocab_size")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--sample-chars", type=int, help="sample size in characters")
    size.add_argument("--sample-sentences", type=int, help="sample size in lines")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes reading shards (default: every CPU); the sample does not depend on it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


@register_command(
    "tokenizer train",
    "train the SentencePiece BPE tokenizer (LLaMA settings) on a mixture sample of a run",
    _configure,
)
def train_command(args: argparse.Namespace) -> int:
    run = load_manifest(args.manifest)
    spec = run.manifest.tokenizer or TokenizerSpec()
    updates: dict[str, Any] = {}
    if args.vocab_size is not None:
        updates["vocab_size"] = args.vocab_size
    if args.sample_chars is not None:
        updates |= {"sample_chars": args.sample_chars, "sample_sentences": None}
    if args.sample_sentences is not None:
        updates |= {"sample_chars": None, "sample_sentences": args.sample_sentences}
    spec = TokenizerSpec.model_validate({**spec.model_dump(), **updates})
    try:
        model = train_from_run(
            run,
            output=args.out,
            out_dir=args.tokenizer_dir,
            spec=spec,
            workers=args.workers,
            progress=not args.quiet,
        )
    except RuntimeError as err:  # SentencePiece refused (e.g. vocab_size below the charset)
        print(f"error: SentencePiece: {err}", file=sys.stderr)
        return 1
    out = model.rsplit("/", 1)[0]
    print(f"tokenizer written to {out} ({MODEL_FILE}, {VOCAB_FILE}, {HF_DIR}/, {INFO_FILE})")
    return 0
