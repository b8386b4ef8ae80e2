"""Issue 21, platform replays: a WeCom callback must be fresh (±5 minutes) and is processed once; a DingTalk
sign covers only its timestamp, so a captured timestamp/sign pair is good for one body, once; a DingTalk
message naming another corp is refused. The connectors' routes on a real aiohttp server on loopback,
requests built as the platforms build them (tests/fakes)."""
from __future__ import annotations

import json
import time

import pytest
from aiohttp import web

from connectors.channel import Accepted
from connectors.dingtalk import DingTalkConnector
from connectors.dingtalk.config import DingTalkApp
from connectors.wecom import WeComConnector
from connectors.wecom.config import CorpConfig
from tests.fakes.dingtalk_api import FakeDingTalk
from tests.fakes.wecom_api import A, callback, corp_settings, event_xml, start_fake, text_xml

APP, SECRET, CORP = "dingappkey0001", "app-secret-0001-abcdefghijklmnopqrstuvwxyz", "dingcorp"


class Sink:
    def __init__(self) -> None:
        self.got = []

    async def __call__(self, msg) -> Accepted:
        self.got.append(msg)
        return Accepted(len(self.got), False)


async def serve(aiohttp_client, connector, sink):
    app = web.Application()
    app.add_routes(connector.routes(sink))
    return await aiohttp_client(app)


async def test_wecom_refuses_stale_callbacks_and_processes_a_replay_once(aiohttp_server, aiohttp_client):
    fake = await start_fake(aiohttp_server)
    conn = WeComConnector([CorpConfig(**c) for c in corp_settings(fake)])
    sink = Sink()
    client = await serve(aiohttp_client, conn, sink)

    def post(params, body):
        return client.post("/wecom/callback", params=params, data=body, headers={"Content-Type": "text/xml"})

    old = str(int(time.mktime((2023, 6, 1, 10, 0, 0, 0, 0, -1))))
    for ts in (old, str(int(time.time()) - 310), str(int(time.time()) + 310)):  # signed correctly, but not now
        r = await post(*callback(A, text_xml(A, "ZhangWei", "/help", f"m-{ts}", create_time=int(ts)), ts=ts))
        assert r.status == 403 and "timestamp" in await r.text()
    r = await client.get("/wecom/callback", params={**callback(A, "x", ts=old)[0], "echostr": "abc"})
    assert r.status == 403  # URL verification too
    assert sink.got == []

    captured = callback(A, event_xml(A, "ZhangWei", "enter_agent"))  # an event: no MsgId for the inbox to dedupe on
    for _ in range(3):
        r = await post(*captured)
        assert r.status == 200 and await r.text() == ""  # acknowledged each time ...
    assert len(sink.got) == 1  # ... processed once
    r = await post(*callback(A, event_xml(A, "ZhangWei", "enter_agent")))  # a new callback (fresh nonce) is new
    assert r.status == 200 and len(sink.got) == 2


async def test_wecom_callback_that_failed_to_store_is_taken_when_retried(aiohttp_server, aiohttp_client):
    fake = await start_fake(aiohttp_server)
    conn = WeComConnector([CorpConfig(**c) for c in corp_settings(fake)])
    calls = []

    async def flaky(msg) -> Accepted:
        calls.append(msg)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return Accepted(1, False)

    client = await serve(aiohttp_client, conn, flaky)
    params, body = callback(A, text_xml(A, "ZhangWei", "你好", "m-retry"))
    r = await client.post("/wecom/callback", params=params, data=body)
    assert r.status == 500
    r = await client.post("/wecom/callback", params=params, data=body)  # WeCom's retry: the same request
    assert r.status == 200 and len(calls) == 2  # nothing lost


@pytest.fixture
def dingtalk():
    fake = FakeDingTalk()
    fake.base = "http://127.0.0.1:9"
    fake.add_app(APP, SECRET, corp_id=CORP)
    return fake


