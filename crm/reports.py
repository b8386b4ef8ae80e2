"""Manager views as plain data: pipeline by stage, health scores and streaks, alerts sent, copilot
usage. `copilot report team` prints them; a web console can draw the same dicts later.
"""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm.models import STAGES, CrmWrite, HealthDay, NudgeLog, Opportunity, Rep


def team_reps(engine: Engine, tenant: str, team: str | None = None) -> list[Rep]:
    with Session(engine) as s:
        q = select(Rep).where(Rep.tenant == tenant, Rep.active == True)  # noqa: E712
        return list(s.execute((q.where(Rep.team == team) if team else q).order_by(Rep.id)).scalars())


def pipeline_by_stage(engine: Engine, tenant: str, rep_ids: list[str] | None = None) -> list[dict]:
    o = Opportunity.__table__.c
    q = select(o.stage, o.currency, func.count(), func.sum(o.amount)).where(o.tenant == tenant)
    if rep_ids is not None:
        q = q.where(o.owner_id.in_(rep_ids))
    with engine.connect() as conn:
        rows = conn.execute(q.group_by(o.stage, o.currency)).all()
    out = {st: {"stage": st, "count": 0, "amount": {}} for st in STAGES}
    for stage, cur, n, total in rows:
        row = out.setdefault(stage, {"stage": stage, "count": 0, "amount": {}})
        row["count"] += n
        row["amount"][cur] = round(float(total or 0), 2)
    return list(out.values())


def health_table(engine: Engine, tenant: str, reps: list[Rep], day: date | None = None) -> list[dict]:
    """Each rep's latest health score on or before `day`, with the streak it is on."""
    h = HealthDay.__table__.c
    out = []
    with engine.connect() as conn:
        for r in reps:
            q = select(h).where(h.tenant == tenant, h.rep_id == r.id)
            row = conn.execute((q.where(h.day <= day) if day else q).order_by(h.day.desc()).limit(1)).first()
            if row is None:
                continue
            out.append({"rep_id": r.id, "name": r.name, "team": r.team, "day": str(row.day), "score": row.score,
                        "below": bool(row.below), "streak": row.streak, "streak_start": str(row.streak_start or ""),
                        "metrics": json.loads(row.metrics or "{}")})
    return out


def alerts_sent(engine: Engine, tenant: str, rep_ids: list[str], since: datetime) -> list[dict]:
    n = NudgeLog.__table__.c
    with engine.connect() as conn:
        rows = conn.execute(select(n).where(n.tenant == tenant, n.kind.like("health_%"), n.subject.in_(rep_ids), n.created_at >= since)
                            .order_by(n.created_at.desc())).all()
    return [{"at": _iso(r.created_at), "kind": r.kind, "rep_id": r.subject, "recipient": r.recipient, "tier": r.tier,
             "streak_start": r.period.split("/")[0]} for r in rows]


def copilot_usage(engine: Engine, tenant: str, reps: list[Rep], since: datetime, messages: dict[str, int] | None = None) -> list[dict]:
    """Per rep: messages to the copilot (counted by the bot), CRM writes made through it, nudges received."""
    w, n = CrmWrite.__table__.c, NudgeLog.__table__.c
    ids = [r.id for r in reps]
    with engine.connect() as conn:
        writes = dict(conn.execute(select(w.actor, func.count()).where(
            w.tenant == tenant, w.actor.in_(ids), w.at >= since, w.source != "", ~w.source.like("import:%")).group_by(w.actor)).all())
        nudges = dict(conn.execute(select(n.recipient, func.count()).where(
            n.tenant == tenant, n.recipient.in_(ids), n.created_at >= since).group_by(n.recipient)).all())
    msgs = messages or {}
    return [{"rep_id": r.id, "name": r.name, "messages": msgs.get(r.id, 0), "crm_writes": writes.get(r.id, 0),
             "nudges_received": nudges.get(r.id, 0)} for r in reps]


def team_report(engine: Engine, tenant: str, today: date, tz: str, *, team: str | None = None, days: int = 7,
                messages: dict[str, int] | None = None) -> dict:
    """Everything a manager's view shows, for one team (or everyone) over the last `days` days."""
    reps = team_reps(engine, tenant, team)
    sellers = [r for r in reps if r.role == "rep"]
    since = datetime.combine(today - timedelta(days=days - 1), time(), ZoneInfo(tz))
    return {"tenant": tenant, "team": team or "", "day": str(today), "days": days,
            "pipeline": pipeline_by_stage(engine, tenant, [r.id for r in reps] if team else None),
            "health": health_table(engine, tenant, sellers, today),
            "alerts": alerts_sent(engine, tenant, [r.id for r in reps], since),
            "usage": copilot_usage(engine, tenant, sellers, since, messages)}


def _iso(v: datetime | str) -> str:
    return v if isinstance(v, str) else v.isoformat(timespec="seconds")
