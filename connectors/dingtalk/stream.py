"""Stream mode for one app: a websocket to DingTalk, no public URL needed.

Built on `dingtalk-stream`'s own pieces (its credential, handler registry, frame and ack classes),
with our own connection loop because its `start()` opens the connection with blocking `requests`
inside the event loop, sleeps a fixed 10 s after any failure and (in 0.24.3 with websockets >= 14)
dies on the first dropped connection. Here: the ticket comes from aiohttp, failures back off
exponentially with jitter, websocket pings are the heartbeat, and each frame is acked on the
connection it came from only after the handler returned, that is after the message is in the
durable inbox. A handler that raises sends no ack, so DingTalk delivers the message again.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable
from urllib.parse import quote_plus

import websockets
import websockets.exceptions
from dingtalk_stream import AckMessage, CallbackHandler, CallbackMessage, Card_Callback_Router_Topic, ChatbotMessage, Credential, DingTalkStreamClient, SystemMessage
from dingtalk_stream.frames import EventMessage, Headers
from dingtalk_stream.version import VERSION_STRING

from connectors.channel import Throttled
from connectors.dingtalk.client import DingTalkAPIError, DingTalkClient
from connectors.dingtalk.config import DingTalkApp
from connectors.reconnect import ReconnectingReceiver, loopback

log = logging.getLogger("copilot.dingtalk.stream")
OnMessage = Callable[[dict], Awaitable[None]]  # must raise when the message could not be stored


class _RobotMessages(CallbackHandler):
    """The SDK's callback handler for robot messages: its `raw_process` builds the ack after `process`."""

    def __init__(self, on_message: OnMessage) -> None:
        super().__init__()
        self.on_message = on_message

    async def process(self, message: CallbackMessage):
        await self.on_message(message.data if isinstance(message.data, dict) else {})
        return AckMessage.STATUS_OK, "OK"


class StreamReceiver(ReconnectingReceiver):
    task_name, what, open_errors = "dingtalk-stream", "Stream connection", (DingTalkAPIError,)
    log = log

    def __init__(self, app: DingTalkApp, client: DingTalkClient, on_message: OnMessage, *, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, heartbeat: float = 20.0, stable_after: float = 30.0,
                 on_card: OnMessage | None = None) -> None:
        """`on_card`: card button clicks (topic /v1.0/card/instances/callback), subscribed only when given."""
        self.sdk = DingTalkStreamClient(Credential(app.app_key, app.app_secret.get_secret_value()), logger=log)
        super().__init__(app.key, app.label, backoff_base=backoff_base, backoff_max=backoff_max, stable_after=stable_after)
        self.app = app
        self.client = client
        self.heartbeat = heartbeat
        self.sdk.register_callback_handler(ChatbotMessage.TOPIC, _RobotMessages(on_message))
        if on_card is not None:
            self.sdk.register_callback_handler(Card_Callback_Router_Topic, _RobotMessages(on_card))
        self.sdk.pre_start()
        self.acks = 0
        self.throttled = 0

    @property
    def _ws(self):  # the SDK's own handlers send on `sdk.websocket`: the connection lives there
        return self.sdk.websocket

    @_ws.setter
    def _ws(self, ws) -> None:
        self.sdk.websocket = ws

    async def _session(self) -> None:
        endpoint, ticket = await self.client.open_stream(list(self.sdk.callback_handler_map), VERSION_STRING)
        async with websockets.connect(f"{endpoint}?ticket={quote_plus(ticket)}", ping_interval=self.heartbeat,
                                      ping_timeout=self.heartbeat, close_timeout=2, open_timeout=15,
                                      max_size=4 * 1024 * 1024, proxy=None if loopback(endpoint) else True) as ws:
            self._ws = ws
            self.connects += 1
            self.connected.set()
            log.info("%s: Stream connected (%d)", self.app.label, self.connects)
            async for raw in ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    log.warning("%s: a Stream frame that is not JSON was dropped", self.app.label)
                    continue
                if isinstance(frame, dict):
                    self._handle(self._route(ws, frame))

    async def _route(self, ws, frame: dict) -> None:
        kind = frame.get("type")
        try:
            msg = {SystemMessage.TYPE: SystemMessage, CallbackMessage.TYPE: CallbackMessage,
                   EventMessage.TYPE: EventMessage}.get(kind, EventMessage).from_dict(frame)
        except (ValueError, TypeError, AttributeError) as exc:  # a malformed frame will never parse: ack it away
            log.warning("%s: malformed Stream frame: %s", self.app.label, exc)
            headers = frame.get("headers") if isinstance(frame.get("headers"), dict) else {}
            await self._ack(ws, _ack(headers.get("messageId"), AckMessage.STATUS_BAD_REQUEST, "bad frame"))
            return
        try:
            if kind == SystemMessage.TYPE:
                await self._ack(ws, await self.sdk.system_handler.raw_process(msg))  # a ping is answered with its own data
                if msg.headers.topic == SystemMessage.TOPIC_DISCONNECT:
                    await ws.close()  # DingTalk is moving us: the loop reconnects at once
            elif kind == CallbackMessage.TYPE:
                handler = self.sdk.callback_handler_map.get(msg.headers.topic)
                if handler is None:
                    await self._ack(ws, _ack(msg.headers.message_id, AckMessage.STATUS_NOT_IMPLEMENT, "no handler"))
                else:
                    await self._ack(ws, await handler.raw_process(msg))
            else:  # events are not subscribed; ack so they are not redelivered
                await self._ack(ws, _ack(msg.headers.message_id, AckMessage.STATUS_OK, "ignored"))
        except asyncio.CancelledError:
            raise
        except Throttled as exc:  # its sender is over the rate limit: no ack, so DingTalk delivers it again later
            self.throttled += 1
            log.info("%s: message %s not acked: %s", self.app.label, msg.headers.message_id, exc)
        except Exception:
            log.exception("%s: message not stored; DingTalk will deliver it again", self.app.label)

    async def _ack(self, ws, ack: AckMessage) -> None:
        try:
            await ws.send(json.dumps(ack.to_dict()))
            self.acks += 1
        except websockets.exceptions.ConnectionClosed:
            log.info("%s: ack lost with the connection; DingTalk will deliver again and the inbox drops the copy", self.app.label)


def _ack(message_id: str | None, code: int, message: str) -> AckMessage:
    ack = AckMessage()
    ack.code, ack.message = code, message
    ack.headers.message_id = message_id
    ack.headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
    return ack

