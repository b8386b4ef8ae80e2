"""Cards that fill while the answer is written, and the reply that finishes them (the DingTalk `Previewer`).

`preview(app, client, target, text)` comes from a worker thread with the answer so far, many times a second; the
channel core's Previews (connectors/live.py) keeps the newest text and pumps it: the first text creates the card
(createAndDeliver, flowStatus writing), later ones go through the streaming API (PUT /v1.0/card/streaming, full
content each time) at most once per `card_interval`.

`finish(...)` delivers a reply as a card: it stops the message's previews (waiting out a request in flight), then
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
import uuid
from dataclasses import dataclass

from connectors.dingtalk.cards import DONE, MAX_CARD_CHARS, WRITING, CardStore, card_data, card_markdown, click, content_key, create_body, track_id
from connectors.dingtalk.client import DingTalkAPIError, DingTalkClient
from connectors.dingtalk.config import DingTalkApp
from connectors.labels import Labels
from connectors.live import Preview, Previews
from connectors.markup import untagged
from connectors.message import InboundMessage, Reply, Target

log = logging.getLogger("copilot.dingtalk.cards")
MAX_LIVE = 1000  # answers remembered in this process; past it the oldest stops updating


@dataclass(eq=False)
class _Card:
    """The card of one answer being written: where it goes, its id, and whether it exists yet."""

    app: DingTalkApp
    client: DingTalkClient
    target: Target
    out_track_id: str
    msg_id: str
    created: bool = False


class LiveCards:
    def __init__(self, store: CardStore | None, labels: Labels | None = None) -> None:
        self.store = store or CardStore(None)  # without cards anywhere: an in-memory table nobody fills
        self.labels = labels
        self.previews = Previews(self._show, log=log, expected=(DingTalkAPIError,), keep=MAX_LIVE)
        self.created = 0  # cards created (createAndDeliver accepted)
        self.stream_updates = 0  # streaming updates sent

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.previews.bind(loop)

    # while the answer is written (a worker thread) ----------------------------------------------------------
    def preview(self, app: DingTalkApp, client: DingTalkClient, target: Target, text: str) -> None:
        msg_id = str((target.context or {}).get("msgId") or "")
        if not msg_id or len(text) > MAX_CARD_CHARS:
            return
        otid = track_id(app, "stream", msg_id)
        # the model's raw Markdown: no <font> it wrote is acted on
        self.previews.offer(otid, untagged(text), app.card_interval, lambda: _Card(app, client, target, otid, msg_id))

    async def _show(self, preview: Preview, text: str) -> bool:
        card: _Card = preview.state
        if not card.created:
            # the first words: written down and created at once (not one after the other: the card shows sooner).
            # A crash between the two is safe: the next try creates again, DingTalk refuses the taken id, it is updated.
            data = card_data(card.app, text, status=WRITING, labels=self.labels)
            await asyncio.gather(asyncio.to_thread(self.store.claim, card.out_track_id, card.app.key, card.target, msg_id=card.msg_id),
                                 self._create(card.app, card.client, card.out_track_id, card.target, data))
            await asyncio.to_thread(self.store.mark, card.out_track_id, "live")
            card.created = True
            return True
        row = await asyncio.to_thread(self.store.get, card.out_track_id)
        if row is not None and row.reply_key is not None:  # finished (by another process's outbox): write no more
            return False
        await self._stream(card.app, card.client, card.out_track_id, text, final=False)
        return True

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
            if streamed:
                async with self.previews.closing(streamed) as preview:
                    if preview.failed and not preview.state.created:  # the card failed while the answer was written
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

    async def aclose(self) -> None:
        """Stop every pump (before the clients they use are closed): a card left writing is finished by the reply."""
        await self.previews.aclose()

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
