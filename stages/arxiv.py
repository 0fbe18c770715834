"""arXiv: the source-archive reader and LaTeX cleaning.

LLaMA (Touvron et al. 2023, §2.1) trains on arXiv LaTeX sources and, following Lewkowycz
et al. (2022), removes "everything before the first section of the paper, as well as the
bibliography", the comments, and "inline-expanded definitions and macros written by users".
RedPajama's `arxiv_cleaner.py` is the public re-implementation of that rule; this one keeps
its first-section cut (any of `\\part` ... `\\subparagraph`) and differs where it loses text:

- it reads the paper the way LaTeX does, from the main file through `\\input`/`\\include`,
  instead of concatenating every `.tex` file of the archive;
- it expands macros with arguments (`#1`..`#9`, an optional first argument with its default),
  not only argument-free ones, with a brace-matching parser rather than regular expressions;
- a `%` in verbatim text or a URL is not a comment, and verbatim text is never expanded;
- only the bibliography goes, not the appendices after it.

The reader emits one document per paper: `text` is the main file's source and
`meta["files"]` the paper's other `.tex` files, so reading (archives, encodings, hostile
members) and cleaning (`clean_latex`, a pure function of those files) stay separate.
"""

from __future__ import annotations

import io
import lzma
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO

from fsspec.spec import AbstractFileSystem
from pydantic import Field

from pipeline.document import Document
from pipeline.io import CorruptInput, filesystem
from pipeline.stats import Stats
from stages.base import Reader, ReaderParams, Stage, register_reader, register_stage

# ---------------------------------------------------------------------------------------
# Comments and verbatim text
# ---------------------------------------------------------------------------------------

# Verbatim text is set aside (replaced by a private-use placeholder) while the LaTeX around
# it is cleaned, and put back at the end: nothing in it is a comment, a macro or a section.
_HOLD_OPEN, _HOLD_CLOSE = "\ue000", "\ue001"
_HELD = re.compile(f"{_HOLD_OPEN}(\\d+){_HOLD_CLOSE}")
# Environments whose content is verbatim: these, any name ending in "verbatim" (fancyvrb's
# and classes' variants, e.g. `smallverbatim`), and those a paper declares itself.
_VERBATIM_ENVIRONMENTS = frozenset({"lstlisting", "minted"})
_DECLARED_VERBATIM = re.compile(
    r"\\(?:DefineVerbatimEnvironment|lstnewenvironment)\s*\{\s*([A-Za-z]+\*?)\s*\}"
)
# What the comment scanner stops at. A control symbol (`\%`, `\\`, `\{`) is consumed whole,
# so `\%` is text while in `\\%` the `%` starts a comment after a line break.
_SCAN = re.compile(
    r"""\\(?P<verb>verb|lstinline)(?![A-Za-z@])
      | \\begin[ \t]*\{(?P<env>[A-Za-z]+\*?)\}
      | \\(?P<url>url|path|href)(?![A-Za-z@])[ \t]*(?=\{)
      | \\[^A-Za-z@]
      | %""",
    re.X | re.S,
)


class _Held:
    """Verbatim pieces set aside while the text around them is cleaned."""

    def __init__(self) -> None:
        self.pieces: list[str] = []

    def hold(self, piece: str) -> str:
        self.pieces.append(piece)
        return f"{_HOLD_OPEN}{len(self.pieces) - 1}{_HOLD_CLOSE}"

    def restore(self, text: str) -> str:
        return _HELD.sub(lambda m: self.pieces[int(m.group(1))], text)


# Inline verbatim and URLs are short; scanning no further bounds the work on hostile text.
_MAX_INLINE = 4096


def _line_group_end(text: str, start: int) -> int | None:
    """End of the `{...}` at `start` if it closes on its line with no braces inside, as
    URLs and inline code do; anything else is read as ordinary LaTeX."""
    limit = min(len(text), start + _MAX_INLINE)
    close = text.find("}", start, limit)
    if close < 0 or text.find("{", start + 1, close) >= 0 or "\n" in text[start:close]:
        return None
    return close + 1


def _verb_end(text: str, pos: int, command: str) -> int | None:
    """End of `\\verb|...|` / `\\lstinline[..]{...}` whose delimiter is at `pos`, or None."""
    if command == "verb" and text.startswith("*", pos):
        pos += 1
    if command == "lstinline" and text.startswith("[", pos):
        close = text.find("]", pos, pos + _MAX_INLINE)
        if close < 0 or "\n" in text[pos:close]:
            return None
        pos = close + 1
    if pos >= len(text) or text[pos].isspace():
        return None
    if command == "lstinline" and text[pos] == "{":
        return _line_group_end(text, pos)
    close = text.find(text[pos], pos + 1, pos + _MAX_INLINE)
    if close < 0 or "\n" in text[pos:close]:
        return None
    return close + 1


def _declared_verbatim(sources: Iterable[str]) -> frozenset[str]:
    """Verbatim environments the paper declares (`\\DefineVerbatimEnvironment{code}`)."""
    return frozenset(name for text in sources for name in _DECLARED_VERBATIM.findall(text))


def _is_verbatim(env: str, declared: frozenset[str]) -> bool:
    name = env.rstrip("*")
    return name in _VERBATIM_ENVIRONMENTS or name.lower().endswith("verbatim") or env in declared


