"""WeCom parsing, splitting and rendering without a server (tests/fixtures/wecom: real-shaped callbacks)."""
from __future__ import annotations

import random
import tomllib
from pathlib import Path

import pytest

from connectors.message import Button, Reply
from connectors.wecom.crypto import BadPayload, WeComCrypto, parse_xml
from connectors.wecom.parse import to_message
from connectors.wecom.render import payloads, ref_of_task, split_text, utf8_len

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wecom"


# parsing and splitting (no server) -----------------------------------------------------------------
CASES = tomllib.loads((FIXTURES / "messages.toml").read_text(encoding="utf-8"))["case"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_callback_fixtures_parse_to_the_expected_message(case):
    expect = case["expect"]
    msg = to_message(parse_xml(case["xml"].encode()), tenant="t1", corp="c1")
    if expect.get("ignored"):
        assert msg is None
        return
    assert msg.channel == "wecom" and msg.tenant == "t1" and msg.reply_context["corp"] == "c1"
    assert msg.kind == expect["kind"]
    for key, attr in (("text", "text"), ("event", "event")):
        if key in expect:
            assert getattr(msg, attr) == expect[key]
    if "action_key" in expect:
        assert (msg.action.key, msg.action.ref) == (expect["action_key"], expect["action_ref"])
    if "attachment_ref" in expect:
        [att] = msg.attachments
        assert (att.ref, att.name) == (expect["attachment_ref"], expect["attachment_name"])
    if expect.get("msg_id"):
        assert msg.platform_msg_id == expect["msg_id"]
    else:  # composite key: the same callback again is the same message
        assert msg.platform_msg_id == to_message(parse_xml(case["xml"].encode()), tenant="t1", corp="c1").platform_msg_id


def test_split_text_counts_bytes_and_never_cuts_a_character():
    rng = random.Random(3)
    alphabet = "云帆星图实施周期价格医疗追溯合规顾问，。！？ abcXYZ123 🏥👍🏻é"
    for _ in range(200):
        paras = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 1500))) for _ in range(rng.randint(1, 8))]
        text = "\n\n".join(p.strip() or "x" for p in paras)
        limit = rng.choice([64, 300, 2048])
        parts = split_text(text, limit)
        assert all(utf8_len(p) <= limit for p in parts)
        assert all(p.encode("utf-8").decode("utf-8") == p for p in parts)
        bodies = [p.split("\n", 1)[1] if len(parts) > 1 else p for p in parts]
        assert "".join("".join(bodies).split()) == "".join(text.split())


def test_split_text_prefers_paragraph_boundaries():
    paras = [f"第{i}段：" + "销售助手按段落切分长回复。" * 40 for i in range(6)]  # ~1.6 KB each
    parts = split_text("\n\n".join(paras), 2048)
    assert len(parts) == 6
    assert [p.split("\n", 1)[1] for p in parts] == paras  # each part is exactly one whole paragraph
    assert split_text("短回复") == ["短回复"] and split_text("  ") == []
    wall = "医" * 2000  # 6000 bytes, no boundary at all
    pieces = split_text(wall, 2048)
    assert len(pieces) == 3 and all(utf8_len(p) <= 2048 for p in pieces)


def test_confirmations_render_as_a_card_with_a_text_fallback():
    reply = Reply(text="要把这次拜访写入 CRM 吗？\n\n客户：华东医疗集团", kind="confirm", buttons=[
        Button(key="confirm", label="确认", ref="pend_7", reply="1"), Button(key="edit", label="修改", ref="pend_7", reply="2"),
        Button(key="reject", label="取消", ref="pend_7", reply="3")])
    text, card = payloads(reply, markdown=False, seed="in:5:0")
    assert text["text"]["content"].endswith("回复 1 确认 / 2 修改 / 3 取消")
    tc = card["template_card"]
    assert tc["card_type"] == "button_interaction" and [b["key"] for b in tc["button_list"]] == ["confirm", "edit", "reject"]
    assert ref_of_task(tc["task_id"]) == "pend_7" and len(tc["task_id"]) <= 128
    assert payloads(reply, markdown=False, seed="in:5:0") == [text, card]  # a retry sends the same card (duplicate check)
    odd = reply.model_copy(update={"buttons": [Button(key="confirm", label="确认", ref="crm:visit/7 草稿", reply="1")]})
    assert ref_of_task(payloads(odd, markdown=True, seed="s")[-1]["template_card"]["task_id"]) == "crm:visit/7 草稿"


