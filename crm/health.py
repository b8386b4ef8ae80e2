"""Rep health: a daily score from process metrics, streaks below the threshold, and tiered alerts.

Metrics per rep per working day (in the rep's time zone): activities logged (store visits count),
customer touches (distinct contacts, accounts and stores), follow-ups done on time (tasks due in
the last week), overdue tasks, competitor intel shared (activities that name a competitor, store
visits that saw a promotion) and copilot use (writes through the copilot, plus the messages the
bot counts). Each metric is scaled against a per-role target; the score is their weighted mean,
0-100. Weights, targets and thresholds per role come from [health] in copilot.toml.

A rep below the threshold for N consecutive working days (default 3) is due for the first tier of
alerts (a coaching nudge to the rep, an alert to the manager); later tiers escalate. Alerts are
keyed on the streak's first day, so one streak alerts once per tier and a new streak alerts again.
Weekends are not scored and neither break nor extend a streak.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Callable

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm.day import day_bounds
from crm.models import Activity, CrmWrite, HealthDay, NudgeLog, Opportunity, Rep, StoreVisit, Task, Team, _now
from crm.scoring import as_utc

METRICS = ("activities", "touches", "on_time", "overdue", "intel", "copilot")
Usage = Callable[[str, list[str], date, str], dict[str, int]]  # (tenant, rep ids, day, tz) -> messages to the copilot


@dataclass
class RoleHealth:
    weights: dict[str, float] = field(default_factory=lambda: {"activities": 20, "touches": 20, "on_time": 20, "overdue": 15, "intel": 10, "copilot": 15})
    # the count at which a metric is full marks (overdue: the count at which it is zero)
    targets: dict[str, float] = field(default_factory=lambda: {"activities": 3, "touches": 2, "overdue": 3, "intel": 1, "copilot": 2})
    threshold: float = 50.0


@dataclass(frozen=True)
class Tier:
    days: int
    notify: tuple[str, ...]  # rep (coaching nudge) | manager | manager2 (the manager's manager)


@dataclass
class HealthConfig:
    roles: dict[str, RoleHealth] = field(default_factory=lambda: {"rep": RoleHealth()})
    consecutive_days: int = 3
    tiers: list[Tier] = field(default_factory=list)  # default: N days -> rep + manager; 2N -> the manager's manager
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    on_time_window_days: int = 7
    competitors: tuple[str, ...] = ()  # names that count as intel besides those on opportunities

    def __post_init__(self) -> None:
        if not self.tiers:
            self.tiers = [Tier(self.consecutive_days, ("rep", "manager")), Tier(self.consecutive_days * 2, ("manager2",))]

    @classmethod
    def from_dict(cls, d: dict | None) -> "HealthConfig":
        d = dict(d or {})
        roles = {"rep": RoleHealth()}
        for role, r in (d.pop("roles", None) or {}).items():
            base = RoleHealth()
            base.weights.update({k: float(v) for k, v in (r.get("weights") or {}).items()})
            base.targets.update({k: float(v) for k, v in (r.get("targets") or {}).items()})
            base.threshold = float(r.get("threshold", base.threshold))
            roles[role] = base
        tiers = [Tier(int(t["days"]), tuple(t["notify"])) for t in d.pop("tiers", None) or []]
        return cls(roles=roles, tiers=tiers, consecutive_days=int(d.get("consecutive_days", 3)),
                   workdays=tuple(d.get("workdays", (0, 1, 2, 3, 4))), on_time_window_days=int(d.get("on_time_window_days", 7)),
                   competitors=tuple(d.get("competitors", ())))

    def is_workday(self, day: date) -> bool:
        return day.weekday() in self.workdays

    def previous_workday(self, day: date) -> date:
        day -= timedelta(days=1)
        while not self.is_workday(day):
            day -= timedelta(days=1)
        return day


@dataclass(frozen=True)
class Alert:
    kind: str  # health_rep | health_manager | health_manager2
    rep_id: str
    recipient: str
    tier: int
    day: HealthDay

    @property
    def period(self) -> str:
        return f"{self.day.streak_start}/t{self.tier}"


def measure(engine: Engine, tenant: str, rep: Rep, day: date, cfg: HealthConfig, competitors: set[str], copilot_messages: int) -> dict:
    start, end = day_bounds(day, rep.timezone)
    a, v, t, w = Activity.__table__.c, StoreVisit.__table__.c, Task.__table__.c, CrmWrite.__table__.c
    with engine.connect() as conn:
        acts = conn.execute(select(a.account_id, a.contact_id, a.summary).where(
            a.tenant == tenant, a.rep_id == rep.id, a.occurred_at >= start, a.occurred_at < end)).all()
        visits = conn.execute(select(v.store_id, v.competitor_promo).where(
            v.tenant == tenant, v.rep_id == rep.id, v.visited_at >= start, v.visited_at < end)).all()
        window = day_bounds(day - timedelta(days=cfg.on_time_window_days - 1), rep.timezone)[0]
        due = conn.execute(select(t.due_at, t.done, t.done_at).where(
            t.tenant == tenant, t.rep_id == rep.id, t.due_at >= window, t.due_at < end)).all()
        overdue = conn.execute(select(func.count()).select_from(Task.__table__).where(
            t.tenant == tenant, t.rep_id == rep.id, t.due_at < start, or_(t.done == False, t.done_at >= end))).scalar()  # noqa: E712
        writes = conn.execute(select(func.count()).select_from(CrmWrite.__table__).where(
            w.tenant == tenant, w.actor == rep.id, w.at >= start, w.at < end, w.source != "", ~w.source.like("import:%"))).scalar()
    on_time = [bool(d.done and d.done_at is not None and as_utc(d.done_at) <= as_utc(d.due_at)) for d in due if as_utc(d.due_at) < _now() or d.done]
    intel = sum(1 for x in acts if any(c in (x.summary or "") for c in competitors)) + sum(1 for x in visits if (x.competitor_promo or "").strip())
    return {"activities": len(acts) + len(visits),
            "touches": len({(x.account_id, x.contact_id) for x in acts if x.account_id or x.contact_id}) + len({x.store_id for x in visits}),
            "on_time": round(sum(on_time) / len(on_time), 2) if on_time else None, "overdue": int(overdue or 0),
            "intel": intel, "copilot": int(writes or 0) + copilot_messages}


def normalised(metrics: dict, role: RoleHealth) -> dict[str, tuple[float, float]]:
    """metric -> (weight, 0..1 against the role's target); metrics with nothing to measure are left out
    (no task was due: on-time neither helps nor hurts)."""
    out = {}
    for m, w in role.weights.items():
        val = metrics.get(m)
        if val is None or w <= 0:
            continue
        target = role.targets.get(m, 1.0) or 1.0
        out[m] = (w, float(val) if m == "on_time" else 1 - min(val / target, 1.0) if m == "overdue" else min(val / target, 1.0))
    return out


def score(metrics: dict, role: RoleHealth) -> float:
    parts = normalised(metrics, role).values()
    total = sum(w for w, _ in parts)
    return round(100 * sum(w * n for w, n in parts) / total, 1) if total else 100.0


def weakest(metrics: dict, role: RoleHealth, n: int = 2) -> list[str]:
    """The metrics that cost the most points: what a coaching nudge should be about."""
    parts = normalised(metrics, role)
    return [m for m, (w, v) in sorted(parts.items(), key=lambda kv: -kv[1][0] * (1 - kv[1][1])) if v < 1][:n]


def run_day(engine: Engine, tenant: str, day: date, cfg: HealthConfig, usage: Usage | None = None) -> list[HealthDay]:
    """Score every active rep whose role has a health profile for `day`, and carry their streaks.
    Re-running a day recomputes it (a late-logged activity counts)."""
    if not cfg.is_workday(day):
        return []
    with Session(engine) as s:
        reps = [r for r in s.execute(select(Rep).where(Rep.tenant == tenant, Rep.active == True)).scalars() if r.role in cfg.roles]  # noqa: E712
        names = {c for (c,) in s.execute(select(Opportunity.competitor).where(Opportunity.tenant == tenant, Opportunity.competitor != "").distinct())}
    competitors = {n.strip() for n in names | set(cfg.competitors) if n.strip()}
    messages: dict[str, int] = {}
    for tz in {r.timezone for r in reps}:
        if usage is not None:
            messages.update(usage(tenant, [r.id for r in reps if r.timezone == tz], day, tz))
    prev_day = cfg.previous_workday(day)
    out = []
    with Session(engine, expire_on_commit=False) as s:
        for rep in reps:
            role = cfg.roles[rep.role]
            metrics = measure(engine, tenant, rep, day, cfg, competitors, messages.get(rep.id, 0))
            value = score(metrics, role)
            below = value < role.threshold
            prev = s.get(HealthDay, (tenant, rep.id, prev_day))
            streak, start = (0, None)
            if below:
                streak, start = (prev.streak + 1, prev.streak_start) if prev is not None and prev.below else (1, day)
            row = s.get(HealthDay, (tenant, rep.id, day)) or HealthDay(tenant=tenant, rep_id=rep.id, day=day)
            row.role, row.score, row.below, row.streak, row.streak_start = rep.role, value, below, streak, start
            row.metrics, row.computed_at = json.dumps(metrics), _now()
            s.add(row)
            out.append(row)
        s.commit()
    return out


def due_alerts(engine: Engine, tenant: str, day: date, cfg: HealthConfig) -> list[Alert]:
    """Alerts the streaks ending on `day` call for and that were not sent before."""
    with Session(engine) as s:
        rows = list(s.execute(select(HealthDay).where(HealthDay.tenant == tenant, HealthDay.day == day, HealthDay.below == True)).scalars())  # noqa: E712
        reps = {r.id: r for r in s.execute(select(Rep).where(Rep.tenant == tenant)).scalars()}
        teams = {t.id: t for t in s.execute(select(Team).where(Team.tenant == tenant)).scalars()}
        sent = {(n.kind, n.subject, n.period) for n in s.execute(select(NudgeLog).where(
            NudgeLog.tenant == tenant, NudgeLog.kind.like("health_%"), NudgeLog.subject.in_([r.rep_id for r in rows]))).scalars()}
    alerts = []
    for row in rows:
        rep = reps.get(row.rep_id)
        for i, tier in enumerate(cfg.tiers, start=1):
            if row.streak < tier.days:
                continue
            for who in tier.notify:
                recipient = _recipient(rep, who, reps, teams) if rep else ""
                al = Alert(f"health_{who}", row.rep_id, recipient, i, row)
                if recipient and (al.kind, row.rep_id, al.period) not in sent:
                    alerts.append(al)
    return alerts


def _recipient(rep: Rep, who: str, reps: dict[str, Rep], teams: dict[str, Team]) -> str:
    if who == "rep":
        return rep.id
    manager = rep.manager_id or (teams[rep.team].manager_id if rep.team in teams else "")
    if who == "manager":
        return manager if manager != rep.id else ""
    boss = reps.get(manager)
    return boss.manager_id if boss and boss.manager_id else ""
