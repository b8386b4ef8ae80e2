"""CRM logging from plain words: propose an activity, a next-step task and opportunity changes; write
them only after the rep confirms; an edit reply corrects the proposal; an ambiguous account asks.

Offline the proposal comes from rules (bot.agent.extract); with a model, the model fills the same
fields from prompts/crm_log.md and the rules check them (a date the rules can read wins).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from bot.agent import extract as ex
from bot.agent.llm import ChatModel, Masker, ModelUnavailable
from bot.agent.pending import Pending, PendingStore
from bot.ops import deadline
from bot.people.directory import Person
from bot.prompts import Prompts, ui_lang
from connectors.message import Button, Reply
from crm.service import CRM


@dataclass
class Scope:
    """The accounts a person may log against: a rep their own, a manager their team's, others all."""

    person: Person
    team_members: set[str]

    def allows(self, owner_id: str) -> bool:
        if self.person.role in ("enablement", "admin"):
            return True
        if self.person.role == "manager":
            return owner_id in self.team_members or owner_id == self.person.id
        return owner_id == self.person.id


def scope_of(directory, person: Person) -> Scope:
    """A person's Scope: a manager's team is everyone of their tenant with the same team."""
    team = {p.id for p in directory.list(person.tenant) if p.team == person.team} if person.role == "manager" else set()
    return Scope(person, team)


def confirm_buttons(prompts: Prompts, pid: str, lang: str, confirm: str = "button_confirm", edit: str = "button_edit",
                    reject: str = "button_cancel") -> list[Button]:
    """Confirm / edit / reject buttons; the labels are message keys."""
    return [Button(key="confirm", label=prompts.msg(confirm, lang), ref=pid, reply="1"),
            Button(key="edit", label=prompts.msg(edit, lang), ref=pid, reply="2"),
            Button(key="reject", label=prompts.msg(reject, lang), ref=pid, reply="3")]


