"""HTML mail bodies to plain text, the way a mail client would show them.

Scripts, styles and comments go; block elements and <br> become line breaks; <blockquote> content is
prefixed with "> " and <hr> becomes Outlook's "____" rule, so quote stripping can work on the text.
Imports only BeautifulSoup.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import CData

__all__ = ["html_to_text"]

_SKIP = {"script", "style", "head", "title", "noscript", "template", "svg", "object", "iframe"}
_BLOCK = {
    "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "li",
    "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul", "caption", "body", "html",
}
_SPACE = re.compile(r"[ \t\r\n\f]+")  # HTML whitespace only: &nbsp; must survive
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_RULE = "_" * 32


class _Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []
        self.current: list[str] = []
        self.depth = 0  # blockquote nesting

    def text(self, s: str) -> None:
        self.current.append(s)

    def newline(self) -> None:
        self.lines.append((self.depth, "".join(self.current)))
        self.current = []

    def block(self) -> None:
        """A block boundary: end the line unless it is already empty."""
        if "".join(self.current).strip(" \t\r\n\f"):  # &nbsp; alone still makes a line
            self.newline()

    def result(self) -> str:
        self.block()
        out: list[str] = []
        for depth, line in self.lines:
            # Source whitespace goes; &nbsp; indentation stays, as a browser shows it.
            line = line.translate(_INVISIBLE).strip(" \t\r\n\f").replace("\xa0", " ").rstrip()
            out.append(("> " * depth + line).rstrip() if depth else line)
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


def _walk(root: Tag, sink: _Lines) -> None:
    pre = 0
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:  # iterative: mail HTML can nest deeper than Python's recursion limit
        node, leaving = stack.pop()
        if isinstance(node, NavigableString):
            if type(node) not in (NavigableString, CData):
                continue  # comments, doctypes, processing instructions
            if pre:
                for i, piece in enumerate(str(node).split("\n")):
                    if i:
                        sink.newline()
                    sink.text(piece)
            else:
                sink.text(_SPACE.sub(" ", str(node)))
            continue
        if not isinstance(node, Tag):
            continue
        name = (node.name or "").lower()
        if leaving:
            if name in _BLOCK:
                sink.block()
            if name == "blockquote":
                sink.depth -= 1
            elif name == "pre":
                pre -= 1
            elif name in ("td", "th"):
                sink.text(" ")
            continue
        if name in _SKIP:
            continue
        if name == "br":
            sink.newline()
            continue
        if name == "hr":
            sink.block()
            sink.text(_RULE)
            sink.newline()
            continue
        if name in _BLOCK:
            sink.block()
        if name == "blockquote":
            sink.depth += 1
        elif name == "pre":
            pre += 1
        elif name == "li":
            sink.text("- ")
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))


def html_to_text(html: str) -> str:
    soup = BeautifulSoup(html, "html.parser")
    sink = _Lines()
    _walk(soup, sink)
    return sink.result()