def _strip_comments(text: str, held: _Held, declared: frozenset[str] = frozenset()) -> str:
    """`text` without comments; verbatim text and URLs are held, `comment` environments go
    (`declared`: the paper's own verbatim environments).

    A line that is only a comment goes whole, with its line break, so the paragraph around
    it stays one paragraph; an inline comment goes from `%` to the end of its line, along
    with the spaces before it.
    """
    out: list[str] = []
    pos = 0
    while (m := _SCAN.search(text, pos)) is not None:
        before = text[pos : m.start()]
        pos = m.end()
        if verb := m.group("verb"):
            end = _verb_end(text, pos, verb)
            out += [before, m.group() if end is None else held.hold(text[m.start() : end])]
            pos = end or pos
        elif (env := m.group("env")) is not None:
            if env == "comment" or _is_verbatim(env, declared):
                close = text.find(f"\\end{{{env}}}", pos)
                end = len(text) if close < 0 else close + len(env) + 6
                out += [before, "" if env == "comment" else held.hold(text[m.start() : end])]
                pos = end
            else:
                out += [before, m.group()]
        elif m.group("url"):
            end = _line_group_end(text, pos)
            out += [before, m.group() if end is None else held.hold(text[m.start() : end])]
            pos = end or pos
        elif m.group() == "%":
            newline = text.find("\n", pos)
            line_start = text.rfind("\n", 0, m.start()) + 1
            whole_line = not text[line_start : m.start()].strip()
            out.append(before.rstrip(" \t"))
            # a whole-line comment takes its line break along
            pos = len(text) if newline < 0 else newline + int(whole_line)
        else:
            out += [before, m.group()]
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------------------
# The paper's files: \input and \include, and the main file
# ---------------------------------------------------------------------------------------

_INCLUDE = re.compile(
    r"\\(?:input|include|subfile)(?![A-Za-z@])[ \t]*(?:\{([^{}\n]*)\}|([^\s{}\\%]+))"
)
_END_INPUT = re.compile(r"\\endinput(?![A-Za-z@])")
_MAX_INCLUDE_DEPTH = 32
# Expansion (of files and macros) may grow a paper this many times, but always this much.
_GROWTH = 8
_MIN_BUDGET = 1 << 20


def _outside(name: str) -> bool:
    """An absolute path or one that climbs out of the paper: never read, never a member."""
    absolute = name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) is not None
    return absolute or ".." in re.split(r"[/\\]", name)


# `\iffalse ... \fi` at the start of a line is how LaTeX authors comment out a block.
_CONDITIONAL = re.compile(r"\\(?:(iffalse)|(if[A-Za-z@]*)|(else)|(fi))(?![A-Za-z@])")
_NOT_CONDITIONALS = frozenset({"iff", "ifthenelse"})  # a math symbol and a macro: no \fi
_IFFALSE_LINE = re.compile(r"^[ \t]*\\iffalse(?![A-Za-z@])", re.M)


def _without_iffalse(text: str) -> str:
    """Removes `\\iffalse ... \\fi` blocks that start a line, keeping an `\\else` branch.

    Conditionals nested inside are counted so the right `\\fi` closes the block; a block
    with no closing `\\fi` is left as it is, rather than losing the rest of the paper.
    """
    out: list[str] = []
    pos = 0
    while (start := _IFFALSE_LINE.search(text, pos)) is not None:
        depth, otherwise, close = 0, None, None
        for m in _CONDITIONAL.finditer(text, start.end()):
            if m.group(1) or (m.group(2) and m.group(2) not in _NOT_CONDITIONALS):
                newif = text.endswith("\\newif", 0, m.start())
                depth += 0 if newif else 1
            elif m.group(3) and depth == 0 and otherwise is None:
                otherwise = m.end()
            elif m.group(4):
                if depth == 0:
                    close = m
                    break
                depth -= 1
        if close is None:
            break
        out += [text[pos : start.start()], text[otherwise : close.start()] if otherwise else ""]
        pos = close.end()
    out.append(text[pos:])
    return "".join(out)


def _include_candidates(raw: str, main_dir: str, including_dir: str) -> list[str]:
    """Paper-relative names an `\\input{raw}` may mean, in the order LaTeX tries them.

    Relative to the main file's directory (LaTeX's working directory), then to the
    including file's (as `\\subfile` does); `name.tex` before `name`. An absolute or
    climbing name has no candidates.
    """
    name = raw.strip().strip('"')
    if not name or _outside(name):
        return []
    found: list[str] = []
    for directory in dict.fromkeys((main_dir, including_dir)):
        path = posixpath.normpath(posixpath.join(directory, name))
        if path.startswith("../"):
            continue
        found += [path] if path.endswith(".tex") else [path + ".tex", path]
    return found


def _included_names(text: str) -> list[str]:
    """The raw names of every `\\input`/`\\include`/`\\subfile` outside comments."""
    return [a if a is not None else b for a, b in _INCLUDE.findall(_strip_comments(text, _Held()))]


_DOCUMENT_CLASS = re.compile(r"^[^%\n]*\\document(?:class|style)(?![A-Za-z@])", re.M)
_BEGIN_DOCUMENT_LINE = re.compile(r"^[^%\n]*\\begin\s*\{document\}", re.M)
_PREFERRED_MAIN = ("ms.tex", "main.tex")


