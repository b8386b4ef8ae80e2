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

from bot.people.directory import Directory, Person
from connectors.message import Button, Reply
from connectors.sql import insert_ignore
from bot.agent.tables import AgentTurn
from rag.ingest import AlreadyDecided, IngestError, Ingestor, IngestResult, Uploader
from rag.report import content_report
from rag.store import DocVersion, Document, Feedback

PUBLISHERS = ("enablement", "manager", "admin")
APPROVE, REJECT = "kb_approve", "kb_reject"


def zh(person: Person) -> bool:
    return person.language != "en"


class Publishing:
    def __init__(self, engine: Engine, ingestor: Ingestor, directory: Directory, enqueue, reach, stale_days: int = 90) -> None:  # noqa: ANN001
        self.reach = reach  # rep id -> Target in their own channel
        self.engine = engine
        self.ingestor = ingestor
        self.directory = directory
        self.enqueue = enqueue  # enqueue(target, reply, dedupe_key): an idempotent message to someone
        self.stale_days = stale_days

    # uploads -------------------------------------------------------------------------------------
    def upload(self, person: Person, name: str, data: bytes, source: str = "") -> Reply:
        res = self.ingestor.ingest_bytes(data, name, Uploader(person.id, person.role, person.tenant), source=source or f"chat:{person.id}/{name}")
        if res.status == "draft" and res.version_id:
            self._ask_approvers(person, res)
        return Reply(text=self._describe(person, name, res), kind="notice", meta={"ingest": res.to_json()})

    @staticmethod
    def _describe(person: Person, name: str, res: IngestResult) -> str:
        if res.status == "error":
            return f"《{name}》没有导入：{res.reason}" if zh(person) else f"{name} was not ingested: {res.reason}"
        if res.status == "draft":
            return (f"已收到《{name}》，保存为草稿（v{res.version}），赋能团队审核通过后才会对销售可见。" if zh(person)
                    else f"Got {name}: saved as draft v{res.version}; reps see it once enablement approves it.")
        if res.status == "unchanged":
            return f"《{name}》内容没有变化（v{res.version}）。" if zh(person) else f"{name} is unchanged (v{res.version})."
        return (f"已导入《{name}》：文档 {res.doc_id} v{res.version}，{res.chunks} 个段落，已对有权限的同事可见。" if zh(person)
                else f"Ingested {name}: document {res.doc_id} v{res.version}, {res.chunks} passages, now served.")

    def _ask_approvers(self, uploader: Person, res: IngestResult) -> None:
        ref = f"kbv:{res.version_id}"
        for p in self.directory.by_role(uploader.tenant, "enablement"):
            target = self.reach(p.id)
            text = (f"{uploader.name} 上传了新内容《{res.name}》（{res.doc_id} v{res.version}，{res.chunks} 段），需要审核后才会发布。"
                    if zh(p) else f"{uploader.name} uploaded {res.name} ({res.doc_id} v{res.version}, {res.chunks} passages); it needs approval.")
            reply = Reply(text=text, kind="confirm", buttons=[
                Button(key=APPROVE, label="批准发布" if zh(p) else "Approve", ref=ref, reply="1"),
                Button(key=REJECT, label="驳回" if zh(p) else "Reject", ref=ref, reply="2")])
            self.enqueue(target, reply, f"kb-approval:{res.version_id}:{p.id}")

    # decisions -----------------------------------------------------------------------------------
    def decide(self, person: Person, version_id: int, approve: bool) -> Reply:
        if person.role not in PUBLISHERS:
            return Reply(text="只有赋能团队或经理可以审核内容。" if zh(person) else "Only enablement or managers can approve content.", kind="notice")
        with self.engine.connect() as conn:
            row = conn.execute(select(DocVersion.status, Document.tenant, Document.doc_id).join(Document, Document.id == DocVersion.document_id)
                               .where(DocVersion.id == version_id)).first()
        if row is None or row.tenant != person.tenant:
            return Reply(text=f"没有找到版本 {version_id}。" if zh(person) else f"No version {version_id}.", kind="notice")
        try:
            if approve:
                self.ingestor.publish(version_id, approver=person.id)
            else:
                self.ingestor.reject(version_id, approver=person.id)
        except AlreadyDecided:
            return Reply(text=f"{row.doc_id} 的这个版本已经处理过了。" if zh(person) else f"This version of {row.doc_id} was already decided.", kind="notice")
        except IngestError as exc:
            return Reply(text=str(exc), kind="error")
        if approve:
            return Reply(text=f"已发布 {row.doc_id}。" if zh(person) else f"Published {row.doc_id}.", kind="notice")
        return Reply(text=f"已驳回 {row.doc_id} 的草稿。" if zh(person) else f"Rejected the draft of {row.doc_id}.", kind="notice")

    # feedback ------------------------------------------------------------------------------------
    def feedback(self, person: Person, conversation_key: str, score: int) -> Reply:
        """👍/👎 on the last answer in this conversation counts for every document it cited."""
        t = AgentTurn.__table__
        with self.engine.begin() as conn:
            turn = conn.execute(select(t).where(t.c.conversation_key == conversation_key, t.c.rep_id == person.id, t.c.job == "answer")
                                .order_by(t.c.id.desc()).limit(1)).first()
            if turn is None:
                return Reply(text="还没有可以评价的回答。" if zh(person) else "There is no answer to rate yet.", kind="notice")
            docs = json.loads(turn.evidence).get("cited_documents", [])
            for pk in docs:
                conn.execute(insert_ignore(self.engine, Feedback.__table__, dict(
                    tenant=person.tenant, document_id=pk, ref=f"turn:{turn.id}", actor=person.id, score=score)))
        return Reply(text=("谢谢反馈！" if score > 0 else "收到，已记录，赋能团队会改进这部分内容。") if zh(person)
                     else ("Thanks!" if score > 0 else "Noted; the enablement team will see it."), kind="notice")

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
                owner = self.directory.get(r.owner)
            except Exception:  # noqa: BLE001 - an owner who left the directory
                continue
            flags = "、".join(r.flags) if zh(owner) else ", ".join(r.flags)
            text = (f"你负责的《{r.title}》（{r.doc_id} v{r.version}，更新于 {r.updated}）需要关注：{flags}。近 30 天被检索 {r.served_30d} 次。"
                    if zh(owner) else f"Your document \"{r.title}\" ({r.doc_id} v{r.version}, updated {r.updated}) needs attention: {flags}. "
                    f"Served {r.served_30d} times in 30 days.")
            key = f"kb-flag:{tenant}:{r.doc_id}:{'|'.join(r.flags)}:{week[0]}-{week[1]}"
            if self.enqueue(target, Reply(text=text, kind="nudge"), key) is not None:
                sent += 1
        return sent
