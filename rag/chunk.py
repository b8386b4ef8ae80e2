"""Structure-aware chunking for Chinese and English.

Sections follow headings; a chunk never crosses a heading and is never cut mid-sentence (。！？!?
and line ends). Tables are split by rows and every piece repeats the header, so a price row still
says which column is which.
"""
from __future__ import annotations

from dataclasses import dataclass

from rag.formats import Block
from rag.text import sentences

TARGET = 360  # characters: about 250 e5 tokens of Chinese, well under the model's 512
MAX = 700


@dataclass
class ChunkDraft:
    heading: str  # "Title > Section > Subsection" path below the document title
    text: str
    kind: str = "text"  # text | table


def _split_long(text: str, limit: int) -> list[str]:
    """Pack sentences into pieces under `limit`; a single over-long sentence is cut at a comma or space."""
    pieces: list[str] = []
    cur = ""
    for s in sentences(text):
        while len(s) > limit:
            cut = max(s.rfind(c, 0, limit) for c in "，,；; ")
            cut = cut + 1 if cut > limit // 2 else limit
            if cur:
                pieces.append(cur)
                cur = ""
            pieces.append(s[:cut])
            s = s[cut:]
        if cur and len(cur) + len(s) + 1 > limit:
            pieces.append(cur)
            cur = s
        else:
            cur = f"{cur}{_joiner(cur, s)}{s}" if cur else s
    if cur:
        pieces.append(cur)
    return pieces


def _joiner(a: str, b: str) -> str:
    return " " if a[-1:].isascii() and b[:1].isascii() else ""


def render_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("\n", " ").replace("|", "/") for c in cells) + " |"

    width = max([len(header)] + [len(r) for r in rows])
    header = header + [""] * (width - len(header))
    out = [line(header), "|" + "---|" * width]
    out += [line(r + [""] * (width - len(r))) for r in rows]
    return "\n".join(out)


def _table_chunks(block: Block, limit: int) -> list[str]:
    head = render_table(block.header, [])
    pieces, rows = [], []
    size = len(head)
    for r in block.rows or [[]]:
        row_len = len(render_table([], [r]).split("\n")[-1]) + 1
        if rows and size + row_len > limit:
            pieces.append(render_table(block.header, rows))
            rows, size = [], len(head)
        rows.append(r)
        size += row_len
    if rows and any(any(c for c in r) for r in rows):
        pieces.append(render_table(block.header, rows))
    elif not pieces:
        pieces.append(head)
    return pieces


def chunk_blocks(blocks: list[Block], *, target: int = TARGET, limit: int = MAX) -> list[ChunkDraft]:
    out: list[ChunkDraft] = []
    path: list[tuple[int, str]] = []
    buf: list[str] = []

    def heading() -> str:
        return " > ".join(t for _, t in path)

    def flush() -> None:
        if buf:
            text = "\n".join(buf).strip()
            if text:
                for piece in _split_long(text, limit) if len(text) > limit else [text]:
                    out.append(ChunkDraft(heading(), piece))
            buf.clear()

    for b in blocks:
        if b.kind == "heading":
            flush()
            path = [(lvl, t) for lvl, t in path if lvl < b.level] + [(b.level, b.text)]
        elif b.kind == "table":
            flush()
            out += [ChunkDraft(heading(), t, "table") for t in _table_chunks(b, limit)]
        else:
            text = b.text.strip()
            if not text:
                continue
            if buf and sum(len(x) for x in buf) + len(text) > target:
                flush()
            buf.append(text)
    flush()
    return out
