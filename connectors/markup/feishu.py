"""Feishu/Lark card elements: the answer as `markdown` elements (lark_md: bold, italics, links, lists,
code), `hr` rules and real `table` elements (lark_md cells; a card holds at most five, further tables
become row lines), the sources under a rule. These element tags exist in card JSON 1.0 and 2.0 alike:
the Feishu connector puts them in its card's `elements` (1.0) or `body.elements` (2.0).
"""
from __future__ import annotations

import json

from connectors.labels import Labels
from connectors.message import Reply

from .blocks import Doc, Rule, Table, document, fallback_line
from .lines import LARK, Line, block_lines, inline, sources_lines
from .split import split, utf8_len

CARD_BYTES = 28_000  # a card's JSON must stay under ~30 KB; the rest is the header and the buttons
MAX_TABLES = 5  # per card (Feishu's limit)
PAGE_ROWS = 10  # a table element shows at most 10 rows a page


def feishu_elements(reply: Reply, labels: Labels | None = None, *, buttons: bool = False, tables: bool = True) -> list[dict]:
    """The reply as card elements. `buttons=True` adds the typed line ("回复 1 确认") for a card without
    real buttons; `tables=False` writes every table as row lines (e.g. for clients before Feishu 7.4)."""
    return elements(document(reply, labels, buttons=buttons), labels, tables=tables)


def feishu_cards(reply: Reply, labels: Labels | None = None, *, buttons: bool = False, limit: int = CARD_BYTES) -> list[list[dict]]:
    """The elements spread over as many cards as needed for each to stay under `limit` bytes of JSON,
    a long markdown element cut between paragraphs (never inside a link, a row or a citation)."""
    cards: list[list[dict]] = [[]]
    used = 0
    for el in elements(document(reply, labels, buttons=buttons), labels):
        for piece in _fit(el, limit):
            n = _size(piece)
            if cards[-1] and used + n > limit:
                cards.append([])
                used = 0
            cards[-1].append(piece)
            used += n
    return [c for c in cards if c]


def elements(doc: Doc, labels: Labels | None = None, *, tables: bool = True) -> list[dict]:
    out: list[dict] = []
    pending: list[Line] = []
    shown = 0

    def flush() -> None:
        text = "\n".join(ln for ln, _ in pending).strip("\n")
        if text.strip():
            out.append(markdown(text))
        pending.clear()

    for b in doc.blocks:
        if isinstance(b, Rule):
            flush()
            out.append({"tag": "hr"})
        elif isinstance(b, Table) and tables and shown < MAX_TABLES and b.rows:
            flush()
            out.append(table(b))
            shown += 1
        else:
            if pending:
                pending.append(("", False))
            pending.extend(block_lines(b, LARK, labels, doc.lang))
    flush()
    if doc.citations:
        out.append({"tag": "hr"})
        out.append(markdown("\n".join(ln for ln, _ in sources_lines(doc, LARK, labels))))
    if doc.fallback:
        out.append(markdown(fallback_line(doc.fallback, doc.lang, labels)))
    return out


def markdown(content: str) -> dict:
    return {"tag": "markdown", "content": content}


def table(t: Table) -> dict:
    width = max(len(t.header), *(len(r) for r in t.rows))
    head = [inline(h, LARK) for h in t.header] + [""] * (width - len(t.header))
    return {"tag": "table", "page_size": min(PAGE_ROWS, len(t.rows)), "row_height": "auto",
            "header_style": {"bold": True, "background_style": "grey"},
            "columns": [{"name": f"c{i}", "display_name": h, "data_type": "lark_md", "width": "auto"} for i, h in enumerate(head)],
            "rows": [{f"c{i}": inline(c, LARK) for i, c in enumerate(r)} for r in t.rows]}


def _size(el: dict) -> int:
    return utf8_len(json.dumps(el, ensure_ascii=False))


def _fit(el: dict, limit: int) -> list[dict]:
    if _size(el) <= limit or el.get("tag") != "markdown":
        return [el]
    room = limit - _size(markdown("")) - 64  # JSON escapes (\n, \") take a little more than the text
    return [markdown(part) for part in split(el["content"], room, lambda s: utf8_len(json.dumps(s, ensure_ascii=False)) - 2)]
