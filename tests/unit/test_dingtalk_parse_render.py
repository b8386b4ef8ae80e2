"""DingTalk pieces without a server: refused payloads, signature, rendering, config. Parsing the recorded
payloads (tests/fixtures/dingtalk), splitting and the text fallback are in test_connector_contract.py."""
from __future__ import annotations

from urllib.parse import unquote

import pytest

from connectors.dingtalk.config import load_apps
from connectors.dingtalk.crypto import SignatureError, sign, verify
from connectors.dingtalk.parse import PayloadError, parse
from connectors.dingtalk.render import render
from connectors.message import Button, Citation, Reply


@pytest.mark.parametrize("payload", [[], {"msgId": "x"}, {"msgId": "x", "conversationId": "c", "senderStaffId": "s", "conversationType": "3"},
                                     {"msgId": "x", "conversationId": "c", "senderStaffId": "s", "msgtype": "file", "content": {}}])
def test_payloads_that_are_not_robot_messages_are_refused(payload):
    with pytest.raises(PayloadError):
        parse(payload, tenant="t", robot_code="r")


def test_signature_matches_dingtalk_and_rejects_forgery_and_staleness():
    # the documented algorithm, computed with `openssl dgst -sha256 -hmac`: base64(HMAC-SHA256(secret, ts + "\n" + secret))
    assert sign("1700000000000", "secret") == "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="
    now = 1700000000000
    verify("1700000000000", sign("1700000000000", "secret"), "secret", now_ms=now)
    verify("1700000000000", "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D", "secret", now_ms=now)  # URL-encoded by a proxy
    for ts, sig, why in [("1700000000000", sign("1700000000000", "other"), "bad signature"),
                         ("1700000000000", sign("1700000000000", "secret"), "more than an hour"),
                         ("17e11", "x", "millisecond"), ("", "x", "missing")]:
        with pytest.raises(SignatureError, match=why):
            verify(ts, sig, "secret", now_ms=now + (2 * 3600 * 1000 if why == "more than an hour" else 0))


def test_answer_renders_as_markdown_with_citations_and_in_groups_mentions_the_asker():
    reply = Reply(text="星图实施周期约 5 个月。[1]\n第二行", citations=[Citation(n=1, doc_id="bc", title="竞品对比卡：星图", version="3",
                                                                             updated="2026-11-10", url="https://kb/bc", stale_days=120)])
    [direct] = render(reply, group=False, staff_id="0251120101", nick="张伟")
    md = direct.webhook["markdown"]["text"]
    assert direct.webhook["msgtype"] == "markdown" and "at" not in direct.webhook
    assert "[1]  \n第二行" in md and "[1] [竞品对比卡：星图](https://kb/bc) v3 (2026-11-10) · ⚠ 120 天未更新" in md  # one citation format on every platform
    assert direct.msg_key == "sampleMarkdown" and direct.param["text"] == md
    [group] = render(reply, group=True, staff_id="0251120101", nick="张伟")
    assert group.webhook["at"] == {"atUserIds": ["0251120101"], "isAtAll": False}
    assert group.webhook["markdown"]["text"].startswith("@0251120101 ") and group.param["text"].startswith("@张伟 ")


def test_confirmation_is_an_action_card_whose_click_parses_back_to_the_action():
    buttons = [Button(key="confirm", label="确认", ref="p-7", reply="1"), Button(key="edit", label="修改", ref="p-7", reply="2"),
               Button(key="reject", label="取消", ref="p-7", reply="3")]
    reply = Reply(text="记录拜访：华东医疗集团王总，关注价格，下周二再约。", buttons=buttons, kind="confirm")
    [card] = render(reply, group=False, staff_id="s1")
    assert card.webhook["msgtype"] == "actionCard" and card.msg_key == "sampleActionCard3"
    assert "回复 1 确认 / 2 修改 / 3 取消" in card.webhook["actionCard"]["text"]
    url = card.param["actionURL1"]
    assert url.startswith("dtmd://dingtalkclient/sendMessage?content=")
    clicked = unquote(url.split("content=", 1)[1])
    msg = parse({"msgId": "m", "conversationId": "c", "senderStaffId": "s1", "msgtype": "text", "text": {"content": clicked}},
                        tenant="t", robot_code="r")
    assert msg.kind == "action" and (msg.action.key, msg.action.ref) == ("confirm", "p-7")
    [in_group] = render(reply, group=True, staff_id="s1")  # a click in a group would not @ the robot: typed fallback only
    assert in_group.webhook["msgtype"] == "markdown" and "回复 1 确认 / 2 修改 / 3 取消" in in_group.webhook["markdown"]["text"]


def test_config_loads_apps_and_reports_what_is_wrong():
    env = {"COPILOT_DINGTALK_APP_KEY": "k0", "COPILOT_DINGTALK_APP_SECRET": "s0", "COPILOT_DINGTALK_MODE": "Stream"}
    section = {"apps": [{"key": "beijing", "app_key": "k1", "app_secret": "s1", "robot_code": "r1"},
                        {"key": "Bad Key", "app_key": "k2", "app_secret": "s2"},
                        {"key": "nosecret", "app_key": "k3"},
                        {"key": "dupe", "app_key": "k1", "app_secret": "s1"},
                        {"key": "pigeon", "app_key": "k4", "app_secret": "s4", "mode": "pigeon"}]}
    apps, problems = load_apps("main", section, env=env)
    assert [(a.key, a.tenant, a.mode, a.robot_code, a.callback_path) for a in apps] == [
        ("default", "main", "stream", "k0", "/dingtalk/callback"), ("beijing", "beijing", "http", "r1", "/dingtalk/beijing/callback")]
    assert {p.account for p in problems} == {"#2", "nosecret", "dupe", "pigeon"}
    assert all(p.setting and p.fix for p in problems)
    by = {p.account: p for p in problems}
    assert by["nosecret"].setting == "[[dingtalk.apps]] key='nosecret': app_secret" and "Client Secret" in by["nosecret"].fix
    assert by["pigeon"].setting.endswith(": mode") and "'http' or 'stream'" in by["pigeon"].fix
    assert "already used by 'beijing'" in by["dupe"].detail
    assert load_apps("main", {}, env={}) == ([], [])
    _, [missing] = load_apps("main", {}, env={"COPILOT_DINGTALK_APP_KEY": "k0"})
    assert missing.setting == "COPILOT_DINGTALK_APP_SECRET" and missing.account == "default"
