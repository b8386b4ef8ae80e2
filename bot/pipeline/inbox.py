"""The durable inbox: every inbound message is written here before it is acknowledged.

Keyed on (channel, tenant, platform msg id): a duplicate delivery is acknowledged and dropped.
Concurrent `put`s are group-committed (one transaction for all that arrived meanwhile), so the
ack path costs one fsync-free WAL commit shared by many requests. Workers claim a row with a
lease; a crashed worker's lease is taken over at the next start (same host, dead pid) or when it
expires (any host: nothing relies on pids elsewhere). Replies are written in the same transaction that marks a
row done: answered exactly once.

Order per conversation holds across processes: a row is claimed only when no earlier row of its conversation
(lower id: the order the inbox accepted them) is still queued or processing, wherever it landed; `claim` then
answers `Waiting` and the dispatcher looks again shortly (at once when told the earlier one finished: `signal`).
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from bot.pipeline.outbox import queue_answers
from bot.pipeline.tables import InboxRow
from connectors.channel import Accepted
from connectors.message import InboundMessage, Reply, Target, utcnow
from connectors.sql import insert_ignore

OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
UNFINISHED = ("queued", "processing")


def owner_is_dead(owner: str, me: str = OWNER) -> bool:
    """True when the lease owner was a process on this host that no longer runs (or an earlier us)."""
    host, _, rest = owner.partition(":")
    pid_s, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    if owner in (OWNER, me):
        return False
    pid = int(pid_s)
    if pid == os.getpid():
        return True  # a previous incarnation with a recycled pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class Work:
    id: int
    conversation_key: str
    not_before: float


@dataclass(frozen=True)
class Waiting:
    """`claim`'s answer when an earlier row of the conversation is unfinished: `earlier` (the nearest) goes first;
    `takeable`: nobody works on it now (queued and due, or its lease expired), so the caller may take it."""

    earlier: int
    takeable: bool


Signal = Callable[[Connection, str, list[tuple[int, str]]], None]  # (transaction, "new"|"done", [(id, conversation)])


class Inbox:
    def __init__(self, engine: Engine, *, owner: str = OWNER, signal: Signal | None = None) -> None:
        """`owner`: this process's lease name; `signal`: told inside the transaction that adds or finishes rows
        (other processes hear it at commit: bot/pipeline/wakeup.py)."""
        self.engine = engine
        self.owner = owner
        self.signal = signal
        self._pending: list[tuple[InboundMessage, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._inflight = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._last_put = 0.0

    # ack path ----------------------------------------------------------------------------------
    async def put(self, msg: InboundMessage) -> Accepted:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="inbox-writer")
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((msg, fut))
        self._wake.set()
        self._inflight += 1
        self._quiet.clear()
        self._last_put = asyncio.get_running_loop().time()
        try:
            return await fut
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._quiet.set()

    async def quiet(self, max_wait: float, gap: float = 0.01) -> None:
        """Acknowledging comes first: background work waits (at most `max_wait`) until no message has
        arrived for `gap` seconds. Under a burst it trickles; between messages it runs at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            idle_for = loop.time() - self._last_put
            if (idle_for >= gap and self._quiet.is_set()) or loop.time() >= deadline:
                return
            await asyncio.sleep(min(max(gap - idle_for, 0.002), deadline - loop.time()))

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._insert, [m for m, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), res in zip(batch, results):
                if not fut.done():
                    fut.set_result(res)

    def _insert(self, msgs: list[InboundMessage]) -> list[Accepted]:
        """One multi-row INSERT .. ON CONFLICT DO NOTHING RETURNING for the whole batch."""
        table = InboxRow.__table__
        now = utcnow()
        rows = [dict(channel=m.channel, tenant=m.tenant, platform_msg_id=m.platform_msg_id,
                     conversation_key=m.conversation_key, payload=m.model_dump_json(), status="queued", attempts=0,
                     not_before=0.0, lease_owner="", lease_until=0.0, error="", created_at=now) for m in msgs]
        key = lambda m: (m.channel, m.tenant, m.platform_msg_id)
        with self.engine.begin() as conn:
            # executemany: the statement is compiled once and cached, rows go in "insertmanyvalues" batches
            stmt = insert_ignore(self.engine, table).returning(table.c.id, table.c.channel, table.c.tenant, table.c.platform_msg_id)
            new = {(r.channel, r.tenant, r.platform_msg_id): r.id for r in conn.execute(stmt, rows)}
            if new and self.signal is not None:
                convs = {key(m): m.conversation_key for m in msgs}
                self.signal(conn, "new", sorted((i, convs[k]) for k, i in new.items()))
            missing = {key(m) for m in msgs if key(m) not in new}
            existing = {}
            for ch, tn, pid in missing:
                existing[(ch, tn, pid)] = conn.execute(select(table.c.id).where(
                    table.c.channel == ch, table.c.tenant == tn, table.c.platform_msg_id == pid)).scalar_one()
        out, seen = [], set()
        for m in msgs:
            k = key(m)
            if k in new and k not in seen:
                out.append(Accepted(new[k], False))
                seen.add(k)
            else:
                out.append(Accepted(new.get(k) or existing[k], True))
        return out

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except (asyncio.CancelledError, Exception):
                pass

    # worker side (sync, run in threads) -------------------------------------------------------
    def claim(self, inbox_id: int, lease: float) -> tuple[InboundMessage, int] | Waiting | None:
        """Take the row under a lease: one UPDATE .. RETURNING; None when it is finished or leased elsewhere,
        `Waiting` while an earlier row of its conversation is unfinished (at this process or another).

        The attempt is counted here, as it starts (returned: this attempt's number, from 1), so a message that
        kills the process every time still reaches the dead letters after `max_attempts` restarts."""
        now = time.time()
        t = InboxRow.__table__
        e = t.alias("earlier")
        # the statuses as literals: the partial index ix_inbox_unfinished is used only when the query names them
        earlier = select(e.c.id).where(e.c.conversation_key == t.c.conversation_key, e.c.id < t.c.id,
                                       e.c.status.in_([literal_column(f"'{s}'") for s in UNFINISHED]))
        stmt = (
            update(t)
            .where(t.c.id == inbox_id, self._free_or_mine(t, now), ~earlier.exists())
            .values(status="processing", lease_owner=self.owner, lease_until=now + lease, attempts=t.c.attempts + 1)
            .returning(t.c.payload, t.c.attempts)
        )
        with self.engine.begin() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                return self._why_not(conn, inbox_id, now)
        return InboundMessage.model_validate_json(row.payload), row.attempts

    def _free_or_mine(self, t, now: float):
        return (t.c.status == "queued") | ((t.c.status == "processing") & ((t.c.lease_until < now) | (t.c.lease_owner == self.owner)))

    def _why_not(self, conn: Connection, inbox_id: int, now: float) -> Waiting | None:
        t = InboxRow.__table__
        me = conn.execute(select(t.c.conversation_key).where(t.c.id == inbox_id, self._free_or_mine(t, now))).first()
        if me is None:
            return None  # finished, or someone else holds it
        # the nearest one: when it finishes, this row is next (the one before it waits for its own predecessor)
        prev = conn.execute(select(t.c.id, t.c.status, t.c.not_before, t.c.lease_until).where(
            t.c.conversation_key == me.conversation_key, t.c.id < inbox_id, t.c.status.in_(UNFINISHED)).order_by(t.c.id.desc()).limit(1)).first()
        if prev is None:
            return Waiting(inbox_id, True)  # the earlier one finished meanwhile: look again
        takeable = prev.not_before <= now if prev.status == "queued" else prev.lease_until < now
        return Waiting(prev.id, takeable)

    def renew(self, inbox_id: int, lease: float) -> None:
        t = InboxRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == inbox_id, t.c.lease_owner == self.owner, t.c.status == "processing")
                         .values(lease_until=time.time() + lease))

    def complete(self, inbox_id: int, msg: InboundMessage, replies: list[Reply], *, status: str = "done", error: str = "") -> list[int]:
        """Mark done (or dead) and queue the replies, atomically. Returns the outbound ids."""
        t = InboxRow.__table__
        with self.engine.begin() as conn:
            res = conn.execute(update(t).where(t.c.id == inbox_id, t.c.lease_owner == self.owner, t.c.status == "processing")
                               .values(status=status, error=error[:2000], finished_at=utcnow(), lease_until=0.0))
            if res.rowcount != 1:
                return []  # lost the lease: someone else finishes this message
            if self.signal is not None:
                self.signal(conn, "done", [(inbox_id, msg.conversation_key)])  # its conversation's next row may go now
            return queue_answers(conn, inbox_id, Target.of(msg), replies)

    def retry_later(self, inbox_id: int, error: str, delay: float) -> None:
        t = InboxRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == inbox_id, t.c.lease_owner == self.owner)
                         .values(status="queued", not_before=time.time() + delay,
                                 lease_owner="", lease_until=0.0, error=error[:2000]))

    def unfinished(self) -> list[Work]:
        """Rows to (re)schedule: queued, or processing under a lease that expired or whose owner died.

        A dead owner's rows (a process of this host that was killed) are released at once rather
        than after their lease runs out, so a restart resumes them immediately.
        """
        now = time.time()
        t = InboxRow.__table__
        with self.engine.begin() as conn:
            rows = conn.execute(select(t.c.id, t.c.conversation_key, t.c.status, t.c.lease_owner, t.c.lease_until, t.c.not_before)
                                .where(t.c.status.in_(("queued", "processing"))).order_by(t.c.id)).all()
            dead = [r.id for r in rows if r.status == "processing" and r.lease_until > now and owner_is_dead(r.lease_owner, self.owner)]
            if dead:
                conn.execute(update(t).where(t.c.id.in_(dead), t.c.status == "processing").values(status="queued", lease_owner="", lease_until=0.0))
        return [Work(r.id, r.conversation_key, r.not_before) for r in rows
                if r.status == "queued" or r.lease_until <= now or r.id in dead]

    def counts(self) -> dict[str, int]:
        t = InboxRow.__table__
        with self.engine.connect() as conn:
            return {s: n for s, n in conn.execute(select(t.c.status, func.count()).group_by(t.c.status)).all()}

    def dead_letters(self, limit: int = 20) -> list[InboxRow]:
        with Session(self.engine) as s:
            return list(s.execute(select(InboxRow).where(InboxRow.status == "dead").order_by(InboxRow.id.desc()).limit(limit)).scalars())

    def get(self, inbox_id: int) -> InboxRow | None:
        with Session(self.engine) as s:
            return s.get(InboxRow, inbox_id)
