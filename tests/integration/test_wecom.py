"""The WeCom connector through the real gateway, against a fake WeCom API on loopback.

Callbacks are encrypted with wechatpy exactly as WeCom sends them (AES-CBC envelope in
<xml><ToUserName/><AgentID/><Encrypt/></xml>, msg_signature/timestamp/nonce in the query).
Two corps: A (the default one, markdown replies) and B (key "east", text replies).
API-level behaviour (token, pacing, doctor, directory sync) is in test_wecom_api.py; what every
connector must do (verify, dedupe, send, split, text fallback) in test_connector_contract.py.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import time

import pytest
from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.utils import WeChatSigner

from connectors.wecom import WeComConnector
from connectors.wecom.config import CorpConfig
from connectors.wecom.render import TEXT_LIMIT, ref_of_task, task_id
from tests.fakes.wecom_api import A, B, FakeWeCom, callback, corp_settings, event_xml, file_xml, start_fake, text_xml


async def post(client, corp: dict, xml: str, path: str = "/wecom/callback", **kw):
    params, body = callback(corp, xml, **kw)
    return await client.post(path, params=params, data=body, headers={"Content-Type": "text/xml"})


def content(m: dict) -> str:
    kind = m["msgtype"]
    return m[kind]["content"] if kind in ("text", "markdown") else ""


def to(corp: dict, user: str):
    return lambda m: m["corp_id"] == corp["corp_id"] and m["touser"] == user


# fixtures -----------------------------------------------------------------------------------------
@pytest.fixture
async def fake(aiohttp_server):
    return await start_fake(aiohttp_server)


def corps(fake: FakeWeCom, tenant: str = "default") -> list[CorpConfig]:
    return [CorpConfig(**c) for c in corp_settings(fake, tenant)]


@pytest.fixture
async def wecom(make_app, settings, fake, aiohttp_client):
    from bot.web.gateway import create_web_app

    t = settings.tenant
    conn = WeComConnector(corps(fake, t))
    copilot = make_app(channels=[conn])
    copilot.directory.link("zhangwei", "wecom", "ZhangWei", tenant=t)
    copilot.directory.link("chenjing", "wecom", "ChenJing", tenant=t)
    copilot.directory.link("lijun", "wecom", "LiJun", tenant=t)
    copilot.directory.add("east-zhangwei", "张伟（东区）", "rep", team="东区", tenant="east", channel="wecom", platform_user_id="ZhangWei")
    client = await aiohttp_client(create_web_app(copilot))
    client.copilot, client.fake, client.conn = copilot, fake, conn
    return client


def inbox_rows(copilot, channel: str = "wecom") -> list:
    from sqlalchemy import select

    from bot.pipeline.tables import InboxRow

    with copilot.engine.connect() as c:
        return c.execute(select(InboxRow.__table__).where(InboxRow.channel == channel)).all()


# callbacks in -------------------------------------------------------------------------------------
async def test_url_verification_answers_the_decrypted_echostr(wecom):
    for corp, path in ((A, "/wecom/callback"), (B, "/wecom/east/callback")):
        ts, nonce = str(int(time.time())), "1372623149"
        echostr = PrpCrypto(base64.b64decode(corp["aes_key"] + "=")).encrypt("8211743296425863214", corp["corp_id"]).decode()
        signer = WeChatSigner()
        signer.add_data(corp["token"], ts, nonce, echostr)
        q = {"msg_signature": signer.signature, "timestamp": ts, "nonce": nonce, "echostr": echostr}
        r = await wecom.get(path, params=q)
        assert r.status == 200 and await r.text() == "8211743296425863214"
        r = await wecom.get(path, params={**q, "msg_signature": "0" * 40})
        assert r.status == 403
    r = await wecom.get("/wecom/callback", params=q)  # B's request on A's URL: A's token does not sign it
    assert r.status == 403
    assert (await wecom.get("/wecom/callback")).status == 400
    assert (await wecom.get("/wecom/nowhere/callback", params=q)).status == 404


async def test_text_question_is_answered_through_message_send_with_a_citation(wecom):
    r = await post(wecom, A, text_xml(A, "ZhangWei", "星图软件的实施周期一般多长？", "7450000000000000001"))
    assert r.status == 200 and await r.text() == ""
    [m] = await wecom.fake.wait_sent(to(A, "ZhangWei"))
    assert m["msgtype"] == "markdown" and m["agentid"] == A["agent_id"]
    assert m["enable_duplicate_check"] == 1 and m["duplicate_check_interval"] > 0
    text = content(m)
    assert "实施周期" in text and "[1]" in text
    assert "> **来源**" in text and "](http" in text  # the citation with its link survives rendering
    assert m["bytes"] <= TEXT_LIMIT and not m.get("truncated")


async def test_another_corps_message_is_refused_and_logged(wecom, caplog):
    # a bad signature in general: test_connector_contract.py; here, corp B's genuine message on corp A's URL
    params_b, body_b = callback(B, text_xml(B, "ZhangWei", "你好", "7450000000000000004"))
    with caplog.at_level(logging.WARNING, logger="copilot.wecom"):
        r = await wecom.post("/wecom/callback", params=params_b, data=body_b)
    assert r.status == 403 and "signature" in (await r.json())["error"]
    assert "refused" in caplog.text
    assert inbox_rows(wecom.copilot) == []


XXE = b"""<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Encrypt>&xxe;</Encrypt></xml>"""
LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]><xml><Encrypt>&lol3;</Encrypt></xml>"""


