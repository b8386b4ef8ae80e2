"""The CRM API the agent uses: find records named in a rep's words, read an account's context and a
rep's day, and write activities, tasks, stage changes and store visits.

Every call is scoped to a tenant. Every write takes an idempotency key: the same key twice is one
write, and the second call returns what the first returned. A write, its log row (actor, source
message) and its sync-outbox event commit in one transaction, so the external CRM hears of every
write at least once and of no write that did not happen.
"""
from __future__ import annotations

import json
import time as _time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Callable, TypeVar

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from crm import match
from crm.day import MyDay, build_my_day
from crm.models import ACTIVITY_KINDS, OPEN_STAGES, STAGES, Account, Activity, Contact, CrmWrite, Opportunity, Rep, StageChange, Store, StoreVisit, Task, _now
from crm.scoring import Score, ScoringConfig, medians, score_all
from crm.sync import outbox
from crm.sync.outbox import ENTITY_OF, snapshot

M = TypeVar("M", bound=SQLModel)
UPDATABLE = ("stage", "amount", "close_date", "next_step", "competitor")


class CRMError(ValueError):
    """A write or lookup the CRM refuses; the message says why in words a rep can act on."""


class NotFound(CRMError):
    pass


@dataclass
class AccountContext:
    account: Account
    contacts: list[Contact] = field(default_factory=list)
    open_opportunities: list[Opportunity] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)  # newest first
    open_tasks: list[Task] = field(default_factory=list)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _require_tz(name: str, v: datetime | None) -> datetime | None:
    if v is not None and (not isinstance(v, datetime) or v.tzinfo is None):
        raise CRMError(f"{name} must be a datetime with a time zone")
    return v


