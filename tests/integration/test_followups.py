"""Follow-up questions resolve against the conversation's previous question and the documents it cited:
offline by rules (a test per language), and with a model through the rewrite prompt."""
from __future__ import annotations

import json
import re

from tests.fakes.openai_server import FakeOpenAI, Step, system_text, user_text
from tests.integration.test_agent_offline import Chat


def asked(cp) -> str:
    ev = cp.engine.connect().exec_driver_sql("SELECT evidence FROM agent_turn ORDER BY id DESC LIMIT 1").scalar()
    return json.loads(ev)["asked"]


def test_chinese_follow_ups(copilot):
    chat = Chat(copilot, "zhangwei", "fu-zh")
    chat.say("标准版一年多少钱？")
    [r] = chat.say("那专业版呢？")
    assert asked(copilot) == "专业版一年多少钱？"
    assert r.grounded and "专业版" in r.text and re.search(r"¥\s*\d", r.text)  # a price of the Professional edition
    chat = Chat(copilot, "zhangwei", "fu-zh2")
    chat.say("蓝海支持UDI追溯吗？")
    [r] = chat.say("它多少钱")
    assert asked(copilot) == "蓝海多少钱"
    assert {c.doc_id for c in r.citations} & {"bc-lanhai"} and "¥2–3 万" in r.text
    chat = Chat(copilot, "zhangwei", "fu-zh4")
    chat.say("星图上线要多久？")
    [r] = chat.say("蓝海呢？")
    assert asked(copilot) == "蓝海上线要多久？"
    # Lanhai's own 3–4 weeks; the card's "专业版需要 6–8 周" (split from "云帆标准版同样是 3–4 周上线；") is ours
    assert r.grounded and "3–4 周" in r.text and "6–8 周" not in r.text, r.text
    [alone] = Chat(copilot, "zhangwei", "fu-zh3").say("它多少钱")  # nothing before it: asked as written
    assert asked(copilot) == "它多少钱"


def test_english_follow_ups(copilot):
    chat = Chat(copilot, "tom", "fu-en")
    chat.say("How many users does the Professional edition allow?")
    chat.say("and for the Enterprise edition?")
    assert asked(copilot) == "How many users does the Enterprise edition allow?"
    chat = Chat(copilot, "tom", "fu-en2")
    chat.say("How is NorthPeak priced?")
    chat.say("and for 50 seats?")
    assert asked(copilot) == "How is NorthPeak priced for 50 seats?"
    chat = Chat(copilot, "tom", "fu-en4")
    chat.say("What does the Standard edition cost per year?")
    [r] = chat.say("and the Professional one?")
    assert asked(copilot) == "What does the Professional edition cost per year?"
    assert r.grounded and "200k–450k" in r.text and "99.9%" not in r.text  # a price, not the edition's uptime
    chat = Chat(copilot, "tom", "fu-en3")
    chat.say("Does Yunfan support SSO with Azure AD?")
    [r] = chat.say("What about Lanhai?")
    assert asked(copilot) == "Does Lanhai support SSO with Azure AD?"
    assert not r.grounded  # the battlecard does not say: declined, not answered from our FAQ


async def test_follow_up_rewritten_by_the_model(make_settings, aiohttp_server):
    import asyncio

    from bot.app import build_app

    fake = FakeOpenAI()
    server = await aiohttp_server(fake.app())
    cp = build_app(make_settings(llm_base_url=str(server.make_url("/v1")), llm_timeout=2.0, llm_retries=1))
    try:
        cp.load_samples()
        chat = Chat(cp, "zhangwei", "fu-model")
        fake.add(Step(tool_calls=[{"name": "answer_question", "arguments": {"question": "标准版一年多少钱？"}}]), Step(text="NOT_IN_KB"))
        await asyncio.to_thread(chat.say, "标准版一年多少钱？")
        fake.add(Step(tool_calls=[{"name": "answer_question", "arguments": {"question": "那专业版呢？"}}]),
                 Step(text="专业版的年订阅费是多少？"), Step(text="NOT_IN_KB"))
        await asyncio.to_thread(chat.say, "那专业版呢？")
        rewrite = fake.requests[-2]
        assert system_text(rewrite).startswith("You rewrite") and "标准版一年多少钱" in user_text(rewrite)
        assert asked(cp) == "专业版的年订阅费是多少？"
    finally:
        cp.close()
