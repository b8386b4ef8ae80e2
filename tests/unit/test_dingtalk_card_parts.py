"""DingTalk cards without a server: ids, what a card is created with, a click's checks, the card settings."""
from __future__ import annotations

import json

import pytest

from connectors.dingtalk.cards import BUILTIN_TEMPLATE, Card, NotOurs, card_data, card_markdown, click, create_body, track_id
from connectors.dingtalk.config import DingTalkApp, load_apps
from connectors.message import Button, Citation, Reply, Target

APP = DingTalkApp(app_key="dingkey", app_secret="s3cret", corp_id="dingcorp", cards=True)
DIRECT = Target(channel="dingtalk", conversation_id="cidP2P==", user_id="u1", context={"senderStaffId": "u1", "senderNick": "张伟"})
GROUP = Target(channel="dingtalk", conversation_id="cidGroup==", user_id="u1", is_group=True,
               context={"senderStaffId": "u1", "senderNick": "张伟", "openConversationId": "cidGroup=="})


def card(group: bool = False, **kw) -> Card:
    base = dict(out_track_id="cpabc", app_key="default", msg_id="m1", reply_key="in:1:0", conversation_id="cidGroup==" if group else "cidP2P==",
                is_group=group, staff_id="u1", state="done")
    return Card(**{**base, **kw})


def callback(user: str = "u1", action: str = "confirm:p-1", **kw) -> dict:
    return {"outTrackId": "cpabc", "corpId": "dingcorp", "userId": user, "type": "actionCallback",
            "content": json.dumps({"cardPrivateData": {"actionIds": [action], "params": {}}}), **kw}


def test_track_ids_are_stable_and_secret():
    assert track_id(APP, "stream", "m1") == track_id(APP, "stream", "m1")
    assert len({track_id(APP, "stream", "m1"), track_id(APP, "reply", "m1"), track_id(APP, "stream", "m2"),
                track_id(DingTalkApp(app_key="dingkey", app_secret="other"), "stream", "m1")}) == 4


def test_direct_and_group_cards_go_to_their_open_space():
    data = card_data(APP, "hi", status="2")
    direct = create_body(APP, "cp1", DIRECT, data)
    assert direct["openSpaceId"] == "dtv1.card//IM_ROBOT.u1" and direct["imRobotOpenDeliverModel"]["spaceType"] == "IM_ROBOT"
    assert direct["cardTemplateId"] == BUILTIN_TEMPLATE and direct["callbackType"] == "HTTP" and direct["callbackRouteKey"]
    group = create_body(APP.model_copy(update={"mode": "stream", "card_template_id": "t.schema"}), "cp2", GROUP, data)
    assert group["openSpaceId"] == "dtv1.card//IM_GROUP.cidGroup==" and group["imGroupOpenDeliverModel"]["robotCode"] == "dingkey"
    assert group["imGroupOpenDeliverModel"]["atUserIds"] == {"u1": "张伟"}
    assert group["callbackType"] == "STREAM" and "callbackRouteKey" not in group and group["cardTemplateId"] == "t.schema"


def test_card_data_is_strings_with_buttons_and_sources():
    reply = Reply(text="将写入 CRM", citations=[Citation(n=1, doc_id="d", title="价格表", url="https://kb/d")],
                  buttons=[Button(key="confirm", label="确认写入", ref="p-1"), Button(key="reject", label="取消", ref="p-1")])
    data = card_data(APP, card_markdown(reply, None), status="3", reply=reply)
    assert all(isinstance(v, str) for v in data.values())
    assert [b["id"] for b in json.loads(data["sys_full_json_obj"])["msgButtons"]] == ["confirm:p-1", "reject:p-1"]
    assert "价格表" in data["msgContent"] and "价格表" in data["sources"] and "回复 1" not in data["msgContent"]
    own = card_data(APP.model_copy(update={"card_template_id": "t.schema"}), "x", status="2")
    assert own["content"] == "x" and "msgContent" not in own
    typed = Reply(text="选一个", buttons=[Button(key="", label="一", reply="1")])
    assert "1" in card_markdown(typed, None).split("选一个", 1)[1]  # no action to call back with: the typed choice stays


