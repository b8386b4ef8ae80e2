"""Where every connector hands a message: throttled per sender, durable, then acknowledged, then processed.

The rate limit lives here, the one place every inbound message passes, so every channel is throttled
alike. A refused message is not stored: the connector answers the platform "later" (HTTP 429, no Stream
ack, the IMAP cursor not moved) and the platform's own retry brings it back, so nothing is lost.
"""
from __future__ import annotations

import time
from typing import Callable

from bot.ops.metrics import Metrics
from bot.pipeline.inbox import Inbox
from bot.pipeline.ratelimit import Limiter
from connectors.channel import Accepted, Throttled
from connectors.message import InboundMessage


class Intake:
    def __init__(self, inbox: Inbox, limiter: Limiter, metrics: Metrics, notify: Callable[[int, str], None]) -> None:
        self.inbox = inbox
        self.limiter = limiter
        self.metrics = metrics
        self.notify = notify  # the dispatcher: a new row to claim

    async def admits(self, channel: str, tenant: str, sender_id: str) -> bool:
        """Whether the sender's next message would be taken now (checked before an upload's body is read)."""
        return await self.limiter.ready(f"{channel}|{tenant}|{sender_id}")

    async def sink(self, msg: InboundMessage) -> Accepted:
        started = time.perf_counter()
        if not await self.limiter.allow(f"{msg.channel}|{msg.tenant}|{msg.sender_id}"):
            self.metrics.rejected.labels(msg.channel, "rate_limit").inc()
            raise Throttled(retry_after=self.limiter.retry_after)
        acc = await self.inbox.put(msg)
        if acc.duplicate:
            self.metrics.deduplicated.labels(msg.channel).inc()
        else:
            self.metrics.received.labels(msg.channel).inc()
            self.notify(acc.inbox_id, msg.conversation_key)
        self.metrics.ack_latency.labels(msg.channel).observe(time.perf_counter() - started)
        return acc
