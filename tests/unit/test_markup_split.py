"""Properties of splitting (hypothesis): a part never exceeds the platform's limit in its unit, no text is
lost (only whitespace at the cuts), and no cut falls inside a table row, a citation, a link or a URL
that fits in a part -- for raw text and for whole replies rendered in every line dialect."""
from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.markup import DINGTALK, PLAIN, WECOM, document, feishu_cards, render, split, utf8_len
from connectors.markup.split import MARK_RESERVE
from connectors.markup.split import URL as BARE_URL
from connectors.message import Citation, Reply

# MARKUP_EXAMPLES=1000 for a longer hunt; the default keeps the file at a few seconds
FAST = settings(max_examples=int(os.environ.get("MARKUP_EXAMPLES", "50")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORDS = st.text(alphabet="销售助手按段落切分长回复医疗客户追溯🏥 abcXYZ019.,;!?。，、！？；：-", min_size=1, max_size=40)
LINK = st.builds(lambda label, path: f"[{label}](https://kb.example.com/{path}?a=1&b=2)",
                 st.text(alphabet="价格表手册guide ", min_size=1, max_size=8), st.text(alphabet="abc-/_0123", min_size=1, max_size=20))
URL = st.builds(lambda p: f"https://kb.example.com/{p}", st.text(alphabet="abcdef/-_?=&0123", min_size=1, max_size=24))
MARK = st.integers(1, 9).map(lambda n: f"[{n}]")
SENTENCE = st.lists(st.one_of(WORDS, WORDS, LINK, URL, MARK), min_size=1, max_size=8).map(" ".join)
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=4).map("\n".join)
CELL = st.text(alphabet="万周月级单品批次支持 0123", min_size=1, max_size=10)
TABLE = st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=6).map(
    lambda rows: "| 维度 | 我们 | 星图 |\n|---|---|---|\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows))
LIST = st.lists(SENTENCE, min_size=1, max_size=5).map(lambda items: "\n".join(f"{i + 3}. {t}" for i, t in enumerate(items)))
MARKDOWN = st.lists(st.one_of(PARAGRAPH, PARAGRAPH, TABLE, LIST, SENTENCE.map(lambda s: "## " + s.replace("\n", " "))),
                    min_size=1, max_size=10).map("\n\n".join)
CITATIONS = st.lists(st.builds(lambda n, t, u: Citation(n=n, doc_id=f"d{n}", title=t, version="2", updated="2026-11-10", url=u),
                               st.integers(1, 9), st.text(alphabet="竞品卡星图价格 ", min_size=1, max_size=12), st.one_of(st.just(""), URL)),
                     max_size=4)
_WHOLE = re.compile(r"\[[^\]\n]*\]\([^)\s]*\)|" + BARE_URL.pattern + r"|(?:\[\d+\])+")


def _squeeze(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _unmarked(parts: list[str]) -> list[str]:
    return [re.sub(r"^\(\d+/\d+\)\n", "", p) for p in parts]


def _check(text: str, parts: list[str], limit: int, size, keep=()) -> None:
    budget = limit - MARK_RESERVE
    assert all(size(p) <= limit for p in parts), [size(p) for p in parts]
    body = _unmarked(parts)
    assert _squeeze("".join(body)) == _squeeze(text)  # nothing lost, nothing added but the markers
    spans = [text[s:e] for s, e in keep] + [m.group(0) for m in _WHOLE.finditer(text)]
    for whole in spans:
        if size(whole) <= budget:
            assert any(whole.strip() in p for p in body), f"cut inside {whole!r}"


@FAST
@given(text=MARKDOWN, limit=st.integers(40, 700), unit=st.sampled_from(["bytes", "chars"]))
def test_raw_text_parts_stay_under_the_limit_and_keep_links_and_markers_whole(text, limit, unit):
    size = utf8_len if unit == "bytes" else len
    _check(text, split(text, limit, size, numbered=True), limit, size)


@FAST
@given(md=MARKDOWN, cites=CITATIONS, limit=st.integers(120, 900), dialect=st.sampled_from([PLAIN, WECOM, DINGTALK]))
def test_rendered_replies_never_cut_a_row_a_citation_or_a_link(md, cites, limit, dialect):
    reply = Reply(text=md, citations=cites)
    rendered = render(document(reply), dialect)
    size = utf8_len if dialect is WECOM else len
    parts = split(rendered, limit, size, numbered=True)
    _check(rendered.text, parts, limit, size, rendered.keep)
    assert not any(line.startswith("|---") for p in parts for line in p.split("\n"))  # no table syntax left


@FAST
@given(md=MARKDOWN, cites=CITATIONS, limit=st.integers(600, 3000))
def test_feishu_cards_stay_under_the_limit(md, cites, limit):
    import json

    cards = feishu_cards(Reply(text=md, citations=cites), limit=limit)
    for card in cards:
        assert sum(utf8_len(json.dumps(el, ensure_ascii=False)) for el in card) <= limit or len(card) == 1


def test_a_span_longer_than_a_part_is_cut_rather_than_sent_too_long():
    url = "https://kb.example.com/" + "a" * 300
    parts = split(f"见 {url} 。", 100, utf8_len)
    assert all(utf8_len(p) <= 100 for p in parts) and _squeeze("".join(parts)) == _squeeze(f"见 {url} 。")
    assert split("🏥" * 10, 4, utf8_len) == ["🏥"] * 10  # never inside a UTF-8 character
