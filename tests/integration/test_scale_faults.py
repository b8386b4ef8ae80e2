"""Two real `copilot serve` processes on one PostgreSQL database (a fresh one, dropped after): one is killed -9 in the
middle of a message whose model call hangs, while later messages of the same conversation wait at the other. The
survivor takes the orphaned message over once its lease lapses (no pid of another host is trusted) and answers
all three exactly once, in order."""
from __future__ import annotations

import asyncio
import json
import signal

import pytest

from tests.conftest import free_port, replies_for, serve_env, start_serve, stop_serve, user_add, web_session
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
                await stop_serve(p)


async def test_a_failing_and_hanging_channel_api_still_delivers_each_reply_once_in_order(tmp_path, aiohttp_server):
    """WeCom callbacks of one rep spread over two processes while the WeCom API answers 500 to the first sends and
    hangs past the client's timeout on one: every reply reaches the rep once (retries carry WeCom's duplicate check),
    in the order of the messages."""
    from aiohttp import web

    from tests.fakes.wecom_api import USERS_A, A, FakeCorp, FakeWeCom, callback, text_xml

    api = FakeWeCom()
    api.add_corp(FakeCorp(A["corp_id"], A["secret"], A["agent_id"], users=[dict(u) for u in USERS_A]))
    faults = {"500": 3, "hang": 1}

    @web.middleware
    async def failing(request, handler):
        if request.path.endswith("/message/send"):
            if faults["500"]:
                faults["500"] -= 1
                return web.json_response({"errmsg": "busy"}, status=500)
            if faults["hang"]:
                faults["hang"] -= 1
                await asyncio.sleep(11)  # past the connector's 10 s timeout
        return await handler(request)

    fake_app = api.app()
    fake_app.middlewares.append(failing)
    server = await aiohttp_server(fake_app)
    def answer(body: dict) -> Step:  # the answer names the question it answers (第N问), so the order shows
        import re

        asked = re.findall(r"第(\d)问", json.dumps(body, ensure_ascii=False))
        return Step(text=f"星图标准实施周期 4–6 个月 [1]。（第{asked[-1] if asked else '?'}问）")

    model = await aiohttp_server(FakeOpenAI(default=answer).app())
    with pg_database() as db:
        env = serve_env(tmp_path, str(model.make_url("/v1")), COPILOT_DATABASE_URL=db, COPILOT_RETRY_BASE_SECONDS="0.3",
                        COPILOT_WECOM_CORP_ID=A["corp_id"], COPILOT_WECOM_TOKEN=A["token"], COPILOT_WECOM_AES_KEY=A["aes_key"],
                        COPILOT_WECOM_SECRET=A["secret"], COPILOT_WECOM_AGENT_ID=str(A["agent_id"]),
                        COPILOT_WECOM_API_BASE=str(server.make_url("")).rstrip("/"))
        ports = free_port(), free_port()
        procs = [await start_serve(env, ports[0])]  # loads the sample people into the shared database
        from bot.people.directory import Directory
        from bot.storage import make_engine

        engine = make_engine(db)
        Directory(engine).link("zhangwei", "wecom", "ZhangWei")  # 张伟's WeCom account (copilot wecom sync-users does this)
        engine.dispose()
        procs.append(await start_serve(env, ports[1]))
        try:
            import aiohttp

            async with aiohttp.ClientSession() as s:
                for n in range(4):  # ZhangWei's messages alternate between the processes, as a load balancer spreads them
                    params, body = callback(A, text_xml(A, "ZhangWei", f"星图软件的实施周期一般多长？第{n}问", f"7{n:03d}"))
                    async with s.post(f"http://127.0.0.1:{ports[n % 2]}/wecom/callback", params=params, data=body) as r:
                        assert r.status == 200
            to_him = lambda m: m["touser"] == "ZhangWei"
            sent = await api.wait_sent(to_him, 4, timeout=60)
            await asyncio.sleep(3)  # a doubled reply would arrive now
            sent = [m for m in api.sent if to_him(m)]
        finally:
            for p in procs:
                await stop_serve(p)
    assert faults == {"500": 0, "hang": 0}
    said = [json.dumps(m, ensure_ascii=False) for m in sent]
    assert len(sent) == 4, said  # once each (a late delivery of the hung send would meet WeCom's duplicate check)
    assert [next(n for n in range(4) if f"第{n}问" in s) for s in said] == [0, 1, 2, 3], said  # in order
