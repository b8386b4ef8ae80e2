"""Text every client can show: a reply rendered as plain text (Markdown marks dropped, tables as row lines,
citations, and buttons as typed choices: the one fallback for platforms without cards), and long text
split under a platform's limit. Both are connectors.markup's plain dialect; the names here stay for
the connectors that use them. The words added ("回复 …", "Reply …") are labels from the message
catalogue, in the reply's language."""
from __future__ import annotations

from typing import Callable

from connectors.labels import Labels
from connectors.markup import fallback_line, has_fallback, has_sources, measure, plain_parts, plain_text, split, utf8_len
from connectors.message import Reply

__all__ = ["fallback_line", "has_fallback", "has_sources", "measure", "render_text", "split_message", "text_parts", "utf8_len"]


def render_text(reply: Reply, *, numbered_buttons: bool = True, labels: Labels | None = None) -> str:
    """Plain-text rendering with citations and a typed fallback for buttons, labelled in the reply's language."""
    return plain_text(reply, labels, buttons=numbered_buttons)


def text_parts(reply: Reply, limit: int, unit: str = "chars", labels: Labels | None = None) -> list[str]:
    """A reply for a text-only platform: rendered as plain text, then split under its limit."""
    return plain_parts(reply, limit, unit, labels)


def split_message(text: str, limit: int, size: Callable[[str], int] = len) -> list[str]:
    """A long text as parts of at most `limit` (measured by `size`: characters, or a platform's UTF-8
    bytes), cut between paragraphs, else lines, else sentences, and only as a last resort between
    characters -- never inside one, nor inside a link, a URL or a "[1]" marker."""
    return split(text, limit, size)
