"""Long text cut under a platform's limit, in the platform's own unit (UTF-8 bytes for WeCom, characters
for DingTalk), never inside what must stay whole: a citation line, a table row, a link, a URL, a "[1]"
marker, a bold or coloured span (as long as it fits a part at all), nor inside a UTF-8 character.
Otherwise the cut falls between paragraphs, else lines, else sentences, else words, else characters.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Callable, Iterable

Size = Callable[[str], int]
# a bare URL: ASCII up to a space, a bracket or a quote, not counting the sentence's full stop or comma after it
URL = re.compile(r"https?://[^\s<>\"'()\[\]\u0080-\U0010ffff]*[^\s<>\"'()\[\]\u0080-\U0010ffff.,;:!?]")
MARK_RESERVE = 16  # room for the "(12/34)\n" part marker

# Spans no cut may fall inside, whatever the dialect wrote them as.
_WHOLE = re.compile(
    r"!?\[[^\]\n]*\]\([^)\s]*\)"  # a Markdown link or image
    r"|" + URL.pattern +  # a bare URL
    r"|(?:\[\d+\])+"  # citation markers
    r"|<font[^>\n]*>[^<\n]*</font>"  # WeCom colour
    r"|\*\*[^*\n]{1,200}\*\*"  # bold
    r"|`[^`\n]{1,200}`")  # inline code
_LEVELS = (
    re.compile(r"\n[ \t]*\n\s*"),  # paragraphs
    re.compile(r"\n"),  # lines
    re.compile(r"[。！？!?；;](?:[”’」』）)])?|[.,:](?=\s)|[，、：]"),  # sentences, then clauses
    re.compile(r"[ \t]+"),  # words
)


def utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def measure(unit: str) -> Size:
    """How a platform counts its limit: "chars" (len) or "bytes" (UTF-8)."""
    return utf8_len if unit == "bytes" else len


@dataclass(frozen=True)
class Rendered:
    """A dialect's text and the spans of it (start, end) that a cut must not fall inside: whole lines
    such as table rows and citations; links and markers are found in the text itself."""

    text: str
    keep: tuple[tuple[int, int], ...] = ()
    glued: tuple[int, ...] = ()  # paragraph starts that are no place for a cut (after a heading) unless nothing else fits


@dataclass
class Builder:
    """Blocks joined by blank lines, remembering which lines must stay whole."""

    sep: str = "\n\n"
    parts: list[str] = field(default_factory=list)
    keep: list[tuple[int, int]] = field(default_factory=list)
    glued: list[int] = field(default_factory=list)
    _pos: int = 0
    _glue: bool = False

    def add(self, text: str, whole_lines: Iterable[str] = ()) -> None:
        """Append a block; each of `whole_lines` (lines of `text`) stays in one part."""
        if not text:
            return
        if self.parts:
            self._pos += len(self.sep)
            if self._glue:  # a heading stays with the start of what it heads
                self.glued.append(self._pos)
                self._glue = False
        wanted = set(whole_lines)
        offset = 0
        for line in text.split("\n"):
            if line in wanted and line.strip():
                self.keep.append((self._pos + offset, self._pos + offset + len(line)))
            offset += len(line) + 1
        self.parts.append(text)
        self._pos += len(text)

    def glue(self) -> None:
        """Rather no cut between the block just added and the next one (a heading and what it heads)."""
        self._glue = bool(self.parts)

    def done(self) -> Rendered:
        return Rendered(self.sep.join(self.parts), tuple(self.keep), tuple(self.glued))


def split(text: str | Rendered, limit: int, size: Size = len, *, numbered: bool = False) -> list[str]:
    """Parts of at most `limit` (measured by `size`), stripped, in order; nothing but whitespace is lost.
    `numbered` prefixes "(i/n)\\n" to each part when there is more than one (room for it is reserved)."""
    r = text if isinstance(text, Rendered) else Rendered(text)
    body = r.text
    if size(body.strip()) <= limit:
        return [body.strip()] if body.strip() else []
    budget = max(limit - (MARK_RESERVE if numbered else 0), 4)
    parts = _cut(body, budget, size, r.keep, set(r.glued))
    if numbered and len(parts) > 1:
        n = len(parts)
        return [f"({i}/{n})\n{p}" for i, p in enumerate(parts, 1)]
    return parts


def _cut(text: str, limit: int, size: Size, keep: Iterable[tuple[int, int]], glued: set[int]) -> list[str]:
    n = len(text)
    cum = [0, *accumulate(size(ch) for ch in text)]  # a str is code points: no cut splits a UTF-8 sequence
    lines, blocked = _blocked(list(keep), cum, limit), _blocked(list(keep) + [m.span() for m in _WHOLE.finditer(text)], cum, limit)
    levels = [[m.end() for m in rx.finditer(text)] for rx in _LEVELS]
    levels.insert(0, [p for p in levels[0] if p not in glued])
    parts, start = [], 0
    while start < n:
        while start < n and text[start].isspace():
            start += 1
        if start >= n:
            break
        if cum[n] - cum[start] <= limit or size(text[start:].rstrip()) <= limit:
            parts.append(text[start:].strip())
            break
        end = bisect_right(cum, cum[start] + limit) - 1  # the furthest position within the limit
        # overlapping spans may leave no place at all: then rows and citations before links, then anywhere
        cut = _best(levels, blocked, start, end) or _best(levels, lines, start, end) or max(end, start + 1)
        parts.append(text[start:cut].strip())
        start = cut
    return [p for p in parts if p]


def _blocked(spans: list[tuple[int, int]], cum: list[int], limit: int) -> bytearray:
    blocked = bytearray(len(cum))
    for s, e in spans:
        if cum[e] - cum[s] <= limit:  # a span longer than a part must be cut anyway
            blocked[s + 1:e] = b"\x01" * max(0, e - s - 1)
    return blocked


def _best(levels: list[list[int]], blocked: bytearray, start: int, end: int) -> int | None:
    for cuts in levels:
        j = bisect_right(cuts, end) - 1
        while j >= 0 and cuts[j] > start:
            if not blocked[cuts[j]]:
                return cuts[j]
            j -= 1
    for p in range(end, start, -1):
        if not blocked[p]:
            return p
    return None
