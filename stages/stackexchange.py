"""StackExchange: the data-dump `Posts.xml` reader, post HTML to text, Q/A threads.

LLaMA (Touvron et al. 2023, §2.1) keeps "the data from the 28 largest websites", removes
the HTML tags from text bodies and sorts the answers by score, highest to lowest. This
module streams a site's `Posts.xml` (plain, `.bz2`, `.gz`, `.zst`) in the public dump
schema, groups answers under their question, orders them by *numeric* score (RedPajama
sorted the score strings, so "9" came before "100") and renders each thread as one
document. Post bodies become text with code blocks, inline code and list structure kept.

Questions and answers are not guaranteed to be ordered together in a dump, so no thread
is complete before the end of the file. Posts wait in memory up to `max_pending_posts`,
then every further batch goes to an on-disk SQLite file in the system temporary
directory (`TMPDIR`); stackoverflow's 90 GB dump needs about its text size there.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sqlite3
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import NamedTuple

from pydantic import Field

from pipeline.document import Document
from pipeline.io import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    CorruptInput,
    decompressed_chunks,
    filesystem,
    join,
)
from pipeline.stats import Stats
from stages.base import Reader, ReaderParams, register_reader

# ---------------------------------------------------------------------------------------
# Post HTML to text
# ---------------------------------------------------------------------------------------

# Elements that stand on their own lines; the other tags of a post (a, em, strong, kbd,
# sup, span, img ...) are inline and only their text is kept.
_BLOCKS = frozenset(
    {
        "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "dl", "dt", "dd",
        "table", "thead", "tbody", "tfoot", "details", "summary",
    }
)  # fmt: skip
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")


@dataclass
class _Open:
    """An open element that shapes the lines inside it: a list, a list item, a quote."""

    tag: str
    prefix: str = ""  # written at the start of every line inside the element
    marker: str | None = None  # replaces `prefix` on the first line: "- ", "3. "
    items: int = 0  # items of an ordered list so far
    started: bool = False  # a line inside it was written: blank lines carry its prefix


class _PostText(HTMLParser):
    """Renders post HTML as text: paragraphs split by blank lines, `<pre>` verbatim,
    `<li>` as "- " or "N. " lines (nested items indented), quotes as "> " lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._open: list[_Open] = []
        self._pending = 0  # line breaks owed before the next content
        self._line_open = False  # the current line has content
        self._code = 0  # depth of inline <code>
        self._pre: list[str] | None = None  # text of the <pre> being read
        self._pre_depth = 0
        self._cells = 0  # cells written in the current table row

    def text(self) -> str:
        self.close()
        if self._pre is not None:  # an unclosed <pre> is still code
            self._pre_depth = 1
            self.handle_endtag("pre")
        self._trim()
        return "".join(self._out).rstrip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._pre is not None:
            if tag == "br":
                self._pre.append("\n")
            elif tag == "pre":
                self._pre_depth += 1
            return
        if tag == "pre":
            self._pre, self._pre_depth = [], 1
        elif tag == "code":
            self._code += 1
        elif tag == "br":
            self._request(1)
        elif tag in ("ul", "ol"):
            self._request(self._block_break())
            start = _int(dict(attrs).get("start") or "1")
            self._open.append(_Open(tag, items=(start if start is not None else 1) - 1))
        elif tag == "li":
            self._start_item()
        elif tag == "blockquote":
            self._request(self._block_break())
            self._open.append(_Open(tag, prefix="> "))
        elif tag == "tr":
            self._request(1)
            self._cells = 0
        elif tag in ("td", "th"):
            if self._cells:
                self._begin()
                self._out.append(" | ")
            self._cells += 1
        elif tag in _BLOCKS:
            self._request(self._block_break())

    def handle_endtag(self, tag: str) -> None:
        if self._pre is not None:
            if tag == "pre":
                self._pre_depth -= 1
                if not self._pre_depth:
                    self._write_code("".join(self._pre))
            return
        if tag == "code":
            self._code = max(0, self._code - 1)
        elif tag in ("ul", "ol", "li", "blockquote"):
            if self._close(tag):
                self._request(1 if tag == "li" else self._block_break())
        elif tag == "tr":
            self._request(1)
        elif tag in _BLOCKS:
            self._request(self._block_break())

    def handle_data(self, data: str) -> None:
        if self._pre is not None:
            self._pre.append(data)
            return
        text = data.replace("\n", " ") if self._code else _HTML_SPACE.sub(" ", data)
        if self._pending or not self._line_open:
            text = text.lstrip(" ")
        if text:
            self._begin()
            self._out.append(text)

    def _start_item(self) -> None:
        levels = [i for i, o in enumerate(self._open) if o.tag in ("ul", "ol", "li")]
        if levels and self._open[levels[-1]].tag == "li":  # `</li>` may be omitted
            self._close("li")
        self._request(1)
        lists = [o for o in self._open if o.tag in ("ul", "ol")]
        marker = "- "
        if lists and lists[-1].tag == "ol":
            lists[-1].items += 1
            marker = f"{lists[-1].items}. "
        self._open.append(_Open("li", prefix=" " * len(marker), marker=marker))

    def _close(self, tag: str) -> bool:
        """Closes the innermost open `tag` and whatever was left open inside it."""
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return True
        return False

    def _block_break(self) -> int:
        """A blank line between blocks; a plain line break inside a list item."""
        return 1 if any(o.tag == "li" for o in self._open) else 2

    def _request(self, newlines: int) -> None:
        self._pending = max(self._pending, newlines)

    def _begin(self) -> None:
        """Pays the line breaks owed and writes the line's prefix before new content."""
        if self._pending and self._out:
            self._trim()
            blank = "".join(o.prefix for o in self._open if o.started).rstrip()
            self._out.append("\n" + (blank + "\n") * (self._pending - 1))
            self._line_open = False
        self._pending = 0
        if not self._line_open:
            self._out.append(self._prefix())
            self._line_open = True

    def _prefix(self) -> str:
        """The prefix of a new line; a list item's marker is used once, on its first line."""
        parts = []
        for o in self._open:
            parts.append(o.marker if o.marker is not None else o.prefix)
            o.marker, o.started = None, True
        return "".join(parts)

    def _write_code(self, code: str) -> None:
        """A code block, line for line: indentation and blank lines kept."""
        self._pre = None
        code = code[1:] if code.startswith("\n") else code  # HTML drops it after <pre>
        code = code.rstrip()
        if not code:
            return
        self._request(self._block_break())
        for number, line in enumerate(code.split("\n")):
            if number:
                self._out.append("\n")
                self._line_open = False
            if line:
                self._begin()
                self._out.append(line)
        self._request(self._block_break())

    def _trim(self) -> None:
        """Spaces at the end of the current line go: the next thing is a line break."""
        while self._out:
            self._out[-1] = self._out[-1].rstrip(" ")
            if self._out[-1]:
                return
            self._out.pop()


