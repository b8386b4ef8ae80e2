"""DingTalk replies as AI cards that fill while the model writes (connectors/dingtalk/cards.py, livecards.py), against
the fake open platform's card APIs (tests/fakes/dingtalk_cards.py) and a scripted model, whole pipeline.

Sample people: zhangwei = rep; his DingTalk staff id is the csv's dingtalk_userid column.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from sqlalchemy import update

from bot.app import build_app, channel_context
from bot.web.gateway import create_web_app
from connectors.dingtalk import DingTalkConnector
from connectors.dingtalk.cards import cards_table
from connectors.message import Citation, Reply, Target
from tests.fakes.dingtalk_api import FakeDingTalk, serve_with_stream
from tests.fakes.dingtalk_cards import BUILTIN_TEMPLATE, INSTANCE, STREAMING
from tests.fakes.scripted_model import FakeOpenAI, Step

APP, SECRET = "dingcardapp001", "card-secret-0001-abcdefghijklmnopqrstuvwxyz"
ZHANGWEI, LINA = "0251120101", "0251120201"
QUESTION = "星图软件的实施周期一般多长？"
ANSWER = "星图软件的标准实施周期是四到六个月，涉及财务一体化的项目常常更久 [1]。"
FAST = {"backoff_base": 0.05, "backoff_max": 0.5, "heartbeat": 5.0}


@pytest.fixture
async def fake(aiohttp_server):
    return await serve_with_stream(aiohttp_server, (APP, SECRET), redeliver_after=0.8)


@pytest.fixture
async def model(aiohttp_server):
    fake = FakeOpenAI()
    fake.url = str((await aiohttp_server(fake.app())).make_url("/v1"))
    return fake


@pytest.fixture
def cards_on(monkeypatch, fake):
    def configure(mode: str = "http", interval: float = 0.2) -> None:
        for k, v in dict(APP_KEY=APP, APP_SECRET=SECRET, MODE=mode, API_BASE=fake.base, OAPI_BASE=fake.base, CARDS="true",
                         CARD_INTERVAL=str(interval), CORP_ID=fake.apps[APP].corp_id).items():
            monkeypatch.setenv(f"COPILOT_DINGTALK_{k}", v)

    return configure


async def start(make_app, make_settings, aiohttp_client, model=None):
    settings = make_settings(**({"llm_base_url": model.url, "llm_timeout": 20.0} if model else {}))
    cp = make_app(settings)
    cp.directory.link("zhangwei", "dingtalk", ZHANGWEI)
    cp.directory.link("lina", "dingtalk", LINA)
    connector = DingTalkConnector.build(channel_context(settings, "dingtalk"), stream_options=FAST)
    client = await aiohttp_client(create_web_app(build_app(settings, channels=[connector]), owns_app=True))
    client.connector = connector
    return client


async def post(client, body: dict):
    return await client.post("/dingtalk/callback", data=json.dumps(body, ensure_ascii=False).encode(), headers=FakeDingTalk.signed_headers(SECRET))


def streamed(model: FakeOpenAI, chunk_delay: float = 0.05) -> None:
    model.add(Step(tool_calls=[{"name": "answer_question", "arguments": {"question": QUESTION}}]), Step(text=ANSWER, chunk_delay=chunk_delay))


async def test_a_streamed_answer_fills_one_card_in_order_and_finishes_it_with_citations(fake, model, cards_on, make_app, make_settings,
                                                                                        aiohttp_client):
    cards_on(interval=0.2)
    gw = await start(make_app, make_settings, aiohttp_client, model)
    streamed(model, 0.08)
    body = fake.message(APP, sender=ZHANGWEI, text=QUESTION, msg_id="m-stream")
    assert (await post(gw, body)).status == 200
    card = await fake.cards.wait(lambda: next((c for c in fake.cards.of(APP) if c.puts), None))
    assert card is not None, fake.cards.refused
    assert card.template == BUILTIN_TEMPLATE and card.space_type == "IM_ROBOT" and card.space_id == ZHANGWEI
    assert card.data["flowStatus"] == "3" and card.callback_type == "HTTP"
    first = card.data  # created while the model was writing: a beginning of the answer, without the citation marks
    texts = [u.content for u in card.updates]
    assert len(texts) >= 2 and [u.key for u in card.updates] == ["msgContent"] * len(texts)
    assert all(b.startswith(a) for a, b in zip(texts[:-2], texts[1:-1]))  # grew, in order
    assert [u.finalize for u in card.updates] == [False] * (len(texts) - 1) + [True]
    final = texts[-1]
    assert "更久 [1]" in final and "**来源**" in final and "](http" in final  # finished: the citations are on it
    assert first["msgContent"] == final
    gaps = [b.at - a.at for a, b in zip(card.updates[:-2], card.updates[1:-1])]
    assert all(g >= 0.15 for g in gaps), gaps  # throttled: newest text only, at most one update per interval
    await asyncio.sleep(0.3)
    assert len(fake.cards.instances) == 1 and fake.sent == [] and fake.cards.refused == []  # one card, no message besides


async def test_a_retried_reply_updates_the_same_card_and_never_makes_a_second(fake, cards_on, make_settings, tmp_path):
    from sqlalchemy import create_engine

    cards_on()
    engine = create_engine(f"sqlite:///{tmp_path / 'cards.db'}")
    ctx = channel_context(make_settings(), "dingtalk")
    conn = DingTalkConnector.build(dataclasses.replace(ctx, engine=engine))
    target = Target(channel="dingtalk", conversation_id="cidP2P==", user_id=ZHANGWEI,
                    context={"senderStaffId": ZHANGWEI, "msgId": "m-retry", "openConversationId": "cidP2P=="})
    reply = Reply(text="蓝海系统按坐席收费 [1]", citations=[Citation(n=1, doc_id="d1", title="蓝海价格表", url="https://kb/d1")])
    await conn.send(target, reply, "in:7:0")
    await conn.send(target, reply, "in:7:0")  # the outbox retries (the platform's answer was lost)
    [card] = fake.cards.of(APP)
    assert len(card.puts) == 1 and card.data["flowStatus"] == "3" and "蓝海价格表" in card.data["msgContent"]
    assert card.updates and card.updates[-1].finalize
    # a crash after DingTalk made the card and before it was marked: the next try meets "outTrackId exists" and updates
    with engine.begin() as c:
        c.execute(update(cards_table).values(state="new"))
    await conn.send(target, reply, "in:7:0")
    assert len(fake.cards.instances) == 1 and [r[2] for r in fake.cards.refused] == ["outTrackIdRepeated"]
    assert len(card.puts) == 2 and fake.sent == []
    await conn.aclose()


@pytest.mark.parametrize("breakage", ["permission", "template", "outage"])
async def test_a_card_error_falls_back_to_markdown_exactly_once(fake, model, cards_on, make_app, make_settings, aiohttp_client, breakage):
    cards_on()
    if breakage == "permission":
        fake.cards.withdraw(APP, INSTANCE, STREAMING)
    elif breakage == "template":
        fake.cards.templates.clear()
    else:
        fake.cards.fail_cards(500, "ServiceUnavailable")
    gw = await start(make_app, make_settings, aiohttp_client, model)
    streamed(model, 0.02)
    assert (await post(gw, fake.message(APP, sender=ZHANGWEI, text=QUESTION, msg_id=f"m-{breakage}"))).status == 200
    [sent] = await fake.wait_sent(1)
    assert sent.kind == "markdown" and "更久 [1]" in sent.text and "**来源**" in sent.text
    await asyncio.sleep(0.4)
    assert len(fake.sent) == 1 and fake.cards.instances == {} and fake.cards.refused


async def test_a_reply_that_was_never_previewed_is_a_finished_card(fake, cards_on, make_app, make_settings, aiohttp_client):
    cards_on()
    gw = await start(make_app, make_settings, aiohttp_client)  # offline: no model, nothing streamed
    await post(gw, fake.message(APP, sender=ZHANGWEI, text=QUESTION, msg_id="m-offline"))
    card = await fake.cards.wait(lambda: next(iter(fake.cards.of(APP)), None))
    assert card is not None and card.data["flowStatus"] == "3" and "**来源**" in card.data["msgContent"]
    assert card.updates == [] and fake.sent == []


async def test_a_group_answer_is_a_card_in_the_group_that_mentions_the_asker(fake, cards_on, make_app, make_settings, aiohttp_client):
    cards_on()
    gw = await start(make_app, make_settings, aiohttp_client)
    asked = fake.message(APP, sender=ZHANGWEI, text=QUESTION, group=True, msg_id="g-ask", nick="张伟")
    await post(gw, asked)
    card = await fake.cards.wait(lambda: next(iter(fake.cards.of(APP)), None))
    assert card is not None and card.space_type == "IM_GROUP" and card.space_id == asked["conversationId"]
    assert card.at_users == {ZHANGWEI: "张伟"} and "**来源**" in card.data["msgContent"] and fake.sent == []


@pytest.mark.parametrize("mode", ["http", "stream"])
async def test_a_button_on_the_card_confirms_the_pending_item_once(fake, cards_on, make_app, make_settings, aiohttp_client, mode):
    cards_on(mode=mode)
    gw = await start(make_app, make_settings, aiohttp_client)
    if mode == "stream":
        await fake.stream.wait_connected(APP)
    log = "/log 今天拜访了华东医疗集团王总，关注价格，下周二再约"
    asked = fake.message(APP, sender=ZHANGWEI, text=log, msg_id=f"c-log-{mode}")
    if mode == "stream":
        await fake.stream.deliver(APP, asked)
    else:
        await post(gw, asked)
    card = await fake.cards.wait(lambda: next(iter(fake.cards.of(APP)), None))
    assert card is not None and card.space_type == "IM_ROBOT" and card.callback_type == mode.upper()
    buttons = json.loads(card.data["sys_full_json_obj"])["msgButtons"]
    assert [b["text"] for b in buttons] == ["确认写入", "修改", "取消"] and all(b["request"] for b in buttons)
    if mode == "http":
        forged = await gw.post("/dingtalk/card/" + "0" * 32, json={"outTrackId": card.out_track_id, "userId": ZHANGWEI})
        assert forged.status == 403  # the registered URL's token is the credential
    via = str(gw.make_url("")) if mode == "http" else None
    assert await fake.cards.click(card, LINA, buttons[0]["id"], via=via) == 200  # someone else's one-to-one card: dropped
    for _ in (1, 2):  # he presses twice: the same click of the same card is stored once (as a redelivery would be)
        assert await fake.cards.click(card, ZHANGWEI, buttons[0]["id"], via=via) == 200
    done = await fake.cards.wait(lambda: fake.cards.of(APP)[1:])
    assert done is not None and done[0].data["msgContent"].startswith("已写入 CRM"), [c.data for c in fake.cards.of(APP)]
    assert await fake.cards.click(card, ZHANGWEI, buttons[2]["id"], via=via) == 200  # cancel after confirming: too late
    late = await fake.cards.wait(lambda: fake.cards.of(APP)[2:])
    assert late is not None and "处理过" in late[0].data["msgContent"]
    await asyncio.sleep(0.4)
    assert len(fake.cards.instances) == 3 and fake.sent == []


async def test_doctor_names_a_missing_card_permission(fake, cards_on, make_settings):
    cards_on()
    conn = DingTalkConnector.build(channel_context(make_settings(), "dingtalk"))
    [ok] = [c for c in await conn.doctor() if c.name.endswith("cards")]
    assert ok.ok and "built-in AI card" in ok.detail
    fake.cards.withdraw(APP, STREAMING)
    [bad] = [c for c in await conn.doctor() if c.name.endswith("cards")]
    assert not bad.ok and "Card.Streaming.Write" in bad.fix and "Card.Instance.Write" not in bad.fix
    await conn.aclose()
