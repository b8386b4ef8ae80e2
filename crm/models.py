"""CRM tables (sqlmodel): the records, the write log, the sync outbox, health history and the nudge log.

Every record is keyed on (tenant, id) so two tenants may import the same ids. There are no
database foreign keys: the service checks references itself, and imports of partial data stay
possible. Timestamps are aware datetimes (sqlmodel stores them in UTC and returns them aware, on
SQLite as on PostgreSQL); naive datetimes are refused.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Optional

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

STAGES = ("lead", "qualified", "proposal", "negotiation", "won", "lost")
OPEN_STAGES = STAGES[:4]
ACTIVITY_KINDS = ("visit", "call", "email", "chat", "meeting")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _text(default: str = "") -> Column:
    return Column(Text, nullable=False, default=default)


class Rep(SQLModel, table=True):
    """A person who uses the copilot: sales rep, manager, enablement or admin."""

    __tablename__ = "rep"
    id: str = Field(primary_key=True, max_length=64)
    tenant: str = Field(default="default", max_length=64, index=True)
    name: str
    role: str = Field(default="rep", max_length=16)  # rep|manager|enablement|admin
    team: str = Field(default="", max_length=64)
    email: str = Field(default="", max_length=200, index=True)
    manager_id: str = Field(default="", max_length=64)
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    language: str = Field(default="zh", max_length=8)
    preferred_channel: str = Field(default="console", max_length=32)
    active: bool = True
    created_at: datetime = Field(default_factory=_now)


class Team(SQLModel, table=True):
    __tablename__ = "crm_team"
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)  # the team name reps carry in Rep.team
    manager_id: str = Field(default="", max_length=64)
    parent_id: str = Field(default="", max_length=64)


class Account(SQLModel, table=True):
    __tablename__ = "crm_account"
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    aliases: str = Field(default="", sa_column=_text())  # "|"-separated, as in the CSV
    industry: str = Field(default="", max_length=64)
    region: str = Field(default="", max_length=64)
    owner_id: str = Field(default="", max_length=64, index=True)
    domain: str = Field(default="", max_length=200, index=True)
    tier: str = Field(default="", max_length=8)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    def alias_list(self) -> list[str]:
        return [a.strip() for a in self.aliases.split("|") if a.strip()]


class Contact(SQLModel, table=True):
    __tablename__ = "crm_contact"
    __table_args__ = (Index("ix_crm_contact_account", "tenant", "account_id"),)
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(max_length=64)
    name: str = Field(max_length=120)
    title: str = Field(default="", max_length=120)
    email: str = Field(default="", max_length=200, index=True)
    phone: str = Field(default="", max_length=40)
    language: str = Field(default="zh", max_length=8)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class Opportunity(SQLModel, table=True):
    __tablename__ = "crm_opportunity"
    __table_args__ = (Index("ix_crm_opp_account", "tenant", "account_id"), Index("ix_crm_opp_owner", "tenant", "owner_id", "stage"))
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(max_length=64)
    name: str = Field(max_length=300)
    stage: str = Field(default="lead", max_length=16)
    # a float holds any realistic deal amount to the cent exactly; sums are rounded on display
    amount: float = 0.0
    currency: str = Field(default="CNY", max_length=3)
    close_date: Optional[date] = None
    owner_id: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=_now)
    stage_changed_at: datetime = Field(default_factory=_now)
    next_step: str = Field(default="", sa_column=_text())
    competitor: str = Field(default="", max_length=120)
    updated_at: datetime = Field(default_factory=_now)

    @property
    def is_open(self) -> bool:
        return self.stage in OPEN_STAGES


class StageChange(SQLModel, table=True):
    """Stage history: what the calibration report and the stage-age signal look back on."""

    __tablename__ = "crm_stage_change"
    __table_args__ = (Index("ix_crm_stage_change_opp", "tenant", "opportunity_id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    opportunity_id: str = Field(max_length=64)
    from_stage: str = Field(default="", max_length=16)
    to_stage: str = Field(max_length=16)
    at: datetime = Field(default_factory=_now)
    actor: str = Field(default="", max_length=64)


class Activity(SQLModel, table=True):
    __tablename__ = "crm_activity"
    __table_args__ = (Index("ix_crm_activity_opp", "tenant", "opportunity_id", "occurred_at"),
                      Index("ix_crm_activity_account", "tenant", "account_id", "occurred_at"),
                      Index("ix_crm_activity_rep", "tenant", "rep_id", "occurred_at"))
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(default="", max_length=64)
    contact_id: str = Field(default="", max_length=64)
    opportunity_id: str = Field(default="", max_length=64)
    rep_id: str = Field(default="", max_length=64)
    kind: str = Field(default="visit", max_length=16)  # visit|call|email|chat|meeting
    occurred_at: datetime = Field()
    summary: str = Field(default="", sa_column=_text())
    source: str = Field(default="", max_length=300)  # the message it came from (channel|tenant|conversation|msg id)
    actor: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=_now)


class Task(SQLModel, table=True):
    __tablename__ = "crm_task"
    __table_args__ = (Index("ix_crm_task_rep", "tenant", "rep_id", "done", "due_at"), Index("ix_crm_task_opp", "tenant", "opportunity_id"))
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    rep_id: str = Field(max_length=64)
    account_id: str = Field(default="", max_length=64)
    opportunity_id: str = Field(default="", max_length=64)
    title: str = Field(sa_column=_text())
    due_at: Optional[datetime] = Field(default=None)
    done: bool = False
    done_at: Optional[datetime] = Field(default=None)
    source: str = Field(default="", max_length=300)
    actor: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class Store(SQLModel, table=True):
    __tablename__ = "crm_store"
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    account_id: str = Field(default="", max_length=64)
    region: str = Field(default="", max_length=64)
    address: str = Field(default="", max_length=300)
    supervisor_id: str = Field(default="", max_length=64, index=True)


class StoreVisit(SQLModel, table=True):
    __tablename__ = "crm_store_visit"
    __table_args__ = (Index("ix_crm_store_visit_store", "tenant", "store_id", "visited_at"),
                      Index("ix_crm_store_visit_rep", "tenant", "rep_id", "visited_at"))
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    store_id: str = Field(max_length=64)
    rep_id: str = Field(default="", max_length=64)
    visited_at: datetime = Field()
    display_ok: Optional[bool] = None  # None: not checked
    stock_issues: str = Field(default="", sa_column=_text())
    competitor_promo: str = Field(default="", sa_column=_text())
    order_amount: Optional[float] = None
    notes: str = Field(default="", sa_column=_text())
    source: str = Field(default="", max_length=300)
    actor: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=_now)


class CrmWrite(SQLModel, table=True):
    """One row per write: the idempotency record (a replayed key returns `result`) and the audit trail."""

    __tablename__ = "crm_write"
    __table_args__ = (Index("ix_crm_write_actor", "tenant", "actor", "at"),)
    tenant: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=200)
    op: str = Field(max_length=32)
    entity: str = Field(max_length=32)
    entity_id: str = Field(max_length=64)
    actor: str = Field(default="", max_length=64)
    source: str = Field(default="", max_length=300)
    at: datetime = Field(default_factory=_now)
    result: str = Field(default="{}", sa_column=_text("{}"))


class SyncEvent(SQLModel, table=True):
    """The sync outbox: one row per CRM write, written in the write's own transaction."""

    __tablename__ = "crm_sync_event"
    id: Optional[int] = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    entity: str = Field(max_length=32)  # account|contact|opportunity|activity|task|store|store_visit
    entity_id: str = Field(max_length=64)
    op: str = Field(max_length=16)  # create|update|upsert
    idempotency_key: str = Field(max_length=200)
    payload: str = Field(sa_column=_text())  # the record as it was after the write (JSON)
    actor: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=_now)


