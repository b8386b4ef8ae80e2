"""The Audit page (admin): one timeline of every model call, tool call (each job the agent ran), CRM write, reply
sent, sign-in and change made in the console, filterable by kind, person, day and text, and exportable as CSV.

It reads the trails where they already are (the audit table, agent turns, the CRM's write log, the outbox): nothing
is copied into a second log. Never prompt text or model output: those never reach these tables."""
from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import or_, select

from bot.agent.tables import AgentTurn
from bot.ops.tables import AuditRow
from bot.pipeline.tables import OutboundRow
from bot.web.console.shell import Shell, local
from crm.models import CrmWrite

if TYPE_CHECKING:
    from bot.app import App

HOME = "/console/audit"
KINDS = ("model", "tool", "crm", "send", "signin", "admin", "read")
SHOWN = 300  # rows on the page (the CSV has up to EXPORTED)
EXPORTED = 20_000


@dataclass(frozen=True)
class Event:
    at: datetime  # UTC
    kind: str
    actor: str
    name: str
    detail: str


@dataclass(frozen=True)
class Filters:
    kinds: tuple[str, ...]
    actor: str
    since: date | None
    until: date | None
    text: str

    @classmethod
    def of(cls, query) -> "Filters":
        kinds = tuple(k for k in query.getall("kind", []) if k in KINDS) or KINDS
        return cls(kinds, query.get("actor", "").strip()[:64], _day(query.get("since")), _day(query.get("until")), query.get("q", "").strip()[:100])

    def bounds(self, tz: str) -> tuple[datetime | None, datetime | None]:
        """The days as UTC instants, naive (how the tables store them)."""
        z = ZoneInfo(tz)
        start = datetime.combine(self.since, time(), z).astimezone(timezone.utc).replace(tzinfo=None) if self.since else None
        end = datetime.combine(self.until + timedelta(days=1), time(), z).astimezone(timezone.utc).replace(tzinfo=None) if self.until else None
        return start, end


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _utc(v: datetime | str) -> datetime:
    v = datetime.fromisoformat(v) if isinstance(v, str) else v
    return v.replace(tzinfo=None) if v.tzinfo is None else v.astimezone(timezone.utc).replace(tzinfo=None)


def events(engine, tenant: str, f: Filters, tz: str, limit: int) -> list[Event]:
    """The newest `limit` events that pass the filters, newest first."""
    start, end = f.bounds(tz)
    like = f"%{f.text}%" if f.text else None
    out: list[Event] = []

    def span(col):
        return [c for c in ((col >= start) if start else None, (col < end) if end else None) if c is not None]

    with engine.connect() as conn:
        kinds = [k for k in f.kinds if k in ("model", "signin", "admin", "read")]
        if kinds:
            a = AuditRow.__table__.c
            q = select(a).where(a.tenant == tenant, a.kind.in_(kinds), *span(a.at))
            q = q.where(a.actor == f.actor) if f.actor else q
            q = q.where(or_(a.name.like(like), a.detail.like(like))) if like else q
            out += [Event(_utc(r.at), r.kind, r.actor, r.name, r.detail) for r in conn.execute(q.order_by(a.at.desc()).limit(limit))]
        if "tool" in f.kinds:
            t = AgentTurn.__table__.c
            q = select(t.created_at, t.rep_id, t.job, t.prompt_version, t.conversation_key).where(t.tenant == tenant, *span(t.created_at))
            q = q.where(t.rep_id == f.actor) if f.actor else q
            q = q.where(or_(t.job.like(like), t.conversation_key.like(like))) if like else q
            out += [Event(_utc(r.created_at), "tool", r.rep_id, r.job, json.dumps({"conversation": r.conversation_key, "prompt": r.prompt_version},
                                                                                   ensure_ascii=False))
                    for r in conn.execute(q.order_by(t.created_at.desc()).limit(limit))]
        if "crm" in f.kinds:
            w = CrmWrite.__table__.c
            q = select(w.at, w.actor, w.op, w.entity, w.entity_id, w.source).where(w.tenant == tenant, *span(w.at))
            q = q.where(w.actor == f.actor) if f.actor else q
            q = q.where(or_(w.op.like(like), w.entity_id.like(like), w.source.like(like))) if like else q
            out += [Event(_utc(r.at), "crm", r.actor, f"{r.op} {r.entity}", json.dumps({"id": r.entity_id, "source": r.source}, ensure_ascii=False))
                    for r in conn.execute(q.order_by(w.at.desc()).limit(limit))]
        if "send" in f.kinds:
            o = OutboundRow.__table__.c
            q = select(o.sent_at, o.channel, o.conversation_key, o.target, o.dedupe_key).where(o.tenant == tenant, o.status == "sent",
                                                                                               *span(o.sent_at))
            q = q.where(o.target.like(f'%"{f.actor}"%')) if f.actor else q
            q = q.where(or_(o.conversation_key.like(like), o.dedupe_key.like(like))) if like else q
            for r in conn.execute(q.order_by(o.sent_at.desc()).limit(limit)):
                to = _recipient(r.target)
                if not f.actor or to == f.actor:
                    out.append(Event(_utc(r.sent_at), "send", to, r.channel, json.dumps({"conversation": r.conversation_key, "key": r.dedupe_key},
                                                                                       ensure_ascii=False)))
    out.sort(key=lambda e: e.at, reverse=True)
    return out[:limit]


def _recipient(target: str) -> str:
    try:
        return str(json.loads(target).get("user_id") or "")
    except (ValueError, AttributeError):
        return ""


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def routes(shell: Shell, app: App) -> list[web.RouteDef]:
    tenant, tz = app.settings.tenant, app.settings.timezone
    page = shell.page("audit")
    zone = ZoneInfo(tz)

    def local_time(e: Event) -> str:
        return e.at.replace(tzinfo=timezone.utc).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    @page
    async def index(request: web.Request) -> web.Response:
        f = Filters.of(request.query)
        rows = await asyncio.to_thread(events, app.engine, tenant, f, tz, SHOWN + 1)
        people = sorted(p.id for p in await asyncio.to_thread(app.directory.list, tenant))
        export = request.rel_url.with_path(HOME + ".csv")
        return shell.render(request, "audit.html", "audit", {"rows": [(local_time(e), e) for e in rows[:SHOWN]], "more": len(rows) > SHOWN,
                                                             "f": f, "kinds": KINDS, "people": people, "export": str(export), "tz": tz})

    @page
    async def export(request: web.Request) -> web.StreamResponse:
        f = Filters.of(request.query)
        rows = await asyncio.to_thread(events, app.engine, tenant, f, tz, EXPORTED)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["at", "kind", "actor", "name", "detail"])
        for e in rows:
            w.writerow([local_time(e), e.kind, _cell(e.actor), _cell(e.name), _cell(e.detail)])
        await asyncio.to_thread(shell.note, request, "audit_export", {"rows": len(rows), "kinds": list(f.kinds)})
        return web.Response(body=("\ufeff" + out.getvalue()).encode("utf-8"), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="audit-{date.today().isoformat()}.csv"', "Cache-Control": "no-store"})

    return [web.get(local(HOME), index), web.get(local(HOME) + ".csv", export)]
