"""The WeCom API client and the connector's operations against the fake WeCom API on loopback:
access-token single flight and early refresh, per-member pacing, `copilot doctor`, directory sync."""
from __future__ import annotations

import asyncio

import pytest

from connectors.channel import SendError
from connectors.message import Reply, Target
from connectors.wecom import WeComConnector
from connectors.wecom.client import WeComClient
from connectors.wecom.config import CorpConfig
from tests.fakes.wecom_api import A, B, FakeCorp, FakeWeCom, corp_settings, start_fake


@pytest.fixture
async def fake(aiohttp_server):
    return await start_fake(aiohttp_server)


def corps(fake: FakeWeCom, tenant: str = "default") -> list[CorpConfig]:
    return [CorpConfig(**c) for c in corp_settings(fake, tenant)]


async def test_pacing_keeps_under_the_per_member_limit(fake):
    conn = WeComConnector(corps(fake), inline_wait=0.2)
    target = Target(channel="wecom", conversation_id="LiJun", user_id="LiJun", context={"corp": "default"})
    try:
        for i in range(10):
            await conn.send(target, Reply(text=f"第 {i} 条"), f"k{i}")
        with pytest.raises(SendError) as err:
            await conn.send(target, Reply(text="第 10 条"), "k10")
        assert err.value.retryable and 3 < err.value.retry_after < 5  # the outbox keeps it and tries later
        assert len(fake.sent) == 10 and not fake.dropped
    finally:
        await conn.aclose()


async def test_token_is_fetched_once_under_concurrency_and_refreshed_early(aiohttp_server):
    fake = FakeWeCom(token_ttl=1)
    fake.add_corp(FakeCorp(A["corp_id"], A["secret"], A["agent_id"]))
    fake.gettoken_delay = 0.1
    server = await aiohttp_server(fake.app())
    client = WeComClient(CorpConfig(api_base=str(server.make_url("")).rstrip("/"), **A))
    try:
        tokens = await asyncio.gather(*(client.access_token() for _ in range(50)))
        assert len(set(tokens)) == 1 and fake.gettoken_calls[A["corp_id"]] == 1
        await asyncio.sleep(0.95)  # past 90% of its life: refreshed before WeCom would refuse it
        assert await client.access_token() != tokens[0]
        assert fake.gettoken_calls[A["corp_id"]] == 2
    finally:
        await client.aclose()


async def test_doctor_names_the_cause_and_the_fix(fake):
    good = WeComConnector(corps(fake))
    try:
        checks = await good.doctor()
        assert all(c.ok for c in checks), checks
        fake.untrusted_ip = True
        bad_ip = {c.name: c for c in await good.doctor()}
        app = bad_ip["WeCom default: app"]
        assert not app.ok and "60020" in app.detail and "203.0.113.7" in app.fix and "企业可信IP" in app.fix
    finally:
        await good.aclose()
    fake.untrusted_ip = False
    broken = WeComConnector([CorpConfig(key="default", api_base=fake.url, **{**A, "secret": "wrong"}),
                             CorpConfig(key="east", tenant="east", api_base=fake.url, **{**B, "aes_key": B["aes_key"][:40]})])
    try:
        got = {c.name: c for c in await broken.doctor()}
        token = got["WeCom default: access token"]
        assert not token.ok and "40001" in token.detail and "Secret" in token.fix
        settings = got["WeCom east: settings"]
        assert not settings.ok and "40 characters" in settings.detail and "43" in settings.detail and "EncodingAESKey" in settings.fix
        assert "WeCom east: access token" not in got  # nothing more is tried with a broken setting
    finally:
        await broken.aclose()


async def test_sync_users_links_by_email_then_id_and_creates_the_rest(copilot, fake):
    from bot.cli.wecom import link_members, visible_members

    client = WeComClient(corps(fake, copilot.settings.tenant)[0])
    try:
        members = await visible_members(client)
    finally:
        await client.aclose()
    t = copilot.settings.tenant
    summary = link_members(copilot.directory, t, members)
    assert summary["members"] == 5
    # zhangwei, chenjing by email; ids match exactly only (issue 21): "LiJun" is not the rep "lijun", so a new rep
    assert (summary["linked_by_email"], summary["linked_by_id"], summary["created"]) == (2, 0, 3)
    assert copilot.directory.resolve("wecom", t, "LiJun").id != "lijun"
    assert copilot.directory.resolve("wecom", t, "ZhangWei").id == "zhangwei"
    assert copilot.directory.resolve("wecom", t, "ChenJing").role == "enablement"
    assert copilot.directory.resolve("wecom", t, "NewHire").role == "rep"
    again = link_members(copilot.directory, t, members)
    assert again["already_linked"] == 5 and again["created"] == 0
