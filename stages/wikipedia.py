"""Wikipedia: the MediaWiki XML-dump reader and wikitext cleaning.

LLaMA (Touvron et al. 2023, §2.1) takes Wikipedia dumps of 20 languages and processes
them "to remove hyperlinks, comments and other formatting boilerplate". This module streams a
`pages-articles` dump (plain or `.bz2`), keeps the article pages of the allowed languages,
and turns their wikitext into plain prose, one paragraph per line: `mwparserfromhell` parses
templates, tables, links, headings and lists; a few linear regular expressions handle HTML
tags and comments before it, and markup the parser leaves as text after it.
"""

from __future__ import annotations

import bisect
import codecs
import html
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import quote

import mwparserfromhell
from mwparserfromhell.nodes import ExternalLink, Heading, HTMLEntity, Tag, Text, Wikilink
from mwparserfromhell.wikicode import Wikicode
from pydantic import Field

from pipeline.document import Document
from pipeline.io import DEFAULT_MAX_DOCUMENT_BYTES, CorruptInput, decompressed_chunks
from pipeline.stats import Stats
from stages.base import Mapper, Params, Reader, ReaderParams, register_reader, register_stage

# The 20 Wikipedias of LLaMA §2.1 (bg, ca, cs, da, de, en, es, fr, hr, hu, it, nl, pl, pt,
# ro, ru, sl, sr, sv, uk): the default allowlist of the `wikipedia` reader.
PAPER_LANGUAGES = (
    "bg", "ca", "cs", "da", "de", "en", "es", "fr", "hr", "hu",
    "it", "nl", "pl", "pt", "ro", "ru", "sl", "sr", "sv", "uk",
)  # fmt: skip

# ---------------------------------------------------------------------------------------
# Wikitext cleaning
# ---------------------------------------------------------------------------------------

# Link namespaces whose links are not prose (files, media, categories) under their English
# names and their names in the 20 languages of the paper and a few more, so that cleaning
# a document outside its dump (`wikitext_clean`) needs no <siteinfo>; the reader adds the
# dump's own names.
DROPPED_LINK_NAMESPACES = frozenset(
    {
        "file", "image", "media", "category",  # en, and every wiki's canonical names
        "файл", "картинка", "медия", "категория",  # bg (ru, uk: файл)
        "fitxer", "imatge", "multimèdia", "categoria",  # ca (it, pt: categoria)
        "soubor", "obrázek", "média", "kategorie",  # cs (de: kategorie; fr, hu: média)
        "fil", "billede", "medie", "kategori",  # da (sv: fil, kategori)
        "datei", "bild", "medium",  # de (sv: bild)
        "archivo", "imagen", "medio", "categoría",  # es
        "fichier", "catégorie",  # fr
        "datoteka", "slika", "mediji", "kategorija",  # hr (sl: datoteka, slika, kategorija)
        "fájl", "kép", "kategória",  # hu
        "immagine",  # it
        "bestand", "afbeelding", "categorie",  # nl (ro: categorie)
        "plik", "grafika", "kategoria",  # pl
        "ficheiro", "arquivo", "imagem", "multimédia",  # pt
        "fișier", "fişier", "imagine",  # ro
        "изображение", "медиа",  # ru (категория as bg)
        "medija",  # sl
        "датотека", "слика", "медиј", "категорија",  # sr
        "зображення", "медіа", "категорія",  # uk
        "ファイル", "画像", "カテゴリ", "文件", "图像", "分类", "分類",  # ja, zh
    }
)  # fmt: skip

