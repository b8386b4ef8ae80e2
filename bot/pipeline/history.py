"""One web-chat conversation as its person saw it, for a page that is opened again: their own messages (the
inbox) and the replies delivered to it (the outbox), oldest first, each reply's buttons marked done once their
question was settled, so a reload neither loses what the person wrote nor makes an answered confirmation
clickable again.

A button is done when the person clicked one of its set in this conversation (their action message is in the
inbox), when its confirmation is no longer pending (bot/agent/pending.py: executing, done, rejected or superseded,
whoever settled it and however: a click, a typed "1", another channel), or, for a draft document's approval,
when that version is no longer a draft.
"""
from __future__ import annotations

import asyncio
import json

from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.agent.tables import PendingRow
from bot.pipeline.tables import InboxRow, OutboundRow
from connectors.message import conversation_key
from rag.store import DocVersion

LIMIT = 200  # the newest messages and replies a page shows


def chat_timeline(engine: Engine, channel: str):
    """`timeline(tenant, conversation id)` -> {"items": [...], "after": the newest reply id shown}: each item is
    {"type": "me", "at", "text", "kind", "file", "action"} or {"type": "bot", "id", "at", "reply", "done", "chosen"}."""
    inbox, outbound = InboxRow.__table__, OutboundRow.__table__

    def load(tenant: str, conversation: str) -> dict:
        key = conversation_key(channel, tenant, conversation)
        with engine.connect() as conn:
            mine = conn.execute(select(inbox.c.id, inbox.c.payload, inbox.c.created_at).where(inbox.c.conversation_key == key)
                                .order_by(inbox.c.id.desc()).limit(LIMIT)).all()
            sent = conn.execute(select(outbound.c.id, outbound.c.reply, outbound.c.created_at).where(
                outbound.c.conversation_key == key, outbound.c.status == "sent").order_by(outbound.c.id.desc()).limit(LIMIT)).all()
        items, chosen = [], {}
        for row in mine:
            msg = json.loads(row.payload)
            action = msg.get("action") or {}
            if action.get("ref"):
                chosen.setdefault(action["ref"], action.get("key", ""))  # newest first: the last click wins
            files = msg.get("attachments") or []
            items.append((row.created_at, 0, row.id, {"type": "me", "at": _iso(row.created_at), "text": msg.get("text", ""),
                                                      "kind": msg.get("kind", "text"), "file": files[0].get("name", "") if files else "",
                                                      "action": action.get("key", "")}))
        replies = [(row, json.loads(row.reply)) for row in sent]
        settled = _settled(engine, {b.get("ref", "") for _, r in replies for b in r.get("buttons") or []} - {""})
        for row, reply in replies:
            refs = {b.get("ref", "") for b in reply.get("buttons") or []} - {""}
            done = any(ref in chosen or ref in settled for ref in refs)
            items.append((row.created_at, 1, row.id, {"type": "bot", "id": row.id, "at": _iso(row.created_at), "reply": reply,
                                                      "done": done, "chosen": next((chosen[r] for r in refs if r in chosen), "")}))
        items.sort(key=lambda t: (_naive(t[0]), t[1], t[2]))
        return {"items": [t[3] for t in items[-LIMIT:]], "after": max((row.id for row in sent), default=0)}

    async def timeline(tenant: str, conversation: str) -> dict:
        return await asyncio.to_thread(load, tenant, conversation)

    return timeline


def _settled(engine: Engine, refs: set[str]) -> set[str]:
    """The refs among `refs` whose question is no longer open."""
    if not refs:
        return set()
    pending, versions = PendingRow.__table__, DocVersion.__table__
    drafts = {int(r[4:]): r for r in refs if r.startswith("kbv:") and r[4:].isdigit()}
    with engine.connect() as conn:
        out = {r.id for r in conn.execute(select(pending.c.id).where(pending.c.id.in_(refs), pending.c.status != "pending"))}
        if drafts:
            out |= {drafts[r.id] for r in conn.execute(select(versions.c.id).where(versions.c.id.in_(drafts), versions.c.status != "draft"))}
    return out


def _naive(at):
    return at.replace(tzinfo=None) if at is not None else at


def _iso(at) -> str:
    return at.isoformat() if at is not None else ""
