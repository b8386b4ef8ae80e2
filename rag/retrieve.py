"""Hybrid, permission-trimmed retrieval: dense (Chroma) + BM25 over jieba tokens, fused by score.

A passage's hybrid score is its cosine to the question plus its BM25 score over the question's best BM25 score,
weighted by KEYWORD_WEIGHT times the spread of the question's cosines (the best document's minus the 20th's): the
keywords break the dense model's near-ties, on the scale of this question and this embedder (multilingual-e5
compresses cosines into a narrow band, other models do not). A passage's cosine takes a share from its best
statement (sentence or table row, embedded at ingestion): the one line that answers is not diluted by the rest.
Fusion is late, by document: a document's best passage scores the document's best cosine plus its best keyword
match. `mode="rrf"` is the reciprocal rank fusion this replaced, kept for the benchmark.

Permissions are applied before ranking: the dense search carries them as a `where` filter and
the BM25 scores of chunks the viewer may not see are removed before the top-k is taken. Only
`live` versions are served; a snapshot of them is rebuilt whenever the tenant's generation moves,
so a reader sees either the old version or the new one, never both or neither.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Callable

import bm25s
import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from rag.embed import Embedder
from rag.index import VectorIndex
from rag.store import SEE_ALL, Chunk, ChunkUse, Document, DocVersion, KbState, audience_roles, unpack_statements
from rag.text import embed_text, normalize, tokenize

# Chosen on the sample knowledge's questions and the public retrieval-dev set together (docs/retrieval.md):
# the middle of the range (0.6-1.0) that is best on both.
KEYWORD_WEIGHT = 0.8  # the question's best keyword match is worth this share of the cosines' spread
STATEMENT_WEIGHT = 0.4  # a passage's cosine: this share from its best statement (sentence, table row), the rest its own
SPREAD_AT = 20  # the spread: the best document's cosine minus the one of this rank
EXPIRED_PENALTY = 0.02  # cosine: expired content still answers, flagged, but ranks below current content
RRF_K = 10  # mode="rrf" (the fusion before issue 23): small k favours agreement at the top
DENSE_WEIGHT = 1.0
BM25_WEIGHT = 0.7
EXPIRED_WEIGHT = 0.6
MODES = ("hybrid", "dense", "bm25", "rrf")


@dataclass(frozen=True)
class Viewer:
    """Who is asking: retrieval only ever needs the tenant, the role and the team."""

    tenant: str
    role: str
    team: str = ""
    user_id: str = ""


@dataclass
class Hit:
    doc_id: str
    title: str
    chunk_id: str
    score: float  # fused rank score (RRF)
    snippet: str
    source: str
    version: str
    heading: str = ""
    text: str = ""
    relevance: float | None = None  # cosine similarity to the query (dense), for the score floor
    updated: str = ""
    expires: str = ""
    owner: str = ""
    doc_type: str = ""
    competitor: str = ""
    lang: str = ""
    document_pk: int = 0
    age_days: int | None = None
    expired: bool = False

    def public(self) -> dict:
        keys = ("doc_id", "title", "chunk_id", "score", "snippet", "source", "version", "heading", "updated", "expires", "relevance")
        d = asdict(self)
        out = {k: d[k] for k in keys}
        out["score"] = round(self.score, 5)
        out["relevance"] = None if self.relevance is None else round(self.relevance, 4)
        return out


@dataclass
class _Snapshot:
    generation: int
    ids: list[str]
    pos: dict[str, int]
    meta: list[dict]
    role_mask: dict[str, np.ndarray]
    teams: np.ndarray
    live_versions: set[int]
    bm25: bm25s.BM25 | None
    idf: dict[str, float]
    statements: list[np.ndarray | None]  # per passage: its statements' vectors (float16), None where not kept
    masks: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def mask(self, role: str, team: str) -> np.ndarray:
        key = (role, team)
        if key not in self.masks:
            if role in SEE_ALL:
                m = np.ones(len(self.ids), dtype=bool)
            else:
                m = self.role_mask.get(role, np.zeros(len(self.ids), dtype=bool)) & ((self.teams == "") | (self.teams == team))
            self.masks[key] = m
        return self.masks[key]


def _late_fusion(snap: _Snapshot, fused: dict[int, float], cos: dict[int, float], bm: dict[int, float], floor: float,
                 expired: set[int], weight: float, untitled: Callable[[int], float] | None, own: dict[int, float]) -> dict[int, float]:
    """Late fusion by document: a document's best passage scores its best cosine plus `weight` times its best keyword
    match, even when two different passages have them (the name in one section, the answer in another); its other
    passages keep their own score. Its best passage is chosen by the same rule on the spread of its own passages'
    cosines, with the keywords that are not in its title (`untitled`): the document's name, in all its passages,
    does not pick the section (the price section for "how is NorthPeak priced"), and by the passages' `own` cosines (a
    sentence naming the company in the overview does not either)."""
    docs: dict[str, list[int]] = {}
    for p in fused:
        docs.setdefault(snap.meta[p]["doc_id"], []).append(p)
    for ps in docs.values():
        cs = [cos.get(p, floor) for p in ps]
        ocs = [own.get(p, floor) for p in ps]
        w = KEYWORD_WEIGHT * (max(ocs) - min(ocs))
        best = max(ps, key=lambda p: own.get(p, floor) + (w * untitled(p) if untitled and w else 0.0))
        fused[best] = max(cs) + weight * max(bm.get(p, 0.0) for p in ps) - EXPIRED_PENALTY * (best in expired)
    return fused


def _with_statements(snap: _Snapshot, qvec: np.ndarray, cos: dict[int, float]) -> dict[int, float]:
    """Each passage's cosine, a STATEMENT_WEIGHT share of it taken from its best statement: a long passage whose one
    sentence states the asked thing is not diluted by the rest (docs/retrieval.md)."""
    out = dict(cos)
    for p, c in cos.items():
        m = snap.statements[p]
        if m is not None and len(m):
            out[p] = (1 - STATEMENT_WEIGHT) * c + STATEMENT_WEIGHT * float(np.max(m.astype(np.float32) @ qvec))
    return out


def _age_days(updated: str, today: date | None = None) -> int | None:
    try:
        return ((today or date.today()) - date.fromisoformat(updated[:10])).days
    except ValueError:
        return None


class Retriever:
    def __init__(self, engine: Engine, vectors: VectorIndex, embedder: Embedder, *, t2s: bool = True, reranker=None) -> None:
        self.engine = engine
        self.vectors = vectors
        self.embedder = embedder
        self.t2s = t2s
        self.reranker = reranker
        self._snaps: dict[str, _Snapshot] = {}
        self._lock = threading.Lock()

    # snapshot ----------------------------------------------------------------------------------
    def generation(self, tenant: str) -> int:
        with Session(self.engine) as s:
            st = s.get(KbState, tenant)
            return st.generation if st else 0

    def snapshot(self, tenant: str) -> _Snapshot:
        gen = self.generation(tenant)
        snap = self._snaps.get(tenant)
        if snap is not None and snap.generation == gen:
            return snap
        with self._lock:
            snap = self._snaps.get(tenant)
            if snap is None or snap.generation != gen:
                snap = self._build(tenant, gen)
                self._snaps[tenant] = snap
        return snap

    def _build(self, tenant: str, gen: int) -> _Snapshot:
        stmt = (
            select(Chunk.id, Chunk.tokens, Chunk.text, Chunk.heading, Chunk.statement_vectors, DocVersion, Document.doc_id, Document.id)
            .join(DocVersion, DocVersion.id == Chunk.version_id)
            .join(Document, Document.id == Chunk.document_id)
            .where(Chunk.tenant == tenant, DocVersion.status == "live")
            .order_by(Chunk.document_id, Chunk.ordinal)
        )
        with Session(self.engine) as s:
            rows = s.execute(stmt).all()
        ids, meta, corpus, teams, live, stated = [], [], [], [], set(), []
        roles: dict[str, list[bool]] = {r: [] for r in ("rep", "manager", "enablement", "admin")}
        dim = self.embedder.dim
        for cid, tokens, text, heading, vectors, v, doc_id, doc_pk in rows:
            ids.append(cid)
            stated.append(unpack_statements(vectors, dim))
            corpus.append(tokens.split())
            allowed = audience_roles(v.audience)
            for r in roles:
                roles[r].append(r in allowed)
            teams.append(v.team)
            live.add(v.id)
            meta.append(
                dict(doc_id=doc_id, title=v.title, text=text, heading=heading, source=v.source, version=v.version,
                     updated=v.updated, expires=v.expires, owner=v.owner, doc_type=v.doc_type, competitor=v.competitor,
                     lang=v.lang, document_pk=doc_pk)
            )
        bm25 = None
        if any(corpus):
            bm25 = bm25s.BM25()
            bm25.index([toks or ["\u2205"] for toks in corpus], show_progress=False)
        df: dict[str, int] = {}
        for toks in corpus:
            for t in set(toks):
                df[t] = df.get(t, 0) + 1
        n = max(len(corpus), 1)
        idf = {t: max(math.log((n - c + 0.5) / (c + 0.5) + 1.0), 0.05) for t, c in df.items()}
        return _Snapshot(
            generation=gen, ids=ids, pos={c: i for i, c in enumerate(ids)}, meta=meta,
            role_mask={r: np.array(v, dtype=bool) for r, v in roles.items()},
            teams=np.array(teams, dtype=object), live_versions=live, bm25=bm25, idf=idf, statements=stated,
        )

    # search ------------------------------------------------------------------------------------
    def search(self, query: str, viewer: Viewer, *, k: int = 5, per_doc: int = 1, mode: str = "hybrid", depth: int = 60) -> list[Hit]:
        """Best passages first. A search that overlapped a publish is run again on the new snapshot:
        the vectors it read may belong to a version that was replaced meanwhile (publishes are rare;
        the bound only stops a reader from spinning behind a bulk re-ingest)."""
        for _ in range(20):
            snap = self.snapshot(viewer.tenant)
            hits = self._search(snap, query, viewer, k, per_doc, mode, depth)
            if self.generation(viewer.tenant) == snap.generation:
                break
        return hits

    def _search(self, snap: _Snapshot, query: str, viewer: Viewer, k: int, per_doc: int, mode: str, depth: int) -> list[Hit]:
        q = normalize(query, t2s=self.t2s)
        if not snap.ids or not q:
            return []
        allowed = snap.mask(viewer.role, viewer.team)
        if not allowed.any():
            return []
        lists: list[tuple[float, list[int]]] = []
        cos: dict[int, float] = {}
        bm: dict[int, float] = {}
        qvec, toks = None, []
        if mode in ("hybrid", "dense", "rrf"):
            qvec = self.embedder.embed_queries([q])[0]
            dense = []
            for cid, sim, vid in self.vectors.query(qvec, viewer.tenant, viewer.role, viewer.team, depth):
                p = snap.pos.get(cid)
                if p is not None and vid in snap.live_versions and allowed[p]:
                    dense.append(p)
                    cos[p] = sim
            lists.append((DENSE_WEIGHT, dense))
        if mode in ("hybrid", "bm25", "rrf") and snap.bm25 is not None:
            toks = tokenize(q)
            if toks:
                scores = snap.bm25.get_scores(toks).astype(np.float64)
                scores = np.where(allowed, scores, -np.inf)
                top = [int(p) for p in np.argsort(-scores)[:depth] if scores[p] > 0]
                lists.append((BM25_WEIGHT, top))
                # every candidate's keyword score, the dense ones' too (not only the BM25 list's)
                bm = {p: float(scores[p]) / float(scores[top[0]]) for p in {*top, *cos} if scores[p] > 0}
        expired = {p for p in {*cos, *bm} if snap.meta[p]["expires"] and snap.meta[p]["expires"] < date.today().isoformat()}
        relevance = cos  # the passage's own cosine: what an answer's score floor reads
        if mode == "hybrid":
            self._cosines(snap, viewer.tenant, qvec, [p for p in bm if p not in cos], cos)
            relevance, cos = cos, _with_statements(snap, qvec, cos)
            floor = min(cos.values(), default=0.0)  # no vector for it (a broken store): ranked by its keywords alone
            by_doc: dict[str, float] = {}
            for p, c in cos.items():
                by_doc[snap.meta[p]["doc_id"]] = max(c, by_doc.get(snap.meta[p]["doc_id"], -1.0))
            top = sorted(by_doc.values(), reverse=True)[:SPREAD_AT]
            w = KEYWORD_WEIGHT * (top[0] - top[-1]) if len(top) > 1 and top[0] > top[-1] else 1.0
            fused = {p: cos.get(p, floor) + w * bm.get(p, 0.0) - EXPIRED_PENALTY * (p in expired) for p in {*cos, *bm}}
            fused = _late_fusion(snap, fused, cos, bm, floor, expired, w, self._untitled(snap, toks, allowed) if bm else None,
                                 relevance)
        else:
            fused = {}
            for weight, lst in lists:
                for rank, p in enumerate(lst):
                    fused[p] = fused.get(p, 0.0) + weight / (RRF_K + rank + 1)
            fused = {p: f * (EXPIRED_WEIGHT if p in expired else 1.0) for p, f in fused.items()}
        order = sorted(fused, key=lambda p: -fused[p])
        if qvec is not None:
            self._cosines(snap, viewer.tenant, qvec, [p for p in order[:depth] if p not in cos], cos)
            if self.vectors.broken:  # no vector store: the relevance of the BM25 results from the (cached) embeddings
                head = [p for p in order[: min(depth, 20)] if p not in cos]
                if head:
                    vecs = self.embedder.embed_passages([embed_text(snap.meta[p]["title"], snap.meta[p]["heading"], snap.meta[p]["text"])
                                                         for p in head])
                    cos.update({p: float(v @ qvec) for p, v in zip(head, vecs)})
        if self.reranker is not None and order:
            head = order[: min(len(order), 20)]
            scores = self.reranker.score(q, [snap.meta[p]["text"] for p in head])
            order = [p for _, p in sorted(zip(scores, head), key=lambda t: -t[0])] + order[len(head):]
        hits: list[Hit] = []
        per: dict[str, int] = {}
        today = date.today()
        for p in order:
            m = snap.meta[p]
            if per.get(m["doc_id"], 0) >= per_doc:
                continue
            per[m["doc_id"]] = per.get(m["doc_id"], 0) + 1
            hits.append(self._hit(snap, p, fused[p], relevance.get(p, cos.get(p)), today))
            if len(hits) >= k:
                break
        return hits

    @staticmethod
    def _untitled(snap: _Snapshot, toks: list[str], allowed: np.ndarray) -> Callable[[int], float]:
        """A passage's BM25 score for the question's words that are not in its document's title (over the best
        passage's score for all of them): one BM25 pass per distinct word, for the passages asked about."""
        per_word = {t: snap.bm25.get_scores([t]).astype(np.float64) * toks.count(t) for t in set(toks)}
        total = np.where(allowed, sum(per_word.values()), 0.0).max() or 1.0
        titles: dict[str, set[str]] = {}

        def score(p: int) -> float:
            m = snap.meta[p]
            drop = titles.get(m["doc_id"])
            if drop is None:
                drop = titles[m["doc_id"]] = set(tokenize(m["title"]))
            return sum(float(v[p]) for t, v in per_word.items() if t not in drop) / total

        return score

    def _cosines(self, snap: _Snapshot, tenant: str, qvec: np.ndarray, todo: list[int], cos: dict[int, float]) -> None:
        """Add the cosine to `qvec` of the passages `todo` from their stored vectors."""
        for cid, vec in self.vectors.vectors(tenant, [snap.ids[p] for p in todo]).items():
            cos[snap.pos[cid]] = float(vec @ qvec)

    def documents(self, viewer: Viewer, doc_type: str | None = None) -> list[dict]:
        """The live documents a viewer may read (one entry each), optionally of one type."""
        snap = self.snapshot(viewer.tenant)
        allowed = snap.mask(viewer.role, viewer.team) if snap.ids else []
        seen: dict[str, dict] = {}
        for p, ok in enumerate(allowed):
            m = snap.meta[p]
            if ok and m["doc_id"] not in seen and (doc_type is None or m["doc_type"] == doc_type):
                seen[m["doc_id"]] = {k: m[k] for k in ("doc_id", "title", "doc_type", "competitor", "lang", "version", "updated", "expires")}
        return list(seen.values())

    def document_hits(self, viewer: Viewer, doc_id: str) -> list[Hit]:
        """Every live passage of one document, in order, if the viewer may read it (else none)."""
        snap = self.snapshot(viewer.tenant)
        if not snap.ids:
            return []
        allowed = snap.mask(viewer.role, viewer.team)
        today = date.today()
        return [self._hit(snap, p, 0.0, None, today) for p, m in enumerate(snap.meta) if m["doc_id"] == doc_id and allowed[p]]

    def _hit(self, snap: _Snapshot, p: int, score: float, relevance: float | None, today: date) -> Hit:
        m = snap.meta[p]
        text = m["text"]
        return Hit(doc_id=m["doc_id"], title=m["title"], chunk_id=snap.ids[p], score=score,
                   snippet=text if len(text) <= 240 else text[:238] + "…", source=m["source"], version=m["version"],
                   heading=m["heading"], text=text, relevance=relevance, updated=m["updated"], expires=m["expires"],
                   owner=m["owner"], doc_type=m["doc_type"], competitor=m["competitor"], lang=m["lang"],
                   document_pk=m["document_pk"], age_days=_age_days(m["updated"], today),
                   expired=bool(m["expires"]) and m["expires"] < today.isoformat())

    def idf(self, tenant: str) -> dict[str, float]:
        """BM25 inverse document frequencies of the live corpus (for sentence scoring)."""
        return self.snapshot(tenant).idf

    def record_use(self, tenant: str, hits: list[Hit], kind: str, actor: str, ref: str = "") -> None:
        if not hits:
            return
        with Session(self.engine) as s:
            s.add_all(ChunkUse(tenant=tenant, document_id=h.document_pk, chunk_id=h.chunk_id, kind=kind, actor=actor, ref=ref) for h in hits)
            s.commit()


class CrossEncoderReranker:
    """Optional rerank with a sentence-transformers cross-encoder kept on disk (COPILOT_RERANK_MODEL)."""

    def __init__(self, path: str) -> None:
        from rag.embed import EmbedderError, sentence_transformers_class

        CrossEncoder = sentence_transformers_class("CrossEncoder")
        try:
            self._m = CrossEncoder(path, device="cpu")
        except Exception as exc:
            raise EmbedderError(f"cannot load the cross-encoder {path!r} (COPILOT_RERANK_MODEL): {exc}") from exc
        self._lock = threading.Lock()

    def score(self, query: str, texts: list[str]) -> list[float]:
        with self._lock:
            return [float(x) for x in self._m.predict([(query, t) for t in texts])]