# Elements whose content is not prose (citations, formulas, galleries, code, tables, text
# shown only when transcluded): removed with their content. Every other tag MediaWiki
# knows is removed and its content kept.
_DROPPED_ELEMENTS = (
    "ref|references|math|chem|ce|gallery|timeline|imagemap|score|graph|mapframe|maplink"
    "|templatedata|syntaxhighlight|source|hiero|inputbox|categorytree|table|includeonly"
)
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_DROPPED_TAG = re.compile(rf"<(/?)({_DROPPED_ELEMENTS})(?=[\s/>])([^<>]*)>", re.I)
_LINE_BREAK_TAG = re.compile(r"<br\s*/?\s*>", re.I)
# The HTML and extension tags MediaWiki accepts (Sanitizer.php and common extensions); any
# other `<word ...>` is text to MediaWiki, and stays text here (`x<y and y>z`).
_KEPT_CONTENT_TAGS = (
    "abbr|b|bdi|bdo|big|blockquote|br|caption|center|cite|code|data|dd|del|dfn|div|dl|dt"
    "|em|font|h[1-6]|hr|i|indicator|ins|kbd|li|mark|noinclude|nowiki|ol|onlyinclude|p"
    "|poem|pre|q|rb|rp|rt|rtc|ruby|s|samp|section|small|span|strike|strong|sub|sup|td"
    "|templatestyles|th|time|tr|tt|u|ul|var|wbr"
)
_KEPT_CONTENT_TAG = re.compile(rf"</?(?:{_KEPT_CONTENT_TAGS})(?:\s[^<>]*)?/?>", re.I)
_BRACE = re.compile(r"[{}]")
_BRACKET_OR_BRACE = re.compile(r"[{}\[\]]")
_LINK_SCHEME = re.compile(r"(?:[a-z][a-z0-9+.-]*:|//)", re.I)
_INTERLANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z]{2,8})*")
_DISAMBIGUATION = re.compile(r"\s*\(.*\)$")
_BOLD_ITALIC = re.compile(r"'{2,}")
_MAGIC_WORD = re.compile(r"__[A-Z]+(?:_[A-Z]+)*__")
_LIST_MARKER = re.compile(r"^[*#:;]+\s*")
_HORIZONTAL_RULE = re.compile(r"^-{4,}")
_EMPTY_PARENTHESES = re.compile(r"\(\s*(?:[,;:]\s*)*\)")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,)]|\.(?= |$))")  # not " .NET"
_SPACE_AFTER_PAREN = re.compile(r"\([ \t]+")
_SPACES = re.compile(r"[ \t]+")


def clean_wikitext(text: str, dropped_namespaces: Iterable[str] = DROPPED_LINK_NAMESPACES) -> str:
    """Plain prose from wikitext, one paragraph per line.

    Removes what LLaMA calls "hyperlinks, comments and other formatting boilerplate":
    comments, <ref> citations and other non-prose elements, templates `{{...}}` (nested,
    with `{{{parameters}}}`), tables `{|...|}`, file/image/category and interlanguage links,
    magic words, bold/italic quotes and HTML tags; keeps the visible text of links
    (`[[target|label]]` -> label, `[[target]]` -> target, `[http://x label]` -> label),
    headings (`== X ==` -> X, a line of its own) and list items. Entities are unescaped
    first, so markup written as `&lt;ref&gt;` is treated as markup.
    """
    drop = {_namespace_key(name) for name in dropped_namespaces}
    code = mwparserfromhell.parse(_parseable(text), skip_style_tags=True)
    text = _visible(code, drop)
    # what the parser kept as text: `{{}}`, templates nested deeper than its limit, links
    # to invalid titles
    text = strip_templates_and_tables(text).replace("[[", "").replace("]]", "")
    text = _BOLD_ITALIC.sub("", text)
    text = _MAGIC_WORD.sub("", text)
    return "\n".join(_paragraphs(text))


def _parseable(text: str) -> str:
    """Wikitext that mwparserfromhell parses in linear time: without tags, comments and
    unclosed brackets.

    Its tokenizer retries every opener that never closes against the rest of the page:
    quadratic time for a run of unclosed `{{`, `[http:`, `{|` or tags (its issue #364),
    and gigabytes of memory for tags nested in links in a real revision (issue #286).
    So tags are removed here in linear time, the remaining `<` become entities (the
    parser reads no tag), and an opener that never closes is dropped (MediaWiki would
    show it as text).
    """
    text = html.unescape(text)
    text = _COMMENT.sub("", text)
    text = _without_dropped_elements(text)
    text = _LINE_BREAK_TAG.sub(" ", text)
    text = _KEPT_CONTENT_TAG.sub("", text)
    return _without_unclosed(text).replace("<", "&lt;")


