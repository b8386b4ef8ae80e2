"""Reply delivery: outbound rows are sent through their channel's connector, in order per conversation.

A row is claimed (pending -> sending) before the connector is called, so two instances never
send it twice, and a conversation whose oldest row is being sent (anywhere) or waits for a retry holds its later
rows back, so its replies go out in order across processes too; a send that crashed mid-way is retried after its claim times out, with the row's
dedupe key passed to the connector for platforms that can deduplicate. Failures back off
exponentially and end in the dead-letter state, visible in `copilot doctor` and /metrics.
Rows survive restarts: queued sends are never lost.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Awaitable, Callable

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine

from bot.ops import deadline
from bot.ops.metrics import Metrics
from bot.pipeline.channels import Channels
from bot.pipeline.tables import OutboundRow
from connectors.channel import SendError
from connectors.message import Reply, Target, conversation_key, utcnow
from connectors.sql import insert_ignore

log = logging.getLogger("copilot.outbox")
CLAIM_SECONDS = 120.0
PASS_RETRY = 1.0  # seconds before the outbox tries again after a pass failed (the database away)


class Outbox:
    def __init__(self, engine: Engine, channels: Channels, metrics: Metrics, *, max_attempts: int = 6,
                 retry_base: float = 2.0, concurrency: int = 8, yield_to=None, only: set[str] | None = None,
                 on_sent: Callable[[Target, Reply, str], Awaitable[None]] | None = None,
                 on_dead: Callable[[Target, Reply, str, str], Awaitable[None]] | None = None) -> None:
        """`on_sent(target, reply, dedupe_key)`: after the platform accepted a row (before it is marked sent, so a
        crash repeats it: it must be idempotent); `on_dead(target, reply, dedupe_key, error)`: a row failed for good."""
        self.on_sent = on_sent
        self.on_dead = on_dead
        self.engine = engine
        self.channels = channels
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._loop_ref: asyncio.AbstractEventLoop | None = None
        self._sem = asyncio.Semaphore(concurrency)
        self._yield_to = yield_to  # an awaitable factory: acknowledging inbound messages comes first
        self.only = only  # deliver only these conversations (`copilot chat` beside a server)
        self._busy = False  # a batch is being claimed or sent

    def enqueue(self, target: Target, reply: Reply, dedupe_key: str, conversation_key: str | None = None) -> int | None:
        """Queue a reply that is not the answer to an inbox row (nudges, notifications). Idempotent on the key."""
        deadline.check()  # not for an attempt that was given up
        with self.engine.begin() as conn:
            res = conn.execute(insert_ignore(self.engine, OutboundRow.__table__, reply_row(
                target, reply, dedupe_key, conversation_key=conversation_key)).returning(OutboundRow.__table__.c.id))
            row = res.first()
        self.wake()
        return row[0] if row else None

    def wake(self, *_ids) -> None:
        """Safe from any thread (jobs run in worker threads): the event is set on the loop's thread."""
        loop = self._loop_ref
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop_ref = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._loop(), name="outbox")

    async def drain(self, timeout: float) -> bool:
        """Deliver what is due now, for at most `timeout` s; True when nothing due is left. Retries that wait
        for later stay queued (rows survive restarts). Then call aclose."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self._task is not None and not self._task.done():
            self._wake.set()
            if not self._busy and not await asyncio.to_thread(self._due_now):
                return True
            if loop.time() >= end:
                return False
            await asyncio.sleep(0.05)
        return True

    def _due_now(self) -> int:
        t = OutboundRow.__table__
        q = select(func.count()).where(t.c.status == "pending", t.c.not_before <= time.time())
        if self.only is not None:
            q = q.where(t.c.conversation_key.in_(self.only))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    async def aclose(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away mid-pass (a restart): rows it did not mark are claimed again later
                log.exception("outbox pass failed; trying again in %.0f s", PASS_RETRY)
                self._busy = False
                await asyncio.sleep(PASS_RETRY)

    async def _pass(self) -> None:
        """Send what is due, or wait until something is (or `wake`)."""
        if self._yield_to is not None:
            await self._yield_to()
        self._busy = True
        try:
            batch = await asyncio.to_thread(self._claim_batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox claim failed")
            batch = []
        if batch:
            # in order within a conversation, conversations in parallel
            by_conv: dict[str, list[OutboundRow]] = {}
            for row in batch:
                by_conv.setdefault(row.conversation_key, []).append(row)
            sent = await asyncio.gather(*(self._send_conv(rows) for rows in by_conv.values()))
            await asyncio.to_thread(self._mark_sent, [i for ids in sent for i in ids])
            return
        self._busy = False
        self._wake.clear()
        timeout = await asyncio.to_thread(self._next_due)
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        except asyncio.TimeoutError:
            pass

    def _next_due(self) -> float:
        t = OutboundRow.__table__
        with self.engine.connect() as conn:
            nb = conn.execute(select(func.min(t.c.not_before)).where(t.c.status.in_(("pending", "sending")))).scalar()
        return 5.0 if nb is None else min(5.0, max(0.05, nb - time.time()))

    def _claim_batch(self, limit: int = 64) -> list[OutboundRow]:
        now = time.time()
        t = OutboundRow.__table__
        with self.engine.begin() as conn:
            q = select(t).where(t.c.status.in_(("pending", "sending")))
            if self.only is not None:
                q = q.where(t.c.conversation_key.in_(self.only))
            rows = conn.execute(q.order_by(t.c.id).limit(limit * 4)).all()
            # a conversation whose oldest row waits for a retry (or is being sent) holds the later rows back
            blocked: set[str] = set()
            picked = []
            for r in rows:
                if r.conversation_key in blocked:
                    continue
                if r.not_before > now:
                    blocked.add(r.conversation_key)
                    continue
                picked.append(r)
                if len(picked) >= limit:
                    break
            if not picked:
                return []
            claimed = set(conn.execute(
                update(t).where(t.c.id.in_([r.id for r in picked]), t.c.not_before <= now, t.c.status.in_(("pending", "sending")))
                .values(status="sending", not_before=now + CLAIM_SECONDS).returning(t.c.id)
            ).scalars().all())
            # another process took a row first: this one keeps only what precedes it in each conversation (the rest
            # goes back), so two processes never send one conversation's rows side by side
            lost: set[str] = set()
            ok, back = [], []
            for r in picked:
                if r.id not in claimed:
                    lost.add(r.conversation_key)
                elif r.conversation_key in lost:
                    back.append(r.id)
                else:
                    ok.append(r)
            if back:
                conn.execute(update(t).where(t.c.id.in_(back)).values(status="pending", not_before=0.0))
        return [OutboundRow.model_validate(r._mapping) for r in ok]

    async def _send_conv(self, rows: list[OutboundRow]) -> list[int]:
        """Send one conversation's rows in order; returns the ids sent. A failure holds back the rest."""
        sent = []
        for i, row in enumerate(rows):
            ok = await self._send(row)
            if ok is None:
                continue  # dead: no longer holds its conversation back
            if not ok:
                await asyncio.to_thread(self._release, [r.id for r in rows[i + 1 :]])
                break
            sent.append(row.id)
        return sent

    async def _send(self, row: OutboundRow) -> bool | None:
        target = Target.model_validate_json(row.target)
        reply = Reply.model_validate_json(row.reply)
        try:
            if row.channel not in self.channels:
                raise SendError(f"no connector for channel {row.channel!r} is configured", retryable=False)
            async with self._sem:
                await self.channels.send(target, reply, row.dedupe_key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            retryable = exc.retryable if isinstance(exc, SendError) else True
            deferred = isinstance(exc, SendError) and exc.defer
            attempts = row.attempts + (0 if deferred else 1)
            dead = not retryable or attempts >= self.max_attempts
            delay = getattr(exc, "retry_after", None) or self.retry_base * (2 ** row.attempts)
            if not deferred:
                self.metrics.send_failed.labels(row.channel).inc()
                log.warning("send %s to %s failed (attempt %d%s): %s", row.id, row.channel, attempts, ", dead" if dead else "", exc)
            await asyncio.to_thread(self._mark_failed, row.id, "dead" if dead else "pending", attempts, time.time() + delay, str(exc))
            if dead and self.on_dead is not None:
                await self._hook(self.on_dead, target, reply, row.dedupe_key, str(exc))
            return None if dead else False
        self.metrics.sent.labels(row.channel).inc()
        if self.on_sent is not None:
            await self._hook(self.on_sent, target, reply, row.dedupe_key)
        return True

    @staticmethod
    async def _hook(fn, *args) -> None:
        try:
            await fn(*args)
        except Exception:  # a failing follow-up never undoes or repeats the delivery itself
            log.exception("delivery follow-up failed for %s", args[2])

    def _mark_failed(self, row_id: int, status: str, attempts: int, not_before: float, error: str) -> None:
        t = OutboundRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == row_id).values(status=status, attempts=attempts, not_before=not_before, error=error[:2000]))

    def _mark_sent(self, ids: list[int]) -> None:
        if not ids:
            return
        t = OutboundRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id.in_(ids)).values(status="sent", attempts=t.c.attempts + 1, not_before=0.0, error="", sent_at=utcnow()))

    def _release(self, ids: list[int]) -> None:
        if not ids:
            return
        t = OutboundRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id.in_(ids), t.c.status == "sending").values(status="pending", not_before=0.0))

    def counts(self) -> dict[str, int]:
        t = OutboundRow.__table__
        with self.engine.connect() as conn:
            return {s: n for s, n in conn.execute(select(t.c.status, func.count()).group_by(t.c.status)).all()}