class SyncSink(SQLModel, table=True):
    """A configured destination. Writes fan out to every enabled sink in the same transaction."""

    __tablename__ = "crm_sync_sink"
    name: str = Field(primary_key=True, max_length=64)
    enabled: bool = True
    created_at: datetime = Field(default_factory=_now)


class SyncDelivery(SQLModel, table=True):
    __tablename__ = "crm_sync_delivery"
    __table_args__ = (Index("ix_crm_sync_delivery_due", "sink", "status", "event_id"),)
    event_id: int = Field(primary_key=True)
    sink: str = Field(primary_key=True, max_length=64)
    status: str = Field(default="pending", max_length=16)  # pending|sending|delivered|dead
    attempts: int = 0
    not_before: float = 0.0
    error: str = Field(default="", sa_column=_text())
    delivered_at: Optional[datetime] = Field(default=None)


class ExternalId(SQLModel, table=True):
    """Local record -> the external CRM's id: what makes a re-delivery an update, not a duplicate."""

    __tablename__ = "crm_external_id"
    sink: str = Field(primary_key=True, max_length=64)
    tenant: str = Field(primary_key=True, max_length=64)
    entity: str = Field(primary_key=True, max_length=32)
    local_id: str = Field(primary_key=True, max_length=64)
    external_id: str = Field(max_length=64)


class HealthDay(SQLModel, table=True):
    __tablename__ = "crm_health_day"
    tenant: str = Field(primary_key=True, max_length=64)
    rep_id: str = Field(primary_key=True, max_length=64)
    day: date = Field(primary_key=True)
    role: str = Field(default="rep", max_length=16)
    score: float = 0.0
    below: bool = False
    streak: int = 0  # consecutive scored days below the threshold, ending with this one
    streak_start: Optional[date] = None
    metrics: str = Field(default="{}", sa_column=_text("{}"))
    computed_at: datetime = Field(default_factory=_now)


class NudgeLog(SQLModel, table=True):
    """Every nudge, digest and alert sent, keyed so that each is sent at most once."""

    __tablename__ = "crm_nudge_log"
    __table_args__ = (Index("ix_crm_nudge_log_recipient", "tenant", "recipient", "created_at"),)
    tenant: str = Field(primary_key=True, max_length=64)
    kind: str = Field(primary_key=True, max_length=32)  # digest|overdue|idle|content|health_coach|health_alert|store_summary
    subject: str = Field(primary_key=True, max_length=64)  # the rep, task or opportunity it is about
    period: str = Field(primary_key=True, max_length=64)  # the day, the due date, the streak start...
    recipient: str = Field(default="", max_length=64)
    tier: int = 0
    detail: str = Field(default="", sa_column=_text())
    created_at: datetime = Field(default_factory=_now)


class Lease(SQLModel, table=True):
    """A named lease for leader election: whoever holds an unexpired lease does the work."""

    __tablename__ = "lease"
    name: str = Field(primary_key=True, max_length=64)
    owner: str = Field(default="", max_length=200)
    until: float = 0.0
