"""GitHub code: readers, the licence filter, RedPajama's code-quality rules, header removal.

LLaMA (Touvron et al. 2023, §2.1, "GitHub") used the public GitHub dataset on Google
BigQuery, "kept only projects that are distributed under the Apache, BSD and MIT
licenses", filtered low-quality files "with heuristics based on the line length or
proportion of alphanumeric characters", removed boilerplate such as headers with regular
expressions, and deduplicated files by exact match (the engine's `exact_dedup`).

- readers `github_rows` (rows of the BigQuery export, JSONL or Parquet) and `github_tree`
  (repository folders on disk, one source file per input file);
- `license_filter`: an allowlist of SPDX licences, ids normalised by `license-expression`;
  the tree reader detects each repository's licence from its licence files
  (`detect_license`), the filter falls back to a file's own `SPDX-License-Identifier:`;
- `code_quality`: RedPajama's thresholds for its GitHub split;
- `strip_header_boilerplate`: licence and copyright comments at the top of a file, and
  never a line of code (RedPajama's regular expressions also delete `#include` lines).
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from license_expression import (
    ExpressionError,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)
from pydantic import Field, field_validator

from pipeline.document import Document
from pipeline.inputs import digest, file_stamp
from pipeline.io import compression_of, filesystem, read_jsonl, read_parquet_records
from pipeline.stats import Stats
from stages.base import Filter, Params, Reader, ReaderParams, Stage, register_reader, register_stage

# ---------------------------------------------------------------------------------------
# Files: extension and language

LANGUAGES: dict[str, str] = {
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".cxx": "C++",
    ".c++": "C++",
    ".hh": "C++",
    ".hpp": "C++",
    ".hxx": "C++",
    ".h++": "C++",
    ".m": "Objective-C",
    ".mm": "Objective-C++",
    ".cs": "C#",
    ".java": "Java",
    ".scala": "Scala",
    ".kt": "Kotlin",
    ".kts": "Kotlin",
    ".swift": "Swift",
    ".go": "Go",
    ".rs": "Rust",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".dart": "Dart",
    ".php": "PHP",
    ".py": "Python",
    ".pyi": "Python",
    ".rb": "Ruby",
    ".pl": "Perl",
    ".pm": "Perl",
    ".pod": "Perl",
    ".perl": "Perl",
    ".sh": "Shell",
    ".bash": "Shell",
    ".zsh": "Shell",
    ".command": "Shell",
    ".ps1": "PowerShell",
    ".psd1": "PowerShell",
    ".psm1": "PowerShell",
    ".bat": "Batchfile",
    ".cmd": "Batchfile",
    ".r": "R",
    ".jl": "Julia",
    ".lua": "Lua",
    ".hs": "Haskell",
    ".ml": "OCaml",
    ".mli": "OCaml",
    ".erl": "Erlang",
    ".ex": "Elixir",
    ".exs": "Elixir",
    ".clj": "Clojure",
    ".el": "Emacs Lisp",
    ".lisp": "Common Lisp",
    ".scm": "Scheme",
    ".f": "Fortran",
    ".for": "Fortran",
    ".fpp": "Fortran",
    ".f77": "Fortran",
    ".f90": "Fortran",
    ".f95": "Fortran",
    ".f03": "Fortran",
    ".f08": "Fortran",
    ".vb": "Visual Basic",
    ".asm": "Assembly",
    ".smali": "Smali",
    ".sql": "SQL",
    ".cmake": "CMake",
    ".dockerfile": "Dockerfile",
    ".css": "CSS",
    ".html": "HTML",
    ".htm": "HTML",
    ".xml": "XML",
    ".md": "Markdown",
    ".markdown": "Markdown",
    ".rst": "reStructuredText",
    ".tex": "TeX",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".toml": "TOML",
    "Makefile": "Makefile",
    "GNUmakefile": "Makefile",
    "Dockerfile": "Dockerfile",
    "CMakeLists.txt": "CMake",
}


def file_extension(path: str) -> str:
    """Lower-case suffix (`.py`), or the whole name of files known by name (`Makefile`)."""
    name = posixpath.basename(path)
    if name in LANGUAGES:
        return name
    return posixpath.splitext(name)[1].lower()


def file_language(path: str) -> str | None:
    return LANGUAGES.get(file_extension(path))


# ---------------------------------------------------------------------------------------
# Licences

DEFAULT_ALLOWED_LICENSES = ("MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0")

_SPDX_LINE = re.compile(
    r"SPDX-License-Identifier:[ \t]*(.*?)[ \t]*(?:\*/|-->|\*\)|-\}|#>)?[ \t]*\r?$", re.M
)
# SPDX tags sit in a file's first lines; reading only the head keeps a scan cheap.
_SPDX_HEAD_CHARS = 4096


@lru_cache(maxsize=1)
def _licensing() -> Licensing:
    return get_spdx_licensing()


@lru_cache(maxsize=4096)
def normalize_license(value: str) -> str | None:
    """A licence string as a canonical SPDX expression, or None when it names no known licence.

    BigQuery's `licenses` table spells ids in lower case (`mit`, `apache-2.0`, `gpl-2.0`);
    deprecated ids become current ones (`GPL-2.0` -> `GPL-2.0-only`, `GPL-2.0+` ->
    `GPL-2.0-or-later`), and exceptions are kept (`GPL-2.0-only WITH Linux-syscall-note`).
    """
    try:
        expression = _licensing().parse(value, validate=True)
    except ExpressionError:
        return None
    return expression.render() if expression is not None else None


def spdx_identifier(text: str) -> str | None:
    """The expression of the first `SPDX-License-Identifier:` tag at the top of `text`."""
    match = _SPDX_LINE.search(text, 0, _SPDX_HEAD_CHARS)
    return match.group(1) if match and match.group(1) else None


def license_allowed(expression: str, allowed: frozenset[str]) -> bool:
    """Whether a normalised expression may be used given allowed SPDX ids.

    `A OR B` needs one allowed choice, `A AND B` both; an exception only adds permissions,
    so `Apache-2.0 WITH LLVM-exception` is as allowed as `Apache-2.0`.
    """
    licensing = _licensing()

    def allowed_node(node: Any) -> bool:
        if isinstance(node, LicenseWithExceptionSymbol):
            return node.license_symbol.key in allowed
        if isinstance(node, LicenseSymbol):
            return node.key in allowed
        if isinstance(node, licensing.OR):
            return any(allowed_node(arg) for arg in node.args)
        return all(allowed_node(arg) for arg in node.args)

    return allowed_node(licensing.parse(expression))


def _license_families(expression: str) -> frozenset[str]:
    """Licence keys without `-only`/`-or-later` and without exceptions: GPL-2.0, MIT."""

    def keys(node: Any) -> Iterator[str]:
        if isinstance(node, LicenseWithExceptionSymbol):
            yield node.license_symbol.key
        elif isinstance(node, LicenseSymbol):
            yield node.key
        else:
            for arg in node.args:
                yield from keys(arg)

    parsed = _licensing().parse(expression)
    return frozenset(re.sub(r"-(?:only|or-later)$", "", key) for key in keys(parsed))


def _normal_words(text: str) -> str:
    """Lower case, and every run of other characters than letters, digits, `.` and `+` made
    one space, so phrases match across line breaks, comment marks and punctuation."""
    return " ".join(re.findall(r"[a-z0-9.+]+", text.lower()))


_BSD = "redistribution and use in source and binary forms"
# (SPDX id, pattern over `_normal_words`, only in the head). First match wins: licences
# that name others come first (MPL-2.0 and EPL-2.0 name the GNU licences as secondary
# ones, the LGPL names the GPL), and the GNU titles count only in the head, where a title
# stands (the GPL's own text ends by naming the LGPL).
_LICENSE_RULES: tuple[tuple[str, re.Pattern[str], bool], ...] = tuple(
    (spdx, re.compile(pattern), head)
    for spdx, pattern, head in (
        ("MPL-2.0", r"mozilla public license (?:version|v\.?) 2\.0", False),
        ("MPL-1.1", r"mozilla public license version 1\.1", False),
        ("EPL-2.0", r"eclipse public license v ?2\.0", False),
        ("EPL-1.0", r"eclipse public license v ?1\.0", False),
        ("AGPL-3.0-only", r"gnu affero general public license version 3", True),
        ("LGPL-3.0-only", r"gnu lesser general public license version 3", True),
        ("LGPL-2.1-only", r"gnu lesser general public license version 2\.1", True),
        ("LGPL-2.0-only", r"gnu library general public license version 2", True),
        ("GPL-3.0-only", r"gnu general public license version 3", True),
        ("GPL-2.0-only", r"gnu general public license version 2", True),
        ("GPL-1.0-only", r"gnu general public license version 1\b", True),
        ("GFDL-1.3-only", r"gnu free documentation license version 1\.3", True),
        ("GFDL-1.2-only", r"gnu free documentation license version 1\.2", True),
        ("Apache-2.0", r"apache license version 2\.0", False),
        ("CC0-1.0", r"cc0 1\.0 universal", False),
        ("Unlicense", r"this is free and unencumbered software released into the public", False),
        ("BSL-1.0", r"boost software license version 1\.0", False),
        ("Artistic-2.0", r"artistic license 2\.0", False),
        ("Artistic-1.0", r"the artistic license preamble the intent of this document", False),
        ("WTFPL", r"do what the fuck you want to public license", False),
        (
            "ISC",
            r"permission to use copy modify and or distribute this software for any purpose "
            r"with or without fee is hereby granted",
            False,
        ),
        (
            "MIT",
            r"permission is hereby granted free of charge to any person obtaining a copy",
            False,
        ),
        (
            "BSD-4-Clause",
            rf"^(?=.*{_BSD})(?=.*all advertising materials mentioning features)",
            False,
        ),
        (
            "BSD-3-Clause",
            rf"^(?=.*{_BSD})(?=.*(?:neither the name|may not be used to endorse or promote))",
            False,
        ),
        ("BSD-2-Clause", _BSD, False),
        (
            "Zlib",
            r"^(?=.*provided as is without any express or implied warranty)"
            r"(?=.*altered source versions must be plainly marked)",
            False,
        ),
    )
)
_HEAD_CHARS = 3000


def identify_license_text(text: str) -> str | None:
    """The SPDX id of a licence file's text, by each licence's distinctive phrases (BSD-3
    is BSD-2 plus "Neither the name of"), else the file's `SPDX-License-Identifier:`."""
    words = _normal_words(text)
    head = words[:_HEAD_CHARS]
    for spdx, pattern, head_only in _LICENSE_RULES:
        if pattern.search(head if head_only else words):
            return spdx
    tagged = spdx_identifier(text)
    return normalize_license(tagged) if tagged else None


