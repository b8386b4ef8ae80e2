"""The running channels, and the one place the core reaches them: send, fetch a file, show an answer
while it is written, diagnose. Each ability is a small protocol (connectors/channel.py), checked with
isinstance; what a connector lacks falls back here: a reply for a text-only connector is rendered as
text (citations, buttons as numbered choices) and split under its limit; a file it cannot fetch is
refused with a reason; no doctor is a neutral check; no preview shows nothing until the answer is done.
So a new platform writes receive + send_text and nothing else."""
from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Callable, Iterable

from aiohttp import web

from connectors.channel import BackgroundReceiver, Check, Closable, Connector, Diagnosable, FileFetcher, HttpReceiver, Previewer, RichSender, Sink, TextSender, WebSignIn
from connectors.labels import Labels
from connectors.message import Attachment, InboundMessage, Reply, Target
from connectors.text import text_parts

log = logging.getLogger("copilot.channels")


class UnknownChannel(LookupError):
    pass


class CannotFetch(LookupError):
    """The channel carries no files the copilot can download."""


class Channels:
    def __init__(self, connectors: Iterable[Connector], labels: Labels | None = None) -> None:
        """`labels`: the words the text fallback adds (the catalogue's channel_* messages; None: the shipped ones)."""
        self.labels = labels
        connectors = list(connectors)
        for c in connectors:
            if not isinstance(c, (RichSender, TextSender)):
                raise TypeError(f"connector {getattr(c, 'name', c)!r} can send nothing: give it send_text (or send)")
        self._by_name = MappingProxyType({c.name: c for c in connectors})

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def with_signin(self, tenant: str) -> dict[str, WebSignIn]:
        """The connectors that sign a browser of `tenant` in with the platform's account, by channel name."""
        return {name: c for name, c in self._by_name.items() if isinstance(c, WebSignIn) and c.signs_in(tenant)}

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Connector:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownChannel(f"no connector for channel {name!r}") from None

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        c = self.get(target.channel)
        if isinstance(c, RichSender):
            await c.send(target, reply, key)
            return
        assert isinstance(c, TextSender)  # checked at construction
        parts = text_parts(reply, c.text_limit, c.text_unit, self.labels)
        for i, part in enumerate(parts):
            # each part its own key, so a platform that deduplicates drops only the parts a retry repeats
            await c.send_text(target, part, key if len(parts) == 1 else f"{key}#{i + 1}")

    async def fetch(self, msg: InboundMessage, att: Attachment) -> bytes:
        c = self.get(msg.channel)
        if not isinstance(c, FileFetcher):
            raise CannotFetch(f"channel {msg.channel!r} cannot fetch files; send {att.name} through the web chat or `copilot ingest`")
        return await c.fetch(msg.tenant, att)

    def preview(self, msg: InboundMessage) -> Callable[[str], None] | None:
        """Where the message's channel shows an answer while the model writes it, if it can."""
        c = self._by_name.get(msg.channel)
        if not isinstance(c, Previewer):
            return None
        target = Target.of(msg)
        return lambda text: c.preview(target, text)

    def routes(self, sink: Sink) -> list[web.RouteDef]:
        out: list[web.RouteDef] = []
        for c in self._by_name.values():
            if isinstance(c, HttpReceiver):
                out += c.routes(sink)
        return out

    async def start(self, sink: Sink) -> None:
        for c in self._by_name.values():
            if isinstance(c, BackgroundReceiver):
                await c.start(sink)

    async def doctor(self) -> list[Check]:
        checks: list[Check] = []
        for c in self._by_name.values():
            checks += await c.doctor() if isinstance(c, Diagnosable) else [Check(f"{c.name} channel", True, "nothing to check")]
        return checks

    async def aclose(self) -> None:
        for c in self._by_name.values():
            if not isinstance(c, Closable):
                continue
            try:
                await c.aclose()
            except Exception:
                log.exception("closing connector %s", c.name)