def _without_dropped_elements(text: str) -> str:
    """Removes each `<ref ...>...</ref>` (and the other dropped elements) with its content.

    An element ends at the first `</name>` after it (so `<ref>a<ref>b</ref>` is one
    element, as in MediaWiki); an opening tag never closed, a self-closing one
    (`<ref name=a/>`) and a stray or malformed closing tag are removed alone. Closing tags
    are found by bisection: a page of unclosed `<ref>`s costs n log n, where a
    `<ref>.*?</ref>` regular expression costs n².
    """
    tags = list(_DROPPED_TAG.finditer(text))
    if not tags:
        return text
    closing: dict[str, list[re.Match[str]]] = {}
    for m in tags:
        if m.group(1) and not m.group(3).strip():  # `</ref name=x>` closes nothing
            closing.setdefault(m.group(2).lower(), []).append(m)
    starts = {name: [m.start() for m in ms] for name, ms in closing.items()}
    out: list[str] = []
    kept_from = 0
    for m in tags:
        if m.start() < kept_from:
            continue
        end = m.end()
        name = m.group(2).lower()
        if not m.group(1) and not m.group(3).rstrip().endswith("/") and name in closing:
            k = bisect.bisect_left(starts[name], m.end())
            if k < len(starts[name]):
                end = closing[name][k].end()
        out.append(text[kept_from : m.start()])
        kept_from = end
    out.append(text[kept_from:])
    return "".join(out)


def _without_unclosed(text: str) -> str:
    """Drops each `{{`, `{|`, `[[` or `[http:` opener that never closes, matching brackets
    and braces one by one; prose brackets (`"["`, `[sic`) and stray closers stay."""
    opened: dict[str, list[int]] = {"{": [], "[": []}
    for m in _BRACKET_OR_BRACE.finditer(text):
        c = m.group()
        if c in opened:
            opened[c].append(m.start())
        elif stack := opened["{" if c == "}" else "["]:
            stack.pop()
    unclosed = [i for i in sorted(opened["{"] + opened["["]) if _opens_markup(text, i)]
    if not unclosed:
        return text
    out: list[str] = []
    kept_from = 0
    for i in unclosed:
        out.append(text[kept_from:i])
        kept_from = i + 1
    out.append(text[kept_from:])
    return "".join(out)


def _opens_markup(text: str, i: int) -> bool:
    c, after = text[i], text[i + 1 : i + 2]
    if after == c or text[i - 1 : i] == c:
        return True
    return after == "|" if c == "{" else bool(_LINK_SCHEME.match(text, i + 1))


def _visible(code: Wikicode, drop: set[str]) -> str:
    """The text a reader sees: templates, template parameters, comments and tables
    render as nothing; list markers and horizontal rules stay for `_paragraphs`."""
    out: list[str] = []
    for node in code.nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Wikilink):
            out.append(_link_text(node, drop))
        elif isinstance(node, ExternalLink):
            if not node.brackets:
                out.append(str(node.url))  # a bare URL is text on the page
            elif node.title is not None:  # MediaWiki trims the spaces after the URL
                out.append(_visible(node.title, drop).lstrip())
        elif isinstance(node, Heading):
            out.append(f"\n\n{_visible(node.title, drop).strip()}\n\n")
        elif isinstance(node, HTMLEntity):
            out.append(node.normalize())
        elif isinstance(node, Tag) and node.tag != "table":
            out.append(node.wiki_markup or "")  # `*`, `#`, `:`, `;` and `----`
    return "".join(out)


def _link_text(link: Wikilink, drop: set[str]) -> str:
    """`[[target|label]]` -> label; `[[target]]` -> target; files, categories and
    interlanguage links -> nothing."""
    target = _visible(link.title, drop).strip()
    shown = target.startswith(":")  # [[:Category:X]] is a link to a page, not a tag
    target = target.lstrip(":").strip()
    prefix, colon, rest = target.partition(":")
    if colon and not shown:
        if _namespace_key(prefix) in drop:
            return ""
        if link.text is None and _INTERLANGUAGE.fullmatch(prefix.strip()):
            return ""
    if link.text is None:
        return target.lstrip("#")
    label = _visible(link.text, drop)
    if label.strip():
        return label
    return _DISAMBIGUATION.sub("", rest if colon else target)  # the "pipe trick"


