"""Who is who: platform identities of directory people, and senders waiting for an admin."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from connectors.message import utcnow


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
