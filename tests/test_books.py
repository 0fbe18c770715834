"""Project Gutenberg boilerplate removal, on a real Gutenberg book and the old marker styles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.document import Document
from pipeline.stats import Stats
from stages.base import STAGES
from stages.books import GutenbergStrip, strip_gutenberg

BOTCHAN_FIRST_LINE = "BOTCHAN (MASTER DARLING)"
BOTCHAN_LAST_LINES = "So Kiyo's grave is in the Yogen temple at Kobinata.\r\n--(THE END)--"
BOILERPLATE = ("Project Gutenberg", "PROJECT GUTENBERG", "*** START", "*** END", "Gutenberg-tm")


@pytest.fixture(scope="module")
def botchan(shared_data: Path) -> str:
    """Gutenberg #8868 as distributed: BOM, CRLF line ends, header, footer and licence."""
    return (shared_data / "books" / "botchan.txt").read_bytes().decode("utf-8")


def test_botchan_keeps_no_gutenberg_boilerplate(botchan: str) -> None:
    stripped = strip_gutenberg(botchan)
    for phrase in BOILERPLATE:
        assert phrase not in stripped
    assert "gutenberg" not in stripped.lower()
    assert "Produced by" not in stripped


def test_botchan_keeps_the_novel_from_title_to_the_end(botchan: str) -> None:
    stripped = strip_gutenberg(botchan)
    assert stripped.startswith(BOTCHAN_FIRST_LINE + "\r\n")
    assert BOTCHAN_LAST_LINES in stripped
    assert stripped.endswith("[R: Rad]")  # the transcriber's notes after the novel stay


def test_botchan_text_between_markers_is_kept_byte_for_byte(botchan: str) -> None:
    stripped = strip_gutenberg(botchan)
    assert stripped in botchan
    body_start = botchan.index("\r\n" + BOTCHAN_FIRST_LINE + "\r\n") + 2
    body_end = botchan.index("End of Project Gutenberg's Botchan")
    assert stripped == botchan[body_start:body_end].rstrip("\r\n")


def book(header: str, footer: str, body: str = "Chapter I\n\nIt was a dark night.") -> str:
    return f"{header}\n\n{body}\n\n{footer}\n"


@pytest.mark.parametrize(
    "start",
    [
        "*** START OF THE PROJECT GUTENBERG EBOOK PRIDE AND PREJUDICE ***",
        "*** START OF THIS PROJECT GUTENBERG EBOOK EMMA ***",
        "***START OF THE PROJECT GUTENBERG EBOOK EMMA***",
        " *** START OF THIS PROJECT GUTENBERG EBOOK EMMA ***",
        "*** START OF THE COPYRIGHTED PROJECT GUTENBERG EBOOK EMMA ***",
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
        "*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.10/04/01*END*",
    ],
)
def test_start_marker_variants_end_the_header(start: str) -> None:
    text = f"The Project Gutenberg EBook of Emma\nLicence words.\n{start}\n\nChapter I\n"
    assert strip_gutenberg(text) == "Chapter I"


@pytest.mark.parametrize(
    "end",
    [
        "*** END OF THE PROJECT GUTENBERG EBOOK EMMA ***",
        "*** END OF THIS PROJECT GUTENBERG EBOOK EMMA ***",
        "***END OF THE PROJECT GUTENBERG EBOOK EMMA***",
        "End of the Project Gutenberg EBook of Emma, by Jane Austen",
        "End of The Project Gutenberg Etext of Emma",
        "End of Project Gutenberg's Emma, by Jane Austen",
        "End of this Project Gutenberg Etext of Emma",
        "END OF PROJECT GUTENBERG ETEXT OF EMMA",
    ],
)
def test_end_marker_variants_start_the_footer(end: str) -> None:
    text = f"Chapter I\n\nThe end.\n\n{end}\nLicence words, Project Gutenberg-tm.\n"
    assert strip_gutenberg(text) == "Chapter I\n\nThe end."


