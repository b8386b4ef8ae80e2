"""An answer's structure: the reply's Markdown parsed (by markdown-it-py, CommonMark + GFM tables and
strikethrough, raw HTML off) into blocks and inline spans, plus what a channel adds (citations, the
typed fallback for buttons). Every dialect renders from this, never from the Markdown text itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Union

from markdown_it import MarkdownIt
from markdown_it.token import Token

from connectors.labels import Labels, every, label
from connectors.message import Button, Citation, Reply


# inline spans ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Break:
    hard: bool = False  # a soft break is a single newline in the source


@dataclass(frozen=True)
class Styled:
    style: Literal["bold", "italic", "strike"]
    children: tuple["Inline", ...]


@dataclass(frozen=True)
class Link:
    url: str
    children: tuple["Inline", ...]


Inline = Union[Text, Code, Break, Styled, Link]
Spans = tuple[Inline, ...]


# blocks -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    level: int
    spans: Spans


@dataclass(frozen=True)
class Paragraph:
    spans: Spans


@dataclass(frozen=True)
class ListBlock:
    ordered: bool
    items: tuple[tuple["Block", ...], ...]
    numbers: tuple[int, ...] = ()  # as written (an answer's "3." stays 3); empty for bullets


@dataclass(frozen=True)
class Table:
    header: tuple[Spans, ...]
    rows: tuple[tuple[Spans, ...], ...]


@dataclass(frozen=True)
class CodeBlock:
    text: str
    lang: str = ""


@dataclass(frozen=True)
class Quote:
    blocks: tuple["Block", ...]


@dataclass(frozen=True)
class Rule:
    pass


Block = Union[Heading, Paragraph, ListBlock, Table, CodeBlock, Quote, Rule]


@dataclass(frozen=True)
class Doc:
    """What a dialect renders: the blocks, the citations to list (none when the text lists its sources
    itself) and the buttons to offer as a typed line (none when the text already says what to type)."""

    blocks: tuple[Block, ...]
    citations: tuple[Citation, ...] = ()
    fallback: tuple[Button, ...] = ()
    lang: str = "zh"
    source: str = ""


# the words a channel adds ---------------------------------------------------------------------
def fallback_line(buttons: list[Button] | tuple[Button, ...], lang: str = "zh", labels: Labels | None = None) -> str:
    """The typed alternative to buttons in `lang`, e.g. "回复 1 确认 / 2 修改 / 3 取消", "Reply 1 Confirm"."""
    choices = " / ".join(f"{b.reply or i + 1} {b.label}" for i, b in enumerate(buttons))
    return label(labels, lang, "channel_reply_choices", choices=choices)


def has_fallback(text: str, buttons: list[Button] | tuple[Button, ...], labels: Labels | None = None) -> bool:
    """Whether the text already tells the reader what to type (the agent often writes the line itself)."""
    first = buttons[0].reply or "1" if buttons else ""
    return bool(buttons) and any(line in text for line in every(labels, "channel_reply_choices", choices=first))


def has_sources(text: str, labels: Labels | None = None) -> bool:
    """Whether the text lists its sources itself ("[来源]", "Sources:")."""
    return any(tag in text for tag in every(labels, "channel_sources_tag"))


def document(reply: Reply, labels: Labels | None = None, *, buttons: bool = True, sources: bool = True) -> Doc:
    """The reply's structure: its Markdown (else its text) parsed, with the citations and the typed
    button line a channel adds unless the text has them. `buttons=False` where the platform shows real
    buttons, `sources=False` where it shows the citations elsewhere (a card's own field)."""
    source = (reply.markdown or reply.text).strip()
    said = source + "\n" + reply.text
    cites = () if not sources or has_sources(said, labels) else tuple(reply.citations)
    offer = tuple(reply.buttons) if buttons and reply.buttons and not has_fallback(said, reply.buttons, labels) else ()
    return Doc(parse(source), cites, offer, reply.lang, source)


# parsing ----------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def parse(markdown: str) -> tuple[Block, ...]:
    """Blocks of a Markdown text (CommonMark with GFM tables). Raw HTML stays text."""
    blocks, _ = _blocks(_parser().parse(markdown or ""), 0, "")
    return tuple(blocks)


def _blocks(tokens: list[Token], i: int, close: str) -> tuple[list[Block], int]:
    out: list[Block] = []
    while i < len(tokens):
        t = tokens[i]
        if t.type == close:
            return out, i + 1
        if t.type == "heading_open":
            out.append(Heading(int(t.tag[1:]), spans(tokens[i + 1])))
            i += 3
        elif t.type == "paragraph_open":
            out.append(Paragraph(spans(tokens[i + 1])))
            i += 3
        elif t.type in ("bullet_list_open", "ordered_list_open"):
            ordered = t.type == "ordered_list_open"
            items, numbers = [], []
            i += 1
            while tokens[i].type == "list_item_open":
                numbers.append(int(tokens[i].info) if ordered and tokens[i].info.isdigit() else len(numbers) + 1)
                item, i = _blocks(tokens, i + 1, "list_item_close")
                items.append(tuple(item))
            out.append(ListBlock(ordered, tuple(items), tuple(numbers) if ordered else ()))
            i += 1  # the list's close
        elif t.type == "blockquote_open":
            inner, i = _blocks(tokens, i + 1, "blockquote_close")
            out.append(Quote(tuple(inner)))
        elif t.type in ("fence", "code_block"):
            out.append(CodeBlock(t.content.rstrip("\n"), (t.info or "").strip().split(" ")[0]))
            i += 1
        elif t.type == "hr":
            out.append(Rule())
            i += 1
        elif t.type == "table_open":
            table, i = _table(tokens, i + 1)
            out.append(table)
        elif t.type == "inline":  # loose text (e.g. html_block off): keep it as a paragraph
            out.append(Paragraph(spans(t)))
            i += 1
        else:
            i += 1
    return out, i


def _table(tokens: list[Token], i: int) -> tuple[Table, int]:
    header: list[Spans] = []
    rows: list[tuple[Spans, ...]] = []
    row: list[Spans] = []
    in_head = False
    while tokens[i].type != "table_close":
        t = tokens[i]
        if t.type == "thead_open":
            in_head = True
        elif t.type == "thead_close":
            in_head = False
        elif t.type == "tr_open":
            row = []
        elif t.type == "tr_close":
            if in_head:
                header = row
            else:
                rows.append(tuple(row))
        elif t.type == "inline":
            row.append(spans(t))
        i += 1
    return Table(tuple(header), tuple(rows)), i + 1


def spans(token: Token) -> Spans:
    """The inline spans of an `inline` token."""
    stack: list[tuple[str, str, list[Inline]]] = [("", "", [])]
    for c in token.children or []:
        kind = c.type
        if kind == "text":
            _append(stack[-1][2], c.content)
        elif kind == "code_inline":
            stack[-1][2].append(Code(c.content))
        elif kind in ("softbreak", "hardbreak"):
            stack[-1][2].append(Break(kind == "hardbreak"))
        elif kind == "image":
            url = str(c.attrs.get("src") or "")
            stack[-1][2].append(Link(url, (Text(c.content or url),)))
        elif kind.endswith("_open") and kind[:-5] in ("strong", "em", "s", "link"):
            stack.append((kind[:-5], str(c.attrs.get("href") or ""), []))
        elif kind.endswith("_close") and len(stack) > 1 and kind[:-6] == stack[-1][0]:
            name, href, children = stack.pop()
            node: Inline = Link(href, tuple(children)) if name == "link" else \
                Styled({"strong": "bold", "em": "italic", "s": "strike"}[name], tuple(children))  # type: ignore[arg-type]
            stack[-1][2].append(node)
        elif c.content:
            _append(stack[-1][2], c.content)
    while len(stack) > 1:  # unbalanced (cannot happen with markdown-it, but never lose text)
        _, _, children = stack.pop()
        stack[-1][2].extend(children)
    return tuple(stack[0][2])


def _append(out: list[Inline], text: str) -> None:
    if not text:
        return
    if out and isinstance(out[-1], Text):
        out[-1] = Text(out[-1].text + text)
    else:
        out.append(Text(text))


def plain_spans(items: Spans) -> str:
    """The words of spans without any formatting (links as their label)."""
    out = []
    for s in items:
        if isinstance(s, (Text, Code)):
            out.append(s.text)
        elif isinstance(s, Break):
            out.append("\n")
        else:
            out.append(plain_spans(s.children))
    return "".join(out)
