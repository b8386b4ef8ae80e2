"""CRM tables (sqlmodel)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(timezone.utc)


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
