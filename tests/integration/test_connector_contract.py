"""What every connector must do, checked the same way on each (wecom, dingtalk and feishu over HTTP, email, the web
chat), each wired into a whole copilot against its fake platform (tests/fakes/rigs.py):

  verify    bad credentials (a forged signature, a wrong mailbox password, no web session) are refused: nothing stored or answered
  parse     every recorded payload under tests/fixtures/<platform>/ becomes the expected message
  dedupe    the same platform message delivered again is stored once and answered once
  send      a Reply queued in the outbox reaches the fake platform, with its citation
  split     a long reply arrives in parts under the platform's limit, nothing lost, no character cut
  fallback  where a client shows no cards, buttons become numbered text

Platform-specific behaviour (crypto details, webhooks, IMAP resyncs...) stays in the per-platform tests.
"""
from __future__ import annotations

import asyncio
import random
import re

import pytest

from bot.pipeline.tables import InboxRow
from connectors.message import Button, Citation, Reply
from connectors.text import measure
from tests.fakes.email_env import *  # noqa: F403 - the Dovecot fixtures the email rig uses
from tests.fakes.rigs import PLATFORMS, RIGS, Rig, check_fields, parse_cases

CASES = parse_cases()


@pytest.fixture(params=PLATFORMS)
async def rig(request, make_app, settings, aiohttp_client, aiohttp_server) -> Rig:
    return await RIGS[request.param].open(make_app=make_app, aiohttp_client=aiohttp_client, aiohttp_server=aiohttp_server,
                                          settings=settings, request=request)


def inbox_rows(rig: Rig, msg_id: str | None = None) -> list:
    from sqlalchemy import select

    t = InboxRow.__table__
    q = select(t).where(t.c.channel == rig.channel)
    if msg_id is not None:
        q = q.where(t.c.platform_msg_id == rig.row_key(msg_id))
    with rig.copilot.engine.connect() as c:
        return c.execute(q).all()


async def accepted(response) -> None:
    if response is not None:
        assert response.status in (200, 202), await response.text()


# verify ------------------------------------------------------------------------------------------------
async def test_verify_refuses_bad_credentials(rig):
    why = await rig.refused("你好", "forged-1")
    if why is None:
        pytest.skip(f"{rig.channel}: no credentials to check (the web chat is the local channel)")
    assert re.search(r"signature|login .* refused|sign in", why), why
    assert inbox_rows(rig) == []
    await asyncio.sleep(0.3)
    assert await rig.texts() == []


# parse ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_parse_recorded_payloads(case):
    _, parse, want = case
    if want is not None and "error" in want:
        with pytest.raises(ValueError, match=re.escape(want["error"])):
            parse()
        return
    msg = parse()
    if want is None:
        assert msg is None  # acknowledged, never queued (a position report, group chatter not for the robot)
        return
    assert msg is not None and msg.platform_msg_id and msg.conversation_id
    check_fields(msg, want)
    assert type(msg).model_validate_json(msg.model_dump_json()) == msg  # what the inbox stores loads back the same


# dedupe --------------------------------------------------------------------------------------------------
async def test_the_same_message_delivered_again_is_stored_and_answered_once(rig):
    for _ in range(3):  # the platform's retries: the same message id each time
        await accepted(await rig.deliver("/help", "dedupe-1"))
    [answer] = await rig.wait(1, timeout=30)
    assert "/ask" in answer or "/compare" in answer
    await asyncio.sleep(0.8)
    assert len(await rig.texts()) == 1 and len(inbox_rows(rig, "dedupe-1")) == 1
    await accepted(await rig.deliver("/help", "dedupe-1"))  # a late retry, after the answer went out
    await asyncio.sleep(0.8)
    assert len(await rig.texts()) == 1 and len(inbox_rows(rig, "dedupe-1")) == 1


# send ----------------------------------------------------------------------------------------------------
async def test_a_queued_reply_reaches_the_platform(rig):
    reply = Reply(text="合同模板在知识库里。[1]", citations=[Citation(n=1, doc_id="tpl", title="标准合同模板", url="http://127.0.0.1/kb/tpl")])
    rig.copilot.outbox.enqueue(rig.target(), reply, "contract-send")
    [text] = await rig.wait(1)
    assert "合同模板在知识库里" in text and "[1]" in text
    if rig.channel != "console":  # the web chat keeps the Reply itself: the page draws its citations
        assert "标准合同模板" in text


# split ---------------------------------------------------------------------------------------------------
def long_text(chars: int = 5000) -> str:
    sentences = ["星图软件的实施周期一般为三到四周，复杂场景需要六到八周。", "云帆专业版提供驻场顾问和二十四小时响应。",
                 "价格异议时先确认客户的预算口径，再给出分阶段上线方案。", "医疗行业客户关注 UDI 追溯和 GSP 合规 🏥。"]
    rng, paras, total = random.Random(7), [], 0
    while total < chars:
        p = "".join(rng.choice(sentences) for _ in range(rng.randint(2, 9)))
        paras.append(p)
        total += len(p)
    paras.append("一段没有任何标点也没有换行的超长文字" * 200)  # no boundary at all: cut between characters
    return "\n\n".join(paras) + "（完）"


async def test_a_long_reply_is_split_under_the_limit_and_never_inside_a_character(rig):
    if rig.text_limit is None:
        pytest.skip(f"{rig.channel}: no length limit, a reply is one message")
    text = long_text()
    rig.copilot.outbox.enqueue(rig.target(), Reply(text=text), "contract-split")
    parts = await rig.wait(0, timeout=30, until=lambda got: any("（完）" in p for p in got))
    size = measure(rig.text_unit)
    assert len(parts) > 2 and all(size(p) <= rig.text_limit for p in parts)
    bodies = [re.sub(r"^\(\d+/\d+\)\n", "", p) for p in parts]  # WeCom numbers the parts
    assert "".join("".join(bodies).split()) == "".join(text.split())  # nothing lost, nothing reordered, no half character


# fallback ------------------------------------------------------------------------------------------------
async def test_buttons_become_numbered_text_where_cards_are_unavailable(rig):
    if not rig.shows_cards:
        pytest.skip(f"{rig.channel}: the page draws the buttons itself")
    buttons = [Button(key="confirm", label="确认", ref="pend-c1", reply="1"), Button(key="edit", label="修改", ref="pend-c1", reply="2"),
               Button(key="reject", label="取消", ref="pend-c1", reply="3")]
    rig.copilot.outbox.enqueue(rig.fallback_target(), Reply(text="要把这次拜访写入 CRM 吗？", kind="confirm", buttons=buttons), "contract-fb")
    texts = await rig.wait(1)
    assert any("要把这次拜访写入 CRM 吗？" in t and "回复 1 确认 / 2 修改 / 3 取消" in t for t in texts), texts
