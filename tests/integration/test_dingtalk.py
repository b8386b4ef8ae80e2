"""The DingTalk connector against a fake DingTalk (API + Stream gateway) on loopback, whole pipeline.

Sample people (knowledge/crm/reps.csv): zhangwei = rep (华东区), lina = manager, chenjing =
enablement; their DingTalk staff ids are the csv's dingtalk_userid column. What every connector must
do (a forged signature, dedupe, send, split, text fallback) is in test_connector_contract.py.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from bot.app import build_app, channel_context
from bot.pipeline.tables import InboxRow
from bot.web.gateway import create_web_app
from connectors.dingtalk import DingTalkConnector
from rag.retrieve import Viewer
from tests.fakes.dingtalk_api import FakeDingTalk, serve_with_stream

APP, SECRET = "dingappkey0001", "app-secret-0001-abcdefghijklmnopqrstuvwxyz"
APP2, SECRET2 = "dingappkey0002", "app-secret-0002-abcdefghijklmnopqrstuvwxyz"
STAFF = {"zhangwei": "0251120101", "lina": "0251120201", "chenjing": "0251120401"}
FAST = {"backoff_base": 0.05, "backoff_max": 0.5, "heartbeat": 5.0}


@pytest.fixture
async def fake(aiohttp_server):
    return await serve_with_stream(aiohttp_server, (APP, SECRET), (APP2, SECRET2), redeliver_after=0.8)


@pytest.fixture
def use_app(monkeypatch, fake):
    def configure(mode: str = "http", secret: str = SECRET, robot: str = "") -> None:
        for k, v in dict(APP_KEY=APP, APP_SECRET=secret, MODE=mode, API_BASE=fake.base, OAPI_BASE=fake.base, ROBOT_CODE=robot,
                         CORP_ID=fake.apps[APP].corp_id).items():  # messages naming another corp are refused
            monkeypatch.setenv(f"COPILOT_DINGTALK_{k}", v)

    return configure


@pytest.fixture
def link(copilot):
    def do(*names: str, tenant: str = "default") -> None:
        for n in names:
            copilot.directory.link(n, "dingtalk", STAFF[n], tenant=tenant)

    return do


async def start(copilot, aiohttp_client, settings):
    """The gateway of a second app over the same data, with the DingTalk channel (`copilot` set the data up)."""
    connector = DingTalkConnector.build(channel_context(settings, "dingtalk"), stream_options=FAST)
    client = await aiohttp_client(create_web_app(build_app(settings, channels=[connector]), owns_app=True))
    client.connector = connector
    return client


async def post(client, body: dict, secret: str = SECRET, path: str = "/dingtalk/callback", **headers):
    h = {**FakeDingTalk.signed_headers(secret), **headers}
    return await client.post(path, data=json.dumps(body, ensure_ascii=False).encode(), headers=h)


def inbox_rows(copilot, msg_id: str | None = None) -> list[InboxRow]:
    from sqlmodel import Session, select

    with Session(copilot.engine) as s:
        q = select(InboxRow).where(InboxRow.channel == "dingtalk")
        if msg_id:
            q = q.where(InboxRow.platform_msg_id == msg_id)
        return list(s.exec(q).all())


async def quiet(seconds: float = 0.4) -> None:
    await asyncio.sleep(seconds)


# HTTP callbacks --------------------------------------------------------------------------------------
async def test_signed_direct_message_is_answered_once_with_citations(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app()
    link("zhangwei")
    gw = await start(copilot, aiohttp_client, settings)
    body = fake.message(APP, sender=STAFF["zhangwei"], text="星图软件的实施周期一般多长？", msg_id="m-direct")
    r = await post(gw, body)
    assert r.status == 200 and (await r.json())["duplicate"] is False
    [sent] = await fake.wait_sent(1)
    assert sent.via == "webhook" and sent.kind == "markdown" and sent.to == body["conversationId"]
    assert "实施周期" in sent.text and "**来源**" in sent.text and "](http" in sent.text  # markdown citation links
    assert sent.at == []  # no @ in a direct chat
    await quiet()
    assert len(fake.sent) == 1


async def test_stale_unsigned_and_malformed_callbacks_are_refused(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app()
    gw = await start(copilot, aiohttp_client, settings)
    body = fake.message(APP, sender=STAFF["zhangwei"], text="你好")
    stale_ts = int(time.time() * 1000) - 2 * 3600 * 1000
    stale = await gw.post("/dingtalk/callback", json=body, headers=FakeDingTalk.signed_headers(SECRET, stale_ts))
    assert stale.status == 403 and "more than an hour" in (await stale.json())["error"]
    unsigned = await gw.post("/dingtalk/callback", json=body)
    assert unsigned.status == 403
    bad_json = await gw.post("/dingtalk/callback", data=b"{nope", headers=FakeDingTalk.signed_headers(SECRET))
    assert bad_json.status == 400 and "JSON" in (await bad_json.json())["error"]
    not_robot = await post(gw, {"hello": "world"})
    assert not_robot.status == 400 and "msgId" in (await not_robot.json())["error"]
    unknown_app = await post(gw, body, path="/dingtalk/nosuch/callback")
    assert unknown_app.status == 404
    assert inbox_rows(copilot) == []
    await quiet(0.2)
    assert fake.sent == []


async def test_group_answers_only_when_mentioned_and_mentions_the_asker(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app()
    link("zhangwei")
    gw = await start(copilot, aiohttp_client, settings)
    chatter = fake.message(APP, sender=STAFF["zhangwei"], text="午饭吃什么", group=True, at=False, msg_id="g-chatter")
    r = await post(gw, chatter)
    assert r.status == 200 and "ignored" in await r.json()
    asked = fake.message(APP, sender=STAFF["zhangwei"], text="蓝海系统的价格区间？", group=True, msg_id="g-asked", nick="张伟")
    assert asked["text"]["content"].startswith(" ")  # DingTalk's leftover space where the @ was
    assert (await post(gw, asked)).status == 200
    [sent] = await fake.wait_sent(1)
    assert sent.via == "webhook" and sent.to == asked["conversationId"]
    assert sent.at == [STAFF["zhangwei"]] and sent.text.startswith(f"@{STAFF['zhangwei']} ")
    await quiet()
    assert len(fake.sent) == 1 and [r.platform_msg_id for r in inbox_rows(copilot)] == ["g-asked"]


async def test_expired_session_webhook_falls_back_to_the_robot_api(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app()
    link("zhangwei")
    gw = await start(copilot, aiohttp_client, settings)
    # 1. the expiry time has passed: the connector does not even try the webhook
    late = fake.message(APP, sender=STAFF["zhangwei"], text="/help", msg_id="m-late", webhook_ttl=-60)
    assert (await post(gw, late)).status == 200
    [oto] = await fake.wait_sent(1)
    assert oto.via == "oto" and oto.to == STAFF["zhangwei"] and oto.kind == "sampleMarkdown" and oto.body["title"]
    # 2. the time says valid, DingTalk says 300001: fall back to the group send API; an expired token is refreshed
    fake.expire_tokens()
    group = fake.message(APP, sender=STAFF["zhangwei"], text="/help", group=True, msg_id="m-group-late", nick="张伟")
    fake.expire_session(group["sessionWebhook"])
    assert (await post(gw, group)).status == 200
    sent = await fake.wait_sent(2)
    assert sent[1].via == "group" and sent[1].to == group["conversationId"] and sent[1].text.startswith("@张伟 ")
    assert fake.token_requests[APP] == 2  # fetched once, refreshed once after DingTalk revoked it
    await quiet()
    assert len(fake.sent) == 2


async def test_token_is_fetched_once_for_concurrent_sends_and_outages_are_retryable(fake, use_app, settings):
    from connectors.channel import SendError
    from connectors.message import Reply, Target

    use_app()
    connector = DingTalkConnector.build(channel_context(settings, "dingtalk"))
    try:
        targets = [Target(channel="dingtalk", conversation_id=f"c{i}", user_id=f"staff{i}") for i in range(12)]  # no webhook: API
        await asyncio.gather(*(connector.send(t, Reply(text=f"提醒 {i}"), f"k{i}") for i, t in enumerate(targets)))
        assert fake.token_requests[APP] == 1 and len(fake.sent) == 12 and {s.via for s in fake.sent} == {"oto"}
        fake.outages["/v1.0/robot/oToMessages/batchSend"] = 1
        with pytest.raises(SendError) as err:
            await connector.send(targets[0], Reply(text="再试"), "k-outage")
        assert err.value.retryable and "503" in str(err.value)
        await connector.send(targets[0], Reply(text="再试"), "k-outage")  # the outbox's retry
        assert len(fake.sent) == 13
        with pytest.raises(SendError) as err:
            await connector.send(Target(channel="dingtalk", tenant="elsewhere", conversation_id="c"), Reply(text="x"), "k-x")
        assert not err.value.retryable
    finally:
        await connector.aclose()


# Stream mode -------------------------------------------------------------------------------------------
async def test_stream_message_is_acked_after_it_is_stored_and_answered_once(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app("stream")
    link("zhangwei")
    gw = await start(copilot, aiohttp_client, settings)
    stream = fake.stream
    await stream.wait_connected(APP)
    stored_at_ack: list[bool] = []
    stream.on_ack = lambda mid: stored_at_ack.append(bool(inbox_rows(copilot, "s-1")))
    frame = stream.push(APP, fake.message(APP, sender=STAFF["zhangwei"], text="/help", msg_id="s-1"))
    ack = await stream.acked(frame)
    assert ack.code == 200 and stored_at_ack == [True]
    [sent] = await fake.wait_sent(1)
    assert sent.via == "webhook"
    # a group message that does not @ the robot is acked too (or DingTalk would keep sending it), never stored
    chatter = stream.push(APP, fake.message(APP, sender=STAFF["zhangwei"], text="闲聊", group=True, at=False, msg_id="s-chat"))
    assert (await stream.acked(chatter)).code == 200
    await quiet()
    assert len(fake.sent) == 1 and not inbox_rows(copilot, "s-chat")
    assert gw.connector.receivers["default"].connects == 1


async def test_stream_redelivery_and_duplicate_msg_ids_are_answered_once(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app("stream")
    link("zhangwei")
    await start(copilot, aiohttp_client, settings)
    stream = fake.stream
    await stream.wait_connected(APP)
    stream.lose_acks = 1  # the first ack never reaches DingTalk: it delivers the message again
    data = fake.message(APP, sender=STAFF["zhangwei"], text="/help", msg_id="s-redeliver")
    frame = stream.push(APP, data)
    assert (await stream.acked(frame, timeout=5)).code == 200
    assert stream.deliveries[frame] == 2 and stream.lost_acks == [frame]
    again = stream.push(APP, data)  # the same robot message in a new frame
    assert (await stream.acked(again)).code == 200  # duplicates are acked too
    await fake.wait_sent(1)
    await quiet(0.6)
    assert len(fake.sent) == 1 and len(inbox_rows(copilot, "s-redeliver")) == 1


async def test_dropped_stream_connection_reconnects_and_keeps_answering(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app("stream")
    link("zhangwei")
    gw = await start(copilot, aiohttp_client, settings)
    stream = fake.stream
    await stream.wait_connected(APP)
    ping = stream.ping(APP)
    assert stream.drop(APP) == 1  # cut without a close frame: the case that kills the stock client's loop
    await stream.wait_connected(APP, opened=2)
    frame = stream.push(APP, fake.message(APP, sender=STAFF["zhangwei"], text="/help", msg_id="s-after-drop"))
    assert (await stream.acked(frame)).code == 200
    await fake.wait_sent(1)
    stream.disconnect(APP)  # DingTalk moving the connection: a new one is opened with a new ticket
    await stream.wait_connected(APP, opened=3)
    echo = stream.ping(APP)
    for _ in range(100):
        if any(a.message_id == echo for a in stream.system_acks):
            break
        await asyncio.sleep(0.02)
    [pong] = [a for a in stream.system_acks if a.message_id == echo]
    assert pong.code == 200 and "opaque" in json.loads(pong.data)
    assert ping not in [a.message_id for a in stream.acks]
    assert stream.refused == 0 and gw.connector.receivers["default"].connects == 3
    assert len(fake.sent) == 1


# knowledge and permissions -----------------------------------------------------------------------------
async def test_file_from_enablement_user_is_ingested_and_a_reps_file_is_a_draft(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app("stream")
    link("chenjing", "zhangwei")
    await start(copilot, aiohttp_client, settings)
    await fake.stream.wait_connected(APP)
    doc = ("---\nid: battlecard-qingyun\ntitle: 青云ERP 竞品速览\naudience: all\n---\n\n# 青云ERP 竞品速览\n\n"
           "青云ERP 的弱点是本地化部署周期长，平均需要九个月，而且不支持医疗行业的 GSP 合规模块。\n").encode()
    code = fake.add_file(APP, doc)
    content = {"downloadCode": code, "fileName": "青云ERP竞品速览.md"}
    fake.stream.push(APP, fake.message(APP, sender=STAFF["chenjing"], msgtype="file", content=content, msg_id="f-1"))
    [sent] = await fake.wait_sent(1)
    assert "已导入" in sent.text and "battlecard-qingyun" in sent.text
    hits = copilot.knowledge.retriever.search("青云ERP 的弱点是什么", Viewer("default", "rep", "华东区"))
    assert hits and hits[0].doc_id == "battlecard-qingyun"
    rep_doc = doc.replace(b"battlecard-qingyun", b"battlecard-qingyun-rep")
    content = {"downloadCode": fake.add_file(APP, rep_doc), "fileName": "我的笔记.md"}
    fake.stream.push(APP, fake.message(APP, sender=STAFF["zhangwei"], msgtype="file", content=content, msg_id="f-2"))
    sent = await fake.wait_sent(2)
    assert "草稿" in sent[1].text


async def test_rep_in_a_group_never_sees_a_managers_only_document(fake, use_app, link, copilot, aiohttp_client, settings):
    use_app()
    link("zhangwei", "lina")
    gw = await start(copilot, aiohttp_client, settings)
    q = "大客户折扣审批的权限和底价是多少？"
    await post(gw, fake.message(APP, sender=STAFF["zhangwei"], text=q, group=True, msg_id="p-rep", nick="张伟"))
    [rep] = await fake.wait_sent(1)
    assert rep.at == [STAFF["zhangwei"]]
    assert "折扣审批规则与底价" not in rep.text and "pricing-discount-approval" not in json.dumps(rep.body, ensure_ascii=False)
    await post(gw, fake.message(APP, sender=STAFF["lina"], text=q, msg_id="p-manager"))
    sent = await fake.wait_sent(2)
    assert "折扣审批规则与底价" in sent[1].text  # the document exists: the rep was refused by role, not by chance


# several apps ----------------------------------------------------------------------------------------------
async def test_two_apps_are_isolated(fake, use_app, link, copilot, aiohttp_client, settings, tmp_path, monkeypatch):
    use_app()
    toml = tmp_path / "copilot.toml"
    toml.write_text(f'[dingtalk]\n[[dingtalk.apps]]\nkey = "beijing"\napp_key = "{APP2}"\napp_secret = "{SECRET2}"\n', encoding="utf-8")
    monkeypatch.setenv("COPILOT_CONFIG", str(toml))
    link("zhangwei")  # linked in the main corp only
    gw = await start(copilot, aiohttp_client, settings)
    same_id = "m-both-corps"
    a = fake.message(APP, sender=STAFF["zhangwei"], text="/help", msg_id=same_id)
    b = fake.message(APP2, sender=STAFF["zhangwei"], text="/help", msg_id=same_id)
    assert (await post(gw, b, secret=SECRET, path="/dingtalk/beijing/callback")).status == 403  # app 1's secret
    assert (await post(gw, a, secret=SECRET2)).status == 403  # app 2's secret on app 1's URL
    assert (await post(gw, a)).status == 200
    assert (await post(gw, b, secret=SECRET2, path="/dingtalk/beijing/callback")).status == 200
    sent = await fake.wait_sent(2)
    by_app = {s.app_key: s for s in sent}
    assert "/help" in by_app[APP].text or "/compare" in by_app[APP].text  # a known rep gets help
    assert "管理员" in by_app[APP2].text or "admin" in by_app[APP2].text.lower()  # same staff id, other corp: unknown
    assert sorted(r.tenant for r in inbox_rows(copilot, same_id)) == ["beijing", "default"]
    assert [p.tenant for p in copilot.directory.pending()] == ["beijing"]


async def test_wiring_and_doctor_name_what_is_wrong(fake, use_app, settings):
    from bot.app import channel_connectors

    use_app("stream")
    [connector] = channel_connectors(settings)
    checks = {c.name: c for c in await connector.doctor()}
    await connector.aclose()
    assert all(c.ok for c in checks.values()), checks
    assert {"dingtalk[default] credentials", "dingtalk[default] robot", "dingtalk[default] oapi", "dingtalk[default] stream"} <= set(checks)
    assert "10 members" in checks["dingtalk[default] oapi"].detail
    use_app("http", secret="wrong-secret")
    [connector] = channel_connectors(settings)
    [bad] = await connector.doctor()
    await connector.aclose()
    assert not bad.ok and "invalidClientIdOrSecret" in bad.detail and "COPILOT_DINGTALK_APP_SECRET" in bad.fix
    use_app("http", robot="not-my-robot")
    [connector] = channel_connectors(settings)
    robot = {c.name: c for c in await connector.doctor()}["dingtalk[default] robot"]
    await connector.aclose()
    assert not robot.ok and "robot_code" in robot.fix
    use_app("carrier-pigeon")
    [connector] = channel_connectors(settings)
    [mode] = await connector.doctor()
    assert not mode.ok and "COPILOT_DINGTALK_MODE" in mode.fix


async def test_stock_sdk_client_talks_to_the_fake_stream_gateway(fake, monkeypatch):
    """The unmodified dingtalk-stream client connects with a ticket, receives a robot message and acks it.

    It runs in its own thread and loop: its `open_connection` blocks the loop with `requests`."""
    import dingtalk_stream

    monkeypatch.setattr(dingtalk_stream.DingTalkStreamClient, "OPEN_CONNECTION_API", fake.base + "/v1.0/gateway/connections/open")
    got: list[dict] = []

    class Handler(dingtalk_stream.ChatbotHandler):
        async def process(self, callback):
            got.append(callback.data)
            return dingtalk_stream.AckMessage.STATUS_OK, "OK"

    client = dingtalk_stream.DingTalkStreamClient(dingtalk_stream.Credential(APP, SECRET))
    client.register_callback_handler(dingtalk_stream.ChatbotMessage.TOPIC, Handler())
    loop = asyncio.new_event_loop()

    def run() -> None:
        try:
            loop.run_until_complete(client.start())
        except BaseException:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        await fake.stream.wait_connected(APP)
        frame = fake.stream.push(APP, fake.message(APP, sender=STAFF["zhangwei"], text="hello", msg_id="sdk-1"))
        assert (await fake.stream.acked(frame)).code == 200
    finally:
        while thread.is_alive():  # its loop swallows the first cancel and sleeps: cancel until it stops
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
            await asyncio.to_thread(thread.join, 0.05)
        loop.close()
    assert got and got[0]["msgId"] == "sdk-1"


async def test_confirmation_card_click_and_typed_fallback_each_resolve_once(fake, use_app, link, copilot, aiohttp_client, settings):
    from urllib.parse import unquote

    use_app()
    link("zhangwei")
    gw = await start(copilot, aiohttp_client, settings)
    log = "/log 今天拜访了华东医疗集团王总，关注价格，下周二再约"
    await post(gw, fake.message(APP, sender=STAFF["zhangwei"], text=log, msg_id="c-log-1"))
    [card] = await fake.wait_sent(1)
    assert card.kind == "actionCard", card.text
    body = card.body["actionCard"]
    assert [b["title"] for b in body["btns"]] == ["确认写入", "修改", "取消"]
    assert body["text"].count("回复 1 确认 / 2 修改 / 3 取消") == 1
    clicked = unquote(body["btns"][0]["actionURL"].split("content=", 1)[1])
    for n in (1, 2):  # the rep taps the button twice: DingTalk sends two messages
        await post(gw, fake.message(APP, sender=STAFF["zhangwei"], text=clicked, msg_id=f"c-click-{n}"))
    sent = await fake.wait_sent(3)
    assert sent[1].text.startswith("已写入 CRM"), sent[1].text
    assert "处理过" in sent[2].text  # the second tap changes nothing
    await post(gw, fake.message(APP, sender=STAFF["zhangwei"], text=log.replace("下周二", "下周三"), msg_id="c-log-2"))
    await fake.wait_sent(4)
    await post(gw, fake.message(APP, sender=STAFF["zhangwei"], text="1", msg_id="c-typed"))  # a client without cards
    sent = await fake.wait_sent(5)
    assert sent[4].text.startswith("已写入 CRM"), sent[4].text
    await quiet()
    assert len(fake.sent) == 5
