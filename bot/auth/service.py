"""Passwords, one-time sign-in links and signed session cookies.

Why signed cookies and not a session table: a request costs one primary-key read (the person's `epoch`), nothing
is written per request, nothing grows, and sessions survive a restart. Revocation is per person: sign-out and a
new password bump `login.epoch`, which voids every cookie issued before (sign-out signs out everywhere). A cookie
carries the person, the epoch, when it was issued (absolute expiry) and when it was last seen (idle expiry; the
web edge re-issues it at most once a minute), and a random nonce from which its CSRF token is derived.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.auth.tables import Login, SignInLink
from bot.people.directory import Directory, DirectoryError, Person
from bot.settings import ROLES
from connectors.message import utcnow
from crm.models import Rep

MIN_PASSWORD = 8
EPOCH_TTL = 1.0  # seconds a session counter read is reused


class AuthError(ValueError):
    """A sign-in request that cannot be honoured (the message says why)."""


@dataclass(frozen=True)
class WebSession:
    rep_id: str
    tenant: str
    epoch: int
    issued: float
    seen: float
    nonce: str
    by: str = ""  # demo mode: the admin who switched to this person (and may switch again)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Auth:
    """Everything sign-in knows. `secret` is the server's key (data_dir/secret.key); keys for cookies and CSRF
    tokens are derived from it, so a leaked cookie key is not a link-signing key."""

    def __init__(self, engine: Engine, directory: Directory, secret: bytes, *, idle: float = 12 * 3600,
                 absolute: float = 7 * 24 * 3600, link_ttl: float = 15 * 60) -> None:
        self.engine = engine
        self.directory = directory
        self._key = hmac.new(secret, b"copilot session cookie", hashlib.sha256).digest()
        self.idle, self.absolute, self.link_ttl = idle, absolute, link_ttl
        self._hasher = PasswordHasher()
        self._dummy = self._hasher.hash(secrets.token_hex(16))  # verified against for unknown names: same cost
        # epochs read in the last second: a request costs no query then (this process's sign-outs and new passwords
        # forget theirs at once; another process's, e.g. `copilot user add`, count within a second)
        self._epochs: dict[str, tuple[float, int]] = {}

    # people and passwords -------------------------------------------------------------------
    def add_user(self, rep_id: str, role: str, tenant: str, password: str | None = None) -> Person:
        """Create (or change the role of) a person who signs in to the web; set their password when given."""
        if role not in ROLES:
            raise AuthError(f"role must be one of {', '.join(ROLES)}")
        if password is not None and len(password) < MIN_PASSWORD:
            raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")
        try:
            if self.directory.exists(rep_id):  # someone already known: only the role changes (and the web chat reaches them)
                self.directory.get(tenant, rep_id)  # of this tenant, and active
                with Session(self.engine) as s:
                    rep = s.get(Rep, rep_id)
                    rep.role = role
                    s.add(rep)
                    s.commit()
                self.directory.link(rep_id, "console", rep_id, tenant=tenant)
                person = self.directory.get(tenant, rep_id)
            else:
                person = self.directory.add(rep_id, rep_id, role, tenant=tenant, channel="console", platform_user_id=rep_id)
        except DirectoryError as exc:
            raise AuthError(str(exc)) from None
        with Session(self.engine) as s:
            row = s.get(Login, rep_id) or Login(rep_id=rep_id, tenant=tenant)
            if password is not None:
                row.password_hash = self._hasher.hash(password)
                row.epoch += 1  # a new password signs out every old session
            row.tenant, row.updated_at = tenant, utcnow()
            s.add(row)
            s.commit()
        self._epochs.pop(rep_id, None)
        return person

    def has_admin_password(self, tenant: str) -> bool:
        """Whether sign-in is configured: some admin of `tenant` has a password."""
        admins = {p.id for p in self.directory.by_role(tenant, "admin")}
        with Session(self.engine) as s:
            rows = s.exec(select(Login).where(Login.tenant == tenant, Login.password_hash != "")).all()
        return any(r.rep_id in admins for r in rows)

    def check_password(self, tenant: str, rep_id: str, password: str) -> Person | None:
        """The person whose password this is, or None (an unknown name costs the same hash as a known one)."""
        with Session(self.engine) as s:
            row = s.get(Login, rep_id)
        stored = row.password_hash if row is not None and row.tenant == tenant and row.password_hash else ""
        try:
            self._hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        if not stored:
            return None
        try:
            return self.directory.get(tenant, rep_id)
        except DirectoryError:
            return None

    # one-time links -------------------------------------------------------------------------
    def one_time_token(self, tenant: str, rep_id: str, now: float | None = None) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time() if now is None else now
        with Session(self.engine) as s:
            s.add(SignInLink(token_hash=hashlib.sha256(token.encode()).hexdigest(), tenant=tenant, rep_id=rep_id,
                             expires_at=now + self.link_ttl))
            s.commit()
        return token

    def link_person(self, tenant: str, token: str, now: float | None = None) -> Person | None:
        """Whom an unused, unexpired one-time token would sign in (without using it up)."""
        now = time.time() if now is None else now
        with Session(self.engine) as s:
            row = s.get(SignInLink, hashlib.sha256(token.encode()).hexdigest())
        if row is None or row.tenant != tenant or row.used_at is not None or row.expires_at <= now:
            return None
        try:
            return self.directory.get(tenant, row.rep_id)
        except DirectoryError:
            return None

    def redeem(self, tenant: str, token: str, now: float | None = None) -> Person | None:
        """The person a one-time token signs in, once: a conditional update, so two redemptions cannot both win."""
        now = time.time() if now is None else now
        digest = hashlib.sha256(token.encode()).hexdigest()
        t = SignInLink.__table__
        with self.engine.begin() as conn:
            won = conn.execute(update(t).where(t.c.token_hash == digest, t.c.tenant == tenant, t.c.used_at.is_(None),
                                               t.c.expires_at > now).values(used_at=now)).rowcount
            rep_id = conn.execute(select(t.c.rep_id).where(t.c.token_hash == digest)).scalar() if won else None
        if not rep_id:
            return None
        try:
            return self.directory.get(tenant, rep_id)
        except DirectoryError:
            return None

    # sessions -------------------------------------------------------------------------------
    def is_cached(self, rep_id: str) -> bool:
        """Whether `epoch(rep_id)` answers from memory (no database query, safe on the event loop)."""
        cached = self._epochs.get(rep_id)
        return cached is not None and cached[0] > time.monotonic()

    def epoch(self, rep_id: str) -> int:
        now = time.monotonic()
        cached = self._epochs.get(rep_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        with Session(self.engine) as s:
            row = s.get(Login, rep_id)
        epoch = row.epoch if row is not None else 0
        if len(self._epochs) > 10_000:
            self._epochs.clear()
        self._epochs[rep_id] = (now + EPOCH_TTL, epoch)
        return epoch

    def revoke(self, rep_id: str, tenant: str) -> None:
        """Void every session of this person (sign-out)."""
        with Session(self.engine) as s:
            row = s.get(Login, rep_id) or Login(rep_id=rep_id, tenant=tenant)
            row.epoch += 1
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
        self._epochs.pop(rep_id, None)

    def issue(self, person: Person, now: float | None = None, *, by: str = "") -> str:
        now = time.time() if now is None else now
        return self._sign(WebSession(person.id, person.tenant, self.epoch(person.id), now, now, secrets.token_urlsafe(12), by))

    def touch(self, ses: WebSession, now: float | None = None) -> str:
        """The same session, seen now (extends the idle expiry, never the absolute one)."""
        now = time.time() if now is None else now
        return self._sign(WebSession(ses.rep_id, ses.tenant, ses.epoch, ses.issued, now, ses.nonce, ses.by))

    def _unsealed(self, cookie: str) -> WebSession | None:
        """What a cookie says, if we signed it (nothing checked against time or the database yet)."""
        body, _, sig = (cookie or "").partition(".")
        try:
            if not body or not hmac.compare_digest(_b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest()), sig):
                return None
            d = json.loads(_unb64(body))
            return WebSession(str(d["u"]), str(d["t"]), int(d["e"]), float(d["i"]), float(d["s"]), str(d["n"]), str(d.get("b", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def peek(self, cookie: str) -> str | None:
        """The person id a validly signed cookie names (no expiry or revocation checked)."""
        ses = self._unsealed(cookie)
        return ses.rep_id if ses is not None else None

    def read(self, cookie: str, now: float | None = None) -> WebSession | None:
        """The session a cookie holds, if its signature, expiries and epoch are all good."""
        now = time.time() if now is None else now
        ses = self._unsealed(cookie)
        if ses is None:
            return None
        if now - ses.issued > self.absolute or now - ses.seen > self.idle or ses.seen > now + 60:
            return None
        if ses.epoch != self.epoch(ses.rep_id):
            return None
        return ses

    def csrf(self, ses: WebSession) -> str:
        return self.form_token("session:" + ses.nonce)

    def form_token(self, nonce: str) -> str:
        """A CSRF token bound to `nonce` (a session's, or the sign-in form's cookie)."""
        return _b64(hmac.new(self._key, b"csrf\n" + nonce.encode(), hashlib.sha256).digest()[:24])

    def _sign(self, ses: WebSession) -> str:
        body = _b64(json.dumps({"u": ses.rep_id, "t": ses.tenant, "e": ses.epoch, "i": ses.issued, "s": ses.seen, "n": ses.nonce, "b": ses.by},
                               separators=(",", ":")).encode())
        return body + "." + _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