_LICENSE_FILE = re.compile(r"(?:licen[cs]e|copying|unlicense)(?:[-_.][\w.-]*)?", re.I)
_DOC_SUFFIXES = frozenset({"", ".txt", ".md", ".markdown", ".rst", ".html", ".tex", ".xml"})


def is_license_file(name: str) -> bool:
    """LICENSE, LICENSE.txt, LICENCE.md, COPYING, COPYING.LESSER, LICENSE-MIT, UNLICENSE...;
    not a module that happens to be called `license.py`."""
    if not _LICENSE_FILE.fullmatch(name):
        return False
    suffix = posixpath.splitext(name)[1].lower()
    return suffix in _DOC_SUFFIXES or suffix not in LANGUAGES


# A repository's files sampled for SPDX tags: the first ones in path order, heads only,
# so a huge repository costs no more than a small one.
_SPDX_SAMPLE_FILES = 256
_MAX_LICENSE_BYTES = 1 << 20


def _license_files(fs: Any, repo_dir: str) -> list[dict[str, Any]]:
    entries = fs.ls(repo_dir, detail=True)
    found = [
        e
        for e in entries
        if e.get("type") == "file" and is_license_file(posixpath.basename(e["name"]))
    ]
    return sorted(found, key=lambda e: e["name"])


