"""The manifest: one YAML file that declares a whole run, validated before anything runs.

Every problem is reported at once, each with the path of the field it concerns
(`sources.web.stages[2].max_chars: ...`), so a user fixes a manifest in one pass.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import stages  # noqa: F401  (importing it registers every stage and reader)
from stages.base import READERS, STAGES, Reader, Stage, path_fields

SOURCE_NAME = r"^[a-z0-9][a-z0-9_-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReaderSpec(BaseModel):
    """`reader: jsonl` or `reader: {type: jsonl, text_field: content}`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(description=f"One of: {', '.join(sorted(READERS))}.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StageSpec(BaseModel):
    """`- stage: length_filter` followed by that stage's parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)
    stage: str = Field(description="A registered stage name.")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SourceSpec(Strict):
    reader: ReaderSpec
    inputs: list[str] = Field(
        min_length=1,
        description="Paths or globs (local or any fsspec URL), relative to the manifest.",
    )
    stages: list[StageSpec] = Field(default_factory=list)


class MixtureEntry(Strict):
    weight: float = Field(gt=0, description="Sampling proportion (LLaMA Table 1).")
    epochs: float = Field(1.0, gt=0, description="Passes over this source's tokens.")


class TokenizerSpec(Strict):
    """SentencePiece BPE with the LLaMA settings (paper section 2.1).

    The defaults are the trainer settings recorded in LLaMA's own `tokenizer.model`.
    The typed fields are the ones LLaMA fixed; `options` passes any other SentencePiece
    trainer flag through (`{num_sub_iterations: 4, user_defined_symbols: [...]}`), checked
    against sentencepiece's own TrainerSpec/NormalizerSpec schema before anything runs.
    The sample is drawn from the run's final shards by the mixture weights: `sample_chars`
    characters (default 1e9) or `sample_sentences` lines, not both.
    """

    vocab_size: int = Field(32000, ge=256, le=1_000_000)
    model_type: Literal["bpe"] = "bpe"
    character_coverage: float = Field(0.99995, gt=0, le=1)
    split_digits: bool = True
    byte_fallback: bool = True
    allow_whitespace_only_pieces: bool = True
    split_by_unicode_script: bool = True
    max_sentencepiece_length: int = Field(16, ge=1, le=512)
    normalization_rule_name: Literal["identity", "nfkc", "nmt_nfkc", "nfkc_cf", "nmt_nfkc_cf"] = (
        "identity"
    )
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = False
    unk_id: int = Field(0, ge=0)
    bos_id: int = Field(1, ge=-1)
    eos_id: int = Field(2, ge=-1)
    pad_id: int = Field(-1, ge=-1)
    max_sentence_length: int = Field(
        4192, gt=0, description="Longest line in UTF-8 bytes; longer lines are cut at spaces."
    )
    num_threads: int | None = Field(None, ge=1, description="Default: every CPU.")
    seed: int = Field(0, ge=0, description="Salts the sample's hashes; SentencePiece's seed.")
    sample_chars: int | None = Field(None, gt=0, description="Sample size in characters.")
    sample_sentences: int | None = Field(None, gt=0, description="Sample size in lines.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Any other SentencePiece trainer flag."
    )

    @model_validator(mode="after")
    def _check(self) -> TokenizerSpec:
        if self.sample_chars is not None and self.sample_sentences is not None:
            raise ValueError("give sample_chars or sample_sentences, not both")
        problems = [
            p for key, value in self.options.items() if (p := self._option_problem(key, value))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def sample_size(self) -> tuple[Literal["chars", "sentences"], int]:
        """The sample's unit and size."""
        if self.sample_sentences is not None:
            return "sentences", self.sample_sentences
        return "chars", self.sample_chars or 1_000_000_000

    def _option_problem(self, key: str, value: Any) -> str | None:
        """Why `options.key: value` is refused, or None: names come from sentencepiece's
        proto schema, and the value must fit the field's type."""
        from sentencepiece import sentencepiece_model_pb2 as pb

        where = f"options.{key}"
        if key in type(self).model_fields:
            return f"{where}: set tokenizer.{key} instead"
        if key in ("input", "input_format", "model_prefix"):
            return f"{where}: llamix streams the sample and writes the model itself"
        if key == "denormalization_rule_tsv":
            return None if isinstance(value, str) else f"{where}: expected a string"
        if key == "minloglevel":
            return None if type(value) is int else f"{where}: expected an integer"
        for message in (pb.TrainerSpec, pb.NormalizerSpec):
            field = message.DESCRIPTOR.fields_by_name.get(key)
            if field is None or key in ("name", "precompiled_charsmap"):
                continue
            if isinstance(value, str) and field.default_value == []:
                value = value.split(",")  # SentencePiece's comma form of a list flag
            try:
                message(**{key: value})
            except (TypeError, ValueError) as err:
                return f"{where}: {err}"
            return None
        known = [f.name for m in (pb.TrainerSpec, pb.NormalizerSpec) for f in m.DESCRIPTOR.fields]
        return f"{where}: unknown SentencePiece trainer option{_did_you_mean(key, known)}"


class DatasetSpec(Strict):
    add_bos: bool = True
    add_eos: bool = True
    shard_documents: int = Field(100_000, gt=0, description="Documents per token shard.")


class TrainSpec(Strict):
    """The trainer's settings (model/config.py TrainConfig), LLaMA's where it says them."""

    preset: str = Field("tiny", description="Model size preset, e.g. tiny, 1b, llama-7b.")
    seq_len: int = Field(2048, gt=0)
    batch_tokens: int = Field(4_000_000, gt=0, description="Tokens per optimizer step.")
    steps: int = Field(1000, gt=0)
    learning_rate: float | None = Field(None, gt=0, description="Peak LR; default: the preset's.")
    warmup_steps: int = Field(2000, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    seed: int = 0
    vocab_size: int | None = Field(None, gt=0, description="Default: the preset's 32000.")
    micro_batch: int = Field(4, gt=0, description="Sequences per device per forward pass.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine floor, x peak LR.")
    grad_clip: float = Field(1.0, gt=0)
    compile: bool | None = Field(None, description="torch.compile; default: on with CUDA.")
    activation_checkpointing: Literal["none", "selective", "full"] = "none"
    parallelism: Literal["auto", "ddp", "fsdp"] = "auto"
    checkpoint_every: int = Field(1000, ge=0)
    keep_last: int = Field(3, gt=0, description="Checkpoints kept.")
    log_every: int = Field(10, gt=0)
    eval_every: int = Field(1000, ge=0)
    eval_windows: int = Field(16, ge=0, description="Held-out windows per source.")


class Manifest(Strict):
    output: str = Field(description="Run directory, local or fsspec; relative to the manifest.")
    sources: dict[Annotated[str, Field(pattern=SOURCE_NAME)], SourceSpec] = Field(min_length=1)
    mixture: dict[str, MixtureEntry] = Field(default_factory=dict)
    tokenizer: TokenizerSpec | None = None
    dataset: DatasetSpec | None = None
    train: TrainSpec | None = None

    @model_validator(mode="after")
    def _mixture_names_sources(self) -> Manifest:
        unknown = sorted(set(self.mixture) - set(self.sources))
        if unknown:
            raise ValueError(f"mixture names sources that are not declared: {', '.join(unknown)}")
        return self


class ManifestError(Exception):
    """All problems of a manifest, one `field.path: message` line each."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s)\n{lines}")


@dataclass(frozen=True)
class Source:
    """A source with its components built and validated."""

    name: str
    inputs: tuple[str, ...]
    reader: Reader
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class Run:
    """A loaded manifest: the validated model, its components, and where it lives."""

    manifest: Manifest
    path: str
    base_dir: str
    sources: dict[str, Source]

    @property
    def output(self) -> str:
        return resolve_path(self.base_dir, self.manifest.output)

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.manifest.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_path(base_dir: str, path: str) -> str:
    """Manifest paths are relative to the manifest; URLs and absolute paths stay as they are."""
    if "://" in path or Path(path).is_absolute():
        return path
    return str((Path(base_dir) / path).resolve())


def load_manifest(path: str | Path) -> Run:
    """Reads and validates a manifest; raises ManifestError listing every problem."""
    path = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ManifestError(path, ["manifest file not found"]) from None
    except yaml.YAMLError as err:
        raise ManifestError(path, [f"not valid YAML: {err}"]) from None
    return parse_manifest(data, path=path, base_dir=str(Path(path).resolve().parent))


def parse_manifest(data: Any, *, path: str = "<manifest>", base_dir: str = ".") -> Run:
    if not isinstance(data, dict):
        raise ManifestError(path, ["the manifest must be a mapping of sections"])
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        problems = [format_error(e, Manifest) for e in err.errors()]
        problems += _component_problems(data)
        raise ManifestError(path, problems) from None
    problems = _component_problems(data)
    if problems:
        raise ManifestError(path, problems)
    sources = {
        name: Source(
            name=name,
            inputs=tuple(resolve_path(base_dir, p) for p in spec.inputs),
            reader=_build(READERS[spec.reader.type], spec.reader.params, base_dir),
            stages=tuple(_build(STAGES[s.stage], s.params, base_dir) for s in spec.stages),
        )
        for name, spec in manifest.sources.items()
    }
    return Run(manifest=manifest, path=path, base_dir=base_dir, sources=sources)


def _build(component: type[Any], params: dict[str, Any], base_dir: str) -> Any:
    """The component with its parameters; path parameters resolved like `inputs`."""
    validated = component.Params(**params)
    paths = {
        name: resolve_path(base_dir, getattr(validated, name))
        for name in path_fields(validated)
        if getattr(validated, name) is not None
    }
    return component(validated.model_copy(update=paths))


def _component_problems(data: dict[str, Any]) -> list[str]:
    """Validates each reader's and stage's parameters against its own Params model."""
    problems: list[str] = []
    sources = data.get("sources")
    if not isinstance(sources, dict):
        return problems
    for name, spec in sources.items():
        if not isinstance(spec, dict):
            continue
        reader = spec.get("reader")
        if isinstance(reader, str):
            reader = {"type": reader}
        if isinstance(reader, dict) and isinstance(reader.get("type"), str):
            params = {k: v for k, v in reader.items() if k != "type"}
            problems += _check_component(
                f"sources.{name}.reader", reader["type"], params, READERS, "reader"
            )
        for i, entry in enumerate(spec.get("stages") or []):
            if isinstance(entry, dict) and isinstance(entry.get("stage"), str):
                params = {k: v for k, v in entry.items() if k != "stage"}
                problems += _check_component(
                    f"sources.{name}.stages[{i}]", entry["stage"], params, STAGES, "stage"
                )
    return problems


def _check_component(
    prefix: str, kind: str, params: dict[str, Any], registry: dict[str, Any], what: str
) -> list[str]:
    if kind not in registry:
        hint = _did_you_mean(kind, registry)
        return [
            f"{prefix}.{'type' if what == 'reader' else 'stage'}: unknown {what} {kind!r}{hint}"
        ]
    try:
        registry[kind].Params.model_validate(params)
    except ValidationError as err:
        return [format_error(e, registry[kind].Params, prefix) for e in err.errors()]
    return []


def format_error(error: Any, model: type[BaseModel], prefix: str = "") -> str:
    """`sources.web.stages[2].max_chars: Input should be greater than 0` from a pydantic error."""
    loc = list(error["loc"])
    field_path = prefix
    for part in loc:
        field_path += f"[{part}]" if isinstance(part, int) else (f".{part}" if field_path else part)
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        siblings = _fields_at(model, loc[:-1])
        message = f"unknown field{_did_you_mean(str(loc[-1]), siblings)}"
    elif error["type"] == "missing":
        message = "required field is missing"
    return f"{field_path or '<manifest>'}: {message}"


def _fields_at(model: Any, loc: list[Any]) -> list[str]:
    """The field names of the model reached by following `loc` through dicts and lists."""
    current = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strips `X | None` and `Annotated[X, ...]` down to X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation


def _did_you_mean(word: str, candidates: Any) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
