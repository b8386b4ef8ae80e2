"""Knowledge publishing from chat: uploads, the draft → approval workflow, feedback, owner nudges.

The ingestion itself is rag's one code path (`Ingestor.ingest_bytes`); this module decides who may
publish, tells approvers about drafts (with approve/reject buttons, resolved once), records
👍/👎 on the documents an answer cited, and tells owners when their content is flagged.
"""
from __future__ import annotations

import json
from datetime import date

from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.agent.tables import AgentTurn
from bot.ops import deadline
from bot.people.directory import Directory, Person
from bot.prompts import Prompts, ui_lang
from connectors.message import Button, Reply
from connectors.sql import insert_ignore
from rag.ingest import AlreadyDecided, IngestError, Ingestor, IngestResult, Uploader
from rag.report import content_report
from rag.store import Document, DocVersion, Feedback

PUBLISHERS = ("enablement", "manager", "admin")
APPROVE, REJECT = "kb_approve", "kb_reject"


class Publishing:
    def __init__(self, engine: Engine, ingestor: Ingestor, directory: Directory, enqueue, reach, prompts: Prompts,
                 stale_days: int = 90) -> None:
        self.reach = reach  # rep id -> Target in their own channel
        self.prompts = prompts
        self.engine = engine
        self.ingestor = ingestor
        self.directory = directory
        self.enqueue = enqueue  # enqueue(target, reply, dedupe_key): an idempotent message to someone
        self.stale_days = stale_days

    # uploads -------------------------------------------------------------------------------------
    def upload(self, person: Person, name: str, data: bytes, source: str = "", draft: bool = False) -> Reply:
        """`draft`: saved for approval whoever sent it (files that came by email)."""
        deadline.check()  # nothing published for an attempt that was given up
        res = self.ingestor.ingest_bytes(data, name, Uploader(person.id, person.role, person.tenant, may_publish=not draft),
                                         source=source or f"chat:{person.id}/{name}")
        if res.status == "draft" and res.version_id:
            self._ask_approvers(person, res)
        return Reply(text=self._describe(person, name, res), kind="notice", meta={"ingest": res.to_json()})

    def _describe(self, person: Person, name: str, res: IngestResult) -> str:
        lang = ui_lang(person.language)
        if res.status == "error":
            key = f"kb_refused_{res.code}"  # the catalogue's words for the refusal, where it has them
            reason = self.prompts.msg(key, lang) if res.code and self.prompts.has(key) else res.reason
            return self.prompts.msg("kb_not_ingested", lang, name=name, reason=reason)
        if res.status == "draft":
            return self.prompts.msg("kb_saved_draft", lang, name=name, version=res.version)
        if res.status == "unchanged":
            return self.prompts.msg("kb_unchanged", lang, name=name, version=res.version)
        return self.prompts.msg("kb_ingested", lang, name=name, doc_id=res.doc_id, version=res.version, chunks=res.chunks)

    def _ask_approvers(self, uploader: Person, res: IngestResult) -> None:
        ref = f"kbv:{res.version_id}"
        for p in self.directory.by_role(uploader.tenant, "enablement"):
            target = self.reach(p.id)
            m, lang = self.prompts, ui_lang(p.language)
            text = m.msg("kb_needs_approval", lang, uploader=uploader.name, name=res.name, doc_id=res.doc_id, version=res.version, chunks=res.chunks)
            reply = Reply(text=text, kind="confirm", lang=lang, buttons=[
                Button(key=APPROVE, label=m.msg("button_approve", lang), ref=ref, reply="1"),
                Button(key=REJECT, label=m.msg("button_reject", lang), ref=ref, reply="2")])
            self.enqueue(target, reply, f"kb-approval:{res.version_id}:{p.id}")

    # decisions -----------------------------------------------------------------------------------
    def decide(self, person: Person, version_id: int, approve: bool) -> Reply:
        lang = ui_lang(person.language)
        if person.role not in PUBLISHERS:
            return Reply(text=self.prompts.msg("kb_not_allowed", lang), kind="notice")
        with self.engine.connect() as conn:
            row = conn.execute(select(DocVersion.status, Document.tenant, Document.doc_id).join(Document, Document.id == DocVersion.document_id)
                               .where(DocVersion.id == version_id)).first()
        if row is None or row.tenant != person.tenant:
            return Reply(text=self.prompts.msg("kb_no_version", lang, version_id=version_id), kind="notice")
        try:
            if approve:
                self.ingestor.publish(version_id, approver=person.id)
            else:
                self.ingestor.reject(version_id, approver=person.id)
        except AlreadyDecided:
            return Reply(text=self.prompts.msg("kb_already_decided", lang, doc_id=row.doc_id), kind="notice")
        except IngestError as exc:
            return Reply(text=str(exc), kind="error")
        decision = "published" if approve else "rejected"
        return Reply(text=self.prompts.msg(f"kb_{decision}", lang, doc_id=row.doc_id), kind="notice", meta={"decision": decision})

    # feedback ------------------------------------------------------------------------------------
    def feedback(self, person: Person, conversation_key: str, score: int) -> Reply:
        """👍/👎 on the last answer in this conversation counts for every document it cited."""
        t = AgentTurn.__table__
        with self.engine.begin() as conn:
            turn = conn.execute(select(t).where(t.c.conversation_key == conversation_key, t.c.rep_id == person.id, t.c.job == "answer")
                                .order_by(t.c.id.desc()).limit(1)).first()
            if turn is None:
                return Reply(text=self.prompts.msg("feedback_nothing", person.language), kind="notice")
            docs = json.loads(turn.evidence).get("cited_documents", [])
            for pk in docs:
                conn.execute(insert_ignore(self.engine, Feedback.__table__, dict(
                    tenant=person.tenant, document_id=pk, ref=f"turn:{turn.id}", actor=person.id, score=score)))
        return Reply(text=self.prompts.msg("feedback_thanks" if score > 0 else "feedback_noted", person.language), kind="notice")

    # owners ----------------------------------------------------------------------------------------
    def nudge_owners(self, tenant: str, today: date | None = None) -> int:
        """Tell each owner about their flagged documents, once per document, flag and week."""
        today = today or date.today()
        week = today.isocalendar()
        sent = 0
        for r in content_report(self.engine, tenant, today, stale_days=self.stale_days):
            if not r.flags or not r.owner:
                continue
            try:
                target = self.reach(r.owner)
                owner = self.directory.get(tenant, r.owner)
            except Exception:
                continue
            lang = ui_lang(owner.language)
            text = self.prompts.msg("kb_owner_flags", lang, title=r.title, doc_id=r.doc_id, version=r.version, updated=r.updated,
                                    flags=self.prompts.msg("list_sep", lang).join(r.flags), served=r.served_30d)
            key = f"kb-flag:{tenant}:{r.doc_id}:{'|'.join(r.flags)}:{week[0]}-{week[1]}"
            if self.enqueue(target, Reply(text=text, kind="nudge"), key) is not None:
                sent += 1
        return sent