def main_file(files: Mapping[str, str]) -> str:
    """The paper's main file: the one LaTeX would be run on, chosen deterministically.

    Prefers, in order: a file no other file `\\input`s, one with `\\documentclass` (or
    LaTeX 2.09's `\\documentstyle`), one with `\\begin{document}`, `ms.tex` then `main.tex`
    (arXiv's and Overleaf's conventions), the shallowest path, then the first name.
    """
    if not files:
        raise ValueError("a paper needs at least one file")
    included = {
        target
        for name, text in files.items()
        for raw in _included_names(text)
        for target in _include_candidates(raw, "", posixpath.dirname(name))
        if target in files and target != name
    }

    def rank(name: str) -> tuple[bool, bool, bool, int, int, str]:
        text = files[name]
        base = posixpath.basename(name).lower()
        preferred = _PREFERRED_MAIN.index(base) if base in _PREFERRED_MAIN else 2
        return (
            name in included,
            _DOCUMENT_CLASS.search(text) is None,
            _BEGIN_DOCUMENT_LINE.search(text) is None,
            preferred,
            name.count("/"),
            name,
        )

    return min(files, key=rank)


class _Budget:
    """Characters an expansion may still add; guards against self-including files and
    self-referential macros."""

    def __init__(self, chars: int) -> None:
        self.left = chars

    def spend(self, chars: int) -> bool:
        if chars > self.left:
            return False
        self.left -= chars
        return True


def _flatten(files: Mapping[str, str], main: str, held: _Held) -> str:
    """The main file with every `\\input`/`\\include` replaced by the file it names.

    Comments go first, so a commented-out `\\input` is not followed. A file already being
    read (a cycle), a missing file, and anything past the depth or size budget are dropped.
    """
    stripped: dict[str, str] = {}
    declared = _declared_verbatim(files.values())
    main_dir = posixpath.dirname(main)
    budget = _Budget(max(_GROWTH * sum(map(len, files.values())), _MIN_BUDGET))

    def read(name: str, stack: tuple[str, ...]) -> str:
        if name not in stripped:
            source = _strip_comments(files[name], held, declared)
            if end := _END_INPUT.search(source):
                source = source[: end.start()]
            stripped[name] = _without_iffalse(source)
        # Every read is paid for, even of a file that adds nothing, so a diamond of files
        # each reading the next twice stops at the budget instead of doubling per level.
        if not budget.spend(len(stripped[name]) + 1):
            return ""

        def include(m: re.Match[str]) -> str:
            raw = m.group(1) if m.group(1) is not None else m.group(2)
            candidates = _include_candidates(raw, main_dir, posixpath.dirname(name))
            target = next((c for c in candidates if c in files), None)
            if target is None or target in stack or len(stack) >= _MAX_INCLUDE_DEPTH:
                return ""
            return read(target, (*stack, target))

        return _INCLUDE.sub(include, stripped[name])

    return read(main, (main,))


# ---------------------------------------------------------------------------------------
# User macros
# ---------------------------------------------------------------------------------------

# In the text `@` is not a letter (`\Bs@` is `\Bs` then `@`); in a definition's name it may
# be (`\def\p@LaTeX` under \makeatletter), so the whole definition is found and removed.
# Such macros are internals and never expanded.
_TOKEN = re.compile(r"\\(?:([A-Za-z]+)|.)", re.S)
_NAME = re.compile(r"\s*\\([A-Za-z@]+)")
_NEWCOMMANDS = frozenset({"newcommand", "renewcommand", "providecommand", "DeclareRobustCommand"})
_DEFS = frozenset({"def", "gdef", "edef", "xdef"})
_DEF_PREFIXES = ("\\long", "\\global", "\\protected", "\\outer")
# Redefinitions of these are removed but never expanded: the first-section cut and the
# structure of the text depend on them, and `\csname` is not a name.
_PROTECTED = frozenset(
    {"part", "chapter", "section", "subsection", "subsubsection", "paragraph", "subparagraph"}
    | {"begin", "end", "input", "include", "csname"}
    | _NEWCOMMANDS
    | _DEFS
)
# A body with `\@...` is class or package internals (valid only under \makeatletter):
# expanding it would fill the text with machinery, so such macros are left as written.
_INTERNAL = re.compile(r"\\[A-Za-z]*@")
# `\let\a=\b` and `\string\b` take the next token as it is: `\let\x=\newcommand` defines
# nothing here.
_LET = re.compile(r"\s*(?:\\(?:[A-Za-z@]+|.)|.)\s*=?\s?(?:\\(?:[A-Za-z@]+|.)|.)", re.S)
_NEXT_TOKEN = re.compile(r"\s*(?:\\(?:[A-Za-z@]+|.)|.)", re.S)
_SPACE = re.compile(r"\s*")
# Between undelimited arguments TeX skips spaces and one line end, never a blank line.
_ARGUMENT_SPACE = re.compile(r"[ \t]*(?:\n[ \t]*)?")
_DELIMITERS = re.compile(r"\\.|[{}\[\]]", re.S)
_PARAMETER = re.compile(r"\\.|#([1-9#])", re.S)
_ENDS_IN_CONTROL_WORD = re.compile(r"\\[A-Za-z]+\Z")
_MAX_EXPANSION_DEPTH = 16
_MAX_PARAMETER_TEXT = 256
_MAX_OPTIONAL = 4096


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where `pattern` (spaces, possibly none) ends when matched at `pos`."""
    m = pattern.match(text, pos)
    return m.end() if m else pos


@dataclass(frozen=True)
class _Macro:
    """A user macro: `params` arguments, the first optional with `default` when not None."""

    params: int
    default: str | None
    body: str


class _Source:
    """Text with its braces and optional-argument brackets matched once, in one pass, so
    each argument is found without rescanning (LaTeX's `[...]` ends at the first `]` at
    its own brace depth)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.close: dict[int, int] = {}
        self.bracket: dict[int, int] = {}
        opened: list[int] = []
        pending: list[list[int]] = [[]]  # unclosed `[` per brace depth
        for m in _DELIMITERS.finditer(text):
            char = m.group()
            if char == "{":
                opened.append(m.start())
                pending.append([])
            elif char == "}" and opened:
                self.close[opened.pop()] = m.end()
                pending.pop()
            elif char == "[":
                pending[-1].append(m.start())
            elif char == "]":
                self.bracket.update(dict.fromkeys(pending[-1], m.end()))
                pending[-1].clear()

    def bracket_end(self, start: int) -> int | None:
        """End of the `[...]` at `start`, if it closes within `_MAX_OPTIONAL`."""
        end = self.bracket.get(start)
        return end if end is not None and end - start <= _MAX_OPTIONAL else None

    def argument(self, pos: int) -> tuple[str, int] | None:
        """One undelimited argument after `pos`: a `{group}`'s inside, or one token."""
        text = self.text
        start = _skip(_ARGUMENT_SPACE, text, pos)
        if start >= len(text):
            return None
        first = text[start]
        if first == "{":
            end = self.close.get(start)
            return None if end is None else (text[start + 1 : end - 1], end)
        if first == "\\":
            m = _TOKEN.match(text, start)
            return None if m is None else (m.group(), m.end())
        if first == _HOLD_OPEN:
            close = text.find(_HOLD_CLOSE, start)
            return text[start : close + 1], close + 1
        if first in "}#" or first.isspace():
            return None
        return first, start + 1


