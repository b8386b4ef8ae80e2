"""The pipeline's tables: the durable inbox and the reply outbox."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from connectors.message import utcnow


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("channel", "tenant", "platform_msg_id", name="uq_inbox_msg"),
        # a claim looks for an earlier unfinished row of the conversation: only unfinished rows are indexed, so a
        # conversation's long history costs nothing (bot/pipeline/inbox.py)
        Index("ix_inbox_unfinished", "conversation_key", "id", sqlite_where=text("status IN ('queued', 'processing')"),
              postgresql_where=text("status IN ('queued', 'processing')")),
    )
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