def post_html_to_text(html: str) -> str:
    """Text of a post body: entities decoded, code blocks verbatim, list items as lines.

    The standard library's HTMLParser rather than Resiliparse: Resiliparse keeps `<pre>`
    but indents list items with "•" bullets and drops the blank line after a code block,
    and main-content detection has nothing to do on a post body.
    """
    parser = _PostText()
    parser.feed(html)
    return parser.text()


# ---------------------------------------------------------------------------------------
# The dump
# ---------------------------------------------------------------------------------------

POSTS_FILES = ("Posts.xml", "Posts.xml.bz2", "Posts.xml.gz", "Posts.xml.zst")
QUESTION, ANSWER = "1", "2"
DEFAULT_MAX_PENDING_POSTS = 50_000
_SQLITE_INT = range(-(2**63), 2**63)


class Question(NamedTuple):
    id: int
    score: int
    title: str
    body: str
    tags: str  # JSON list
    accepted_answer_id: int | None
    created: str | None


class Answer(NamedTuple):
    id: int
    parent: int
    score: int
    body: str


def _int(value: str | None) -> int | None:
    """An integer attribute; None when absent, malformed or too large for SQLite."""
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number in _SQLITE_INT else None


def parse_tags(value: str) -> list[str]:
    """`<python><list>` (dumps until 2023) or `|python|list|` (later dumps)."""
    if value.startswith("<"):
        return re.findall(r"<([^<>]+)>", value)
    return [tag for tag in value.split("|") if tag]


def site_of(path: str) -> str:
    """The site a Posts file belongs to: its folder's name (`math.stackexchange.com`)."""
    return posixpath.basename(posixpath.dirname(path))


def iter_rows(chunks: Iterable[bytes]) -> Iterator[dict[str, str]]:
    """The attributes of every `<row>` under the root, streamed and released one by one.

    Expat reads the encoding from the XML declaration (or BOM). A syntax error raises
    `CorruptInput("stackexchange:malformed_xml")`, an input that ends before its root
    closes `stackexchange:truncated_xml`, both after every row read before it.
    """
    parser = ET.XMLPullParser(events=("start", "end"))
    root: ET.Element | None = None
    depth = 0
    try:
        for chunk in chunks:
            parser.feed(chunk)
            for event, element in parser.read_events():
                if event == "start":
                    depth += 1
                    root = element if root is None else root
                    continue
                depth -= 1
                if depth == 1 and root is not None:
                    if element.tag == "row":
                        yield dict(element.attrib)
                    root.remove(element)
    except ET.ParseError as err:
        raise CorruptInput("stackexchange:malformed_xml", str(err)) from err
    try:
        parser.close()
    except ET.ParseError as err:
        raise CorruptInput("stackexchange:truncated_xml", str(err)) from err


