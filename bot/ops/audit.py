"""The audit log: every tool call, model call, write and send, with who and when.

Never prompt text or model output (those stay out unless COPILOT_DEBUG is on, and then only in
the debug log): the detail holds names, ids, counts and timings.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine

from bot.ops.tables import AuditRow, ModelUsage
from connectors.sql import insert_ignore


class Audit:
    def __init__(self, engine: Engine, tenant: str = "default") -> None:
        self.engine = engine
        self.tenant = tenant

    def __call__(self, kind: str, name: str, actor: str, detail: dict[str, Any] | None = None, tenant: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(AuditRow.__table__.insert().values(
                tenant=tenant or self.tenant, actor=actor, kind=kind, name=name,
                detail=json.dumps(detail or {}, ensure_ascii=False, default=str)))

    def usage(self, conversation_key: str, add: int) -> int:
        """Add tokens to a conversation's total and return the total."""
        t = ModelUsage.__table__
        with self.engine.begin() as conn:
            if add:
                conn.execute(insert_ignore(self.engine, t, {"conversation_key": conversation_key, "tokens": 0}))
                conn.execute(update(t).where(t.c.conversation_key == conversation_key).values(tokens=t.c.tokens + add))
            row = conn.execute(t.select().where(t.c.conversation_key == conversation_key)).first()
        return row.tokens if row else 0