def _read_head(fs: Any, path: str, size: int) -> str:
    with fs.open(path, "rb") as handle:
        return handle.read(size).decode("utf-8", errors="replace")


def _license_of_files(fs: Any, files: list[dict[str, Any]]) -> str | None:
    """The licence the repository's licence files name together.

    Several distinct licences are joined with AND (all apply), except that the GPL text
    an LGPL project ships beside it (COPYING + COPYING.LESSER) is the LGPL's base, not a
    second licence.
    """
    found = {identify_license_text(_read_head(fs, f["name"], _MAX_LICENSE_BYTES)) for f in files}
    ids = sorted(i for i in found if i)
    if any(i.startswith("LGPL-") for i in ids):
        ids = [i for i in ids if not i.startswith("GPL-")]
    return normalize_license(" AND ".join(ids)) if ids else None


def _license_of_tags(fs: Any, repo_dir: str) -> str | None:
    """The most common `SPDX-License-Identifier:` among the repository's first source files."""
    tags: Counter[str] = Counter()
    sampled = 0
    for path in sorted(fs.find(repo_dir)):
        relative = posixpath.relpath(path, repo_dir)
        if sampled >= _SPDX_SAMPLE_FILES:
            break
        if relative.startswith(".") or "/." in relative or file_language(path) is None:
            continue
        sampled += 1
        tag = spdx_identifier(_read_head(fs, path, _SPDX_HEAD_CHARS))
        expression = normalize_license(tag) if tag else None
        if expression:
            tags[expression] += 1
    if not tags:
        return None
    return min(tags, key=lambda e: (-tags[e], e))


