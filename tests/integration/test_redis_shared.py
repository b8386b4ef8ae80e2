"""Redis shared by several copilot processes (COPILOT_REDIS_URL), on a redis-server the test starts: one gettoken per
app for every process, a sender over the limit at one process refused at the other, the replay guard's memory in
Redis instead of the database; and when Redis goes away, everything falls back to the process (a warning, a metric),
refusing and losing nothing. Each "process" here is its own set of clients and connections built the way the app
factory builds them (bot.app.channel_connectors / bot.pipeline.ratelimit.limiters); real processes are in
test_scale_faults.py."""
from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from bot.ops.metrics import Metrics
from bot.ops.shared import SharedRedis
from bot.pipeline.checks import redis_check
from bot.pipeline.ratelimit import limiters
from connectors.replay import SeenSignatures
from tests.fakes.services import redis_server
from tests.fakes.wecom_api import A, FakeCorp, FakeWeCom


@pytest.fixture
def redis(tmp_path):
    with redis_server(tmp_path) as server:
        yield server


def process(url: str) -> tuple[SharedRedis, Metrics]:
    metrics = Metrics()
    return SharedRedis(url, on_fallback=lambda use: metrics.redis_fallbacks.labels(use).inc()), metrics


def fallbacks(metrics: Metrics, use: str) -> float:
    return metrics.redis_fallbacks.labels(use)._value.get()


