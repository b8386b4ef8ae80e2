"""The long connection (长连接) for one app: events over a websocket to Feishu, no public URL needed.

Built on lark-oapi's own protocol pieces (the `pbbp2` protobuf `Frame`, its frame and message types, header
names, the endpoint request and `ClientConfig`), with our own connection loop because `lark_oapi.ws.Client`
binds an event loop at import, opens the connection with blocking `requests`, blocks in `start()`, runs the
event handler synchronously, ignores card frames, and reconnects on its own fixed schedule. Here the
endpoint comes from aiohttp, failures back off exponentially with jitter, pings follow the server's
ClientConfig, multi-part payloads are put together as lark-oapi does, and each frame is answered on the
connection it came from only after the handler returned, that is after the event is in the durable inbox.
A handler that raises (not stored, or its sender over the rate limit) is answered 500, so Feishu delivers again.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlparse

import websockets
import websockets.exceptions
from lark_oapi.ws.const import HEADER_BIZ_RT, HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, HEADER_TYPE, SERVICE_ID
from lark_oapi.ws.enum import FrameType, MessageType
from lark_oapi.ws.model import ClientConfig
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

from connectors.channel import Throttled
from connectors.feishu.client import FeishuAPIError, FeishuClient
from connectors.feishu.config import FeishuApp
from connectors.reconnect import ReconnectingReceiver, loopback

log = logging.getLogger("copilot.feishu.ws")
OnEvent = Callable[[dict], Awaitable[dict | None]]  # returns the callback's answer (cards) or None; raises when not stored
MAX_PARTS_AGE = 5.0  # seconds a partial multi-part payload waits for its other parts (lark-oapi's)


def ping_frame(service_id: int) -> Frame:
    frame = Frame()
    header = frame.headers.add()
    header.key, header.value = HEADER_TYPE, MessageType.PING.value
    frame.service, frame.method, frame.SeqID, frame.LogID = service_id, FrameType.CONTROL.value, 0, 0
    return frame


def headers_of(frame: Frame) -> dict[str, str]:
    return {h.key: h.value for h in frame.headers}


class LongConnection(ReconnectingReceiver):
    task_name, what, open_errors = "feishu-ws", "long connection", (FeishuAPIError,)
    log = log

    def __init__(self, app: FeishuApp, client: FeishuClient, on_event: OnEvent, *, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, stable_after: float = 30.0, ping_interval: float | None = None) -> None:
        super().__init__(app.key, app.label, backoff_base=backoff_base, backoff_max=backoff_max, stable_after=stable_after)
        self.app, self.client, self.on_event = app, client, on_event
        self.ping_interval = ping_interval  # None: what the server's ClientConfig says (120 s)
        self.acks = self.refused = 0
        self._parts: dict[str, tuple[float, list[bytes]]] = {}

    async def _session(self) -> None:
        url, conf = await self.client.ws_endpoint()
        service_id = int((parse_qs(urlparse(url).query).get(SERVICE_ID) or ["0"])[0] or 0)
        interval = self._interval(conf)
        async with websockets.connect(url, ping_interval=None, close_timeout=2, open_timeout=15, max_size=4 * 1024 * 1024,
                                      proxy=None if loopback(url) else True) as ws:
            self._ws = ws
            self.connects += 1
            self.connected.set()
            log.info("%s: long connection open (%d)", self.app.label, self.connects)
            pinger = asyncio.create_task(self._ping(ws, service_id, interval))
            try:
                async for raw in ws:
                    if not isinstance(raw, bytes):
                        continue
                    frame = Frame()
                    try:
                        frame.ParseFromString(raw)
                    except Exception:  # protobuf's DecodeError: a frame that will never parse
                        log.warning("%s: a frame that is not a pbbp2 Frame was dropped", self.app.label)
                        continue
                    if frame.method == FrameType.CONTROL.value:
                        self._control(frame)
                    else:
                        self._handle(self._data(ws, frame))
            finally:
                pinger.cancel()

    def _interval(self, conf: ClientConfig | None) -> float:
        if self.ping_interval is not None:
            return self.ping_interval
        return float(conf.PingInterval) if conf is not None and conf.PingInterval else 120.0

    async def _ping(self, ws, service_id: int, interval: float) -> None:
        while True:
            await ws.send(ping_frame(service_id).SerializeToString())
            await asyncio.sleep(interval)

    def _control(self, frame: Frame) -> None:
        if headers_of(frame).get(HEADER_TYPE) == MessageType.PONG.value and frame.payload:
            try:
                conf = ClientConfig(json.loads(frame.payload))
                if self.ping_interval is None and conf.PingInterval:
                    self.ping_interval = float(conf.PingInterval)  # the next connection pings at the server's pace
            except ValueError:
                pass

    async def _data(self, ws, frame: Frame) -> None:
        hs = headers_of(frame)
        kind, msg_id = hs.get(HEADER_TYPE, ""), hs.get(HEADER_MESSAGE_ID, "")
        payload = self._combine(msg_id, int(hs.get(HEADER_SUM) or 1), int(hs.get(HEADER_SEQ) or 0), frame.payload)
        if payload is None:
            return  # more parts to come
        if kind not in (MessageType.EVENT.value, MessageType.CARD.value):
            return
        started = time.monotonic()
        answer: dict[str, Any] = {"code": 200}
        try:
            event = json.loads(payload)
        except ValueError:  # not JSON: it will never be: answer so it is not delivered again
            log.warning("%s: event %s is not JSON: dropped", self.app.label, msg_id)
            event = None
        try:
            result = await self.on_event(event) if isinstance(event, dict) else None
            if result is not None:
                answer["data"] = base64.b64encode(json.dumps(result, ensure_ascii=False).encode()).decode()
        except asyncio.CancelledError:
            raise
        except Throttled as exc:
            self.refused += 1
            answer = {"code": 500}
            log.info("%s: event %s not stored: %s", self.app.label, msg_id, exc)
        except Exception:
            self.refused += 1
            answer = {"code": 500}
            log.exception("%s: event %s not stored; Feishu will deliver it again", self.app.label, msg_id)
        header = frame.headers.add()
        header.key, header.value = HEADER_BIZ_RT, str(int((time.monotonic() - started) * 1000))
        frame.payload = json.dumps(answer).encode()
        try:
            await ws.send(frame.SerializeToString())
            self.acks += answer["code"] == 200
        except websockets.exceptions.ConnectionClosed:
            log.info("%s: answer lost with the connection; Feishu will deliver again and the inbox drops the copy", self.app.label)

    def _combine(self, msg_id: str, total: int, seq: int, part: bytes) -> bytes | None:
        if total <= 1:
            return part
        now = time.monotonic()
        for k in [k for k, (t, _) in self._parts.items() if now - t > MAX_PARTS_AGE]:
            del self._parts[k]
        if not 0 <= seq < total or total > 64:
            return None
        _, parts = self._parts.setdefault(msg_id, (now, [b""] * total))
        if len(parts) != total:  # the same id announced with another count: start again with this one
            parts = [b""] * total
            self._parts[msg_id] = (now, parts)
        parts[seq] = part
        if any(not p for p in parts):
            return None
        del self._parts[msg_id]
        return b"".join(parts)

