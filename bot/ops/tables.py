"""The audit trail and the model's token use per conversation."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from connectors.message import utcnow


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
