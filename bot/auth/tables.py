"""The sign-in tables: a person's password and session counter, and one-time sign-in links.

Sessions themselves are signed cookies, not rows (see bot/auth/sessions.py): a request costs one read of
`login.epoch`, nothing is written per request, and bumping the epoch voids every session of that person."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlmodel import Field, SQLModel

from connectors.message import utcnow


class Login(SQLModel, table=True):
    """How a person signs in to the web: an argon2id hash (empty: no password yet) and the revocation counter."""

    __tablename__ = "login"
    rep_id: str = Field(max_length=64, primary_key=True)
    tenant: str = Field(max_length=64)
    password_hash: str = Field(default="", max_length=200)
    epoch: int = 0  # bumped by sign-out and by a new password: every session issued before is void
    updated_at: datetime = Field(default_factory=utcnow)


class SignInLink(SQLModel, table=True):
    """A one-time sign-in link (the first start's admin link): only its SHA-256 is stored."""

    __tablename__ = "signin_link"
    token_hash: str = Field(max_length=64, primary_key=True)
    tenant: str = Field(max_length=64)
    rep_id: str = Field(max_length=64)
    expires_at: float  # unix time
    used_at: Optional[float] = None
