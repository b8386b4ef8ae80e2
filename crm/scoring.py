"""Explainable deal and lead scores, and a report that checks them against won/lost outcomes.

A score is the stage's base plus weighted signals, each in [-1, 1]: recency and frequency of
contact, stage age against the typical age for the stage, engagement (how many people, and
whether anyone met), amount against the tenant's median, a missing next step, a passed close date
and overdue tasks. The signals that moved the score most become the reasons the rep sees: each a
message key and its parameters (score_recency_quiet, days=12), worded by bot/ from the message
catalogue ("no contact for 12 days", "12 天未联系"). Weights come from [scoring] in copilot.toml.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.engine import Engine

from crm.models import OPEN_STAGES, Activity, Opportunity, StageChange, Task


@dataclass
class ScoringConfig:
    stage_base: dict[str, float] = field(default_factory=lambda: {"lead": 15, "qualified": 30, "proposal": 45, "negotiation": 60})
    typical_stage_days: dict[str, float] = field(default_factory=lambda: {"lead": 14, "qualified": 21, "proposal": 21, "negotiation": 30})
    weights: dict[str, float] = field(default_factory=lambda: {
        "recency": 14, "frequency": 8, "stage_age": 12, "engagement": 8, "amount": 4, "next_step": 8, "close_date": 8, "overdue_tasks": 6})
    quiet_days: int = 7  # no contact for this long is neutral; four times as long is the full penalty

    @classmethod
    def from_dict(cls, d: dict | None) -> "ScoringConfig":
        cfg = cls()
        for k, v in (d or {}).items():
            cur = getattr(cfg, k, None)
            if isinstance(cur, dict) and isinstance(v, dict):
                cur.update({kk: float(vv) for kk, vv in v.items()})
            elif cur is not None:
                setattr(cfg, k, type(cur)(v))
        return cfg


@dataclass(frozen=True, eq=False)
class Reason:
    code: str  # the signal (recency, frequency, ...; won / lost for closed deals)
    key: str  # the message that words it (prompts/messages.*.toml; a key + "_one" for a count `n` of 1)
    params: dict[str, float | int]  # what the message fills in
    impact: float  # points this signal added (+) or took away (-)


@dataclass(frozen=True)
class Score:
    opportunity_id: str
    value: int
    reasons: list[Reason]  # the top reasons, worst first
    details: list[Reason] = field(default_factory=list)  # every signal, with its impact


@dataclass
class Facts:
    last_contact: datetime | None = None
    touches_30d: int = 0
    contacts_60d: int = 0
    met_60d: bool = False
    overdue_tasks: int = 0


def day_end(day: date, tz: str) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), ZoneInfo(tz)).astimezone(timezone.utc)


def load_facts(engine: Engine, tenant: str, as_of: datetime, opps: Sequence[Opportunity]) -> dict[str, Facts]:
    """Contact signals per opportunity: its own activities plus those logged on its account alone."""
    if not opps:
        return {}
    a, t = Activity.__table__.c, Task.__table__.c
    t30, t60 = as_of - timedelta(days=30), as_of - timedelta(days=60)
    ids = [o.id for o in opps] if len(opps) <= 500 else None  # beyond that, one pass over the tenant is cheaper
    aggs = (func.max(a.occurred_at), func.sum(case((a.occurred_at >= t30, 1), else_=0)),
            func.count(func.distinct(case((and_(a.occurred_at >= t60, a.contact_id != ""), a.contact_id)))),
            func.max(case((and_(a.occurred_at >= t60, a.kind.in_(("meeting", "visit"))), 1), else_=0)))
    base = and_(a.tenant == tenant, a.occurred_at <= as_of)
    facts: dict[str, Facts] = {o.id: Facts() for o in opps}
    with engine.connect() as conn:
        q = select(a.opportunity_id, *aggs).where(base, a.opportunity_id != "")
        by_opp = {r[0]: r for r in conn.execute((q.where(a.opportunity_id.in_(ids)) if ids else q).group_by(a.opportunity_id))}
        q = select(a.account_id, *aggs).where(base, a.opportunity_id == "")
        acc_ids = list({o.account_id for o in opps})
        by_acc = {r[0]: r for r in conn.execute((q.where(a.account_id.in_(acc_ids)) if ids else q).group_by(a.account_id))}
        q = select(t.opportunity_id, func.count()).where(t.tenant == tenant, t.due_at < as_of, t.opportunity_id != "",
                                                         or_(t.done == False, t.done_at > as_of))  # noqa: E712
        overdue = dict(conn.execute((q.where(t.opportunity_id.in_(ids)) if ids else q).group_by(t.opportunity_id)).all())
    for o in opps:
        f = facts[o.id]
        for r in (by_opp.get(o.id), by_acc.get(o.account_id)):
            if r is None:
                continue
            last = as_utc(r[1])
            f.last_contact = max(f.last_contact, last) if f.last_contact and last else (last or f.last_contact)
            f.touches_30d += int(r[2] or 0)
            f.contacts_60d += int(r[3] or 0)
            f.met_60d = f.met_60d or bool(r[4])
        f.overdue_tasks = int(overdue.get(o.id, 0))
    return facts


def as_utc(v: datetime | str | None) -> datetime | None:
    """Aggregates and Core selects bypass the column type on SQLite: naive text or datetimes, in UTC."""
    if v is None:
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v


def _clamp(x: float) -> float:
    return max(-1.0, min(1.0, x))


def _ramp(ratio: float) -> float:
    """+1 at 0, 0 at the norm (ratio 1), then down slowly to -1 at four times the norm: twice the
    norm is bad, but not yet as bad as it gets, so quiet deals stay apart from dead ones."""
    return 1 - ratio if ratio <= 1 else _clamp(-(ratio - 1) / 3)


def score(o: Opportunity, f: Facts, cfg: ScoringConfig, today: date, tz: str, median_amount: float) -> Score:
    """`o` is an Opportunity or anything with its fields (a Core row: bulk scoring skips the ORM)."""
    if o.stage not in OPEN_STAGES:
        won = o.stage == "won"
        closed = Reason(o.stage, f"score_{'won' if won else 'lost'}", {}, 0.0)
        return Score(o.id, 100 if won else 0, [closed], [closed])
    local = ZoneInfo(tz)
    sig: list[tuple[str, float, str, dict]] = []  # (signal, strength in [-1, 1], message key, its parameters)
    if f.last_contact is None:
        sig.append(("recency", -1.0, "score_recency_none", {}))
    else:
        d = (today - f.last_contact.astimezone(local).date()).days
        key = "score_recency_quiet" if d > cfg.quiet_days // 2 else "score_recency_today" if d == 0 else "score_recency_ago"
        sig.append(("recency", _ramp(d / cfg.quiet_days), key, {"n": d}))
    n = f.touches_30d
    sig.append(("frequency", _clamp(n / 2 - 1), "score_frequency", {"n": n}))
    typical = cfg.typical_stage_days.get(o.stage, 21) or 21
    ratio = max((today - o.stage_changed_at.astimezone(local).date()).days, 0) / typical
    sig.append(("stage_age", _ramp(ratio), "score_stage_age", {"ratio": ratio}))
    people = min(f.contacts_60d, 3) + (1 if f.met_60d else 0)
    sig.append(("engagement", _clamp(people / 2 - 1), "score_engagement_met" if f.met_60d else "score_engagement_no_meeting",
                {"n": f.contacts_60d}))
    if median_amount > 0 and o.amount > 0:
        r = o.amount / median_amount
        sig.append(("amount", _clamp(math.log2(r) / 2), "score_amount", {"ratio": r}))
    sig.append(("next_step", 1.0, "score_next_step_set", {}) if o.next_step.strip() else ("next_step", -1.0, "score_next_step_none", {}))
    if o.close_date is None:
        sig.append(("close_date", -0.5, "score_close_date_none", {}))
    elif o.close_date < today:
        sig.append(("close_date", -1.0, "score_close_date_passed", {"days": (today - o.close_date).days}))
    if f.overdue_tasks:
        sig.append(("overdue_tasks", -min(f.overdue_tasks / 2, 1.0), "score_overdue_tasks", {"n": f.overdue_tasks}))
    details = [Reason(code, key, params, round(cfg.weights.get(code, 0.0) * s, 1)) for code, s, key, params in sig]
    value = cfg.stage_base.get(o.stage, 30) + sum(r.impact for r in details)
    ranked = sorted(details, key=lambda r: r.impact)
    top = [r for r in ranked if r.impact <= -1][:3] or [r for r in reversed(ranked) if r.impact >= 1][:2]
    return Score(o.id, int(round(max(0.0, min(100.0, value)))), top, ranked)


def medians(amounts: Iterable[tuple[str, float]]) -> dict[str, float]:
    """(currency, amount) pairs -> the median amount per currency."""
    by_cur: dict[str, list[float]] = {}
    for cur, amount in amounts:
        if amount and amount > 0:
            by_cur.setdefault(cur, []).append(amount)
    return {c: statistics.median(v) for c, v in by_cur.items()}


def score_all(engine: Engine, tenant: str, opps: Sequence[Opportunity], cfg: ScoringConfig, today: date, tz: str,
              median_of: dict[str, float] | None = None) -> list[Score]:
    facts = load_facts(engine, tenant, day_end(today, tz), opps)
    med = median_of if median_of is not None else medians((o.currency, o.amount) for o in opps)
    return [score(o, facts[o.id], cfg, today, tz, med.get(o.currency, 0.0)) for o in opps]


def calibration(engine: Engine, tenant: str, closed: Sequence[Opportunity], cfg: ScoringConfig, tz: str,
                all_opps: Sequence[Opportunity], horizon_days: int = 14) -> dict:
    """Score each closed deal as it stood `horizon_days` before it closed, then compare with the outcome.

    The stage before closing comes from the stage history; deals imported already closed have none
    and are scored as negotiation (most deals close from there)."""
    med = medians((o.currency, o.amount) for o in all_opps)
    with engine.connect() as conn:
        sc = StageChange.__table__.c
        hist = conn.execute(select(sc.opportunity_id, sc.from_stage, sc.to_stage, sc.at).where(
            sc.tenant == tenant, sc.opportunity_id.in_([o.id for o in closed])).order_by(sc.at)).all()
    changes: dict[str, list] = {}
    for h in hist:
        changes.setdefault(h.opportunity_id, []).append(h)
    rows = []
    for o in closed:
        as_of_day = (o.stage_changed_at.astimezone(ZoneInfo(tz)) - timedelta(days=horizon_days)).date()
        stage, since = "negotiation", o.created_at
        hs = changes.get(o.id, [])
        if hs and hs[-1].to_stage == o.stage and hs[-1].from_stage in OPEN_STAGES:
            stage = hs[-1].from_stage
            since = as_utc(hs[-2].at) if len(hs) > 1 and hs[-2].to_stage == stage else o.created_at
        before = Opportunity(**{**o.model_dump(), "stage": stage, "stage_changed_at": since})
        f = load_facts(engine, tenant, day_end(as_of_day, tz), [before])[o.id]
        s = score(before, f, cfg, as_of_day, tz, med.get(o.currency, 0.0))
        rows.append({"opportunity_id": o.id, "outcome": o.stage, "score": s.value, "reasons": s.reasons})  # Reasons: bot/ words them
    won = [r["score"] for r in rows if r["outcome"] == "won"]
    lost = [r["score"] for r in rows if r["outcome"] == "lost"]
    bands = []
    for lo in range(0, 100, 20):
        inb = [r for r in rows if lo <= r["score"] < lo + 20 or (lo == 80 and r["score"] == 100)]
        w = sum(r["outcome"] == "won" for r in inb)
        bands.append({"band": f"{lo}-{lo + 19 if lo < 80 else 100}", "won": w, "lost": len(inb) - w,
                      "win_rate": round(w / len(inb), 2) if inb else None})
    return {"horizon_days": horizon_days, "deals": len(rows), "won": len(won), "lost": len(lost),
            "mean_score_won": round(statistics.mean(won), 1) if won else None,
            "mean_score_lost": round(statistics.mean(lost), 1) if lost else None,
            "auc": _auc(won, lost), "bands": bands, "rows": rows}


def _auc(pos: list[int], neg: list[int]) -> float | None:
    """How often a won deal outscored a lost one (0.5 = no better than chance), by rank sums."""
    if not pos or not neg:
        return None
    ranked = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg = (i + j + 1) / 2  # ties share their average rank
        rank_sum += avg * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    return round((rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)), 3)
