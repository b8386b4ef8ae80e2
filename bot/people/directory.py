"""The rep directory: (channel, tenant, platform user id) -> one person with a role and a team."""
from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.people.tables import Identity, PendingUser
from bot.settings import ROLES
from connectors.message import Target
from connectors.sql import insert_ignore
from crm.models import Rep


class DirectoryError(ValueError):
    pass


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    role: str
    team: str
    tenant: str
    timezone: str
    language: str
    email: str = ""
    manager_id: str = ""
    preferred_channel: str = "console"

    @classmethod
    def of(cls, r: Rep) -> "Person":
        return cls(r.id, r.name, r.role, r.team, r.tenant, r.timezone, r.language, r.email, r.manager_id, r.preferred_channel)


class Directory:
    CACHE_SECONDS = 30.0  # a change made by another process shows within this time

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[tuple[str, str, str], tuple[float, Person | None]] = {}

    def add(self, rep_id: str, name: str, role: str, *, team: str = "", tenant: str = "default", channel: str = "console",
            platform_user_id: str | None = None, email: str = "", timezone: str = "Asia/Shanghai", language: str = "zh",
            manager_id: str = "") -> Person:
        if role not in ROLES:
            raise DirectoryError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        if not rep_id.strip():
            raise DirectoryError("a rep id cannot be empty")
        with Session(self.engine) as s:
            rep = s.get(Rep, rep_id)
            if rep is not None and rep.tenant != tenant:  # ids are global: never move a person between tenants
                raise DirectoryError(f"{rep_id!r} already exists in tenant {rep.tenant!r}; a person cannot be moved to "
                                     f"tenant {tenant!r}: choose another id")
            rep = rep or Rep(id=rep_id, name=name)
            rep.name, rep.role, rep.team, rep.tenant = name or rep.name, role, team, tenant
            rep.email = email or rep.email
            rep.timezone, rep.language = timezone or rep.timezone, language or rep.language
            rep.manager_id = manager_id or rep.manager_id
            if channel != "email":  # email is not a chat channel: nudges go to a chat
                rep.preferred_channel = channel
            s.add(rep)
            s.commit()
        self._cache.clear()
        self.link(rep_id, channel, platform_user_id or (email if channel == "email" else rep_id), tenant=tenant)
        return self.get(tenant, rep_id)

    def link(self, rep_id: str, channel: str, platform_user_id: str, *, tenant: str = "default") -> None:
        if not platform_user_id:
            return
        with Session(self.engine) as s:
            s.execute(insert_ignore(self.engine, Identity.__table__, dict(channel=channel, tenant=tenant, platform_user_id=platform_user_id, rep_id=rep_id)))
            pending = s.exec(select(PendingUser).where(PendingUser.channel == channel, PendingUser.tenant == tenant,
                                                       PendingUser.platform_user_id == platform_user_id)).first()
            if pending is not None:
                pending.status = "approved"
                s.add(pending)
            s.commit()
        self._cache.clear()

    def get(self, tenant: str, rep_id: str) -> Person:
        """The active person `rep_id` of `tenant`; a person of another tenant is unknown here."""
        rep = self._rep(rep_id)
        if rep is None or rep.tenant != tenant:
            raise DirectoryError(f"unknown rep {rep_id!r}: add it with `copilot reps add {rep_id} --name ... --role rep`")
        return Person.of(rep)

    def exists(self, rep_id: str) -> bool:
        """Whether the id is taken in any tenant (ids are global), active or not."""
        with Session(self.engine) as s:
            return s.get(Rep, rep_id) is not None

    def _rep(self, rep_id: str) -> Rep | None:
        with Session(self.engine) as s:
            rep = s.get(Rep, rep_id)
            return rep if rep is not None and rep.active else None

    def resolve(self, channel: str, tenant: str, platform_user_id: str) -> Person | None:
        key = (channel, tenant, platform_user_id)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.CACHE_SECONDS:
            return hit[1]
        person = self._resolve(channel, tenant, platform_user_id)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (now, person)
        return person

    def _resolve(self, channel: str, tenant: str, platform_user_id: str) -> Person | None:
        with Session(self.engine) as s:
            row = s.exec(
                select(Rep).join(Identity, Identity.rep_id == Rep.id).where(
                    Identity.channel == channel, Identity.tenant == tenant, Identity.platform_user_id == platform_user_id, Rep.active == True  # noqa: E712
                )
            ).first()
            return Person.of(row) if row else None

    def identities(self, rep_id: str) -> list[Identity]:
        with Session(self.engine) as s:
            return list(s.exec(select(Identity).where(Identity.rep_id == rep_id)).all())

    def target_for(self, rep_id: str, channels: Collection[str] = ()) -> Target:
        """Where to reach a person unprompted: their preferred chat channel when this deployment runs it
        (`channels`), else the web console (their conversation `web-<id>`)."""
        rep = self._rep(rep_id)
        if rep is None:
            raise DirectoryError(f"unknown rep {rep_id!r}")
        person = Person.of(rep)
        ids = self.identities(rep_id)
        if person.preferred_channel != "console" and person.preferred_channel in channels:
            for i in ids:
                if i.channel == person.preferred_channel and i.tenant == person.tenant:
                    return Target(channel=i.channel, tenant=i.tenant, conversation_id=i.platform_user_id, user_id=i.platform_user_id)
        console = next((i.platform_user_id for i in ids if i.channel == "console"), rep_id)
        return Target(channel="console", tenant=person.tenant, conversation_id=f"web-{console}", user_id=console)

    def update(self, tenant: str, rep_id: str, *, role: str, team: str) -> Person:
        """Change a person's role and team (a permission change: the caller audits it)."""
        if role not in ROLES:
            raise DirectoryError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        with Session(self.engine) as s:
            rep = s.get(Rep, rep_id)
            if rep is None or rep.tenant != tenant or not rep.active:
                raise DirectoryError(f"unknown rep {rep_id!r}")
            rep.role, rep.team = role, team.strip()
            s.add(rep)
            s.commit()
        self._cache.clear()
        return self.get(tenant, rep_id)

    def ignore(self, tenant: str, pending_id: int) -> bool:
        """Stop listing a sender who waits for approval (they stay unknown to the copilot)."""
        with Session(self.engine) as s:
            row = s.get(PendingUser, pending_id)
            if row is None or row.tenant != tenant or row.status != "pending":
                return False
            row.status = "ignored"
            s.add(row)
            s.commit()
        return True

    def by_role(self, tenant: str, *roles: str) -> list[Person]:
        return [p for p in self.list(tenant) if p.role in roles]

    def note_unknown(self, channel: str, tenant: str, platform_user_id: str, display_name: str) -> bool:
        """Record an unknown sender for an admin to approve; True the first time."""
        with Session(self.engine) as s:
            res = s.execute(insert_ignore(self.engine, PendingUser.__table__, dict(
                channel=channel, tenant=tenant, platform_user_id=platform_user_id, display_name=display_name, status="pending")))
            s.commit()
            return bool(res.rowcount)

    def pending(self) -> list[PendingUser]:
        with Session(self.engine) as s:
            return list(s.exec(select(PendingUser).where(PendingUser.status == "pending")).all())

    def summaries(self, tenant: str) -> list[dict]:
        return [{"id": p.id, "name": p.name, "role": p.role, "team": p.team} for p in self.list(tenant)]

    def list(self, tenant: str | None = None) -> list[Person]:
        with Session(self.engine) as s:
            q = select(Rep).where(Rep.active == True)  # noqa: E712
            if tenant:
                q = q.where(Rep.tenant == tenant)
            return [Person.of(r) for r in s.exec(q.order_by(Rep.id)).all()]