class CrmLogger:
    def __init__(self, crm: CRM, pending: PendingStore, prompts: Prompts, model: ChatModel | None, scope_of) -> None:
        self.crm = crm
        self.pending = pending
        self.prompts = prompts
        self.model = model
        self.scope_of = scope_of  # Person -> Scope

    # propose -------------------------------------------------------------------------------------
    def propose(self, person: Person, text: str, conversation_key: str, now: datetime, key: str) -> tuple[Reply, dict]:
        zh = ex_zh(text, person)
        scope = self.scope_of(person)
        accounts = [a for a in self.crm.find_accounts(person.tenant, text) if scope.allows(a.owner_id)]
        if not accounts:
            return Reply(text=self.prompts.msg("crm_account_not_found", _lang(zh)), kind="notice"), {}
        contacts = self.crm.find_contacts(person.tenant, text, [a.id for a in accounts])
        if len(accounts) > 1 and contacts:
            narrowed = [a for a in accounts if any(c.account_id == a.id for c in contacts)]
            accounts = narrowed or accounts
        if len(accounts) > 1:
            return self._ask_which(person, text, conversation_key, accounts, zh, key)
        return self._proposal(person, text, conversation_key, accounts[0].id, now, zh, key)

    def _ask_which(self, person: Person, text: str, conversation_key: str, accounts: list, zh: bool, key: str) -> tuple[Reply, dict]:
        p = self.pending.create(tenant=person.tenant, rep_id=person.id, conversation_key=conversation_key, kind="crm_choose",
                                payload={"text": text, "options": [a.id for a in accounts[:5]]}, key=key)
        names = [a.name for a in accounts[:5]]
        head = self.prompts.msg("crm_which_account", _lang(zh), text=text[:20])
        buttons = [Button(key=f"choose{i}", label=f"{i}. {n}", ref=p.id, reply=str(i)) for i, n in enumerate(names, 1)]
        return Reply(text=head + "\n" + "\n".join(f"{i}. {n}" for i, n in enumerate(names, 1)), kind="confirm", buttons=buttons), {}

    def choose(self, person: Person, p: Pending, index: int, now: datetime) -> tuple[Reply, dict]:
        options = p.payload["options"]
        if not 1 <= index <= len(options):
            return Reply(text=self.prompts.msg("crm_choose_range", person.language, n=len(options)), kind="notice"), {}
        if not self.pending.claim(p.id, "done"):
            return Reply(text=self.prompts.msg("crm_choice_handled", person.language), kind="notice"), {}
        text = p.payload["text"]
        return self._proposal(person, text, p.conversation_key, options[index - 1], now, ex_zh(text, person), f"{p.id}:chosen")

    def _proposal(self, person: Person, text: str, conversation_key: str, account_id: str, now: datetime, zh: bool,
                  key: str) -> tuple[Reply, dict]:
        ctx = self.crm.account_context(person.tenant, account_id)
        fields = self._extract(person, text, now, ctx)
        payload = {"account_id": account_id, "account": ctx.account.name, "text": text, **fields}
        p = self.pending.create(tenant=person.tenant, rep_id=person.id, conversation_key=conversation_key, kind="crm_log",
                                payload=payload, key=key)
        return self.render(p.id, p.payload, zh), {"crm": {"account": ctx.account.name, "account_id": account_id,
                                                          "recent_activities": [a.summary for a in ctx.activities[:3]]}}

    def _extract(self, person: Person, text: str, now: datetime, ctx) -> dict:
        contacts = self.crm.find_contacts(person.tenant, text, [ctx.account.id])
        contact = contacts[0] if contacts else None
        opp = ctx.open_opportunities[0] if ctx.open_opportunities else None
        kind = ex.parse_kind(text) or "visit"
        step, when = ex.next_step(text, now)
        changes: dict = {}
        stage = ex.parse_stage(text)
        if stage and opp and stage != opp.stage:
            changes["stage"] = stage
        amount = ex.parse_amount(text)
        if amount and opp:
            changes["amount"] = amount[0]
        if step and opp:
            changes["next_step"] = step
        who = contact.name if contact else ""
        fields = {
            "contact_id": contact.id if contact else "", "contact": who,
            "opportunity_id": opp.id if opp else "", "opportunity": opp.name if opp else "",
            "activity": {"kind": kind, "occurred_at": ex.occurred_at(text, now).isoformat(), "summary": text.strip()},
            "task": {"title": step + (f"（{who}）" if who and who not in step else ""), "due_at": when.at.isoformat() if when else ""} if step else None,
            "changes": changes,
        }
        if self.model is not None and self.model.configured:
            # the account's contact names and deal amounts go to the model as placeholders, restored in its answer
            masker = Masker.for_account(names=[c.name for c in ctx.contacts], amounts=[o.amount for o in ctx.open_opportunities])
            fields = self._refine(person, text, now, fields, masker)
        return fields

    def _refine(self, person: Person, text: str, now: datetime, fields: dict, masker: Masker | None = None) -> dict:
        """Let the model improve the summary and the task title; dates and amounts stay with the rules
        unless the rules found none (a model's date arithmetic is the usual failure)."""
        system, user = self.prompts.prompt("crm_log").render(now=now.strftime("%Y-%m-%d %H:%M %A"), text=text,
                                                             draft=json.dumps(fields, ensure_ascii=False))
        try:
            out = self.model.complete(system, user, actor=person.id, conversation="", job="crm_log", masker=masker)
            data = json.loads(re.search(r"\{.*\}", out.text, re.S).group(0))
        except (ModelUnavailable, AttributeError, ValueError):
            return fields
        if isinstance(data.get("summary"), str) and data["summary"].strip():
            fields["activity"]["summary"] = data["summary"].strip()[:500]
        if fields["task"] and isinstance(data.get("task_title"), str) and data["task_title"].strip():
            fields["task"]["title"] = data["task_title"].strip()[:200]
        if fields["task"] and not fields["task"]["due_at"] and isinstance(data.get("due"), str):
            try:
                fields["task"]["due_at"] = datetime.fromisoformat(data["due"]).replace(tzinfo=now.tzinfo).isoformat()
            except ValueError:
                pass
        return fields

    # show ------------------------------------------------------------------------------------------
    def render(self, pid: str, pl: dict, zh: bool) -> Reply:
        m, lang = self.prompts, _lang(zh)
        act = pl["activity"]
        when = datetime.fromisoformat(act["occurred_at"])
        lines = [m.msg("crm_proposal_head", lang, account=pl["account"])]
        who = f" {pl['contact']}" if pl.get("contact") else ""
        lines.append(m.msg("crm_proposal_activity", lang, kind=self._label("activity_kind", act["kind"], lang), who=who, when=when,
                           summary=act["summary"]))
        if pl.get("task"):
            due = datetime.fromisoformat(pl["task"]["due_at"]).strftime("%m-%d %a %H:%M") if pl["task"]["due_at"] else m.msg("crm_no_date", lang)
            lines.append(m.msg("crm_proposal_task", lang, title=pl["task"]["title"], due=due))
        ch = pl.get("changes") or {}
        if ch and pl.get("opportunity"):
            parts = []
            for k, v in ch.items():
                shown = self._label("stage", v, lang) if k == "stage" else (f"¥{v:,.0f}" if k == "amount" else v)
                parts.append(f"{self._label('change_label', k, lang)} → {shown}")
            lines.append(m.msg("crm_proposal_opportunity", lang, name=pl["opportunity"], changes="；".join(parts)))
        lines.append(m.msg("reply_confirm_edit_cancel", lang))
        return Reply(text="\n".join(lines), kind="confirm", buttons=confirm_buttons(m, pid, lang), meta={"pending": pid})

    def _label(self, group: str, value: str, lang: str) -> str:
        """The catalogue's name for a CRM value (`activity_kind_visit`, `stage_won`...), else the value itself."""
        key = f"{group}_{value}"
        return self.prompts.msg(key, lang) if self.prompts.has(key) else value

    # decide ------------------------------------------------------------------------------------------
    def confirm(self, person: Person, p: Pending) -> Reply:
        lang = ui_lang(person.language)
        deadline.check()  # no CRM write for an attempt that was given up
        if not self.pending.claim(p.id):
            return Reply(text=self.prompts.msg("crm_already_logged", lang), kind="notice")
        pl, t = p.payload, person.tenant
        src = f"pending:{p.id}"
        act = pl["activity"]
        try:
            a = self.crm.log_activity(t, account_id=pl["account_id"], contact_id=pl.get("contact_id") or None,
                                      opportunity_id=pl.get("opportunity_id") or None, rep_id=person.id, kind=act["kind"],
                                      occurred_at=datetime.fromisoformat(act["occurred_at"]), summary=act["summary"], source=src,
                                      idempotency_key=f"{p.id}:activity", actor=person.id)
            written = [f"activity {a.id}"]
            if pl.get("task"):
                due = pl["task"]["due_at"]
                task = self.crm.create_task(t, rep_id=person.id, account_id=pl["account_id"], opportunity_id=pl.get("opportunity_id") or None,
                                            title=pl["task"]["title"], due_at=datetime.fromisoformat(due) if due else None, source=src,
                                            idempotency_key=f"{p.id}:task", actor=person.id)
                written.append(f"task {task.id}")
            if pl.get("changes") and pl.get("opportunity_id"):
                self.crm.update_opportunity(t, pl["opportunity_id"], pl["changes"], idempotency_key=f"{p.id}:opportunity", actor=person.id, source=src)
                written.append(f"opportunity {pl['opportunity_id']}")
        except Exception:
            self.pending.finish(p.id, "pending")  # let the rep try again; the writes are idempotent
            raise
        self.pending.finish(p.id, "done", {"written": written})
        return Reply(text=self.prompts.msg("crm_logged", lang, written="、".join(written)), kind="notice")

    def start_edit(self, person: Person, p: Pending) -> Reply:
        self.pending.update_payload(p.id, {**p.payload, "editing": True})
        return Reply(text=self.prompts.msg("crm_edit_hint", person.language), kind="notice")

    def apply_edit(self, person: Person, p: Pending, text: str, now: datetime) -> Reply:
        """Corrections in plain words: a date moves the task, an amount/stage changes the opportunity."""
        pl = dict(p.payload)
        pl.pop("editing", None)
        when = ex.parse_when(text, now)
        if when is not None and pl.get("task"):
            pl["task"] = {**pl["task"], "due_at": when.at.isoformat()}
        elif when is not None and not pl.get("task"):
            pl["task"] = {"title": text.strip(), "due_at": when.at.isoformat()}
        amount = ex.parse_amount(text)
        stage = ex.parse_stage(text)
        if pl.get("opportunity_id") and (amount or stage):
            pl["changes"] = {**(pl.get("changes") or {}), **({"amount": amount[0]} if amount else {}), **({"stage": stage} if stage else {})}
        m = re.search(r"(?:摘要|内容|summary)\s*[:：改为成]*\s*(.+)", text)
        if m:
            pl["activity"] = {**pl["activity"], "summary": m.group(1).strip()}
        if pl == {k: v for k, v in p.payload.items() if k != "editing"}:
            return Reply(text=self.prompts.msg("crm_edit_unclear", person.language), kind="notice")
        self.pending.update_payload(p.id, pl)
        return self.render(p.id, pl, person.language != "en")


def _lang(zh: bool) -> str:
    return "zh" if zh else "en"


def ex_zh(text: str, person: Person) -> bool:
    from rag.text import language

    return language(text) == "zh" if text.strip() else person.language != "en"
