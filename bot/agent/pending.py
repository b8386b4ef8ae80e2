"""Propose, then confirm: pending items that a person resolves exactly once.

A decision is a conditional update (pending -> executing): of two clicks on the same button, or a
click and a typed "1", only one wins; the loser is told it was already handled. The work itself
runs with the pending id as its idempotency key, so a crash between claim and done is safe to redo.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from bot.agent.tables import PendingRow
from connectors.message import utcnow


@dataclass(frozen=True)
class Pending:
    id: str
    tenant: str
    rep_id: str
    conversation_key: str
    kind: str
    payload: dict[str, Any]
    status: str

    def _replace_status(self, status: str) -> Pending:
        return Pending(self.id, self.tenant, self.rep_id, self.conversation_key, self.kind, self.payload, status)


def _of(row) -> Pending:
    return Pending(row.id, row.tenant, row.rep_id, row.conversation_key, row.kind, json.loads(row.payload), row.status)


class PendingStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, *, tenant: str, rep_id: str, conversation_key: str, kind: str, payload: dict, key: str | None = None) -> Pending:
        """A new pending item; the conversation's earlier undecided item of the same kind is superseded.
        `key` makes creation idempotent (a retried message proposes once)."""
        pid = key or uuid.uuid4().hex[:16]
        t = PendingRow.__table__
        with self.engine.begin() as conn:
            existing = conn.execute(select(t).where(t.c.id == pid)).first()
            if existing is not None:
                return _of(existing)
            if conversation_key:
                conn.execute(update(t).where(t.c.conversation_key == conversation_key, t.c.rep_id == rep_id, t.c.kind == kind,
                                             t.c.status == "pending").values(status="superseded", decided_at=utcnow()))
            conn.execute(t.insert().values(id=pid, tenant=tenant, rep_id=rep_id, conversation_key=conversation_key, kind=kind,
                                           payload=json.dumps(payload, ensure_ascii=False, default=str), status="pending",
                                           created_at=utcnow(), result=""))
        return Pending(pid, tenant, rep_id, conversation_key, kind, payload, "pending")

    def get(self, pid: str) -> Pending | None:
        t = PendingRow.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == pid)).first()
        return _of(row) if row else None

    def latest(self, conversation_key: str, rep_id: str) -> Pending | None:
        """The conversation's newest undecided item (what a typed "1/2/3" refers to)."""
        t = PendingRow.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.conversation_key == conversation_key, t.c.rep_id == rep_id,
                                               t.c.status == "pending").order_by(t.c.created_at.desc()).limit(1)).first()
        return _of(row) if row else None

    def claim(self, pid: str, to: str = "executing") -> bool:
        t = PendingRow.__table__
        with self.engine.begin() as conn:
            return conn.execute(update(t).where(t.c.id == pid, t.c.status == "pending").values(status=to, decided_at=utcnow())).rowcount == 1

    def finish(self, pid: str, status: str = "done", result: dict | None = None) -> None:
        t = PendingRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == pid).values(status=status, result=json.dumps(result or {}, ensure_ascii=False, default=str)))

    def reopen(self, pid: str, payload: dict | None = None) -> bool:
        """A decided item back to pending (its work failed for good: the person may decide again)."""
        t = PendingRow.__table__
        values: dict[str, Any] = {"status": "pending", "decided_at": None}
        if payload is not None:
            values["payload"] = json.dumps(payload, ensure_ascii=False, default=str)
        with self.engine.begin() as conn:
            return conn.execute(update(t).where(t.c.id == pid, t.c.status.in_(("executing", "done"))).values(**values)).rowcount == 1

    def reopen_stale(self, older_than: float) -> list[Pending]:
        """Items left `executing` longer than `older_than` seconds (the process died between claim and finish)
        return to pending, each by a conditional update (two sweepers reopen it once); the ones reopened."""
        t = PendingRow.__table__
        cutoff = utcnow() - timedelta(seconds=older_than)
        out = []
        with self.engine.begin() as conn:
            rows = conn.execute(select(t).where(t.c.status == "executing", t.c.decided_at < cutoff).limit(100)).all()
            for row in rows:
                if conn.execute(update(t).where(t.c.id == row.id, t.c.status == "executing")
                                .values(status="pending", decided_at=None)).rowcount == 1:
                    out.append(_of(row)._replace_status("pending"))
        return out

    def update_payload(self, pid: str, payload: dict) -> None:
        t = PendingRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == pid, t.c.status == "pending").values(payload=json.dumps(payload, ensure_ascii=False, default=str)))
