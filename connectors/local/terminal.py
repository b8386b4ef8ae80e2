"""`copilot chat`: the console channel in a terminal. Replies are printed as they are delivered.

The smallest connector there is: a name and `send_text`. The core renders each reply as text for it
(citations, buttons as numbered choices); the terminal reads its input itself (bot/cli)."""
from __future__ import annotations

import asyncio
from typing import Callable

from connectors.message import Target


class TerminalConnector:
    name = "console"
    text_limit = 100_000  # a terminal scrolls: one reply is one print
    text_unit = "chars"

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.delivered = asyncio.Event()

    async def send_text(self, target: Target, text: str, key: str) -> None:
        self.out(text)
        self.delivered.set()
