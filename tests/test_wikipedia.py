"""The Wikipedia reader and wikitext cleaning, on the real dumps in ../shared/data."""

from __future__ import annotations

import bz2
import codecs
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.document import Document
from pipeline.io import CorruptInput, iter_parquet
from pipeline.manifest import load_manifest
from pipeline.runner import run_pipeline
from pipeline.stats import Stats
from stages.base import READERS, STAGES
from stages.wikipedia import (
    PAPER_LANGUAGES,
    WikipediaReader,
    WikitextClean,
    clean_wikitext,
    decoded_text,
    read_dump,
    read_wiki_dump,
    strip_templates_and_tables,
)

MARKUP = ("{{", "}}", "[[", "]]", "<ref", "</ref", "{|", "|}", "|-", "'''", "<!--")
MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "wikipedia.yaml"


def wiki(shared_data: Path, name: str) -> str:
    return str(shared_data / "wikipedia" / name)


def articles_in(path: str) -> list[str]:
    """Page ids of ns-0, non-redirect pages, read with a plain ElementTree parse."""
    root = ET.fromstring(bz2.decompress(Path(path).read_bytes()))
    ids = []
    for page in root.iter():
        if not page.tag.endswith("}page"):
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: child for child in page}
        text = page.find(".//{*}revision/{*}text")
        redirect = "redirect" in fields or (
            text is not None and (text.text or "").lstrip().upper().startswith("#REDIRECT")
        )
        if fields["ns"].text == "0" and not redirect:
            ids.append(fields["id"].text)
    return ids


@pytest.fixture(scope="module")
def enwiki(shared_data: Path) -> tuple[list, Stats]:
    stats = Stats()
    docs = list(read_dump(wiki(shared_data, "enwiki-shortened.xml.bz2"), stats=stats))
    return docs, stats


def test_every_non_redirect_article_is_read_and_nothing_else(shared_data: Path, enwiki) -> None:
    docs, stats = enwiki
    expected = articles_in(wiki(shared_data, "enwiki-shortened.xml.bz2"))
    assert [d.id for d in docs] == [f"enwiki/{page_id}" for page_id in expected]
    assert len(docs) == 106
    assert stats.counters == {"wikipedia:redirects": 99, "wikipedia:other_namespaces": 1}
    assert not stats.drops


def test_no_markup_survives_cleaning(enwiki) -> None:
    docs, _ = enwiki
    for doc in docs:
        for markup in MARKUP:
            assert markup not in doc.text, (doc.id, markup)
        assert not re.search(r"^\s*[|!]", doc.text, re.M), doc.id  # table rows
        assert not re.search(r"^=+|=+$", doc.text, re.M), doc.id  # headings


def test_a_known_article_opens_with_plain_prose(enwiki) -> None:
    docs, _ = enwiki
    anarchism = next(d for d in docs if d.meta["title"] == "Anarchism")
    assert anarchism.text.startswith(
        "Anarchism is a political philosophy that advocates self-governed societies based "
        "on voluntary institutions."
    )
    assert "\nEtymology and terminology\n" in anarchism.text  # a heading, on its own line


def test_meta_names_the_page_and_its_revision(enwiki) -> None:
    docs, _ = enwiki
    anarchism = next(d for d in docs if d.meta["title"] == "Anarchism")
    assert anarchism.id == "enwiki/12"
    assert anarchism.source == "wikipedia"
    assert anarchism.meta == {
        "title": "Anarchism",
        "page_id": 12,
        "revision_id": "716551092",
        "timestamp": "2016-04-22T10:19:33Z",
        "url": "https://en.wikipedia.org/wiki/Anarchism",
        "language": "en",
    }


def test_paragraphs_are_lines_without_blank_lines(enwiki) -> None:
    docs, _ = enwiki
    for doc in docs:
        assert doc.text == doc.text.strip()
        assert "\n\n" not in doc.text
        assert all(line == line.strip() for line in doc.text.split("\n"))