async def test_xxe_and_billion_laughs_are_refused_outside_and_inside_the_envelope(wecom):
    params, _ = callback(A, text_xml(A, "ZhangWei", "x", "7450000000000000005"))
    for hostile in (XXE, LAUGHS):
        r = await wecom.post("/wecom/callback", params=params, data=hostile)
        assert r.status == 400 and "DTD" in (await r.json())["error"]
    # a correctly encrypted and signed message whose decrypted XML is hostile
    inner = '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/hostname">]><xml><FromUserName>&x;</FromUserName></xml>'
    r = await post(wecom, A, inner)
    assert r.status == 400 and "DTD" in (await r.json())["error"]
    assert inbox_rows(wecom.copilot) == []
    assert (await wecom.get("/healthz")).status == 200


async def test_oversized_and_malformed_bodies_get_clear_4xx(wecom):
    params, body = callback(A, text_xml(A, "ZhangWei", "x", "7450000000000000006"))
    big = body.replace(b"</xml>", b"<Pad>" + b"x" * 100_000 + b"</Pad></xml>")
    r = await wecom.post("/wecom/callback", params=params, data=big)
    assert r.status == 413 and "too large" in (await r.json())["error"]

    async def chunked():
        for _ in range(10):
            yield b"<xml>" + b"y" * 16384

    assert (await wecom.post("/wecom/callback", params=params, data=chunked())).status == 413
    assert (await wecom.post("/wecom/callback", data=body)).status == 400  # no signature parameters
    r = await wecom.post("/wecom/callback", params=params, data=b"not xml at all")
    assert r.status == 400 and "XML" in (await r.json())["error"]
    r = await wecom.post("/wecom/callback", params=params, data=b"<xml><Encrypt>AAAA</Encrypt></xml>")
    assert r.status == 403  # the signature covers Encrypt: a forged one fails before any decryption
    assert (await wecom.post("/wecom/other/callback", params=params, data=body)).status == 404
    assert inbox_rows(wecom.copilot) == []


# replies out --------------------------------------------------------------------------------------
async def test_an_expired_token_mid_send_is_refreshed_and_retried_once(wecom):
    fake = wecom.fake
    fake.expire_on_next_send = True
    await post(wecom, A, text_xml(A, "ZhangWei", "/help", "7450000000000000007"))
    [m] = await fake.wait_sent(to(A, "ZhangWei"))
    assert "/ask" in content(m)
    assert [x["errcode"] for x in fake.refused] == [42001]
    assert fake.gettoken_calls[A["corp_id"]] == 2


# message types ------------------------------------------------------------------------------------
BATTLECARD = "# 极光物流竞品速览\n\n## 实施与价格\n\n极光物流的标准实施周期为十二周，报价比云帆标准版高约百分之十五，没有驻场顾问。\n".encode()


async def test_a_file_from_an_enablement_user_lands_in_the_knowledge_base(wecom):
    from bot.agent import viewer_of

    media = wecom.fake.add_media(BATTLECARD, "jiguang.md", "text/markdown")
    r = await post(wecom, A, file_xml(A, "ChenJing", media, "极光物流竞品速览.md", "7450000000000000010"))
    assert r.status == 200
    [m] = await wecom.fake.wait_sent(to(A, "ChenJing"), timeout=30)
    assert "已导入" in content(m)
    rep = wecom.copilot.directory.get("default", "zhangwei")
    hits = wecom.copilot.knowledge.retriever.search("极光物流的实施周期多长", viewer_of(rep), k=3)
    assert hits and "极光物流" in hits[0].title


