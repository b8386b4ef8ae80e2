"""Processes sharing one PostgreSQL database tell each other what changed in the inbox: LISTEN/NOTIFY.

The inbox says "new" (rows accepted) and "done" (rows finished) inside the transaction that wrote them
(`say`), so a notice is delivered at commit and never for a write that rolled back. Every process listens on
one connection of its own (psycopg, asyncio) and hands what others said on (to the dispatcher:
an idle worker takes a new row at once, a conversation waiting for its earlier message goes on at once).
A notice only says where to look: the rows stay the truth, so a notice lost while the listener reconnects
(PostgreSQL restarted) costs latency, not a message: after every (re)connection the dispatcher gets "resync"
and sweep the inbox. SQLite deployments (one host) have no notices: the dispatcher polls instead.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("copilot.wakeup")
CHANNEL = "copilot_inbox"
MAX_PAYLOAD = 7000  # PostgreSQL refuses a notice over 8000 bytes
Subscriber = Callable[[str, list[tuple[int, str]]], None]


class PgWakeup:
    def __init__(self, conninfo: str, owner: str, hand: Subscriber, *, reconnect: float = 1.0) -> None:
        """`conninfo`: a libpq URL of the database; `owner`: this process (its own notices are not handed back);
        `hand(kind, [(inbox id, conversation key)])`: what other processes said (kind "new", "done" or "resync")."""
        self.conninfo = conninfo.replace("postgresql+psycopg://", "postgresql://", 1)
        self.owner = owner
        self.reconnect = reconnect
        self._hand_to = hand
        self._task: asyncio.Task | None = None
        self.listening = asyncio.Event()  # set while the listening connection is up (tests wait for it)

    @classmethod
    def for_engine(cls, engine: Engine, owner: str, hand: Subscriber) -> "PgWakeup | None":
        """Notices on a PostgreSQL engine; None on SQLite."""
        if engine.dialect.name != "postgresql":
            return None
        return cls(engine.url.render_as_string(hide_password=False), owner, hand)

    def say(self, conn: Connection, kind: str, items: list[tuple[int, str]]) -> None:
        """Inside the caller's transaction: notices go out at its commit."""
        chunk: list[tuple[int, str]] = []
        size = 0
        for item in items:
            if chunk and size + len(item[1]) + 16 > MAX_PAYLOAD - 200:
                self._say(conn, kind, chunk)
                chunk, size = [], 0
            chunk.append(item)
            size += len(item[1].encode()) + 16
        if chunk:
            self._say(conn, kind, chunk)

    def _say(self, conn: Connection, kind: str, items: list[tuple[int, str]]) -> None:
        payload = json.dumps({"k": kind, "o": self.owner, "i": items}, ensure_ascii=False, separators=(",", ":"))
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="inbox-wakeup")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _hand(self, kind: str, items: list[tuple[int, str]]) -> None:
        try:
            self._hand_to(kind, items)
        except Exception:
            log.exception("handing an inbox notice on failed")

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._hand("resync", [])  # whatever was said while nobody here listened is found by a sweep
                    while True:
                        async for n in conn.notifies(timeout=30.0):
                            self._notice(n.payload)
                        await conn.execute("SELECT 1")  # a quiet half-hour must not hide a dead connection
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("inbox wake-ups lost their connection (%s); reconnecting in %.0f s", type(exc).__name__, self.reconnect)
                await asyncio.sleep(self.reconnect)

    def _notice(self, payload: str) -> None:
        try:
            d = json.loads(payload)
            if d["o"] == self.owner:
                return
            self._hand(str(d["k"]), [(int(i), str(k)) for i, k in d["i"]])
        except (ValueError, KeyError, TypeError):
            log.warning("an inbox notice that is not ours: %.80r", payload)