def reply_row(target: Target, reply: Reply, dedupe_key: str, *, inbox_id: int | None = None,
              conversation_key: str | None = None) -> dict:
    """The one shape of an outbound row: what the outbox sends, in order per conversation."""
    return dict(dedupe_key=dedupe_key, inbox_id=inbox_id, channel=target.channel, tenant=target.tenant,
                conversation_key=conversation_key or target.conversation_key, target=target.model_dump_json(),
                reply=reply.model_dump_json(), status="pending", attempts=0, not_before=0.0, error="", created_at=utcnow())


def queue_answers(conn: Connection, inbox_id: int, target: Target, replies: list[Reply]) -> list[int]:
    """Queue the answers to one inbox row inside the caller's transaction (the one that marks the row done)."""
    o = OutboundRow.__table__
    return [conn.execute(o.insert().values(reply_row(target, reply, f"in:{inbox_id}:{seq}", inbox_id=inbox_id)).returning(o.c.id)).scalar_one()
            for seq, reply in enumerate(replies)]


def reply_history(engine: Engine, channel: str):
    """`history(tenant, conversation id, after row id)`: the replies delivered to one conversation of
    `channel`, oldest first (what the web chat shows)."""
    t = OutboundRow.__table__

    def load(tenant: str, conversation: str, after: int) -> list[dict]:
        key = conversation_key(channel, tenant, conversation)
        with engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.reply, t.c.inbox_id).where(
                t.c.conversation_key == key, t.c.status == "sent", t.c.id > after).order_by(t.c.id).limit(100)).all()
        return [{"id": r.id, "inbox_id": r.inbox_id, "reply": json.loads(r.reply)} for r in rows]

    async def history(tenant: str, conversation: str, after: int) -> list[dict]:
        return await asyncio.to_thread(load, tenant, conversation, after)

    return history
