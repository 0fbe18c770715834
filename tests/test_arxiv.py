"""arXiv: LaTeX cleaning as LLaMA did it (section 2.1), on small cases and on the real LaTeX
in ../shared/data/latex, and the source reader on tarballs built here (hostile, truncated,
Latin-1, bulk), run through the engine."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from pathlib import Path

import pytest

from pipeline.document import Document
from pipeline.io import CorruptInput, iter_parquet
from pipeline.manifest import load_manifest, parse_manifest
from pipeline.runner import run_pipeline
from pipeline.stats import Stats
from stages.arxiv import (
    ArxivParams,
    LatexClean,
    NoSection,
    clean_latex,
    main_file,
    read_arxiv,
)

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "arxiv.yaml"


def clean(body: str, preamble: str = "") -> str:
    """One file: `preamble`, then `body` as the document."""
    source = (
        f"\\documentclass{{article}}\n{preamble}\n\\begin{{document}}\n{body}\n\\end{{document}}\n"
    )
    return clean_latex({"paper.tex": source})


# ---------------------------------------------------------------------------------------
# Comments
# ---------------------------------------------------------------------------------------


def test_escaped_percent_is_text() -> None:
    assert clean("\\section{A}\n50\\% of x") == "\\section{A}\n50\\% of x"


def test_inline_comment_keeps_the_text_before_it() -> None:
    assert clean("\\section{A}\na%comment\nb") == "\\section{A}\na\nb"


def test_percent_after_a_line_break_starts_a_comment() -> None:
    assert clean("\\section{A}\na\\\\%comment\nb") == "\\section{A}\na\\\\\nb"


def test_a_whole_line_comment_goes_with_its_line() -> None:
    assert clean("\\section{A}\nfirst\n  % a note\nsecond") == "\\section{A}\nfirst\nsecond"


def test_percent_in_verbatim_and_urls_is_not_a_comment() -> None:
    body = (
        "\\section{A}\n\\verb|50%| and \\url{http://a.org/%7Eme} x\n"
        "\\begin{verbatim}\n% kept\n\\end{verbatim}"
    )
    assert clean(body) == (
        "\\section{A}\n\\verb|50%| and \\url{http://a.org/%7Eme} x\n"
        "\\begin{verbatim}\n% kept\n\\end{verbatim}"
    )


def test_a_paper_declared_verbatim_environment_is_verbatim() -> None:
    preamble = "\\lstnewenvironment{python}{}{}"
    body = "\\section{A}\n\\begin{python}\nx = 7 % 2\n\\end{python}"
    assert "x = 7 % 2" in clean(body, preamble)


def test_comment_environments_and_iffalse_blocks_are_removed() -> None:
    body = (
        "\\section{A}\n\\begin{comment}\nold\n\\end{comment}\nkept\n"
        "\\iffalse\nhidden \\ifx\\a\\b x\\fi\n\\else\nshown\n\\fi\nend"
    )
    assert clean(body) == "\\section{A}\n\nkept\n\nshown\n\nend"


# ---------------------------------------------------------------------------------------
# User macros
# ---------------------------------------------------------------------------------------


def test_newcommand_without_braces_around_the_name_expands() -> None:
    assert clean("\\section{A}\n\\foo{} and \\foo.", "\\newcommand\\foo{bar}") == (
        "\\section{A}\nbar and bar."
    )


def test_newcommand_with_arguments_expands() -> None:
    cleaned = clean("\\section{A}\n\\pair{a}{b} \\pair x y", "\\newcommand{\\pair}[2]{(#1,#2)}")
    assert cleaned == "\\section{A}\n(a,b) (x,y)"


def test_an_optional_argument_takes_its_default() -> None:
    cleaned = clean("\\section{A}\n\\opt{b} \\opt[a]{b}", "\\newcommand{\\opt}[2][dft]{#1-#2}")
    assert cleaned == "\\section{A}\ndft-b a-b"


def test_starred_renew_and_provide_commands_expand() -> None:
    preamble = "\\renewcommand*{\\a}{A}\\providecommand{\\b}{B}\\providecommand{\\a}{not A}"
    assert clean("\\section{S}\n\\a\\b", preamble) == "\\section{S}\nAB"


def test_def_with_parameters_expands() -> None:
    cleaned = clean("\\section{A}\n\\foo{a}{b}", "\\def\\foo#1#2{<#1|#2>}")
    assert cleaned == "\\section{A}\n<a|b>"


def test_def_with_delimited_parameters_is_removed_but_not_expanded() -> None:
    cleaned = clean("\\section{A}\n\\foo x.", "\\long\\def\\foo#1.{<#1>}")
    assert cleaned == "\\section{A}\n\\foo x."


def test_a_redefinition_applies_from_where_it_is() -> None:
    body = "\\section{A}\n\\x\n\\renewcommand{\\x}{second}\n\\x"
    assert clean(body, "\\newcommand{\\x}{first}") == "\\section{A}\nfirst\n\nsecond"


def test_expansions_are_expanded_again() -> None:
    preamble = "\\newcommand{\\outer}[1]{[\\inner{#1}]}\\newcommand{\\inner}[1]{<#1>}"
    assert clean("\\section{A}\n\\outer{x}", preamble) == "\\section{A}\n[<x>]"


def test_an_argument_keeps_its_token_boundary() -> None:
    cleaned = clean("\\section{A}\n$\\tw\\alpha$", "\\newcommand{\\tw}[1]{#1a}")
    assert cleaned == "\\section{A}\n$\\alpha a$"


def test_self_referential_macros_stop_within_the_budget() -> None:
    preamble = "\\def\\a{\\a\\a}\\newcommand{\\b}{x\\b}"
    cleaned = clean("\\section{A}\n\\a \\b", preamble)
    assert cleaned.startswith("\\section{A}\n\\a\\a")
    assert len(cleaned) < 4 << 20
    assert "\\def" not in cleaned and "\\newcommand" not in cleaned


def test_definitions_in_verbatim_are_text() -> None:
    body = "\\section{A}\n\\verb|\\newcommand{\\x}{y}| \\x"
    assert clean(body) == "\\section{A}\n\\verb|\\newcommand{\\x}{y}| \\x"


def test_let_takes_a_definition_command_as_a_token() -> None:
    body = "\\section{A}\n\\let\\alias=\\newcommand\n\\x"
    assert clean(body) == "\\section{A}\n\\let\\alias=\\newcommand\n\\x"


def test_sectioning_commands_are_never_expanded() -> None:
    cleaned = clean("\\section{A}\ntext", "\\renewcommand{\\section}[1]{\\textbf{#1}}")
    assert cleaned == "\\section{A}\ntext"


# ---------------------------------------------------------------------------------------
# The first-section cut, the bibliography, \end{document}
# ---------------------------------------------------------------------------------------


def test_everything_before_the_first_section_goes() -> None:
    body = "\\title{T}\\maketitle\n\\begin{abstract}A.\\end{abstract}\n\\section*{Intro}\nHi"
    assert clean(body, "\\usepackage{amsmath}") == "\\section*{Intro}\nHi"


def test_a_paper_whose_first_heading_is_a_paragraph() -> None:
    assert clean("before\n\\paragraph{P} text\n\\section{S}") == "\\paragraph{P} text\n\\section{S}"


def test_a_paper_without_a_section_has_nothing_to_keep() -> None:
    with pytest.raises(NoSection):
        clean("only \\textbf{text}")


def test_the_bibliography_goes_and_the_appendix_stays() -> None:
    body = (
        "\\section{A}\nx \\cite{k}\n\\bibliographystyle{plain}\n\\bibliography{refs}\n"
        "\\printbibliography[heading=none]\n"
        "\\begin{thebibliography}{9}\n\\bibitem{k} K.\n\\end{thebibliography}\n"
        "\\appendix\n\\section{Proofs}\np"
    )
    assert clean(body) == "\\section{A}\nx \\cite{k}\n\n\\appendix\n\\section{Proofs}\np"


def test_text_after_end_document_goes() -> None:
    source = "\\begin{document}\n\\section{A}\nx\n\\end{document}\nscratch notes"
    assert clean_latex({"p.tex": source}) == "\\section{A}\nx"


# ---------------------------------------------------------------------------------------
# Several files
# ---------------------------------------------------------------------------------------


def test_input_and_include_are_followed_with_or_without_extension() -> None:
    files = {
        "main.tex": "\\documentclass{article}\\begin{document}\n\\input{sec/intro}\n"
        "\\include{sec/end.tex}\n\\end{document}",
        "sec/intro.tex": "\\section{Intro}\nhello",
        "sec/end.tex": "\\section{End}\nbye",
    }
    assert clean_latex(files) == "\\section{Intro}\nhello\n\\section{End}\nbye"


def test_definitions_from_an_input_preamble_file_expand_in_another_file() -> None:
    files = {
        "ms.tex": "\\documentclass{article}\\input{macros}\\begin{document}\\input{body}"
        "\\end{document}",
        "macros.tex": "\\newcommand{\\R}{\\mathbb{R}}",
        "body.tex": "\\section{A} $x \\in \\R$",
    }
    assert clean_latex(files, "ms.tex") == "\\section{A} $x \\in \\mathbb{R}$"


def test_an_input_cycle_is_read_once() -> None:
    files = {
        "a.tex": "\\section{A}\nin a \\input{b}",
        "b.tex": "in b \\input{a} \\input b",
    }
    assert clean_latex(files, "a.tex") == "\\section{A}\nin a in b"


def test_a_commented_out_input_and_text_after_endinput_are_not_read() -> None:
    files = {
        "a.tex": "\\section{A}\n% \\input{b}\n\\input{c}",
        "b.tex": "never",
        "c.tex": "kept\n\\endinput\nignored",
    }
    assert clean_latex(files, "a.tex") == "\\section{A}\nkept"


def test_the_main_file_has_the_documentclass() -> None:
    files = {"a.tex": "\\section{A}", "z.tex": "\\documentclass{article}\\input{a}"}
    assert main_file(files) == "z.tex"


def test_ms_and_main_are_preferred_main_files() -> None:
    paper = "\\documentclass{article}\\begin{document}\\section{A}\\end{document}"
    assert main_file({"a.tex": paper, "main.tex": paper, "ms.tex": paper}) == "ms.tex"
    assert main_file({"a.tex": paper, "main.tex": paper}) == "main.tex"


def test_a_standalone_figure_read_by_the_paper_is_not_the_main_file() -> None:
    paper = "\\documentclass{article}\\begin{document}\\input{fig}\\end{document}"
    figure = "\\documentclass{standalone}\\begin{document}x\\end{document}"
    assert main_file({"fig.tex": figure, "paper.tex": paper}) == "paper.tex"


# ---------------------------------------------------------------------------------------
# The latex_clean stage
# ---------------------------------------------------------------------------------------


def test_latex_clean_replaces_the_files_with_the_cleaned_text() -> None:
    paper = Document(
        "p",
        "\\documentclass{x}\\begin{document}\\input{s}\\end{document}",
        "arxiv",
        {"main": "ms.tex", "files": {"s.tex": "\\section{S} body"}, "path": "p.tar.gz"},
    )
    stats = Stats()
    (doc,) = LatexClean().process(iter([paper]), stats)
    assert doc.text == "\\section{S} body"
    assert doc.meta == {"main": "ms.tex", "path": "p.tar.gz"}


def test_latex_clean_drops_papers_without_sections_or_prose() -> None:
    docs = [
        Document("none", "just text", "arxiv", {}),
        Document("bare", "\\begin{document}\\section{A}\n\\section*{B}\\end{document}", "a", {}),
    ]
    stats = Stats()
    assert list(LatexClean().process(iter(docs), stats)) == []
    assert stats.drops == {"latex_clean:no_section": 1, "latex_clean:empty": 1}


# ---------------------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------------------

PAPER = (
    b"\\documentclass{article}\n\\newcommand{\\R}{\\mathbb{R}}\n\\begin{document}\n"
    b"\\section{Intro}\nLet $x \\in \\R$.\n\\input{sections/more}\n\\end{document}\n"
)
MORE = "\\section{Más}\nCafé au lait.\n".encode("latin-1")


def member(
    tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else "ms.tex"
        tar.addfile(info)


def paper_tarball(path: Path, *extra: tuple[str, bytes, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        member(tar, "ms.tex", PAPER)
        member(tar, "sections/more.tex", MORE)
        member(tar, "figure.png", bytes(range(256)) * 8)
        for name, data, kind in extra:
            member(tar, name, data, kind)
    return path


def read(path: Path, **params: int) -> tuple[list[Document], Stats]:
    stats = Stats()
    docs = list(read_arxiv(str(path), path.name, "arxiv", stats, ArxivParams(**params)))
    return docs, stats


def test_a_tarball_is_one_paper_with_its_main_file_as_text(tmp_path: Path) -> None:
    (doc,), _ = read(paper_tarball(tmp_path / "2101.00001.tar.gz"))
    assert doc.id == "2101.00001.tar.gz"
    assert doc.text == PAPER.decode()
    assert doc.meta == {
        "path": "2101.00001.tar.gz",
        "main": "ms.tex",
        "files": {"sections/more.tex": "\\section{Más}\nCafé au lait.\n"},
    }
    assert clean_latex({**doc.meta["files"], "ms.tex": doc.text}, "ms.tex") == (
        "\\section{Intro}\nLet $x \\in \\mathbb{R}$.\n\\section{Más}\nCafé au lait."
    )


def test_a_latin1_file_is_decoded_as_latin1_and_counted(tmp_path: Path) -> None:
    (doc,), stats = read(paper_tarball(tmp_path / "p.tar.gz"))
    assert "Café" in doc.meta["files"]["sections/more.tex"]
    assert stats.counters == {"arxiv:latin1_fallback": 1}


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("../evil.tex", tarfile.REGTYPE, "arxiv:path_traversal"),
        ("sections/../../evil.tex", tarfile.REGTYPE, "arxiv:path_traversal"),
        ("/etc/evil.tex", tarfile.REGTYPE, "arxiv:path_traversal"),
        ("link.tex", tarfile.SYMTYPE, "arxiv:link"),
        ("hard.tex", tarfile.LNKTYPE, "arxiv:link"),
        ("dev.tex", tarfile.CHRTYPE, "arxiv:special_file"),
        ("pipe.tex", tarfile.FIFOTYPE, "arxiv:special_file"),
    ],
)
def test_hostile_members_are_refused_and_counted(
    tmp_path: Path, name: str, kind: bytes, reason: str
) -> None:
    path = paper_tarball(tmp_path / "p.tar.gz", (name, b"\\section{Evil}", kind))
    (doc,), stats = read(path)
    assert sorted(doc.meta["files"]) == ["sections/more.tex"]
    assert stats.drops == {reason: 1}


def test_a_truncated_tarball_is_counted(tmp_path: Path) -> None:
    whole = paper_tarball(tmp_path / "whole.tar.gz").read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptInput) as err:
        read(truncated)
    assert err.value.reason == "arxiv:truncated_archive"


def test_size_and_count_limits_stop_a_hostile_archive(tmp_path: Path) -> None:
    path = paper_tarball(tmp_path / "p.tar.gz")
    (doc,), stats = read(path, max_member_bytes=len(PAPER) - 1)
    assert doc.meta["main"] == "sections/more.tex"
    assert stats.drops == {"arxiv:member_too_large": 1}
    assert read(path, max_document_bytes=len(PAPER))[1].drops == {"read:document_too_large": 1}
    for limits, reason in [
        ({"max_members": 2}, "arxiv:too_many_members"),
        ({"max_archive_bytes": 2048}, "arxiv:archive_too_large"),
    ]:
        with pytest.raises(CorruptInput) as err:
            read(path, **limits)
        assert err.value.reason == reason


def test_an_oversized_extended_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "p.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("ms.tex")
        info.pax_headers = {"comment": "x" * (2 << 20)}
        info.size = len(PAPER)
        tar.addfile(info, io.BytesIO(PAPER))
    with pytest.raises(CorruptInput) as err:
        read(path)
    assert err.value.reason == "arxiv:header_too_large"


def test_an_empty_input_is_counted(tmp_path: Path) -> None:
    empty = tmp_path / "2101.00003.tar.gz"
    empty.write_bytes(b"")
    assert read(empty) == ([], Stats(drops={"read:empty_file": 1}))


def test_a_gzipped_single_file_is_a_paper(tmp_path: Path) -> None:
    bare = tmp_path / "2101.00002"  # arXiv's e-print of a one-file submission: no extension
    bare.write_bytes(gzip.compress(PAPER))
    (doc,), _ = read(bare)
    assert (doc.id, doc.text, doc.meta["main"]) == ("2101.00002", PAPER.decode(), "2101.00002")
    postscript = tmp_path / "old.gz"
    postscript.write_bytes(gzip.compress(b"%!PS-Adobe-2.0\nshowpage\n"))
    assert read(postscript) == ([], Stats(drops={"arxiv:not_latex": 1}))


def test_a_bulk_archive_holds_one_paper_per_member(tmp_path: Path) -> None:
    tarball = paper_tarball(tmp_path / "p.tar.gz").read_bytes()
    bulk = tmp_path / "arXiv_src_2101_001.tar"
    with tarfile.open(bulk, "w") as tar:
        member(tar, "2101/2101.00001.gz", tarball)
        member(tar, "2101/2101.00002.gz", gzip.compress(PAPER))
        member(tar, "2101/2101.00003.pdf", b"%PDF-1.4")
        member(tar, "2101/2101.00004.gz", tarball[: len(tarball) // 2])
    docs, stats = read(bulk)
    assert [(d.id, d.meta["member"]) for d in docs] == [
        ("arXiv_src_2101_001.tar/2101/2101.00001.gz", "2101/2101.00001.gz"),
        ("arXiv_src_2101_001.tar/2101/2101.00002.gz", "2101/2101.00002.gz"),
    ]
    assert stats.drops == {"arxiv:truncated_archive": 1}


def test_a_project_folder_is_read_from_its_main_file(tmp_path: Path) -> None:
    project = tmp_path / "paper"
    (project / "sections").mkdir(parents=True)
    (project / "main.tex").write_bytes(PAPER)
    (project / "sections" / "more.tex").write_bytes(MORE)
    (project / "notes.tex").write_text("\\section{Notes}\nA fragment nothing reads.\n")
    (project / "refs.bib").write_text("@article{k, title={T}}\n")

    def read_file(relative: str) -> tuple[list[Document], Stats]:
        stats = Stats()
        path = str(tmp_path / relative)
        return list(read_arxiv(path, relative, "arxiv", stats, ArxivParams())), stats

    (main,), _ = read_file("paper/main.tex")
    assert (main.id, main.meta["main"]) == ("paper/main.tex", "main.tex")
    assert sorted(main.meta["files"]) == ["sections/more.tex"]
    assert read_file("paper/sections/more.tex") == ([], Stats(counters={"arxiv:included_file": 1}))
    (notes,), _ = read_file("paper/notes.tex")
    assert notes.meta["files"] == {}
    assert read_file("paper/refs.bib") == ([], Stats(counters={"arxiv:not_tex": 1}))


def test_a_run_counts_broken_and_hostile_archives_and_goes_on(
    tmp_path: Path, ray_local: None
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    whole = paper_tarball(inputs / "good.tar.gz").read_bytes()
    (inputs / "truncated.tar.gz").write_bytes(whole[: len(whole) // 2])
    paper_tarball(inputs / "evil.tar.gz", ("../evil.tex", b"x", tarfile.REGTYPE))
    (inputs / "nosection.gz").write_bytes(gzip.compress(b"\\documentclass{x} no sections"))
    spec = {
        "output": str(tmp_path / "out"),
        "sources": {
            "arxiv": {
                "reader": "arxiv",
                "inputs": [str(inputs)],
                "stages": [{"stage": "latex_clean"}],
            }
        },
    }
    result = run_pipeline(parse_manifest(spec), workers=2, progress=False)
    read_step, clean_step = (s["stats"] for s in result.stats["sources"]["arxiv"]["steps"])
    assert read_step["drops"] == {"arxiv:truncated_archive": 1, "arxiv:path_traversal": 1}
    assert read_step["docs_out"] == 3
    assert clean_step["drops"] == {"latex_clean:no_section": 1}
    step = tmp_path / "out" / "sources" / "arxiv" / "01-latex_clean"
    kept = sorted(d.id for p in step.glob("part-*.parquet") for d in iter_parquet(str(p)))
    assert kept == ["evil.tar.gz", "good.tar.gz"]


# ---------------------------------------------------------------------------------------
# Real LaTeX: ../shared/data/latex
# ---------------------------------------------------------------------------------------

# Verbatim text, inline verbatim and URLs: what LaTeX does not read as commands or comments.
VERBATIM = re.compile(
    r"\\begin\{(\w*verbatim\*?|lstlisting|minted)\}.*?\\end\{\1\}"
    r"|\\(?:verb|lstinline)\*?([^A-Za-z\s]).*?\2"
    r"|\\(?:url|path|href)\s*\{[^{}\n]*\}",
    re.S | re.I,
)
# Lines that open a preamble or delimit the document; mentions inside prose (`\cmd\usepackage`
# in class manuals) are text, not commands.
PREAMBLE_LINE = re.compile(r"^\s*\\(?:documentclass|documentstyle|usepackage)\b", re.M)
DOCUMENT_LINE = re.compile(r"^\s*\\(?:begin|end)\{document\}", re.M)
UNESCAPED_PERCENT = re.compile(r"(?<!\\)(?:\\\\)*%")
BIBLIOGRAPHY = re.compile(
    r"\\begin\{thebibliography\}|\\(?:bibliography|bibliographystyle)\s*\{|\\printbibliography\b"
)
DEFINITION = re.compile(
    r"\\(?:re)?newcommand\*?\s*\{?\s*\\[A-Za-z@]"
    r"|\\providecommand\*?\s*\{?\s*\\[A-Za-z@]"
    r"|\\[gex]?def\s*\\[A-Za-z@]"
)
HEADING = re.compile(r"\\(?:part|chapter|(?:sub){0,2}section|(?:sub)?paragraph)\b\*?\s*[\[{]")


@pytest.fixture(scope="module")
def real_papers(shared_data: Path) -> dict[str, tuple[str, str]]:
    """Every real project, read and cleaned: id -> (raw main file, cleaned text)."""
    root = shared_data / "latex"
    stats = Stats()
    raw = [
        doc
        for path in sorted(root.glob("*/*.tex"))
        for doc in read_arxiv(str(path), str(path.relative_to(root)), "arxiv", stats, ArxivParams())
    ]
    cleaned = {doc.id: doc.text for doc in LatexClean().process(iter(raw), stats)}
    assert not stats.drops
    assert stats.counters == {"arxiv:latin1_fallback": 2}  # cmpj (cp1251), univie-ling (latin9)
    return {doc.id: (doc.text, cleaned[doc.id]) for doc in raw}


def outside_verbatim(text: str) -> str:
    return VERBATIM.sub(" ", text)


def test_every_real_project_is_read_and_cleaned(real_papers: dict[str, tuple[str, str]]) -> None:
    assert len(real_papers) == 24
    for paper_id, (_, cleaned) in real_papers.items():
        assert HEADING.match(cleaned), paper_id


def test_real_papers_keep_no_preamble(real_papers: dict[str, tuple[str, str]]) -> None:
    for paper_id, (_, cleaned) in real_papers.items():
        assert PREAMBLE_LINE.search(outside_verbatim(cleaned)) is None, paper_id
        assert DOCUMENT_LINE.search(outside_verbatim(cleaned)) is None, paper_id
    assert sum(bool(PREAMBLE_LINE.search(raw)) for raw, _ in real_papers.values()) >= 20


def test_real_papers_keep_no_comments(real_papers: dict[str, tuple[str, str]]) -> None:
    for paper_id, (_, cleaned) in real_papers.items():
        assert UNESCAPED_PERCENT.search(outside_verbatim(cleaned)) is None, paper_id


def test_real_papers_keep_no_bibliography(real_papers: dict[str, tuple[str, str]]) -> None:
    had = 0
    for paper_id, (raw, cleaned) in real_papers.items():
        had += bool(BIBLIOGRAPHY.search(outside_verbatim(raw)))
        assert BIBLIOGRAPHY.search(outside_verbatim(cleaned)) is None, paper_id
    assert had >= 15


def test_real_papers_keep_no_macro_definitions(real_papers: dict[str, tuple[str, str]]) -> None:
    had = 0
    for paper_id, (raw, cleaned) in real_papers.items():
        had += bool(DEFINITION.search(outside_verbatim(raw)))
        assert DEFINITION.search(outside_verbatim(cleaned)) is None, paper_id
    assert had >= 20


@pytest.mark.parametrize(
    ("paper_id", "use", "expansion"),
    [
        # \newcommand{\Pindex}[1]{\index{Packages!#1}\index{#1 package}}
        (
            "kluwer/usrman.tex",
            "\\Pindex{amssymb}",
            "\\index{Packages!amssymb}\\index{amssymb package}",
        ),
        # \Cindex{#1} uses \Bs, itself \def\Bs{\char92}: expanded in turn
        ("kluwer/usrman.tex", "\\Cindex{title}", "\\index{title@\\texttt{\\char92 title}}"),
        # \def\XX{More text should follow, ...}, used 16 times
        ("acmconf/submit.tex", "\\XX", "More text should follow, but keep in mind that a limit"),
        # \newcommand{\optiondefaultval}[1]{\underline{\texttt{#1}}}
        ("abntex2/abntex2cite.tex", "\\optiondefaultval{normal}", "\\underline{\\texttt{normal}}"),
        # \newcommand\file{\textsf}: no braces around the name, the argument follows the use
        ("ieeepes/ieeepes_doc.tex", "\\file{ieeepes\\_skel.tex}", "\\textsf{ieeepes\\_skel.tex}"),
        # \newcommand{\NRC}{{\small NRC}}
        ("nrc/userguide.tex", "\\NRC", "{\\small NRC}"),
    ],
)
def test_real_macro_uses_are_expanded(
    real_papers: dict[str, tuple[str, str]], paper_id: str, use: str, expansion: str
) -> None:
    raw, cleaned = real_papers[paper_id]
    body = raw[raw.index("\\begin{document}") :]
    assert use in body
    assert expansion in cleaned
    name = re.match(r"\\[A-Za-z]+", use).group()  # type: ignore[union-attr]
    assert re.search(re.escape(name) + r"(?![A-Za-z])", outside_verbatim(cleaned)) is None


def test_the_arxiv_manifest_runs_on_the_real_projects(
    shared_data: Path, tmp_path: Path, ray_local: None
) -> None:
    result = run_pipeline(load_manifest(MANIFEST), output=str(tmp_path), workers=2, progress=False)
    steps = {s["step"]: s["stats"] for s in result.stats["sources"]["arxiv"]["steps"]}
    assert list(steps) == ["00-read", "01-latex_clean", "02-exact_dedup"]
    assert steps["00-read"]["docs_out"] == 24
    assert steps["00-read"]["counters"] == {"arxiv:latin1_fallback": 2}
    assert steps["01-latex_clean"]["docs_out"] == 24
    final = tmp_path / "sources" / "arxiv" / "02-exact_dedup"
    docs = [d for p in sorted(final.glob("part-*.parquet")) for d in iter_parquet(str(p))]
    assert len(docs) == steps["02-exact_dedup"]["docs_out"] == 24
    for doc in docs:
        assert HEADING.match(doc.text), doc.id
        assert "files" not in doc.meta
        assert doc.meta["path"] == doc.id
        assert DEFINITION.search(outside_verbatim(doc.text)) is None, doc.id