def test_utf16_dump_with_bom_is_decoded_to_cyrillic(shared_data: Path) -> None:
    stats = Stats()
    docs = list(read_dump(wiki(shared_data, "bgwiki-shortened-utf16.xml.bz2"), stats=stats))
    assert [d.id for d in docs] == ["bgwiki/558"]
    assert docs[0].meta["title"] == "Григориански календар"
    assert docs[0].meta["language"] == "bg"
    assert docs[0].meta["url"].startswith("https://bg.wikipedia.org/wiki/%D0%93")
    assert docs[0].text.startswith("Григорианският календар (понякога наричан и")
    assert stats.counters == {"wikipedia:other_namespaces": 2}
    for markup in MARKUP:
        assert markup not in docs[0].text


def test_table_heavy_page_loses_every_table(shared_data: Path) -> None:
    docs = list(read_dump(wiki(shared_data, "enwiki-table-markup.xml.bz2")))
    vote = next(d for d in docs if d.meta["title"] == "Constructive vote of no confidence")
    assert "Since 1949, only two constructive votes of no confidence" in vote.text
    assert "background:#FFF8DC" not in vote.text
    assert "Rainer Barzel ([[" not in vote.text
    for doc in docs:
        for markup in (*MARKUP, "style=", "cellpadding", "colspan", "|-"):
            assert markup not in doc.text, (doc.id, markup)


def test_reader_is_registered_and_counts_what_it_skips(shared_data: Path) -> None:
    assert READERS["wikipedia"] is WikipediaReader
    stats = Stats()
    path = wiki(shared_data, "bgwiki-shortened-utf16.xml.bz2")
    docs = list(WikipediaReader().read(path, "bgwiki-shortened-utf16.xml.bz2", "wiki", stats))
    assert [(d.id, d.source) for d in docs] == [("bgwiki/558", "wiki")]
    assert stats.counters == {"wikipedia:other_namespaces": 2}


def test_language_parameter_overrides_the_dump(shared_data: Path) -> None:
    params = WikipediaReader.Params(language="simple", languages=["simple"])
    path = wiki(shared_data, "enwiki-table-markup.xml.bz2")
    docs = list(WikipediaReader(params).read(path, "x", "wiki", Stats()))
    assert {d.meta["language"] for d in docs} == {"simple"}
    assert docs[0].meta["url"].startswith("https://simple.wikipedia.org/wiki/")


