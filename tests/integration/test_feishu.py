"""The Feishu connector against a fake Feishu open platform on loopback (tests/fakes/feishu_api.py), whole pipeline.

Sample people (knowledge/crm/reps.csv): zhangwei = rep (华东区), chenjing = enablement. Their Feishu open_ids are
made up here and linked in the directory, as `reps add --channel feishu` would.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bot.app import build_app, channel_context
from bot.pipeline.tables import InboxRow
from bot.web.gateway import create_web_app
from connectors import feishu
from connectors.message import Citation, Reply, Target
from tests.conftest import free_port
from tests.fakes.feishu_api import BOT_OPEN_ID, TENANT_KEY, FakeFeishu, card_text
from tests.fakes.scripted_model import FakeOpenAI, Step

APP, SECRET = "cli_a1b2c3d4e5f60001", "feishu-secret-0001-abcdefghijklmnop"
ZW, CJ = "ou_zhangwei00000000000000000000001", "ou_chenjing00000000000000000000001"
QUESTION = "星图软件的实施周期一般多长？"
FAST = {"backoff_base": 0.05, "backoff_max": 0.3, "stable_after": 5.0}


@pytest.fixture
async def fake(aiohttp_server):
    f = FakeFeishu()
    f.bind(str((await aiohttp_server(f.app())).make_url("")))
    f.add_app(APP, SECRET)
    f.add_user(ZW, "zhangwei-uid", "张伟")
    f.add_user(CJ, "chenjing-uid", "陈静")
    return f


@pytest.fixture
def feishu_env(monkeypatch, fake):
    def configure(mode: str = "http", **extra: str) -> None:
        app = fake.apps[APP]
        values = {**dict(APP_ID=APP, APP_SECRET=SECRET, ENCRYPT_KEY=app.encrypt_key, VERIFICATION_TOKEN=app.token, MODE=mode,
                         API_BASE=fake.base, LOGIN_BASE=fake.base, TENANT_KEY=TENANT_KEY), **extra}
        for k, v in values.items():
            monkeypatch.setenv(f"COPILOT_FEISHU_{k}", v)

    return configure


async def start(cp, aiohttp_client, settings=None):
    """The gateway of a second app over the same data (`cp` set the data up and links the people), with the Feishu channel."""
    settings = settings or cp.settings
    cp.directory.link("zhangwei", "feishu", ZW, tenant=settings.tenant)
    cp.directory.link("chenjing", "feishu", CJ, tenant=settings.tenant)
    connector = feishu.build(channel_context(settings, "feishu"), ws_options=FAST)
    app = build_app(settings, channels=[connector])
    client = await aiohttp_client(create_web_app(app, owns_app=True))
    client.connector, client.connector_app = connector, app
    return client


async def post(client, fake: FakeFeishu, event: dict, **kw):
    body, headers = fake.request(APP, event, **kw)
    return await client.post("/feishu/events", data=body, headers=headers)


def inbox(cp, msg_id: str | None = None) -> list[InboxRow]:
    from sqlmodel import Session, select

    with Session(cp.engine) as s:
        q = select(InboxRow).where(InboxRow.channel == "feishu")
        return list(s.exec(q.where(InboxRow.platform_msg_id == msg_id) if msg_id else q).all())


# HTTP events ---------------------------------------------------------------------------------------------------
async def test_a_direct_question_is_answered_once_on_a_card_with_citations(fake, feishu_env, copilot, aiohttp_client):
    feishu_env()
    gw = await start(copilot, aiohttp_client)
    event = fake.message_event(APP, sender=ZW, text=QUESTION, message_id="om_direct1")
    r = await post(gw, fake, event)
    assert r.status == 200 and (await r.json())["duplicate"] is False
    [sent] = await fake.wait_sent(1)
    assert sent.via == "reply" and sent.to == "om_direct1" and sent.msg_type == "interactive" and sent.uuid
    text = sent.text()
    assert "实施周期" in text and "**来源**" in text and "](http" in text
    again = await post(gw, fake, event)  # Feishu's retry of the same event: signed afresh, stored once
    assert again.status == 200 and (await again.json())["duplicate"] is True
    assert await fake.deliver(str(gw.make_url("/feishu/events")), APP, event, attempts=3) == [200]
    body, headers = fake.request(APP, event)
    for _ in range(2):  # a captured request sent again as it was: acknowledged, never reaches the inbox again
        replay = await gw.post("/feishu/events", data=body, headers=headers)
        assert replay.status == 200
    await asyncio.sleep(0.4)
    [row] = inbox(copilot, "om_direct1")
    assert json.loads(row.payload)["sender_id"] == ZW and len(fake.sent) == 1


async def test_forged_stale_and_unencrypted_events_are_refused_and_the_url_is_verified(fake, feishu_env, copilot, aiohttp_client):
    feishu_env()
    gw = await start(copilot, aiohttp_client)
    app = fake.apps[APP]
    check = {"challenge": "ch-123", "token": app.token, "type": "url_verification"}
    ok = await gw.post("/feishu/events", data=fake.encrypt(check, app.encrypt_key))
    assert ok.status == 200 and await ok.json() == {"challenge": "ch-123"}
    wrong = await gw.post("/feishu/events", data=fake.encrypt({**check, "token": "not-it"}, app.encrypt_key))
    assert wrong.status == 403
    event = fake.message_event(APP, sender=ZW, text="你好", message_id="om_forged")
    body = fake.encrypt(event, app.encrypt_key)
    forged = await gw.post("/feishu/events", data=body, headers=fake.signed_headers(body, "another-key"))
    assert forged.status == 403 and "signature" in (await forged.json())["error"]
    stale = await post(gw, fake, event, timestamp=int(time.time()) - 2 * 3600)
    assert stale.status == 403 and "stale" in (await stale.json())["error"]
    unsigned = await gw.post("/feishu/events", data=body)
    assert unsigned.status == 403
    plain = json.dumps(event).encode()  # signed, but not encrypted: the app has an Encrypt Key
    assert (await gw.post("/feishu/events", data=plain, headers=fake.signed_headers(plain, app.encrypt_key))).status == 403
    other_key = fake.encrypt(event, "someone-elses-key")
    assert (await gw.post("/feishu/events", data=other_key, headers=fake.signed_headers(other_key, "someone-elses-key"))).status == 403
    bad_token = {**event, "header": {**event["header"], "token": "not-the-token"}}
    assert (await post(gw, fake, bad_token)).status == 403
    foreign = {**event, "header": {**event["header"], "tenant_key": "another-org"}}
    assert (await post(gw, fake, foreign)).status == 403
    assert (await gw.post("/feishu/nosuch/events", data=body)).status == 404
    huge = fake.encrypt({**event, "padding": "x" * (1024 * 1024)}, app.encrypt_key)  # an event is a few KB
    assert (await gw.post("/feishu/events", data=huge, headers=fake.signed_headers(huge, app.encrypt_key))).status == 413
    await asyncio.sleep(0.2)
    assert inbox(copilot) == [] and fake.sent == []


async def test_in_a_group_only_a_mention_of_the_bot_is_answered_and_the_asker_is_mentioned(fake, feishu_env, copilot, aiohttp_client):
    feishu_env()
    gw = await start(copilot, aiohttp_client)
    chatter = fake.message_event(APP, sender=ZW, text="午饭吃什么", chat_type="group", others=((CJ, "陈静"),), message_id="om_chat")
    r = await post(gw, fake, chatter)
    assert r.status == 200 and (await r.json()) == {"ignored": "im.message.receive_v1"}
    asked = fake.message_event(APP, sender=ZW, text="蓝海系统的价格区间？", chat_type="group", mention_bot=True, message_id="om_asked")
    assert (await post(gw, fake, asked)).status == 200
    [sent] = await fake.wait_sent(1)
    assert sent.to == "om_asked" and sent.card["body"]["elements"][0]["content"] == f"<at id={ZW}></at>"
    [row] = inbox(copilot)
    assert json.loads(row.payload)["text"] == "蓝海系统的价格区间？"  # the bot's @ placeholder is gone
    await asyncio.sleep(0.3)
    assert len(fake.sent) == 1 and [r.platform_msg_id for r in inbox(copilot)] == ["om_asked"]


async def test_a_file_from_enablement_is_fetched_and_ingested_within_the_size_limit(fake, feishu_env, copilot, aiohttp_client):
    from connectors.feishu.client import FeishuAPIError
    from rag.retrieve import Viewer

    feishu_env()
    gw = await start(copilot, aiohttp_client)
    doc = ("---\nid: battlecard-qingyun\ntitle: 青云ERP 竞品速览\naudience: all\n---\n\n# 青云ERP 竞品速览\n\n"
           "青云ERP 的弱点是本地化部署周期长，平均需要九个月，而且不支持医疗行业的 GSP 合规模块。\n").encode()
    key = fake.add_file("om_file1", "file", doc)
    event = fake.message_event(APP, sender=CJ, msg_type="file", content={"file_key": key, "file_name": "青云ERP竞品速览.md"}, message_id="om_file1")
    assert (await post(gw, fake, event)).status == 200
    [sent] = await fake.wait_sent(1)
    assert "已导入" in sent.text() and "battlecard-qingyun" in sent.text()
    hits = copilot.knowledge.retriever.search("青云ERP 的弱点是什么", Viewer("default", "rep", "华东区"))
    assert hits and hits[0].doc_id == "battlecard-qingyun"
    with pytest.raises(FeishuAPIError, match="larger than"):
        await gw.connector.clients["default"].download("om_file1", key, "file", 100)


async def test_a_sender_over_the_rate_limit_gets_429_so_feishu_delivers_again(fake, feishu_env, make_app, make_settings, aiohttp_client):
    feishu_env()
    settings = make_settings(rate_limit_per_minute=1)
    gw = await start(make_app(settings), aiohttp_client, settings)
    for n in range(5):  # the burst a sender is allowed
        assert (await post(gw, fake, fake.message_event(APP, sender=ZW, text="/help", message_id=f"om_t{n}"))).status == 200
    body, headers = fake.request(APP, fake.message_event(APP, sender=ZW, text="/help", message_id="om_over"))
    for _ in range(2):  # nothing stored, nothing remembered: the same delivery again is judged again
        r = await gw.post("/feishu/events", data=body, headers=headers)
        assert r.status == 429 and r.headers.get("Retry-After")
    assert sorted(r.platform_msg_id for r in inbox(gw.connector_app)) == [f"om_t{n}" for n in range(5)]


async def test_with_cards_off_the_answer_is_text_with_its_sources(fake, feishu_env, copilot, aiohttp_client):
    feishu_env(CARDS="false")
    gw = await start(copilot, aiohttp_client)
    assert (await post(gw, fake, fake.message_event(APP, sender=ZW, text=QUESTION, message_id="om_text1"))).status == 200
    [sent] = await fake.wait_sent(1)
    assert sent.msg_type == "text" and sent.to == "om_text1" and "实施周期" in sent.text() and "http" in sent.text() and "**" not in sent.text()


# replies and cards -----------------------------------------------------------------------------------------------
async def test_a_streamed_answer_is_written_into_one_card_that_the_final_answer_finishes(fake, feishu_env, make_app, make_settings, aiohttp_server,
                                                                                        aiohttp_client):
    model = FakeOpenAI()
    url = str((await aiohttp_server(model.app())).make_url("/v1"))
    feishu_env(PREVIEW_INTERVAL="0.2")
    settings = make_settings(llm_base_url=url, llm_timeout=20.0)
    gw = await start(make_app(settings), aiohttp_client, settings)
    answer = "星图软件的标准实施周期是四到六个月，涉及财务一体化的项目常常更久，需要提前规划数据迁移和培训 [1]。"
    model.add(Step(tool_calls=[{"name": "answer_question", "arguments": {"question": QUESTION}}]), Step(text=answer, chunk_delay=0.05))
    assert (await post(gw, fake, fake.message_event(APP, sender=ZW, text=QUESTION, message_id="om_stream"))).status == 200
    done = await fake.wait(lambda: fake.sent and "**来源**" in card_text(fake.sent[0].card))
    assert done, [s.text() for s in fake.sent]
    await asyncio.sleep(0.4)
    [card] = fake.sent  # one card: created by the first preview, updated while written, finished by the answer
    assert card.via == "reply" and card.to == "om_stream" and "▍" in card_text(card.content)
    texts = [card_text(u) for u in card.updates]
    assert len(texts) >= 2 and "▍" not in texts[-1] and "数据迁移和培训 [1]" in texts[-1] and "](http" in texts[-1]
    previews = [t.replace("▍", "").strip() for t in [card_text(card.content), *texts[:-1]]]
    assert all(b.startswith(a[:8]) for a, b in zip(previews, previews[1:])) and len(previews[-1]) >= len(previews[0])
    gaps = [b - a for a, b in zip(card.update_times[:-2], card.update_times[1:-1])]
    assert all(g >= 0.15 for g in gaps), gaps  # throttled to the configured interval


async def test_a_retried_reply_updates_its_card_even_after_a_restart_and_never_sends_twice(fake, feishu_env, make_settings, tmp_path):
    from sqlalchemy import create_engine

    feishu_env()
    engine = create_engine(f"sqlite:///{tmp_path / 'cards.db'}")
    ctx = dataclasses.replace(channel_context(make_settings(), "feishu"), engine=engine)
    target = Target(channel="feishu", conversation_id="oc_p2p1", user_id=ZW,
                    context={"app": "default", "message_id": "om_q1", "chat_id": "oc_p2p1", "chat_type": "p2p", "open_id": ZW, "inbound": "om_q1"})
    reply = Reply(text="蓝海系统按坐席收费 [1]", citations=[Citation(n=1, doc_id="d1", title="蓝海价格表", url="https://kb/d1")])
    first = feishu.build(ctx)
    await first.send(target, reply, "in:7:0")
    await first.send(target, reply, "in:7:0")  # the outbox retries: the platform's answer was lost
    await first.aclose()
    again = feishu.build(ctx)  # a restart, or another process
    await again.send(target, reply, "in:7:0")
    [card] = fake.sent
    assert len(card.updates) == 2 and "蓝海价格表" in card_text(card.card)
    await again.send(target, Reply(text="另一条通知"), "in:7:1")  # a second reply to the same message: its own message
    assert fake.token_requests[APP] == 2  # one per connector: cached
    fake.expire_tokens()  # Feishu revoked the token early: refreshed once, the send retried
    await again.send(Target(channel="feishu", conversation_id=ZW, user_id=ZW), Reply(text="提醒：明天拜访"), "nudge:1")
    await again.send(Target(channel="feishu", conversation_id=ZW, user_id=ZW), Reply(text="提醒：明天拜访"), "nudge:1")
    await again.aclose()
    assert [(s.via, s.to) for s in fake.sent] == [("reply", "om_q1"), ("reply", "om_q1"), ("create", ZW)]
    assert fake.token_requests[APP] == 3


async def test_a_card_begun_in_one_process_is_finished_by_another_and_a_late_preview_never_covers_it(fake, feishu_env, make_settings, tmp_path):
    from sqlalchemy import create_engine

    feishu_env(PREVIEW_INTERVAL="0.05")
    ctx = dataclasses.replace(channel_context(make_settings(), "feishu"), engine=create_engine(f"sqlite:///{tmp_path / 'cards.db'}"))
    target = Target(channel="feishu", conversation_id="oc_p2p2", user_id=ZW,
                    context={"app": "default", "message_id": "om_q2", "chat_id": "oc_p2p2", "chat_type": "p2p", "open_id": ZW, "inbound": "om_q2"})
    writer, sender = feishu.build(ctx), feishu.build(ctx)  # the worker's process and the outbox's
    writer.live.bind(asyncio.get_running_loop())
    await asyncio.to_thread(writer.preview, target, "蓝海系统按坐席")  # from a worker thread, as the agent calls it
    [card] = await fake.wait_sent(1)
    await sender.send(target, Reply(text="蓝海系统按坐席收费，每席每年 1200 元。"), "in:9:0")
    assert card.updates and "1200" in card_text(card.card)
    writer.preview(target, "蓝海系统按坐席收费，每席")  # a preview the writer had not flushed yet
    await asyncio.sleep(0.3)
    assert len(fake.sent) == 1 and "1200" in card_text(card.card) and "▍" not in card_text(card.card)
    await writer.aclose()
    await sender.aclose()


async def test_a_card_button_click_confirms_the_pending_item_once(fake, feishu_env, copilot, aiohttp_client):
    feishu_env()
    gw = await start(copilot, aiohttp_client)
    log = "/log 今天拜访了华东医疗集团王总，关注价格，下周二再约"
    await post(gw, fake, fake.message_event(APP, sender=ZW, text=log, message_id="om_log1"))
    [card] = await fake.wait_sent(1)
    [row] = [el for el in card.card["body"]["elements"] if el["tag"] == "column_set"]
    buttons = [c["elements"][0] for c in row["columns"]]
    assert [b["text"]["content"] for b in buttons] == ["确认写入", "修改", "取消"]
    value = buttons[0]["behaviors"][0]["value"]
    for _ in (1, 2):  # the rep clicks twice: two callbacks
        click = fake.card_event(APP, operator=ZW, value=value, card_message_id=card.message_id, chat_id="oc_p2p" + ZW[-20:])
        r = await post(gw, fake, click)
        assert r.status == 200 and await r.json() == {}
    sent = await fake.wait_sent(3)
    assert sent[1].text().startswith("已写入 CRM"), sent[1].text()
    assert "处理过" in sent[2].text()


# sign-in -----------------------------------------------------------------------------------------------------------
async def test_a_linked_feishu_user_signs_in_to_the_console_and_nobody_else_does(fake, feishu_env, make_app, make_settings, aiohttp_server):
    feishu_env()
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}")
    cp = make_app(settings, channels=[feishu.build(channel_context(settings, "feishu"))])
    cp.directory.link("zhangwei", "feishu", ZW, tenant=cp.settings.tenant)
    server = await aiohttp_server(create_web_app(cp), port=port)
    fake.add_user("ou_stranger00000000000000000000001", "x", "外人", tenant_key="another-org")

    async def sign_in_as(open_id: str, code: str | None = None):
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        r = await s.get(server.make_url("/login/with/feishu"), allow_redirects=False)
        to = urlsplit(r.headers["Location"])
        q = {k: v[0] for k, v in parse_qs(to.query).items()}
        assert to.path == "/open-apis/authen/v1/authorize" and q["client_id"] == APP and q["response_type"] == "code"
        code = code or fake.login_code(APP, open_id, q["redirect_uri"])
        return s, await s.get(q["redirect_uri"], params={"code": code, "state": q["state"]}, allow_redirects=False), code

    async with aiohttp.ClientSession() as browser, browser.get(server.make_url("/login")) as page:
        assert 'href="/login/with/feishu"' in await page.text() and "使用飞书登录" in await page.text()
    s, r, code = await sign_in_as(ZW)
    async with s:
        assert r.status == 303 and (await (await s.get(server.make_url("/api/me"))).json())["id"] == "zhangwei"
    s, r, _ = await sign_in_as(ZW, code=code)  # the same code again: Feishu refuses it
    async with s:
        assert r.status == 403 and (await s.get(server.make_url("/api/me"))).status == 401
    for who in (CJ, "ou_stranger00000000000000000000001"):  # not linked / another organisation
        s, r, _ = await sign_in_as(who)
        async with s:
            assert r.status == 403 and (await s.get(server.make_url("/api/me"))).status == 401


# the long connection ---------------------------------------------------------------------------------------------
async def test_long_connection_events_are_answered_after_they_are_stored_and_survive_a_dropped_connection(fake, feishu_env, copilot,
                                                                                                         aiohttp_client):
    feishu_env("ws")
    gw = await start(copilot, aiohttp_client)
    assert await fake.wait(lambda: fake.ws.get(APP))
    stored_at_answer: list[bool] = []
    fake.on_answer = lambda mid: stored_at_answer.append(bool(inbox(copilot, "om_ws1")))
    mid = await fake.push(APP, fake.message_event(APP, sender=ZW, text="/help", message_id="om_ws1"), parts=2)
    assert (await fake.answered(mid))["code"] == 200 and stored_at_answer == [True]
    [help_card] = await fake.wait_sent(1)
    again = await fake.push(APP, fake.message_event(APP, sender=ZW, text="/help", message_id="om_ws1"))  # redelivered
    assert (await fake.answered(again))["code"] == 200
    await fake.drop(APP)  # the connection is cut: a new endpoint, a new connection
    assert await fake.wait(lambda: fake.ws_opened.get(APP) == 2 and fake.ws.get(APP))
    log = "/log 今天拜访了华东医疗集团王总，关注价格，下周二再约"
    await fake.push(APP, fake.message_event(APP, sender=ZW, text=log, message_id="om_ws2"))
    card = (await fake.wait_sent(2))[1]
    [row] = [el for el in card.card["body"]["elements"] if el["tag"] == "column_set"]
    value = row["columns"][0]["elements"][0]["behaviors"][0]["value"]
    click = await fake.push(APP, fake.card_event(APP, operator=ZW, value=value, card_message_id=card.message_id, chat_id="oc_x"),
                            kind="card")
    answer = await fake.answered(click)
    assert answer["code"] == 200 and json.loads(base64.b64decode(answer["data"])) == {}
    sent = await fake.wait_sent(3)
    assert sent[2].text().startswith("已写入 CRM") and len(inbox(copilot, "om_ws1")) == 1
    assert gw.connector.receivers["default"].connects == 2 and fake.pings >= 2


# wiring and doctor -----------------------------------------------------------------------------------------------
async def test_wiring_and_doctor_name_what_is_wrong(fake, feishu_env, settings, monkeypatch):
    from bot.app import channel_connectors

    feishu_env()
    [connector] = channel_connectors(settings)
    checks = {c.name: c for c in await connector.doctor()}
    await connector.aclose()
    assert all(c.ok or c.name.endswith("callback") for c in checks.values()), checks
    assert BOT_OPEN_ID in checks["feishu[default] bot"].detail and "/feishu/events" in checks["feishu[default] callback"].detail
    feishu_env("ws")
    [connector] = channel_connectors(settings)
    assert (await connector.doctor())[-1].ok
    await connector.aclose()
    feishu_env(APP_SECRET="wrong-secret")
    [connector] = channel_connectors(settings)
    [bad] = await connector.doctor()
    await connector.aclose()
    assert not bad.ok and "10014" in bad.detail and "COPILOT_FEISHU_APP_SECRET" in bad.fix
    feishu_env()
    monkeypatch.delenv("COPILOT_FEISHU_ENCRYPT_KEY")
    [connector] = channel_connectors(settings)
    [problem] = await connector.doctor()
    assert not problem.ok and "COPILOT_FEISHU_ENCRYPT_KEY" in problem.detail and "长连接" in problem.fix


async def test_the_stock_lark_oapi_ws_client_talks_to_the_fake_long_connection(fake, monkeypatch):
    """The unmodified `lark_oapi.ws.Client` gets an endpoint, connects, receives an event through its own dispatcher
    and answers it: the fake speaks the protocol. It runs in its own thread and loop (its start() blocks, with `requests`)."""
    import threading

    import lark_oapi as lark
    import lark_oapi.ws.client as ws_client

    got: list[str] = []
    handler = lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(
        lambda data: got.append(data.event.message.message_id)).build()
    loop = asyncio.new_event_loop()
    monkeypatch.setattr(ws_client, "loop", loop)  # the module binds a loop at import; give it one of its own
    client = lark.ws.Client(APP, SECRET, event_handler=handler, domain=fake.base, log_level=lark.LogLevel.ERROR)
    thread = threading.Thread(target=lambda: _run_quietly(client.start), daemon=True)
    thread.start()
    try:
        assert await fake.wait(lambda: fake.ws.get(APP), timeout=10)
        mid = await fake.push(APP, fake.message_event(APP, sender=ZW, text="hello", message_id="om_stock"), parts=2)
        assert (await fake.answered(mid, timeout=10))["code"] == 200
        assert await fake.wait(lambda: fake.pings >= 1, timeout=5)  # its ping, answered with the pong it expects
    finally:
        client._auto_reconnect = False  # closed from our side: it must not come back (the server waits for open sockets)
        await fake.drop(APP)
        while thread.is_alive():
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
            await asyncio.to_thread(thread.join, 0.05)
        loop.close()
    assert got == ["om_stock"]


def _run_quietly(start) -> None:
    try:
        start()
    except BaseException:
        pass