def test_a_click_becomes_an_action_in_the_cards_conversation():
    msg = click(callback(), app=APP, card=card())
    assert msg.kind == "action" and msg.action.key == "confirm" and msg.action.ref == "p-1"
    assert msg.conversation_id == "cidP2P==" and msg.sender_id == "u1" and not msg.is_group
    assert msg.platform_msg_id == click(callback(), app=APP, card=card()).platform_msg_id  # the same click twice: one message
    assert msg.platform_msg_id != click(callback(action="reject:p-1"), app=APP, card=card()).platform_msg_id
    by_param = callback(content=json.dumps({"cardPrivateData": {"actionIds": ["btn_1"], "params": {"action": "edit:p-1"}}}))
    assert click(by_param, app=APP, card=card()).action.key == "edit"  # an own template's 回传请求 parameter
    assert click(callback(user="u2"), app=APP, card=card(group=True)).sender_id == "u2"  # in a group anyone may click


@pytest.mark.parametrize("data,found,why", [
    (callback(user="u2"), card(), "only the person"),
    (callback(corpId="dingother"), card(), "another corp"),
    (callback(action="drop table"), card(), "no action"),
    (callback(content="{not json"), card(), "not JSON"),
    (callback(), None, "no card"),
    (callback(), card(app_key="beijing"), "no card"),
    (callback(user=""), card(), "nobody"),
    ("[]", card(), "JSON object"),
])
def test_a_click_that_is_not_ours_is_refused(data, found, why):
    with pytest.raises(NotOurs, match=why):
        click(data, app=APP, card=found)


def test_card_settings_under_dingtalk_apply_to_every_app_unless_set():
    section = {"cards": True, "card_template_id": "t.schema",
               "apps": [{"key": "bj", "app_key": "k2", "app_secret": "s2"}, {"key": "sz", "app_key": "k3", "app_secret": "s3", "cards": False}]}
    apps, problems = load_apps("default", section, {"COPILOT_DINGTALK_APP_KEY": "k1", "COPILOT_DINGTALK_APP_SECRET": "s1",
                                                    "COPILOT_DINGTALK_CARD_TEMPLATE_ID": "env.schema"})
    assert not problems
    by = {a.key: a for a in apps}
    assert by["default"].cards and by["default"].card_template_id == "env.schema"  # the environment wins
    assert by["bj"].cards and by["bj"].card_template_id == "t.schema" and not by["sz"].cards  # not the env app's template
    assert not load_apps("default", {}, {"COPILOT_DINGTALK_APP_KEY": "k1", "COPILOT_DINGTALK_APP_SECRET": "s1"})[0][0].cards


def test_the_answer_so_far_streamed_into_a_card_carries_no_tag_dingtalk_acts_on():
    """The preview is the model's raw Markdown, not rendered by connectors.markup: its <font> shows as words."""
    import asyncio

    from connectors.dingtalk.livecards import LiveCards

    loop = asyncio.new_event_loop()  # not running: the pump is only scheduled
    try:
        live = LiveCards(None)
        live.bind(loop)
        target = DIRECT.model_copy(update={"context": {**DIRECT.context, "msgId": "m-font"}})
        live.preview(APP, None, target, '报价 <font color="#FF0000">已降 50%</font>，3 < 5')
        assert live.previews.get(track_id(APP, "stream", "m-font")).latest == '报价 ＜font color="#FF0000">已降 50%＜/font>，3 < 5'
    finally:
        loop.close()


async def test_closing_the_connector_stops_the_pumps_writing_cards():
    """A pump left running after aclose wrote on with closed clients (a new session nobody closes, errors logged)."""
    import asyncio

    from connectors.dingtalk.connector import DingTalkConnector

    entered, calls = asyncio.Event(), []

    class Client:  # DingTalk answering slowly: the card is being created when the process stops
        async def create_card(self, body: dict) -> dict:
            calls.append("create")
            entered.set()
            await asyncio.Event().wait()
            return {}

        async def aclose(self) -> None:
            calls.append("closed")

    conn = DingTalkConnector([APP])
    conn.clients = {APP.key: Client()}
    conn.cards.bind(asyncio.get_running_loop())
    conn.preview(DIRECT.model_copy(update={"tenant": APP.tenant, "context": {**DIRECT.context, "msgId": "m-close"}}), "星图的实施周期")
    await asyncio.wait_for(entered.wait(), 5)
    live = conn.cards.previews.get(track_id(APP, "stream", "m-close"))
    await conn.aclose()
    assert live.task is not None and live.task.done() and live.stopped
    assert calls == ["create", "closed"]  # the pump stopped before its client was closed
