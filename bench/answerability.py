"""`python -m bench answerability`: does the copilot decline what the knowledge does not state, and still answer
what it does?

Sets: tests/data/unanswerable_questions.jsonl (near-domain questions over the sample knowledge whose asked
attribute no document states) must be declined; tests/data/retrieval_questions.jsonl and the answer turns of
tests/data/agent_scenarios.jsonl that expect a citation must be answered citing one of their right documents;
tests/data/offtopic_questions.jsonl is reported beside them. Both offline and with the scripted model
(tests/fakes/scripted_model.policy on a local OpenAI-protocol server), each with the answerability check and
without it (the baseline, measured in the same run). A sanity figure on real questions: a sample of
../shared/retrieval-dev (public Chinese insurance Q&A), answered% with and without the check (skipped, saying
why, when the set is absent).
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from bot.settings import REPO_ROOT, Settings

DATA = REPO_ROOT / "tests" / "data"
RETRIEVAL_DEV = REPO_ROOT.parent / "shared" / "retrieval-dev"
TARGET_DECLINED, TARGET_ANSWERED = 0.85, 0.90


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def unanswerable() -> list[dict]:
    return _lines(DATA / "unanswerable_questions.jsonl")


def answerable() -> list[dict]:
    """{"id", "q", "as", "good": [doc ids]}: the retrieval set and the agent scenarios' cited answers."""
    out = []
    for r in _lines(DATA / "retrieval_questions.jsonl"):
        who = "lina" if r.get("audience") == "managers" else ("tom" if r["lang"] == "en" else "zhangwei")
        out.append({"id": r["id"], "q": r["q"], "as": who, "good": [r["doc_id"], *r.get("alt", [])]})
    for sc in _lines(DATA / "agent_scenarios.jsonl"):
        for turn in sc["turns"]:
            ex = turn.get("expect", {})
            if ex.get("job") == "answer" and ex.get("grounded") and ex.get("cites_any"):
                out.append({"id": sc["id"], "q": turn["say"], "as": sc["as"], "good": ex["cites_any"]})
    return out


def measure(cp, checked: bool = True) -> dict:
    """Declined% of the unanswerable set and answered-with-a-right-citation% of the answerable ones."""
    from bot.agent import viewer_of

    answerer = cp.agent.answerer
    answerer.check_answerable = checked
    un, ans = unanswerable(), answerable()
    answered_un = []
    for u in un:
        a = answerer.answer(u["q"], viewer_of(cp.directory.get("default", "tom" if u["lang"] == "en" else "zhangwei")))
        if a.grounded:
            answered_un.append(u["id"])
    wrong = []
    for q in ans:
        a = answerer.answer(q["q"], viewer_of(cp.directory.get("default", q["as"])))
        if not (a.grounded and {c.doc_id for c in a.citations} & set(q["good"])):
            wrong.append(q["id"])
    off = _lines(DATA / "offtopic_questions.jsonl")
    answered_off = [o["id"] for o in off if answerer.answer(o["q"], viewer_of(cp.directory.get(
        "default", "tom" if o["lang"] == "en" else "zhangwei"))).grounded]
    answerer.check_answerable = True
    return {"unanswerable": len(un), "declined": round(1 - len(answered_un) / len(un), 3), "answered_anyway": answered_un,
            "offtopic": len(off), "offtopic_declined": round(1 - len(answered_off) / len(off), 3),
            "answerable": len(ans), "answered_right_citation": round(1 - len(wrong) / len(ans), 3), "missed": wrong}


def retrieval_dev(root: Path, sample: int = 60, docs: int = 240) -> dict:
    """Answered% of a sample of real questions over their own answers, with and without the check."""
    from bot.agent import viewer_of
    from bot.app import build_app
    from rag.ingest import Uploader

    if not (RETRIEVAL_DEV / "bxzd-dev-questions.jsonl").exists():
        return {"skipped": f"{RETRIEVAL_DEV} is absent (the public retrieval-dev set lives in ../shared next to the repository)"}
    questions = _lines(RETRIEVAL_DEV / "bxzd-dev-questions.jsonl")[:sample]
    gold = {g for q in questions for g in q["gold"]}
    texts = [d for d in _lines(RETRIEVAL_DEV / "bxzd-dev-docs.jsonl")]
    chosen = [d for d in texts if d["id"] in gold] + [d for d in texts if d["id"] not in gold][: max(0, docs - len(gold))]
    folder = root / "retrieval-dev"
    folder.mkdir(parents=True, exist_ok=True)
    for d in chosen:
        (folder / f"{d['id']}.md").write_text(f"---\nid: {d['id']}\ntitle: {d['id']}\n---\n\n{d['text']}\n", encoding="utf-8")
    cp = build_app(Settings(data_dir=root / "dev-data", embed_cache=REPO_ROOT / ".cache" / "retrieval-dev-embeddings.db"))
    try:
        cp.load_samples()  # the sample people (the knowledge is the dev set's answers, added below)
        cp.knowledge.ingestor.ingest_paths([folder], Uploader("bench", "admin", cp.settings.tenant))
        viewer = viewer_of(cp.directory.get("default", "zhangwei"))
        out = {}
        for checked in (False, True):
            cp.agent.answerer.check_answerable = checked
            answered = sum(cp.agent.answerer.answer(q["q"], viewer).grounded for q in questions)
            out["answered_with_check" if checked else "answered_without_check"] = round(answered / len(questions), 3)
        out["questions"] = len(questions)
        return out
    finally:
        cp.close()


@contextmanager
def scripted_model():
    """The scripted model (tests/fakes) on a loopback port; yields its /v1 URL."""
    from aiohttp import web

    from bench.load import free_port
    from tests.fakes.scripted_model import FakeOpenAI, policy

    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(FakeOpenAI(default=policy).app())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


def run(dev_sample: int = 60) -> dict:
    from bot.app import build_app

    root = Path(tempfile.mkdtemp(prefix="copilot-bench-answerability-"))
    cache = REPO_ROOT / ".cache" / "test-embeddings.db"
    out: dict = {"targets": {"declined": TARGET_DECLINED, "answered_right_citation": TARGET_ANSWERED}}
    with scripted_model() as url:
        for mode, kw in (("offline", {}), ("scripted_model", {"llm_base_url": url, "llm_timeout": 10.0})):
            cp = build_app(Settings(data_dir=root / mode, embed_cache=cache, **kw))
            try:
                cp.load_samples()
                out[mode] = {"with_check": measure(cp, True), "without_check": measure(cp, False)}
            finally:
                cp.close()
    out["retrieval_dev_sample"] = retrieval_dev(root, dev_sample)
    return out
