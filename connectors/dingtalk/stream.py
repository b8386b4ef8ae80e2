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
import random
import time
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


class StreamReceiver:
    def __init__(self, app: DingTalkApp, client: DingTalkClient, on_message: OnMessage, *, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, heartbeat: float = 20.0, stable_after: float = 30.0,
                 on_card: OnMessage | None = None) -> None:
        """`on_card`: card button clicks (topic /v1.0/card/instances/callback), subscribed only when given."""
        self.app = app
        self.client = client
        self.backoff_base, self.backoff_max, self.stable_after = backoff_base, backoff_max, stable_after
        self.heartbeat = heartbeat
        self.sdk = DingTalkStreamClient(Credential(app.app_key, app.app_secret.get_secret_value()), logger=log)
        self.sdk.register_callback_handler(ChatbotMessage.TOPIC, _RobotMessages(on_message))
        if on_card is not None:
            self.sdk.register_callback_handler(Card_Callback_Router_Topic, _RobotMessages(on_card))
        self.sdk.pre_start()
        self.connected = asyncio.Event()
        self.connects = 0
        self.acks = 0
        self.throttled = 0
        self.last_error = ""
        self._task: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()
        self._closing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"dingtalk-stream-{self.app.key}")

    async def aclose(self) -> None:
        self._closing = True
        ws = self.sdk.websocket
        if ws is not None:
            await ws.close()
        if self._inflight:  # let acks for messages already being stored go out
            await asyncio.wait(self._inflight, timeout=2.0)
        for t in [*self._inflight, *([self._task] if self._task else [])]:
            t.cancel()
        await asyncio.gather(*self._inflight, *([self._task] if self._task else []), return_exceptions=True)

    async def run(self) -> None:
        failures = 0
        while not self._closing:
            started = time.monotonic()
            try:
                await self._session()
                self.last_error = ""
            except asyncio.CancelledError:
                raise
            except DingTalkAPIError as exc:
                self.last_error = str(exc)
                log.warning("%s: cannot open a Stream connection: %s", self.app.label, exc)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: Stream connection lost: %s", self.app.label, self.last_error)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s: Stream connection failed", self.app.label)
            self.connected.clear()
            self.sdk.websocket = None
            if self._closing:
                break
            failures = 0 if time.monotonic() - started >= self.stable_after else failures + 1
            delay = min(self.backoff_max, self.backoff_base * 2 ** failures) * random.uniform(0.5, 1.0)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        endpoint, ticket = await self.client.open_stream(list(self.sdk.callback_handler_map), VERSION_STRING)
        async with websockets.connect(f"{endpoint}?ticket={quote_plus(ticket)}", ping_interval=self.heartbeat,
                                      ping_timeout=self.heartbeat, close_timeout=2, open_timeout=15,
                                      max_size=4 * 1024 * 1024, proxy=None if _loopback(endpoint) else True) as ws:
            self.sdk.websocket = ws
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
                    task = asyncio.create_task(self._route(ws, frame))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)

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


def _loopback(url: str) -> bool:
    return "//127.0.0.1" in url or "//localhost" in url or "//[::1]" in url
