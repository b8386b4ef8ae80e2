"""The agent's tables: confirmations waiting for a yes, and what each answer was based on."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from connectors.message import utcnow


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
