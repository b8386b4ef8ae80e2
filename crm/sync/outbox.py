"""The sync outbox: record a CRM write as an event (inside the write's transaction) and fan it out
to every enabled sink; claim, finish and retry deliveries for one sink.

Claims follow the reply outbox (bot/outbox.py): a row is moved to `sending` with a claim deadline
before it is delivered, so two deliverers never send it twice and a crashed one's claim lapses.
Events of one record are delivered in order: while its oldest event waits for a retry, the later
ones wait too, so an old snapshot never overwrites a newer one in the external CRM.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel

from crm.models import Account, Activity, Contact, Opportunity, Store, StoreVisit, SyncDelivery, SyncEvent, SyncSink, Task, _now

ENTITIES: dict[str, type[SQLModel]] = {"account": Account, "contact": Contact, "opportunity": Opportunity,
                                       "activity": Activity, "task": Task, "store": Store, "store_visit": StoreVisit}
ENTITY_OF = {cls: name for name, cls in ENTITIES.items()}
CLAIM_SECONDS = 120.0


def snapshot(obj: SQLModel) -> dict:
    return obj.model_dump(mode="json")


def record(s: Session, obj: SQLModel, op: str, key: str, actor: str, payload: str | None = None) -> None:
    """Add the event and one pending delivery per enabled sink to the session's transaction
    (two statements: the event, then its deliveries selected from the sinks table)."""
    e, k = SyncEvent.__table__, SyncSink.__table__.c
    event_id = s.execute(insert(e).values(
        tenant=obj.tenant, entity=ENTITY_OF[type(obj)], entity_id=obj.id, op=op, idempotency_key=key, actor=actor, created_at=_now(),
        payload=payload if payload is not None else json.dumps(snapshot(obj), ensure_ascii=False)).returning(e.c.id)).scalar_one()
    s.execute(insert(SyncDelivery.__table__).from_select(
        ["event_id", "sink", "status", "attempts", "not_before", "error"],
        select(literal(event_id), k.name, literal("pending"), literal(0), literal(0.0), literal("")).where(k.enabled == True)))  # noqa: E712


@dataclass(frozen=True)
class Claimed:
    event_id: int
    sink: str
    attempts: int
    tenant: str
    entity: str
    entity_id: str
    op: str
    idempotency_key: str
    payload: dict
    created_at: str

    @property
    def record_key(self) -> str:
        return f"{self.tenant}|{self.entity}|{self.entity_id}"


def register_sinks(engine: Engine, names: list[str]) -> None:
    """Enable these sinks (new writes fan out to them) and disable any other."""
    t = SyncSink.__table__
    with engine.begin() as conn:
        known = set(conn.execute(select(t.c.name)).scalars())
        for n in names:
            if n not in known:
                conn.execute(t.insert().values(name=n, enabled=True, created_at=_now()))
        conn.execute(update(t).values(enabled=t.c.name.in_(names) if names else False))


def backfill(engine: Engine, sink: str) -> int:
    """Queue every past event for a sink that was added later (a team connecting its CRM)."""
    e, d = SyncEvent.__table__, SyncDelivery.__table__
    with engine.begin() as conn:
        done = select(d.c.event_id).where(d.c.sink == sink)
        res = conn.execute(insert(d).from_select(["event_id", "sink", "status", "attempts", "not_before", "error"],
                           select(e.c.id, literal(sink), literal("pending"), literal(0), literal(0.0), literal(""))
                           .where(e.c.id.not_in(done))).returning(d.c.event_id))
        return len(res.all())  # rowcount of INSERT ... SELECT is -1 on psycopg


def claim(engine: Engine, sink: str, limit: int = 64, now: float | None = None) -> list[Claimed]:
    now = time.time() if now is None else now
    e, d = SyncEvent.__table__, SyncDelivery.__table__
    with engine.begin() as conn:
        rows = conn.execute(select(d.c.event_id, d.c.attempts, d.c.not_before, e).join(e, e.c.id == d.c.event_id)
                            .where(d.c.sink == sink, d.c.status.in_(("pending", "sending")))
                            .order_by(d.c.event_id).limit(limit * 4)).all()
        blocked: set[str] = set()
        picked = []
        for r in rows:
            key = f"{r.tenant}|{r.entity}|{r.entity_id}"
            if key in blocked:
                continue
            blocked.add(key)  # one event per record per batch: in order, never two at once
            if r.not_before <= now:
                picked.append(r)
            if len(picked) >= limit:
                break
        if not picked:
            return []
        ok = set(conn.execute(update(d).where(d.c.sink == sink, d.c.event_id.in_([r.event_id for r in picked]),
                                              d.c.status.in_(("pending", "sending")), d.c.not_before <= now)
                              .values(status="sending", not_before=now + CLAIM_SECONDS).returning(d.c.event_id)).scalars())
    return [Claimed(r.event_id, sink, r.attempts, r.tenant, r.entity, r.entity_id, r.op, r.idempotency_key,
                    json.loads(r.payload), r.created_at.isoformat() if r.created_at else "") for r in picked if r.event_id in ok]


def delivered(conn_or_engine: Engine | Connection, sink: str, event_ids: list[int]) -> None:
    if not event_ids:
        return
    d = SyncDelivery.__table__
    stmt = update(d).where(d.c.sink == sink, d.c.event_id.in_(event_ids)).values(
        status="delivered", attempts=d.c.attempts + 1, error="", not_before=0.0, delivered_at=_now())
    if isinstance(conn_or_engine, Connection):
        conn_or_engine.execute(stmt)
        return
    with conn_or_engine.begin() as conn:
        conn.execute(stmt)


def failed(engine: Engine, sink: str, event_id: int, *, attempts: int, dead: bool, retry_at: float, error: str) -> None:
    d = SyncDelivery.__table__
    with engine.begin() as conn:
        conn.execute(update(d).where(d.c.sink == sink, d.c.event_id == event_id).values(
            status="dead" if dead else "pending", attempts=attempts, not_before=retry_at, error=error[:2000]))


def retry_dead(engine: Engine, sink: str | None = None) -> int:
    d = SyncDelivery.__table__
    q = update(d).where(d.c.status == "dead")
    if sink:
        q = q.where(d.c.sink == sink)
    with engine.begin() as conn:
        return conn.execute(q.values(status="pending", attempts=0, not_before=0.0)).rowcount or 0


def counts(engine: Engine) -> dict[str, dict[str, int]]:
    d = SyncDelivery.__table__
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for sink, status, n in conn.execute(select(d.c.sink, d.c.status, func.count()).group_by(d.c.sink, d.c.status)):
            out.setdefault(sink, {})[status] = n
    return out


def dead_letters(engine: Engine, limit: int = 20) -> list[dict]:
    d, e = SyncDelivery.__table__, SyncEvent.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(d.c.sink, d.c.event_id, d.c.attempts, d.c.error, e.c.entity, e.c.entity_id, e.c.op)
                            .join(e, e.c.id == d.c.event_id).where(d.c.status == "dead").order_by(d.c.event_id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]
