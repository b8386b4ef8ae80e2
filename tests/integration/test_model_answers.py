"""Answers through a real local OpenAI-protocol server: citations, refusals, failures, trust layer."""
from __future__ import annotations

import asyncio

import pytest

from tests.fakes.openai_server import FakeOpenAI, Step, user_text

QUESTION = "星图软件的实施周期一般多长？"


@pytest.fixture
async def model_copilot(make_settings, aiohttp_server):
    from bot.app import build_app

    fake = FakeOpenAI()
    server = await aiohttp_server(fake.app())

    def build(**kw):
        s = make_settings(llm_base_url=str(server.make_url("/v1")), llm_timeout=2.0, llm_retries=1, **kw)
        cp = build_app(s)
        cp.load_samples()
        return cp

    return fake, build


def rep():
    from rag.retrieve import Viewer

    return Viewer("default", "rep", "华东区", "zhangwei")


async def ask(cp, q=QUESTION, **kw):
    return await asyncio.to_thread(cp.agent.answerer.answer, q, rep(), **kw)


async def test_model_answer_keeps_only_given_citations(model_copilot):
    fake, build = model_copilot
    cp = build()
    fake.add(Step(text="星图标准实施周期为 4–6 个月 [2]，我们专业版 6–8 周 [2][9]。"))
    ans = await ask(cp, actor="zhangwei", conversation="c1")
    assert ans.grounded and ans.text.startswith("星图标准实施周期为 4–6 个月 [1]")
    assert "[9]" not in ans.text and "[2]" not in ans.text  # an invented passage number is dropped
    assert len(ans.citations) == 1
    prompt = user_text(fake.requests[0])
    assert "[1]" in prompt and "星图" in prompt and QUESTION in prompt
    audit = cp.engine.connect().exec_driver_sql("SELECT kind, name, actor, detail FROM audit").all()
    assert ("model", "answer", "zhangwei") == audit[-1][:3] and '"tokens"' in audit[-1][3]
    assert QUESTION not in audit[-1][3]  # no prompt text in the audit log


async def test_model_refusal_and_uncited_answers(model_copilot):
    fake, build = model_copilot
    cp = build()
    fake.add(Step(text="NOT_IN_KB"))
    ans = await ask(cp)
    assert not ans.grounded and ans.citations == []
    fake.add(Step(text="星图大概要半年吧。"))  # no citation: not trusted
    ans = await ask(cp)
    assert ans.grounded and ans.text.startswith("根据知识库") and ans.citations


@pytest.mark.parametrize("step,calls", [(Step(status=500), 2), (Step(raw="{not json"), 1), (Step(delay=5.0, text="too late [1]"), 2)],
                         ids=["http-500", "malformed-json", "slow"])
async def test_model_failures_fall_back_to_the_extractive_answer(model_copilot, step, calls):
    fake, build = model_copilot
    cp = build()
    fake.add(step, step)
    ans = await ask(cp)
    assert ans.grounded and "模型暂时不可用" in ans.text and ans.citations
    assert len(fake.requests) == calls  # errors and timeouts are retried once (with backoff), then the fallback


async def test_pii_is_masked_before_it_leaves_and_restored(model_copilot):
    fake, build = model_copilot
    cp = build()
    fake.default = lambda body: Step(text="请联系 ⟦PHONE_1⟧ 确认星图的实施周期 [1]。")
    ans = await ask(cp, q="客户王总电话 13912345678，邮箱 wang@hdmed.example.com，他问星图实施周期多长？")
    sent = user_text(fake.requests[0])
    assert "13912345678" not in sent and "wang@hdmed.example.com" not in sent
    assert "⟦PHONE_1⟧" in sent and "⟦EMAIL_1⟧" in sent
    assert "13912345678" in ans.text


async def test_external_model_host_refused_when_not_allowed(make_settings):
    from bot.app import build_app

    cp = build_app(make_settings(llm_base_url="https://api.example.com/v1", llm_allow_external=False))
    cp.load_samples()
    ans = await asyncio.to_thread(cp.agent.answerer.answer, QUESTION, rep())
    assert "模型暂时不可用" in ans.text and ans.grounded


async def test_token_budget_per_conversation(model_copilot):
    fake, build = model_copilot
    cp = build(llm_token_budget=50)
    fake.default = lambda body: Step(text="星图 4–6 个月 [1]。")
    first = await ask(cp, conversation="budget")
    second = await ask(cp, conversation="budget")
    assert "模型暂时不可用" not in first.text
    assert "模型暂时不可用" in second.text and len(fake.requests) == 1


async def test_the_web_chat_shows_the_answer_while_the_model_writes_it(make_settings, aiohttp_server, aiohttp_client, login_to):
    from bot.app import build_app
    from bot.web.gateway import create_web_app

    fake = FakeOpenAI()
    server = await aiohttp_server(fake.app())
    cp = build_app(make_settings(llm_base_url=str(server.make_url("/v1")), llm_timeout=20.0))
    cp.load_samples()
    client = await login_to(await aiohttp_client(create_web_app(cp)), cp, "zhangwei")
    fake.add(Step(tool_calls=[{"name": "answer_question", "arguments": {"question": QUESTION}}]),
             Step(text="星图软件的标准实施周期是四到六个月，涉及财务一体化的项目常常更久 [1]。", chunk_delay=0.12))
    await client.post("/api/chat", json={"text": QUESTION, "conversation": "stream", "id": "s1"})
    partials, final, plen = [], None, 0
    for _ in range(100):
        r = await client.get("/api/replies", params={"conversation": "stream", "after": "0", "wait": "5", "plen": str(plen)})
        body = await r.json()
        if body["replies"]:
            final = body["replies"][0]["reply"]
            break
        if body.get("partial"):
            partials.append(body["partial"])
            plen = len(body["partial"])
    assert final is not None and final["citations"] and "[1]" in final["text"]
    assert len(partials) >= 2 and all(len(a) < len(b) for a, b in zip(partials, partials[1:]))  # it grew as it was written
    assert "[" not in partials[-1] and final["text"].replace(" [1]", "").startswith(partials[0])
    assert fake.requests[-1]["stream"] is True
