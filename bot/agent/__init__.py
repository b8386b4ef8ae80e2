"""The copilot agent: turns a rep's words into answers, comparisons, drafts and CRM proposals.

Knows no platform: it sees a `Person` (who asks) and a platform-neutral message, and returns
`Reply`s. Jobs are reachable by slash command (/ask /compare /draft /log /todo /help /why) and by
plain Chinese or English: with a model, the model picks the job by tool calling; offline (or when
the model fails) rules do. Every write is proposed first and done only on an explicit confirmation.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.agent.answer import Answer, Answerer
from bot.agent.compare import Comparer
from bot.agent.crmlog import CrmLogger, Scope, scope_of
from bot.agent.draft import Drafter
from bot.agent.facts import day_item
from bot.agent.followup import FollowUps
from bot.agent.llm import ModelUnavailable
from bot.agent.pending import Pending, PendingStore
from bot.agent.storevisit import StoreVisits
from bot.agent.tables import AgentTurn
from bot.people.directory import Directory, Person
from bot.prompts import Prompts, ui_lang
from connectors.message import Action, InboundMessage, Reply
from crm.service import CRM, NotFound
from rag.retrieve import Viewer
from rag.text import language

_CMD = re.compile(r"^\s*[/／]\s*([a-zA-Z]+)\b\s*(.*)$", re.S)
YES = re.compile(r"^\s*(1|1️⃣|确认|是|好的?|可以|发送|发吧|yes|y|ok|confirm|send)\s*[。.!！]?\s*$", re.I)
EDIT = re.compile(r"^\s*(2|2️⃣|修改|改一下|edit|change)\s*[。.!！]?\s*$", re.I)
NO = re.compile(r"^\s*(3|3️⃣|取消|不用了?|算了|放弃|no|n|cancel|discard)\s*[。.!！]?\s*$", re.I)
THUMBS_UP, THUMBS_DOWN = re.compile(r"^\s*(👍|/good|有用|很有帮助)\s*$"), re.compile(r"^\s*(👎|/bad|没用|不对)\s*$")

INTENTS = [  # (job, pattern) for offline routing, checked in order
    ("todo", r"我的一天|今天.{0,6}(待办|任务|安排|要做|跟进)|今日待办|有什么要跟进|哪些.{0,4}(停滞|卡住)|my day|what.{0,20}today|on my plate|to-?do|due today|stalled deals"),
    ("draft", r"起草|草拟|(帮我|给).{0,12}写|写(一|个|封|条)|拟(一|个|封)|draft|write (a|an|the)? ?(follow|email|message)|compose"),
    ("store", r"巡店|门店.{0,6}(陈列|缺货|促销|下单|订货)|store visit"),
    ("log", r"拜访了|见了|见过|打了电话|电话沟通|通了电话|开了会|开会|会谈|面谈|聊了|去了|visited|met with|called|had a (call|meeting)|log (a|the|this)"),
    ("compare", r"比较|对比|相比|比起|比怎么样|怎么比|区别|差异|\bvs\.?\b|versus|compare|compared|against"),
]


def _tool(name: str, description: str, required: tuple[str, ...] = (), **params: dict) -> dict:
    """A function the model may call (OpenAI tool schema)."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": params, **({"required": list(required)} if required else {})}}}


STRING = {"type": "string"}
TOOLS = [
    _tool("answer_question", "Answer a product/process/competitor question from the knowledge base", ("question",), question=STRING),
    _tool("compare_competitor", "Side-by-side comparison with a named competitor", ("competitor",), competitor=STRING, aspect=STRING),
    _tool("draft_followup", "Draft a follow-up email or chat message to a customer account", ("account",), account=STRING,
          channel={"type": "string", "enum": ["email", "chat"]}),
    _tool("log_activity", "Record a customer visit/call/meeting in the CRM", ("notes",), notes=STRING),
    _tool("log_store_visit", "Record a store check", ("notes",), notes=STRING),
    _tool("my_day", "Today's tasks, due follow-ups and stalled deals"),
]
JOBS = ("ask", "compare", "draft", "log", "todo", "store")
PRIVATE_JOBS = ("draft", "log", "todo", "store")  # CRM data: one-to-one chats only
TOOL_JOBS = {"answer_question": "ask", "compare_competitor": "compare", "draft_followup": "draft", "log_activity": "log",
             "log_store_visit": "store", "my_day": "todo"}


