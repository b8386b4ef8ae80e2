"""The proactive side of the copilot, run inside `copilot serve`: morning digests, timely nudges
(overdue follow-ups, deals gone quiet, content a deal needs), rep health scores with coaching
nudges and tiered manager alerts, and store supervisors' daily summaries. It also runs the CRM
sync deliverer when external CRMs are configured.

Only one instance sends: a lease row in the database elects the leader, and another instance
takes over when the lease lapses. Each nudge is sent at most once anyway: its outbox dedupe key
is made of (kind, subject, period), and the nudge log records it. Nothing is sent outside a
person's local window (default 08:30-20:00); what falls due at night waits for the morning.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.agent import facts as wording
from bot.agent.publishing import Publishing
from bot.agent.tables import AgentTurn
from bot.people.directory import Directory, Person
from bot.pipeline.inbox import OWNER
from bot.pipeline.outbox import Outbox
from bot.proactive import nudges
from bot.prompts import Prompts, ui_lang
from bot.settings import Settings, toml_section
from connectors.message import Reply, Target
from connectors.sql import insert_ignore
from crm import health as crm_health
from crm.day import day_bounds
from crm.models import OPEN_STAGES, Account, HealthDay, Lease, NudgeLog, Opportunity, Task
from crm.nudgelog import log_sent
from crm.scoring import ScoringConfig, load_facts
from crm.service import CRM
from crm.stores import supervisor_summary, supervisors_for
from crm.sync import Deliverer, IdMap, SyncConnector
from crm.sync.hubspot import HubSpotSink
from crm.sync.webhook import WebhookSink
from rag.retrieve import Retriever, Viewer

log = logging.getLogger("copilot.scheduler")
ContentLookup = Callable[[Person, Opportunity], list[nudges.ContentRef]]


def _hhmm(v: str | dtime) -> dtime:
    return v if isinstance(v, dtime) else dtime.fromisoformat(v)


@dataclass
class NudgeConfig:
    """[nudges] in copilot.toml."""

    window_start: dtime = dtime(8, 30)  # quiet hours are outside the window, in each person's time zone
    window_end: dtime = dtime(20, 0)
    digest_at: dtime = dtime(8, 45)
    store_summary_at: dtime = dtime(18, 0)
    idle_days: int = 14
    overdue_lookback_hours: float = 24.0  # older overdue tasks are the digest's business
    deal_check_minutes: float = 30.0  # how often quiet deals and content needs are looked for
    health_catchup_days: int = 5
    tick_seconds: float = 60.0
    lease_seconds: float = 90.0

    @classmethod
    def from_dict(cls, d: dict | None) -> "NudgeConfig":
        cfg = cls()
        for f in fields(cls):
            if f.name in (d or {}):
                cur = getattr(cfg, f.name)
                setattr(cfg, f.name, _hhmm(d[f.name]) if isinstance(cur, dtime) else type(cur)(d[f.name]))
        return cfg

    def open_at(self, local: datetime) -> bool:
        return self.window_start <= local.time() < self.window_end


class LeaderLease:
    """Leader election through one row: held while renewed, taken over once it lapses."""

    def __init__(self, engine: Engine, name: str, owner: str, seconds: float) -> None:
        self.engine, self.name, self.owner, self.seconds = engine, name, owner, seconds

    def acquire(self) -> bool:
        t = Lease.__table__
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(insert_ignore(self.engine, t, {"name": self.name, "owner": "", "until": 0.0}))
            won = conn.execute(update(t).where(t.c.name == self.name, or_(t.c.owner == self.owner, t.c.until < now))
                               .values(owner=self.owner, until=now + self.seconds)).rowcount
        return bool(won)

    def release(self) -> None:
        t = Lease.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.name == self.name, t.c.owner == self.owner).values(until=0.0))


def agent_turns(engine: Engine) -> crm_health.Usage:
    """Copilot use for health scores: the replies the agent gave each rep that day."""
    def usage(tenant: str, rep_ids: list[str], day: date, tz: str) -> dict[str, int]:
        start, end = day_bounds(day, tz)
        a = AgentTurn.__table__.c
        with engine.connect() as conn:
            return dict(conn.execute(select(a.rep_id, func.count()).where(
                a.tenant == tenant, a.rep_id.in_(rep_ids), a.created_at >= start, a.created_at < end).group_by(a.rep_id)).all())
    return usage


@dataclass
class Scheduler:
    engine: Engine
    outbox: Outbox
    directory: Directory
    crm: CRM
    tenant: str
    tz: str
    owner: str
    prompts: Prompts  # the words of every nudge
    cfg: NudgeConfig = field(default_factory=NudgeConfig)
    health: crm_health.HealthConfig = field(default_factory=crm_health.HealthConfig)
    content: ContentLookup | None = None
    sync: Deliverer | None = None
    daily: list = field(default_factory=list)  # more once-a-day jobs: f(day) (knowledge owners' nudges)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _deals_checked: datetime | None = None
    _health_day: date | None = None
    _daily_day: date | None = None

    def __post_init__(self) -> None:
        self.lease = LeaderLease(self.engine, f"scheduler:{self.tenant}", self.owner, self.cfg.lease_seconds)
        self.usage = agent_turns(self.engine)

    # lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._loop(), name="scheduler"))
        if self.sync is not None:
            self._tasks.append(asyncio.create_task(self.sync.run(), name="crm-sync"))

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.sync is not None:
            await self.sync.aclose()
        await asyncio.to_thread(self.lease.release)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.tick_seconds)  # first pass after one interval: start-up settles, short-lived processes stay quiet
            try:
                await asyncio.to_thread(self.run_once)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed")

    def run_once(self, now: datetime | None = None) -> dict[str, int] | None:
        """One pass if this instance is the leader (None when it is not)."""
        if not self.lease.acquire():
            return None
        return self.tick(now)

    # one pass ------------------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> dict[str, int]:
        now = now or datetime.now(timezone.utc)
        sent: Counter = Counter()
        people = {p.id: p for p in self.directory.list(self.tenant)}
        self._health(now, people, sent)
        check_deals = self._deals_checked is None or now - self._deals_checked >= timedelta(minutes=self.cfg.deal_check_minutes)
        supervisors = set(supervisors_for(self.engine, self.tenant))
        for p in people.values():
            local = now.astimezone(ZoneInfo(p.timezone))
            if not self.cfg.open_at(local):
                continue
            if local.time() >= self.cfg.digest_at:
                self._digest(p, local.date(), sent)
            self._overdue(p, now, sent)
            if p.id in supervisors and local.time() >= self.cfg.store_summary_at:
                self._store_summary(p, local.date(), sent)
        if check_deals:
            self._deals(now, people, sent)
            self._deals_checked = now
        local = now.astimezone(ZoneInfo(self.tz))
        if self.daily and self.cfg.open_at(local) and local.time() >= self.cfg.digest_at and self._daily_day != local.date():
            for job in self.daily:
                sent[getattr(job, "__name__", "daily")] += job(local.date()) or 0
            self._daily_day = local.date()
        return dict(sent)

    def _send(self, p: Person, kind: str, subject: str, period: str, reply: Reply, sent: Counter, tier: int = 0) -> None:
        key = f"nudge:{self.tenant}:{kind}:{subject}:{period}"
        reply = reply.model_copy(update={"lang": ui_lang(p.language)})  # written in the recipient's language: so are the labels
        self.outbox.enqueue(self._target(p), reply, key)  # the dedupe key makes a second enqueue a no-op
        if log_sent(self.engine, self.tenant, kind, subject, period, p.id, tier):
            sent[kind] += 1

    def _logged(self, kind: str, subject: str, period: str) -> bool:
        with Session(self.engine) as s:
            return s.get(NudgeLog, (self.tenant, kind, subject, period)) is not None

    def _target(self, p: Person) -> Target:
        return self.directory.target_for(p.id, self.outbox.channels.names())

    def _digest(self, p: Person, day: date, sent: Counter) -> None:
        if self._logged("digest", p.id, str(day)):
            return
        my_day = self.crm.my_day(self.tenant, p.id, day, p.timezone)
        if my_day.empty:  # nothing to say: remember that, so the day is not recomputed every pass
            log_sent(self.engine, self.tenant, "digest", p.id, str(day), p.id, detail="empty")
            return
        self._send(p, "digest", p.id, str(day), nudges.digest(self.prompts, p, my_day), sent)

    def _overdue(self, p: Person, now: datetime, sent: Counter) -> None:
        since = now - timedelta(hours=self.cfg.overdue_lookback_hours)
        with Session(self.engine) as s:
            tasks = list(s.execute(select(Task).where(Task.tenant == self.tenant, Task.rep_id == p.id, Task.done == False,  # noqa: E712
                                                      Task.due_at >= since, Task.due_at < now)).scalars())
            names = {a.id: a.name for a in s.execute(select(Account).where(
                Account.tenant == self.tenant, Account.id.in_({t.account_id for t in tasks}))).scalars()} if tasks else {}
        for t in tasks:
            period = t.due_at.isoformat(timespec="minutes")  # a task moved to a new date may nudge again
            if not self._logged("overdue", t.id, period):
                self._send(p, "overdue", t.id, period, nudges.overdue(self.prompts, p, t, names.get(t.account_id, "")), sent)

    def _deals(self, now: datetime, people: dict[str, Person], sent: Counter) -> None:
        """Deals idle for N days, and deals facing a competitor the rep has material for."""
        with Session(self.engine) as s:
            opps = list(s.execute(select(Opportunity).where(Opportunity.tenant == self.tenant, Opportunity.stage.in_(OPEN_STAGES),
                                                            Opportunity.owner_id.in_(list(people)))).scalars())
        facts = load_facts(self.engine, self.tenant, now, opps)
        for o in opps:
            p = people[o.owner_id]
            local = now.astimezone(ZoneInfo(p.timezone))
            if not self.cfg.open_at(local):
                continue
            last = facts[o.id].last_contact or o.created_at
            idle = (local.date() - last.astimezone(local.tzinfo).date()).days
            if idle >= self.cfg.idle_days and not self._logged("idle", o.id, last.date().isoformat()):
                score = self.crm.score_opportunity(self.tenant, o.id, local.date())
                reasons = wording.reasons(self.prompts, score.reasons, ui_lang(p.language))
                self._send(p, "idle", o.id, last.date().isoformat(), nudges.idle(self.prompts, p, o, idle, reasons), sent)
            if o.competitor and self.content is not None and not self._logged("content_none", o.id, str(local.date())):
                self._content(p, o, local.date(), sent)

    def _content(self, p: Person, o: Opportunity, day: date, sent: Counter) -> None:
        try:
            refs = self.content(p, o)
        except Exception:
            log.exception("content lookup for %s failed", o.id)
            return
        if not refs:  # look again tomorrow: enablement may publish something
            log_sent(self.engine, self.tenant, "content_none", o.id, str(day), p.id)
            return
        digest = hashlib.sha256("|".join(sorted(f"{r.doc_id}@{r.version}" for r in refs)).encode()).hexdigest()[:16]
        period = f"{o.competitor[:40]}:{digest}"  # a new battlecard version is worth a new nudge
        if not self._logged("content", o.id, period):
            self._send(p, "content", o.id, period, nudges.content(self.prompts, p, o, refs), sent)

    def _health(self, now: datetime, people: dict[str, Person], sent: Counter) -> None:
        """Once a working day, score the previous working day (and any missed ones); then send what
        the streaks call for, to each recipient inside their own window."""
        local = now.astimezone(ZoneInfo(self.tz))
        today = local.date()
        if not self.health.is_workday(today) or local.time() < self.cfg.digest_at:
            return
        day = self.health.previous_workday(today)
        if self._health_day != today:
            self._score_days(day)
            self._health_day = today
        for al in crm_health.due_alerts(self.engine, self.tenant, day, self.health):
            who, rep = people.get(al.recipient), people.get(al.rep_id)
            if who is None or rep is None or not self.cfg.open_at(now.astimezone(ZoneInfo(who.timezone))):
                continue
            role = self.health.roles[al.day.role]
            reply = (nudges.health_coach(self.prompts, who, al.day, role) if al.kind == "health_rep"
                     else nudges.health_alert(self.prompts, who, rep, al.day, role, al.tier))
            self._send(who, al.kind, al.rep_id, al.period, reply, sent, tier=al.tier)

    def _score_days(self, last: date) -> None:
        """Score `last` (again: activities logged late still count) and any working day missed since the
        last scored one, oldest first so each streak builds on the day before. A new deployment starts
        with `last`: days before it existed are not held against anyone."""
        with Session(self.engine) as s:
            latest = s.execute(select(func.max(HealthDay.day)).where(HealthDay.tenant == self.tenant)).scalar()
        latest = date.fromisoformat(latest) if isinstance(latest, str) else latest
        days = [last]
        while latest is not None and len(days) < self.cfg.health_catchup_days:
            before = self.health.previous_workday(days[-1])
            if before <= latest:
                break
            days.append(before)
        for d in reversed(days):
            crm_health.run_day(self.engine, self.tenant, d, self.health, self.usage)

    def _store_summary(self, p: Person, day: date, sent: Counter) -> None:
        if self._logged("store_summary", p.id, str(day)):
            return
        summary = supervisor_summary(self.engine, self.tenant, p.id, day, p.timezone)
        if not summary.visits:
            log_sent(self.engine, self.tenant, "store_summary", p.id, str(day), p.id, detail="no visits")
            return
        self._send(p, "store_summary", p.id, str(day), nudges.store_summary(self.prompts, p, summary), sent)


# wiring -------------------------------------------------------------------------------------------
def _secret(v: str) -> str:
    """Secrets may live in the environment: `secret = "env:COPILOT_WEBHOOK_SECRET"`."""
    return os.environ.get(v[4:], "") if v.startswith("env:") else v


def sync_sinks(engine: Engine, prompts: Prompts) -> list[SyncConnector]:
    """The external CRMs configured in [crm_sync.webhook] and [crm_sync.hubspot] of copilot.toml. HubSpot notes
    are worded in the hubspot section's `language` ("zh" unless "en")."""
    conf = toml_section("crm_sync")
    sinks: list[SyncConnector] = []
    if (w := conf.get("webhook") or {}).get("url"):
        sinks.append(WebhookSink(w["url"], _secret(w.get("secret", "")), timeout=float(w.get("timeout", 10))))
    if (h := conf.get("hubspot") or {}).get("token"):
        sinks.append(HubSpotSink(_secret(h["token"]), IdMap(engine, "hubspot"), labels=prompts.catalogue(h.get("language", "zh")),
                                 base_url=h.get("base_url", "https://api.hubapi.com"),
                                 pipeline=h.get("pipeline", "default"), stages=h.get("stages")))
    return sinks