def _parse_newcommand(src: _Source, pos: int) -> tuple[str, _Macro, int] | None:
    """`\\newcommand*{\\name}[n][default]{body}` (braces around the name optional)."""
    text = src.text
    pos = _skip(_SPACE, text, pos)
    if text.startswith("*", pos):
        pos += 1
    m = _NAME.match(text, pos)
    if m is not None:
        name, pos = m.group(1), m.end()
    else:
        pos = _skip(_SPACE, text, pos)
        end = src.close.get(pos)
        inner = re.fullmatch(r"\s*\\([A-Za-z@]+)\s*", text[pos + 1 : end - 1]) if end else None
        if end is None or inner is None:
            return None
        name, pos = inner.group(1), end
    params, default = 0, None
    pos = _skip(_SPACE, text, pos)
    if text.startswith("[", pos):
        end = src.bracket_end(pos)
        count = text[pos + 1 : end - 1].strip() if end else ""
        if end is None or not count.isdigit() or int(count) > 9:
            return None
        params, pos = int(count), _skip(_SPACE, text, end)
        if text.startswith("[", pos) and params:
            end = src.bracket_end(pos)
            if end is None:
                return None
            default, pos = text[pos + 1 : end - 1], end
    body = src.argument(pos)
    if body is None:
        return None
    return name, _Macro(params, default, body[0]), body[1]


def _parse_def(src: _Source, pos: int) -> tuple[str, _Macro | None, int] | None:
    """`\\def\\name#1#2{body}`; a delimited parameter text (`\\def\\a#1.{..}`) parses to
    None as the macro: the definition is removed but its uses are left as written."""
    text = src.text
    m = _NAME.match(text, pos)
    if m is None:
        return None
    open_brace = text.find("{", m.end(), m.end() + _MAX_PARAMETER_TEXT)
    end = src.close.get(open_brace) if open_brace >= 0 else None
    if end is None:
        return None
    parameters = text[m.end() : open_brace].lstrip()  # TeX skips spaces after a name
    count = len(parameters) // 2
    undelimited = parameters == "".join(f"#{i}" for i in range(1, count + 1)) and count <= 9
    macro = _Macro(count, None, text[open_brace + 1 : end - 1]) if undelimited else None
    return m.group(1), macro, end


def _substitute(body: str, args: list[str]) -> str:
    """The body with `#n` replaced by the n-th argument and `##` by `#`."""

    def value(m: re.Match[str]) -> str:
        which = m.group(1)
        if which is None:
            return m.group()
        if which == "#":
            return "#"
        if int(which) > len(args):
            return m.group()
        arg = args[int(which) - 1]
        if _ENDS_IN_CONTROL_WORD.search(arg) and body[m.end() : m.end() + 1].isalpha():
            arg += " "  # `#1a` with `\alpha` as #1 is `\alpha a`, not `\alphaa`
        return arg

    return _PARAMETER.sub(value, body)