def detect_license(repo_dir: str) -> str | None:
    """The SPDX expression a repository is distributed under, or None when none is found.

    The licence files at its root decide (`identify_license_text`). Its files' SPDX tags
    refine that when they name the same licence (the Linux headers: a GPL-2.0 COPYING,
    files tagged `GPL-2.0 WITH Linux-syscall-note`), and stand alone when the repository
    has no licence file; tags naming another licence than the licence file are ignored
    (a vendored MIT header in an LGPL tree does not relicense the tree).
    """
    fs, inner = filesystem(repo_dir)
    from_files = _license_of_files(fs, _license_files(fs, inner))
    from_tags = _license_of_tags(fs, inner)
    if from_files is None:
        return from_tags
    if from_tags and _license_families(from_tags) == _license_families(from_files):
        return from_tags
    return from_files


@lru_cache(maxsize=256)
def _cached_license(repo_dir: str, stamp: str) -> str | None:
    """`detect_license` once per repository and worker; `stamp` covers its licence files."""
    return detect_license(repo_dir)


class LicenseFilterParams(Params):
    allowed: tuple[str, ...] = Field(
        DEFAULT_ALLOWED_LICENSES,
        min_length=1,
        description="SPDX ids to keep (LLaMA: Apache, BSD and MIT). Any spelling "
        "license-expression knows (`mit`, `GPL-2.0`) is normalised.",
    )

    @field_validator("allowed")
    @classmethod
    def _known_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        normalised = []
        for spdx in value:
            expression = normalize_license(spdx)
            if expression is None or " " in expression:
                raise ValueError(f"{spdx!r} is not a known SPDX licence id (e.g. MIT, Apache-2.0)")
            normalised.append(expression)
        return tuple(sorted(set(normalised)))


