"""What happens after the platform answered: a sent draft is logged and the rep told "sent ✓" only once the
mail server accepted it; a dead letter the rep is waiting on is told to the rep (and the draft reopened, so
nothing is lost); a confirmation left `executing` by a crash returns to pending with a notice.

The factory hands `after_sent` and `after_dead` to the outbox (its on_sent / on_dead) and `sweep` to the
dispatcher's periodic sweeper, at construction. A reply that is no draft costs the outbox nothing here.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Callable

from bot.agent.pending import PendingStore
from bot.prompts import Prompts, ui_lang
from connectors.message import Reply, Target
from crm.service import CRM

log = logging.getLogger("copilot.delivery")


class Delivery:
    def __init__(self, pending: PendingStore, crm: CRM, prompts: Prompts, enqueue: Callable[..., int | None],
                 reach: Callable[[str], Target], *, stale_after: float = 300.0,
                 who: Callable[[Target], tuple[str, str] | None] = lambda target: None) -> None:
        self.who = who  # a reply's target -> (rep id, language) when it is a person of the directory
        self.pending = pending
        self.crm = crm
        self.prompts = prompts
        self.enqueue = enqueue  # (target, reply, dedupe_key)
        self.reach = reach  # rep id -> where to tell them
        self.stale_after = stale_after

    async def after_sent(self, target: Target, reply: Reply, key: str) -> None:
        if isinstance(reply.meta.get("draft"), dict):  # the only replies whose delivery has a follow-up
            await asyncio.to_thread(self.sent, target, reply, key)

    async def after_dead(self, target: Target, reply: Reply, key: str, error: str) -> None:
        await asyncio.to_thread(self.dead, target, reply, key, error)

    def sent(self, target: Target, reply: Reply, key: str) -> None:
        """The platform accepted `reply`: a draft send is logged to the CRM and the rep told it went out."""
        d = reply.meta.get("draft")
        if not isinstance(d, dict):
            return
        self.crm.log_activity(d["tenant"], account_id=d["account_id"], contact_id=d.get("contact_id"), opportunity_id=None,
                              rep_id=d["rep_id"], kind="email", occurred_at=datetime.now(timezone.utc), summary=d["summary"],
                              source=f"pending:{d['pending']}", idempotency_key=f"{d['pending']}:sent", actor=d["rep_id"])
        self._tell(d["rep_id"], self.prompts.msg("draft_sent", d.get("lang", "zh"), email=d["email"]), f"{key}:sent")

    def dead(self, target: Target, reply: Reply, key: str, error: str) -> None:
        """`reply` will never be delivered: a draft send is reopened (the rep may send it again) and the rep told why."""
        d = reply.meta.get("draft")
        if not isinstance(d, dict):
            self._tell_undelivered(target, reply, key, error)
            return
        p = self.pending.get(d["pending"])
        if p is not None:
            self.pending.reopen(p.id, {**p.payload, "sends": int(p.payload.get("sends") or 0) + 1})
        self._tell(d["rep_id"], self.prompts.msg("draft_send_failed", d.get("lang", "zh"), email=d["email"], error=error[:200]),
                   f"{key}:dead")

    def _tell_undelivered(self, target: Target, reply: Reply, key: str, error: str) -> None:
        """A reply to a person of the directory died: they are told where they can still read it (their preferred
        channel, or the web chat when that is the channel that failed). Notices about notices are not sent."""
        if key.endswith((":dead", ":undelivered")) or reply.kind == "notice" and key.startswith("stale:"):
            return
        found = self.who(target)
        if found is None:
            return
        rep_id, lang = found
        try:
            there = self.reach(rep_id)
        except Exception:
            return
        if (there.channel, there.conversation_id) == (target.channel, target.conversation_id):
            there = Target(channel="console", tenant=target.tenant, conversation_id=f"web-{rep_id}", user_id=rep_id)
            if (there.channel, there.conversation_id) == (target.channel, target.conversation_id):
                return  # the web chat itself never fails a send: nothing better to do
        text = self.prompts.msg("reply_undelivered", ui_lang(lang), channel=target.channel, error=error[:200]) + "\n\n" + reply.text
        self.enqueue(there, Reply(text=text, kind="notice"), f"{key}:undelivered"[:200])

    def sweep(self) -> int:
        """Confirmations stuck `executing` (a crash between claim and finish) return to pending; each rep is told."""
        reopened = self.pending.reopen_stale(self.stale_after)
        for p in reopened:
            self._tell(p.rep_id, self.prompts.both("confirmation_interrupted"), f"stale:{p.id}:{datetime.now(timezone.utc):%Y%m%d%H%M%S}")
        return len(reopened)

    def _tell(self, rep_id: str, text: str, key: str) -> None:
        try:
            target = self.reach(rep_id)
        except Exception as exc:  # a rep removed meanwhile: nobody to tell
            log.warning("cannot reach %s to tell them about %s: %s", rep_id, key, exc)
            return
        self.enqueue(target, Reply(text=text, kind="notice"), key[:120])