def _without_prefixes(chunk: str) -> str:
    """`\\long\\def` and `\\global\\def`: the prefix goes with the definition."""
    while True:
        stripped = chunk.rstrip()
        prefix = next((p for p in _DEF_PREFIXES if stripped.endswith(p)), None)
        if prefix is None:
            return chunk
        chunk = stripped[: -len(prefix)]


class _Expander:
    """One pass in reading order: definitions are recorded and removed, uses expanded.

    Like TeX, a macro is expanded with the definition in force where it is used, and its
    expansion is read again for further macros, down to `_MAX_EXPANSION_DEPTH` levels and
    within a size budget (a self-referential macro stops there, left as written).
    """

    def __init__(self, budget: _Budget) -> None:
        self.macros: dict[str, _Macro] = {}
        self.budget = budget

    def define(self, command: str, name: str, macro: _Macro | None) -> None:
        if macro is None or name in _PROTECTED or _INTERNAL.search(macro.body):
            self.macros.pop(name, None)
        elif command != "providecommand" or name not in self.macros:
            self.macros[name] = macro

    def run(self, text: str, depth: int = 0) -> str:
        src = _Source(text)
        out: list[str] = []
        copied = scan = 0
        while (m := _TOKEN.search(text, scan)) is not None:
            word, scan = m.group(1), m.end()
            if word in ("let", "string", "noexpand"):
                skip = (_LET if word == "let" else _NEXT_TOKEN).match(text, scan)
                scan = skip.end() if skip else scan
            elif word in _NEWCOMMANDS or word in _DEFS:
                parse: Callable[[_Source, int], tuple[str, _Macro | None, int] | None] = (
                    _parse_newcommand if word in _NEWCOMMANDS else _parse_def
                )
                parsed = parse(src, scan)
                if parsed is None:
                    continue
                name, macro, end = parsed
                self.define(word, name, macro)
                out.append(_without_prefixes(text[copied : m.start()]))
                copied = scan = end
            elif word in self.macros and depth < _MAX_EXPANSION_DEPTH:
                expanded = self._use(src, self.macros[word], scan)
                if expanded is None:
                    continue
                body, end = expanded
                body = self.run(body, depth + 1)
                if _ENDS_IN_CONTROL_WORD.search(body) and text[end : end + 1].isalpha():
                    body += " "
                out += [text[copied : m.start()], body]
                copied = scan = end
        out.append(text[copied:])
        return "".join(out)

    def _use(self, src: _Source, macro: _Macro, pos: int) -> tuple[str, int] | None:
        """The substituted body of a use whose arguments start at `pos`, and their end."""
        text = src.text
        args: list[str] = []
        if macro.default is not None:
            start = _skip(_SPACE, text, pos)
            end = src.bracket_end(start) if text.startswith("[", start) else None
            if text.startswith("[", start) and end is None:
                return None
            args.append(macro.default if end is None else text[start + 1 : end - 1])
            pos = end or pos
        while len(args) < macro.params:
            arg = src.argument(pos)
            if arg is None:
                return None
            args.append(arg[0])
            pos = arg[1]
        if not macro.params and text.startswith("{}", pos):
            pos += 2  # `\foo{}` keeps the space after it in TeX; here the space is kept anyway
        # An upper bound first, so a refused use costs nothing: each `#` may be an argument.
        if len(macro.body) + macro.body.count("#") * sum(map(len, args)) > self.budget.left:
            return None
        body = _substitute(macro.body, args)
        return (body, pos) if self.budget.spend(len(body)) else None


# ---------------------------------------------------------------------------------------
# The cleaning itself
# ---------------------------------------------------------------------------------------

_BEGIN_DOCUMENT = re.compile(r"\\begin\s*\{document\}")
_END_DOCUMENT = re.compile(r"\\end\s*\{document\}")
_SECTIONING = re.compile(
    r"\\(?:part|chapter|(?:sub){0,2}section|(?:sub)?paragraph)(?![A-Za-z@])\s*\*?\s*[\[{]"
)
_BIBLIOGRAPHY = re.compile(
    r"""\\begin\s*\{thebibliography\}.*?(?:\\end\s*\{thebibliography\}|\Z)
      | \\(?:bibliography|bibliographystyle|nobibliography)(?![A-Za-z@])\s*\{[^{}]*\}
      | \\printbibliography(?![A-Za-z@])\s*(?:\[[^\[\]]*\])?""",
    re.X | re.S,
)
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.M)
_BLANK_LINES = re.compile(r"\n{3,}")


class NoSection(ValueError):
    """The paper has no sectioning command; the first-section rule keeps nothing of it."""


