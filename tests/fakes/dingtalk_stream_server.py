"""A local DingTalk Stream gateway (the websocket side), close enough for the real `dingtalk-stream` client.

What it does like DingTalk: a connection needs a one-time ticket (issued by the fake API's
`/v1.0/gateway/connections/open`, valid 90 s); frames are JSON `{specVersion, type, headers, data}`
with `data` a JSON string; each robot message goes to one of the app's open connections and is
delivered again when no ack (`{code, headers: {messageId}, message, data}`) arrives in time;
SYSTEM `ping` frames expect their data back, `disconnect` asks the client to reconnect. Test
levers: `drop()` cuts the TCP connection without a close frame, `lose_acks` throws acks away.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import WSMsgType, web

ROBOT_TOPIC = "/v1.0/im/bot/messages/get"


@dataclass
class Conn:
    id: str
    app_key: str
    ws: web.WebSocketResponse
    request: web.Request


@dataclass
class Ack:
    message_id: str
    code: int
    data: str
    conn_id: str
    at: float = field(default_factory=time.monotonic)


class FakeStreamServer:
    def __init__(self, *, redeliver_after: float = 1.0, max_deliveries: int = 4, ticket_ttl: float = 90.0) -> None:
        self.redeliver_after = redeliver_after
        self.max_deliveries = max_deliveries
        self.ticket_ttl = ticket_ttl
        self.ws_url = ""  # set by bind()
        self.tickets: dict[str, tuple[str, float]] = {}
        self.conns: dict[str, list[Conn]] = {}
        self.opened: dict[str, int] = {}
        self.refused = 0
        self.acks: list[Ack] = []
        self.system_acks: list[Ack] = []
        self.lost_acks: list[str] = []
        self.lose_acks = 0  # the next N callback acks vanish on the way (network loss)
        self.deliveries: dict[str, int] = {}  # message id -> times sent
        self.on_ack: Callable[[str], None] | None = None  # called when an ack arrives, before anything else
        self._waiting: dict[str, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ids = itertools.count(1)

    def bind(self, base_url: str) -> None:
        self.ws_url = base_url.replace("http://", "ws://", 1).rstrip("/") + "/connect"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/connect", self._connect)
        app.on_shutdown.append(self._shutdown)
        return app

    def issue_ticket(self, app_key: str) -> str:
        ticket = secrets.token_hex(16)
        self.tickets[ticket] = (app_key, time.monotonic() + self.ticket_ttl)
        return ticket

    # the websocket ---------------------------------------------------------------------------
    async def _connect(self, request: web.Request) -> web.StreamResponse:
        app_key, until = self.tickets.pop(request.query.get("ticket", ""), ("", 0.0))
        if not app_key or until < time.monotonic():
            self.refused += 1
            return web.json_response({"code": "invalidTicket", "message": "ticket is invalid or used"}, status=403)
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        await ws.prepare(request)
        conn = Conn(f"conn-{next(self._ids)}", app_key, ws, request)
        self.conns.setdefault(app_key, []).append(conn)
        self.opened[app_key] = self.opened.get(app_key, 0) + 1
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_frame(conn, msg.data)
        finally:
            self.conns[app_key].remove(conn)
        return ws

    def _on_frame(self, conn: Conn, text: str) -> None:
        try:
            frame = json.loads(text)
            mid = str(frame["headers"]["messageId"])
        except (ValueError, KeyError, TypeError):
            return
        ack = Ack(mid, int(frame.get("code") or 0), str(frame.get("data") or ""), conn.id)
        if mid.startswith("sys-"):
            self.system_acks.append(ack)
            return
        if self.lose_acks > 0:
            self.lose_acks -= 1
            self.lost_acks.append(mid)
            return
        if self.on_ack is not None:
            self.on_ack(mid)
        self.acks.append(ack)
        fut = self._waiting.get(mid)
        if fut is not None and not fut.done() and ack.code == 200:
            fut.set_result(ack)

    async def _shutdown(self, _app: web.Application) -> None:
        for t in self._tasks:
            t.cancel()
        for conns in self.conns.values():
            for c in list(conns):
                await c.ws.close()

    # what DingTalk sends ---------------------------------------------------------------------------
    def connected(self, app_key: str) -> int:
        return len([c for c in self.conns.get(app_key, []) if not c.ws.closed])

    async def wait_connected(self, app_key: str, opened: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.opened.get(app_key, 0) >= opened and self.connected(app_key)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{app_key}: {self.opened.get(app_key, 0)} connections opened, wanted {opened}")
            await asyncio.sleep(0.01)

    def push(self, app_key: str, data: dict, *, message_id: str | None = None, topic: str = ROBOT_TOPIC) -> str:
        """Deliver a robot message (again and again until acked, like DingTalk); returns the frame's messageId."""
        mid = message_id or f"msg-{secrets.token_hex(8)}"
        fut = self._waiting.get(mid) or asyncio.get_running_loop().create_future()
        self._waiting[mid] = fut
        frame = {"specVersion": "1.0", "type": "CALLBACK", "data": json.dumps(data, ensure_ascii=False),
                 "headers": {"appId": app_key, "contentType": "application/json", "messageId": mid,
                             "time": str(int(time.time() * 1000)), "topic": topic}}
        task = asyncio.create_task(self._deliver(app_key, mid, frame, fut))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return mid

    async def _deliver(self, app_key: str, mid: str, frame: dict, fut: asyncio.Future) -> None:
        for _ in range(self.max_deliveries):
            conn = await self._pick(app_key)
            frame["headers"]["connectionId"] = conn.id
            try:
                await conn.ws.send_str(json.dumps(frame, ensure_ascii=False))
                self.deliveries[mid] = self.deliveries.get(mid, 0) + 1
            except (ConnectionError, RuntimeError):
                await asyncio.sleep(0.01)
                continue
            try:
                await asyncio.wait_for(asyncio.shield(fut), self.redeliver_after)
                return
            except asyncio.TimeoutError:
                continue  # not acked in time: deliver again (possibly on another connection)

    async def _pick(self, app_key: str) -> Conn:
        while True:
            live = [c for c in self.conns.get(app_key, []) if not c.ws.closed]
            if live:
                return random.choice(live)  # "each message goes to one of the app's open connections"
            await asyncio.sleep(0.01)

    async def acked(self, message_id: str, timeout: float = 5.0) -> Ack:
        return await asyncio.wait_for(asyncio.shield(self._waiting[message_id]), timeout)

    async def deliver(self, app_key: str, data: dict, *, timeout: float = 30.0) -> float:
        """Push and wait for the ack; returns seconds from send to ack (the benchmark's ack latency)."""
        started = time.perf_counter()
        mid = self.push(app_key, data)
        await self.acked(mid, timeout)
        self._waiting.pop(mid, None)
        return time.perf_counter() - started

    def _system(self, app_key: str, topic: str, data: dict) -> str:
        mid = f"sys-{secrets.token_hex(4)}"
        frame = {"specVersion": "1.0", "type": "SYSTEM", "data": json.dumps(data),
                 "headers": {"contentType": "application/json", "messageId": mid, "topic": topic,
                             "time": str(int(time.time() * 1000))}}
        for c in self.conns.get(app_key, []):
            task = asyncio.create_task(c.ws.send_str(json.dumps(frame)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return mid

    def ping(self, app_key: str) -> str:
        return self._system(app_key, "ping", {"opaque": secrets.token_hex(4)})

    def disconnect(self, app_key: str) -> str:
        return self._system(app_key, "disconnect", {"reason": "server restart"})

    def drop(self, app_key: str) -> int:
        """Cut every connection of the app without a close frame (the client sees code 1006)."""
        n = 0
        for c in list(self.conns.get(app_key, [])):
            if c.request.transport is not None:
                c.request.transport.abort()
                n += 1
        return n