def strip_templates_and_tables(text: str) -> str:
    """Removes every `{{...}}` and `{|...|}`, nested in any way, in one linear pass.

    Braces are matched one by one with a stack (so `{{{1}}}` and `{{a|{{b}}}}` nest
    correctly); a matched region that opens with `{{` or `{|` is removed whole. A `{{`
    or `}}` that never matches is removed by itself rather than swallowing the rest of the
    article; single braces of prose (`{a, b}`) are kept.
    """
    opened: list[int] = []
    closing: dict[int, int] = {}
    unmatched: list[int] = []
    for m in _BRACE.finditer(text):
        i = m.start()
        if text[i] == "{":
            opened.append(i)
        elif opened:
            closing[opened.pop()] = i
        else:
            unmatched.append(i)
    unmatched.extend(opened)
    unmatched_set = set(unmatched)

    out: list[str] = []
    kept_from = 0
    for m in _BRACE.finditer(text):
        i = m.start()
        if i < kept_from:
            continue
        if text[i] == "{" and i in closing and text[i + 1 : i + 2] in ("{", "|"):
            end = closing[i] + 1
        elif i in unmatched_set and (text[i - 1 : i] == text[i] or text[i + 1 : i + 2] == text[i]):
            end = i + 1
        else:
            continue
        out.append(text[kept_from:i])
        kept_from = end
    out.append(text[kept_from:])
    return "".join(out)


def _namespace_key(name: str) -> str:
    return name.strip().replace("_", " ").casefold()


def _paragraphs(text: str) -> Iterator[str]:
    """Joins the lines of each wikitext paragraph; headings and list items stand alone."""
    current: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] in "|!" or _HORIZONTAL_RULE.match(line):
            # a blank line ends a paragraph (headings come with blank lines around them);
            # so do table rows left by template-built tables, and horizontal rules
            yield from _flush(current)
        elif line[0] in "*#:;":
            yield from _flush(current)
            item = _tidy(_LIST_MARKER.sub("", line, count=1))
            if _has_words(item):
                yield item
        else:
            current.append(line)
    yield from _flush(current)


def _flush(current: list[str]) -> Iterator[str]:
    if current:
        paragraph = _tidy(" ".join(current))
        current.clear()
        if _has_words(paragraph):
            yield paragraph


def _tidy(line: str) -> str:
    """Spacing left behind by removed markup: `born ( ; )`, `word ,`."""
    if "(" in line:
        line = _SPACE_AFTER_PAREN.sub("(", _EMPTY_PARENTHESES.sub("", line))
    line = _SPACES.sub(" ", line)
    if " ," in line or " )" in line or " ." in line:
        line = _SPACE_BEFORE_PUNCT.sub(r"\1", line)
    return line.strip()


def _has_words(line: str) -> bool:
    return any(c.isalnum() for c in line)


# ---------------------------------------------------------------------------------------
# The XML dump
# ---------------------------------------------------------------------------------------

_REDIRECT_TEXT = re.compile(r"\s*#\s*redirect\b", re.I)
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_DBNAME_IN_FILE = re.compile(r"^([a-z][a-z_]*?wiki)[-_.]")
# Namespaces of links that are never prose, by their canonical number in <namespaces>.
_FILE_NS, _CATEGORY_NS, _MEDIA_NS = "6", "14", "-2"


@dataclass
class SiteInfo:
    """What a dump says about its wiki: database name, language, URL base, namespaces."""

    dbname: str | None = None
    language: str | None = None
    base_url: str | None = None
    namespaces: dict[str, str] = field(default_factory=dict)  # name (casefolded) -> key

    def dropped_link_namespaces(self) -> frozenset[str]:
        local = {n for n, key in self.namespaces.items() if key in (_FILE_NS, _CATEGORY_NS)}
        local |= {n for n, key in self.namespaces.items() if key == _MEDIA_NS}
        return DROPPED_LINK_NAMESPACES | local


@dataclass
class Page:
    title: str
    ns: int
    page_id: str
    revision_id: str | None
    timestamp: str | None
    text: str | None
    redirect: bool


def _local(tag: str) -> str:
    """`{http://www.mediawiki.org/xml/export-0.10/}page` -> `page`: any export version."""
    return tag.rsplit("}", 1)[-1]


