"""SIGTERM (or Ctrl-C) on `copilot serve`: it says it is stopping, lets the messages in flight finish for at most
COPILOT_SHUTDOWN_GRACE seconds, says when it is done and exits 0; an unfinished message resumes at the next start."""
from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.conftest import ask_until_in_flight, free_port, replies_for, serve_env, start_serve, web_session
from tests.fakes.openai_server import FakeOpenAI, Step

pytestmark = pytest.mark.slow

GRACE = 2


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, float, str]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        err = await asyncio.wait_for(proc.stderr.read(), GRACE + 5)
        rc = await asyncio.wait_for(proc.wait(), GRACE + 5 - (time.monotonic() - t0))
    except asyncio.TimeoutError:
        proc.kill()
        raise AssertionError(f"copilot serve did not exit within {GRACE + 5} s of SIGTERM") from None
    return rc, time.monotonic() - t0, err.decode()


async def test_sigterm_drains_for_at_most_the_grace_and_exits_0(tmp_path, aiohttp_server):
    fake = FakeOpenAI(default=lambda body: Step(text="星图标准实施周期 4–6 个月 [1]。"))
    fake.add(Step(delay=120, text="never delivered [1]"))  # the first model call hangs past the grace
    server = await aiohttp_server(fake.app())
    port = free_port()
    env = serve_env(tmp_path, str(server.make_url("/v1")), COPILOT_LLM_TIMEOUT="300", COPILOT_SHUTDOWN_GRACE=str(GRACE))
    body = {"text": "星图软件的实施周期一般多长？", "conversation": "stop", "id": "stop-1"}
    base = f"http://127.0.0.1:{port}"

    proc = await start_serve(env, port)
    try:
        await ask_until_in_flight(env, base, body, fake.arrived)  # a worker is inside the message
        rc, took, err = await stop(proc)
        assert rc == 0, err[-2000:]
        assert f"stopping: finishing 1 message in flight (at most {GRACE} s)" in err
        assert "stopped: 1 message unfinished; it resumes at the next start." in err
        assert "Traceback" not in err
        assert took >= GRACE - 0.5  # it did wait for the message

        proc = await start_serve(env, port)  # the unfinished message is answered after the restart, once
        async with await web_session(base, "zhangwei") as s:
            replies = await replies_for(s, "stop", 1, timeout=120)
        assert len(replies) == 1 and "4–6 个月" in replies[0]["reply"]["text"]

        rc, took, err = await stop(proc)  # nothing in flight: at once
        assert rc == 0 and "stopping: finishing 0 messages in flight" in err and "stopped: every message in flight finished." in err
        assert took < 5, took
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_message_that_finishes_within_the_grace_is_answered_before_exit(tmp_path, aiohttp_server):
    fake = FakeOpenAI(default=lambda body: Step(text="星图标准实施周期 4–6 个月 [1]。"))
    fake.add(Step(delay=1, text="星图标准实施周期 4–6 个月 [1]。"))
    server = await aiohttp_server(fake.app())
    port = free_port()
    env = serve_env(tmp_path, str(server.make_url("/v1")), COPILOT_SHUTDOWN_GRACE="20")
    base = f"http://127.0.0.1:{port}"
    proc = await start_serve(env, port)
    try:
        await ask_until_in_flight(env, base, {"text": "星图软件的实施周期一般多长？", "conversation": "soon", "id": "soon-1"}, fake.arrived)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        err = (await asyncio.wait_for(proc.stderr.read(), 25)).decode()
        assert await proc.wait() == 0 and time.monotonic() - t0 < 15, err[-2000:]
        assert "stopping: finishing 1 message in flight (at most 20 s)" in err
        assert "stopped: every message in flight finished." in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # the reply was stored (and, for the web chat, delivered) before the process exited
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'copilot.db'}")
    with engine.connect() as c:
        rows = c.execute(text("SELECT status FROM outbound WHERE conversation_key LIKE '%soon%'")).all()
    engine.dispose()
    assert rows and all(r.status == "sent" for r in rows), rows
