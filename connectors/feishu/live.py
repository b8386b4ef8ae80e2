"""The answer shown while it is written: one card per inbound message, created by the first preview,
updated at most every `preview_interval` seconds, and taken over by the finished answer.

`preview` is called from a worker thread with the answer so far; the channel core's Previews (connectors/live.py)
keeps the newest text and pumps it, so a fast model costs a few card updates, not one per token. A preview never
blocks the answer: if Feishu refuses an update the card simply waits for the final one. `finish` (from the
connector's `send`) stops the previews of that message under the same lock as an update, so the last thing the card
shows is the finished answer.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Awaitable, Callable

from connectors.feishu.cards import Card, CardStore
from connectors.feishu.client import FeishuAPIError, FeishuClient
from connectors.feishu.render import preview_card
from connectors.labels import Labels
from connectors.live import Preview, Previews
from connectors.message import Target

log = logging.getLogger("copilot.feishu.live")
Deliver = Callable[[Target, dict, str], Awaitable[str]]  # (target, card, uuid) -> the new message's id
KEEP_FINISHED = 2000  # answers remembered in this process (a late preview of a finished one also asks the store)


def uuid_for(*parts: str) -> str:
    """Feishu's idempotency key (at most 50 characters): a repeated one is sent once within the hour."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


@dataclass
class _Chat:
    """Where one answer's card goes, and its message once created."""

    target: Target
    client: FeishuClient
    deliver: Deliver
    message_id: str = ""


class LiveCards:
    def __init__(self, store: CardStore, labels: Labels | None = None) -> None:
        self.store = store
        self.labels = labels
        self.previews = Previews(self._show, log=log, expected=(FeishuAPIError,), keep=KEEP_FINISHED)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.previews.bind(loop)

    def preview(self, key: str, target: Target, text: str, client: FeishuClient, interval: float, deliver: Deliver) -> None:
        """Thread-safe: schedule the card of `key` to show `text` (called from a worker thread)."""
        self.previews.offer(key, text, interval, lambda: _Chat(target, client, deliver))

    async def _show(self, preview: Preview, text: str) -> bool:
        chat: _Chat = preview.state
        card = preview_card(text, _lang(text), self.labels)
        row = await asyncio.to_thread(self.store.begin, preview.key, "")  # written before the card exists (or made by another process)
        if row.reply_key:
            return False  # the finished answer owns this card (perhaps in another process): a preview never covers it
        if row.message_id:
            chat.message_id = row.message_id
            await chat.client.update_card(chat.message_id, card)
            return True
        # the card's own uuid: another process creating it at the same moment gets this same message
        created = await chat.deliver(chat.target, card, uuid_for("card", preview.key))
        row = await asyncio.to_thread(self.store.created, preview.key, created)
        chat.message_id = row.message_id
        return not row.reply_key

    async def finish(self, key: str, reply_key: str, show: Callable[[Card | None], Awaitable[None]]) -> None:
        """Stop the previews of `key` and let `show(card)` put the finished answer on the card this reply owns
        (`card.fresh`: nobody started it; no `message_id`: it is still being created), or None when the card
        belongs to another reply: this one is a message of its own."""
        async with self.previews.closing(key):
            card: Card | None = await asyncio.to_thread(self.store.begin, key, reply_key)
            if card is not None and not card.fresh and not card.reply_key:
                card = await asyncio.to_thread(self.store.take, key, reply_key)
            await show(card if card is not None and card.reply_key == reply_key else None)

    async def aclose(self) -> None:
        await self.previews.aclose()


def _lang(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"
