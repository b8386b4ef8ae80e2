"""Follow-up drafts grounded in the account's CRM history and the playbook templates.

The rep gets the draft with send / edit / reject; nothing reaches a customer without that explicit
send. An approved email goes out through the email channel and is logged to the CRM; a chat draft is
for the rep to paste, and "sent" logs it. Each draft records its variant (prompt or template version)
and what the rep did with it, for `copilot report drafts`.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from bot.agent.crmlog import confirm_buttons
from bot.agent.extract import topics
from bot.agent.llm import ChatModel, Masker, ModelUnavailable
from bot.agent.pending import Pending, PendingStore
from bot.people.directory import Person
from bot.prompts import Prompts, ui_lang
from connectors.message import Reply, Target
from crm.service import CRM, AccountContext, NotFound
from rag.retrieve import Retriever, Viewer

# situation -> words in the heading of a playbook template's section, (zh, en): matched against the knowledge
# base, never shown. Without such a template a draft starts from the message draft_fallback_template.
SECTIONS = {
    "after_visit": ("拜访后", "after a visit"),
    "quote": ("报价", "quote"),
    "silent": ("沉默", "silent"),
}


_SUBJECT = re.compile(r"\s*(?:[-*]\s*)?(?:主题|标题|Subject)\s*[:：]\s*(.+)", re.I)
_BODY_LABEL = re.compile(r"\s*(?:正文|内容|Body|Message)\s*[:：]\s*$", re.I)
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.、)])\s+")


def _numbered(lines: list[str]) -> str:
    """The body with each list numbered again (1. 2. 3.: the chunker writes every list item as "- "),
    a blank line around each list, and no run of blank lines."""
    out, n = [], 0
    for ln in lines:
        if _ITEM.match(ln):
            if n == 0 and out and out[-1].strip():
                out.append("")
            n += 1
            out.append(f"{n}. " + _ITEM.sub("", ln))
        else:
            if n and ln.strip():
                out.append("")
            n = 0
            out.append(ln)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def situation(ctx: AccountContext, now: datetime) -> str:
    last = ctx.activities[0].occurred_at if ctx.activities else None
    if last is not None and now - last > timedelta(days=14):
        return "silent"
    if any(o.stage in ("proposal", "negotiation") for o in ctx.open_opportunities):
        return "quote"
    return "after_visit"


class Drafter:
    def __init__(self, crm: CRM, retriever: Retriever, pending: PendingStore, prompts: Prompts, model: ChatModel | None,
                 enqueue, can_email, scope_of) -> None:
        self.scope_of = scope_of  # Person -> Scope: every CRM read checks it, drafts included
        self.crm = crm
        self.retriever = retriever
        self.pending = pending
        self.prompts = prompts
        self.model = model
        self.enqueue = enqueue
        self.can_email = can_email

    # facts ---------------------------------------------------------------------------------------
    def facts(self, person: Person, account_id: str, text: str, now: datetime) -> dict:
        ctx = self.crm.account_context(person.tenant, account_id, limit=5)
        named = self.crm.find_contacts(person.tenant, text, [account_id])
        by_recent = [c for a in ctx.activities for c in ctx.contacts if c.id == a.contact_id]
        contact = (named or by_recent or ctx.contacts or [None])[0]
        opp = ctx.open_opportunities[0] if ctx.open_opportunities else None
        topic_list = [t for a in ctx.activities[:3] for t in topics(a.summary)]
        lang = contact.language if contact is not None and contact.language in ("zh", "en") else "zh"
        return {
            "account_id": account_id, "account": ctx.account.name, "situation": situation(ctx, now), "lang": lang,
            "contact_id": contact.id if contact else "", "contact": contact.name if contact else "",
            "contact_title": contact.title if contact else "", "email": contact.email if contact else "",
            "opportunity": opp.name if opp else "", "stage": opp.stage if opp else "", "next_step": (opp.next_step if opp else "") or "",
            "competitor": opp.competitor if opp else "",
            "topic": topic_list[0] if topic_list else self.prompts.msg("draft_default_topic", lang),
            "activities": [f"{a.occurred_at:%Y-%m-%d} {a.kind}: {a.summary}" for a in ctx.activities],
        }

    def _template(self, person: Person, f: dict) -> tuple[str, str]:
        """The playbook template for this situation and language: (text, variant)."""
        viewer = Viewer(person.tenant, person.role, person.team, person.id)
        words = SECTIONS[f["situation"]][0 if f["lang"] == "zh" else 1]
        for d in self.retriever.documents(viewer, "template"):
            if d["lang"] != f["lang"]:
                continue
            hits = self.retriever.document_hits(viewer, d["doc_id"])
            section = [h for h in hits if words.lower() in h.heading.lower()]
            if section:
                return "\n".join(h.text for h in section), f"template:{d['doc_id']}@{d['version']}"
        return self.prompts.raw("draft_fallback_template", f["lang"]), "template:builtin@1"

    # propose -------------------------------------------------------------------------------------
    def propose(self, person: Person, account_id: str, text: str, conversation_key: str, now: datetime, key: str,
                thread: dict | None = None) -> tuple[Reply, dict]:
        """`text` is the rep's request. `thread`: the customer email this answers (message_id, references,
        subject, text): the reply is threaded, and the customer's words go to the model as data, never as
        the request (a customer cannot instruct the copilot)."""
        try:
            owner = self.crm.account_context(person.tenant, account_id, limit=0).account.owner_id
        except NotFound:
            owner = None
        if owner is None or not self.scope_of(person).allows(owner):
            return Reply(text=self.prompts.msg("crm_account_not_found", ui_lang(person.language)), kind="notice"), {}
        f = self.facts(person, account_id, text, now)
        channel = "chat" if re.search(r"微信|企微|钉钉|消息|chat|message|wechat", text, re.I) else "email"
        request = text
        if thread:
            channel = "email"
            f["customer_email"] = thread.get("text", "")[:1500]
            f["topic"] = (topics(f["customer_email"]) or [re.sub(r"^\s*((re|回复|答复)\s*[:：]\s*)+", "", thread.get("subject", ""), flags=re.I)
                                                           or f["topic"]])[0]
            request = self.prompts.msg("draft_reply_request", f["lang"])
        template, variant = self._template(person, f)
        draft = None
        if self.model is not None and self.model.configured:
            draft = self._generate(person, f, template, channel, request)
            if draft:
                variant = f"prompt:draft@{self.prompts.prompt('draft').version}"
        if draft is None:
            draft = self._fill(template, f, person)
        subject, body = draft
        payload = {**f, "channel": channel, "subject": subject, "body": body, "original_body": body, "variant": variant, "edits": 0}
        if thread:
            base = re.sub(r"^\s*((re|回复|答复|fw|fwd|转发)\s*[:：]\s*)+", "", thread.get("subject", ""), flags=re.I)
            payload.update(channel="email", subject=f"Re: {base}" if base else subject, in_reply_to=thread.get("message_id", ""),
                           references=thread.get("references", []))
        p = self.pending.create(tenant=person.tenant, rep_id=person.id, conversation_key=conversation_key, kind="send_draft",
                                payload=payload, key=key)
        evidence = {"crm": {k: f[k] for k in ("account", "contact", "stage", "next_step", "activities")}, "template": variant}
        return self.render(p.id, p.payload, person), evidence

    def _fill(self, template: str, f: dict, person: Person) -> tuple[str, str]:
        m = self.prompts
        values = {"contact_name": (f["contact"] or "").strip() or m.msg("draft_default_contact", f["lang"]), "account_name": f["account"],
                  "topic": f["topic"], "next_step": f["next_step"] or m.msg("draft_default_next_step", f["lang"]),
                  "rep_name": person.name, "competitor": f["competitor"] or "", "stage": f["stage"]}
        filled = re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))), template)
        lines = [ln for ln in filled.splitlines() if not ln.strip().startswith(("|", "#"))]
        subject, at = "", None
        for i, ln in enumerate(lines):
            found = _SUBJECT.match(ln)
            if found:
                subject, at = found.group(1).strip(), i
                break
        # what stands above the subject line ("适用：报价发出后第 2 个工作日。", "Send within 24 hours") tells the rep when to
        # use the template; a label line ("正文：", "Body:") only marks where the message starts: neither is sent
        body_lines = lines[at + 1:] if at is not None else lines
        body_lines = [ln for ln in body_lines if not _BODY_LABEL.match(ln)]
        return subject or m.msg("draft_default_subject", f["lang"], topic=f["topic"]), _numbered(body_lines)

    def _generate(self, person: Person, f: dict, template: str, channel: str, instructions: str) -> tuple[str, str] | None:
        system, user = self.prompts.prompt("draft").render(
            facts=json.dumps({k: v for k, v in f.items() if k not in ("account_id", "contact_id", "email")}, ensure_ascii=False, indent=1),
            template=template, channel=channel, language=self.prompts.msg("language_name", f["lang"]), rep=person.name,
            instructions=instructions)
        try:
            out = self.model.complete(system, user, actor=person.id, conversation="", job="draft", masker=self._masker(person, f["account_id"]))
            data = json.loads(re.search(r"\{.*\}", out.text, re.S).group(0))
            subject, body = str(data.get("subject", "")).strip(), str(data.get("body", "")).strip()
        except (ModelUnavailable, AttributeError, ValueError):
            return None
        return (subject, body) if body else None

    def _masker(self, person: Person, account_id: str) -> Masker:
        """The account's contact names and deal amounts never reach the model: placeholders, restored in its answer."""
        try:
            ctx = self.crm.account_context(person.tenant, account_id, limit=0)
        except NotFound:
            return Masker()
        return Masker.for_account(names=[c.name for c in ctx.contacts], amounts=[o.amount for o in ctx.open_opportunities])

    def render(self, pid: str, pl: dict, person: Person) -> Reply:
        m, lang = self.prompts, ui_lang(person.language)
        to = f"{pl['contact']} <{pl['email']}>" if pl.get("email") else pl.get("contact", "")
        if pl["channel"] == "email":
            text = m.msg("draft_email", lang, to=to, account=pl["account"], subject=pl["subject"], body=pl["body"])
            send = "button_send"
        else:
            text = m.msg("draft_chat", lang, to=pl["contact"] or pl["account"], body=pl["body"])
            send = "button_sent_log"
        text += "\n\n" + m.msg("draft_reply_hint", lang)
        return Reply(text=text, kind="draft", buttons=confirm_buttons(m, pid, lang, confirm=send, reject="button_discard"),
                     meta={"pending": pid, "variant": pl["variant"]})

    # decide ----------------------------------------------------------------------------------------
    def send(self, person: Person, p: Pending, now: datetime) -> Reply:
        m, lang = self.prompts, ui_lang(person.language)
        pl = p.payload
        if pl["channel"] == "email" and not pl.get("email"):
            return Reply(text=m.msg("draft_no_email", lang), kind="notice")
        if pl["channel"] == "email" and not self.can_email():
            return Reply(text=m.msg("draft_no_email_channel", lang), kind="notice")
        if not self.pending.claim(p.id):
            return Reply(text=m.msg("draft_already_sent", lang), kind="notice")
        if pl["channel"] == "email":
            target = Target(channel="email", tenant=person.tenant, conversation_id=pl["email"], user_id=pl["email"],
                            context={"to": [pl["email"]], "from_name": person.name})
            reply = Reply(text=pl["body"], kind="draft", meta={"email": {
                "to": [pl["email"]], "cc": [person.email] if person.email else [], "subject": pl["subject"],
                "from_name": person.name, "reply_to": person.email, "in_reply_to": pl.get("in_reply_to", ""),
                "references": pl.get("references", [])}})
        summary = m.msg("draft_sent_summary_email" if pl["channel"] == "email" else "draft_sent_summary_chat", lang, subject=pl["subject"])
        outcome = "sent_unchanged" if pl["body"] == pl["original_body"] else "sent_edited"
        if pl["channel"] == "email":
            # not "sent" yet: the outbox tells the rep and logs the activity once the mail server accepted it
            # (bot.agent.delivery), or tells the rep it failed and reopens the draft
            reply.meta["draft"] = {"pending": p.id, "rep_id": person.id, "tenant": person.tenant, "lang": lang, "email": pl["email"],
                                   "account_id": pl["account_id"], "contact_id": pl.get("contact_id") or None, "summary": summary}
            sends = int(pl.get("sends") or 0)
            self.enqueue(target, reply, f"draft:{p.id}" + (f":{sends}" if sends else ""))
            self.pending.finish(p.id, "done", {"outcome": outcome})
            return Reply(text=m.msg("draft_sending", lang, email=pl["email"]), kind="notice")
        self.crm.log_activity(person.tenant, account_id=pl["account_id"], contact_id=pl.get("contact_id") or None, opportunity_id=None,
                              rep_id=person.id, kind="chat", occurred_at=now,
                              summary=summary, source=f"pending:{p.id}", idempotency_key=f"{p.id}:sent", actor=person.id)
        self.pending.finish(p.id, "done", {"outcome": outcome})
        return Reply(text=m.msg("draft_logged", lang), kind="notice")

    def discard(self, person: Person, p: Pending) -> Reply:
        lang = ui_lang(person.language)
        if not self.pending.claim(p.id, "rejected"):
            return Reply(text=self.prompts.msg("draft_already_handled", lang), kind="notice")
        self.pending.finish(p.id, "rejected", {"outcome": "rejected"})
        return Reply(text=self.prompts.msg("draft_discarded", lang), kind="notice")

    def start_edit(self, person: Person, p: Pending) -> Reply:
        self.pending.update_payload(p.id, {**p.payload, "editing": True})
        return Reply(text=self.prompts.msg("draft_edit_hint", person.language), kind="notice")

    def apply_edit(self, person: Person, p: Pending, text: str) -> Reply:
        pl = {k: v for k, v in p.payload.items() if k != "editing"}
        new_body = None
        if self.model is not None and self.model.configured and len(text) < 200:
            system, user = self.prompts.prompt("redraft").render(body=pl["body"], subject=pl["subject"], change=text,
                                                                 language=self.prompts.msg("language_name", pl["lang"]))
            try:
                out = self.model.complete(system, user, actor=person.id, conversation="", job="redraft",
                                          masker=self._masker(person, pl["account_id"]))
                data = json.loads(re.search(r"\{.*\}", out.text, re.S).group(0))
                new_body = str(data.get("body", "")).strip() or None
                pl["subject"] = str(data.get("subject", "")).strip() or pl["subject"]
            except (ModelUnavailable, AttributeError, ValueError):
                new_body = None
        if new_body is None:
            if len(text.strip()) < 20:
                return Reply(text=self.prompts.msg("draft_edit_offline", person.language), kind="notice")
            new_body = text.strip()
        pl["body"] = new_body
        pl["edits"] = int(pl.get("edits", 0)) + 1
        self.pending.update_payload(p.id, pl)
        return self.render(p.id, pl, person)


