"""Real documents and planted near-duplicates of them, for the MinHash tests."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

from stages.html import html_to_text
from stages.wikipedia import read_wiki_dump

HEADERS = [
    "Home | About | Contact | Login",
    "Skip to main content. Menu Search",
    "Advertisement: subscribe now for unlimited access",
]
FOOTERS = [
    "Copyright 2024 Example Media Group. All rights reserved. Privacy policy. Terms of use.",
    "Share this article on Facebook Twitter LinkedIn Email Print",
    "This page was last edited on 3 March 2023 at 12:04 and is cached by a mirror site.",
]


def botchan_chapters(shared_data: Path) -> list[str]:
    book = (shared_data / "books" / "botchan.txt").read_text(encoding="utf-8-sig")
    body = book.split("*** START OF")[1].split("*** END OF")[0]
    return [c for c in re.split(r"\nCHAPTER [IVXL]+\.?\n", body)[1:] if len(c.split()) > 100]


def base_texts(shared_data: Path) -> dict[str, str]:
    """Real documents of 100 to 4,000 words: Wikipedia, Python docs pages, Botchan."""
    bases: dict[str, str] = {}
    wiki = shared_data / "wikipedia" / "enwiki-shortened.xml.bz2"
    for doc in read_wiki_dump(str(wiki)):
        if 100 <= len(doc.text.split()) <= 4000 and len(bases) < 30:
            bases[f"wiki-{doc.id}"] = doc.text
    pages = 0
    for path in sorted((shared_data / "web" / "html").glob("*.html")):
        text = html_to_text(path.read_bytes())
        if 100 <= len(text.split()) <= 4000 and pages < 30:
            bases[f"html-{path.stem}"] = text
            pages += 1
    for n, chapter in enumerate(botchan_chapters(shared_data)):
        bases[f"botchan-{n:02d}"] = chapter
    return bases


def edit_words(text: str, rate: float, rng: random.Random) -> str:
    """Delete, insert or replace `rate` of the words, keeping line structure.

    Edits fall in one to three contiguous runs (a rewritten passage) or, a third of the
    time, scattered word by word, which damages up to five shingles per edit.
    """
    lines = [line.split() for line in text.split("\n")]
    n_words = sum(map(len, lines))
    vocab = text.split() or ["word"]
    budget = max(1, round(rate * n_words))
    if rng.random() < 1 / 3:
        edited = set(rng.sample(range(n_words), min(budget, n_words)))
    else:
        edited = set()
        runs = rng.randint(1, 3)
        for _ in range(runs):
            start = rng.randrange(n_words)
            edited.update(range(start, min(n_words, start + budget // runs)))
    op = rng.choice(("delete", "insert", "replace"))
    out_lines, index = [], 0
    for words in lines:
        out = []
        for word in words:
            if index not in edited:
                out.append(word)
            elif op == "insert":
                out += [word, rng.choice(vocab)]
            elif op == "replace":
                out.append(rng.choice(vocab))
            index += 1
        out_lines.append(" ".join(out))
    return "\n".join(out_lines)


def variant(text: str, rng: random.Random) -> str:
    """A planted near-duplicate: 2-30% (log-uniform) word edits, maybe reordered
    paragraphs and added boilerplate."""
    text = edit_words(text, math.exp(rng.uniform(math.log(0.02), math.log(0.30))), rng)
    paragraphs = [p for p in text.split("\n") if p.strip()]
    if len(paragraphs) > 2 and rng.random() < 0.5:
        i, j = rng.sample(range(len(paragraphs)), 2)
        paragraphs[i], paragraphs[j] = paragraphs[j], paragraphs[i]
    if rng.random() < 0.5:
        paragraphs = [rng.choice(HEADERS), *paragraphs, rng.choice(FOOTERS)]
    return "\n".join(paragraphs)


def chain_of_near_duplicates(shared_data: Path) -> tuple[str, str, str]:
    """a~b and b~c at Jaccard >= 0.8, but a and c below it."""
    words = " ".join(botchan_chapters(shared_data)[0].split()[:400]).split()
    b_words = list(words)
    for k, pos in enumerate(range(20, 400, 80)):
        b_words[pos] = f"planted{k}"
    c_words = list(b_words)
    for k, pos in enumerate(range(60, 400, 80)):
        c_words[pos] = f"edited{k}"
    return " ".join(words), " ".join(b_words), " ".join(c_words)