@pytest.mark.parametrize(
    "credit",
    [
        "Produced by David Starner and the Online Distributed Proofreading Team",
        "Produced by Charles Aldarondo, Charles Franks and the Online\nDistributed Proofreaders",
        "This etext was prepared by Judy Boss, Omaha, Nebraska",
        "E-text prepared by the Project Gutenberg Online Distributed Proofreading Team",
        "Transcribed from the 1891 Chatto & Windus edition by David Price",
    ],
)
def test_production_credit_after_the_start_marker_is_removed(credit: str) -> None:
    text = book(f"*** START OF THE PROJECT GUTENBERG EBOOK EMMA ***\n\n{credit}", "")
    assert strip_gutenberg(text) == "Chapter I\n\nIt was a dark night."


def test_credit_without_a_blank_line_after_it_takes_only_its_own_line() -> None:
    text = "*** START OF THE PROJECT GUTENBERG EBOOK EMMA ***\nProduced by A. B.\nEMMA\nCh. 1\n"
    assert strip_gutenberg(text) == "EMMA\nCh. 1"


def test_produced_by_inside_the_book_is_kept() -> None:
    body = "Chapter I\n\nProduced by the mill, the flour was fine."
    text = book(
        "*** START OF THE PROJECT GUTENBERG EBOOK EMMA ***",
        "*** END OF THE PROJECT GUTENBERG EBOOK EMMA ***",
        body,
    )
    assert strip_gutenberg(text) == body


def test_licence_inserted_in_the_text_is_removed() -> None:
    body = (
        "Act I\n<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM SHAKESPEARE IS\n"
        "COPYRIGHT 1990-1993 BY WORLD LIBRARY, INC.\n"
        "SERVICE THAT CHARGES FOR DOWNLOAD TIME OR FOR MEMBERSHIP.>>\nAct II"
    )
    text = book("*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***", "", body)
    assert strip_gutenberg(text) == "Act I\nAct II"


def test_unclosed_licence_block_keeps_the_rest_of_the_book() -> None:
    body = "Act I\n<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS\nAct II"
    text = book("*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***", "", body)
    assert strip_gutenberg(text) == body


def test_later_start_marker_wins_over_the_small_print() -> None:
    text = (
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\nMore header.\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK EMMA ***\nEMMA\n"
    )
    assert strip_gutenberg(text) == "EMMA"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A plain book.\nNo markers at all, even a mention of Project Gutenberg.\n",
        "  indented\r\n\r\nwith CRLF and trailing blank lines\r\n\r\n",
        "The END OF THE LINE *** START here, not at a line start ***",
    ],
)
def test_text_without_markers_is_unchanged(text: str) -> None:
    assert strip_gutenberg(text) == text


def test_stage_is_registered_as_gutenberg_strip() -> None:
    assert STAGES["gutenberg_strip"] is GutenbergStrip


def test_stage_counts_removed_headers_and_footers_and_drops_empty_books() -> None:
    start = "*** START OF THE PROJECT GUTENBERG EBOOK X ***"
    end = "*** END OF THE PROJECT GUTENBERG EBOOK X ***"
    docs = [
        Document("full", f"{start}\nBook one.\n{end}\nLicence.", "books", {"k": 1}),
        Document("head", f"Header.\n{start}\nBook two.", "books", {}),
        Document("plain", "Book three.", "books", {}),
        Document("empty", f"Header.\n{start}\nProduced by Someone\n{end}\n", "books", {}),
    ]
    stats = Stats()
    out = list(GutenbergStrip().process(iter(docs), stats))
    assert [(d.id, d.text) for d in out] == [
        ("full", "Book one."),
        ("head", "Book two."),
        ("plain", "Book three."),
    ]
    assert out[0].meta == {"k": 1} and out[0].source == "books"
    assert stats.counters == {
        "gutenberg_strip:header_removed": 3,
        "gutenberg_strip:footer_removed": 2,
    }
    assert stats.drops == {"gutenberg_strip:empty": 1}
