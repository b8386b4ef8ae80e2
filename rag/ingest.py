"""Ingestion: one code path for the CLI, the admin upload API and files sent in chat.

bytes -> parse (rag.formats) -> chunk (rag.chunk) -> embed (cached by content hash) -> publish.
Publishing a new version is atomic for readers: the new vectors are added first, then one SQL
transaction flips `live` from the old version to the new and bumps the tenant's generation, then
the old vectors are removed. Any failure before the flip removes what was added: nothing
half-ingested stays behind.

A folder is embedded in batches across documents (`batch_chunks` passages per model call at least):
many short documents keep the model as busy as one long one. Each document is still its own version,
written and published on its own, and reported per file, in order.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from rag.chunk import chunk_blocks
from rag.datafiles import DEFAULT_DATA_DIRS, DataFolders, crm_export_reason
from rag.embed import CachedEmbedder
from rag.formats import IngestError, ParsedDoc
from rag.index import VectorIndex
from rag.sandbox import Sandbox
from rag.store import Chunk, Document, DocVersion, KbState, audience_roles, pack_statements
from rag.text import embed_text, language, statement_texts, tokenize
from rag.walk import expand

PUBLISHERS = frozenset({"enablement", "manager", "admin"})
MAX_CHUNKS = 5_000  # passages per document
INSERT_BATCH = 500
EMBED_BATCH = 64  # passages gathered across documents before the model runs (keeps every core busy)


@dataclass
class IngestResult:
    name: str
    doc_id: str = ""
    status: str = "error"  # added|updated|unchanged|draft|error
    version: str = ""
    chunks: int = 0
    embedded: int = 0
    reason: str = ""
    version_id: int | None = None
    code: str = ""  # why an error: rag.limits.IngestError.code (the catalogue's kb_refused_<code>)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("version_id")
        if not d["code"]:
            d.pop("code")
        return d


@dataclass(frozen=True)
class Uploader:
    """Who is ingesting: decides draft vs. published. The CLI runs as an admin."""

    id: str = "cli"
    role: str = "admin"
    tenant: str = "default"
    may_publish: bool = True  # False: a draft whoever it is (files that came by email wait for approval)


def _tags(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x).strip() for x in v if str(x).strip())
    return ",".join(t.strip() for t in str(v or "").replace("，", ",").split(",") if t.strip())


class Ingestor:
    def __init__(self, engine: Engine, vectors: VectorIndex, embedder: CachedEmbedder, sandbox: Sandbox | None = None,
                 data_dirs: Iterable[str | Path] = DEFAULT_DATA_DIRS, batch_chunks: int = EMBED_BATCH) -> None:
        """`sandbox`: where files are parsed (a child process with limits; one with default limits if not given);
        `data_dirs`: folder names and paths that hold data, never ingested (rag.datafiles); `batch_chunks`: passages
        of several files embedded together (1: one file at a time)."""
        self.engine = engine
        self.vectors = vectors
        self.embedder = embedder
        self.data = DataFolders(data_dirs)
        self.sandbox = sandbox or Sandbox()
        self.batch_chunks = max(1, batch_chunks)

    def close(self) -> None:
        self.sandbox.close()

    # entry points ------------------------------------------------------------------------------
    def ingest_paths(self, paths: Iterable[Path], uploader: Uploader, *, audience: str | None = None,
                     on_file: Callable[[IngestResult], None] | None = None, progress: Callable[[int], None] | None = None,
                     exclude: tuple[str, ...] = ()) -> list[IngestResult]:
        """Every file under `paths`, one result each, in order (`on_file` hears each as soon as it is decided).
        Files are parsed one by one; their passages are embedded together once `batch_chunks` are waiting."""
        results: list[IngestResult | _Pending] = []
        reported = 0
        waiting = 0  # passages of the pending files
        paths = [Path(p) for p in paths]
        given = set(paths)

        def flush() -> None:
            nonlocal reported, waiting
            self._embed_and_write([r for r in results[reported:] if isinstance(r, _Pending)], progress)
            for i in range(reported, len(results)):
                r = results[i]
                results[i] = r = r.result if isinstance(r, _Pending) else r
                if on_file:
                    on_file(r)
            reported, waiting = len(results), 0

        for root, path in expand(paths, exclude):
            rel = path.relative_to(root).as_posix() if path != root else path.name
            walked = path not in given
            if walked and self.data.reason(path, root) is not None:
                continue  # a data folder inside a walked folder (knowledge/crm): not a document, nothing to report
            data_reason = self.data.reason(root / path.name) if walked else self.data.reason(path)
            if data_reason is not None:  # named explicitly, or the walked folder is itself a data folder
                res: IngestResult | _Pending = IngestResult(rel, reason=data_reason, code="data_folder")
            else:
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    res = IngestResult(rel, reason=f"cannot read the file: {exc.strerror}", code="unreadable")
                else:
                    source = f"{root.name}/{rel}" if path != root else path.name
                    res = self._prepare_bytes(data, rel, uploader, audience, source)
            if res.doc_id and any(isinstance(r, _Pending) and r.doc_id == res.doc_id for r in results[reported:]):
                flush()  # the same document twice: the second is compared with what the first wrote
                res = self._prepare_bytes(data, rel, uploader, audience, source)
            waiting += len(res.texts) if isinstance(res, _Pending) else 0
            results.append(res)
            if waiting >= self.batch_chunks or (not waiting and on_file):  # nothing waits before it: report at once
                flush()
        flush()
        return results  # type: ignore[return-value]  # flush() replaced every _Pending

    def ingest_bytes(self, data: bytes, name: str, uploader: Uploader, *, audience: str | None = None, source: str = "",
                     progress: Callable[[int], None] | None = None) -> IngestResult:
        res = self._prepare_bytes(data, name, uploader, audience, source or name)
        if isinstance(res, _Pending):
            self._embed_and_write([res], progress)
            return res.result
        return res

    # core --------------------------------------------------------------------------------------
    def _prepare_bytes(self, data: bytes, name: str, uploader: Uploader, audience: str | None, source: str) -> IngestResult | _Pending:
        """Parse and chunk: the result when nothing is left to do (refused, unchanged), else what to embed and write."""
        res = IngestResult(name)
        refused = crm_export_reason(data, name)
        if refused is not None:
            res.reason, res.code = refused, "crm_export"
            return res
        try:
            parsed = self.sandbox.parse(data, name)
            return self._prepare(parsed, name, uploader, audience, source)
        except IngestError as exc:
            res.reason, res.code = str(exc), exc.code
        except ValueError as exc:  # bad front-matter values (audience, dates)
            res.reason, res.code = str(exc), "front_matter"
        return res

    def _prepare(self, parsed: ParsedDoc, name: str, uploader: Uploader, audience: str | None, source: str) -> IngestResult | _Pending:
        meta = parsed.meta
        doc_id = str(meta.get("id") or name).strip()
        title = str(meta.get("title") or "").strip() or _first_heading(parsed) or Path(name).stem
        aud = str(audience or meta.get("audience") or "all")
        roles = audience_roles(aud)
        team = str(meta.get("team") or "").strip()
        updated = str(meta.get("updated") or date.today().isoformat())[:10]
        expires = str(meta.get("expires") or "")[:10]
        for label, value in (("updated", updated), ("expires", expires)):
            if value:
                try:
                    date.fromisoformat(value)
                except ValueError as exc:
                    raise IngestError(f"front matter '{label}' is not a date (YYYY-MM-DD): {value}", "front_matter") from exc
        drafts = chunk_blocks(parsed.blocks)
        if not drafts:
            raise IngestError("the file has no text to index", "no_text")
        if len(drafts) > MAX_CHUNKS:
            raise IngestError(f"the file makes {len(drafts)} passages (at most {MAX_CHUNKS}); split it", "too_large")
        embed_texts = [embed_text(title, d.heading, d.text) for d in drafts]
        fields = dict(title=title, source=source, doc_type=str(meta.get("type") or ""), audience=aud, team=team,
                      tags=_tags(meta.get("tags")), owner=str(meta.get("owner") or uploader.id), updated=updated,
                      expires=expires, competitor=str(meta.get("competitor") or ""),
                      lang=str(meta.get("lang") or language(" ".join(d.text for d in drafts[:5]))))
        content_hash = hashlib.sha256(json.dumps([fields, embed_texts], ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        tenant = uploader.tenant
        publish = uploader.role in PUBLISHERS and uploader.may_publish

        with Session(self.engine) as s:
            doc = s.exec(select(Document).where(Document.tenant == tenant, Document.doc_id == doc_id)).first()
            live = s.get(DocVersion, doc.live_version_id) if doc and doc.live_version_id else None
            if live is not None and live.content_hash == content_hash:
                missing = s.exec(select(Chunk).where(Chunk.version_id == live.id, Chunk.statement_vectors.is_(None))).all()
                unchanged = IngestResult(name, doc_id, "unchanged", live.version, live.n_chunks, 0, version_id=live.id)
            else:
                unchanged = None
                same_draft = s.exec(
                    select(DocVersion).where(DocVersion.document_id == doc.id, DocVersion.status == "draft",
                                             DocVersion.content_hash == content_hash)
                ).first() if doc is not None else None
                if same_draft is not None and not publish:
                    return IngestResult(name, doc_id, "draft", same_draft.version, same_draft.n_chunks, 0,
                                        reason="already waiting for approval", version_id=same_draft.id)
                version = str(meta.get("version") or "").strip() or self._next_version(s, doc)
        if unchanged is not None:
            self._keep_statements(missing)  # passages written before their statements' vectors were kept get them now
            return unchanged
        rows = [dict(ordinal=i, heading=d.heading, kind=d.kind, text=d.text, tokens=" ".join(tokenize(f"{title} {d.heading} {d.text}")),
                     embed_hash=hashlib.sha256(embed_texts[i].encode()).hexdigest()) for i, d in enumerate(drafts)]
        stated = [statement_texts(d.heading, d.text) for d in drafts]
        return _Pending(name, uploader, doc_id, version, content_hash, fields, roles, publish, embed_texts, rows, stated)

    def _keep_statements(self, chunks: list[Chunk]) -> None:
        """Give `chunks` their statements' vectors (written before they were kept, or by another model); the model runs
        outside any transaction, and readers rebuild their snapshot with them."""
        if not chunks:
            return
        units = [statement_texts(c.heading, c.text) for c in chunks]
        blobs = pack_statements(self.embedder.embed_passages([t for u in units for t in u]), [len(u) for u in units])
        with Session(self.engine) as s:
            for c, blob in zip(chunks, blobs):
                s.execute(update(Chunk).where(Chunk.id == c.id).values(statement_vectors=blob))
            _bump(s, chunks[0].tenant)
            s.commit()

    def _embed_and_write(self, batch: list[_Pending], progress) -> None:
        """Embed the passages of every pending file in one go, then write and publish each file on its own.
        Everything slow happens before the write transactions, which only insert (SQLite has one writer)."""
        texts = [t for p in batch for t in p.texts]
        if not texts:
            return
        stated = [t for p in batch for row in p.statements for t in row]
        vectors, missed = self.embedder.embed_passages_counted(texts + stated, progress=progress)
        at, k = 0, len(texts)
        for p in batch:
            n, m = len(p.texts), sum(len(u) for u in p.statements)
            p.vectors, p.embedded = vectors[at : at + n], int(missed[at : at + n].sum())
            for row, blob in zip(p.rows, pack_statements(vectors[k : k + m], [len(u) for u in p.statements])):
                row["statement_vectors"] = blob
            at, k = at + n, k + m
            try:
                p.result = self._write(p)
            except IngestError as exc:  # this file only (a draft decided meanwhile): the others of the batch go on
                p.result = IngestResult(p.name, p.doc_id, reason=str(exc), code=exc.code)

    def _write(self, p: _Pending) -> IngestResult:
        tenant, doc_id, rows, fields, version = p.uploader.tenant, p.doc_id, p.rows, p.fields, p.version
        with Session(self.engine) as s:
            doc = s.exec(select(Document).where(Document.tenant == tenant, Document.doc_id == doc_id)).first()
            if doc is None:
                doc = Document(tenant=tenant, doc_id=doc_id)
                s.add(doc)
                s.flush()
            is_update = doc.live_version_id is not None
            ver = DocVersion(document_id=doc.id, version=version, status="draft", content_hash=p.content_hash,
                             n_chunks=len(rows), ingested_by=p.uploader.id, **fields)
            s.add(ver)
            s.flush()
            for r in rows:
                r.update(id=f"v{ver.id}c{r['ordinal']}", version_id=ver.id, document_id=doc.id, tenant=tenant)
            for i in range(0, len(rows), INSERT_BATCH):
                s.execute(insert(Chunk.__table__), rows[i : i + INSERT_BATCH])
            s.commit()
            ver_id = ver.id

        # keep the vectors for the draft in the cache only; a published version goes live now
        result = IngestResult(p.name, doc_id, "draft", version, len(rows), p.embedded, version_id=ver_id)
        if p.publish:
            self.publish(ver_id, approver=p.uploader.id, vectors=p.vectors, roles=p.roles)
            result.status = "updated" if is_update else "added"
        return result

    def publish(self, version_id: int, approver: str, vectors=None, roles=None) -> DocVersion:
        """Make a draft version live: add its vectors, flip live in one transaction, drop the old vectors.

        The draft is claimed first (draft -> publishing, a conditional update), so two approvals of the
        same draft publish it once; the second is told it was already decided.
        """
        with Session(self.engine) as s:
            if s.execute(update(DocVersion).where(DocVersion.id == version_id, DocVersion.status == "draft")
                         .values(status="publishing")).rowcount != 1:
                raise AlreadyDecided(f"version {version_id} is not a draft (already published or rejected)")
            s.commit()
            ver = s.get(DocVersion, version_id)
            doc = s.get(Document, ver.document_id)
            doc_pk = doc.id
            chunks = s.exec(select(Chunk).where(Chunk.version_id == version_id).order_by(Chunk.ordinal)).all()
            roles = roles or audience_roles(ver.audience)
        try:
            if vectors is None:  # from the cache: the draft's passages were embedded at upload
                vectors = self.embedder.embed_passages([embed_text(ver.title, c.heading, c.text) for c in chunks])
            ids = [c.id for c in chunks]
            tenant = doc.tenant
            self.vectors.add(ids, vectors, tenant=tenant, roles=roles, team=ver.team, version_id=version_id)
            try:
                with Session(self.engine) as s:
                    ver = s.get(DocVersion, version_id)
                    doc = s.get(Document, ver.document_id)
                    old_id = doc.live_version_id
                    if old_id and old_id != version_id:
                        s.execute(update(DocVersion).where(DocVersion.id == old_id).values(status="superseded"))
                    ver.status = "live"
                    ver.approved_by = approver
                    ver.approved_at = datetime.now(timezone.utc)
                    doc.live_version_id = version_id
                    s.add_all([ver, doc])
                    _bump(s, doc.tenant)
                    s.commit()
            except Exception:
                self.vectors.delete_ids(tenant, ids)
                raise
        except Exception:
            with Session(self.engine) as s:  # back to draft: it can be approved again
                s.execute(update(DocVersion).where(DocVersion.id == version_id, DocVersion.status == "publishing").values(status="draft"))
                s.commit()
            raise
        # The version just replaced keeps its vectors until the next publish: a search that began on
        # the previous snapshot still finds it (old or new, never neither). Older ones go now.
        with Session(self.engine) as s:
            stale = s.exec(select(DocVersion.id).where(DocVersion.document_id == doc_pk,
                                                       DocVersion.status.in_(("superseded", "retired")),
                                                       DocVersion.id != (old_id or 0))).all()
        for vid in stale:
            self.vectors.delete_version(tenant, vid)
        return ver

    def reject(self, version_id: int, approver: str) -> DocVersion:
        with Session(self.engine) as s:
            if s.execute(update(DocVersion).where(DocVersion.id == version_id, DocVersion.status == "draft").values(
                    status="rejected", approved_by=approver, approved_at=datetime.now(timezone.utc))).rowcount != 1:
                raise AlreadyDecided(f"version {version_id} is not a draft (already published or rejected)")
            s.commit()
            return s.get(DocVersion, version_id)

    def retire(self, tenant: str, doc_id: str) -> bool:
        """Stop serving a document (its versions stay for audit)."""
        with Session(self.engine) as s:
            doc = s.exec(select(Document).where(Document.tenant == tenant, Document.doc_id == doc_id)).first()
            if doc is None or doc.live_version_id is None:
                return False
            old = doc.live_version_id
            s.execute(update(DocVersion).where(DocVersion.id == old).values(status="retired"))
            doc.live_version_id = None
            s.add(doc)
            _bump(s, tenant)
            s.commit()
        self.vectors.delete_version(tenant, old)
        return True

    def reembed_live(self) -> int:
        """Refill the vector index, and the statements' vectors, from every live version (after `VectorIndex.rebuild`
        for a new model; also how a knowledge base ingested before statements were kept gets them)."""
        n = 0
        with Session(self.engine) as s:
            live = s.exec(select(DocVersion, Document).join(Document, Document.live_version_id == DocVersion.id)).all()
        for ver, doc in live:
            with Session(self.engine) as s:
                chunks = s.exec(select(Chunk).where(Chunk.version_id == ver.id).order_by(Chunk.ordinal)).all()
            vectors = self.embedder.embed_passages([embed_text(ver.title, c.heading, c.text) for c in chunks])
            self.vectors.add([c.id for c in chunks], vectors, tenant=doc.tenant, roles=audience_roles(ver.audience), team=ver.team,
                             version_id=ver.id)
            self._keep_statements(chunks)
            n += len(chunks)
        return n

    @staticmethod
    def _next_version(s: Session, doc: Document | None) -> str:
        if doc is None:
            return "1"
        versions = s.exec(select(DocVersion.version).where(DocVersion.document_id == doc.id)).all()
        nums = [int(v) for v in versions if str(v).isdigit()]
        return str(max(nums, default=len(versions)) + 1)


@dataclass(eq=False)
class _Pending:
    """A parsed, chunked file waiting for its vectors; `result` once written."""

    name: str
    uploader: Uploader
    doc_id: str
    version: str
    content_hash: str
    fields: dict
    roles: frozenset[str]
    publish: bool
    texts: list[str]
    rows: list[dict]
    statements: list[list[str]]  # per row: the embedding texts of its statements
    vectors: object = None
    embedded: int = 0
    result: IngestResult = field(default_factory=lambda: IngestResult(""))


class AlreadyDecided(IngestError):
    """A draft that was already published or rejected (e.g. a second click on the same button)."""


def _bump(s: Session, tenant: str) -> None:
    st = s.get(KbState, tenant)
    if st is None:
        s.add(KbState(tenant=tenant, generation=1))
    else:
        st.generation += 1
        s.add(st)


def _first_heading(parsed: ParsedDoc) -> str:
    return next((b.text for b in parsed.blocks if b.kind == "heading" and b.text), "")
