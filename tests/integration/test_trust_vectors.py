"""A corrupt vector store does not take the channels down: retrieval degrades to BM25, `copilot doctor`
names the store and the fix, and `copilot kb rebuild` refills it from the stored passages."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

from sqlalchemy import select
from sqlmodel import Session

from connectors.message import InboundMessage, Reply
from tests.conftest import EMBED_CACHE

QUESTION = "星图软件的实施周期一般多长？"


def corrupt(chroma) -> None:
    for f in chroma.rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0garbage, not a database\0" * 64)


async def test_a_corrupt_vector_store_degrades_to_bm25_and_is_rebuilt(settings, make_app, tmp_path):
    from bot.doctor import run_checks
    from bot.pipeline.tables import OutboundRow
    from rag.retrieve import Viewer

    first = make_app()
    assert first.knowledge.vectors.count() > 0 and not first.knowledge.vectors.broken
    first.close()
    corrupt(settings.chroma_dir)

    cp = make_app()  # opens: no exception
    assert "unreadable" in cp.knowledge.vectors.broken and str(settings.chroma_dir) in cp.knowledge.vectors.broken
    hits = await asyncio.to_thread(cp.knowledge.retriever.search, QUESTION, Viewer("default", "rep", "华东区", "zhangwei"))
    assert hits and any("星图" in h.title + h.text for h in hits) and hits[0].relevance is not None

    await cp.start()  # the channels run and answer
    try:
        await cp.intake.sink(InboundMessage(channel="console", conversation_id="web-zhangwei", sender_id="zhangwei", sender_name="张伟",
                                            text=QUESTION, platform_msg_id="vec-1", received_at=datetime.now(timezone.utc)))
        for _ in range(200):
            with Session(cp.engine) as s:
                rows = s.execute(select(OutboundRow).where(OutboundRow.dedupe_key.like("in:%"))).scalars().all()
            if rows:
                break
            await asyncio.sleep(0.1)
        [row] = rows
        answer = Reply.model_validate_json(row.reply)
        assert answer.kind != "error" and ("4" in answer.text or "月" in answer.text or "周" in answer.text), answer.text
    finally:
        await cp.aclose()

    checks = {c.name: c for c in await run_checks(settings)}
    index = checks["knowledge index"]
    assert not index.ok and "unreadable" in index.detail and "copilot kb rebuild" in index.detail
    assert checks["database"].ok  # the database is not blamed

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")}, "COPILOT_DATA_DIR": str(settings.data_dir),
           "COPILOT_EMBED_CACHE": str(EMBED_CACHE), "COPILOT_CONFIG": str(tmp_path / "absent.toml")}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "kb", "rebuild"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "rebuilt the vector index" in done.stdout, done.stderr
    # a fresh process (as after a restart) finds the vectors again: dense search alone has hits
    dense = subprocess.run([sys.executable, "-m", "bot.cli", "search", QUESTION, "--mode", "dense", "--json"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert dense.returncode == 0 and "unreadable" not in dense.stderr and json.loads(dense.stdout), dense.stderr
