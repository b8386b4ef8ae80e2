"""Two real `copilot serve` processes on one PostgreSQL database (a fresh one, dropped after): one is killed -9 in the
middle of a message whose model call hangs, while later messages of the same conversation wait at the other. The
survivor takes the orphaned message over once its lease lapses (no pid of another host is trusted) and answers
all three exactly once, in order."""
from __future__ import annotations

import asyncio
import signal

import pytest

from tests.conftest import free_port, replies_for, serve_env, start_serve, user_add, web_session
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.services import pg_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


async def test_killed_process_work_taken_over_in_order_by_the_other(tmp_path, aiohttp_server):
    fake = FakeOpenAI(default=lambda body: Step(text="星图标准实施周期 4–6 个月 [1]。"))
    fake.add(Step(delay=120, text="never delivered [1]"))  # the first model call hangs: process A is mid-message
    model = await aiohttp_server(fake.app())
    with pg_database() as db:
        env = serve_env(tmp_path, str(model.make_url("/v1")), COPILOT_DATABASE_URL=db, COPILOT_LEASE_SECONDS="3",
                        COPILOT_LLM_TIMEOUT="300")
        pa, pb = free_port(), free_port()
        a = await start_serve(env, pa)  # the first start loads the samples into the shared database
        b = await start_serve(env, pb)
        try:
            await asyncio.to_thread(user_add, env, "zhangwei", "rep")
            sa = await web_session(f"http://127.0.0.1:{pa}", "zhangwei")
            sb = await web_session(f"http://127.0.0.1:{pb}", "zhangwei")  # one session, valid at both processes
            try:
                r = await sa.post("/api/chat", json={"text": "星图软件的实施周期一般多长？", "conversation": "k", "id": "k-1"})
                assert r.status == 202
                await asyncio.wait_for(fake.arrived.wait(), 60)  # A is inside message 1
                for n in (2, 3):  # later messages of the conversation land at B: they must wait for message 1
                    r = await sb.post("/api/chat", json={"text": f"星图的实施周期呢？({n})", "conversation": "k", "id": f"k-{n}"})
                    assert r.status == 202
                await asyncio.sleep(1.0)
                assert await replies_for(sb, "k", 1, timeout=0.5) == []  # nothing answered out of order meanwhile
                a.send_signal(signal.SIGKILL)
                await a.wait()
                await replies_for(sb, "k", 3, timeout=60)
                await asyncio.sleep(2.0)  # anything doubled would arrive now
                after = await (await sb.get("/api/replies", params={"conversation": "k", "after": "0", "wait": "0"})).json()
            finally:
                await sa.close()
                await sb.close()
            ids = [x["inbox_id"] for x in after["replies"]]
            assert sorted(set(ids)) == ids and len(ids) == 3, ids  # each message answered once, in order
            assert all("4–6 个月" in x["reply"]["text"] for x in after["replies"])
        finally:
            for p in (a, b):
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
                    await p.wait()