# crypto and settings -------------------------------------------------------------------------------
AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_crypto_round_trip_and_refusals():
    from connectors.wecom.crypto import BadSignature

    crypto = WeComCrypto("Tok1", AES, "wwcorp1")
    xml = "<xml><FromUserName><![CDATA[ZhangWei]]></FromUserName><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content></xml>"
    body, sig = crypto.encrypt_callback(xml, "123", "1700000000", "1000002")
    assert crypto.decrypt(body, sig, "1700000000", "123")["Content"] == "你好"
    with pytest.raises(BadSignature):
        crypto.decrypt(body, sig, "1700000001", "123")  # the timestamp is signed too
    with pytest.raises(BadSignature):
        WeComCrypto("Tok1", AES, "wwOTHER").decrypt(body, sig, "1700000000", "123")  # encrypted for another corp
    from connectors.wecom.crypto import signature

    junk = b"<xml><Encrypt><![CDATA[bm90IHJlYWxseSBlbmNyeXB0ZWQ=]]></Encrypt></xml>"
    with pytest.raises(BadPayload):
        crypto.decrypt(junk, signature("Tok1", "1700000000", "123", "bm90IHJlYWxseSBlbmNyeXB0ZWQ="), "1700000000", "123")
    for hostile in (b'<!DOCTYPE x [<!ENTITY a "b">]><xml>&a;</xml>', b'<!DOCTYPE x SYSTEM "http://example.com/x.dtd"><xml/>', b"<other/>"):
        with pytest.raises(BadPayload):
            parse_xml(hostile)


def test_corp_settings_problems_and_toml_corps(monkeypatch):
    from connectors.wecom.config import CorpConfig, WeComConfigError, load_corps

    assert CorpConfig(corp_id="ww1", token="T1", aes_key=AES, agent_id=1, secret="s").problems() == []
    short = dict(CorpConfig(corp_id="ww1", token="T1", aes_key=AES[:42], agent_id=1, secret="s").problems())
    assert "42 characters" in next(iter(short)) and "43" in next(iter(short))
    missing = CorpConfig(key="default", corp_id="ww1").problems()
    assert any("COPILOT_WECOM_SECRET" in fix for _, fix in missing)
    for k in [k for k in list(__import__("os").environ) if k.startswith("COPILOT_WECOM_")]:
        monkeypatch.delenv(k)
    assert load_corps("main", toml={}) == []
    monkeypatch.setenv("COPILOT_WECOM_CORP_ID", "ww1")
    monkeypatch.setenv("COPILOT_WECOM_MARKDOWN", "false")
    toml = {"corps": [{"key": "east", "corp_id": "ww2", "token": "T2", "aes_key": AES, "agent_id": 5, "secret": "s2"}]}
    default, east = load_corps("main", toml=toml)
    assert (default.key, default.tenant, default.markdown) == ("default", "main", False)
    assert (east.key, east.tenant, east.agent_id, east.markdown) == ("east", "east", 5, True)
    for bad in ({"corps": [{"key": "default"}]}, {"corps": [{"key": "east"}, {"key": "east"}]}, {"corps": [{"key": "main"}]},
                {"corps": [{"key": "Bad Key"}]}, {"corps": "east"}):
        with pytest.raises(WeComConfigError):
            load_corps("main", toml=bad)


def test_the_typed_fallback_is_not_repeated_when_the_text_has_it():
    reply = Reply(text="写入 CRM：拜访 华东医疗集团\n回复 1 确认 / 2 修改 / 3 取消", kind="confirm", buttons=[
        Button(key="confirm", label="确认写入", ref="p1", reply="1"), Button(key="edit", label="修改", ref="p1", reply="2"),
        Button(key="reject", label="取消", ref="p1", reply="3")])
    text, card = payloads(reply, markdown=True, seed="k")
    assert text["markdown"]["content"].count("回复 1") == 1 and card["msgtype"] == "template_card"
