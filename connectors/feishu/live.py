"""The answer shown while it is written: one card per inbound message, created by the first preview,
updated at most every `preview_interval` seconds, and taken over by the finished answer.

`preview` is called from a worker thread with the answer so far: it only hands the text to the event loop
(as the web chat's preview does); there the newest text waits for the next update slot, so a fast model
costs a few card updates, not one per token. A preview never blocks the answer: if Feishu refuses an
update the card simply waits for the final one. `finish` (from the connector's `send`) stops the previews
of that message under the same lock as an update, so the last thing the card shows is the finished answer.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from connectors.feishu.cards import Card, CardStore
from connectors.feishu.client import FeishuAPIError, FeishuClient
from connectors.feishu.render import preview_card
from connectors.labels import Labels
from connectors.message import Target

log = logging.getLogger("copilot.feishu.live")
Deliver = Callable[[Target, dict, str], Awaitable[str]]  # (target, card, uuid) -> the new message's id
KEEP_FINISHED = 2000  # answers remembered in this process (a late preview of a finished one also asks the store)


def uuid_for(*parts: str) -> str:
    """Feishu's idempotency key (at most 50 characters): a repeated one is sent once within the hour."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


@dataclass
class Live:
    latest: str = ""
    shown: str = ""
    sent_at: float = 0.0
    message_id: str = ""
    done: bool = False
    updates: int = 0  # creations and updates while the answer was written
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task | None = None


class LiveCards:
    def __init__(self, store: CardStore, labels: Labels | None = None) -> None:
        self.store = store
        self.labels = labels
        self.loop: asyncio.AbstractEventLoop | None = None
        self._live: OrderedDict[str, Live] = OrderedDict()

    def preview(self, key: str, target: Target, text: str, client: FeishuClient, interval: float, deliver: Deliver) -> None:
        """Thread-safe: schedule the card of `key` to show `text` (called from a worker thread)."""
        loop = self.loop
        if loop is None or loop.is_closed() or not text.strip():
            return
        try:
            loop.call_soon_threadsafe(self._offer, key, target, text, client, interval, deliver)
        except RuntimeError:  # the loop closed since (shutting down): a preview never fails the model's answer
            pass

    def _entry(self, key: str) -> Live:
        """The in-process state of `key`'s card, made if new; the oldest go past KEEP_FINISHED (a card's identity is in the
        store, not here), whether they came from a preview or from an answer that had none."""
        live = self._live.get(key)
        if live is None:
            live = self._live[key] = Live()
            while len(self._live) > KEEP_FINISHED:
                _, old = self._live.popitem(last=False)
                if old.task is not None and not old.task.done():
                    old.task.cancel()
        return live

    def _offer(self, key: str, target: Target, text: str, client: FeishuClient, interval: float, deliver: Deliver) -> None:
        live = self._entry(key)
        if live.done:
            return
        live.latest = text
        if live.task is None or live.task.done():
            live.task = asyncio.get_running_loop().create_task(self._flush(key, live, target, client, interval, deliver))

    async def _flush(self, key: str, live: Live, target: Target, client: FeishuClient, interval: float, deliver: Deliver) -> None:
        loop = asyncio.get_running_loop()
        while not live.done and live.latest != live.shown:
            wait = live.sent_at + interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            async with live.lock:
                if live.done:
                    return
                text = live.latest
                try:
                    await self._show(key, live, target, client, text, deliver)
                except FeishuAPIError as exc:
                    log.info("card preview of %s not shown: %s", key, exc)
                    live.done = True  # previews stop; the finished answer still goes out
                    return
                live.shown, live.sent_at = text, loop.time()

    async def _show(self, key: str, live: Live, target: Target, client: FeishuClient, text: str, deliver: Deliver) -> None:
        card = preview_card(text, _lang(text), self.labels)
        row = await asyncio.to_thread(self.store.begin, key, "")  # written before the card exists (or made by another process)
        if row.reply_key:
            live.done = True  # the finished answer owns this card (perhaps in another process): a preview never covers it
            return
        if row.message_id:
            live.message_id = row.message_id
            await client.update_card(live.message_id, card)
        else:  # the card's own uuid: another process creating it at the same moment gets this same message
            created = await deliver(target, card, uuid_for("card", key))
            row = await asyncio.to_thread(self.store.created, key, created)
            live.message_id = row.message_id
            if row.reply_key:
                live.done = True
        live.updates += 1

    async def finish(self, key: str, reply_key: str, show: Callable[[Card | None], Awaitable[None]]) -> None:
        """Stop the previews of `key` and let `show(card)` put the finished answer on the card this reply owns
        (`card.fresh`: nobody started it; no `message_id`: it is still being created), or None when the card
        belongs to another reply: this one is a message of its own."""
        live = self._entry(key)
        async with live.lock:
            live.done = True
            card: Card | None = await asyncio.to_thread(self.store.begin, key, reply_key)
            if card is not None and not card.fresh and not card.reply_key:
                card = await asyncio.to_thread(self.store.take, key, reply_key)
            await show(card if card is not None and card.reply_key == reply_key else None)

    def updates(self, key: str) -> int:
        live = self._live.get(key)
        return live.updates if live else 0

    async def aclose(self) -> None:
        tasks = [lv.task for lv in self._live.values() if lv.task is not None and not lv.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _lang(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"
