"""Text every client can show: a reply rendered as plain text (citations, and buttons as typed
choices: the one fallback for platforms without cards), and long text split under a platform's limit."""
from __future__ import annotations

import re
from typing import Callable

from connectors.message import Button, Reply

_CJK = re.compile(r"[\u3400-\u9fff]")


def fallback_line(buttons: list[Button], zh: bool | None = None) -> str:
    """The typed alternative to buttons, e.g. "回复 1 确认 / 2 修改 / 3 取消" (Chinese unless every label
    is not, when `zh` is not given)."""
    choices = " / ".join(f"{b.reply or i + 1} {b.label}" for i, b in enumerate(buttons))
    if zh is None:
        zh = any(_CJK.search(b.label) for b in buttons)
    return f"回复 {choices}" if zh else f"Reply {choices}"


def has_fallback(text: str, buttons: list[Button]) -> bool:
    """Whether the text already tells the reader what to type (the agent often writes the line itself)."""
    first = buttons[0].reply or "1" if buttons else ""
    return bool(buttons) and (f"回复 {first}" in text or f"Reply {first}" in text)


def render_text(reply: Reply, *, numbered_buttons: bool = True) -> str:
    """Plain-text rendering with citations and a typed fallback for buttons."""
    parts = [reply.text.rstrip()]
    if reply.citations and "[来源]" not in reply.text and "Sources:" not in reply.text:
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
    if reply.buttons and numbered_buttons and not has_fallback(reply.text, reply.buttons):
        parts.append(fallback_line(reply.buttons))
    return "\n\n".join(p for p in parts if p)


def utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def measure(unit: str) -> Callable[[str], int]:
    """How a platform counts its limit: "chars" (len) or "bytes" (UTF-8)."""
    return utf8_len if unit == "bytes" else len


def text_parts(reply: Reply, limit: int, unit: str = "chars") -> list[str]:
    """A reply for a text-only platform: rendered as plain text, then split under its limit."""
    return split_message(render_text(reply), limit, measure(unit))


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
