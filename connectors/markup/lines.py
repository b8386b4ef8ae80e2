"""The line-based dialects: plain text, WeCom app markdown, DingTalk markdown and Feishu's lark_md.

Each is a `Dialect` (what it can show) applied to a `Doc`. What a dialect cannot show degrades to
lines every client reads: tables become one line per row ("• 价格 — 我们：3 万 · 星图：5 万"),
lists keep their numbers, code becomes line-wise inline code or plain lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from connectors.labels import Labels, label
from connectors.message import Citation

from .blocks import Block, Break, Code, CodeBlock, Doc, Heading, Link, ListBlock, Paragraph, Quote, Rule, Spans, Styled, Table, Text, fallback_line
from .split import Builder, Rendered

Line = tuple[str, bool]  # a line and whether a cut must never fall inside it


@dataclass(frozen=True)
class Dialect:
    name: str
    bold: str = ""  # "**" where bold renders
    italic: str = ""  # "*" where italics render
    strike: str = ""  # "~~" where strikethrough renders
    code: bool = False  # `inline code`
    links: bool = False  # [label](url); else "label (url)"
    headings: bool = False  # "# " headings; else a bold line
    eol: str = "\n"  # a line break inside a block (DingTalk joins single newlines: a hard break there)
    bullet: str = "• "
    quote: str = "> "
    fence: bool = False  # ``` code blocks; else one line of inline code (or plain) per line
    colour: bool = False  # WeCom's <font color="warning|comment|info">
    rule: str = "—" * 8
    sources_head: bool = True  # "来源" above the citations (plain text lists them after a blank line, as it always did)
    tags: bool = False  # the platform acts on HTML-like tags in the text (<font>, Feishu's <at id=all>): text never makes one


# A tag the platform would render (WeCom and DingTalk's <font>, WeCom's <@userid>; Feishu's <at id=all>, <font>, <link>...) where the
# text only says "<": the model's words, a quoted message or a document's title (markdown-it keeps raw HTML as text,
# and turns "&lt;at id=all&gt;" into it) must not mention everyone or colour anything. The "<" becomes "＜".
_TAG = re.compile(r"<(?=/?[A-Za-z@])")  # <@userid>: a mention in WeCom robots' markdown


def untagged(s: str) -> str:
    return _TAG.sub("＜", s)


def words(s: str, d: Dialect) -> str:
    """Words as the dialect shows them, never as markup the platform acts on."""
    return untagged(s) if d.tags else s


PLAIN = Dialect("plain", sources_head=False)
WECOM_TEXT = Dialect("wecom_text", sources_head=False, tags=True)  # plain, but WeCom text messages act on <a href>
WECOM = Dialect("wecom", bold="**", code=True, links=True, headings=True, colour=True, tags=True)
DINGTALK = Dialect("dingtalk", bold="**", italic="*", code=True, links=True, headings=True, eol="  \n", bullet="- ", tags=True)
LARK = Dialect("lark_md", bold="**", italic="*", strike="~~", code=True, links=True, bullet="- ", fence=True, tags=True)


# inline -----------------------------------------------------------------------------------------
def inline(items: Spans, d: Dialect) -> str:
    out = []
    for s in items:
        if isinstance(s, Text):
            out.append(words(s.text, d))
        elif isinstance(s, Code):
            out.append(f"`{s.text}`" if d.code and "`" not in s.text else words(s.text, d))
        elif isinstance(s, Break):
            out.append("\n")
        elif isinstance(s, Styled):
            mark = {"bold": d.bold, "italic": d.italic, "strike": d.strike}[s.style]
            inner = inline(s.children, d)
            out.append(f"{mark}{inner}{mark}" if mark and inner.strip() and "\n" not in inner else inner)
        elif isinstance(s, Link):
            out.append(_link(inline(s.children, d), s.url, d))
    return "".join(out)


def _link(text: str, url: str, d: Dialect) -> str:
    if not url:
        return text
    if d.links:
        return f"[{text.replace('[', '(').replace(']', ')') or url}]({url.replace(')', '%29').replace(' ', '%20')})"
    return url if text in ("", url) else f"{text} ({url})"


def _strong(text: str, d: Dialect) -> str:
    return f"{d.bold}{text}{d.bold}" if d.bold and text.strip() else text


# blocks -----------------------------------------------------------------------------------------
def block_lines(b: Block, d: Dialect, labels: Labels | None, lang: str) -> list[Line]:
    if isinstance(b, Heading):
        text = inline(b.spans, d).replace("\n", " ")
        return [(f"{'#' * b.level} {text}" if d.headings else _strong(text, d), False)]
    if isinstance(b, Paragraph):
        return [(ln, False) for ln in inline(b.spans, d).split("\n")]
    if isinstance(b, ListBlock):
        return _list(b, d, labels, lang)
    if isinstance(b, Table):
        return table_lines(b, d, labels, lang)
    if isinstance(b, CodeBlock):
        if d.fence:
            return [(f"```{b.lang}", False), *((ln, False) for ln in b.text.split("\n")), ("```", False)]
        if d.code:
            return [(f"`{ln}`" if ln.strip() and "`" not in ln else words(ln, d), False) for ln in b.text.split("\n")]
        return [(words(ln, d), False) for ln in b.text.split("\n")]
    if isinstance(b, Quote):
        inner = blocks_lines(b.blocks, d, labels, lang, gap=True)
        return [(f"{d.quote}{ln}".rstrip(), whole) for ln, whole in inner]
    if isinstance(b, Rule):
        return [(d.rule, False)]
    return []


def blocks_lines(blocks: tuple[Block, ...], d: Dialect, labels: Labels | None, lang: str, gap: bool) -> list[Line]:
    out: list[Line] = []
    for b in blocks:
        if out and gap:
            out.append(("", False))
        out += block_lines(b, d, labels, lang)
    return out


def _list(b: ListBlock, d: Dialect, labels: Labels | None, lang: str) -> list[Line]:
    out: list[Line] = []
    for i, item in enumerate(b.items):
        mark = f"{b.numbers[i]}. " if b.ordered else d.bullet
        lines = blocks_lines(item, d, labels, lang, gap=False) or [("", False)]
        pad = " " * len(mark)
        out.append((mark + lines[0][0], lines[0][1]))
        out += [(pad + ln if ln else ln, whole) for ln, whole in lines[1:]]
    return out


def table_lines(t: Table, d: Dialect, labels: Labels | None, lang: str) -> list[Line]:
    """A table as one line per row: "• 价格 — 我们：3 万 · 星图：5 万", or "• 价格：3 万" for two columns."""
    head = [inline(h, d).replace("\n", " ") for h in t.header]
    if not t.rows:
        return [(" · ".join(h for h in head if h), True)]
    out: list[Line] = []
    for row in t.rows:
        cells = [inline(c, d).replace("\n", " ").strip() for c in row]
        first, rest = (cells[0] if cells else ""), cells[1:]
        if len(cells) == 2:
            line = field(_strong(first, d), rest[0], labels, lang) if first else rest[0]
        else:
            fields = " · ".join(field(head[i + 1] if i + 1 < len(head) else "", c, labels, lang) for i, c in enumerate(rest) if c)
            line = " — ".join(x for x in (_strong(first, d), fields) if x)
        out.append((d.bullet + line, True))
    return out


def field(name: str, value: str, labels: Labels | None, lang: str) -> str:
    return label(labels, lang, "channel_field", name=name, value=value) if name.strip() else value


# citations and the whole doc ----------------------------------------------------------------------
def citation_line(c: Citation, d: Dialect, labels: Labels | None, lang: str) -> str:
    """"[1] title v3 (2026-11-10)", the title a link where the dialect has links, else the URL after it."""
    title = words(c.title.strip() or c.doc_id, d)
    line = f"[{c.n}] " + (_link(title, c.url, d) if d.links and c.url else title)
    if c.version:
        line += f" v{c.version}"
    if c.updated:
        line += f" ({c.updated})"
    if c.url and not d.links:
        line += f" {c.url}"
    if c.stale_days:
        stale = label(labels, lang, "channel_stale", days=c.stale_days)
        line += " · " + (f'<font color="warning">{stale}</font>' if d.colour else stale)
    return line


def sources_lines(doc: Doc, d: Dialect, labels: Labels | None) -> list[Line]:
    if not doc.citations:
        return []
    lines = [(citation_line(c, d, labels, doc.lang), True) for c in doc.citations]
    if not d.sources_head:
        return lines
    head = _strong(label(labels, doc.lang, "channel_sources"), d)
    if d.colour:  # WeCom: the sources as a grey quote
        return [(f"{d.quote}{head}", False)] + [(f"{d.quote}{ln}", w) for ln, w in lines]
    return [(head, False)] + lines


def render(doc: Doc, d: Dialect, labels: Labels | None = None) -> Rendered:
    """The doc in dialect `d`: its blocks, then its sources, then the typed line for its buttons."""
    out = Builder()
    for b in doc.blocks:
        _add(out, block_lines(b, d, labels, doc.lang), d)
        if isinstance(b, Heading):
            out.glue()
    _add(out, sources_lines(doc, d, labels), d)
    if doc.fallback:
        _add(out, [(fallback_line(doc.fallback, doc.lang, labels), True)], d)
    return out.done()


def _add(out: Builder, lines: list[Line], d: Dialect) -> None:
    while lines and not lines[-1][0].strip():
        lines = lines[:-1]
    if not lines:
        return
    eol = d.eol
    text = "\n".join(ln + (eol[:-1] if i < len(lines) - 1 and ln.strip() and lines[i + 1][0].strip() else "")
                     for i, (ln, _) in enumerate(lines))
    whole = [ln + (eol[:-1] if i < len(lines) - 1 and ln.strip() and lines[i + 1][0].strip() else "")
             for i, (ln, w) in enumerate(lines) if w]
    out.add(text, whole)