async def test_a_file_from_a_rep_becomes_a_draft_and_is_not_served(wecom):
    from bot.agent import viewer_of

    doc = BATTLECARD.replace("极光物流".encode(), "远山仓储".encode())
    media = wecom.fake.add_media(doc, "yuanshan.md", "text/markdown")
    await post(wecom, A, file_xml(A, "ZhangWei", media, "远山仓储竞品速览.md", "7450000000000000011"))
    [m] = await wecom.fake.wait_sent(to(A, "ZhangWei"), timeout=30)
    assert "草稿" in content(m) and "赋能" in content(m)
    hits = wecom.copilot.knowledge.retriever.search("远山仓储的实施周期", viewer_of(wecom.copilot.directory.get("default", "lijun")), k=5)
    assert all("远山仓储" not in h.title for h in hits)


async def test_an_unknown_user_is_told_and_recorded_for_an_admin(wecom):
    await post(wecom, A, text_xml(A, "Stranger", "你好", "7450000000000000012"))
    [m] = await wecom.fake.wait_sent(to(A, "Stranger"))
    assert "管理员" in content(m)
    pending = [(p.channel, p.tenant, p.platform_user_id) for p in wecom.copilot.directory.pending()]
    assert pending == [("wecom", wecom.copilot.settings.tenant, "Stranger")]


async def test_enter_agent_gets_a_welcome_and_location_is_handled_politely(wecom):
    await post(wecom, A, event_xml(A, "ZhangWei", "enter_agent", extra="<EventKey><![CDATA[]]></EventKey>"))
    [m] = await wecom.fake.wait_sent(to(A, "ZhangWei"))
    assert "张伟" in content(m) and "/help" in content(m)
    # the client's automatic position report: acknowledged, never queued, never answered
    report = event_xml(A, "LiJun", "LOCATION", extra="<Latitude>31.23</Latitude><Longitude>121.47</Longitude><Precision>30</Precision>")
    assert (await post(wecom, A, report)).status == 200
    assert [r.platform_msg_id for r in inbox_rows(wecom.copilot) if '"LiJun"' in r.payload] == []
    # a location the user chose to send: a polite note
    loc = text_xml(A, "LiJun", "", "7450000000000000013").replace("<MsgType><![CDATA[text]]></MsgType>", "<MsgType><![CDATA[location]]></MsgType>")
    await post(wecom, A, loc)
    [m] = await wecom.fake.wait_sent(to(A, "LiJun"))
    assert "位置" in content(m)


async def test_two_corps_are_isolated(wecom):
    fake = wecom.fake
    same_id = "7450000000000000020"  # MsgIds are per corp: the same one in two corps is two messages
    await post(wecom, A, text_xml(A, "ZhangWei", "/help", same_id))
    await post(wecom, B, text_xml(B, "ZhangWei", "/help", same_id), path="/wecom/east/callback")
    await post(wecom, B, event_xml(B, "ZhangWei", "enter_agent"), path="/wecom/east/callback")
    await post(wecom, B, text_xml(B, "LiJun", "你好", "7450000000000000021"), path="/wecom/east/callback")
    [a] = await fake.wait_sent(to(A, "ZhangWei"))
    b = await fake.wait_sent(to(B, "ZhangWei"), n=2)
    assert a["agentid"] == A["agent_id"] and a["msgtype"] == "markdown"
    assert all(m["agentid"] == B["agent_id"] and m["msgtype"] == "text" for m in b)  # corp B: text replies
    assert any("张伟（东区）" in content(m) for m in b)  # resolved to corp B's person, not corp A's
    [lijun_b] = await fake.wait_sent(to(B, "LiJun"))
    assert "管理员" in content(lijun_b)  # LiJun is known in corp A only
    assert ("wecom", "east", "LiJun") in [(p.channel, p.tenant, p.platform_user_id) for p in wecom.copilot.directory.pending()]
    tenants = sorted(r.tenant for r in inbox_rows(wecom.copilot) if r.platform_msg_id == same_id)
    assert tenants == sorted([wecom.copilot.settings.tenant, "east"])


