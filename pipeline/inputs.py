"""Input patterns to files: sorted, fingerprinted, with stable relative names.

A source's inputs are paths, directories or globs, local or any fsspec URL. Each file
becomes one shard of the source's read step; its name relative to the inputs' common
root is the stable prefix of its documents' ids, and its size and modification stamp
tell a rerun whether it changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.io import filesystem


def digest(*parts: Any) -> str:
    """A short, stable hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# The fingerprint of a remote pattern that a plan shows without listing it.
UNLISTED = "unlisted"


@dataclass(frozen=True)
class InputFile:
    """One input file of a source; one shard of its read step."""

    path: str
    name: str  # stable, relative: the document id prefix
    fingerprint: str  # size and modification stamp; "missing" when absent

    @property
    def missing(self) -> bool:
        return self.fingerprint == "missing"


_GLOB_CHARS = "*?["


def expand_inputs(patterns: Iterable[str], *, list_remote: bool = True) -> tuple[InputFile, ...]:
    """Expands paths, directories and globs into files, sorted, with stable relative names.

    A pattern that matches nothing is kept as a missing input, so the read step counts it
    (`read:missing_path`) rather than the run silently reading less than asked. Without
    `list_remote`, a remote pattern (`s3://...`) stays one unlisted input, so a plan can be
    checked offline, without credentials or the remote filesystem's package.
    """
    found: dict[str, dict[str, Any] | None] = {}
    unlisted: list[str] = []
    for pattern in patterns:
        if not list_remote and "://" in pattern and not pattern.startswith("file://"):
            unlisted.append(pattern)
            continue
        fs, inner = filesystem(pattern)
        if any(c in inner for c in _GLOB_CHARS):
            matches = sorted(p for p in fs.glob(inner) if fs.isfile(p))
        elif fs.isdir(inner):
            matches = sorted(p for p in fs.find(inner) if fs.isfile(p))
        elif fs.exists(inner):
            matches = [inner]
        else:
            found.setdefault(pattern, None)
            continue
        for match in matches:
            found.setdefault(_with_protocol(fs, pattern, match), fs.info(match))
    paths = sorted(found)
    root = _common_root([p for p in paths if found[p] is not None])
    files = []
    for path in paths:
        info = found[path]
        name = _relative_name(path, root) if info is not None else os.path.basename(path)
        stamp = "missing" if info is None else digest(file_stamp(info))
        files.append(InputFile(path=path, name=name, fingerprint=stamp))
    files += [InputFile(path=p, name=p.split("://", 1)[1], fingerprint=UNLISTED) for p in unlisted]
    return tuple(files)


def _with_protocol(fs: Any, pattern: str, inner: str) -> str:
    return fs.unstrip_protocol(inner) if "://" in pattern else inner


def file_stamp(info: dict[str, Any]) -> dict[str, Any]:
    stamp = {"size": info.get("size")}
    for field in ("mtime", "LastModified", "ETag", "md5Hash", "created"):
        if field in info:
            stamp[field] = str(info[field])
            break
    return stamp


def _common_root(paths: list[str]) -> str:
    if not paths:
        return ""
    if len(paths) == 1:
        return paths[0].rsplit("/", 1)[0]
    return os.path.commonpath([p.split("://", 1)[-1] for p in paths])


def _relative_name(path: str, root: str) -> str:
    bare = path.split("://", 1)[-1]
    return os.path.relpath(bare, root) if root else os.path.basename(bare)