class PendingPosts:
    """Questions and answers waiting for the end of the file, with a bounded memory.

    Up to `max_pending` posts are held in memory; each time there are more, they are
    written to an SQLite file in the temporary directory, removed on close. A post id
    seen twice keeps its first copy either way, so spilling never changes the output.
    """

    def __init__(self, max_pending: int, stats: Stats) -> None:
        self.max_pending = max_pending
        self.stats = stats
        self.questions: dict[int, Question] = {}
        self.answers: dict[int, Answer] = {}
        self.db: sqlite3.Connection | None = None
        self.db_path: str | None = None

    def add(self, post: Question | Answer) -> None:
        if post.id in (self.questions if isinstance(post, Question) else self.answers):
            self.stats.drop("stackexchange:duplicate_post")
            return
        if isinstance(post, Question):
            self.questions[post.id] = post
        else:
            self.answers[post.id] = post
        if len(self.questions) + len(self.answers) > self.max_pending:
            self._spill()

    def threads(self) -> Iterator[tuple[Question, list[Answer]]]:
        """Every question by id, with its answers by score (highest first), then id.

        An answer whose question never came is counted `stackexchange:orphan_answer`.
        """
        if self.db is None:
            questions: Iterator[Question] = iter(
                sorted(self.questions.values(), key=lambda q: q.id)
            )
            answers: Iterator[Answer] = iter(sorted(self.answers.values(), key=_answer_order))
        else:
            self._spill()
            self.db.execute("CREATE INDEX answer_order ON answers (parent, score DESC, id)")
            questions = (
                Question._make(row)
                for row in self.db.execute("SELECT * FROM questions ORDER BY id")
            )
            answers = (
                Answer._make(row)
                for row in self.db.execute("SELECT * FROM answers ORDER BY parent, score DESC, id")
            )
        answer = next(answers, None)
        for question in questions:
            while answer is not None and answer.parent < question.id:
                self.stats.drop("stackexchange:orphan_answer")
                answer = next(answers, None)
            thread = []
            while answer is not None and answer.parent == question.id:
                thread.append(answer)
                answer = next(answers, None)
            yield question, thread
        while answer is not None:
            self.stats.drop("stackexchange:orphan_answer")
            answer = next(answers, None)

    def _spill(self) -> None:
        if self.db is None:
            handle, self.db_path = tempfile.mkstemp(prefix="llamix-stackexchange-", suffix=".db")
            os.close(handle)
            self.db = sqlite3.connect(self.db_path)
            self.db.executescript(
                """
                PRAGMA journal_mode = OFF;
                PRAGMA synchronous = OFF;
                CREATE TABLE questions (id INTEGER PRIMARY KEY, score INTEGER, title TEXT,
                    body TEXT, tags TEXT, accepted_answer_id INTEGER, created TEXT);
                CREATE TABLE answers (id INTEGER PRIMARY KEY, parent INTEGER,
                    score INTEGER, body TEXT);
                """
            )
        for table, held in (("questions", self.questions), ("answers", self.answers)):
            if not held:
                continue
            columns = ", ".join("?" * len(next(iter(held.values()))))
            written = self.db.executemany(
                f"INSERT OR IGNORE INTO {table} VALUES ({columns})", held.values()
            ).rowcount
            if written < len(held):
                self.stats.drop("stackexchange:duplicate_post", len(held) - written)
            self.stats.count("stackexchange:spilled_posts", len(held))
            held.clear()
        self.db.commit()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.db_path is not None:
            os.remove(self.db_path)
            self.db_path = None

    def __enter__(self) -> PendingPosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _answer_order(answer: Answer) -> tuple[int, int, int]:
    return answer.parent, -answer.score, answer.id


def _post_of(row: dict[str, str], stats: Stats) -> Question | Answer | None:
    """A question or answer of the dump; other post types and bad rows are counted."""
    post_type = row.get("PostTypeId")
    if post_type not in (QUESTION, ANSWER):
        stats.count("stackexchange:other_post_types")
        return None
    post_id, score = _int(row.get("Id")), _int(row.get("Score", "0"))
    if post_id is None or score is None:
        stats.drop("stackexchange:bad_row")
        return None
    body = post_html_to_text(row.get("Body", ""))
    if post_type == QUESTION:
        return Question(
            post_id,
            score,
            row.get("Title", "").strip(),
            body,
            json.dumps(parse_tags(row.get("Tags", ""))),
            _int(row.get("AcceptedAnswerId")),
            row.get("CreationDate"),
        )
    parent = _int(row.get("ParentId"))
    if parent is None:
        stats.drop("stackexchange:bad_row")
        return None
    if not body:
        stats.count("stackexchange:empty_answers")
        return None
    return Answer(post_id, parent, score, body)


