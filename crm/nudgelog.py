"""The nudge log: every digest, nudge and alert sent, keyed on (kind, subject, period) so that each is
sent at most once, whichever instance sends it and however often the scheduler looks."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from crm.models import NudgeLog


def log_sent(engine: Engine, tenant: str, kind: str, subject: str, period: str, recipient: str, tier: int = 0, detail: str = "") -> bool:
    """Record a nudge as sent; False when it already was (another instance, or a replay)."""
    with Session(engine) as s:
        s.add(NudgeLog(tenant=tenant, kind=kind, subject=subject, period=period, recipient=recipient, tier=tier, detail=detail))
        try:
            s.commit()
            return True
        except IntegrityError:
            return False


def sent_keys(engine: Engine, tenant: str, kinds: list[str], since_period: str = "") -> set[tuple[str, str, str]]:
    with Session(engine) as s:
        q = select(NudgeLog.kind, NudgeLog.subject, NudgeLog.period).where(NudgeLog.tenant == tenant, NudgeLog.kind.in_(kinds))
        return {tuple(r) for r in s.execute(q.where(NudgeLog.period >= since_period) if since_period else q).all()}
