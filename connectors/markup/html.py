"""Email HTML: the answer's blocks as escaped HTML with a real <table>, links only to http(s)/mailto,
bare URLs made clickable, the sources as a list of links, the typed line for buttons (mail has none).
Styles are inline: mail clients drop <style> sheets.
"""
from __future__ import annotations

import html
import re

from connectors.labels import Labels, label

from .blocks import Block, Break, Code, CodeBlock, Doc, Heading, Link, ListBlock, Paragraph, Quote, Rule, Spans, Styled, Table, Text, fallback_line
from .split import URL

_SAFE = re.compile(r"^(?:https?://|mailto:)", re.I)
_CELL = "border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top"
_MUTED = "color:#57606a;font-size:90%"


def email_html(doc: Doc, labels: Labels | None = None) -> str:
    body = "\n".join(_block(b) for b in doc.blocks)
    if doc.citations:
        items = []
        for c in doc.citations:
            title = html.escape(c.title.strip() or c.doc_id)
            line = f"[{c.n}] " + (f'<a href="{html.escape(c.url)}">{title}</a>' if c.url and _SAFE.match(c.url) else title)
            line += (f" v{html.escape(c.version)}" if c.version else "") + (f" ({html.escape(c.updated)})" if c.updated else "")
            if c.stale_days:
                line += " · " + html.escape(label(labels, doc.lang, "channel_stale", days=c.stale_days))
            items.append(f"<div>{line}</div>")
        body += (f'\n<div style="{_MUTED};margin-top:1em"><strong>{html.escape(label(labels, doc.lang, "channel_sources"))}</strong>\n'
                 + "\n".join(items) + "</div>")
    if doc.fallback:
        body += f"\n<p>{html.escape(fallback_line(doc.fallback, doc.lang, labels))}</p>"
    return ('<!doctype html><html><body><div style="font-family:sans-serif;line-height:1.5">\n'
            + body + "\n</div></body></html>")


def _block(b: Block) -> str:
    if isinstance(b, Heading):
        level = min(b.level + 1, 6)  # an answer's "#" is a section of a mail, not its title
        return f"<h{level}>{spans(b.spans)}</h{level}>"
    if isinstance(b, Paragraph):
        return f"<p>{spans(b.spans)}</p>"
    if isinstance(b, ListBlock):
        items = "".join(f"<li>{_item(item)}</li>" for item in b.items)
        if b.ordered:
            start = b.numbers[0] if b.numbers else 1
            return f'<ol start="{start}">{items}</ol>' if start != 1 else f"<ol>{items}</ol>"
        return f"<ul>{items}</ul>"
    if isinstance(b, Table):
        head = "".join(f'<th style="{_CELL}">{spans(h)}</th>' for h in b.header)
        rows = "".join("<tr>" + "".join(f'<td style="{_CELL}">{spans(c)}</td>' for c in r) + "</tr>" for r in b.rows)
        return f'<table style="border-collapse:collapse;margin:0.5em 0"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    if isinstance(b, CodeBlock):
        return f'<pre style="background:#f6f8fa;padding:8px;white-space:pre-wrap"><code>{html.escape(b.text)}</code></pre>'
    if isinstance(b, Quote):
        inner = "\n".join(_block(x) for x in b.blocks)
        return f'<blockquote style="border-left:3px solid #d0d7de;margin:0;padding-left:8px;color:#57606a">{inner}</blockquote>'
    if isinstance(b, Rule):
        return "<hr>"
    return ""


def _item(blocks: tuple[Block, ...]) -> str:
    if len(blocks) == 1 and isinstance(blocks[0], Paragraph):
        return spans(blocks[0].spans)  # a tight item: no <p> margins
    return "".join(_block(b) for b in blocks)


def spans(items: Spans, autolink: bool = True) -> str:
    out = []
    for s in items:
        if isinstance(s, Text):
            out.append(_text(s.text) if autolink else html.escape(s.text))
        elif isinstance(s, Code):
            out.append(f"<code>{html.escape(s.text)}</code>")
        elif isinstance(s, Break):
            out.append("<br>\n")
        elif isinstance(s, Styled):
            tag = {"bold": "strong", "italic": "em", "strike": "s"}[s.style]
            out.append(f"<{tag}>{spans(s.children, autolink)}</{tag}>")
        elif isinstance(s, Link):
            inner = spans(s.children, autolink=False) if s.children else html.escape(s.url)
            out.append(f'<a href="{html.escape(s.url)}">{inner}</a>' if _SAFE.match(s.url) else inner)
    return "".join(out)


def _text(text: str) -> str:
    """Escaped, with bare URLs clickable."""
    parts, last = [], 0
    for m in URL.finditer(text):
        url = html.escape(m.group(0))
        parts += [html.escape(text[last:m.start()]), f'<a href="{url}">{url}</a>']
        last = m.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)
