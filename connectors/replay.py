"""Replay guard for signed platform callbacks: a timestamp window and the signatures seen within it.

A platform's signature proves who made a request, not when: a captured request can be sent again. A
callback whose timestamp is outside the window is refused; inside it, each signature is remembered until
its timestamp leaves the window, so the same signed request is recognised when it comes back.

Remembered in process memory and, when the factory hands over the database (`engine`), in the `replay_seen`
table too, so that every `copilot serve` behind a load balancer knows what any of them saw: a DingTalk signature
captured at one process cannot carry another body to another. `claim` is atomic across processes (an insert
that leaves an existing row alone). Bounded: past `max_items` the oldest memory entries go first; expired rows
are deleted as new ones come. The calls touch the database: connectors run them in a thread.

With a shared store (`shared`: Redis, handed down by the factory, connectors/cache.py) the signatures go there
instead of the table (SET NX with the time left in the window); while it cannot be reached, the table takes them.
A Redis restarted without persistence forgets the signatures of the last window: a callback captured before could be
replayed once after it (the inbox still drops a message it already has).
"""
from __future__ import annotations

import heapq
import time
from typing import Callable

from sqlalchemy import Column, Float, MetaData, String, Table, delete, select
from sqlalchemy.engine import Engine

from connectors.cache import CacheUnavailable, SharedClaims
from connectors.sql import insert_ignore

metadata = MetaData()
seen_table = Table(
    "replay_seen", metadata,
    Column("key", String(400), primary_key=True),  # e.g. app|timestamp, or corp|timestamp|nonce|signature
    Column("what", String(100), nullable=False),  # what the signature came with (a body hash), or ""
    Column("expires_at", Float, nullable=False, index=True),
)
PRUNE_EVERY = 500  # remembered signatures between deletions of the expired rows


class SeenSignatures:
    def __init__(self, window: float, *, engine: Engine | None = None, max_items: int = 200_000,
                 clock: Callable[[], float] = time.time, shared: SharedClaims | None = None) -> None:
        self.window = window  # seconds either side of now
        self.engine = engine
        self.shared = shared
        self.max_items = max_items
        self.clock = clock
        self._seen: dict[str, tuple[float, str]] = {}  # key -> (expires at, what it signed)
        self._expiry: list[tuple[float, str]] = []  # a heap of (expires at, key)
        self._writes = 0
        if engine is not None:
            metadata.create_all(engine)

    def in_window(self, timestamp: float) -> bool:
        return abs(self.clock() - timestamp) <= self.window

    def seen(self, key: str) -> str | None:
        """What the signature `key` came with before (e.g. a body hash), or None when it is new."""
        now = self.clock()
        self._expire(now)
        hit = self._seen.get(key)
        if hit is not None:
            return hit[1]
        if self.shared is not None:
            try:
                return self.shared.seen(key)
            except CacheUnavailable:
                pass  # the database, below
        if self.engine is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(seen_table.c.what, seen_table.c.expires_at).where(seen_table.c.key == key)).first()
        if row is None or row.expires_at < now:
            return None
        self._keep(key, row.expires_at, row.what)
        return row.what

    def remember(self, key: str, timestamp: float, what: str = "") -> None:
        """Keep `key` until its timestamp leaves the window."""
        self.claim(key, timestamp, what)

    def claim(self, key: str, timestamp: float, what: str = "") -> str | None:
        """Remember `key` with `what` unless it is known: then return what it came with first (None: it is new).
        Two processes claiming the same key at once: one of them gets the other's `what`."""
        now = self.clock()
        self._expire(now)
        until = timestamp + self.window
        if self.shared is not None:
            hit = self._seen.get(key)
            if hit is not None:
                return hit[1]
            try:
                before = self.shared.claim(key, what, max(1.0, until - now))
            except CacheUnavailable:
                pass  # the database, below
            else:
                self._keep(key, until, what if before is None else before)
                return before
        if self.engine is None:
            hit = self._seen.get(key)
            if hit is not None:
                return hit[1]
            self._keep(key, until, what)
            return None
        with self.engine.begin() as conn:
            inserted = conn.execute(insert_ignore(conn, seen_table, {"key": key, "what": what, "expires_at": until})).rowcount
            if not inserted:
                row = conn.execute(select(seen_table.c.what, seen_table.c.expires_at).where(seen_table.c.key == key)).first()
                if row is not None and row.expires_at < now:  # an expired row that was not pruned yet: the key is new
                    conn.execute(seen_table.update().where(seen_table.c.key == key).values(what=what, expires_at=until))
                    row = None
            else:
                row = None
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                conn.execute(delete(seen_table).where(seen_table.c.expires_at < now))
        if row is not None:
            self._keep(key, row.expires_at, row.what)
            return row.what
        self._keep(key, until, what)
        return None

    def _keep(self, key: str, until: float, what: str) -> None:
        self._seen[key] = (until, what)
        heapq.heappush(self._expiry, (until, key))
        while len(self._seen) > self.max_items:  # the ones closest to expiring go first
            self._expire(float("inf"), limit=len(self._seen) - self.max_items)

    def _expire(self, now: float, limit: int | None = None) -> None:
        dropped = 0
        while self._expiry and self._expiry[0][0] < now and (limit is None or dropped < limit):
            until, key = heapq.heappop(self._expiry)
            if key in self._seen and self._seen[key][0] == until:
                del self._seen[key]
                dropped += 1

    def __len__(self) -> int:
        return len(self._seen)