async def test_a_card_button_clicked_twice_is_one_action(wecom):
    task = task_id("pend_demo_1", "in:99:0")
    assert ref_of_task(task) == "pend_demo_1"
    extra = (f"<EventKey><![CDATA[confirm]]></EventKey><TaskId><![CDATA[{task}]]></TaskId>"
             "<CardType><![CDATA[button_interaction]]></CardType><ResponseCode><![CDATA[rc-1]]></ResponseCode>")
    now = int(time.time())
    for t in (now, now + 1, now + 1):  # a double tap, and WeCom retrying the second callback
        assert (await post(wecom, A, event_xml(A, "ZhangWei", "template_card_event", create_time=t, extra=extra))).status == 200
    rows = [r for r in inbox_rows(wecom.copilot) if r.platform_msg_id.startswith("card:")]
    assert len(rows) == 1 and '"confirm"' in rows[0].payload and '"pend_demo_1"' in rows[0].payload
    await wecom.fake.wait_sent(to(A, "ZhangWei"))
    await asyncio.sleep(0.5)
    assert len([m for m in wecom.fake.sent if to(A, "ZhangWei")(m)]) == 1




async def test_a_reply_blocked_by_60020_survives_a_restart_and_goes_out_after_the_fix(wecom, aiohttp_client):
    from sqlalchemy import select, update

    from bot.app import build_app
    from bot.pipeline.tables import OutboundRow
    from bot.web.gateway import create_web_app

    fake, settings = wecom.fake, wecom.copilot.settings
    fake.untrusted_ip = True
    await post(wecom, A, text_xml(A, "ZhangWei", "/help", "7450000000000000030"))
    t = OutboundRow.__table__
    for _ in range(100):
        with wecom.copilot.engine.connect() as c:
            row = c.execute(select(t.c.status, t.c.error).where(t.c.channel == "wecom")).first()
        if row is not None and "60020" in row.error:
            break
        await asyncio.sleep(0.1)
    assert row.status == "pending" and "企业可信IP" in row.error  # queued, with the fix in the error
    await wecom.close()  # the process stops with the reply still queued

    fake.untrusted_ip = False  # the admin adds the IP...
    cp = build_app(settings, channels=[WeComConnector(corps(fake, settings.tenant))])
    with cp.engine.begin() as c:
        c.execute(update(t).values(not_before=0.0))  # ...and the retry time has come
    await aiohttp_client(create_web_app(cp))
    [m] = await fake.wait_sent(to(A, "ZhangWei"))
    assert "/ask" in content(m)


async def test_approval_card_clicked_twice_writes_the_crm_once_and_typing_1_works_too(wecom):
    from sqlalchemy import func, select

    from crm.models import Activity

    def visits() -> int:
        with wecom.copilot.engine.connect() as c:
            return c.execute(select(func.count()).select_from(Activity).where(Activity.account_id == "acc-001")).scalar()

    fake, before = wecom.fake, visits()
    log = "/log 今天拜访了华东医疗集团王总，关注价格，下周二再约"
    await post(wecom, A, text_xml(A, "ZhangWei", log, "7450000000000000040"))
    text, card = await fake.wait_sent(to(A, "ZhangWei"), n=2)
    assert content(text).count("回复 1 确认 / 2 修改 / 3 取消") == 1 and card["msgtype"] == "template_card"
    tc = card["template_card"]
    assert [b["key"] for b in tc["button_list"]] == ["confirm", "edit", "reject"]
    assert visits() == before  # nothing is written before the click
    extra = (f"<EventKey><![CDATA[confirm]]></EventKey><TaskId><![CDATA[{tc['task_id']}]]></TaskId>"
             "<CardType><![CDATA[button_interaction]]></CardType><ResponseCode><![CDATA[rc-9]]></ResponseCode>")
    now = int(time.time())
    for t in (now, now + 1):  # the rep taps the button twice
        await post(wecom, A, event_xml(A, "ZhangWei", "template_card_event", create_time=t, extra=extra))
    sent = await fake.wait_sent(to(A, "ZhangWei"), n=3)
    assert "✓" in content(sent[2]) and visits() == before + 1
    assert [(u["response_code"], u["button"]["replace_name"]) for u in fake.card_updates] == [("rc-9", "已处理")]  # buttons greyed out
    # a client without cards (the WeChat plug-in): the typed fallback resolves the next one
    await post(wecom, A, text_xml(A, "ZhangWei", log.replace("下周二", "下周三"), "7450000000000000041"))
    await fake.wait_sent(to(A, "ZhangWei"), n=5)
    await post(wecom, A, text_xml(A, "ZhangWei", "1", "7450000000000000042"))
    sent = await fake.wait_sent(to(A, "ZhangWei"), n=6)
    assert "✓" in content(sent[5]) and visits() == before + 2
    await asyncio.sleep(0.5)
    assert len([m for m in fake.sent if to(A, "ZhangWei")(m)]) == 6
