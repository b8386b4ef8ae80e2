"""Cards that fill while the answer is written, and the reply that finishes them (the DingTalk `Previewer`).

`preview(app, client, target, text)` comes from a worker thread with the answer so far, many times a second. It only
keeps the newest text and, if no pump runs for that card, starts one on the event loop (call_soon_threadsafe): the
pump creates the card with the first text (createAndDeliver, flowStatus writing), then sends the newest text through
the streaming API (PUT /v1.0/card/streaming, full content each time) at most once per `card_interval`; texts that
arrive between two updates are coalesced, only the newest goes out.

`finish(...)` delivers a reply as a card: it stops the message's pump (waiting out a request in flight), then
finishes the streamed card (a final streaming update with isFinalize, then updateCardData with flowStatus done, the
citations and the buttons) or, when nothing was streamed, creates the finished card at once. It returns False when
the reply must go out the old way (markdown / ActionCard): the card failed (template missing, no permission, 4xx or
5xx), before or now. Which card is whose is cards.py's CardStore: a retry finishes the same card again.

The pump lives in the process whose worker runs the model; the reply may be finished by another process's outbox
(it finds the card in the table): before each update the pump looks whether a reply has taken the card, and stops.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from connectors.dingtalk.cards import DONE, MAX_CARD_CHARS, WRITING, CardStore, card_data, card_markdown, click, content_key, create_body, track_id
from connectors.dingtalk.client import DingTalkAPIError, DingTalkClient
from connectors.dingtalk.config import DingTalkApp
from connectors.labels import Labels
from connectors.markup import untagged
from connectors.message import InboundMessage, Reply, Target

log = logging.getLogger("copilot.dingtalk.cards")
MAX_LIVE = 1000  # cards being written at once in this process; past it the oldest stops updating


@dataclass(eq=False)
class _Live:
    """One card being written: the newest text, what the card shows, and the pump's state."""

    app: DingTalkApp
    client: DingTalkClient
    target: Target
    out_track_id: str
    msg_id: str
    latest: str = ""
    shown: str = ""
    pumping: bool = False  # a pump is scheduled or running (guarded by LiveCards._lock)
    closed: bool = False
    created: bool = False
    failed: bool = False
    updates: int = 0  # streaming updates sent
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task | None = None