def clean_latex(files: Mapping[str, str], main: str | None = None) -> str:
    """The text of a paper as LLaMA trains on it: from its first section to its end.

    `files` maps each file name (relative path) to its LaTeX source; `main` names the file
    LaTeX is run on (default: `main_file(files)`). In order: comments go (verbatim text is
    held aside), `\\input`/`\\include` are followed from the main file, user macros
    (`\\newcommand`, `\\renewcommand`, `\\providecommand`, `\\def`, with arguments) are
    expanded where used and their definitions removed, everything before the first
    sectioning command after `\\begin{document}` and after `\\end{document}` goes, and so does
    the bibliography. Raises `NoSection` when there is no sectioning command.
    """
    main = main if main is not None else main_file(files)
    if main not in files:
        raise ValueError(f"main file {main!r} is not among the paper's files {sorted(files)}")
    # The placeholder characters are private-use code points with no meaning in LaTeX.
    sources = {
        name: text.replace(_HOLD_OPEN, "").replace(_HOLD_CLOSE, "") for name, text in files.items()
    }
    held = _Held()
    text = _flatten(sources, main, held)
    text = _Expander(_Budget(max(_GROWTH * len(text), _MIN_BUDGET))).run(text)
    begin = _BEGIN_DOCUMENT.search(text)
    first = _SECTIONING.search(text, begin.end() if begin else 0)
    if first is None:
        raise NoSection(f"no \\section (or other sectioning command) in {main}")
    end = _END_DOCUMENT.search(text, first.start())
    text = text[first.start() : end.start() if end else len(text)]
    text = _BIBLIOGRAPHY.sub("", text)
    text = _BLANK_LINES.sub("\n\n", _TRAILING_SPACE.sub("", text))
    return held.restore(text.strip())


_CONTROL_SEQUENCE = re.compile(r"\\(?:[A-Za-z@]+|.)", re.S)


def has_prose(text: str) -> bool:
    """Whether cleaned LaTeX holds anything but headings and markup: a paper whose sections
    are all empty (a bare template) has nothing to learn from."""
    src = _Source(text)
    pieces: list[str] = []
    pos = 0
    for m in _SECTIONING.finditer(text):
        if m.start() < pos:
            continue
        title = m.end() - 1
        if text[title] == "[":
            title = _skip(_SPACE, text, src.bracket_end(title) or m.end())
        pieces.append(text[pos : m.start()])
        pos = src.close.get(title, m.end())
    pieces.append(text[pos:])
    return any(c.isalnum() for c in _CONTROL_SEQUENCE.sub(" ", "".join(pieces)))


@register_stage
class LatexClean(Stage):
    """`clean_latex` over papers read by the `arxiv` reader (or any LaTeX text).

    The document's text is its main file (`meta["main"]`, default the id) and
    `meta["files"]` its other files; the cleaned text replaces both. Drops papers without a
    sectioning command (`no_section`) and those left with only headings (`empty`).
    """

    name = "latex_clean"

    def process(self, docs: Iterator[Document], stats: Stats) -> Iterator[Document]:
        for doc in docs:
            main = str(doc.meta.get("main") or doc.id)
            files = {**(doc.meta.get("files") or {}), main: doc.text}
            try:
                text = clean_latex(files, main)
            except NoSection:
                stats.drop(f"{self.name}:no_section")
                continue
            if not has_prose(text):
                stats.drop(f"{self.name}:empty")
                continue
            meta = {key: value for key, value in doc.meta.items() if key != "files"}
            yield Document(doc.id, text, doc.source, meta)


# ---------------------------------------------------------------------------------------
# Reading papers: arXiv source archives, gzipped and plain .tex files
# ---------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 64 << 10
_NESTED_PAPER_SUFFIXES = (".gz", ".tgz", ".tar")
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


class ArxivParams(ReaderParams):
    max_member_bytes: int = Field(
        64 << 20,
        gt=0,
        description="A .tex member or a nested paper (as stored) larger than this is "
        "skipped as arxiv:member_too_large; a whole paper is bounded by max_document_bytes.",
    )
    max_members: int = Field(
        10_000,
        gt=0,
        description="An archive with more entries stops there, as arxiv:too_many_members.",
    )
    max_archive_bytes: int = Field(
        4 << 30,
        gt=0,
        description="An archive that unpacks to more stops there, as arxiv:archive_too_large.",
    )


_EXTENDED_HEADERS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_MAX_EXTENDED_HEADER = 1 << 20


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header whole into memory before the member it
    describes is seen; a hostile archive could claim gigabytes there, so over 1 MiB is refused
    (`_proc_member` is where tarfile dispatches on the header type)."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_HEADERS and self.size > _MAX_EXTENDED_HEADER:
            raise CorruptInput("arxiv:header_too_large", f"a {self.size} B extended header")
        return super()._proc_member(archive)


def _archive_reason(err: BaseException) -> str:
    message = str(err).lower()
    if isinstance(err, EOFError) or "unexpected end" in message or "truncated" in message:
        return "arxiv:truncated_archive"
    return "arxiv:corrupt_archive"


def _is_tar_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _kind(head: bytes) -> str:
    """'tar' (plain or compressed), 'gzip' (one gzipped file) or 'plain', by content:
    arXiv's e-prints are gzipped tarballs or gzipped single files under one name."""
    if head.startswith(_GZIP_MAGIC):
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, tarfile.BLOCKSIZE)
        except zlib.error:
            inner = b""  # reported as corrupt when the file is read as gzip
        return "tar" if _is_tar_header(inner) else "gzip"
    if head.startswith((b"BZh", b"\xfd7zXZ\x00")):
        return "tar"
    return "tar" if _is_tar_header(head) else "plain"


