"""Sync to external CRMs: every CRM write is an event in the sync outbox (crm.sync.outbox), delivered at
least once to each configured sink (a signed webhook, HubSpot; Salesforce, 纷享销客 or 销售易 later).

A sink is a small adapter: a name, `deliver(event, lookup)` and `aclose()`. It raises `SyncError`
to have the event retried with backoff (or dead-lettered when `retryable=False` or out of
attempts). `lookup` returns the current record for a reference the external CRM has not seen yet
(a contact's company), and `IdMap` remembers external ids so a re-delivery updates, not duplicates.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Awaitable, Callable, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm.models import ExternalId
from crm.sync import outbox
from crm.sync.outbox import ENTITIES, Claimed, snapshot

log = logging.getLogger("copilot.crm.sync")
Lookup = Callable[[str, str, str], Awaitable[dict | None]]  # (tenant, entity, id) -> the record as it is now


class SyncError(Exception):
    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status: int | None = None  # the HTTP status, for adapters that act on it
        self.method = ""


class SyncConnector(Protocol):
    name: str

    async def deliver(self, event: Claimed, lookup: Lookup) -> None: ...

    async def aclose(self) -> None: ...


class IdMap:
    """(sink, tenant, entity, local id) -> external id, in the database beside the data."""

    def __init__(self, engine: Engine, sink: str) -> None:
        self.engine, self.sink = engine, sink

    def get(self, tenant: str, entity: str, local_id: str) -> str | None:
        with Session(self.engine) as s:
            row = s.get(ExternalId, (self.sink, tenant, entity, local_id))
            return row.external_id if row else None

    def put(self, tenant: str, entity: str, local_id: str, external_id: str) -> None:
        with Session(self.engine) as s:
            row = s.get(ExternalId, (self.sink, tenant, entity, local_id))
            if row is None:
                row = ExternalId(sink=self.sink, tenant=tenant, entity=entity, local_id=local_id, external_id=external_id)
            row.external_id = external_id
            s.add(row)
            s.commit()


class Deliverer:
    """Delivers the sync outbox to its sinks: claim a batch, deliver in parallel (one event per
    record at a time), mark delivered, or back off exponentially (with jitter) and dead-letter."""

    def __init__(self, engine: Engine, sinks: list[SyncConnector], *, max_attempts: int = 8, retry_base: float = 2.0,
                 retry_cap: float = 900.0, batch: int = 32, concurrency: int = 4) -> None:
        self.engine, self.sinks = engine, sinks
        self.max_attempts, self.retry_base, self.retry_cap = max_attempts, retry_base, retry_cap
        self.batch = batch
        self._sem = asyncio.Semaphore(concurrency)
        outbox.register_sinks(engine, [s.name for s in sinks])

    async def lookup(self, tenant: str, entity: str, rid: str) -> dict | None:
        def load() -> dict | None:
            with Session(self.engine) as s:
                obj = s.get(ENTITIES[entity], (tenant, rid))
                return snapshot(obj) if obj else None

        return await asyncio.to_thread(load)

    async def run_once(self) -> dict[str, dict[str, int]]:
        """Deliver everything due now; returns what happened per sink."""
        out = {}
        for sink in self.sinks:
            tally = {"delivered": 0, "retry": 0, "dead": 0}
            while batch := await asyncio.to_thread(outbox.claim, self.engine, sink.name, self.batch):
                results = await asyncio.gather(*(self._deliver(sink, ev) for ev in batch))
                ok = [ev.event_id for ev, r in zip(batch, results) if r == "delivered"]
                await asyncio.to_thread(outbox.delivered, self.engine, sink.name, ok)
                for r in results:
                    tally[r] += 1
            out[sink.name] = tally
        return out

    async def run(self, idle: float = 2.0) -> None:
        while True:
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("crm sync pass failed")
                done = {}
            if not any(t["delivered"] or t["retry"] or t["dead"] for t in done.values()):
                await asyncio.sleep(idle)

    async def _deliver(self, sink: SyncConnector, ev: Claimed) -> str:
        try:
            async with self._sem:
                await sink.deliver(ev, self.lookup)
            return "delivered"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            retryable = exc.retryable if isinstance(exc, SyncError) else True
            attempts = ev.attempts + 1
            dead = not retryable or attempts >= self.max_attempts
            delay = getattr(exc, "retry_after", None) or min(self.retry_cap, self.retry_base * 2 ** ev.attempts) * random.uniform(0.8, 1.2)
            log.warning("sync %s #%d (%s %s) failed, attempt %d%s: %s", sink.name, ev.event_id, ev.entity, ev.entity_id,
                        attempts, ", dead letter" if dead else "", exc)
            await asyncio.to_thread(outbox.failed, self.engine, sink.name, ev.event_id, attempts=attempts, dead=dead,
                                    retry_at=time.time() + delay, error=f"{type(exc).__name__}: {exc}")
            return "dead" if dead else "retry"

    async def aclose(self) -> None:
        for s in self.sinks:
            await s.aclose()