@register_stage
class LicenseFilter(Stage):
    """Keeps files whose licence is allowed; records the normalised SPDX expression in
    meta `license`.

    The licence is meta `license` (the BigQuery export's, or what `github_tree` detected);
    when absent or unknown, the file's own `SPDX-License-Identifier:` tag. Drops
    `license_filter:unknown` (no licence found) and `license_filter:not_allowed`; histogram
    `license` of every file seen.
    """

    name = "license_filter"
    Params = LicenseFilterParams

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        allowed = frozenset(self.params.allowed)
        for doc in docs:
            expression = self._license_of(doc)
            stats.histogram("license", expression or "unknown")
            if expression is None:
                stats.drop(f"{self.name}:unknown")
            elif not license_allowed(expression, allowed):
                stats.drop(f"{self.name}:not_allowed")
            else:
                yield Document(doc.id, doc.text, doc.source, {**doc.meta, "license": expression})

    @staticmethod
    def _license_of(doc: Document) -> str | None:
        given = doc.meta.get("license")
        if isinstance(given, str) and (expression := normalize_license(given)):
            return expression
        tagged = spdx_identifier(doc.text)
        return normalize_license(tagged) if tagged else None


# ---------------------------------------------------------------------------------------
# Readers


def _file_meta(repo: str | None, path: str | None) -> dict[str, Any]:
    where = path or ""
    return {
        "repo": repo,
        "path": path,
        "extension": file_extension(where),
        "language": file_language(where),
    }


class GithubRowsParams(ReaderParams):
    text_field: str = Field("content", description="The column holding the file's text.")


