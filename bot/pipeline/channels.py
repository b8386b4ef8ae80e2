"""The running channels, and the one place the core reaches them: send, fetch a file, show an answer
while it is written, diagnose. A capability a connector lacks falls back here (a file it cannot fetch is
refused with a reason; no live preview), so a new platform writes receive + send and nothing else."""
from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Callable, Iterable

from aiohttp import web

from connectors.channel import Check, Connector, Sink
from connectors.message import Attachment, InboundMessage, Reply, Target

log = logging.getLogger("copilot.channels")


class UnknownChannel(LookupError):
    pass


class Channels:
    def __init__(self, connectors: Iterable[Connector]) -> None:
        self._by_name = MappingProxyType({c.name: c for c in connectors})

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Connector:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownChannel(f"no connector for channel {name!r}") from None

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        await self.get(target.channel).send(target, reply, key)

    async def fetch(self, msg: InboundMessage, att: Attachment) -> bytes:
        connector = self.get(msg.channel)
        fetch = getattr(connector, "fetch", None)
        if fetch is None:
            raise UnknownChannel(f"channel {msg.channel!r} cannot fetch files")
        return await fetch(msg.tenant, att)

    def preview(self, msg: InboundMessage) -> Callable[[str], None] | None:
        """Where the message's channel shows an answer while the model writes it, if it can."""
        show = getattr(self._by_name.get(msg.channel), "preview", None)
        if show is None:
            return None
        target = Target.of(msg)
        return lambda text: show(target, text)

    def routes(self, sink: Sink) -> list[web.RouteDef]:
        out: list[web.RouteDef] = []
        for c in self._by_name.values():
            routes = getattr(c, "routes", None)
            if routes is not None:
                out += routes(sink)
        return out

    async def start(self, sink: Sink) -> None:
        for c in self._by_name.values():
            start = getattr(c, "start", None)
            if start is not None:
                await start(sink)

    async def doctor(self) -> list[Check]:
        checks: list[Check] = []
        for c in self._by_name.values():
            doctor = getattr(c, "doctor", None)
            checks += await doctor() if doctor is not None else [Check(f"{c.name} channel", True, "no checks")]
        return checks

    async def aclose(self) -> None:
        for c in self._by_name.values():
            close = getattr(c, "aclose", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:  # noqa: BLE001 - one broken channel must not keep the others open
                log.exception("closing connector %s", c.name)