def _gunzip(raw: IO[bytes], limit: int) -> bytes | None:
    """The first gzip member of `raw`, or None when it unpacks to more than `limit`."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    while not decoder.eof and (chunk := raw.read(1 << 20)):
        try:
            out += decoder.decompress(chunk, limit + 1 - len(out))
        except zlib.error as err:
            raise CorruptInput("arxiv:corrupt_gzip", str(err)) from err
        if len(out) > limit:
            return None
    if not decoder.eof:
        raise CorruptInput("arxiv:truncated_gzip", "gzip stream ends mid-member")
    return bytes(out)


def _decode(data: bytes, stats: Stats) -> str:
    """UTF-8; anything else as Latin-1 (every byte is a character there), counted: TeX
    files of the 1990s are in 8-bit code pages, and one accented name must not lose a paper."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        stats.count("arxiv:latin1_fallback")
        return data.decode("latin-1")


def _looks_like_latex(text: str) -> bool:
    """Not PostScript or PDF (old arXiv e-prints), not binary."""
    head = text[:4096]
    return "\\" in text and "\x00" not in head and not head.lstrip().startswith(("%!", "%PDF"))


def _refusal(member: tarfile.TarInfo) -> str | None:
    if _outside(member.name):
        return "arxiv:path_traversal"
    if member.issym() or member.islnk():
        return "arxiv:link"
    if not (member.isfile() or member.isdir()):
        return "arxiv:special_file"
    return None


def _paper(files: dict[str, str], doc_id: str, source: str, meta: dict[str, str]) -> Document:
    main = main_file(files)
    others = {name: files[name] for name in sorted(files) if name != main}
    return Document(doc_id, files[main], source, {**meta, "main": main, "files": others})


def _archive_papers(
    tar: tarfile.TarFile,
    doc_id: str,
    source: str,
    stats: Stats,
    params: ArxivParams,
    meta: dict[str, str],
    nested: bool,
) -> Iterator[Document]:
    """The archive's own .tex files as one paper; each nested archive or gzipped file as a
    paper of its own (arXiv's bulk `arXiv_src_*.tar` holds one `.gz` per paper). Members are
    read in memory, never extracted; refused members are counted and the rest is read."""
    files: dict[str, str] = {}
    size = members = papers = 0
    too_large = False
    for member in tar:
        members += 1
        if members > params.max_members:
            raise CorruptInput("arxiv:too_many_members", f"more than {params.max_members}")
        if member.offset_data + member.size > params.max_archive_bytes:
            raise CorruptInput("arxiv:archive_too_large", f"over {params.max_archive_bytes} B")
        if refusal := _refusal(member):
            stats.drop(refusal)
            continue
        name = posixpath.normpath(member.name)
        lower = name.lower()
        is_tex = lower.endswith(".tex")
        if member.isdir() or not (is_tex or (nested and lower.endswith(_NESTED_PAPER_SUFFIXES))):
            continue
        if member.size > params.max_member_bytes:
            stats.drop("arxiv:member_too_large")
            continue
        if is_tex and (too_large or size + member.size > params.max_document_bytes):
            too_large = True
            continue
        data = tar.extractfile(member).read()  # type: ignore[union-attr]  # a regular file
        if is_tex:
            files[name] = _decode(data, stats)
            size += len(data)
            continue
        for paper in _nested_paper(data, f"{doc_id}/{name}", source, stats, params, meta):
            papers += 1
            yield Document(paper.id, paper.text, paper.source, {**paper.meta, "member": name})
    if too_large:
        stats.drop("read:document_too_large")
    elif files:
        yield _paper(files, doc_id, source, meta)
    elif not papers:
        stats.drop("arxiv:no_tex")


def _nested_paper(
    data: bytes, doc_id: str, source: str, stats: Stats, params: ArxivParams, meta: dict[str, str]
) -> Iterator[Document]:
    """One paper of a bulk archive; its faults are counted and the archive read on."""
    raw = io.BytesIO(data)
    try:
        if _kind(data[:_SNIFF_BYTES]) == "tar":
            with tarfile.open(fileobj=raw, mode="r|*", tarinfo=_BoundedTarInfo) as tar:
                yield from _archive_papers(tar, doc_id, source, stats, params, meta, False)
        else:
            yield from _single_file(raw, doc_id, source, stats, params, meta)
    except CorruptInput as err:
        stats.drop(err.reason)
    except _ARCHIVE_ERRORS as err:
        stats.drop(_archive_reason(err))


def _single_file(
    raw: IO[bytes],
    doc_id: str,
    source: str,
    stats: Stats,
    params: ArxivParams,
    meta: dict[str, str],
) -> Iterator[Document]:
    """A gzipped single-file paper (arXiv's e-print of a one-file submission)."""
    data = _gunzip(raw, params.max_document_bytes)
    if data is None:
        stats.drop("read:document_too_large")
        return
    text = _decode(data, stats)
    if not _looks_like_latex(text):
        stats.drop("arxiv:not_latex")
        return
    name = posixpath.basename(doc_id)
    name = name[: -len(".gz")] if name.lower().endswith(".gz") else name
    yield _paper({name: text}, doc_id, source, meta)


def _read_local_file(fs: AbstractFileSystem, path: str, limit: int) -> bytes | None:
    with fs.open(path, "rb") as f:
        data: bytes = f.read(limit + 1)
    return None if len(data) > limit else data


