"""The GitHub source: readers, licence detection and filter, code quality, header removal.

Real-data tests run over the 8 repository trees in ../shared/data/code/repos, each with its
real licence file; licence texts also come from Debian's /usr/share/common-licenses.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.document import Document
from pipeline.inputs import expand_inputs
from pipeline.io import iter_parquet
from pipeline.manifest import ManifestError, load_manifest, parse_manifest
from pipeline.runner import run_pipeline
from pipeline.stats import Stats
from stages.base import READERS, STAGES
from stages.github import (
    CodeQuality,
    CodeQualityParams,
    GithubRowsReader,
    GithubTreeReader,
    LicenseFilter,
    LicenseFilterParams,
    StripHeaderBoilerplate,
    code_quality_reason,
    detect_license,
    identify_license_text,
    is_license_file,
    license_allowed,
    normalize_license,
    spdx_identifier,
    strip_header_boilerplate,
)

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "github.yaml"
COMMON_LICENSES = Path("/usr/share/common-licenses")

REPO_LICENSES = {
    "attrs": "MIT",
    "click": "BSD-3-Clause",
    "jinja2": "BSD-3-Clause",
    "requests": "Apache-2.0",
    "urllib3": "MIT",
    "networkx": "BSD-3-Clause",
    "linux-uapi": "GPL-2.0-only WITH Linux-syscall-note",
    "glibc-headers": "LGPL-2.1-only",
}
PERMISSIVE = {"attrs", "click", "jinja2", "requests", "urllib3", "networkx"}

MIT_TEXT = """MIT License

