"""WeCom splitting, rendering, crypto and settings without a server. What every connector must do
(parse the fixtures, split under the limit, fall back to text) is checked in test_connector_contract.py."""
from __future__ import annotations

import pytest

from connectors.message import Button, Reply
from connectors.text import utf8_len
from connectors.wecom.crypto import BadPayload, WeComCrypto, parse_xml
from connectors.wecom.render import ref_of_task, render, split_text


# splitting and rendering (no server); parsing the fixtures is in tests/integration/test_connector_contract.py
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
    text, card = render(reply, markdown=False, seed="in:5:0")
    assert text["text"]["content"].endswith("回复 1 确认 / 2 修改 / 3 取消")
    tc = card["template_card"]
    assert tc["card_type"] == "button_interaction" and [b["key"] for b in tc["button_list"]] == ["confirm", "edit", "reject"]
    assert ref_of_task(tc["task_id"]) == "pend_7" and len(tc["task_id"]) <= 128
    assert render(reply, markdown=False, seed="in:5:0") == [text, card]  # a retry sends the same card (duplicate check)
    odd = reply.model_copy(update={"buttons": [Button(key="confirm", label="确认", ref="crm:visit/7 草稿", reply="1")]})
    assert ref_of_task(render(odd, markdown=True, seed="s")[-1]["template_card"]["task_id"]) == "crm:visit/7 草稿"


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


def test_corp_settings_problems_and_toml_corps():
    from connectors.wecom.config import CorpConfig, load_corps

    assert CorpConfig(corp_id="ww1", token="T1", aes_key=AES, agent_id=1, secret="s").problems() == []
    short = dict(CorpConfig(corp_id="ww1", token="T1", aes_key=AES[:42], agent_id=1, secret="s").problems())
    assert "42 characters" in next(iter(short)) and "43" in next(iter(short))
    missing = CorpConfig(key="default", corp_id="ww1").problems()
    assert any("COPILOT_WECOM_SECRET" in fix for _, fix in missing)
    assert load_corps("main", {}, env={}) == ([], [])
    env = {"COPILOT_WECOM_CORP_ID": "ww1", "COPILOT_WECOM_TOKEN": "T1", "COPILOT_WECOM_AES_KEY": AES, "COPILOT_WECOM_AGENT_ID": "7",
           "COPILOT_WECOM_SECRET": "s", "COPILOT_WECOM_MARKDOWN": "false"}
    toml = {"corps": [{"key": "east", "corp_id": "ww2", "token": "T2", "aes_key": AES, "agent_id": 5, "secret": "s2"}]}
    (default, east), problems = load_corps("main", toml, env=env)
    assert problems == []
    assert (default.key, default.tenant, default.agent_id, default.markdown) == ("default", "main", 7, False)
    assert (east.key, east.tenant, east.agent_id, east.markdown) == ("east", "east", 5, True)
    # what is wrong is reported, naming the setting and the fix; the usable corps still load
    corps, problems = load_corps("main", {"corps": [{"key": "default"}, {**toml["corps"][0]}, {**toml["corps"][0]}, {"key": "main"},
                                                     {"key": "Bad Key"}, {**toml["corps"][0], "key": "west", "agent_id": "x"}]},
                                 env={"COPILOT_WECOM_CORP_ID": "ww1"})
    assert [c.key for c in corps] == ["east"]
    assert {p.account for p in problems} == {"default", "#1", "east", "main", "#5", "west"}
    assert all(p.setting and p.fix for p in problems)
    assert any(p.setting == "COPILOT_WECOM_SECRET" and "COPILOT_WECOM_SECRET" in p.fix for p in problems)
    assert any(p.setting == "[[wecom.corps]] key='west': agent_id" for p in problems)
    _, [bad] = load_corps("main", {"corps": "east"}, env={})
    assert bad.setting == "[wecom] corps" and "[[wecom.corps]]" in bad.fix


def test_the_typed_fallback_is_not_repeated_when_the_text_has_it():
    reply = Reply(text="写入 CRM：拜访 华东医疗集团\n回复 1 确认 / 2 修改 / 3 取消", kind="confirm", buttons=[
        Button(key="confirm", label="确认写入", ref="p1", reply="1"), Button(key="edit", label="修改", ref="p1", reply="2"),
        Button(key="reject", label="取消", ref="p1", reply="3")])
    text, card = render(reply, markdown=True, seed="k")
    assert text["markdown"]["content"].count("回复 1") == 1 and card["msgtype"] == "template_card"
