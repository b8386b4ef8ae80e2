"""Attacks and a legitimate rep at the same time, against a real `copilot serve` behind a (trusted) proxy: the attacker's
requests are all refused and, once it keeps failing, its address is refused outright, while every message the rep
sends meanwhile is answered exactly once (a 429 is retried by the rep's client with the same message id, as the web
page does)."""
from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import free_port, serve_env, sign_in, start_serve, user_add
from tests.integration.test_sign_in_serve import stop

pytestmark = pytest.mark.slow
REP, ATTACKER = "198.51.100.10", "203.0.113.66"
QUESTIONS = ["星图软件的实施周期一般多长？", "折扣审批找谁？", "NorthPeak 的价格区间是多少？", "我们的数据存储在哪里？",
             "星图和我们比有什么弱点？", "报价单怎么发？", "试用期多长？", "续约提前多久提醒？"]


async def attack(base: str) -> list[int]:
    statuses: list[int] = []
    async with aiohttp.ClientSession(base_url=base, headers={"X-Forwarded-For": ATTACKER}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async def hit(method: str, path: str, **kw) -> None:
            async with s.request(method, path, allow_redirects=False, **kw) as r:
                statuses.append(r.status)

        page = await (await s.get("/login")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        for i in range(12):
            await asyncio.gather(
                hit("POST", "/api/chat", json={"as": "lina", "text": "折扣审批的底价是多少？", "id": f"a{i}"}),  # no session
                hit("GET", "/api/replies", params={"conversation": "web-lina", "wait": "0"}),
                hit("POST", "/api/chat", data=b'{"text":"x"}', headers={"Content-Type": "text/plain", "Origin": "https://evil.example"}),
                hit("POST", "/login", data={"csrf": csrf, "username": "lina", "password": f"guess-{i}"}),
                hit("GET", "/api/users"),
                hit("POST", "/admin/kb/upload", data=b"x" * 4096, headers={"Authorization": "Bearer wrong"}),
            )
    return statuses


async def test_attacks_do_not_cost_a_legitimate_rep_a_single_message(tmp_path):
    env = serve_env(tmp_path, "", COPILOT_TRUSTED_PROXIES='["127.0.0.1"]', COPILOT_ADDRESS_FAILURES_PER_MINUTE="20")
    env.pop("COPILOT_LLM_BASE_URL")  # offline answers
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_serve(env, port)
    try:
        await asyncio.to_thread(user_add, env, "zhangwei", "rep")
        rep = aiohttp.ClientSession(base_url=base, headers={"X-Forwarded-For": REP}, cookie_jar=aiohttp.CookieJar(unsafe=True))
        await sign_in(rep, "zhangwei")

        async def ask(i: int, q: str) -> None:
            for _ in range(20):
                async with rep.post("/api/chat", json={"text": q, "conversation": "day", "id": f"q{i}"}) as r:
                    if r.status in (200, 202):
                        return
                    assert r.status == 429, await r.text()
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            raise AssertionError(f"question {i} was never taken")

        async def legit() -> None:
            for i, q in enumerate(QUESTIONS):
                await ask(i, q)

        hostile, _ = await asyncio.gather(attack(base), legit())
        assert hostile and all(code in (400, 401, 403, 410, 413, 415, 429) for code in hostile), sorted(set(hostile))
        assert 429 in hostile  # the attacker's address was shut out once it kept failing
        async with rep.get("/api/me") as r:
            assert r.status == 200  # the rep, behind the same proxy, never was
        got: list[dict] = []
        for _ in range(60):
            async with rep.get("/api/replies", params={"conversation": "day", "after": got[-1]["id"] if got else 0, "wait": "2"}) as r:
                got += (await r.json())["replies"]
            if len(got) >= len(QUESTIONS):
                break
        await asyncio.sleep(1.0)
        async with rep.get("/api/replies", params={"conversation": "day", "after": 0, "wait": "0"}) as r:
            final = (await r.json())["replies"]
        await rep.close()
    finally:
        await stop(proc)
    assert len(final) == len(QUESTIONS)
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'copilot.db'}")
    with engine.connect() as c:
        senders = [s for (s,) in c.execute(text("SELECT json_extract(payload, '$.sender_id') FROM inbox")).all()]
        per_message = c.execute(text("SELECT inbox_id, count(*) FROM outbound WHERE inbox_id IS NOT NULL GROUP BY inbox_id")).all()
    engine.dispose()
    assert senders == ["zhangwei"] * len(QUESTIONS)  # nothing of the attacker's was stored
    assert len(per_message) == len(QUESTIONS) and all(n == 1 for _, n in per_message)  # each answered exactly once
