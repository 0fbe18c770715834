"""StackExchange: Posts.xml threads, numeric answer order, post HTML to text, broken dumps,
bounded memory, the largest sites, and the manifest on the fixture dump."""

from __future__ import annotations

import bz2
import gzip
import random
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
import zstandard

from pipeline.document import Document
from pipeline.io import CorruptInput, iter_parquet
from pipeline.manifest import load_manifest
from pipeline.runner import run_pipeline
from pipeline.stats import Stats
from stages.base import READERS
from stages.stackexchange import (
    StackExchangeReader,
    parse_tags,
    post_html_to_text,
    read_posts,
    select_top_sites,
)

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "stackexchange.yaml"


def question(post_id: int, title: str, body: str, score: int = 0, **extra: object) -> dict:
    return {"Id": post_id, "PostTypeId": 1, "Score": score, "Title": title, "Body": body, **extra}


def answer(post_id: int, parent: int, body: str, score: int = 0) -> dict:
    return {"Id": post_id, "PostTypeId": 2, "ParentId": parent, "Score": score, "Body": body}


def posts_xml(rows: list[dict]) -> bytes:
    """A Posts.xml in the dump's shape: HTML bodies escaped into attributes, newlines as
    character references."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<posts>"]
    for row in rows:
        attrs = " ".join(f"{name}={quoteattr(str(value))}" for name, value in row.items())
        lines.append(f"  <row {attrs} />")
    lines.append("</posts>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_posts(directory: Path, rows: list[dict], name: str = "Posts.xml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = posts_xml(rows)
    if name.endswith(".bz2"):
        data = bz2.compress(data, compresslevel=1)  # 100 kB blocks: a cut file has whole ones
    elif name.endswith(".gz"):
        data = gzip.compress(data)
    elif name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path = directory / name
    path.write_bytes(data)
    return path


def read_all(path: Path, **options: object) -> tuple[list[Document], Stats]:
    stats = Stats()
    return list(read_posts(str(path), stats=stats, **options)), stats  # type: ignore[arg-type]


def read_until_break(path: Path) -> tuple[list[Document], str]:
    docs = []
    with pytest.raises(CorruptInput) as broke:
        for doc in read_posts(str(path)):
            docs.append(doc)
    return docs, broke.value.reason


def test_answers_sorted_by_numeric_score_not_as_strings(tmp_path: Path) -> None:
    path = write_posts(
        tmp_path / "site.example",
        [
            question(1, "Which?", "<p>Pick one.</p>"),
            answer(2, 1, "<p>nine</p>", score=9),
            answer(3, 1, "<p>hundred</p>", score=100),
            answer(4, 1, "<p>ten</p>", score=10),
            answer(5, 1, "<p>minus one</p>", score=-1),
        ],
    )
    (doc,), _ = read_all(path)
    assert doc.text == ("Q: Which?\nPick one.\n\nA: hundred\n\nA: ten\n\nA: nine\n\nA: minus one")


def test_equal_scores_keep_the_older_answer_first(tmp_path: Path) -> None:
    path = write_posts(
        tmp_path / "site.example",
        [
            question(1, "Tie?", "<p>q</p>"),
            answer(7, 1, "<p>later</p>", score=3),
            answer(4, 1, "<p>earlier</p>", score=3),
        ],
    )
    (doc,), _ = read_all(path)
    assert doc.text.index("A: earlier") < doc.text.index("A: later")


def test_answers_before_their_question_still_join_its_thread(tmp_path: Path) -> None:
    path = write_posts(
        tmp_path / "site.example",
        [answer(9, 20, "<p>early answer</p>", score=1), question(20, "Late question", "<p>q</p>")],
    )
    (doc,), stats = read_all(path)
    assert doc.text == "Q: Late question\nq\n\nA: early answer"
    assert not stats.drops


def test_thread_id_and_meta(tmp_path: Path) -> None:
    rows = [
        question(
            42,
            "Title",
            "<p>body</p>",
            score=7,
            Tags="<python><list>",
            AcceptedAnswerId=44,
            CreationDate="2020-01-02T03:04:05.678",
        ),
        answer(43, 42, "<p>a</p>"),
        answer(44, 42, "<p>b</p>"),
    ]
    (doc,), _ = read_all(write_posts(tmp_path / "math.stackexchange.com", rows))
    assert doc.id == "math.stackexchange.com/42"
    assert doc.source == "stackexchange"
    assert doc.meta == {
        "site": "math.stackexchange.com",
        "question_id": 42,
        "title": "Title",
        "score": 7,
        "tags": ["python", "list"],
        "answer_count": 2,
        "accepted_answer_id": 44,
        "creation_date": "2020-01-02T03:04:05.678",
        "url": "https://math.stackexchange.com/questions/42",
    }


def test_tags_in_old_and_new_dump_formats() -> None:
    assert parse_tags("<c++><memory-management>") == ["c++", "memory-management"]
    assert parse_tags("|c++|memory-management|") == ["c++", "memory-management"]
    assert parse_tags("") == []


def test_html_entities_are_decoded_once_per_layer(tmp_path: Path) -> None:
    # In the file: &amp;lt; -> the HTML holds &lt; -> the text holds <.
    body = "<p>if a &lt; b &amp;&amp; c &gt; d: caf&#233; &quot;ok&quot;</p>"
    (doc,), _ = read_all(write_posts(tmp_path / "s", [question(1, "x & y", body)]))
    assert doc.text == 'Q: x & y\nif a < b && c > d: café "ok"'
    assert b"&amp;lt;" in posts_xml([question(1, "t", body)])


def test_code_blocks_keep_lines_and_indentation(tmp_path: Path) -> None:
    code = "def f(x):\n    if x &lt; 1:\n\n        return [x]\n    return  []\n"
    body = f"<p>Try <code>f(0)</code>:</p>\n\n<pre><code>{code}</code></pre>\n\n<p>Done.</p>"
    (doc,), _ = read_all(write_posts(tmp_path / "s", [question(1, "Code", body)]))
    assert doc.text == (
        "Q: Code\nTry f(0):\n\n"
        "def f(x):\n    if x < 1:\n\n        return [x]\n    return  []\n\nDone."
    )


def test_a_code_block_may_start_indented() -> None:
    assert post_html_to_text("<pre><code>    x = 1\n</code></pre>") == "    x = 1"


def test_lists_keep_their_structure() -> None:
    html = (
        "<p>Steps:</p><ol><li>mix</li><li><p>bake</p><ul><li>at 200</li><li>for 30"
        "</li></ul></li><li>cool</ol><ul>\n<li>no numbers</li>\n</ul>"
    )
    assert post_html_to_text(html) == (
        "Steps:\n\n1. mix\n2. bake\n   - at 200\n   - for 30\n3. cool\n\n- no numbers"
    )


def test_ordered_list_honours_its_start() -> None:
    assert post_html_to_text('<ol start="4"><li>d</li><li>e</li></ol>') == "4. d\n5. e"


def test_paragraphs_quotes_breaks_and_tables() -> None:
    html = (
        "<p>one\n  two</p><blockquote><p>said</p><p>twice</p></blockquote>"
        "<p>a<br>b</p><table><tr><th>k</th><th>v</th></tr><tr><td>1</td><td>2</td></tr></table>"
    )
    assert post_html_to_text(html) == "one two\n\n> said\n>\n> twice\n\na\nb\n\nk | v\n1 | 2"


def test_answer_whose_question_is_missing_is_counted(tmp_path: Path) -> None:
    path = write_posts(
        tmp_path / "s",
        [question(1, "Q", "<p>q</p>"), answer(2, 1, "<p>kept</p>"), answer(3, 99, "<p>x</p>")],
    )
    (doc,), stats = read_all(path)
    assert doc.text == "Q: Q\nq\n\nA: kept"
    assert stats.drops == {"stackexchange:orphan_answer": 1}


def test_other_post_types_and_bad_rows_are_counted(tmp_path: Path) -> None:
    path = write_posts(
        tmp_path / "s",
        [
            question(1, "Q", "<p>q</p>"),
            {"Id": 2, "PostTypeId": 5, "Body": "<p>tag wiki</p>"},
            {"Id": 3, "PostTypeId": 4, "Body": "<p>excerpt</p>"},
            {"Id": "x", "PostTypeId": 1, "Title": "no id", "Body": ""},
            {"Id": 4, "PostTypeId": 2, "Body": "<p>answer without a parent</p>"},
            answer(5, 1, "<p><img src='a.png'></p>"),
            question(1, "Q again", "<p>duplicate id</p>"),
        ],
    )
    (doc,), stats = read_all(path)
    assert doc.text == "Q: Q\nq"
    assert stats.counters == {
        "stackexchange:other_post_types": 2,
        "stackexchange:empty_answers": 1,
    }
    assert stats.drops == {"stackexchange:bad_row": 2, "stackexchange:duplicate_post": 1}


def _threads(count: int, words: int = 1) -> list[dict]:
    rows = []
    for q in range(count):
        qid = 10 * q + 1
        more = " more" * words
        rows.append(question(qid, f"Question {q}", f"<p>body {q} &amp;{more}</p>", score=q % 5))
        rows += [answer(qid + a, qid, f"<p>answer {q}.{a}</p>", score=(a * 7) % 4) for a in (1, 2)]
    return rows


@pytest.mark.parametrize(
    ("name", "reason"),
    [("Posts.xml", "stackexchange:truncated_xml"), ("Posts.xml.bz2", "read:truncated_bz2")],
)
def test_truncated_file_keeps_threads_read_before_the_break(
    tmp_path: Path, name: str, reason: str
) -> None:
    whole = write_posts(tmp_path / "whole" / "site.example", _threads(200, words=400), name)
    complete, _ = read_all(whole)
    cut = tmp_path / "cut" / "site.example" / name
    cut.parent.mkdir(parents=True)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    docs, counted = read_until_break(cut)
    assert counted == reason
    assert 0 < len(docs) < len(complete)
    assert docs[0] == complete[0]


def test_malformed_xml_is_a_counted_reason(tmp_path: Path) -> None:
    path = write_posts(tmp_path / "s", _threads(3))
    data = path.read_bytes()
    path.write_bytes(data.replace(b'<row Id="21"', b'<row Id="21" <broken', 1))
    docs, reason = read_until_break(path)
    assert reason == "stackexchange:malformed_xml"
    assert [doc.id for doc in docs] == ["s/1", "s/11"]


def test_truncation_reaches_the_engine_as_a_drop_reason(tmp_path: Path) -> None:
    path = write_posts(tmp_path / "s", _threads(5))
    path.write_bytes(path.read_bytes()[:-40])
    stats = Stats()
    reader = StackExchangeReader(StackExchangeReader.Params())
    with pytest.raises(CorruptInput) as broke:
        list(reader.read(str(path), "s/Posts.xml", "stackexchange", stats))
    assert broke.value.reason == "stackexchange:truncated_xml"


@pytest.mark.parametrize("name", ["Posts.xml.bz2", "Posts.xml.gz", "Posts.xml.zst"])
def test_compressed_dumps_read_like_plain_ones(tmp_path: Path, name: str) -> None:
    rows = _threads(20)
    plain, _ = read_all(write_posts(tmp_path / "a" / "s", rows))
    packed, _ = read_all(write_posts(tmp_path / "b" / "s", rows, name))
    assert packed == plain


def test_spilling_to_disk_gives_the_same_threads(tmp_path: Path) -> None:
    rows = _threads(400)
    rows += [answer(9001, 31, "<p>late</p>", score=50), answer(9002, 77777, "<p>orphan</p>")]
    rows.append(answer(12, 11, "<p>same id twice</p>", score=99))
    random.Random(5).shuffle(rows)  # answers before, after and far from their question
    path = write_posts(tmp_path / "s", rows)

    held, held_stats = read_all(path, max_pending_posts=10_000)
    spilled, spilled_stats = read_all(path, max_pending_posts=50)
    assert spilled == held
    assert len(held) == 400
    assert spilled_stats.counters["stackexchange:spilled_posts"] == len(rows)
    assert "stackexchange:spilled_posts" not in held_stats.counters
    assert spilled_stats.drops == held_stats.drops
    assert held_stats.drops == {
        "stackexchange:orphan_answer": 1,
        "stackexchange:duplicate_post": 1,
    }


def test_spill_file_is_removed_after_reading_and_when_reading_stops_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill = tmp_path / "tmp"
    spill.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill))
    monkeypatch.setattr("tempfile.tempdir", None)
    path = write_posts(tmp_path / "s", _threads(50))
    assert len(read_all(path, max_pending_posts=10)[0]) == 50
    assert list(spill.iterdir()) == []
    reading = read_posts(str(path), max_pending_posts=10)
    next(reading)
    assert len(list(spill.iterdir())) == 1
    reading.close()
    assert list(spill.iterdir()) == []


def _site(dump: Path, name: str, size: int, posts: str = "Posts.xml") -> None:
    (dump / name).mkdir(parents=True)
    (dump / name / posts).write_bytes(b"x" * size)


def test_top_sites_picks_the_largest_posts_files(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    _site(dump, "small.example", 10)
    _site(dump, "big.example", 500, "Posts.xml.bz2")
    _site(dump, "mid-b.example", 100, "Posts.xml.zst")
    _site(dump, "mid-a.example", 100, "Posts.xml.gz")
    _site(dump, "no-posts.example", 900, "Comments.xml")
    (dump / "packed.example.7z").write_bytes(b"x" * 1000)

    assert select_top_sites(str(dump), 3) == ["big.example", "mid-a.example", "mid-b.example"]
    assert select_top_sites(str(dump), 1) == ["big.example"]
    assert len(select_top_sites(str(dump), 28)) == 4


def test_reader_reads_only_the_top_sites(tmp_path: Path) -> None:
    big = write_posts(tmp_path / "dump" / "big.example", _threads(10))
    small = write_posts(tmp_path / "dump" / "small.example", _threads(1))
    reader = READERS["stackexchange"](StackExchangeReader.Params(top_sites=1))
    stats = Stats()
    assert len(list(reader.read(str(big), "big.example/Posts.xml", "se", stats))) == 10
    assert list(reader.read(str(small), "small.example/Posts.xml", "se", stats)) == []
    assert stats.counters == {"stackexchange:not_top_site": 1}


def test_manifest_runs_on_the_fixture_dump(tmp_path: Path, ray_local: None) -> None:
    result = run_pipeline(load_manifest(MANIFEST), output=str(tmp_path), workers=2, progress=False)
    steps = result.stats["sources"]["stackexchange"]["steps"]
    final = tmp_path / "sources" / "stackexchange" / "02-exact_dedup"
    docs = {d.id: d for p in sorted(final.glob("part-*.parquet")) for d in iter_parquet(str(p))}
    assert sorted(docs) == [
        "cooking.stackexchange.com/1",
        "cooking.stackexchange.com/10",
        "cooking.stackexchange.com/4",
        "gardening.stackexchange.com/3",
    ]
    rice = docs["cooking.stackexchange.com/1"].text
    assert rice.index("A: Use the absorption") < rice.index("A: Rinse") < rice.index("A: Add")
    assert "\n1. Bring 1 cup of rice and 1½ cups" in rice
    assert "    foam on top  -> yeast is alive\n" in docs["cooking.stackexchange.com/4"].text
    read, length, dedup = (step["stats"] for step in steps)
    assert read["counters"]["stackexchange:not_top_site"] == 1
    assert read["counters"]["stackexchange:other_post_types"] == 1
    assert read["drops"] == {"stackexchange:orphan_answer": 1}
    assert length["drops"] == {"length_filter:too_short": 1}
    assert dedup["drops"] == {"exact_dedup:duplicate": 1}
