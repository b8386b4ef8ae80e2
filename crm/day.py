"""A rep's day: tasks due today and overdue, deals gone quiet, and today's meetings, each with ids and the
facts to show (a `code` and its `params`; bot/ words them from the message catalogue in the rep's language).
The morning digest and the agent's "my day" both read it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm.models import OPEN_STAGES, Account, Activity, Opportunity, Rep, Task
from crm.scoring import load_facts

_MEETING_WORDS = re.compile(r"拜访|会议|会面|见面|面谈|演示|电话|约见|meeting|visit|call|demo", re.I)


@dataclass(frozen=True)
class DayItem:
    id: str
    kind: str  # task|activity|opportunity
    code: str  # due | overdue | due_earlier | meeting | stale: what to say about it (message day_item_<code>)
    params: dict[str, object] = field(default_factory=dict)  # title, account (its name or ""), time (HH:MM local), days
    account_id: str = ""
    opportunity_id: str = ""
    at: datetime | None = None
    days: int | None = None  # overdue by / idle for


@dataclass
class MyDay:
    rep_id: str
    day: date
    due_today: list[DayItem] = field(default_factory=list)
    overdue: list[DayItem] = field(default_factory=list)
    stale_deals: list[DayItem] = field(default_factory=list)
    meetings_today: list[DayItem] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.due_today or self.overdue or self.stale_deals or self.meetings_today)


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), ZoneInfo(tz))
    return start.astimezone(timezone.utc), (start + timedelta(days=1)).astimezone(timezone.utc)


def build_my_day(engine: Engine, tenant: str, rep: Rep, today: date, tz: str, stale_days: int) -> MyDay:
    local = ZoneInfo(tz)
    start, end = day_bounds(today, tz)
    out = MyDay(rep.id, today)
    with Session(engine) as s:
        tasks = list(s.execute(select(Task).where(Task.tenant == tenant, Task.rep_id == rep.id, Task.done == False,  # noqa: E712
                                                  Task.due_at < end).order_by(Task.due_at)).scalars())
        acts = list(s.execute(select(Activity).where(Activity.tenant == tenant, Activity.rep_id == rep.id, Activity.occurred_at >= start,
                                                     Activity.occurred_at < end, Activity.kind.in_(("meeting", "visit", "call")))
                              .order_by(Activity.occurred_at)).scalars())
        opps = list(s.execute(select(Opportunity).where(Opportunity.tenant == tenant, Opportunity.owner_id == rep.id,
                                                        Opportunity.stage.in_(OPEN_STAGES))).scalars())
        names = {a.id: a.name for a in s.execute(select(Account).where(
            Account.tenant == tenant, Account.id.in_({t.account_id for t in tasks} | {a.account_id for a in acts} | {o.account_id for o in opps}))).scalars()}

    for t in tasks:
        due = t.due_at.astimezone(local)
        if t.due_at >= start:
            item = DayItem(t.id, "task", "due", {"time": f"{due:%H:%M}", "title": t.title, "account": names.get(t.account_id, "")},
                           t.account_id, t.opportunity_id, t.due_at)
            out.due_today.append(item)
            if _MEETING_WORDS.search(t.title):
                out.meetings_today.append(item)
        else:
            late = (today - due.date()).days
            out.overdue.append(DayItem(t.id, "task", "overdue" if late else "due_earlier",
                                       {"title": t.title, "account": names.get(t.account_id, ""), "days": late},
                                       t.account_id, t.opportunity_id, t.due_at, late))
    for a in acts:
        what = a.summary if len(a.summary) <= 40 else a.summary[:39] + "…"
        out.meetings_today.append(DayItem(a.id, "activity", "meeting", {"time": f"{a.occurred_at.astimezone(local):%H:%M}", "title": what,
                                                                        "account": names.get(a.account_id, "")},
                                          a.account_id, a.opportunity_id, a.occurred_at))
    facts = load_facts(engine, tenant, end, opps)
    for o in opps:
        last = facts[o.id].last_contact or o.created_at
        idle = (today - last.astimezone(local).date()).days
        if idle >= stale_days:
            out.stale_deals.append(DayItem(o.id, "opportunity", "stale", {"title": o.name, "account": "", "days": idle},
                                           o.account_id, o.id, last, idle))
    out.stale_deals.sort(key=lambda i: -(i.days or 0))
    out.meetings_today.sort(key=lambda i: i.at or start)
    return out
