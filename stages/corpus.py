"""Reading a whole corpus for model training (`llamix lm train`, `llamix classifier train`).

Training tools take whatever a user has at hand: a Wikipedia dump, a step's Parquet
output, JSON lines, or a folder of text files. One reader serves them all, so both tools
accept the same inputs and count unreadable files the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from pipeline.inputs import expand_inputs
from pipeline.io import (
    CorruptInput,
    compression_of,
    read_jsonl,
    read_parquet_records,
    read_text_file,
)
from pipeline.stats import Stats
from stages.wikipedia import read_wiki_dump


def read_corpus(patterns: Sequence[str], stats: Stats, text_field: str = "text") -> Iterator[str]:
    """Texts of files, directories or globs: MediaWiki dumps (`.xml[.bz2]`, through the
    wikipedia reader), JSON lines and Parquet (`text_field`; a llamix step's output), and
    anything else as one plain-text document per file. Names starting with "_" or "."
    (a step's `_done` records) are skipped; an unreadable file counts its reason in
    `stats` after the documents read before the break, as in a pipeline's read step."""
    files = expand_inputs(patterns)
    missing = [f.path for f in files if f.missing]
    if missing:
        raise FileNotFoundError(f"no such input: {', '.join(missing)}")
    for file in files:
        if any(part.startswith(("_", ".")) for part in Path(file.name).parts):
            continue
        codec = compression_of(file.path)
        kind = file.path.rsplit(".", 1)[0] if codec else file.path
        if kind.endswith(".xml"):
            docs = read_wiki_dump(file.path, stats=stats)
        elif kind.endswith((".jsonl", ".json", ".ndjson")):
            docs = read_jsonl(file.path, file.name, "", stats, text_field=text_field)
        elif kind.endswith(".parquet"):
            docs = read_parquet_records(file.path, file.name, "", stats, text_field=text_field)
        else:
            docs = read_text_file(file.path, file.name, "", stats)
        try:
            for doc in docs:
                yield doc.text
        except CorruptInput as err:
            stats.drop(err.reason)