class LiveCards:
    def __init__(self, store: CardStore | None, labels: Labels | None = None) -> None:
        self.store = store or CardStore(None)  # without cards anywhere: an in-memory table nobody fills
        self.labels = labels
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.created = 0  # cards created (createAndDeliver accepted)
        self.stream_updates = 0  # streaming updates sent

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # while the answer is written (a worker thread) ----------------------------------------------------------
    def preview(self, app: DingTalkApp, client: DingTalkClient, target: Target, text: str) -> None:
        msg_id = str((target.context or {}).get("msgId") or "")
        loop = self._loop
        if not msg_id or not text.strip() or loop is None or loop.is_closed() or len(text) > MAX_CARD_CHARS:
            return
        otid = track_id(app, "stream", msg_id)
        with self._lock:
            live = self._live.get(otid)
            if live is None:
                while len(self._live) >= MAX_LIVE:  # answers whose reply never came here (another process sent it, or none)
                    self._live.pop(next(iter(self._live))).closed = True
                live = self._live[otid] = _Live(app, client, target, otid, msg_id)
            if live.closed or live.failed:
                return
            live.latest = untagged(text)  # the model's raw Markdown: no <font> it wrote is acted on
            if live.pumping:
                return
            live.pumping = True
        try:
            loop.call_soon_threadsafe(self._start, live)
        except RuntimeError:  # the loop closed since (shutting down): a preview never fails the model's answer
            with self._lock:
                live.pumping = False

    def _start(self, live: _Live) -> None:
        live.task = asyncio.ensure_future(self._pump(live))

    async def _pump(self, live: _Live) -> None:
        while True:
            async with live.busy:
                with self._lock:
                    text = live.latest
                    if live.closed or live.failed or text == live.shown:
                        live.pumping = False
                        return
                started = time.monotonic()
                try:
                    await self._show(live, text)
                except DingTalkAPIError as exc:
                    live.failed = True
                    log.warning("%s: card %s: %s; the answer will go out as a message", live.app.label, live.out_track_id, exc)
                    continue
                except Exception:  # the table, or a bug: never the reply's fault
                    live.failed = True
                    log.exception("%s: card %s stopped", live.app.label, live.out_track_id)
                    continue
                live.shown = text
            await asyncio.sleep(max(0.0, live.app.card_interval - (time.monotonic() - started)))

    async def _show(self, live: _Live, text: str) -> None:
        if not live.created:
            # the first words: written down and created at once (not one after the other: the card shows sooner).
            # A crash between the two is safe: the next try creates again, DingTalk refuses the taken id, it is updated.
            data = card_data(live.app, text, status=WRITING, labels=self.labels)
            await asyncio.gather(asyncio.to_thread(self.store.claim, live.out_track_id, live.app.key, live.target, msg_id=live.msg_id),
                                 self._create(live.app, live.client, live.out_track_id, live.target, data))
            await asyncio.to_thread(self.store.mark, live.out_track_id, "live")
            live.created = True
            return
        card = await asyncio.to_thread(self.store.get, live.out_track_id)
        if card is not None and card.reply_key is not None:  # finished (by another process's outbox): write no more
            live.closed = True
            return
        await self._stream(live.app, live.client, live.out_track_id, text, final=False)
        live.updates += 1

    # the reply ------------------------------------------------------------------------------------------------
    async def finish(self, app: DingTalkApp, client: DingTalkClient, target: Target, reply: Reply, key: str) -> bool:
        """Deliver `reply` as a card (True), or say it must go out as a message (False)."""
        text = card_markdown(reply, self.labels)
        if len(text) > MAX_CARD_CHARS:
            return False
        card = await asyncio.to_thread(self.store.by_reply, key)
        if card is None:
            msg_id = str((target.context or {}).get("msgId") or "")
            streamed = track_id(app, "stream", msg_id) if msg_id else ""
            live = await self._close(streamed) if streamed else None
            if live is not None and live.failed and not live.created:  # the card failed while the answer was written
                await asyncio.to_thread(self.store.claim, streamed, app.key, target, msg_id=msg_id)
                await asyncio.to_thread(self.store.mark, streamed, "failed")
            if streamed and await asyncio.to_thread(self.store.take, streamed, key):
                card = await asyncio.to_thread(self.store.get, streamed)
            else:
                card, _ = await asyncio.to_thread(self.store.claim, track_id(app, "reply", key), app.key, target,
                                                  msg_id=msg_id, reply_key=key)
        if card is None or card.state == "failed":
            return False
        data = card_data(app, text, status=DONE, reply=reply, labels=self.labels)
        try:
            if card.state == "new":
                await self._create(app, client, card.out_track_id, target, data)
            else:
                await self._stream(app, client, card.out_track_id, text, final=True)
                await client.update_card({"outTrackId": card.out_track_id, "cardData": {"cardParamMap": data},
                                          "cardUpdateOptions": {"updateCardDataByKey": True}, "userIdType": 1})
        except DingTalkAPIError as exc:
            log.warning("%s: card %s: %s; sending the reply as a message", app.label, card.out_track_id, exc)
            await asyncio.to_thread(self.store.mark, card.out_track_id, "failed")
            return False
        await asyncio.to_thread(self.store.mark, card.out_track_id, "done")
        return True

    async def _close(self, out_track_id: str) -> _Live | None:
        with self._lock:
            live = self._live.pop(out_track_id, None)
            if live is None:
                return None
            live.closed = True
        async with live.busy:  # a request in flight ends first; the pump sees `closed` and stops
            pass
        if live.task is not None and not live.task.done():
            live.task.cancel()
        return live

    async def aclose(self) -> None:
        """Stop every pump (before the clients they use are closed): a card left writing is finished by the reply."""
        with self._lock:
            lives = list(self._live.values())
            for live in lives:
                live.closed = True
        tasks = [lv.task for lv in lives if lv.task is not None and not lv.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def clicked(self, app: DingTalkApp, data: object) -> InboundMessage:
        """A card callback -> the click as an action message (NotOurs: not a click on a card of ours)."""
        otid = str(data.get("outTrackId") or "") if isinstance(data, dict) else ""
        card = await asyncio.to_thread(self.store.get, otid) if otid else None
        return click(data, app=app, card=card)

    # the API ----------------------------------------------------------------------------------------------------
    async def _create(self, app: DingTalkApp, client: DingTalkClient, otid: str, target: Target, data: dict) -> None:
        """createAndDeliver. DingTalk refuses an outTrackId it has already: then this card was made by an earlier try
        (a crash before it was marked, another process) and is updated instead; if that fails too, the refusal stands."""
        try:
            await client.create_card(create_body(app, otid, target, data))
        except DingTalkAPIError as exc:
            if exc.retryable:
                raise
            try:
                await client.update_card({"outTrackId": otid, "cardData": {"cardParamMap": data},
                                          "cardUpdateOptions": {"updateCardDataByKey": True}, "userIdType": 1})
            except DingTalkAPIError:
                raise exc from None
        self.created += 1

    async def _stream(self, app: DingTalkApp, client: DingTalkClient, otid: str, text: str, *, final: bool) -> None:
        await client.stream_card({"outTrackId": otid, "guid": uuid.uuid4().hex, "key": content_key(app), "content": text,
                                  "isFull": True, "isFinalize": final, "isError": False})
        self.stream_updates += 1
