"""A copilot process killed (SIGKILL) in the middle of a message answers it exactly once after restart."""
from __future__ import annotations

import asyncio
import signal

import pytest

from tests.conftest import ask_until_in_flight, free_port, replies_for, serve_env, start_serve, stop_serve, web_session
from tests.fakes.openai_server import FakeOpenAI, Step

pytestmark = pytest.mark.slow


async def test_killed_mid_message_is_answered_exactly_once_after_restart(tmp_path, aiohttp_server):
    fake = FakeOpenAI(default=lambda body: Step(text="星图标准实施周期 4–6 个月 [1]。"))
    fake.add(Step(delay=120, text="never delivered [1]"))  # the first model call hangs: the worker is mid-message
    server = await aiohttp_server(fake.app())
    port = free_port()
    env = serve_env(tmp_path, str(server.make_url("/v1")), COPILOT_LLM_TIMEOUT="300", COPILOT_LEASE_SECONDS="600")
    body = {"text": "星图软件的实施周期一般多长？", "conversation": "crash", "id": "crash-1"}
    base = f"http://127.0.0.1:{port}"

    proc = await start_serve(env, port)
    try:
        await ask_until_in_flight(env, base, body, fake.arrived)  # the worker is now inside the message
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

        proc = await start_serve(env, port)  # same data dir; the lease (600 s) has not expired: the dead pid frees it
        async with await web_session(base, "zhangwei") as s:
            async with s.post(base + "/api/chat", json=body) as r:  # the platform retries meanwhile
                assert r.status == 200 and (await r.json())["duplicate"] is True
            await replies_for(s, "crash", 1, timeout=120)
            await asyncio.sleep(1.5)  # anything doubled would arrive now
            async with s.get(base + "/api/replies", params={"conversation": "crash", "after": "0", "wait": "0"}) as r:
                replies = (await r.json())["replies"]
        assert len(replies) == 1
        assert replies[0]["inbox_id"] == 1
        assert "4–6 个月" in replies[0]["reply"]["text"]
        assert len(fake.requests) >= 2  # the killed attempt, then the resumed one (routing + answer)
    finally:
        await stop_serve(proc)