async def test_two_processes_fetch_one_wecom_token_between_them(redis, make_settings, aiohttp_server, monkeypatch):
    from bot.app import channel_connectors

    fake = FakeWeCom()
    fake.add_corp(FakeCorp(A["corp_id"], A["secret"], A["agent_id"]))
    fake.gettoken_delay = 0.2  # both processes ask while the first fetch is under way
    server = await aiohttp_server(fake.app())
    settings = make_settings()
    env = {"COPILOT_WECOM_CORP_ID": A["corp_id"], "COPILOT_WECOM_TOKEN": A["token"], "COPILOT_WECOM_AES_KEY": A["aes_key"],
           "COPILOT_WECOM_SECRET": A["secret"], "COPILOT_WECOM_AGENT_ID": str(A["agent_id"]),
           "COPILOT_WECOM_API_BASE": str(server.make_url("")).rstrip("/")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    shared = [process(redis.url)[0] for _ in range(2)]
    connectors = []
    try:
        connectors = [c for s in shared for c in channel_connectors(settings, shared=s) if c.name == "wecom"]
        assert len(connectors) == 2
        clients = [next(iter(c.clients.values())) for c in connectors]
        tokens = await asyncio.gather(*(c.access_token() for c in clients for _ in range(10)))
        assert len(set(tokens)) == 1 and fake.gettoken_calls[A["corp_id"]] == 1
        # WeCom refuses the token at one process: that process fetches a new one, and the other uses it too
        fresh = await clients[0].access_token(stale=tokens[0])
        assert fresh != tokens[0] and await clients[1].access_token() == fresh
        assert fake.gettoken_calls[A["corp_id"]] == 2
    finally:
        for c in connectors:
            await c.aclose()
        for s in shared:
            await s.aclose()


async def test_a_sender_over_the_limit_at_one_process_is_refused_at_the_other(redis):
    (a, _), (b, mb) = process(redis.url), process(redis.url)
    at_a, at_b = limiters(a)("intake", 60, 3), limiters(b)("intake", 60, 3)
    try:
        assert [await at_a.allow("wecom|t|zhang") for _ in range(3)] == [True] * 3
        assert not await at_b.ready("wecom|t|zhang") and not await at_b.allow("wecom|t|zhang")  # the same bucket
        assert await at_b.allow("wecom|t|li")  # another sender has their own
        alone = limiters(None)("intake", 60, 3)  # without Redis each process counts alone
        assert [await alone.allow("wecom|t|zhang") for _ in range(3)] == [True] * 3
        await asyncio.sleep(1.05)  # one token a second comes back
        assert await at_b.allow("wecom|t|zhang") and not await at_a.allow("wecom|t|zhang")
        assert fallbacks(mb, "limit") == 0
    finally:
        await a.aclose()
        await b.aclose()


async def test_replay_memory_in_redis_is_seen_by_every_process(redis, tmp_path):
    from sqlalchemy import func, select

    from bot.storage import make_engine
    from connectors.replay import seen_table

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    (a, _), (b, _) = process(redis.url), process(redis.url)
    try:
        guard_a = SeenSignatures(300, engine=engine, shared=a.claims())
        guard_b = SeenSignatures(300, engine=engine, shared=b.claims())
        now = guard_a.clock()
        assert await asyncio.to_thread(guard_a.claim, "app|1", now, "body-1") is None
        assert await asyncio.to_thread(guard_b.claim, "app|1", now, "body-2") == "body-1"  # the other body is refused
        assert await asyncio.to_thread(guard_b.seen, "app|1") == "body-1"
        ttl = await a.aio.pttl(a.key("seen", "app|1"))
        assert 299_000 < ttl <= 300_000  # remembered until the timestamp leaves the window
        with engine.connect() as c:
            assert c.execute(select(func.count()).select_from(seen_table)).scalar() == 0  # Redis instead of the table
    finally:
        await a.aclose()
        await b.aclose()
        engine.dispose()


async def test_redis_going_away_falls_back_to_the_process_and_the_database(redis, tmp_path, aiohttp_server, caplog):
    from sqlalchemy import func, select

    from bot.storage import make_engine
    from connectors.replay import seen_table
    from connectors.wecom.client import WeComClient
    from connectors.wecom.config import CorpConfig

    fake = FakeWeCom()
    fake.add_corp(FakeCorp(A["corp_id"], A["secret"], A["agent_id"]))
    server = await aiohttp_server(fake.app())
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    shared, metrics = process(redis.url)
    client = WeComClient(CorpConfig(api_base=str(server.make_url("")).rstrip("/"), **A), tokens=shared.tokens())
    limit = limiters(shared)("intake", 60, 2)
    guard = SeenSignatures(300, engine=engine, shared=shared.claims())
    try:
        token = await client.access_token()
        assert [await limit.allow("zhang") for _ in range(3)] == [True, True, False]
        redis.kill()
        with caplog.at_level(logging.WARNING, logger="copilot.redis"):
            assert await client.access_token() == token  # this process's copy: no second gettoken
            assert await limit.allow("zhang") and await limit.allow("zhang")  # its own bucket: nobody refused for the outage
            assert await asyncio.to_thread(guard.claim, "app|2", guard.clock(), "b") is None
        warnings = [r for r in caplog.records if r.name == "copilot.redis"]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()  # once per outage, not per call
        assert fake.gettoken_calls[A["corp_id"]] == 1
        assert fallbacks(metrics, "token") >= 1 and fallbacks(metrics, "limit") >= 2 and fallbacks(metrics, "replay") >= 1
        with engine.connect() as c:
            assert c.execute(select(func.count()).select_from(seen_table)).scalar() == 1  # the database took the signature
        doctor = await redis_check(SimpleNamespace(shared=shared))
        assert not doctor.ok and "COPILOT_REDIS_URL" in doctor.fix
        redis.start()  # back, empty (nothing kept on disk)
        shared._down_until = 0.0  # rather than waiting out retry_after
        with caplog.at_level(logging.WARNING, logger="copilot.redis"):
            assert await client.access_token() == token  # Redis came back empty: it gets this process's copy, no new fetch
        assert "is back" in caplog.records[-1].getMessage()
        assert fake.gettoken_calls[A["corp_id"]] == 1 and await shared.aio.get(shared.key("token", client.token_key)) == token.encode()
        assert [await limit.allow("lin") for _ in range(3)] == [True, True, False]  # counted in Redis again
        assert await shared.aio.exists(shared.key("limit", "intake", "lin"))
    finally:
        await client.aclose()
        await shared.aclose()
        engine.dispose()


async def test_doctor_shows_redis(redis):
    shared, _ = process(redis.url)
    try:
        check = await redis_check(SimpleNamespace(shared=shared))
        assert check.ok and "(Redis 7." in check.detail, check
        assert (await redis_check(SimpleNamespace(shared=None))).ok  # not configured is fine: each process keeps its own
    finally:
        await shared.aclose()