class CRM:
    CACHE_SECONDS = 30.0  # store lists; accounts and contacts are re-read as soon as they change

    def __init__(self, engine: Engine, *, tz: str = "Asia/Shanghai", stale_days: int = 14,
                 scoring: ScoringConfig | None = None, sync: bool = True) -> None:
        self.engine = engine
        self.tz = tz
        self.stale_days = stale_days
        self.scoring = scoring or ScoringConfig()
        self.sync = sync  # False only to measure what the outbox costs (bench)
        self._cache: dict[tuple[str, str], tuple[object, float, list]] = {}

    # lookups -------------------------------------------------------------------------------------
    def _all(self, tenant: str, model: type[M]) -> list[M]:
        """Every record of a kind for a tenant, cached until one is added or changed."""
        key = (tenant, model.__name__)
        with Session(self.engine) as s:
            stamp_cols = [func.count()] + ([func.max(model.updated_at)] if hasattr(model, "updated_at") else [])
            stamp = tuple(s.execute(select(*stamp_cols).where(model.tenant == tenant)).one())
            hit = self._cache.get(key)
            if hit and hit[0] == stamp and (hasattr(model, "updated_at") or _time.monotonic() - hit[1] < self.CACHE_SECONDS):
                return hit[2]  # type: ignore[return-value]
            rows = list(s.execute(select(model).where(model.tenant == tenant)).scalars())
        self._cache[key] = (stamp, _time.monotonic(), rows)
        return rows

    def find_accounts(self, tenant: str, text: str) -> list[Account]:
        return match.match_accounts(self._all(tenant, Account), text)

    def find_contacts(self, tenant: str, text: str, account_ids: list[str] | None = None) -> list[Contact]:
        contacts = self._all(tenant, Contact)
        if account_ids is not None:
            wanted = set(account_ids)
            contacts = [c for c in contacts if c.account_id in wanted]
        return match.match_contacts(contacts, text, scoped=account_ids is not None)

    def find_stores(self, tenant: str, text: str) -> list[Store]:
        accounts = {a.id: a for a in self._all(tenant, Account)}
        return match.match_stores(self._all(tenant, Store), accounts, text)

    def account_by_email(self, tenant: str, address: str) -> tuple[Account | None, Contact | None]:
        address = address.strip().lower()
        _, _, domain = address.rpartition("@")
        with Session(self.engine) as s:
            c = s.execute(select(Contact).where(Contact.tenant == tenant, func.lower(Contact.email) == address)).scalars().first()
            if c is not None:
                return s.get(Account, (tenant, c.account_id)), c
        if not domain:
            return None, None
        for a in self._all(tenant, Account):  # exact domain, else a subdomain of it (mail.hdmg.example.com)
            d = a.domain.lower().strip()
            if d and (domain == d or domain.endswith("." + d)):
                return a, None
        return None, None

    def account_context(self, tenant: str, account_id: str, limit: int = 5) -> AccountContext:
        with Session(self.engine) as s:
            acc = self._get(s, Account, tenant, account_id)
            ctx = AccountContext(acc)
            ctx.contacts = list(s.execute(select(Contact).where(Contact.tenant == tenant, Contact.account_id == account_id)
                                       .order_by(Contact.id)).scalars())
            ctx.open_opportunities = self._open_opps(s, tenant, account_id)
            ctx.activities = list(s.execute(select(Activity).where(Activity.tenant == tenant, Activity.account_id == account_id)
                                         .order_by(Activity.occurred_at.desc(), Activity.id.desc()).limit(limit)).scalars())
            ctx.open_tasks = list(s.execute(select(Task).where(Task.tenant == tenant, Task.account_id == account_id, Task.done == False)  # noqa: E712
                                         .order_by(Task.due_at)).scalars())
        return ctx

    def open_opportunities(self, tenant: str, account_id: str) -> list[Opportunity]:
        with Session(self.engine) as s:
            return self._open_opps(s, tenant, account_id)

    @staticmethod
    def _open_opps(s: Session, tenant: str, account_id: str) -> list[Opportunity]:
        return list(s.execute(select(Opportunity).where(Opportunity.tenant == tenant, Opportunity.account_id == account_id,
                                                     Opportunity.stage.in_(OPEN_STAGES)).order_by(Opportunity.close_date)).scalars())

    def my_day(self, tenant: str, rep_id: str, today: date, tz: str) -> MyDay:
        with Session(self.engine) as s:
            rep = s.get(Rep, rep_id)
            if rep is None or rep.tenant != tenant:
                raise NotFound(f"no rep {rep_id!r}")
        return build_my_day(self.engine, tenant, rep, today, tz, self.stale_days)

    def score_opportunity(self, tenant: str, opportunity_id: str, today: date) -> Score:
        with Session(self.engine) as s:
            opp = self._get(s, Opportunity, tenant, opportunity_id)
        return score_all(self.engine, tenant, [opp], self.scoring, today, self.tz, self._medians(tenant))[0]

    def score_many(self, tenant: str, today: date, rep_id: str | None = None) -> list[tuple[Opportunity, Score]]:
        """Open opportunities (of one rep, or all), best first. The opportunities are read-only rows with
        Opportunity's fields: tens of thousands of ORM objects would cost more than scoring them."""
        t = Opportunity.__table__
        q = select(t).where(t.c.tenant == tenant, t.c.stage.in_(OPEN_STAGES))
        with self.engine.connect() as conn:
            opps = conn.execute(q.where(t.c.owner_id == rep_id) if rep_id else q).all()
        scores = score_all(self.engine, tenant, opps, self.scoring, today, self.tz, self._medians(tenant))
        return sorted(zip(opps, scores), key=lambda p: -p[1].value)

    def _medians(self, tenant: str) -> dict[str, float]:
        key = (tenant, "medians")
        hit = self._cache.get(key)
        if hit and _time.monotonic() - hit[1] < 600:  # a typical amount barely moves within minutes
            return hit[2][0]  # type: ignore[index]
        with Session(self.engine) as s:
            med = medians(s.execute(select(Opportunity.currency, Opportunity.amount).where(Opportunity.tenant == tenant)).all())
        self._cache[key] = (None, _time.monotonic(), [med])
        return med

    @staticmethod
    def _get(s: Session, model: type[M], tenant: str, rid: str | None, what: str | None = None) -> M:
        obj = s.get(model, (tenant, rid)) if rid else None
        if obj is None:
            raise NotFound(f"no {what or ENTITY_OF.get(model, model.__name__.lower())} {rid!r}")
        return obj

    @staticmethod
    def _rep(s: Session, tenant: str, rep_id: str) -> Rep:
        rep = s.get(Rep, rep_id) if rep_id else None
        if rep is None or rep.tenant != tenant:
            raise NotFound(f"no rep {rep_id!r}")
        return rep

    # writes --------------------------------------------------------------------------------------
    def _write(self, tenant: str, key: str, op: str, model: type[M], actor: str, source: str,
               build: Callable[[Session], M], sync_op: str = "create") -> M:
        if not key:
            raise CRMError("every write needs an idempotency_key")
        with Session(self.engine, expire_on_commit=False) as s:
            prior = s.get(CrmWrite, (tenant, key))
            if prior is not None:
                return self._replay(prior, op, model)
            obj = build(s)
            payload = json.dumps(snapshot(obj), ensure_ascii=False)  # the replay result and the sync event's body
            try:
                s.add(obj)
                s.add(CrmWrite(tenant=tenant, key=key, op=op, entity=ENTITY_OF[model], entity_id=obj.id, actor=actor,
                               source=source or "", result=payload))
                s.flush()
                if self.sync:
                    outbox.record(s, obj, sync_op, key, actor, payload)
                s.commit()
            except IntegrityError:  # the same key committed meanwhile by another caller: theirs is the write
                s.rollback()
                prior = s.get(CrmWrite, (tenant, key))
                if prior is None:
                    raise
                return self._replay(prior, op, model)
        return obj

    @staticmethod
    def _replay(prior: CrmWrite, op: str, model: type[M]) -> M:
        if prior.op != op:
            raise CRMError(f"idempotency key {prior.key!r} was already used for {prior.op} {prior.entity_id}")
        return model.model_validate(json.loads(prior.result))

    def log_activity(self, tenant: str, *, account_id: str | None, contact_id: str | None, opportunity_id: str | None, rep_id: str,
                     kind: str, occurred_at: datetime, summary: str, source: str, idempotency_key: str, actor: str) -> Activity:
        if kind not in ACTIVITY_KINDS:
            raise CRMError(f"kind must be one of {', '.join(ACTIVITY_KINDS)}, not {kind!r}")
        _require_tz("occurred_at", occurred_at)

        def build(s: Session) -> Activity:
            acc_id = self._link(s, tenant, account_id, contact_id, opportunity_id)
            self._rep(s, tenant, rep_id)
            return Activity(tenant=tenant, id=new_id("act"), account_id=acc_id, contact_id=contact_id or "",
                            opportunity_id=opportunity_id or "", rep_id=rep_id, kind=kind, occurred_at=occurred_at,
                            summary=summary or "", source=source or "", actor=actor)

        return self._write(tenant, idempotency_key, "log_activity", Activity, actor, source, build)

    def _link(self, s: Session, tenant: str, account_id: str | None, contact_id: str | None, opportunity_id: str | None) -> str:
        """The account a record belongs to, checked against its contact and opportunity."""
        acc = account_id or ""
        for model, rid in ((Contact, contact_id), (Opportunity, opportunity_id)):
            if rid:
                obj = self._get(s, model, tenant, rid)
                if acc and obj.account_id != acc:
                    raise CRMError(f"{ENTITY_OF[model]} {rid} belongs to account {obj.account_id}, not {acc}")
                acc = obj.account_id
        if acc:
            self._get(s, Account, tenant, acc)
        return acc

    def create_task(self, tenant: str, *, rep_id: str, account_id: str | None, opportunity_id: str | None, title: str,
                    due_at: datetime | None, source: str, idempotency_key: str, actor: str) -> Task:
        if not (title or "").strip():
            raise CRMError("a task needs a title")
        _require_tz("due_at", due_at)

        def build(s: Session) -> Task:
            self._rep(s, tenant, rep_id)
            acc_id = self._link(s, tenant, account_id, None, opportunity_id)
            return Task(tenant=tenant, id=new_id("task"), rep_id=rep_id, account_id=acc_id, opportunity_id=opportunity_id or "",
                        title=title.strip(), due_at=due_at, source=source or "", actor=actor)

        return self._write(tenant, idempotency_key, "create_task", Task, actor, source, build)

    def update_opportunity(self, tenant: str, opportunity_id: str, changes: dict, *, idempotency_key: str, actor: str,
                           source: str) -> Opportunity:
        bad = sorted(set(changes) - set(UPDATABLE))
        if bad:
            raise CRMError(f"cannot change {', '.join(bad)}: only {', '.join(UPDATABLE)}")
        clean = _clean_changes(changes)

        def build(s: Session) -> Opportunity:
            opp = self._get(s, Opportunity, tenant, opportunity_id)
            now = _now()
            if "stage" in clean and clean["stage"] != opp.stage:
                s.add(StageChange(tenant=tenant, opportunity_id=opp.id, from_stage=opp.stage, to_stage=clean["stage"], at=now, actor=actor))
                opp.stage_changed_at = now
            for k, v in clean.items():
                setattr(opp, k, v)
            opp.updated_at = now
            return opp

        return self._write(tenant, idempotency_key, "update_opportunity", Opportunity, actor, source, build, "update")

    def complete_task(self, tenant: str, task_id: str, *, idempotency_key: str, actor: str) -> Task:
        def build(s: Session) -> Task:
            task = self._get(s, Task, tenant, task_id)
            if not task.done:
                task.done, task.done_at = True, _now()
            task.updated_at = _now()
            return task

        return self._write(tenant, idempotency_key, "complete_task", Task, actor, "", build, "update")

    def log_store_visit(self, tenant: str, *, store_id: str, rep_id: str, visited_at: datetime, display_ok: bool | None,
                        stock_issues: str, competitor_promo: str, order_amount: float | None, notes: str, source: str,
                        idempotency_key: str, actor: str) -> StoreVisit:
        _require_tz("visited_at", visited_at)
        if order_amount is not None and (not isinstance(order_amount, (int, float)) or order_amount < 0):
            raise CRMError("order_amount must be a non-negative number")

        def build(s: Session) -> StoreVisit:
            self._get(s, Store, tenant, store_id)
            self._rep(s, tenant, rep_id)
            return StoreVisit(tenant=tenant, id=new_id("sv"), store_id=store_id, rep_id=rep_id, visited_at=visited_at,
                              display_ok=display_ok, stock_issues=stock_issues or "", competitor_promo=competitor_promo or "",
                              order_amount=float(order_amount) if order_amount is not None else None, notes=notes or "",
                              source=source or "", actor=actor)

        return self._write(tenant, idempotency_key, "log_store_visit", StoreVisit, actor, source, build)


def _clean_changes(changes: dict) -> dict:
    out = dict(changes)
    if "stage" in out and out["stage"] not in STAGES:
        raise CRMError(f"stage must be one of {', '.join(STAGES)}, not {out['stage']!r}")
    if "amount" in out:
        try:
            out["amount"] = float(out["amount"])
        except (TypeError, ValueError):
            raise CRMError(f"amount must be a number, not {out['amount']!r}") from None
        if out["amount"] < 0:
            raise CRMError("amount cannot be negative")
    if isinstance(out.get("close_date"), datetime):
        out["close_date"] = out["close_date"].date()
    if "close_date" in out and out["close_date"] is not None and not isinstance(out["close_date"], date):
        try:
            out["close_date"] = date.fromisoformat(str(out["close_date"]))
        except ValueError:
            raise CRMError(f"close_date must be a date (YYYY-MM-DD), not {out['close_date']!r}") from None
    for k in ("next_step", "competitor"):
        if k in out:
            out[k] = str(out[k] or "").strip()
    return out
