"""Text every client can show: a reply rendered as plain text (citations, and buttons as typed
choices: the one fallback for platforms without cards), and long text split under a platform's limit.
The words added ("回复 …", "Reply …") are labels from the message catalogue, in the reply's language."""
from __future__ import annotations

import re
from typing import Callable

from connectors.labels import Labels, every, label
from connectors.message import Button, Reply


def fallback_line(buttons: list[Button], lang: str = "zh", labels: Labels | None = None) -> str:
    """The typed alternative to buttons in `lang`, e.g. "回复 1 确认 / 2 修改 / 3 取消", "Reply 1 Confirm"."""
    choices = " / ".join(f"{b.reply or i + 1} {b.label}" for i, b in enumerate(buttons))
    return label(labels, lang, "channel_reply_choices", choices=choices)


def has_fallback(text: str, buttons: list[Button], labels: Labels | None = None) -> bool:
    """Whether the text already tells the reader what to type (the agent often writes the line itself)."""
    first = buttons[0].reply or "1" if buttons else ""
    return bool(buttons) and any(line in text for line in every(labels, "channel_reply_choices", choices=first))


def has_sources(text: str, labels: Labels | None = None) -> bool:
    """Whether the text lists its sources itself ("[来源]", "Sources:")."""
    return any(tag in text for tag in every(labels, "channel_sources_tag"))


def render_text(reply: Reply, *, numbered_buttons: bool = True, labels: Labels | None = None) -> str:
    """Plain-text rendering with citations and a typed fallback for buttons, labelled in the reply's language."""
    parts = [reply.text.rstrip()]
    if reply.citations and not has_sources(reply.text, labels):
        lines = []
        for c in reply.citations:
            line = f"[{c.n}] {c.title}"
            if c.version:
                line += f" v{c.version}"
            if c.updated:
                line += f" ({c.updated})"
            if c.url:
                line += f" {c.url}"
            lines.append(line)
        parts.append("\n".join(lines))
    if reply.buttons and numbered_buttons and not has_fallback(reply.text, reply.buttons, labels):
        parts.append(fallback_line(reply.buttons, reply.lang, labels))
    return "\n\n".join(p for p in parts if p)


def utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def measure(unit: str) -> Callable[[str], int]:
    """How a platform counts its limit: "chars" (len) or "bytes" (UTF-8)."""
    return utf8_len if unit == "bytes" else len


def text_parts(reply: Reply, limit: int, unit: str = "chars", labels: Labels | None = None) -> list[str]:
    """A reply for a text-only platform: rendered as plain text, then split under its limit."""
    return split_message(render_text(reply, labels=labels), limit, measure(unit))


_LEVELS = (
    re.compile(r"(?<=\n\n)"),  # paragraphs
    re.compile(r"(?<=\n)"),  # lines
    re.compile(r"(?<=[。！？!?；;])|(?<=[.,，、] )|(?<=[，、])"),  # sentences, then clauses
)


def split_message(text: str, limit: int, size: Callable[[str], int] = len) -> list[str]:
    """A long reply as parts of at most `limit` (measured by `size`: characters, or a platform's UTF-8
    bytes), cut between paragraphs, else lines, else sentences, and only as a last resort between
    characters -- never inside one."""
    parts, cur, cur_len = [], "", 0
    for unit in _units(text, limit, 0, size):
        n = size(unit)
        if cur and cur_len + n > limit:
            parts.append(cur)
            cur, cur_len = "", 0
        cur += unit
        cur_len += n
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _units(text: str, budget: int, level: int, size: Callable[[str], int]) -> list[str]:
    """Pieces of `text` (in order, concatenating back to it), each at most `budget`."""
    if size(text) <= budget:
        return [text]
    if level == len(_LEVELS):
        out, cur, cur_len = [], [], 0
        for ch in text:  # a str is code points: a cut here never splits a UTF-8 sequence
            n = size(ch)
            if cur and cur_len + n > budget:
                out.append("".join(cur))
                cur, cur_len = [], 0
            cur.append(ch)
            cur_len += n
        out.append("".join(cur))
        return out
    out = []
    for piece in _LEVELS[level].split(text):
        if piece:
            out += _units(piece, budget, level + 1, size)
    return out