def decoded_text(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text of an XML byte stream, its encoding sniffed from the first bytes (XML 1.0, F.1).

    A UTF-8 or UTF-16 (LE or BE) byte-order mark selects that codec and is dropped, as
    does BOM-less UTF-16 (`<` next to a NUL byte); anything else is UTF-8. UTF-32 is
    refused by name. Bytes that are not the codec raise `CorruptInput`
    (`read:invalid_utf8` / `read:invalid_utf16`), after everything decoded before them.
    """
    stream = iter(chunks)
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= 4:
            break
    codec = _sniff_codec(head)
    decoder = codecs.getincrementaldecoder(codec)()
    reason = "read:invalid_utf16" if codec.startswith("utf-16") else "read:invalid_utf8"
    try:
        for chunk in itertools.chain([head], stream):
            if text := decoder.decode(chunk):
                yield text
        if text := decoder.decode(b"", final=True):
            yield text
    except UnicodeDecodeError as err:
        raise CorruptInput(reason, str(err)) from err


def _sniff_codec(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise CorruptInput("read:unsupported_encoding", "UTF-32 XML: re-encode it as UTF-8")
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # Python's utf-16 reads the BOM, picks LE or BE, and drops it
    if head[:2] == b"<\x00":
        return "utf-16-le"
    if head[:2] == b"\x00<":
        return "utf-16-be"
    return "utf-8"


def iter_pages(chunks: Iterable[bytes], site: SiteInfo) -> Iterator[Page]:
    """Every `<page>` of a dump, streamed: each page is released once yielded.

    Fills `site` from `<siteinfo>` and the root's `xml:lang` as they stream past. In a
    dump with several revisions per page, the last (the newest) is taken.
    """
    parser = ET.XMLPullParser(events=("start", "end"))
    root: ET.Element | None = None
    try:
        for text in decoded_text(chunks):
            parser.feed(text)
            for event, element in parser.read_events():
                if event == "start":
                    if root is None:
                        root = element
                        site.language = site.language or element.get(_XML_LANG)
                    continue
                name = _local(element.tag)
                if name == "siteinfo":
                    _read_siteinfo(element, site)
                elif name == "page":
                    yield _read_page(element, site)
                else:
                    continue
                if root is not None and element in root:
                    root.remove(element)  # the root holds at most the current page
        parser.close()
    except ET.ParseError as err:
        raise CorruptInput("read:malformed_xml", str(err)) from err


def _read_siteinfo(element: ET.Element, site: SiteInfo) -> None:
    for child in element:
        name = _local(child.tag)
        if name == "dbname" and child.text:
            site.dbname = child.text.strip()
        elif name == "base" and child.text:
            site.base_url = child.text.strip()
        elif name == "namespaces":
            for ns in child:
                if ns.text:
                    site.namespaces[_namespace_key(ns.text)] = ns.get("key", "")


def _read_page(element: ET.Element, site: SiteInfo) -> Page:
    title, ns, page_id, redirect = "", None, "", False
    revision: ET.Element | None = None
    for child in element:
        name = _local(child.tag)
        if name == "title":
            title = child.text or ""
        elif name == "ns":
            number = (child.text or "0").strip()
            ns = int(number) if number.lstrip("-").isdigit() else -1  # unreadable: not ns 0
        elif name == "id":
            page_id = (child.text or "").strip()
        elif name == "redirect":
            redirect = True
        elif name == "revision":
            revision = child
    if ns is None:  # export-0.3 and older have no <ns>: read the title's prefix
        prefix, colon, _ = title.partition(":")
        ns = int(site.namespaces.get(_namespace_key(prefix), "0")) if colon else 0
    revision_id = timestamp = text = None
    if revision is not None:
        for child in revision:
            name = _local(child.tag)
            if name == "id":
                revision_id = (child.text or "").strip()
            elif name == "timestamp":
                timestamp = (child.text or "").strip()
            elif name == "text":
                text = child.text
    if text is not None and _REDIRECT_TEXT.match(text):
        redirect = True
    return Page(title, ns, page_id, revision_id, timestamp, text, redirect)


def _language_of(site: SiteInfo, path: str) -> tuple[str, str]:
    """(language code, wiki database name), e.g. ("en", "enwiki")."""
    dbname = site.dbname
    if dbname is None:
        m = _DBNAME_IN_FILE.match(PurePosixPath(path).name)
        dbname = m.group(1) if m else None
    if site.language:
        language = site.language
    elif dbname and dbname.endswith("wiki"):
        language = dbname[: -len("wiki")].replace("_", "-")
    else:
        raise CorruptInput(
            "wikipedia:unknown_language",
            f"{path}: no <dbname> or xml:lang in the dump; pass the reader's `language`",
        )
    return language, dbname or f"{language.replace('-', '_')}wiki"


def _page_url(site: SiteInfo, language: str, title: str) -> str:
    """`<base>` is the Main Page's URL; articles live beside it."""
    if site.base_url and "/" in site.base_url:
        prefix = site.base_url.rsplit("/", 1)[0] + "/"
    else:
        prefix = f"https://{language}.wikipedia.org/wiki/"
    return prefix + quote(title.replace(" ", "_"), safe="/:()',!*@$;~-._")


def read_dump(
    path: str,
    *,
    source: str = "wikipedia",
    stats: Stats | None = None,
    language: str | None = None,
    languages: Iterable[str] = (),
    clean: bool = True,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> Iterator[Document]:
    """Articles of a MediaWiki XML dump (`.xml`, `.xml.bz2`, `.gz`, `.zst`), cleaned into
    prose by `clean_wikitext` unless `clean` is false (raw wikitext, for `wikitext_clean`).

    Keeps pages of namespace 0 that are not redirects; the others are counted
    (`wikipedia:redirects`, `wikipedia:other_namespaces`), not dropped: they are not
    documents. The id is `<dbname>/<page id>` (`enwiki/12`), stable across dump files.
    `language` overrides the dump's own (the root's `xml:lang`, else `<dbname>`);
    `languages`, when given, is the allowlist of language codes: articles of other wikis
    are dropped as `wikipedia:language_not_allowed`.
    """
    stats = stats if stats is not None else Stats()
    allowed = {code.strip().lower() for code in languages}
    site = SiteInfo(language=language)
    for page in iter_pages(decompressed_chunks(path), site):
        if page.ns != 0:
            stats.count("wikipedia:other_namespaces")
            continue
        if page.redirect:
            stats.count("wikipedia:redirects")
            continue
        lang, dbname = _language_of(site, path)
        if allowed and lang.lower() not in allowed:
            stats.drop("wikipedia:language_not_allowed")
            continue
        if page.text is None:
            stats.drop("wikipedia:no_text")
            continue
        if len(page.text.encode("utf-8")) > max_document_bytes:
            stats.drop("read:document_too_large")
            continue
        text = clean_wikitext(page.text, site.dropped_link_namespaces()) if clean else page.text
        if not text.strip():
            stats.drop("wikipedia:empty")
            continue
        meta = {
            "title": page.title,
            "page_id": int(page.page_id) if page.page_id.isdigit() else page.page_id,
            "revision_id": page.revision_id,
            "timestamp": page.timestamp,
            "url": _page_url(site, lang, page.title),
            "language": lang,
        }
        yield Document(f"{dbname}/{page.page_id}", text, source, meta)


# The earlier name, which stages/corpus.py, the benchmarks and other tests import.
read_wiki_dump = read_dump


class WikipediaParams(ReaderParams):
    language: str | None = Field(
        None,
        description="Language code for urls and meta.language; default: the root's "
        "xml:lang, else the <dbname> (enwiki -> en).",
    )
    languages: tuple[str, ...] = Field(
        PAPER_LANGUAGES,
        description="Wikis to keep, by language code (default: the 20 of LLaMA §2.1); "
        "articles of others are dropped as wikipedia:language_not_allowed; empty: keep "
        "every language.",
    )
    clean: bool = Field(
        True,
        description="Clean wikitext into prose while reading; false keeps the raw "
        "wikitext for a later wikitext_clean step.",
    )


@register_reader
class WikipediaReader(Reader):
    """MediaWiki XML dumps (`pages-articles*.xml[.bz2]`) -> articles, cleaned by default.

    Ids are the wiki's page ids (`enwiki/12`), not file positions: a page keeps its id
    whichever split of the dump holds it.
    """

    name = "wikipedia"
    Params = WikipediaParams

    def read(self, path: str, doc_id: str, source: str, stats: Stats) -> Iterator[Document]:
        p = self.params
        return read_dump(
            path,
            source=source,
            stats=stats,
            language=p.language,
            languages=p.languages,
            clean=p.clean,
            max_document_bytes=p.max_document_bytes,
        )


class WikitextCleanParams(Params):
    dropped_namespaces: tuple[str, ...] = Field(
        (),
        description="More link namespaces to drop with their links (a wiki's local names "
        "for File: and Category:), besides the English ones and those of the paper's 20 "
        "languages.",
    )


@register_stage
class WikitextClean(Mapper):
    """Raw wikitext -> prose, as `clean_wikitext` (the step after a `wikipedia` reader with
    `clean: false`, or after any reader of wikitext); documents left without prose are
    dropped as `wikitext_clean:empty`.
    """

    name = "wikitext_clean"
    Params = WikitextCleanParams

    def map(self, doc: Document) -> Document:
        namespaces = DROPPED_LINK_NAMESPACES.union(self.params.dropped_namespaces)
        return Document(doc.id, clean_wikitext(doc.text, namespaces), doc.source, doc.meta)
