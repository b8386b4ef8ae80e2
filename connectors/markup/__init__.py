"""One rendering step from an answer's structure to each platform's dialect (the channel core: imports
nothing of bot/, rag/, crm/ nor of any platform package; the platforms import it).

    reply --document()--> Doc (blocks: headings, paragraphs, lists, tables, code, quotes; citations; buttons)
          --dialect-->    plain text | WeCom markdown | DingTalk markdown | Feishu card elements | email HTML | web GFM
          --split()-->    parts under the platform's limit, in its own unit, never cut inside a row, a link or a citation

The public API (stable: the Feishu and DingTalk card code call it):
- `plain_text`, `plain_parts`: every client (the text-only fallback, WeCom text, email's plain part);
- `wecom_markdown`, `wecom_parts`: WeCom app messages (2048 UTF-8 bytes, "(1/3)" part markers);
- `dingtalk_markdown`, `dingtalk_sources`, `dingtalk_parts`: DingTalk markdown and ActionCard text (hard line breaks, ~3800 characters);
- `feishu_elements`, `feishu_cards`: Feishu/Lark card elements (`markdown`, `hr`, `table`), and spread over cards of < 30 KB;
- `email_bodies`: (plain, HTML) for a mail;  `web_markdown`: the web chat's GFM, unchanged;
- `untagged`: raw Markdown (an answer so far, streamed into a card) with no tag the platform would act on;
- `document`, `parse`, `split`, `Rendered`, `fallback_line`, `has_fallback`, `has_sources`: the pieces.
docs/formatting.md has the table of what each platform shows for each block.
"""
from __future__ import annotations

from connectors.labels import Labels
from connectors.message import Reply

from .blocks import Block, Doc, document, fallback_line, has_fallback, has_sources, parse
from .feishu import CARD_BYTES, feishu_cards, feishu_elements
from .html import email_html
from .lines import DINGTALK, LARK, PLAIN, WECOM, WECOM_TEXT, Dialect, render, untagged
from .split import MARK_RESERVE, Rendered, measure, split, utf8_len

WECOM_BYTES = 2048  # text and markdown content, in UTF-8 bytes
DINGTALK_CHARS = 3800  # per markdown message (DingTalk's ~5000 less room for the @mention and the title)

__all__ = [  # the block and span types are in connectors.markup.blocks
    "Block", "CARD_BYTES", "DINGTALK", "DINGTALK_CHARS", "Dialect", "Doc", "LARK", "MARK_RESERVE", "PLAIN", "Rendered", "WECOM", "WECOM_BYTES",
    "dingtalk_markdown", "dingtalk_parts", "dingtalk_sources", "document", "email_bodies", "email_html", "fallback_line", "feishu_cards", "feishu_elements",
    "has_fallback", "has_sources", "measure", "parse", "plain_parts", "plain_text", "render", "split", "utf8_len", "web_markdown",
    "untagged", "wecom_markdown", "wecom_parts",
]


def plain_text(reply: Reply, labels: Labels | None = None, *, buttons: bool = True) -> str:
    """Plain text every client shows: no Markdown marks, tables as row lines, links as "label (url)",
    the citations "[1] title v3 (date) url", and the typed line for the buttons unless `buttons=False`."""
    return render(document(reply, labels, buttons=buttons), PLAIN, labels).text


def plain_parts(reply: Reply, limit: int, unit: str = "chars", labels: Labels | None = None, *, buttons: bool = True,
                numbered: bool = False) -> list[str]:
    """`plain_text` cut under `limit` counted in `unit` ("chars" or "bytes")."""
    return split(render(document(reply, labels, buttons=buttons), PLAIN, labels), limit, measure(unit), numbered=numbered)


def wecom_markdown(reply: Reply, labels: Labels | None = None, *, buttons: bool = True) -> str:
    """WeCom app markdown: headings, bold, links, inline code, quotes, <font color>; no lists or tables
    (plain "• " / "1. " lines instead), the sources as a quote."""
    return render(document(reply, labels, buttons=buttons), WECOM, labels).text


def wecom_parts(reply: Reply, *, markdown: bool, limit: int = WECOM_BYTES, labels: Labels | None = None, buttons: bool = True) -> list[str]:
    """The contents of the WeCom messages for a reply (markdown or text), each at most `limit` UTF-8 bytes,
    numbered "(1/3)" when there is more than one."""
    doc = document(reply, labels, buttons=buttons)
    return split(render(doc, WECOM if markdown else WECOM_TEXT, labels), limit, utf8_len, numbered=True)


def dingtalk_markdown(reply: Reply, labels: Labels | None = None, *, buttons: bool = True, sources: bool = True) -> str:
    """DingTalk markdown (also an ActionCard's or an AI card's text): single newlines as hard breaks, lists,
    links, bold; tables as row lines. `buttons=False` / `sources=False` where the card shows them itself."""
    return render(document(reply, labels, buttons=buttons, sources=sources), DINGTALK, labels).text


def dingtalk_sources(reply: Reply, labels: Labels | None = None) -> str:
    """Only the sources in DingTalk markdown ("**来源**", "[1] [title](url) v3 (2026-11-10)"): "" when there are
    none or the text lists them itself. For a card that shows them in a field of their own."""
    doc = document(reply, labels, buttons=False)
    return render(Doc((), doc.citations, (), doc.lang), DINGTALK, labels).text


def dingtalk_parts(reply: Reply, limit: int = DINGTALK_CHARS, labels: Labels | None = None, *, buttons: bool = True,
                   sources: bool = True) -> list[str]:
    """`dingtalk_markdown` cut under `limit` characters."""
    return split(render(document(reply, labels, buttons=buttons, sources=sources), DINGTALK, labels), limit, len)


def email_bodies(reply: Reply, labels: Labels | None = None) -> tuple[str, str]:
    """A mail's text/plain and text/html alternatives (mail has no buttons: the typed line is in both)."""
    doc = document(reply, labels)
    return render(doc, PLAIN, labels).text, email_html(doc, labels)


def web_markdown(reply: Reply) -> str:
    """The web chat renders GFM itself (marked + DOMPurify) and lists the citations from the JSON: unchanged."""
    return (reply.markdown or reply.text).strip()