def test_truncated_dump_keeps_pages_before_the_break(shared_data: Path, tmp_path: Path) -> None:
    data = bz2.decompress((shared_data / "wikipedia" / "enwiki-shortened.xml.bz2").read_bytes())
    cut = tmp_path / "enwiki-cut.xml"
    cut.write_bytes(data[: len(data) // 2])
    docs = []
    with pytest.raises(CorruptInput) as err:
        for doc in read_dump(str(cut)):
            docs.append(doc)
    assert err.value.reason == "read:malformed_xml"
    assert 20 < len(docs) < 106


def test_pages_larger_than_the_limit_are_dropped_with_a_reason(shared_data: Path) -> None:
    stats = Stats()
    path = wiki(shared_data, "enwiki-shortened.xml.bz2")
    docs = list(read_dump(path, stats=stats, max_document_bytes=50_000))
    assert stats.drops["read:document_too_large"] > 0
    assert len(docs) + stats.drops["read:document_too_large"] == 106


def test_read_wiki_dump_is_read_dump() -> None:
    assert read_wiki_dump is read_dump


def test_the_papers_twenty_languages_are_the_default_allowlist() -> None:
    assert WikipediaReader.Params().languages == PAPER_LANGUAGES
    assert len(set(PAPER_LANGUAGES)) == 20
    assert {"bg", "ca", "en", "sr", "uk"} <= set(PAPER_LANGUAGES)


def test_articles_of_other_languages_are_dropped_with_a_reason(shared_data: Path) -> None:
    stats = Stats()
    params = WikipediaReader.Params(languages=["en", "de"])
    path = wiki(shared_data, "bgwiki-shortened-utf16.xml.bz2")
    assert list(WikipediaReader(params).read(path, "bg", "wiki", stats)) == []
    assert stats.drops == {"wikipedia:language_not_allowed": 1}
    assert stats.counters == {"wikipedia:other_namespaces": 2}


def test_an_empty_allowlist_keeps_every_language(shared_data: Path) -> None:
    params = WikipediaReader.Params(language="simple", languages=[])
    path = wiki(shared_data, "enwiki-table-markup.xml.bz2")
    assert len(list(WikipediaReader(params).read(path, "x", "wiki", Stats()))) == 5


def test_raw_articles_through_wikitext_clean_equal_cleaning_while_reading(
    shared_data: Path,
) -> None:
    assert STAGES["wikitext_clean"] is WikitextClean
    raw_reader = WikipediaReader(WikipediaReader.Params(clean=False))
    for name in ("enwiki-table-markup.xml.bz2", "bgwiki-shortened-utf16.xml.bz2"):
        path = wiki(shared_data, name)
        raw = list(raw_reader.read(path, name, "wiki", Stats()))
        assert all("{{" in doc.text for doc in raw), name
        cleaned = list(WikitextClean().process(iter(raw), Stats()))
        read_clean = list(read_dump(path, source="wiki"))
        assert [(d.id, d.text, d.meta) for d in cleaned] == [
            (d.id, d.text, d.meta) for d in read_clean
        ], name


def test_wikitext_clean_drops_documents_left_without_prose() -> None:
    docs = [
        Document("a", "{{Infobox}}\n[[Category:X]]", "wiki"),
        Document("b", "'''B''' is a [[letter]].", "wiki"),
    ]
    stats = Stats()
    kept = list(WikitextClean().process(iter(docs), stats))
    assert [(d.id, d.text) for d in kept] == [("b", "B is a letter.")]
    assert stats.drops == {"wikitext_clean:empty": 1}


def test_wikitext_clean_drops_the_link_namespaces_it_is_given() -> None:
    stage = WikitextClean(WikitextClean.Params(dropped_namespaces=["Attēls"]))
    assert stage.map(Document("a", "[[Attēls:x.png|thumb|y]]Text", "wiki")).text == "Text"
    assert WikitextClean().map(Document("a", "[[Attēls:x.png|y]]Text", "wiki")).text == "yText"


@pytest.mark.parametrize(
    ("encoded", "codec"),
    [
        (codecs.BOM_UTF16_LE + "<a>é</a>".encode("utf-16-le"), "utf-16 LE with BOM"),
        (codecs.BOM_UTF16_BE + "<a>é</a>".encode("utf-16-be"), "utf-16 BE with BOM"),
        ("<a>é</a>".encode("utf-16-le"), "utf-16 LE without BOM"),
        (codecs.BOM_UTF8 + "<a>é</a>".encode(), "utf-8 with BOM"),
        ("<a>é</a>".encode(), "utf-8"),
    ],
)
def test_encoding_is_sniffed_from_the_first_bytes(encoded: bytes, codec: str) -> None:
    one_byte_chunks = [encoded[i : i + 1] for i in range(len(encoded))]
    assert "".join(decoded_text(one_byte_chunks)) == "<a>é</a>", codec


def test_utf32_is_refused_by_name() -> None:
    with pytest.raises(CorruptInput) as err:
        list(decoded_text([codecs.BOM_UTF32_LE + "<a/>".encode("utf-32-le")]))
    assert err.value.reason == "read:unsupported_encoding"


def test_undecodable_bytes_are_a_named_reason() -> None:
    with pytest.raises(CorruptInput) as err:
        list(decoded_text([b"<a>\xff\xfe</a>"]))
    assert err.value.reason == "read:invalid_utf8"
    with pytest.raises(CorruptInput) as err:
        list(decoded_text([codecs.BOM_UTF16_LE + "<a>".encode("utf-16-le") + b"\x00\xdc"]))
    assert err.value.reason == "read:invalid_utf16"


# --- clean_wikitext, rule by rule ------------------------------------------------------


@pytest.mark.parametrize(
    ("wikitext", "prose"),
    [
        ("a {{cite|x={{nested|{{{1}}}}}}} b", "a b"),
        ("[[Paris|the capital]] and [[Lyon]]s", "the capital and Lyons"),
        ("[[File:x.jpg|thumb|A [[cat]] on [[mat]]]]Text", "Text"),
        ("[[Category:Cats]]Text [[Image:y.png]]", "Text"),
        ("see [http://example.org the site] or [http://example.org]", "see the site or"),
        ("'''bold''' and ''italic'' and '''''both'''''", "bold and italic and both"),
        ("== History ==", "History"),
        ("x<ref name=a>{{cite web|url=u}}</ref>y<ref name=b/> z", "xy z"),
        ("a <!-- hidden --> b", "a b"),
        ("__NOTOC__Text", "Text"),
        ("a&nbsp;&amp;&nbsp;b &ndash; c", "a\xa0&\xa0b – c"),
        ("H<sub>2</sub>O is <small>water</small>", "H2O is water"),
        ("x <math>\\frac{1}{2}</math> y", "x y"),
        ("born (1900 {{ndash}} ) in", "born (1900) in"),
        ("{|\n| a || b\n|-\n| {{x}} || c\n|}\nAfter", "After"),
        ("line one\nline two\n\nnext paragraph", "line one line two\nnext paragraph"),
        ("* item one\n* item two", "item one\nitem two"),
        ("[[:Category:Cats]] are listed", "Category:Cats are listed"),
        ("[[de:Katze]]", ""),
        ("[[wikt:cat|cat]]s", "cats"),
        ("x<y and y>z", "x<y and y>z"),  # not a tag MediaWiki knows
        ("text\n== Heading ==\nmore", "text\nHeading\nmore"),
        ("== [[Paris|City]] <ref>x</ref> ==", "City"),
        ("see [http://example.org  the [[site]]]", "see the site"),
        ('an ESC and a "[" (left bracket)', 'an ESC and a "[" (left bracket)'),
        ("x<ref>a<ref>b</ref>y", "xy"),
        ("x<ref>a</ref name=b> y</ref>z", "xz"),  # a closing tag with attributes closes nothing
        ("a<includeonly>{{x}}</includeonly>b", "ab"),
        ("[[Fitxer:x.jpg|miniatura|y]][[Kategória:Z]][[Датотека:z.png]]Text", "Text"),
        ("one ----\n----\ntwo", "one ----\ntwo"),
    ],
)
def test_clean_wikitext_rule(wikitext: str, prose: str) -> None:
    assert clean_wikitext(wikitext) == prose


def test_an_unclosed_template_does_not_swallow_the_article() -> None:
    assert strip_templates_and_tables("{{broken\nStill here. {{ok}} End") == (
        "broken\nStill here.  End"
    )
    assert strip_templates_and_tables("prose {a, b} stays") == "prose {a, b} stays"


def test_localised_namespaces_of_the_dump_are_dropped() -> None:
    assert clean_wikitext("[[Kategorie:X]][[Файл:y.jpg|thumb|z]]Text") == "Text"
    assert clean_wikitext("[[Bestandteil:X|shown]]", dropped_namespaces=["bestandteil"]) == ""


@pytest.mark.parametrize(
    "opener", ["{{a|", "[[a|", "[http://example.org ", "{|\n", "<ref>", "<span>[[a|{{b|<ref>"]
)
def test_thousands_of_unclosed_openers_leave_the_prose(opener: str) -> None:
    """mwparserfromhell retries an unclosed opener against the rest of the page (quadratic
    in their number); such openers are dropped before it parses."""
    text = clean_wikitext("Start.\n\n" + opener * 5000 + "\n\nEnd of the page.")
    assert text.startswith("Start.\n")
    assert text.endswith("\nEnd of the page.")
    for markup in MARKUP:
        assert markup not in text, markup


def test_wikipedia_manifest_outputs_exactly_the_articles_without_markup(
    shared_data: Path, tmp_path: Path, ray_local: None
) -> None:
    result = run_pipeline(load_manifest(MANIFEST), output=str(tmp_path), workers=2, progress=False)
    dumps = sorted((shared_data / "wikipedia").glob("*.xml.bz2"))
    expected = sorted(
        f"{dump.name.split('-')[0]}/{page_id}"
        for dump in dumps
        for page_id in articles_in(str(dump))
    )
    final = tmp_path / "sources" / "wikipedia" / "02-exact_dedup"
    docs = [doc for part in sorted(final.glob("part-*.parquet")) for doc in iter_parquet(str(part))]
    assert sorted(doc.id for doc in docs) == expected
    for doc in docs:
        for markup in MARKUP:
            assert markup not in doc.text, (doc.id, markup)
    steps = {s["step"]: s["stats"] for s in result.stats["sources"]["wikipedia"]["steps"]}
    assert steps["00-read"]["counters"]["wikipedia:redirects"] == 99
    assert steps["00-read"]["docs_out"] == len(expected)
