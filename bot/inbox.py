"""The durable inbox: every inbound message is written here before it is acknowledged.

Keyed on (channel, tenant, platform msg id): a duplicate delivery is acknowledged and dropped.
Concurrent `put`s are group-committed (one transaction for all that arrived meanwhile), so the
ack path costs one fsync-free WAL commit shared by many requests. Workers claim a row with a
lease; a crashed worker's lease is taken over at the next start (same host, dead pid) or when it
expires. Replies are written in the same transaction that marks a row done: answered exactly once.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.connector import Accepted
from bot.models import InboundMessage, Reply, Target, utcnow
from bot.storage import upsert_ignore
from bot.tables import InboxRow, OutboundRow

OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when the lease owner was a process on this host that no longer runs (or an earlier us)."""
    host, _, rest = owner.partition(":")
    pid_s, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    if owner == OWNER:
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


class Inbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: list[tuple[InboundMessage, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None

    # ack path ----------------------------------------------------------------------------------
    async def put(self, msg: InboundMessage) -> Accepted:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="inbox-writer")
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((msg, fut))
        self._wake.set()
        return await fut

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._insert, [m for m, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), res in zip(batch, results):
                if not fut.done():
                    fut.set_result(res)

    def _insert(self, msgs: list[InboundMessage]) -> list[Accepted]:
        out: list[Accepted] = []
        table = InboxRow.__table__
        with self.engine.begin() as conn:
            for m in msgs:
                values = dict(channel=m.channel, tenant=m.tenant, platform_msg_id=m.platform_msg_id,
                              conversation_key=m.conversation_key, payload=m.model_dump_json(), status="queued",
                              attempts=0, not_before=0.0, lease_owner="", lease_until=0.0, error="", created_at=utcnow())
                res = conn.execute(upsert_ignore(self.engine, table, values).returning(table.c.id))
                row = res.first()
                if row is not None:
                    out.append(Accepted(row[0], False))
                else:
                    existing = conn.execute(select(table.c.id).where(
                        table.c.channel == m.channel, table.c.tenant == m.tenant, table.c.platform_msg_id == m.platform_msg_id)).scalar_one()
                    out.append(Accepted(existing, True))
        return out

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    # worker side (sync, run in threads) -------------------------------------------------------
    def claim(self, inbox_id: int, lease: float) -> tuple[InboundMessage, int] | None:
        now = time.time()
        t = InboxRow.__table__
        with self.engine.begin() as conn:
            row = conn.execute(select(t.c.status, t.c.lease_owner, t.c.lease_until, t.c.payload, t.c.attempts).where(t.c.id == inbox_id)).first()
            if row is None or row.status in ("done", "dead"):
                return None
            if row.status == "processing" and row.lease_until > now and row.lease_owner != OWNER and not owner_is_dead(row.lease_owner):
                return None
            res = conn.execute(
                update(t).where(t.c.id == inbox_id, t.c.status == row.status, t.c.lease_owner == row.lease_owner)
                .values(status="processing", lease_owner=OWNER, lease_until=now + lease)
            )
            if res.rowcount != 1:
                return None
        return InboundMessage.model_validate_json(row.payload), row.attempts

    def renew(self, inbox_id: int, lease: float) -> None:
        t = InboxRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == inbox_id, t.c.lease_owner == OWNER, t.c.status == "processing")
                         .values(lease_until=time.time() + lease))

    def complete(self, inbox_id: int, msg: InboundMessage, replies: list[Reply], *, status: str = "done", error: str = "") -> list[int]:
        """Mark done (or dead) and queue the replies, atomically. Returns the outbound ids."""
        t = InboxRow.__table__
        o = OutboundRow.__table__
        target = Target.of(msg).model_dump_json()
        ids = []
        with self.engine.begin() as conn:
            res = conn.execute(update(t).where(t.c.id == inbox_id, t.c.lease_owner == OWNER, t.c.status == "processing")
                               .values(status=status, error=error[:2000], finished_at=utcnow(), lease_until=0.0))
            if res.rowcount != 1:
                return []  # lost the lease: someone else finishes this message
            for seq, reply in enumerate(replies):
                r = conn.execute(o.insert().values(
                    dedupe_key=f"in:{inbox_id}:{seq}", inbox_id=inbox_id, channel=msg.channel, tenant=msg.tenant,
                    conversation_key=msg.conversation_key, target=target, reply=reply.model_dump_json(), status="pending",
                    attempts=0, not_before=0.0, error="", created_at=utcnow()).returning(o.c.id))
                ids.append(r.scalar_one())
        return ids

    def retry_later(self, inbox_id: int, error: str, delay: float) -> None:
        t = InboxRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == inbox_id, t.c.lease_owner == OWNER)
                         .values(status="queued", attempts=t.c.attempts + 1, not_before=time.time() + delay,
                                 lease_owner="", lease_until=0.0, error=error[:2000]))

    def unfinished(self) -> list[Work]:
        """Rows to (re)schedule: queued, or processing under a lease that is ours, expired or dead."""
        now = time.time()
        t = InboxRow.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.conversation_key, t.c.status, t.c.lease_owner, t.c.lease_until, t.c.not_before)
                                .where(t.c.status.in_(("queued", "processing"))).order_by(t.c.id)).all()
        return [Work(r.id, r.conversation_key, r.not_before) for r in rows
                if r.status == "queued" or r.lease_until <= now or owner_is_dead(r.lease_owner)]

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


def dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
