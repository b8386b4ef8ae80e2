"""Knowledge tables: documents, their versions (kept for audit), chunks, usage and feedback."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

import numpy as np
from sqlalchemy import Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Document(SQLModel, table=True):
    __tablename__ = "kb_document"
    __table_args__ = (UniqueConstraint("tenant", "doc_id", name="uq_kb_document"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    tenant: str = Field(default="default", max_length=64, index=True)
    doc_id: str = Field(max_length=300)
    live_version_id: Optional[int] = None
    created_at: datetime = Field(default_factory=_now)


class DocVersion(SQLModel, table=True):
    """One ingested version. Exactly one per document is `live`; old ones stay for audit, never served."""

    __tablename__ = "kb_version"
    id: Optional[int] = Field(default=None, primary_key=True)
    document_id: int = Field(index=True)
    version: str = Field(max_length=64)
    status: str = Field(default="live", max_length=16, index=True)  # live|superseded|draft|rejected|retired
    content_hash: str = Field(max_length=64)
    title: str = ""
    source: str = ""
    doc_type: str = Field(default="", max_length=32)
    lang: str = Field(default="zh", max_length=8)
    audience: str = Field(default="all", max_length=120)  # all|sales|managers or comma-separated roles
    team: str = Field(default="", max_length=64)
    tags: str = ""  # comma-separated
    owner: str = Field(default="", max_length=64)
    competitor: str = Field(default="", max_length=64)
    updated: str = Field(default="", max_length=10)  # ISO date from the document, else ingestion date
    expires: str = Field(default="", max_length=10)
    n_chunks: int = 0
    ingested_at: datetime = Field(default_factory=_now)
    ingested_by: str = Field(default="", max_length=64)
    approved_by: str = Field(default="", max_length=64)
    approved_at: Optional[datetime] = None


class Chunk(SQLModel, table=True):
    __tablename__ = "kb_chunk"
    id: str = Field(primary_key=True, max_length=64)
    version_id: int = Field(index=True)
    document_id: int = Field(index=True)
    tenant: str = Field(default="default", max_length=64, index=True)
    ordinal: int
    heading: str = ""
    kind: str = Field(default="text", max_length=8)
    text: str = Field(sa_column=Column(Text, nullable=False))
    tokens: str = Field(sa_column=Column(Text, nullable=False))  # jieba tokens, space separated (BM25)
    embed_hash: str = Field(max_length=64)
    # the vectors of its statements (rag.text.statements), float16, one row each: a passage that states the asked
    # thing in one sentence ranks by that sentence too (None: written before they were kept, or no embedder)
    statement_vectors: Optional[bytes] = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


def pack_statements(vectors: np.ndarray, counts: list[int]) -> list[bytes]:
    """`Chunk.statement_vectors` for passages with `counts` statements each, their vectors in order in `vectors`
    (b"" for a passage without statements)."""
    out, k = [], 0
    for n in counts:
        out.append(vectors[k : k + n].astype(np.float16).tobytes())
        k += n
    return out


def unpack_statements(blob: bytes | None, dim: int) -> np.ndarray | None:
    """A passage's statement vectors (float16, one row each); None when not kept, or kept by a model of another width."""
    if not blob or len(blob) % (2 * dim):
        return None
    return np.frombuffer(blob, dtype=np.float16).reshape(-1, dim)


class KbState(SQLModel, table=True):
    """Per-tenant generation counter: bumped on every publish, so readers rebuild their snapshot."""

    __tablename__ = "kb_state"
    tenant: str = Field(primary_key=True, max_length=64)
    generation: int = 0


class ChunkUse(SQLModel, table=True):
    __tablename__ = "kb_use"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=_now, index=True)
    tenant: str = Field(default="default", max_length=64)
    document_id: int = Field(index=True)
    chunk_id: str = Field(max_length=64)
    kind: str = Field(max_length=12)  # retrieved|cited
    actor: str = Field(default="", max_length=64)
    ref: str = Field(default="", max_length=64)  # the reply it served (for feedback)


class Feedback(SQLModel, table=True):
    __tablename__ = "kb_feedback"
    __table_args__ = (UniqueConstraint("ref", "actor", "document_id", name="uq_kb_feedback"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=_now)
    tenant: str = Field(default="default", max_length=64)
    document_id: int = Field(index=True)
    ref: str = Field(max_length=64)
    actor: str = Field(default="", max_length=64)
    score: int  # +1 / -1


AUDIENCES: dict[str, frozenset[str]] = {
    "all": frozenset({"rep", "manager", "enablement", "admin"}),
    "sales": frozenset({"rep", "manager", "enablement", "admin"}),
    "managers": frozenset({"manager", "enablement", "admin"}),
}
CONTENT_ROLES = ("rep", "manager", "enablement", "admin")
SEE_ALL = frozenset({"enablement", "admin"})  # content owners see every team's documents


def audience_roles(audience: str) -> frozenset[str]:
    """Roles allowed by an audience value: a named audience, or a comma-separated role list."""
    audience = (audience or "all").strip().lower()
    if audience in AUDIENCES:
        return AUDIENCES[audience]
    roles = {r.strip() for r in audience.replace(";", ",").split(",") if r.strip()}
    unknown = roles - set(CONTENT_ROLES) - set(AUDIENCES)
    if unknown:
        raise ValueError(f"unknown audience {', '.join(sorted(unknown))}: use all, sales, managers or roles {', '.join(CONTENT_ROLES)}")
    out: set[str] = set()
    for r in roles:
        out |= AUDIENCES.get(r, {r})
    return frozenset(out | SEE_ALL)