@register_reader
class GithubRowsReader(Reader):
    """Rows shaped like BigQuery's `github_repos` export (`repo_name`, `path`, `content`,
    `license`, ...), as JSON lines (plain, `.gz`, `.zst`) or Parquet.

    Id `repo_name/path`; every column goes to meta, plus `repo`, `extension`, `language`
    derived from them (the row's own columns win). Drops `github_rows:binary` (a NUL byte,
    or the export's `binary` flag) and `github_rows:invalid_utf8` (lone surrogates escaped
    in JSON); rows without text count as `read:missing_text`.
    """

    name = "github_rows"
    Params = GithubRowsParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        for doc in self._records(path, doc_id, source, stats):
            row = doc.meta
            if row.get("binary") is True or "\0" in doc.text:
                stats.drop(f"{self.name}:binary")
                continue
            try:
                doc.text.encode("utf-8")
            except UnicodeEncodeError:
                stats.drop(f"{self.name}:invalid_utf8")
                continue
            repo = row.get("repo_name") if isinstance(row.get("repo_name"), str) else None
            file_path = row.get("path") if isinstance(row.get("path"), str) else None
            meta = {**_file_meta(repo, file_path), **row}
            own_id = f"{repo}/{file_path}" if repo and file_path else doc.id
            yield Document(own_id, doc.text, source, meta)

    def _records(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        stem = path.rsplit(".", 1)[0] if compression_of(path) else path
        if stem.endswith(".parquet"):
            return read_parquet_records(
                path, doc_id, source, stats, text_field=self.params.text_field
            )
        return read_jsonl(
            path,
            doc_id,
            source,
            stats,
            text_field=self.params.text_field,
            max_document_bytes=self.params.max_document_bytes,
        )


@register_reader
class GithubTreeReader(Reader):
    """Repository trees on disk, one source file per input file (the engine's shard).

    The inputs are a repository folder or a folder of them. A file's repository is the
    nearest folder above it, up to the inputs' root, that holds a licence file; without
    one, the root's direct child that holds the file. Meta: `repo`, `path` (inside the
    repository), `extension`, `language` and, when `detect_license` finds it, `license`.
    Id `repo/path`. Licence files are the licence, not code: skipped as
    `github_tree:license_file`. Drops `github_tree:binary` (a NUL byte),
    `github_tree:invalid_utf8`, `read:empty_file`, `read:document_too_large`.
    """

    name = "github_tree"

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        if is_license_file(posixpath.basename(path)):
            stats.drop(f"{self.name}:license_file")
            return
        fs, inner = filesystem(path)
        with fs.open(inner, "rb") as handle:  # raw bytes: a `.gz` in a repository stays one
            data = handle.read(self.params.max_document_bytes + 1)
        if len(data) > self.params.max_document_bytes:
            stats.drop("read:document_too_large")
            return
        if not data:
            stats.drop("read:empty_file")
            return
        if b"\0" in data:
            stats.drop(f"{self.name}:binary")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            stats.drop(f"{self.name}:invalid_utf8")
            return
        root = (
            inner[: -len(doc_id) - 1] if inner.endswith("/" + doc_id) else posixpath.dirname(inner)
        )
        repo_dir = _repository_of(fs, inner, root, doc_id)
        # Names are relative to the folder holding the repositories: the root's parent when
        # the root is itself a repository (one repository given alone).
        base = posixpath.dirname(root) if _license_files(fs, root) else root
        repo = posixpath.basename(root) if repo_dir == base else posixpath.relpath(repo_dir, base)
        meta = _file_meta(repo, posixpath.relpath(inner, repo_dir))
        licence_stamp = digest([file_stamp(f) for f in _license_files(fs, repo_dir)])
        repo_path = fs.unstrip_protocol(repo_dir) if "://" in path else repo_dir
        licence = _cached_license(repo_path, licence_stamp)
        if licence is not None:
            meta["license"] = licence
        yield Document(f"{repo}/{meta['path']}", text, source, meta)


def _repository_of(fs: Any, path: str, root: str, name: str) -> str:
    """The folder of `path`'s repository: see `GithubTreeReader`."""
    folder = posixpath.dirname(path)
    while len(folder) >= len(root):
        if _license_files(fs, folder):
            return folder
        if folder == root:
            break
        folder = posixpath.dirname(folder)
    return posixpath.join(root, name.split("/", 1)[0]) if "/" in name else root


# ---------------------------------------------------------------------------------------
# Code quality

# RedPajama's GitHub allowlist (data_prep/github/github_run_filter.py), compared in lower
# case, plus the languages it lacked: Swift, Kotlin, R, OCaml.
DEFAULT_EXTENSIONS = (
    ".asm", ".bat", ".cmd", ".c", ".h", ".cs", ".cpp", ".hpp", ".c++", ".h++", ".cc", ".hh",
    ".cmake", ".css", ".dockerfile", ".f90", ".f", ".f03", ".f08", ".f77", ".f95", ".for",
    ".fpp", ".go", ".hs", ".html", ".java", ".js", ".jl", ".lua", ".md", ".markdown", ".php",
    ".php3", ".php4", ".php5", ".phps", ".phpt", ".pl", ".pm", ".pod", ".perl", ".ps1",
    ".psd1", ".psm1", ".py", ".rb", ".rs", ".sql", ".scala", ".sh", ".bash", ".command",
    ".zsh", ".ts", ".tsx", ".tex", ".vb", "Dockerfile", "Makefile", ".xml", ".rst", ".m",
    ".smali", ".swift", ".kt", ".kts", ".r", ".ml", ".mli",
)  # fmt: skip


class CodeQualityParams(Params):
    """RedPajama's GitHub thresholds; null turns a rule off."""

    max_line_length: int | None = Field(
        1000, gt=0, description="Drop files with a longer line (line_too_long)."
    )
    max_mean_line_length: float | None = Field(
        100, gt=0, description="Drop files whose mean line length is above (mean_line_too_long)."
    )
    min_alphanumeric_fraction: float | None = Field(
        0.25,
        ge=0,
        le=1,
        description="Drop files with a smaller share of alphanumeric characters "
        "(low_alphanumeric).",
    )
    extensions: tuple[str, ...] | None = Field(
        DEFAULT_EXTENSIONS,
        description="Keep only these suffixes (`.py`) and names (`Makefile`) "
        "(extension_not_allowed); default RedPajama's list.",
    )

    @field_validator("extensions")
    @classmethod
    def _lower_suffixes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        return tuple(sorted({e.lower() if e.startswith(".") else e for e in value}))


def code_quality_reason(text: str, path: str, params: CodeQualityParams) -> str | None:
    """Why RedPajama's GitHub filter would drop this file, or None to keep it."""
    if params.extensions is not None and file_extension(path) not in params.extensions:
        return "extension_not_allowed"
    lengths = [len(line) for line in text.splitlines()]
    if params.max_line_length is not None and max(lengths, default=0) > params.max_line_length:
        return "line_too_long"
    mean = sum(lengths) / len(lengths) if lengths else 0.0
    if params.max_mean_line_length is not None and mean > params.max_mean_line_length:
        return "mean_line_too_long"
    if params.min_alphanumeric_fraction is not None:
        fraction = sum(map(str.isalnum, text)) / len(text) if text else 0.0
        if fraction < params.min_alphanumeric_fraction:
            return "low_alphanumeric"
    return None


@register_stage
class CodeQuality(Filter):
    """RedPajama's GitHub file filter (LLaMA: "line length or proportion of alphanumeric
    characters"). Not here: its alphanumeric-characters-per-token rule, which needs a
    tokenizer. The path is meta `path`, else the id."""

    name = "code_quality"
    Params = CodeQualityParams

    def keep(self, doc: Document) -> bool | str:
        path = doc.meta.get("path") or doc.id
        return code_quality_reason(doc.text, str(path), self.params) or True


# ---------------------------------------------------------------------------------------
# Header boilerplate


@dataclass(frozen=True)
class CommentSyntax:
    line: tuple[str, ...] = ()  # tokens that open a comment running to the end of the line
    blocks: tuple[tuple[str, str], ...] = ()  # (open, close), looked for before `line`
    preprocessor: bool = False  # C: `_PREPROCESSOR` lines may stand above the header


_C = CommentSyntax(("//",), (("/*", "*/"),), preprocessor=True)
_C_LIKE = CommentSyntax(("//",), (("/*", "*/"),))
_HASH = CommentSyntax(("#",))
_MARKUP = CommentSyntax(blocks=(("<!--", "-->"),))

_C_FAMILY = ("C#", "Java", "Scala", "Kotlin", "Swift", "Go", "Rust", "JavaScript", "TypeScript")
_HASH_FAMILY = ("Python", "Ruby", "Perl", "Shell", "R", "Elixir", "YAML", "TOML", "CMake")
_SYNTAX: dict[str, CommentSyntax] = {
    **dict.fromkeys(("C", "C++", "Objective-C", "Objective-C++"), _C),
    **dict.fromkeys((*_C_FAMILY, "Dart", "CSS"), _C_LIKE),
    "PHP": CommentSyntax(("//", "#"), (("/*", "*/"),)),
    **dict.fromkeys((*_HASH_FAMILY, "Makefile", "Dockerfile"), _HASH),
    "Julia": CommentSyntax(("#",), (("#=", "=#"),)),
    "PowerShell": CommentSyntax(("#",), (("<#", "#>"),)),
    "SQL": CommentSyntax(("--",), (("/*", "*/"),)),
    "Lua": CommentSyntax(("--",), (("--[[", "]]"),)),
    "Haskell": CommentSyntax(("--",), (("{-", "-}"),)),
    "OCaml": CommentSyntax(blocks=(("(*", "*)"),)),
    **dict.fromkeys(("TeX", "Erlang"), CommentSyntax(("%",))),
    **dict.fromkeys(("Emacs Lisp", "Common Lisp", "Scheme", "Clojure"), CommentSyntax((";",))),
    **dict.fromkeys(("Markdown", "HTML", "XML"), _MARKUP),
}

_MENTIONS_LICENSE = re.compile(r"copyright|licen[cs]|spdx|all rights reserved|©", re.I)
# Kept above the header whatever it is: a shebang, PHP's opening tag, an XML declaration.
_PRELUDE = re.compile(r"#!|<\?php\b|<\?xml\b")
# Preprocessor lines (include guards, `#pragma once`) and `extern "C" {`: code that may
# stand above a C header's licence comment; kept, and the header is still looked for.
_PREPROCESSOR = re.compile(r'#|extern\s+"C"\s*\{')
# Comments that are instructions to a tool, not prose: kept even inside a licence block.
_DIRECTIVE = re.compile(
    r"""(?:\#|//|--|%|;)\s*(?:
        .*-\*-.*-\*-                               # Emacs modeline, coding cookie
      | .*coding[:=]\s*[-\w.]+                     # PEP 263
      | vim?: | ex:
      | (?:type|mypy|pylint|flake8|fmt|isort|cython|pyright|ruff|tslint|encoding):
      | noqa | frozen_string_literal: | warn_indent:
      | go:build | \+build | go:generate | swift-tools-version
      | eslint | jshint | @ts- | @flow | prettier-ignore | nolint | clang-format | shellcheck
    )""",
    re.I | re.X,
)


def _syntax_of(path: str) -> CommentSyntax | None:
    language = file_language(path)
    return _SYNTAX.get(language) if language else None


def _block_end(lines: list[str], start: int, opener: str, closer: str) -> tuple[int, int] | None:
    """(line, column after the closer) of the block comment opening on `lines[start]`."""
    column = lines[start].index(opener) + len(opener)
    for index in range(start, len(lines)):
        found = lines[index].find(closer, column if index == start else 0)
        if found >= 0:
            return index, found + len(closer)
    return None


def strip_header_boilerplate(text: str, path: str) -> str:
    """`text` without the licence and copyright comments at its top; code is never touched.

    The top of a file is read comment block by comment block (a `/* */`-style block, or a
    run of line comments up to a blank line); a block that mentions copyright, a licence or
    SPDX is removed, any other block stays (it describes the file). Reading stops at the
    first line of code. Kept above the header: a shebang, `<?php`, C's preprocessor lines;
    kept inside it: tool directives (`# -*- coding`, `//go:build`, `# type:`). The comment
    syntax comes from the extension, so `#include` in C and `# Title` in Markdown are code;
    files of unknown type, and Python docstrings (they are code: `__doc__`), are unchanged.
    """
    syntax = _syntax_of(path)
    if syntax is None:
        return text
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    index = 1 if lines and _PRELUDE.match(lines[0]) else 0
    kept += lines[:index]
    removed = after_removed = False
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped:
            if not after_removed:
                kept.append(lines[index])
            index += 1
            continue
        block = next(((o, c) for o, c in syntax.blocks if stripped.startswith(o)), None)
        if block is not None:
            end = _block_end(lines, index, *block)
            if end is None:  # unterminated: not a header, leave the file as it is
                break
            last, column = end
            comment = lines[index : last + 1]
            if not _MENTIONS_LICENSE.search("".join(comment)):
                kept += comment
                after_removed = False
                index = last + 1
                continue
            removed = after_removed = True
            index = last + 1
            rest = lines[last][column:]
            if rest.strip():  # code after the closer on its line
                kept.append(rest.lstrip())
                break
            continue
        if syntax.line and stripped.startswith(syntax.line):
            run_end = index
            while run_end < len(lines):
                line = lines[run_end].strip()
                if not line or not line.startswith(syntax.line):
                    break
                run_end += 1
            run = lines[index:run_end]
            if _MENTIONS_LICENSE.search("".join(run)):
                directives = [line for line in run if _DIRECTIVE.match(line.strip())]
                kept += directives
                removed = True
                after_removed = not directives
            else:
                kept += run
                after_removed = False
            index = run_end
            continue
        if syntax.preprocessor and _PREPROCESSOR.match(stripped):
            kept.append(lines[index])
            after_removed = False
            index += 1
            continue
        break
    if not removed:
        return text
    return "".join(kept) + "".join(lines[index:])


@register_stage
class StripHeaderBoilerplate(Stage):
    """Removes licence and copyright headers (`strip_header_boilerplate`); counts
    `strip_header_boilerplate:headers_removed`; a file that was only a header drops as
    `strip_header_boilerplate:empty`. The path is meta `path`, else the id."""

    name = "strip_header_boilerplate"

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        for doc in docs:
            text = strip_header_boilerplate(doc.text, str(doc.meta.get("path") or doc.id))
            if text != doc.text:
                stats.count(f"{self.name}:headers_removed")
            if text.strip():
                yield Document(doc.id, text, doc.source, doc.meta)
            else:
                stats.drop(f"{self.name}:empty")
