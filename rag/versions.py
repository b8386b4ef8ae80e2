"""A document's versions: the drafts waiting for approval, a document's history, the passages of one version, and a
metadata revision (audience, team, owner, expiry, tags changed without a new file).

A revision is a new version like any other: the live version's passages copied under the new metadata, published
through `Ingestor.publish` (vectors from the embedding cache, moved to the partition of the new audience, then the
atomic flip), so the history shows who changed what and the old version stays for audit.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from rag.ingest import IngestError, Ingestor, IngestResult
from rag.store import Chunk, Document, DocVersion, audience_roles
from rag.text import embed_text, tokenize

EDITABLE = ("audience", "team", "owner", "expires", "tags")


def drafts(engine: Engine, tenant: str) -> list[tuple[DocVersion, str]]:
    """Versions waiting for approval, oldest first, with their document id."""
    with Session(engine) as s:
        return [(v, d) for v, d in s.execute(select(DocVersion, Document.doc_id).join(Document, Document.id == DocVersion.document_id)
                                             .where(Document.tenant == tenant, DocVersion.status == "draft").order_by(DocVersion.id)).all()]


def versions(engine: Engine, tenant: str, doc_id: str) -> tuple[Document, list[DocVersion]] | None:
    """A document and every version of it, oldest first (None: no such document)."""
    with Session(engine) as s:
        doc = s.execute(select(Document).where(Document.tenant == tenant, Document.doc_id == doc_id)).scalars().first()
        if doc is None:
            return None
        return doc, list(s.execute(select(DocVersion).where(DocVersion.document_id == doc.id).order_by(DocVersion.id)).scalars())


def passages(engine: Engine, version_id: int) -> list[Chunk]:
    with Session(engine) as s:
        return list(s.execute(select(Chunk).where(Chunk.version_id == version_id).order_by(Chunk.ordinal)).scalars())


def revise(ingestor: Ingestor, tenant: str, doc_id: str, changes: dict[str, str], by: str) -> IngestResult:
    """Publish the live version of `doc_id` again with `changes` (keys of EDITABLE) to its metadata. Bad values raise
    IngestError (code front_matter); no change at all returns status "unchanged"."""
    changes = {k: str(v).strip() for k, v in changes.items() if k in EDITABLE}
    if "audience" in changes:
        changes["audience"] = changes["audience"] or "all"
        try:
            audience_roles(changes["audience"])
        except ValueError as exc:
            raise IngestError(str(exc), "front_matter") from None
    if changes.get("expires"):
        try:
            date.fromisoformat(changes["expires"])
        except ValueError:
            raise IngestError(f"expires is not a date (YYYY-MM-DD): {changes['expires']}", "front_matter") from None
    if "tags" in changes:
        changes["tags"] = ",".join(t.strip() for t in changes["tags"].replace("，", ",").split(",") if t.strip())
    engine = ingestor.engine
    with Session(engine) as s:
        doc = s.execute(select(Document).where(Document.tenant == tenant, Document.doc_id == doc_id)).scalars().first()
        live = s.get(DocVersion, doc.live_version_id) if doc is not None and doc.live_version_id else None
        if live is None:
            raise IngestError(f"{doc_id} has no live version to edit", "not_live")
        if all(getattr(live, k) == v for k, v in changes.items()):
            return IngestResult(doc_id, doc_id, "unchanged", live.version, live.n_chunks, 0, version_id=live.id)
        chunks = list(s.execute(select(Chunk).where(Chunk.version_id == live.id).order_by(Chunk.ordinal)).scalars())
        fields = {k: getattr(live, k) for k in ("title", "source", "doc_type", "audience", "team", "tags", "owner", "updated", "expires",
                                                "competitor", "lang")}
        fields.update(changes)
        texts = [embed_text(live.title, c.heading, c.text) for c in chunks]
        content_hash = hashlib.sha256(json.dumps([fields, texts], ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        ver = DocVersion(document_id=doc.id, version=Ingestor._next_version(s, doc), status="draft", content_hash=content_hash,
                         n_chunks=len(chunks), ingested_by=by, **fields)
        s.add(ver)
        s.flush()
        rows = [dict(id=f"v{ver.id}c{c.ordinal}", version_id=ver.id, document_id=doc.id, tenant=tenant, ordinal=c.ordinal,
                     heading=c.heading, kind=c.kind, text=c.text, tokens=c.tokens or " ".join(tokenize(f"{live.title} {c.heading} {c.text}")),
                     embed_hash=c.embed_hash, statement_vectors=c.statement_vectors) for c in chunks]
        if rows:
            s.execute(insert(Chunk.__table__), rows)
        s.commit()
        version_id, version = ver.id, ver.version
    ingestor.publish(version_id, approver=by)
    return IngestResult(doc_id, doc_id, "updated", version, len(rows), 0, version_id=version_id)
