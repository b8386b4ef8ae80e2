"""The connector contract: how a channel plugs into the gateway.

A connector is a thin adapter: it turns platform requests into `InboundMessage`s handed to the
sink (the durable inbox) and delivers `Reply`s. It never imports rag, crm or the agent. Rich
features (cards, markdown) fall back to text by default: `render_text` is the floor every
connector can rely on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from aiohttp import web

from bot.models import Attachment, InboundMessage, Reply, Target


@dataclass(frozen=True)
class Accepted:
    inbox_id: int
    duplicate: bool


Sink = Callable[[InboundMessage], Awaitable[Accepted]]


@dataclass(frozen=True)
class Check:
    """One line of `copilot doctor`: what was checked, whether it passed, and how to fix it."""

    name: str
    ok: bool
    detail: str = ""
    fix: str = ""


class SendError(Exception):
    """Delivery failed. `retryable` failures are retried with backoff; others go to dead letters."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None, defer: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.defer = defer  # not a failure: the platform's pacing says "later" (does not use up an attempt)


class Connector(Protocol):
    name: str  # the channel name in InboundMessage.channel

    def routes(self, sink: Sink) -> list[web.RouteDef]: ...

    async def start(self, sink: Sink) -> None: ...  # background receivers (stream, IMAP); must return

    async def send(self, target: Target, reply: Reply, key: str) -> None: ...  # key: idempotency key

    async def fetch(self, tenant: str, attachment: Attachment) -> bytes: ...

    async def doctor(self) -> list[Check]: ...

    async def aclose(self) -> None: ...


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
    if reply.buttons and numbered_buttons:
        parts.append("  ".join(f"{b.reply or i + 1}. {b.label}" for i, b in enumerate(reply.buttons)))
    return "\n\n".join(p for p in parts if p)


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


async def read_form(request: web.Request, limit: int) -> tuple[dict[str, str], list[tuple[str, str, bytes]]]:
    """A multipart form, streamed: text fields, and files as (name, content type, bytes), each file
    refused with 413 as soon as it passes `limit` bytes."""
    from pathlib import PurePath

    reader = await request.multipart()
    fields: dict[str, str] = {}
    files: list[tuple[str, str, bytes]] = []
    while (part := await reader.next()) is not None:
        if part.filename:
            data = bytearray()
            while chunk := await part.read_chunk(1 << 16):
                data += chunk
                if len(data) > limit:
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
            files.append((PurePath(part.filename).name, part.headers.get("Content-Type", ""), bytes(data)))
        else:
            fields[part.name or ""] = (await part.read(decode=True)).decode("utf-8", "replace")
    return fields, files