def variant_report(engine, tenant: str, rep_ids: list[str] | None = None) -> list[dict]:
    """Per draft variant (prompt or template version): proposed, sent unchanged, sent edited, rejected,
    still open, and the later outcome of the account's deals (won/lost after a sent draft). `rep_ids`: only the
    drafts of these people (a team)."""
    from sqlalchemy import select as sa_select

    from bot.agent.tables import PendingRow
    from crm.models import Opportunity

    with engine.connect() as c:
        q = sa_select(PendingRow).where(PendingRow.tenant == tenant, PendingRow.kind == "send_draft")
        drafts = c.execute(q.where(PendingRow.rep_id.in_(rep_ids)) if rep_ids is not None else q).all()
        opps = c.execute(sa_select(Opportunity.account_id, Opportunity.stage, Opportunity.stage_changed_at)
                         .where(Opportunity.tenant == tenant, Opportunity.stage.in_(("won", "lost")))).all()
    closed: dict[str, list] = {}
    for o in opps:
        closed.setdefault(o.account_id, []).append(o)
    out: dict[str, dict] = {}
    for d in drafts:
        pl = json.loads(d.payload)
        r = out.setdefault(pl.get("variant", "?"), {"variant": pl.get("variant", "?"), "proposed": 0, "sent_unchanged": 0, "sent_edited": 0,
                                                     "rejected": 0, "open": 0, "later_won": 0, "later_lost": 0})
        r["proposed"] += 1
        outcome = json.loads(d.result or "{}").get("outcome") if d.result else None
        if outcome in ("sent_unchanged", "sent_edited", "rejected"):
            r[outcome] += 1
        elif d.status in ("pending", "executing"):
            r["open"] += 1
        if outcome and outcome.startswith("sent"):
            created = d.created_at if d.created_at.tzinfo else d.created_at.replace(tzinfo=timezone.utc)
            for o in closed.get(pl.get("account_id"), []):
                at = o.stage_changed_at if o.stage_changed_at.tzinfo else o.stage_changed_at.replace(tzinfo=timezone.utc)
                if at >= created:
                    r["later_won" if o.stage == "won" else "later_lost"] += 1
    for r in out.values():
        sent = r["sent_unchanged"] + r["sent_edited"]
        r["sent_unchanged_rate"] = round(r["sent_unchanged"] / r["proposed"], 3) if r["proposed"] else 0.0
        r["win_rate_after_send"] = round(r["later_won"] / sent, 3) if sent else None
    return sorted(out.values(), key=lambda r: r["variant"])