Copyright (c) 2024 Example Authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
"""

INCLUDE_OR_DEFINE = re.compile(r"^\s*#\s*(?:include|define)\b")


@pytest.fixture(scope="module")
def repos(shared_data: Path) -> Path:
    return shared_data / "code" / "repos"


def read_tree(inputs: list[str]) -> tuple[list[Document], Stats]:
    """The tree reader over inputs expanded as the engine expands them, one file a shard."""
    stats = Stats()
    reader = GithubTreeReader()
    docs = [
        doc for f in expand_inputs(inputs) for doc in reader.read(f.path, f.name, "github", stats)
    ]
    return docs, stats


def common_license(name: str) -> str:
    path = COMMON_LICENSES / name
    if not path.is_file():
        pytest.skip(f"{path} not installed (Debian's base-files)")
    return path.read_text(encoding="utf-8", errors="replace")


# ---------------------------------------------------------------------------------------
# Licence ids


@pytest.mark.parametrize(
    ("given", "spdx"),
    [
        ("mit", "MIT"),
        ("apache-2.0", "Apache-2.0"),
        ("bsd-3-clause", "BSD-3-Clause"),
        ("bsd-2-clause", "BSD-2-Clause"),
        ("gpl-2.0", "GPL-2.0-only"),
        ("gpl-3.0", "GPL-3.0-only"),
        ("lgpl-2.1", "LGPL-2.1-only"),
        ("lgpl-3.0", "LGPL-3.0-only"),
        ("agpl-3.0", "AGPL-3.0-only"),
        ("mpl-2.0", "MPL-2.0"),
        ("epl-1.0", "EPL-1.0"),
        ("isc", "ISC"),
        ("unlicense", "Unlicense"),
        ("artistic-2.0", "Artistic-2.0"),
        ("cc0-1.0", "CC0-1.0"),
    ],
)
def test_bigquery_license_strings_normalise_to_spdx_ids(given: str, spdx: str) -> None:
    assert normalize_license(given) == spdx


def test_license_exceptions_and_deprecated_ids_normalise() -> None:
    assert normalize_license("GPL-2.0 WITH Linux-syscall-note") == (
        "GPL-2.0-only WITH Linux-syscall-note"
    )
    assert normalize_license("GPL-2.0+ WITH Linux-syscall-note") == (
        "GPL-2.0-or-later WITH Linux-syscall-note"
    )
    assert normalize_license("MIT OR Apache-2.0") == "MIT OR Apache-2.0"


@pytest.mark.parametrize("given", ["other", "NOASSERTION", "", "MIT AND", "GPL-2.0 WITH nothing"])
def test_strings_naming_no_known_licence_normalise_to_none(given: str) -> None:
    assert normalize_license(given) is None


@pytest.mark.parametrize(
    ("expression", "allowed"),
    [
        ("MIT", True),
        ("GPL-2.0-only", False),
        ("MIT OR GPL-3.0-only", True),
        ("MIT AND GPL-3.0-only", False),
        ("MIT AND Apache-2.0", True),
        ("Apache-2.0 WITH LLVM-exception", True),
        ("GPL-2.0-only WITH Linux-syscall-note", False),
    ],
)
def test_expressions_are_allowed_by_their_operators(expression: str, allowed: bool) -> None:
    permissive = frozenset(LicenseFilterParams().allowed)
    assert license_allowed(expression, permissive) is allowed


def test_allowlist_is_normalised_and_unknown_ids_are_refused() -> None:
    assert LicenseFilterParams(allowed=("mit", "GPL-2.0")).allowed == ("GPL-2.0-only", "MIT")
    spec = {
        "output": "out",
        "sources": {
            "code": {
                "reader": "github_tree",
                "inputs": ["repos"],
                "stages": [{"stage": "license_filter", "allowed": ["MIT", "Expat-ish"]}],
            }
        },
    }
    with pytest.raises(ManifestError, match=r"stages\[0\]\.allowed.*Expat-ish"):
        parse_manifest(spec)


def test_spdx_tag_is_read_without_its_comment_closer() -> None:
    text = "/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */\n#ifndef X\n"
    assert spdx_identifier(text) == "GPL-2.0 WITH Linux-syscall-note"
    assert spdx_identifier("# SPDX-License-Identifier: MIT\r\nimport os\r\n") == "MIT"
    assert spdx_identifier("<!-- SPDX-License-Identifier: CC0-1.0 -->\n# Title\n") == "CC0-1.0"
    assert spdx_identifier("import os\n") is None


@pytest.mark.parametrize(
    ("name", "is_license"),
    [
        ("LICENSE", True),
        ("LICENSE.txt", True),
        ("LICENCE.md", True),
        ("COPYING", True),
        ("COPYING.LESSER", True),
        ("LICENSE-MIT", True),
        ("UNLICENSE", True),
        ("license.py", False),
        ("licenses.go", False),
        ("README.md", False),
    ],
)
def test_licence_files_are_known_by_name(name: str, is_license: bool) -> None:
    assert is_license_file(name) is is_license


# ---------------------------------------------------------------------------------------
# Licence detection


@pytest.mark.parametrize(
    ("name", "spdx"),
    [
        ("Apache-2.0", "Apache-2.0"),
        ("BSD", "BSD-3-Clause"),
        ("CC0-1.0", "CC0-1.0"),
        ("GPL-1", "GPL-1.0-only"),
        ("GPL-2", "GPL-2.0-only"),
        ("GPL-3", "GPL-3.0-only"),
        ("LGPL-2", "LGPL-2.0-only"),
        ("LGPL-2.1", "LGPL-2.1-only"),
        ("LGPL-3", "LGPL-3.0-only"),
        ("MPL-1.1", "MPL-1.1"),
        ("MPL-2.0", "MPL-2.0"),
        ("GFDL-1.3", "GFDL-1.3-only"),
    ],
)
def test_debian_reference_texts_are_identified(name: str, spdx: str) -> None:
    assert identify_license_text(common_license(name)) == spdx


def test_bsd_without_the_endorsement_clause_is_bsd_2_clause() -> None:
    bsd3 = common_license("BSD")
    clause = bsd3.index("3. Neither the name")
    bsd2 = bsd3[:clause] + bsd3[bsd3.index("THIS SOFTWARE IS PROVIDED") :]
    assert identify_license_text(bsd2) == "BSD-2-Clause"


def test_gpl_beside_lgpl_is_the_lgpl_base_not_a_second_licence(tmp_path: Path) -> None:
    (tmp_path / "COPYING").write_text(common_license("GPL-3"))
    (tmp_path / "COPYING.LESSER").write_text(common_license("LGPL-3"))
    assert detect_license(str(tmp_path)) == "LGPL-3.0-only"


def test_two_licence_files_of_different_licences_both_apply(tmp_path: Path) -> None:
    (tmp_path / "LICENSE-MIT").write_text(MIT_TEXT)
    (tmp_path / "LICENSE-GPL").write_text(common_license("GPL-3"))
    assert detect_license(str(tmp_path)) == "GPL-3.0-only AND MIT"


def test_without_licence_file_the_files_spdx_tags_decide(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text("// SPDX-License-Identifier: BSD-2-Clause\nint a;\n")
    (tmp_path / "b.c").write_text("// SPDX-License-Identifier: BSD-2-Clause\nint b;\n")
    (tmp_path / "c.c").write_text("// SPDX-License-Identifier: MIT\nint c;\n")
    assert detect_license(str(tmp_path)) == "BSD-2-Clause"


def test_repository_without_any_licence_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print('hello')\n")
    assert detect_license(str(tmp_path)) is None


@pytest.mark.parametrize("repo", sorted(REPO_LICENSES))
def test_detector_names_each_real_repository_licence(repos: Path, repo: str) -> None:
    assert detect_license(str(repos / repo)) == REPO_LICENSES[repo]


# ---------------------------------------------------------------------------------------
# The licence filter


def _filter(docs: list[Document], **params: object) -> tuple[list[Document], Stats]:
    stats = Stats()
    stage = LicenseFilter(LicenseFilterParams(**params))
    return list(stage.process(iter(docs), stats)), stats


def test_given_licence_is_normalised_into_meta() -> None:
    kept, _ = _filter([Document("r/a.py", "x = 1\n", "github", {"license": "mit"})])
    assert [d.meta["license"] for d in kept] == ["MIT"]


def test_copyleft_licence_is_dropped_as_not_allowed() -> None:
    kept, stats = _filter([Document("r/a.c", "int a;\n", "github", {"license": "gpl-2.0"})])
    assert kept == []
    assert stats.drops == {"license_filter:not_allowed": 1}
    assert stats.histograms["license"] == {"GPL-2.0-only": 1}


def test_without_licence_field_the_files_spdx_tag_decides() -> None:
    doc = Document("r/a.js", "// SPDX-License-Identifier: Apache-2.0\nlet a;\n", "github", {})
    kept, _ = _filter([doc])
    assert kept[0].meta["license"] == "Apache-2.0"


def test_file_without_any_licence_is_dropped_as_unknown() -> None:
    docs = [
        Document("r/a.py", "x = 1\n", "github", {}),
        Document("r/b.py", "y = 2\n", "github", {"license": "other"}),
    ]
    kept, stats = _filter(docs)
    assert kept == []
    assert stats.drops == {"license_filter:unknown": 2}


def test_filter_keeps_exactly_the_permissive_repositories(repos: Path) -> None:
    docs, _ = read_tree([str(repos)])
    kept, stats = _filter(docs)
    assert {d.meta["repo"] for d in kept} == PERMISSIVE
    dropped = sum(1 for d in docs if d.meta["repo"] not in PERMISSIVE)
    assert stats.drops == {"license_filter:not_allowed": dropped}
    for doc in kept:
        assert doc.meta["license"] == REPO_LICENSES[doc.meta["repo"]]


# ---------------------------------------------------------------------------------------
# Readers


def test_readers_and_stages_are_registered() -> None:
    assert READERS["github_rows"] is GithubRowsReader
    assert READERS["github_tree"] is GithubTreeReader
    assert STAGES["license_filter"] is LicenseFilter
    assert STAGES["code_quality"] is CodeQuality
    assert STAGES["strip_header_boilerplate"] is StripHeaderBoilerplate


def test_tree_reader_names_repository_path_language_and_licence(repos: Path) -> None:
    docs, stats = read_tree([str(repos)])
    by_id = {d.id: d for d in docs}
    doc = by_id["networkx/algorithms/approximation/clique.py"]
    assert doc.meta == {
        "repo": "networkx",
        "path": "algorithms/approximation/clique.py",
        "extension": ".py",
        "language": "Python",
        "license": "BSD-3-Clause",
    }
    assert by_id["linux-uapi/android/binder.h"].meta["language"] == "C"
    assert stats.drops == {"github_tree:license_file": len(REPO_LICENSES)}
    assert doc.text == (repos / "networkx/algorithms/approximation/clique.py").read_text()


def test_tree_reader_reads_one_repository_given_alone(repos: Path) -> None:
    docs, _ = read_tree([str(repos / "attrs")])
    assert [d.id for d in docs] == ["attrs/__init__.py"]
    assert docs[0].meta["license"] == "MIT"


def test_tree_reader_skips_binary_and_non_utf8_files_by_name(tmp_path: Path) -> None:
    repo = tmp_path / "repos" / "demo"
    (repo / "src").mkdir(parents=True)
    (repo / "LICENSE").write_text(MIT_TEXT)
    (repo / "src" / "main.py").write_text("print('hi')\n")
    (repo / "src" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (repo / "src" / "latin1.c").write_bytes("/* caf\xe9 */\nint x;\n".encode("latin-1"))
    (repo / "src" / "empty.py").write_bytes(b"")
    docs, stats = read_tree([str(tmp_path / "repos")])
    assert [d.id for d in docs] == ["demo/src/main.py"]
    assert docs[0].meta["license"] == "MIT"
    assert stats.drops == {
        "github_tree:binary": 1,
        "github_tree:invalid_utf8": 1,
        "github_tree:license_file": 1,
        "read:empty_file": 1,
    }


def test_a_nested_licence_file_makes_its_folder_a_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repos" / "app"
    (repo / "vendor" / "lib").mkdir(parents=True)
    (repo / "LICENSE").write_text(common_license("GPL-3"))
    (repo / "app.py").write_text("import lib\n")
    (repo / "vendor" / "lib" / "LICENSE").write_text(MIT_TEXT)
    (repo / "vendor" / "lib" / "lib.py").write_text("x = 1\n")
    docs, _ = read_tree([str(tmp_path / "repos")])
    meta = {d.id: (d.meta["repo"], d.meta["license"]) for d in docs}
    assert meta == {
        "app/app.py": ("app", "GPL-3.0-only"),
        "app/vendor/lib/lib.py": ("app/vendor/lib", "MIT"),
    }


BIGQUERY_ROWS = [
    {
        "repo_name": "pallets/click",
        "path": "src/click/utils.py",
        "content": "def echo():\n    pass\n",
        "license": "bsd-3-clause",
        "size": 21,
        "binary": False,
    },
    {
        "repo_name": "torvalds/linux",
        "path": "include/uapi/linux/acct.h",
        "content": "/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */\n",
        "license": "gpl-2.0",
        "size": 64,
        "binary": False,
    },
    {
        "repo_name": "someone/site",
        "path": "logo.png",
        "content": None,
        "license": "mit",
        "size": 4096,
        "binary": True,
    },
    {
        "repo_name": "someone/site",
        "path": "data.bin",
        "content": "PK\u0000\u0003",
        "license": "mit",
        "size": 4,
        "binary": False,
    },
]


def _rows(path: Path, stats: Stats) -> list[Document]:
    return list(GithubRowsReader().read(str(path), path.name, "github", stats))


def test_rows_reader_reads_the_bigquery_export_as_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "contents.jsonl"
    lines = [json.dumps(row) for row in BIGQUERY_ROWS]
    lines.append('{"repo_name": "x/y", "path": "bad.py", "content": "\\ud800"}')
    path.write_text("\n".join(lines) + "\n")
    stats = Stats()
    docs = _rows(path, stats)
    assert [d.id for d in docs] == [
        "pallets/click/src/click/utils.py",
        "torvalds/linux/include/uapi/linux/acct.h",
    ]
    assert docs[0].meta == {
        "repo_name": "pallets/click",
        "repo": "pallets/click",
        "path": "src/click/utils.py",
        "extension": ".py",
        "language": "Python",
        "license": "bsd-3-clause",
        "size": 21,
        "binary": False,
    }
    assert stats.drops == {
        "read:missing_text": 1,
        "github_rows:binary": 1,
        "github_rows:invalid_utf8": 1,
    }


def test_rows_reader_reads_parquet_and_the_filter_normalises_its_licences(
    tmp_path: Path,
) -> None:
    path = tmp_path / "contents.parquet"
    pq.write_table(pa.Table.from_pylist(BIGQUERY_ROWS), path)
    stats = Stats()
    docs = _rows(path, stats)
    assert [d.meta["license"] for d in docs] == ["bsd-3-clause", "gpl-2.0"]
    kept, filter_stats = _filter(docs)
    assert [(d.id, d.meta["license"]) for d in kept] == [
        ("pallets/click/src/click/utils.py", "BSD-3-Clause")
    ]
    assert filter_stats.drops == {"license_filter:not_allowed": 1}
    assert stats.drops == {"read:missing_text": 1, "github_rows:binary": 1}


def test_rows_without_repository_and_path_keep_the_record_id(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"content": "x = 1\n"}) + "\n")
    assert [d.id for d in _rows(path, Stats())] == ["rows.jsonl:0"]


# ---------------------------------------------------------------------------------------
# Code quality


def test_ordinary_source_file_passes_code_quality() -> None:
    text = "def add(a, b):\n    return a + b\n"
    assert code_quality_reason(text, "m.py", CodeQualityParams()) is None


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ("x = 1\n", "data.csv", "extension_not_allowed"),
        ("x = 1\n", "LICENSE", "extension_not_allowed"),
        ("x = [" + "1, " * 400 + "]\n", "m.py", "line_too_long"),
        ("\n".join(["value = '" + "a" * 120 + "'"] * 20), "m.py", "mean_line_too_long"),
        ("{}[]();\n" * 10, "m.js", "low_alphanumeric"),
        ("", "m.py", "low_alphanumeric"),
    ],
)
def test_each_quality_rule_drops_with_its_reason(text: str, path: str, reason: str) -> None:
    assert code_quality_reason(text, path, CodeQualityParams()) == reason


def test_extension_allowlist_is_configurable_and_case_blind() -> None:
    only_python = CodeQualityParams(extensions=[".PY", "Makefile"])
    assert code_quality_reason("x = 1\n", "A.Py", only_python) is None
    assert code_quality_reason("all:\n\tcc a.c\n", "src/Makefile", only_python) is None
    assert code_quality_reason("int a;\n", "a.c", only_python) == "extension_not_allowed"
    assert code_quality_reason("x = 1\n", "data.csv", CodeQualityParams(extensions=None)) is None


def test_a_rule_set_to_null_is_off() -> None:
    long_line = "x = [" + "1, " * 400 + "]\n"
    params = CodeQualityParams(max_line_length=None, max_mean_line_length=None)
    assert code_quality_reason(long_line, "m.py", params) is None


def test_code_quality_stage_counts_drops_by_reason() -> None:
    docs = [
        Document("r/a.py", "x = 1\n", "github", {"path": "a.py"}),
        Document("r/a.csv", "x,1\n", "github", {"path": "a.csv"}),
    ]
    stats = Stats()
    kept = list(CodeQuality().process(iter(docs), stats))
    assert [d.id for d in kept] == ["r/a.py"]
    assert stats.drops == {"code_quality:extension_not_allowed": 1}


# ---------------------------------------------------------------------------------------
# Header boilerplate


def test_shebang_is_kept_and_the_licence_after_it_removed() -> None:
    text = "#!/usr/bin/env python\n# Copyright 2020 Jane Doe\n# Licensed MIT\n\nimport os\n"
    assert strip_header_boilerplate(text, "tool.py") == "#!/usr/bin/env python\nimport os\n"


def test_markdown_title_is_a_heading_not_a_comment() -> None:
    text = "# Title\n\nCopyright 2020 Jane Doe. Licensed under MIT.\n"
    assert strip_header_boilerplate(text, "README.md") == text


def test_markdown_licence_comment_is_removed_and_title_kept() -> None:
    text = "<!-- SPDX-License-Identifier: CC-BY-4.0 -->\n# Title\n"
    assert strip_header_boilerplate(text, "doc.md") == "# Title\n"


def test_include_right_after_a_licence_comment_is_kept() -> None:
    text = "/*\n * Copyright (c) 2020 Jane Doe\n * GPL-2.0\n */\n#include <stdio.h>\nint x;\n"
    assert strip_header_boilerplate(text, "a.c") == "#include <stdio.h>\nint x;\n"


def test_spdx_line_comment_is_removed() -> None:
    text = "// SPDX-License-Identifier: MIT\n#include <x.h>\n"
    assert strip_header_boilerplate(text, "a.cpp") == "#include <x.h>\n"
    assert strip_header_boilerplate("// SPDX-License-Identifier: MIT\nlet a;\n", "a.js") == (
        "let a;\n"
    )


def test_top_comment_without_licence_words_is_kept() -> None:
    text = "/* Parses the configuration file. */\nint parse(void);\n"
    assert strip_header_boilerplate(text, "parse.c") == text
    python = "# Helpers for the command line.\nimport sys\n"
    assert strip_header_boilerplate(python, "cli.py") == python


def test_description_after_the_licence_is_kept() -> None:
    text = "// Copyright 2009 The Go Authors.\n// BSD-style license.\n\n// Package x.\npackage x\n"
    assert strip_header_boilerplate(text, "x.go") == "// Package x.\npackage x\n"


def test_coding_cookie_and_build_tags_survive_the_licence_block() -> None:
    python = (
        "# -*- coding: utf-8 -*-\n# Copyright (c) 2020 Foo\n# SPDX-License-Identifier: MIT\nx = 1\n"
    )
    assert strip_header_boilerplate(python, "m.py") == "# -*- coding: utf-8 -*-\nx = 1\n"
    go = "// Copyright 2021 Foo. All rights reserved.\n\n//go:build linux\n\npackage x\n"
    assert strip_header_boilerplate(go, "x.go") == "//go:build linux\n\npackage x\n"


def test_include_guard_above_the_licence_is_kept() -> None:
    text = "#ifndef X_H\n#define X_H\n\n/* Copyright 2020 Foo */\n\nint x;\n#endif\n"
    assert strip_header_boilerplate(text, "x.h") == "#ifndef X_H\n#define X_H\n\nint x;\n#endif\n"


def test_code_after_the_closing_mark_is_kept() -> None:
    text = "/* Copyright 2020 Foo, MIT */ int x;\nint y;\n"
    assert strip_header_boilerplate(text, "a.c") == "int x;\nint y;\n"


def test_python_docstring_is_code_and_stays() -> None:
    text = '"""Tool.\n\n:copyright: (c) 2020 Foo\n:license: MIT\n"""\nimport os\n'
    assert strip_header_boilerplate(text, "m.py") == text


def test_unknown_file_types_and_unterminated_comments_are_unchanged() -> None:
    assert strip_header_boilerplate("# Copyright 2020\nx\n", "notes.unknown") == (
        "# Copyright 2020\nx\n"
    )
    assert strip_header_boilerplate("/* Copyright 2020\nint x;\n", "a.c") == (
        "/* Copyright 2020\nint x;\n"
    )


def test_line_endings_are_kept() -> None:
    text = "# Copyright 2020 Foo\r\n\r\nimport os\r\nx = 1\r\n"
    assert strip_header_boilerplate(text, "m.py") == "import os\r\nx = 1\r\n"


def test_strip_stage_counts_headers_and_drops_files_that_were_only_a_header() -> None:
    docs = [
        Document("r/__init__.py", "# SPDX-License-Identifier: MIT\n", "github", {"path": "i.py"}),
        Document("r/a.py", "# Copyright Foo\nx = 1\n", "github", {"path": "a.py"}),
    ]
    stats = Stats()
    kept = list(StripHeaderBoilerplate().process(iter(docs), stats))
    assert [(d.id, d.text) for d in kept] == [("r/a.py", "x = 1\n")]
    assert stats.counters == {"strip_header_boilerplate:headers_removed": 2}
    assert stats.drops == {"strip_header_boilerplate:empty": 1}


def _real_files(repos: Path, suffixes: tuple[str, ...]) -> dict[str, str]:
    return {
        str(p.relative_to(repos)): p.read_text(encoding="utf-8")
        for p in sorted(repos.rglob("*"))
        if p.suffix in suffixes and p.is_file()
    }


def test_every_include_and_define_line_of_the_real_c_files_is_kept(repos: Path) -> None:
    files = _real_files(repos, (".c", ".h"))
    assert len(files) > 30
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    for path, text in files.items():
        before.update(line for line in text.splitlines() if INCLUDE_OR_DEFINE.match(line))
        stripped = strip_header_boilerplate(text, path)
        after.update(line for line in stripped.splitlines() if INCLUDE_OR_DEFINE.match(line))
    assert sum(before.values()) > 1000
    assert after == before


def test_licence_headers_of_the_real_c_files_are_removed(repos: Path) -> None:
    files = _real_files(repos, (".c", ".h"))
    licence = re.compile(r"copyright|licen[cs]|spdx|permission is hereby granted", re.I)
    with_header = [p for p, text in files.items() if licence.search(text[:4000])]
    assert len(with_header) > 30
    for path in with_header:
        stripped = strip_header_boilerplate(files[path], path)
        top = "\n".join(stripped.splitlines()[:60])
        assert not licence.search(top), path


def test_real_python_files_compile_to_the_same_code_after_stripping(repos: Path) -> None:
    files = _real_files(repos, (".py",))
    changed = 0
    for path, text in files.items():
        stripped = strip_header_boilerplate(text, path)
        changed += stripped != text
        assert ast.dump(ast.parse(stripped)) == ast.dump(ast.parse(text)), path
    assert changed >= 1  # attrs/__init__.py opens with an SPDX tag


# ---------------------------------------------------------------------------------------
# The manifest


def test_manifest_keeps_only_permissive_repositories(
    repos: Path, tmp_path: Path, ray_local: None
) -> None:
    run = load_manifest(MANIFEST)
    assert run.sources["github"].inputs == (str(repos.resolve()),)
    result = run_pipeline(run, output=str(tmp_path), workers=2, progress=False)
    final = tmp_path / "sources" / "github" / "04-exact_dedup"
    kept = [d for p in sorted(final.glob("part-*.parquet")) for d in iter_parquet(str(p))]
    assert {d.meta["repo"] for d in kept} == PERMISSIVE
    assert all(d.meta["license"] == REPO_LICENSES[d.meta["repo"]] for d in kept)
    assert all("SPDX-License-Identifier" not in d.text for d in kept)
    steps = result.stats["sources"]["github"]["steps"]
    assert steps[0]["stats"]["drops"] == {"github_tree:license_file": len(REPO_LICENSES)}
    copyleft_files = sum(
        1
        for repo in ("linux-uapi", "glibc-headers")
        for p in (repos / repo).rglob("*")
        if p.is_file() and p.name != "LICENSE"
    )
    assert steps[1]["stats"]["drops"] == {"license_filter:not_allowed": copyleft_files}
