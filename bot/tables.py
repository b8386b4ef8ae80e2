"""Tables owned by the bot: the durable inbox, the reply outbox, platform identities, audit."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.models import utcnow


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("channel", "tenant", "platform_msg_id", name="uq_inbox_msg"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    tenant: str = Field(max_length=64)
    platform_msg_id: str = Field(max_length=200)
    conversation_key: str = Field(max_length=300, index=True)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="queued", max_length=16, index=True)  # queued|processing|done|dead
    attempts: int = 0
    not_before: float = 0.0
    lease_owner: str = Field(default="", max_length=120)
    lease_until: float = 0.0
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None


class OutboundRow(SQLModel, table=True):
    """A reply waiting for delivery. Written in the same transaction that finishes its inbox row."""

    __tablename__ = "outbound"
    id: Optional[int] = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200, unique=True)
    inbox_id: Optional[int] = Field(default=None, index=True)
    channel: str = Field(max_length=32, index=True)
    tenant: str = Field(max_length=64)
    conversation_key: str = Field(max_length=300, index=True)
    target: str = Field(sa_column=Column(Text, nullable=False))
    reply: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16, index=True)  # pending|sent|dead
    attempts: int = 0
    not_before: float = 0.0
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: Optional[datetime] = None


class Identity(SQLModel, table=True):
    """(channel, tenant, platform user id) -> one rep. One person across WeCom, DingTalk, email."""

    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("channel", "tenant", "platform_user_id", name="uq_identity"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    tenant: str = Field(max_length=64)
    platform_user_id: str = Field(max_length=200)
    rep_id: str = Field(max_length=64, index=True)


class PendingUser(SQLModel, table=True):
    """Someone wrote to the bot who is not in the rep directory: waits for an admin."""

    __tablename__ = "pending_user"
    __table_args__ = (UniqueConstraint("channel", "tenant", "platform_user_id", name="uq_pending_user"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    tenant: str = Field(max_length=64)
    platform_user_id: str = Field(max_length=200)
    display_name: str = ""
    first_seen: datetime = Field(default_factory=utcnow)
    status: str = Field(default="pending", max_length=16)  # pending|approved|ignored


class AuditRow(SQLModel, table=True):
    """Every tool call, model call and write: who, what, when (never prompt text unless debug)."""

    __tablename__ = "audit"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    tenant: str = Field(default="default", max_length=64)
    actor: str = Field(default="", max_length=64, index=True)
    kind: str = Field(max_length=32, index=True)  # tool|model|write|send|ingest|admin
    name: str = Field(max_length=64)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


class ModelUsage(SQLModel, table=True):
    """Tokens a conversation has spent on the model (for the per-conversation budget)."""

    __tablename__ = "model_usage"
    conversation_key: str = Field(primary_key=True, max_length=300)
    tokens: int = 0


class PendingRow(SQLModel, table=True):
    """Something waiting for a person's explicit yes: a CRM write, a draft to send, a document to publish."""

    __tablename__ = "pending"
    id: str = Field(primary_key=True, max_length=40)
    tenant: str = Field(default="default", max_length=64)
    rep_id: str = Field(max_length=64, index=True)  # who may decide
    conversation_key: str = Field(default="", max_length=300, index=True)
    kind: str = Field(max_length=32)  # crm_log | send_draft | kb_publish | ...
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16, index=True)  # pending|executing|done|rejected|superseded
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: Optional[datetime] = None
    result: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class AgentTurn(SQLModel, table=True):
    """What one reply was based on (for /why, feedback and draft A/B measurement)."""

    __tablename__ = "agent_turn"
    id: Optional[int] = Field(default=None, primary_key=True)
    tenant: str = Field(default="default", max_length=64)
    rep_id: str = Field(max_length=64, index=True)
    conversation_key: str = Field(default="", max_length=300, index=True)
    job: str = Field(max_length=32)
    prompt_version: str = Field(default="", max_length=32)
    evidence: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    created_at: datetime = Field(default_factory=utcnow)