def format_thread(question: Question, answers: list[Answer]) -> str:
    """`Q: <title>` and the question, then one `A: ` block per answer, blank-line separated."""
    head = f"Q: {question.title}\n{question.body}" if question.body else f"Q: {question.title}"
    return "\n\n".join([head, *(f"A: {answer.body}" for answer in answers)])


def read_posts(
    path: str,
    *,
    source: str = "stackexchange",
    stats: Stats | None = None,
    site: str | None = None,
    max_pending_posts: int = DEFAULT_MAX_PENDING_POSTS,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> Iterator[Document]:
    """One document per question thread of a `Posts.xml[.bz2|.gz|.zst]`, in question id order.

    The id is `<site>/<question id>` (`math.stackexchange.com/42`), `site` defaulting to
    the file's folder name. When the file breaks (truncated, corrupt, malformed XML) the
    threads of every post read before the break are still yielded (a thread loses the
    answers that lay past the break), then the `CorruptInput` is raised again for the
    executor to count.
    """
    stats = stats if stats is not None else Stats()
    site = site or site_of(path)
    failure: CorruptInput | None = None
    with PendingPosts(max_pending_posts, stats) as pending:
        try:
            for row in iter_rows(decompressed_chunks(path)):
                post = _post_of(row, stats)
                if post is not None:
                    pending.add(post)
        except CorruptInput as err:
            failure = err
        for question, answers in pending.threads():
            text = format_thread(question, answers)
            if len(text.encode("utf-8")) > max_document_bytes:
                stats.drop("read:document_too_large")
                continue
            meta = {
                "site": site,
                "question_id": question.id,
                "title": question.title,
                "score": question.score,
                "tags": json.loads(question.tags),
                "answer_count": len(answers),
                "accepted_answer_id": question.accepted_answer_id,
                "creation_date": question.created,
                "url": f"https://{site}/questions/{question.id}",
            }
            yield Document(f"{site}/{question.id}", text, source, meta)
    if failure is not None:
        raise failure


def select_top_sites(dump_dir: str, n: int) -> list[str]:
    """The `n` largest sites of a dump directory, largest first (ties: by name).

    A site is a folder holding `Posts.xml[.bz2|.gz|.zst]`, measured by that file's size
    on disk (its largest, if several). Sites still packed as `.7z` are not seen: extract
    them first (`7z x site.7z -osite`).
    """
    fs, inner = filesystem(dump_dir)
    sizes: dict[str, int] = {}
    for found, info in fs.glob(join(inner, "*", "Posts.xml*"), detail=True).items():
        posts = PurePosixPath(found)
        if posts.name in POSTS_FILES and info.get("type") == "file":
            site = posts.parent.name
            sizes[site] = max(sizes.get(site, 0), int(info.get("size") or 0))
    return sorted(sizes, key=lambda site: (-sizes[site], site))[: max(n, 0)]


class StackExchangeParams(ReaderParams):
    top_sites: int | None = Field(
        None,
        gt=0,
        description="Read only the N largest sites of the dump directory (LLaMA: 28); the "
        "Posts files of other sites are skipped as stackexchange:not_top_site.",
    )
    max_pending_posts: int = Field(
        DEFAULT_MAX_PENDING_POSTS,
        gt=0,
        description="Posts held in memory before the next batch goes to a temporary "
        "SQLite file; bounds memory, never changes the output.",
    )


@register_reader
class StackExchangeReader(Reader):
    """A site's `Posts.xml[.bz2|.gz|.zst]` -> one document per question thread.

    Inputs are the dump directory (`<dump>/<site>/Posts.xml…`, one shard per site).
    `top_sites` is a reader parameter, not an input filter, because the engine makes one
    shard per input file and a manifest's inputs are fixed patterns: each shard checks
    whether its site is among the dump's N largest and reads nothing otherwise.
    """

    name = "stackexchange"
    Params = StackExchangeParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        p = self.params
        site = site_of(path)
        if p.top_sites is not None:
            dump_dir = posixpath.dirname(posixpath.dirname(path))
            if site not in select_top_sites(dump_dir, p.top_sites):
                stats.count("stackexchange:not_top_site")
                return iter(())
        return read_posts(
            path,
            source=source,
            stats=stats,
            site=site,
            max_pending_posts=p.max_pending_posts,
            max_document_bytes=p.max_document_bytes,
        )
