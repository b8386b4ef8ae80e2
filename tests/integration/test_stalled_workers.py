"""Workers that cannot be stalled: a handler past its timeout is a failed attempt (retried, then dead-lettered)
while other conversations are answered; a message that kills the process every time still ends in the dead
letters after max_attempts restarts, with the sender told."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import langchain_openai  # noqa: F401  (imported here, not inside the first model call: the timings below are the model's)
import pytest
from sqlalchemy import create_engine, select
from sqlmodel import Session

from connectors.message import InboundMessage
from tests.conftest import EMBED_CACHE, free_port, start_serve, stop_serve
from tests.fakes.openai_server import FakeOpenAI, Step

ANSWER = "星图标准实施周期 4–6 个月 [1]。"


def question(conv: str, msg_id: str) -> InboundMessage:
    return InboundMessage(channel="console", conversation_id=conv, sender_id="zhangwei", sender_name="zhangwei",
                          text="星图软件的实施周期一般多长？", platform_msg_id=msg_id)


def replies(engine, inbox_id: int) -> list[dict]:
    from bot.pipeline.tables import OutboundRow

    with Session(engine) as s:
        rows = s.execute(select(OutboundRow).where(OutboundRow.inbox_id == inbox_id).order_by(OutboundRow.id)).scalars().all()
    return [json.loads(r.reply) for r in rows]


async def wait_for(cond, timeout: float) -> float:
    t = time.perf_counter()
    while not cond():
        if time.perf_counter() - t > timeout:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)
    return time.perf_counter() - t


async def started_with_model(make_app, make_settings, aiohttp_server, *script: Step, retry_base: float):
    """A started copilot whose model answers `script` first, then ANSWER; a 2 s handler timeout, two attempts."""
    fake = FakeOpenAI(default=lambda body: Step(text=ANSWER))
    fake.add(*script)
    server = await aiohttp_server(fake.app())
    cp = make_app(make_settings(llm_base_url=str(server.make_url("/v1")), llm_timeout=60, llm_retries=0, handler_timeout=2.0,
                                max_attempts=2, retry_base_seconds=retry_base))
    await cp.start()
    return fake, cp


async def test_a_hanging_handler_times_out_while_another_conversation_is_answered(make_app, make_settings, aiohttp_server):
    fake, cp = await started_with_model(make_app, make_settings, aiohttp_server,
                                        Step(delay=3, text="too late [1]"),  # the first model call hangs past the handler's 2 s
                                        retry_base=3.0)
    try:
        hung = await cp.intake.sink(question("hang", "h-1"))
        await asyncio.wait_for(fake.arrived.wait(), 30)  # the first conversation is stuck in the model
        t = time.perf_counter()
        other = await cp.intake.sink(question("other", "o-1"))
        await wait_for(lambda: replies(cp.engine, other.inbox_id), 30)
        assert time.perf_counter() - t < 2.0  # answered while the other one still hangs
        assert not replies(cp.engine, hung.inbox_id)
        await wait_for(lambda: "longer than 2 s" in cp.inbox.get(hung.inbox_id).error, 10)  # timed out: retried later
        assert cp.inbox.get(hung.inbox_id).status == "queued" and not replies(cp.engine, hung.inbox_id)
        await wait_for(lambda: replies(cp.engine, hung.inbox_id), 30)
        [got] = replies(cp.engine, hung.inbox_id)
        assert "4–6 个月" in got["text"]
        row = cp.inbox.get(hung.inbox_id)
        assert row.status == "done" and row.attempts == 2
    finally:
        await cp.aclose()


@pytest.mark.slow
async def test_a_message_that_kills_the_process_every_time_is_dead_lettered(make_app, make_settings, tmp_path, aiohttp_server):
    fake = FakeOpenAI(default=lambda body: Step(delay=120, text="never delivered [1]"))  # every attempt is "in the model" when killed
    server = await aiohttp_server(fake.app())
    settings = make_settings(max_attempts=3)
    cp = make_app(settings)  # the sample people and knowledge; the message is taken in, not yet handled
    poison = await cp.intake.sink(question("poison", "p-1"))
    await cp.inbox.aclose()
    cp.close()
    env = {**os.environ, "COPILOT_DATA_DIR": str(settings.data_dir), "COPILOT_EMBED_CACHE": str(EMBED_CACHE),
           "COPILOT_CONFIG": str(tmp_path / "absent.toml"), "COPILOT_LLM_BASE_URL": str(server.make_url("/v1")),
           "COPILOT_LLM_TIMEOUT": "300", "COPILOT_LEASE_SECONDS": "600", "COPILOT_MAX_ATTEMPTS": "3"}
    port = free_port()
    engine = create_engine(settings.db_url)
    proc = None
    try:
        for attempt in range(1, 4):
            fake.arrived.clear()
            proc = await start_serve(env, port, demo=False)
            await asyncio.wait_for(fake.arrived.wait(), 60)  # the worker is inside the message...
            proc.send_signal(signal.SIGKILL)  # ...and the message kills it
            await proc.wait()
            with Session(engine) as s:
                from bot.pipeline.tables import InboxRow

                assert s.get(InboxRow, poison.inbox_id).attempts == attempt
        calls = len(fake.requests)
        proc = await start_serve(env, port, demo=False)  # the fourth start: three attempts never finished
        await wait_for(lambda: replies(engine, poison.inbox_id), 60)
        [sorry] = replies(engine, poison.inbox_id)
        assert sorry["kind"] == "error"
        with Session(engine) as s:
            row = s.get(InboxRow, poison.inbox_id)
            assert row.status == "dead" and "3 attempts never finished" in row.error
        await asyncio.sleep(1.0)
        assert len(fake.requests) == calls  # not handled a fourth time
    finally:
        await stop_serve(proc)
        engine.dispose()


async def test_the_thread_of_a_timed_out_attempt_stops_reading_the_model_and_does_not_answer(make_app, make_settings, aiohttp_server):
    """The handler's work runs in a thread that cannot be killed: past the timeout it stops at its next check (the
    next streamed piece), closes the model's stream, and its late answer is neither sent nor stored."""
    long_answer = "星图软件的标准实施周期是四到六个月" * 18  # 324 characters: 81 pieces, 0.05 s apart = 4 s
    fake, cp = await started_with_model(make_app, make_settings, aiohttp_server,
                                        Step(tool_calls=[{"name": "answer_question", "arguments": {"question": "星图软件的实施周期一般多长？"}}]),
                                        Step(text=long_answer + " [1]", chunk_delay=0.05), retry_base=8.0)
    try:
        msg = await cp.intake.sink(question("slow", "s-1"))
        await wait_for(lambda: "longer than 2 s" in (cp.inbox.get(msg.inbox_id).error or ""), 30)
        await asyncio.sleep(4.5)  # past the end of the stream, had the thread kept reading
        pieces = len(long_answer + " [1]") // 4 + 1
        assert fake.streamed and fake.streamed[0] < pieces * 3 // 4, fake.streamed  # it stopped near the timeout
        assert not replies(cp.engine, msg.inbox_id)  # the late thread answered nothing
        await wait_for(lambda: replies(cp.engine, msg.inbox_id), 30)  # the retry answers, once
        [got] = replies(cp.engine, msg.inbox_id)
        assert "4–6 个月" in got["text"]
    finally:
        await cp.aclose()
