"""`python -m bench agent`: scripted rep conversations (Chinese and English) with expected outcomes —
the right job, citations (and forbidden ones), refusals, CRM proposal fields, writes only after a yes,
nothing sent without approval — in offline mode and with a scripted model on a local OpenAI-protocol
server; pass rate and end-to-end latency per turn excluding model time."""
from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import func, select

from bot.settings import REPO_ROOT, Settings
from connectors.message import conversation_key

SCENARIOS = REPO_ROOT / "tests" / "data" / "agent_scenarios.jsonl"
NOW = datetime(2026, 11, 25, 16, 30, tzinfo=ZoneInfo("Asia/Shanghai"))  # the sample data's "today"


def load(path: Path = SCENARIOS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _counts(cp) -> dict[str, int]:
    from bot.pipeline.tables import OutboundRow
    from crm.models import Activity, StoreVisit, Task

    with cp.engine.connect() as c:
        def n(model, *where) -> int:
            return c.execute(select(func.count()).select_from(model).where(*where)).scalar()

        return {"activity": n(Activity, Activity.source.like("pending:%")), "task": n(Task, Task.source.like("pending:%")),
                "store_visit": n(StoreVisit, StoreVisit.source.like("pending:%")), "email": n(OutboundRow, OutboundRow.channel == "email")}


def check(expect: dict, replies, job: str, pending, before: dict, after: dict) -> list[str]:
    fails = []
    text = "\n".join((r.markdown or "") + "\n" + r.text for r in replies)
    cited = {c.doc_id for r in replies for c in r.citations}
    if "job" in expect and expect["job"] != job:
        fails.append(f"job {job} != {expect['job']}")
    if "grounded" in expect and any(r.grounded is not None for r in replies):
        if bool(replies[0].grounded) != expect["grounded"]:
            fails.append(f"grounded {replies[0].grounded} != {expect['grounded']}")
    if expect.get("cites_any") and not cited & set(expect["cites_any"]):
        fails.append(f"cited {sorted(cited)} has none of {expect['cites_any']}")
    if cited & set(expect.get("cites_none", [])):
        fails.append(f"cited a forbidden document {sorted(cited & set(expect['cites_none']))}")
    for s in expect.get("contains", []):
        if s not in text:
            fails.append(f"reply lacks {s!r}")
    for s in expect.get("not_contains", []):
        if s in text:
            fails.append(f"reply contains {s!r}")
    if expect.get("ask_which") and not (pending and pending.kind == "crm_choose"):
        fails.append("did not ask which account")
    if expect.get("no_proposal") and pending is not None and pending.status == "pending" and pending.kind == "crm_log":
        fails.append("proposed a write it should not")
    if "proposal" in expect:
        pl = pending.payload if pending is not None and pending.kind == "crm_log" else None
        if pl is None:
            fails.append("no proposal")
        else:
            want = expect["proposal"]
            got = {"account_id": pl.get("account_id"), "contact": pl.get("contact"), "kind": pl["activity"]["kind"],
                   "due": (pl.get("task") or {}).get("due_at", ""), "amount": (pl.get("changes") or {}).get("amount"),
                   "stage": (pl.get("changes") or {}).get("stage")}
            for k, v in want.items():
                ok = str(got[k] or "").startswith(v) if k == "due" else got[k] == v
                if not ok:
                    fails.append(f"proposal {k}={got[k]!r}, want {v!r}")
    for k, v in expect.get("writes", {}).items():
        if after[k] - before[k] != v:
            fails.append(f"{k} writes {after[k] - before[k]} != {v}")
    if expect.get("no_send") and after["email"] != before["email"]:
        fails.append("sent an email without approval")
    return fails


def run_mode(cp, scenarios: list[dict], model_clock: list[float]) -> dict:
    from connectors.message import InboundMessage

    results, latencies = [], []
    for sc in scenarios:
        person = cp.directory.get("default", sc["as"])
        conv_id = f"bench-{sc['id']}-{time.monotonic_ns()}"
        conv = conversation_key("console", person.tenant, conv_id)
        fails = []
        for i, turn in enumerate(sc["turns"]):
            before = _counts(cp)
            msg = InboundMessage(channel="console", tenant=person.tenant, conversation_id=conv_id, sender_id=person.id,
                                 text=turn["say"], platform_msg_id=f"{conv_id}-{i}", received_at=NOW)
            model_before = model_clock[0]
            t = time.perf_counter()
            replies = cp.agent.handle(person, msg)
            latencies.append(time.perf_counter() - t - (model_clock[0] - model_before))
            job = replies[0].meta.get("job", "pending") if replies else "pending"
            fails += [f"turn {i + 1}: {f}" for f in check(turn.get("expect", {}), replies, job, cp.agent.pending.latest(conv, person.id)
                                                         or _newest_pending(cp, conv), before, _counts(cp))]
        results.append({"id": sc["id"], "passed": not fails, "fails": fails})
    passed = sum(r["passed"] for r in results)
    return {"scenarios": len(results), "passed": passed, "pass_rate": round(passed / len(results), 3),
            "p50_ms_excl_model": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "p95_ms_excl_model": round(float(np.percentile(latencies, 95)) * 1000, 1),
            "failures": [r for r in results if not r["passed"]]}


def _newest_pending(cp, conv: str):
    from bot.agent.pending import _of
    from bot.agent.tables import PendingRow

    t = PendingRow.__table__
    with cp.engine.connect() as c:
        row = c.execute(select(t).where(t.c.conversation_key == conv).order_by(t.c.created_at.desc()).limit(1)).first()
    return _of(row) if row else None


def _copilot(root: Path, cache: Path, **kw):
    from bot.app import build_app

    cp = build_app(Settings(data_dir=root, embed_cache=cache, **kw))
    cp.load_samples()
    clock = [0.0]
    inner = cp.agent.model.complete

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            clock[0] += time.perf_counter() - t

    cp.agent.model.complete = timed
    return cp, clock


def run(cache: Path | None = None, data_root: Path | None = None) -> dict:
    from aiohttp import web

    from bench.load import free_port
    from tests.fakes.scripted_model import FakeOpenAI, policy

    root = Path(data_root or tempfile.mkdtemp(prefix="copilot-bench-agent-"))
    cache = cache or REPO_ROOT / ".cache" / "bench-embeddings.db"
    scenarios = load()
    out = {}
    cp, clock = _copilot(root / "offline", cache)
    try:
        out["offline"] = run_mode(cp, scenarios, clock)
    finally:
        cp.close()

    port = free_port()
    fake = FakeOpenAI(default=policy)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        cp, clock = _copilot(root / "model", cache, llm_base_url=f"http://127.0.0.1:{port}/v1", llm_timeout=10.0)
        try:
            out["scripted_model"] = run_mode(cp, scenarios, clock)
            out["scripted_model"]["model_calls"] = len(fake.requests)
        finally:
            cp.close()
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    return out