async def test_dingtalk_sign_is_good_for_one_body_once(dingtalk, aiohttp_client):
    conn = DingTalkConnector([DingTalkApp(app_key=APP, app_secret=SECRET, corp_id=CORP)])
    sink = Sink()
    client = await serve(aiohttp_client, conn, sink)
    headers = FakeDingTalk.signed_headers(SECRET)  # captured from a real callback
    genuine = json.dumps(dingtalk.message(APP, sender="0251120101", text="你好", msg_id="msg-genuine")).encode()
    r = await client.post("/dingtalk/callback", data=genuine, headers=headers)
    assert r.status == 200 and len(sink.got) == 1
    forged = json.dumps(dingtalk.message(APP, sender="0251120201", text="给我看经理的报表", msg_id="msg-forged")).encode()
    r = await client.post("/dingtalk/callback", data=forged, headers=headers)  # another sender, another body
    assert r.status == 403 and "already used" in await r.text()
    r = await client.post("/dingtalk/callback", data=genuine, headers=headers)  # DingTalk's retry of the same request
    assert r.status == 200 and len(sink.got) == 2 and sink.got[1].platform_msg_id == "msg-genuine"  # the inbox dedupes it
    stale = FakeDingTalk.signed_headers(SECRET, int((time.time() - 3601) * 1000))
    r = await client.post("/dingtalk/callback", data=forged, headers=stale)
    assert r.status == 403 and len(sink.got) == 2


async def test_dingtalk_refuses_another_corps_message(dingtalk, aiohttp_client):
    conn = DingTalkConnector([DingTalkApp(app_key=APP, app_secret=SECRET, corp_id=CORP)])
    sink = Sink()
    client = await serve(aiohttp_client, conn, sink)
    for field in ("senderCorpId", "chatbotCorpId"):
        body = {**dingtalk.message(APP, sender="0251120101", text="hi"), field: "dingOTHERcorp"}
        r = await client.post("/dingtalk/callback", data=json.dumps(body).encode(), headers=FakeDingTalk.signed_headers(SECRET))
        assert r.status == 403 and field in await r.text()
    body = dingtalk.message(APP, sender="0251120101", text="hi")
    del body["senderCorpId"]
    r = await client.post("/dingtalk/callback", data=json.dumps(body).encode(), headers=FakeDingTalk.signed_headers(SECRET))
    assert r.status == 403
    assert sink.got == []
    r = await client.post("/dingtalk/callback", data=json.dumps(dingtalk.message(APP, sender="0251120101", text="hi")).encode(),
                          headers=FakeDingTalk.signed_headers(SECRET))
    assert r.status == 200 and len(sink.got) == 1


async def test_doctor_says_when_the_dingtalk_corp_id_is_not_configured(aiohttp_server):
    fake = FakeDingTalk()
    fake.bind(str((await aiohttp_server(fake.app())).make_url("")))
    fake.add_app(APP, SECRET, corp_id=CORP)
    for corp_id, ok in (("", False), (CORP, None)):
        conn = DingTalkConnector([DingTalkApp(app_key=APP, app_secret=SECRET, api_base=fake.base, oapi_base=fake.base, corp_id=corp_id)])
        try:
            checks = {c.name: c for c in await conn.doctor()}
        finally:
            await conn.aclose()
        assert checks["dingtalk[default] credentials"].ok
        if ok is None:
            assert "dingtalk[default] corp id" not in checks
        else:
            check = checks["dingtalk[default] corp id"]
            assert not check.ok and "COPILOT_DINGTALK_CORP_ID" in check.fix and "not checked" in check.detail


async def test_a_dingtalk_sign_used_at_one_process_is_refused_with_another_body_at_another(dingtalk, aiohttp_client, tmp_path):
    """Two gateways on one database (two `copilot serve` behind a load balancer): the sign captured from a
    callback that reached the first cannot carry another body to the second."""
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    first, second = (DingTalkConnector([DingTalkApp(app_key=APP, app_secret=SECRET, corp_id=CORP)], engine=engine) for _ in range(2))
    sink = Sink()
    one, two = await serve(aiohttp_client, first, sink), await serve(aiohttp_client, second, sink)
    headers = FakeDingTalk.signed_headers(SECRET)
    genuine = json.dumps(dingtalk.message(APP, sender="0251120101", text="你好", msg_id="msg-genuine")).encode()
    assert (await one.post("/dingtalk/callback", data=genuine, headers=headers)).status == 200
    forged = json.dumps(dingtalk.message(APP, sender="0251120201", text="给我看经理的报表", msg_id="msg-forged")).encode()
    r = await two.post("/dingtalk/callback", data=forged, headers=headers)
    assert r.status == 403 and "already used" in await r.text()
    assert (await two.post("/dingtalk/callback", data=genuine, headers=headers)).status == 200  # a retry at the other process
    assert [m.platform_msg_id for m in sink.got] == ["msg-genuine", "msg-genuine"]  # the inbox dedupes the retry
    engine.dispose()
