"""Encoding speed per core, llamix next to Hugging Face `tokenizers` and datatrove, plus
compression of a tokenizer trained by llamix against the reference 32k BPE.

Corpus: every real document of ../shared/data (web pages, UDHR in 65 languages, e-mails,
Wikipedia, a book, LaTeX, code), repeated to `--mb` MB. The vocabulary is the reference
`tokenizers/mistral-bpe-32k.model` (a 32k SentencePiece BPE with byte fallback, as
LLaMA's) for every side:

- llamix: `TokenizeSink.write`, the tokenize step's task body (SentencePiece batch
  encode with one thread, BOS/EOS, Megatron shard writing);
- `tokenizers` (Rust): the same model exported by `tokenizer.train.hf_tokenizer`, which
  gives SentencePiece's ids, `encode_batch` on one Rayon thread.

datatrove 0.10.1's `DocumentTokenizer` is not timed: run offline on that tokenizer.json
over 50 short documents, it grew past 24 GB and was killed by the kernel.

Compression: a 32k tokenizer is trained with llamix's LLaMA settings on 90% of the
documents and compared, in UTF-8 bytes per token on the other 10%, with the reference.

    python benchmarks/tokenize.py [--mb 40] [--repeat 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (which inspect,
# linecache and traceback import) for every script run from this folder: the folder leaves
# the import path before anything else is imported, and siblings import as `benchmarks.*`.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks")]


import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

os.environ["RAYON_NUM_THREADS"] = "1"  # one core for the Rust side too; read at its import


import sentencepiece as spm  # noqa: E402
from sentencepiece import sentencepiece_model_pb2 as sp_model  # noqa: E402

from benchmarks import ccnet  # noqa: E402
from benchmarks.timing import best_of  # noqa: E402
from pipeline.document import Document  # noqa: E402
from pipeline.manifest import TokenizerSpec  # noqa: E402
from pipeline.stats import Stats  # noqa: E402
from tokenizer.encode import TokenizeParams, TokenizeSink  # noqa: E402
from tokenizer.train import hf_tokenizer, train_tokenizer  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"

REFERENCE = SHARED / "tokenizers" / "mistral-bpe-32k.model"


def corpus_texts() -> list[str]:
    texts = [text for _, text in ccnet.real_texts()]
    for pattern in ("latex/*/*.tex", "code/repos/*/*.py", "code/repos/*/*.h"):
        texts += [p.read_text(errors="replace") for p in sorted(SHARED.glob(pattern))]
    return [t for t in texts if t.strip()]


def time_llamix(docs: list[Document], work: Path, repeat: int) -> tuple[float, int]:
    sink = TokenizeSink(TokenizeParams(model=str(REFERENCE)))
    sink.setup()

    def run() -> int:
        return sink.write(iter(docs), str(work / "llamix"), Stats())["tokens"]

    return best_of(repeat, run)


def time_hf(texts: list[str], repeat: int) -> tuple[float, int]:
    proto = sp_model.ModelProto()
    proto.ParseFromString(REFERENCE.read_bytes())
    tokenizer = hf_tokenizer(proto)

    def run() -> int:
        return sum(len(e.ids) + 2 for e in tokenizer.encode_batch(texts, add_special_tokens=False))

    return best_of(repeat, run)


def compression(texts: list[str], work: Path) -> dict[str, float]:
    """UTF-8 bytes per token on held-out documents: ours (trained here) vs the reference."""
    held_out = texts[::10]
    training = [t for n, t in enumerate(texts) if n % 10]
    spec = TokenizerSpec(vocab_size=32000, options={"hard_vocab_limit": False})
    ours = spm.SentencePieceProcessor(model_file=train_tokenizer(training, work / "ours", spec))
    reference = spm.SentencePieceProcessor(model_file=str(REFERENCE))
    size = sum(len(t.encode("utf-8")) for t in held_out)
    result = {}
    for name, sp in (("llamix", ours), ("reference", reference)):
        tokens = sum(len(ids) for ids in sp.encode(held_out))
        result[f"{name}_bytes_per_token"] = round(size / tokens, 3)
        result[f"{name}_vocab"] = sp.vocab_size()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    texts = corpus_texts()
    base_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    corpus = texts * max(1, round(args.mb / base_mb))
    mb = sum(len(t.encode("utf-8")) for t in corpus) / 1e6
    docs = [Document(f"doc-{n}", text, "bench") for n, text in enumerate(corpus)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seconds, tokens = time_llamix(docs, work, args.repeat)
        rows["llamix (TokenizeSink, SentencePiece)"] = (seconds, tokens)
        seconds, tokens = time_hf(corpus, args.repeat)
        rows["tokenizers (Rust), 1 thread"] = (seconds, tokens)
        ratio = compression(texts, work)
    fastest = max(tokens / seconds for seconds, tokens in rows.values())
    print(f"\n{len(corpus)} documents, {mb:.1f} MB, vocabulary mistral-bpe-32k, one core")
    print(f"{'encoder':<40} {'tokens/s':>11} {'MB/s':>7} {'vs fastest':>10}")
    results = {"documents": len(corpus), "mb": round(mb, 1), "encoders": {}}
    for name, (seconds, tokens) in rows.items():
        rate = tokens / seconds
        print(f"{name:<40} {rate:>11,.0f} {mb / seconds:>7.2f} {fastest / rate:>9.2f}x")
        results["encoders"][name] = {
            "tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(rate),
            "slower_than_fastest": round(fastest / rate, 3),
        }
    print(f"\nheld-out bytes/token: {ratio}")
    results["compression"] = ratio
    out = ROOT / "benchmarks" / "results" / "tokenize.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