def sync_deliverer(engine: Engine, prompts: Prompts) -> Deliverer | None:
    sinks = sync_sinks(engine, prompts)
    conf = toml_section("crm_sync")
    return Deliverer(engine, sinks, max_attempts=int(conf.get("max_attempts", 8)),
                     retry_base=float(conf.get("retry_base_seconds", 2.0))) if sinks else None


def battlecards(retriever: Retriever) -> ContentLookup:
    """The default content hook: live battlecards about the deal's competitor that the rep may read."""
    def lookup(p: Person, opp: Opportunity) -> list[nudges.ContentRef]:
        docs = retriever.documents(Viewer(tenant=p.tenant, role=p.role, team=p.team, user_id=p.id), doc_type="battlecard")
        c = opp.competitor.casefold()
        return [nudges.ContentRef(d["doc_id"], d["title"], str(d.get("version", ""))) for d in docs
                if d.get("competitor") and (d["competitor"].casefold() in c or c in d["competitor"].casefold())]
    return lookup


def build_scheduler(settings: Settings, engine: Engine, outbox: Outbox, directory: Directory, retriever: Retriever,
                    publishing: Publishing, prompts: Prompts) -> Scheduler:
    s = settings
    cfg = NudgeConfig.from_dict(toml_section("nudges"))
    crm = CRM(engine, tz=s.timezone, stale_days=cfg.idle_days, scoring=ScoringConfig.from_dict(toml_section("scoring")))
    return Scheduler(engine, outbox, directory, crm, s.tenant, s.timezone, owner=f"{OWNER}:{uuid.uuid4().hex[:6]}", prompts=prompts, cfg=cfg,
                     health=crm_health.HealthConfig.from_dict(toml_section("health")), content=battlecards(retriever),
                     sync=sync_deliverer(engine, prompts), daily=[lambda day: publishing.nudge_owners(s.tenant, day)])