def _local_paper(
    fs: AbstractFileSystem,
    directory: str,
    main: str,
    text: str,
    size: int,
    stats: Stats,
    params: ArxivParams,
) -> dict[str, str] | None:
    """The files a loose main .tex (`size` bytes) reads through `\\input`, from beside it on
    disk; None when together they exceed the paper's size or file-count limit."""
    files = {main: text}
    order = [main]
    for name in order:  # grows as files are found
        for raw in _included_names(files[name]):
            if _outside(raw.strip().strip('"')):
                stats.drop("arxiv:path_traversal")
                continue
            for candidate in _include_candidates(raw, "", posixpath.dirname(name)):
                path = f"{directory}/{candidate}" if directory else candidate
                if candidate in files:
                    break
                if not fs.isfile(path):
                    continue
                data = _read_local_file(fs, path, params.max_member_bytes)
                if data is None:
                    stats.drop("arxiv:member_too_large")
                    break
                size += len(data)
                if size > params.max_document_bytes or len(files) >= params.max_members:
                    return None
                files[candidate] = _decode(data, stats)
                order.append(candidate)
                break
    return files


# A fragment looks for the main file that reads it among this many .tex files per folder,
# so a fragment in a flat folder of many papers does not read them all.
_MAX_MAIN_CANDIDATES = 64


def _included_elsewhere(fs: AbstractFileSystem, path: str, root: str, params: ArxivParams) -> bool:
    """Whether a main file in this file's folder, or a folder above it up to the inputs'
    root, `\\input`s it: then it is part of that paper, not a paper of its own."""
    directory = posixpath.dirname(path)
    while True:
        listed = fs.ls(directory, detail=True)
        tex = sorted(
            e["name"]
            for e in listed
            if e["type"] == "file" and e["name"] != path and e["name"].lower().endswith(".tex")
        )
        for candidate in tex[:_MAX_MAIN_CANDIDATES]:
            data = _read_local_file(fs, candidate, params.max_member_bytes)
            if data is None:
                continue
            text = _decode(data, Stats())
            if _DOCUMENT_CLASS.search(text) is None:
                continue
            name = posixpath.basename(candidate)
            paper = _local_paper(fs, directory, name, text, len(data), Stats(), params)
            if paper is not None and posixpath.relpath(path, directory) in paper:
                return True
        if directory in (root, "", "/") or not directory.startswith(root):
            return False
        directory = posixpath.dirname(directory)


def _loose_tex(
    fs: AbstractFileSystem,
    path: str,
    doc_id: str,
    source: str,
    stats: Stats,
    params: ArxivParams,
) -> Iterator[Document]:
    """A .tex file on its own (a folder of projects): a main file with the files it
    `\\input`s from beside it, or a fragment no main file reads. A file that a main file
    reads is part of that paper and counted as `arxiv:included_file`."""
    data = _read_local_file(fs, path, params.max_document_bytes)
    if data is None:
        stats.drop("read:document_too_large")
        return
    commands = data.decode("latin-1")  # enough to find commands, and counts nothing yet
    is_main = _DOCUMENT_CLASS.search(commands) or _BEGIN_DOCUMENT_LINE.search(commands)
    root = path[: -len(doc_id)].rstrip("/") if path.endswith(doc_id) else posixpath.dirname(path)
    if not is_main and _included_elsewhere(fs, path, root, params):
        stats.count("arxiv:included_file")
        return
    text = _decode(data, stats)
    directory, main = posixpath.split(path)
    files = _local_paper(fs, directory, main, text, len(data), stats, params)
    if files is None:
        stats.drop("read:document_too_large")
        return
    others = {name: files[name] for name in sorted(files) if name != main}
    yield Document(doc_id, text, source, {"path": doc_id, "main": main, "files": others})


def read_arxiv(
    path: str, doc_id: str, source: str, stats: Stats, params: ArxivParams
) -> Iterator[Document]:
    """Papers of one input file, whatever arXiv form it has, recognised by content:

    a tarball (`.tar`, `.tar.gz`, arXiv's bare `.gz`) is one paper, plus one per nested
    archive; a gzipped single file (`.tex.gz`, arXiv's bare `.gz`) is one paper; a plain
    `.tex` is one paper with the files it `\\input`s from beside it. Other plain files
    (figures, `.bib`, `.sty` in a project folder) are counted as `arxiv:not_tex`.
    """
    fs, inner = filesystem(path)
    with fs.open(inner, "rb") as raw:
        head = raw.read(_SNIFF_BYTES)
        if not head:
            stats.drop("read:empty_file")
            return
        raw.seek(0)
        kind = _kind(head)
        meta = {"path": doc_id}
        if kind == "tar":
            try:
                with tarfile.open(fileobj=raw, mode="r|*", tarinfo=_BoundedTarInfo) as tar:
                    yield from _archive_papers(tar, doc_id, source, stats, params, meta, True)
            except _ARCHIVE_ERRORS as err:
                raise CorruptInput(_archive_reason(err), f"{path}: {err}") from err
            return
        if kind == "gzip":
            yield from _single_file(raw, doc_id, source, stats, params, meta)
            return
    if not inner.lower().endswith(".tex"):
        stats.count("arxiv:not_tex")
        return
    yield from _loose_tex(fs, inner, doc_id, source, stats, params)


@register_reader
class ArxivReader(Reader):
    """arXiv LaTeX sources: e-print tarballs, gzipped or plain .tex files (see `read_arxiv`)."""

    name = "arxiv"
    Params = ArxivParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        assert isinstance(self.params, ArxivParams)
        return read_arxiv(path, doc_id, source, stats, self.params)
