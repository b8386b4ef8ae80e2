"""Conversations & feedback (enablement and admin: everyone; managers: their team): the questions the copilot
declined (nothing relevant enough) and the answers people rated 👎 (or 👍), each with the question, the answer and the
passages it was based on, so enablement sees what content is missing; and a one-step form that turns one of them
into a knowledge entry (published through the same upload path as every file)."""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from bot.agent.tables import AgentTurn
from bot.web.console.document import doc_url
from bot.web.console.shell import Shell, back, form_value, local
from bot.web.session import PERSON
from rag.store import Chunk, Document, Feedback

if TYPE_CHECKING:
    from bot.app import App

HOME = "/console/conversations"
KINDS = ("declined", "disliked", "liked")
DAYS = (7, 30, 90)
SHOWN = 100


def entry_id(turn_id: int) -> str:
    return f"faq-turn-{turn_id}"


def items(engine, tenant: str, kind: str, since: datetime, rep_ids: set[str] | None) -> list[dict]:
    """The turns of one kind since `since`, newest first, with their evidence and the passages' text."""
    t, fb = AgentTurn.__table__.c, Feedback.__table__.c
    with engine.connect() as conn:
        if kind == "declined":
            rows = conn.execute(select(t).where(t.tenant == tenant, t.job == "answer", t.created_at >= since).order_by(t.id.desc())).all()
            rows = [r for r in rows if not json.loads(r.evidence or "{}").get("grounded", True)]
        else:
            refs = conn.execute(select(fb.ref).where(fb.tenant == tenant, fb.score < 0 if kind == "disliked" else fb.score > 0, fb.at >= since)
                                .distinct()).scalars().all()
            ids = [int(r[5:]) for r in refs if r.startswith("turn:") and r[5:].isdigit()]
            rows = conn.execute(select(t).where(t.tenant == tenant, t.id.in_(ids)).order_by(t.id.desc())).all() if ids else []
        rows = [r for r in rows if rep_ids is None or r.rep_id in rep_ids][:SHOWN]
        evidence = {r.id: json.loads(r.evidence or "{}") for r in rows}
        chunk_ids = {p.get("chunk_id") for e in evidence.values() for p in e.get("passages", []) if p.get("chunk_id")}
        texts = dict(conn.execute(select(Chunk.id, Chunk.text).where(Chunk.id.in_(chunk_ids))).all()) if chunk_ids else {}
        made = set(conn.execute(select(Document.doc_id).where(Document.tenant == tenant, Document.doc_id.in_([entry_id(r.id) for r in rows])))
                   .scalars().all()) if rows else set()
    out = []
    for r in rows:
        e = evidence[r.id]
        passages = [{**p, "text": texts.get(p.get("chunk_id", ""), "")} for p in e.get("passages", []) if "title" in p]
        out.append({"id": r.id, "at": r.created_at, "rep_id": r.rep_id, "question": e.get("question", ""), "answer": e.get("answer", ""),
                    "passages": passages, "entry": entry_id(r.id) if entry_id(r.id) in made else ""})
    return out


def entry_markdown(title: str, body: str, audience: str, owner: str, turn_id: int) -> bytes:
    """A knowledge entry as Markdown with front matter (values as JSON strings: valid YAML, nothing in them can break out)."""
    meta = {"id": entry_id(turn_id), "title": title, "type": "faq", "audience": audience, "owner": owner}
    head = "\n".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in meta.items())
    return f"---\n{head}\n---\n# {title}\n\n{body.strip()}\n".encode()


def routes(shell: Shell, app: App) -> list[web.RouteDef]:
    tenant, tz = app.settings.tenant, app.settings.timezone
    page = shell.page("conversations")

    async def scope(request: web.Request) -> set[str] | None:
        """Whose conversations this person may review: a manager their team's, enablement and admins everyone's."""
        me = request[PERSON]
        if me.role in ("enablement", "admin"):
            return None
        return {p.id for p in await asyncio.to_thread(app.directory.list, tenant) if p.team == me.team and me.team}

    def asker(turn_id: int):
        t = AgentTurn.__table__.c
        with app.engine.connect() as conn:
            return conn.execute(select(t.rep_id).where(t.id == turn_id, t.tenant == tenant)).first()

    @page
    async def index(request: web.Request) -> web.Response:
        kind = request.query.get("kind", "declined")
        kind = kind if kind in KINDS else "declined"
        days = int(request.query.get("days", "30")) if request.query.get("days", "30") in {str(d) for d in DAYS} else 30
        since = datetime.now(timezone.utc) - timedelta(days=days)
        rows = await asyncio.to_thread(items, app.engine, tenant, kind, since, await scope(request))
        names = {p.id: p.name for p in await asyncio.to_thread(app.directory.list, tenant)}
        zone = ZoneInfo(tz)
        for r in rows:
            at = r["at"] if isinstance(r["at"], datetime) else datetime.fromisoformat(str(r["at"]))
            r["when"] = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(zone).strftime("%Y-%m-%d %H:%M")
            r["name"] = names.get(r["rep_id"], r["rep_id"])
        return shell.render(request, "conversations.html", "conversations", {"rows": rows, "kind": kind, "kinds": KINDS, "days": days,
                                                                             "day_choices": DAYS, "audiences": ("all", "sales", "managers")})

    @page
    async def entry(request: web.Request) -> web.Response:
        form = await request.post()
        t = shell.words(request)
        turn = form_value(form, "turn", 20)
        title, body = form_value(form, "title", 200), form_value(form, "body", 20_000)
        audience = form_value(form, "audience", 20)
        if not turn.isdigit() or not title or not body or audience not in ("all", "sales", "managers"):
            return back(HOME, t("console_conv_entry_incomplete"), ok=False)
        allowed = await scope(request)
        row = await asyncio.to_thread(asker, int(turn))
        if row is None or (allowed is not None and row.rep_id not in allowed):
            return back(HOME, t("console_not_found_text", what=turn), ok=False)
        me = replace(request[PERSON], language=shell.lang(request))
        data = entry_markdown(title, body, audience, me.id, int(turn))
        reply = await asyncio.to_thread(app.publishing.upload, me, f"{entry_id(int(turn))}.md", data, f"console:turn:{turn}")
        result = reply.meta["ingest"]
        await asyncio.to_thread(shell.note, request, "kb_entry_from_turn", {"turn": int(turn), "doc": result.get("doc_id", ""),
                                                                              "status": result["status"]})
        ok = result["status"] != "error"
        return back(doc_url(result["doc_id"]) if ok else HOME, reply.text, ok)

    return [web.get(local(HOME), index), web.post(local(HOME) + "/entry", entry)]
