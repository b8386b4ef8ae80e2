"""`copilot chat`: the console channel in a terminal. Replies are printed as they are delivered."""
from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web

from connectors.channel import Check, Sink
from connectors.text import render_text
from connectors.message import Attachment, Reply, Target


class TerminalConnector:
    name = "console"

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.delivered = asyncio.Event()

    def routes(self, sink: Sink) -> list[web.RouteDef]:
        return []

    async def start(self, sink: Sink) -> None:
        return None

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        self.out(render_text(reply))
        self.delivered.set()

    async def fetch(self, tenant: str, attachment: Attachment) -> bytes:
        raise FileNotFoundError("the terminal channel does not carry files; use `copilot ingest`")

    async def doctor(self) -> list[Check]:
        return []

    async def aclose(self) -> None:
        return None