def parse_command(text: str) -> tuple[str | None, str]:
    m = _CMD.match(text)
    if not m:
        return None, text.strip()
    return m.group(1).lower(), m.group(2).strip()


def viewer_of(person: Person) -> Viewer:
    return Viewer(tenant=person.tenant, role=person.role, team=person.team, user_id=person.id)


def answer_reply(ans: Answer) -> Reply:
    return Reply(text=ans.text, citations=ans.citations, grounded=ans.grounded, kind="answer" if ans.grounded else "notice")


def _in(lang: str, replies: list[Reply]) -> list[Reply]:
    """The replies with their reader's language, unless one was set already (Reply.lang)."""
    return [r if "lang" in r.model_fields_set else r.model_copy(update={"lang": lang}) for r in replies]


@dataclass
class Turn:
    job: str
    replies: list[Reply]
    evidence: dict
    prompt_version: str = ""


class Agent:
    def __init__(self, *, answerer: Answerer, prompts: Prompts, crm: CRM, pending: PendingStore, directory: Directory,
                 engine: Engine, enqueue, can_email, publishing=None) -> None:
        self.answerer = answerer
        self.prompts = prompts
        self.crm = crm
        self.pending = pending
        self.directory = directory
        self.engine = engine
        self.publishing = publishing
        self.model = answerer.model
        retriever = answerer.retriever
        self.logger = CrmLogger(crm, pending, prompts, self.model, self.scope)
        self.drafter = Drafter(crm, retriever, pending, prompts, self.model, enqueue, can_email, self.scope)
        self.comparer = Comparer(retriever, prompts, answerer.stale_days, lambda h, v: self.answerer.link(h, v))
        self.stores = StoreVisits(crm, pending, prompts)
        self.followups = FollowUps(engine, answerer.answerability, prompts, self.model)

    def scope(self, person: Person) -> Scope:
        return scope_of(self.directory, person)

    # entry points --------------------------------------------------------------------------------
    def handle(self, person: Person, msg: InboundMessage, on_text=None) -> list[Reply]:
        """`on_text`: where a channel that can show an answer while it is written wants the text so far. Each
        reply carries its reader's language (the question's, else the person's): the channel labels follow it."""
        bare = _CMD.sub(r"\2", msg.text.strip()).strip()
        return _in(ui_lang(language(bare)) if bare else ui_lang(person.language), self._handle(person, msg, on_text))

    def _handle(self, person: Person, msg: InboundMessage, on_text=None) -> list[Reply]:
        text = msg.text.strip()
        now = msg.received_at.astimezone(ZoneInfo(person.timezone or "Asia/Shanghai"))
        key = "m" + hashlib.sha1(f"{msg.channel}|{msg.tenant}|{msg.platform_msg_id}".encode()).hexdigest()[:15]
        conv = msg.conversation_key
        bare = _CMD.sub(r"\2", text).strip()  # a bare "/help" says nothing about the language: use the person's
        lang = language(bare) if bare else ("en" if person.language == "en" else "zh")
        if THUMBS_UP.match(text) or THUMBS_DOWN.match(text):
            if self.publishing is not None:
                return [self.publishing.feedback(person, conv, 1 if THUMBS_UP.match(text) else -1)]
        p = self.pending.latest(conv, person.id)
        if p is not None:
            handled = self._pending_reply(person, p, text, now)
            if handled is not None:
                return handled
        cmd, arg = parse_command(text)
        if cmd == "why":
            turn = Turn("why", [self.why(person, conv)], {})
        elif cmd in ("help", "start") or (cmd is None and not arg) or (cmd is not None and cmd not in JOBS):
            turn = Turn("help", [Reply(text=self.prompts.msg("help", lang), kind="notice")], {})
        else:
            job = cmd or self.route(person, arg)
            if msg.is_group and job in PRIVATE_JOBS:
                turn = Turn(job, [Reply(text=self.prompts.msg("private_only", lang), kind="notice")], {})
            else:
                # everyone in a group reads the answer: it is trimmed to what a rep of the asker's team may see
                asker = replace(person, role="rep") if msg.is_group and person.role != "rep" else person
                turn = self.run(job, asker, arg, conv, now, key, on_text)
        if turn.job not in ("help", "why"):  # nothing to explain or rate
            self._record(person, conv, turn)
        for r in turn.replies:
            r.meta.setdefault("job", turn.job)
        return turn.replies

    def route(self, person: Person, text: str) -> str:
        if self.model is not None and self.model.configured:
            try:
                system, user = self.prompts.prompt("route").render(text=text)
                out = self.model.complete(system, user, actor=person.id, conversation="", tools=TOOLS, job="route")
                if out.tool_calls and out.tool_calls[0]["name"] in TOOL_JOBS:
                    return TOOL_JOBS[out.tool_calls[0]["name"]]
            except ModelUnavailable:
                pass
        for job, rx in INTENTS:
            if re.search(rx, text, re.I):
                if job == "compare" and not self.comparer.named(viewer_of(person), text):
                    continue
                if job == "log" and not self.crm.find_accounts(person.tenant, text):
                    continue
                return job
        if self.comparer.named(viewer_of(person), text) and re.search(r"我们|咱们|云帆|\bwe\b|\bus\b|yunfan", text, re.I):
            return "compare"
        return "ask"

    def run(self, job: str, person: Person, text: str, conv: str, now: datetime, key: str, on_text=None) -> Turn:
        lang = language(text) if text else ui_lang(person.language)
        if job == "todo":
            return Turn("todo", [self.my_day(person, now)], {"crm": "my_day"})
        if job == "compare":
            out = self.comparer.compare(viewer_of(person), text)
            if out is not None:
                return Turn("compare", [out[0]], out[1])
            job = "ask"
        if job == "log":
            reply, evidence = self.logger.propose(person, text, conv, now, key)
            return Turn("log", [reply], evidence)
        if job == "store":
            reply = self.stores.propose(person, text, conv, now, key)
            if reply is not None:
                return Turn("store", [reply], {"crm": "store"})
            job = "ask"
        if job == "draft":
            scope = self.scope(person)
            accounts = list({a.id: a for a in self.crm.find_accounts(person.tenant, text) if scope.allows(a.owner_id)}.values())
            if len(accounts) != 1:
                names = "、".join(a.name for a in accounts[:5])
                msg = self.prompts.msg("draft_which_account", lang, names=names) if accounts else self.prompts.msg("draft_name_account", lang)
                return Turn("draft", [Reply(text=msg, kind="notice")], {})
            reply, evidence = self.drafter.propose(person, accounts[0].id, text, conv, now, key)
            return Turn("draft", [reply], evidence, reply.meta.get("variant", ""))
        if not text:
            return Turn("help", [Reply(text=self.prompts.msg("help", lang), kind="notice")], {})
        asked = self.followups.resolve(text, person.tenant, person.id, conv, actor=person.id)  # "那专业版呢？" → standalone
        ans = self.answerer.answer(asked, viewer_of(person), actor=person.id, conversation=conv, on_text=on_text)
        evidence = {"passages": [{"doc_id": h.doc_id, "title": h.title, "heading": h.heading, "version": h.version, "competitor": h.competitor,
                                  "updated": h.updated, "relevance": round(h.relevance or 0, 3), "chunk_id": h.chunk_id} for h in ans.hits],
                    "cited_documents": sorted({h.document_pk for h in ans.hits if h.doc_id in {c.doc_id for c in ans.citations}}),
                    "cited_doc_ids": sorted({c.doc_id for c in ans.citations}), "asked": asked[:1000], "grounded": ans.grounded,
                    "question": text[:1000], "answer": ans.text[:4000]}  # for the console's review of declined and rated answers
        if ans.hits:
            self.answerer.retriever.record_use(person.tenant, ans.hits, "retrieved", person.id)
            self.answerer.retriever.record_use(person.tenant, [h for h in ans.hits if h.doc_id in {c.doc_id for c in ans.citations}],
                                               "cited", person.id)
        version = self.prompts.prompt("answer").version if self.model is not None and self.model.configured else "extractive"
        return Turn("answer", [answer_reply(ans)], evidence, version)

    # confirmations -------------------------------------------------------------------------------
    def _pending_reply(self, person: Person, p: Pending, text: str, now: datetime) -> list[Reply] | None:
        if p.payload.get("editing") and not YES.match(text) and not NO.match(text):
            if p.kind == "crm_log":
                return [self.logger.apply_edit(person, p, text, now)]
            if p.kind == "send_draft":
                return [self.drafter.apply_edit(person, p, text)]
        if p.kind == "crm_choose" and text.isdigit():
            reply, _ = self.logger.choose(person, p, int(text), now)
            return [reply]
        for key, rx in (("confirm", YES), ("edit", EDIT), ("reject", NO)):
            if rx.match(text):
                return self.decide(person, p, key, now)
        return None

    def act(self, person: Person, action: Action, conversation_key: str = "", at: datetime | None = None) -> list[Reply]:
        """A button click: resolves its pending item exactly once; the replies are in the person's language."""
        return _in(ui_lang(person.language), self._act(person, action, conversation_key, at))

    def _act(self, person: Person, action: Action, conversation_key: str = "", at: datetime | None = None) -> list[Reply]:
        now = (at or datetime.now().astimezone()).astimezone(ZoneInfo(person.timezone or "Asia/Shanghai"))
        if action.key in ("kb_approve", "kb_reject") and self.publishing is not None and action.ref.startswith("kbv:"):
            return [self.publishing.decide(person, int(action.ref[4:]), action.key == "kb_approve")]
        p = self.pending.get(action.ref)
        lang = ui_lang(person.language)
        if p is None or p.tenant != person.tenant or p.rep_id != person.id:
            return [Reply(text=self.prompts.msg("button_expired", lang), kind="notice")]
        if p.kind == "crm_choose" and action.key.startswith("choose"):
            return [self.logger.choose(person, p, int(action.key[6:] or 0), now)[0]]
        if p.status != "pending":
            return [Reply(text=self.prompts.msg("already_handled", lang), kind="notice")]
        return self.decide(person, p, action.key, now)

    def decide(self, person: Person, p: Pending, key: str, now: datetime) -> list[Reply]:
        handlers = {
            "crm_log": {"confirm": lambda: self.logger.confirm(person, p), "edit": lambda: self.logger.start_edit(person, p),
                        "reject": lambda: self._cancel(person, p)},
            "store_visit": {"confirm": lambda: self.stores.confirm(person, p), "edit": lambda: self._cancel(person, p, edit=True),
                            "reject": lambda: self._cancel(person, p)},
            "send_draft": {"confirm": lambda: self.drafter.send(person, p, now), "edit": lambda: self.drafter.start_edit(person, p),
                           "reject": lambda: self.drafter.discard(person, p)},
            "email_reply": {"confirm": lambda: self._draft_reply(person, p, now), "reject": lambda: self._cancel(person, p)},
        }
        fn = handlers.get(p.kind, {}).get(key)
        if fn is None:
            return [Reply(text=self.prompts.msg("not_applicable", person.language), kind="notice")]
        return [fn()]

    def _draft_reply(self, person: Person, p: Pending, now: datetime) -> Reply:
        """A customer wrote: draft the threaded answer from the account's history and the playbooks."""
        if not self.pending.claim(p.id, "done"):
            return Reply(text=self.prompts.msg("already_drafted", person.language), kind="notice")
        pl = p.payload
        reply, _ = self.drafter.propose(person, pl["account_id"], "", p.conversation_key, now, f"{p.id}:draft"[:40],
                                        thread={"message_id": pl["message_id"], "references": pl["references"], "subject": pl["subject"],
                                                "text": pl["text"]})
        return reply

    def _cancel(self, person: Person, p: Pending, edit: bool = False) -> Reply:
        lang = ui_lang(person.language)
        if not self.pending.claim(p.id, "rejected"):
            return Reply(text=self.prompts.msg("already_handled", lang), kind="notice")
        return Reply(text=self.prompts.msg("cancelled_store_visit" if edit else "cancelled", lang), kind="notice")

    # my day and /why -----------------------------------------------------------------------------------
    def my_day(self, person: Person, now: datetime) -> Reply:
        """A rep's day; a manager's day is their team's too: every member's items, each with whose it is."""
        tz = person.timezone or "Asia/Shanghai"
        lang = ui_lang(person.language)
        people = [person.id] + (sorted(self.scope(person).team_members - {person.id}) if person.role == "manager" else [])
        days = []
        for pid in people:
            try:
                days.append((pid, self.crm.my_day(person.tenant, pid, now.date(), tz)))
            except NotFound:  # a manager need not own deals, and a team member need not be in the CRM
                continue
        if all(day.empty for _, day in days):
            return Reply(text=self.prompts.msg("my_day_empty_team" if len(people) > 1 else "my_day_empty", lang), kind="notice")
        names = {p.id: p.name for p in self.directory.list(person.tenant)}
        parts = []
        for title, attr in (("my_day_meetings", "meetings_today"), ("my_day_due_today", "due_today"),
                            ("my_day_overdue", "overdue"), ("my_day_stalled", "stale_deals")):
            lines = []
            for pid, day in days:
                for i in getattr(day, attr):
                    item = day_item(self.prompts, i, lang)
                    lines.append(item if pid == person.id else self.prompts.msg("my_day_whose", lang, item=item, name=names.get(pid, pid)))
            if lines:
                parts.append(self.prompts.msg(title, lang) + "：\n" + "\n".join(f"• {ln}" for ln in lines[:12]))
        return Reply(text="\n\n".join(parts), kind="answer")

    def why(self, person: Person, conversation_key: str) -> Reply:
        t = AgentTurn.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.conversation_key == conversation_key, t.c.rep_id == person.id,
                                               t.c.job.notin_(("why", "help"))).order_by(t.c.id.desc()).limit(1)).first()
        lang = ui_lang(person.language)
        if row is None:
            return Reply(text=self.prompts.msg("why_nothing", lang), kind="notice")
        ev = json.loads(row.evidence)
        lines = [self.prompts.msg("why_head", lang, job=row.job)]
        for p in ev.get("passages", []):
            if "title" in p:
                lines.append(self.prompts.msg("why_passage", lang, title=p["title"], heading=p["heading"].split(" > ")[-1] if p["heading"] else "",
                                              version=p["version"], updated=p["updated"], relevance=p["relevance"]))
            else:
                lines.append(f"• {p['doc_id']}: {', '.join(p.get('aspects', []))}")
        crm = ev.get("crm")
        if isinstance(crm, dict):
            for k, v in crm.items():
                lines.append(f"• CRM {k}: {'; '.join(v) if isinstance(v, list) else v}")
        if ev.get("template"):
            lines.append(self.prompts.msg("why_template", lang, template=ev["template"]))
        if row.prompt_version:
            lines.append(f"• prompt: {row.job}@{row.prompt_version}")
        if len(lines) == 1:
            lines.append(self.prompts.msg("why_no_sources", lang))
        return Reply(text="\n".join(lines), kind="notice")

    def _record(self, person: Person, conv: str, turn: Turn) -> None:
        with self.engine.begin() as conn:
            conn.execute(AgentTurn.__table__.insert().values(
                tenant=person.tenant, rep_id=person.id, conversation_key=conv, job=turn.job, prompt_version=turn.prompt_version,
                evidence=json.dumps(turn.evidence, ensure_ascii=False, default=str), created_at=datetime.now().astimezone()))
