"""DingTalk pieces without a server: recorded payloads (tests/fixtures/dingtalk), signature, rendering, config."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from connectors.message import Button, Citation, Reply
from connectors.dingtalk.config import DingTalkEnv, load_apps
from connectors.dingtalk.crypto import SignatureError, sign, verify
from connectors.dingtalk.parse import PayloadError, parse_message
from connectors.dingtalk.render import MAX_CHARS, render

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "dingtalk").glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_recorded_payloads_parse_to_what_they_are_tagged_with(path: Path):
    case = json.loads(path.read_text(encoding="utf-8"))
    msg = parse_message(case["payload"], tenant="default", robot_code="dingappkey0001")
    expect = case["expect"]
    if expect is None:
        assert msg is None
        return
    assert msg is not None and msg.channel == "dingtalk" and msg.platform_msg_id == case["payload"]["msgId"]
    for field in ("kind", "text", "is_group", "sender_id"):
        if field in expect:
            assert getattr(msg, field) == expect[field], field
    if "mentions" in expect:
        assert list(msg.mentions) == expect["mentions"]
    if "attachment" in expect:
        [att] = msg.attachments
        assert {k: getattr(att, k) for k in expect["attachment"]} == expect["attachment"]
    if "action" in expect:
        assert msg.action.model_dump() == expect["action"]
    ctx = msg.reply_context
    assert ctx["sessionWebhook"].startswith("https://") and ctx["sessionWebhookExpiredTime"] > 0
    assert ctx["openConversationId"] == msg.conversation_id and ctx["robotCode"] == "dingappkey0001"


@pytest.mark.parametrize("payload", [[], {"msgId": "x"}, {"msgId": "x", "conversationId": "c", "senderStaffId": "s", "conversationType": "3"},
                                     {"msgId": "x", "conversationId": "c", "senderStaffId": "s", "msgtype": "file", "content": {}}])
def test_payloads_that_are_not_robot_messages_are_refused(payload):
    with pytest.raises(PayloadError):
        parse_message(payload, tenant="t", robot_code="r")


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
    assert "[1]  \n第二行" in md and "[1] [竞品对比卡：星图](https://kb/bc) v3 · 2026-11-10 · ⚠ 120 天未更新" in md
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
    msg = parse_message({"msgId": "m", "conversationId": "c", "senderStaffId": "s1", "msgtype": "text", "text": {"content": clicked}},
                        tenant="t", robot_code="r")
    assert msg.kind == "action" and (msg.action.key, msg.action.ref) == ("confirm", "p-7")
    [in_group] = render(reply, group=True, staff_id="s1")  # a click in a group would not @ the robot: typed fallback only
    assert in_group.webhook["msgtype"] == "markdown" and "回复 1 确认 / 2 修改 / 3 取消" in in_group.webhook["markdown"]["text"]


def test_long_replies_are_split_between_paragraphs():
    paras = [f"第{i}段" + "很长的内容" * 150 for i in range(8)]
    parts = render(Reply(text="\n\n".join(paras)), group=False)
    assert len(parts) > 1 and all(len(p.webhook["markdown"]["text"]) <= MAX_CHARS for p in parts)
    assert "".join(p.webhook["markdown"]["text"] for p in parts).replace("\n", "").replace(" ", "") == "".join(paras)
    assert all(p.webhook["markdown"]["text"].split("  ")[0].startswith("第") for p in parts)  # each part starts a paragraph


def test_config_loads_apps_and_reports_what_is_wrong():
    env = DingTalkEnv(app_key="k0", app_secret="s0", mode="stream")
    section = {"apps": [{"key": "beijing", "app_key": "k1", "app_secret": "s1", "robot_code": "r1"},
                        {"key": "Bad Key", "app_key": "k2", "app_secret": "s2"},
                        {"key": "nosecret", "app_key": "k3"},
                        {"key": "dupe", "app_key": "k1", "app_secret": "s1"},
                        {"key": "pigeon", "app_key": "k4", "app_secret": "s4", "mode": "pigeon"}]}
    apps, problems = load_apps("main", env, section)
    assert [(a.key, a.tenant, a.mode, a.robot_code, a.callback_path) for a in apps] == [
        ("default", "main", "stream", "k0", "/dingtalk/callback"), ("beijing", "beijing", "http", "r1", "/dingtalk/beijing/callback")]
    assert {p.app for p in problems} == {"apps[1]", "nosecret", "dupe", "pigeon"}
    assert all(p.fix for p in problems)
    assert load_apps("main", DingTalkEnv(), {}) == ([], [])
