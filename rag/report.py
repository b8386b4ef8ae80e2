"""Content freshness and use: which documents are old, expired, unused, falling out of use or disliked."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from rag.store import ChunkUse, Document, DocVersion, Feedback


@dataclass
class DocReport:
    doc_id: str
    title: str
    owner: str
    version: str
    updated: str
    expires: str
    age_days: int | None
    served_30d: int  # times retrieved in the last 30 days
    cited_30d: int
    cited_prev_30d: int
    served_total: int
    thumbs_up: int
    thumbs_down: int
    flags: list[str] = field(default_factory=list)
    audience: str = "all"
    team: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _counts(s: Session, stmt) -> dict[int, int]:
    return {k: v for k, v in s.execute(stmt).all()}


def content_report(engine: Engine, tenant: str, today: date | None = None, *, stale_days: int = 90) -> list[DocReport]:
    today = today or date.today()
    now = datetime.combine(today, datetime.min.time(), tzinfo=timezone.utc) + timedelta(days=1)
    d30, d60 = now - timedelta(days=30), now - timedelta(days=60)
    with Session(engine) as s:
        rows = s.execute(
            select(Document, DocVersion).join(DocVersion, DocVersion.id == Document.live_version_id).where(Document.tenant == tenant)
            .order_by(Document.doc_id)
        ).all()
        use = ChunkUse.__table__.c
        def uses(kind: str, *when):
            return _counts(s, select(use.document_id, func.count()).where(use.tenant == tenant, use.kind == kind, *when).group_by(use.document_id))

        served_30, served_all = uses("retrieved", use.at >= d30), uses("retrieved")
        cited_30, cited_60 = uses("cited", use.at >= d30), uses("cited", use.at >= d60, use.at < d30)
        fb = Feedback.__table__.c
        ups = _counts(s, select(fb.document_id, func.count()).where(fb.tenant == tenant, fb.score > 0).group_by(fb.document_id))
        downs = _counts(s, select(fb.document_id, func.count()).where(fb.tenant == tenant, fb.score < 0).group_by(fb.document_id))
    out = []
    for doc, ver in rows:
        try:
            age = (today - date.fromisoformat(ver.updated)).days
        except ValueError:
            age = None
        r = DocReport(doc.doc_id, ver.title, ver.owner, ver.version, ver.updated, ver.expires, age,
                      served_30.get(doc.id, 0), cited_30.get(doc.id, 0), cited_60.get(doc.id, 0), served_all.get(doc.id, 0),
                      ups.get(doc.id, 0), downs.get(doc.id, 0), audience=ver.audience, team=ver.team)
        if ver.expires and ver.expires < today.isoformat():
            r.flags.append("expired")
        if age is not None and age > stale_days:
            r.flags.append(f"not updated in {stale_days} days")
        ingested = ver.ingested_at if ver.ingested_at.tzinfo else ver.ingested_at.replace(tzinfo=timezone.utc)
        if r.served_total == 0 and now - ingested > timedelta(days=14):
            r.flags.append("never used")
        if r.cited_prev_30d >= 3 and r.cited_30d < r.cited_prev_30d / 2:
            r.flags.append("falling use")
        if r.thumbs_down >= 3 and r.thumbs_down > r.thumbs_up:
            r.flags.append("often disliked")
        out.append(r)
    return out
